"""Every route of the served OpenAPI document, called by every kind of caller: anonymous, each role
of an organization, a member of another organization, and a user with only a personal licence.

What each route needs is one entry of ROUTE_NEEDS; the answer each caller must get follows from the
permission table (shared/permissions.py), never from a per-role list here. A route the
document serves without an entry fails the test, so a new route cannot slip past.
"""
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import pytest

from services.gateway_cashfree.service import signature_of as cashfree_signature_of
from shared.permissions import ROLES, personal_owner_may, role_may
from shared.permissions import MANAGE_BILLING, MANAGE_MEMBERS, TRANSFER_OWNERSHIP, VIEW_BILLING, VIEW_ORG
from tests.e2e.conftest import PASSWORD, Client

pytestmark = pytest.mark.e2e  # drives the session's stack over HTTP

PUBLIC = "public"  # no credentials: every caller gets the same answer
SIGNED_IN = "signed in"  # any live token; the route is about the caller themself
WEBHOOK = "gateway signature"  # no user auth: a wrong signature is a 400 whoever sends it
INGEST_KEY = "ingest key"  # no user auth: USAGE_INGEST_KEY, which no user's token is (401)

OUTSIDER, STRANGER, ANONYMOUS = "outsider", "stranger", "anonymous"
# outsider: owner of another organization. stranger: a user with a personal licence and no organization;
# on /billing/personal routes that name a record, the record is another user's (the org owner's).
CALLERS = (ANONYMOUS, *ROLES, OUTSIDER, STRANGER)
ACCT = "{acct}"
ACCT_FORMS = {"personal": "/api/v1/billing/personal", "org": "/api/v1/orgs/{org_id}/billing"}
PLAN = "growth_monthly"


@dataclass
class Probe:
    """How to call a route so that a caller who may do it gets `ok`: a real success where one can be
    had without spoiling the next calls, else the first answer past the permission check."""
    need: str  # PUBLIC, SIGNED_IN, WEBHOOK, INGEST_KEY, or an action of the permission table
    ok: int
    body: Callable = None  # (world, caller) -> JSON body
    params: Callable = None  # (world, caller, form) -> path parameters besides org_id
    headers: Callable = None  # (world, body bytes) -> extra headers
    query: dict = None
    fresh_token: bool = False  # a second session of the caller, so the call cannot end the matrix's


def fresh_email():
    return f"matrix-{uuid.uuid4().hex[:12]}@example.com"


def forged_stripe_signature(world, body):
    at = int(time.time())
    digest = hmac.new(b"whsec_not_ours", f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={at},v1={digest}"}


def forged_cashfree_signature(world, body):
    at = str(int(time.time() * 1000))
    return {"x-webhook-timestamp": at, "x-webhook-signature": cashfree_signature_of(at, body.decode(), "not ours")}


ROUTE_NEEDS = {
    ("post", "/api/v1/auth/signup"): Probe(PUBLIC, 201, body=lambda w, c: {
        "email": fresh_email(), "password": PASSWORD, "name": "New", "country": "US"}),
    ("post", "/api/v1/auth/login"): Probe(PUBLIC, 200, body=lambda w, c: {
        "email": w.host.user["email"], "password": PASSWORD}),
    ("post", "/api/v1/auth/logout"): Probe(SIGNED_IN, 204, fresh_token=True),
    ("get", "/api/v1/me"): Probe(SIGNED_IN, 200),
    ("patch", "/api/v1/me"): Probe(SIGNED_IN, 200, body=lambda w, c: {"name": f"{c} (renamed)"}),
    ("delete", "/api/v1/me/pending-plan"): Probe(SIGNED_IN, 204),
    ("post", "/api/v1/orgs"): Probe(SIGNED_IN, 201, body=lambda w, c: {"name": "Another"}),
    ("get", "/api/v1/orgs"): Probe(SIGNED_IN, 200),
    ("post", "/api/v1/invitations/{token}/accept"): Probe(
        SIGNED_IN, 200, params=lambda w, c, f: {"token": w.invitation_to_the_lobby(c)}),
    ("get", "/api/v1/orgs/{org_id}"): Probe(VIEW_ORG, 200),
    ("get", "/api/v1/orgs/{org_id}/members"): Probe(VIEW_ORG, 200),
    ("post", "/api/v1/orgs/{org_id}/invitations"): Probe(
        MANAGE_MEMBERS, 201, body=lambda w, c: {"email": fresh_email(), "role": "standard"}),
    ("get", "/api/v1/orgs/{org_id}/invitations"): Probe(MANAGE_MEMBERS, 200),
    ("delete", "/api/v1/orgs/{org_id}/invitations/{invitation_id}"): Probe(  # revoking twice changes nothing
        MANAGE_MEMBERS, 204, params=lambda w, c, f: {"invitation_id": w.pending_invitation}),
    ("patch", "/api/v1/orgs/{org_id}/members/{user_id}"): Probe(  # to the role they have
        MANAGE_MEMBERS, 200, body=lambda w, c: {"role": "standard"},
        params=lambda w, c, f: {"user_id": w.members["standard"].user["id"]}),
    ("delete", "/api/v1/orgs/{org_id}/members/{user_id}"): Probe(
        MANAGE_MEMBERS, 204, params=lambda w, c, f: {"user_id": w.new_member()}),
    ("post", "/api/v1/orgs/{org_id}/transfer-ownership"): Probe(  # past the check, the heir must be a member
        TRANSFER_OWNERSHIP, 422, body=lambda w, c: {"user_id": str(uuid.uuid4())}),
    ("get", "/api/v1/plans"): Probe(PUBLIC, 200, query={"country": "US"}),
    ("get", "/healthz"): Probe(PUBLIC, 200),
    ("get", "/api/v1/openapi.json"): Probe(PUBLIC, 200),
    ("post", "/api/v1/usage/events"): Probe(INGEST_KEY, 401, body=lambda w, c: {"events": []}),
    ("post", "/webhooks/stripe"): Probe(WEBHOOK, 400, headers=forged_stripe_signature, body=lambda w, c: {
        "id": "evt_matrix", "type": "invoice.paid", "created": int(time.time()), "data": {"object": {}}}),
    ("post", "/webhooks/cashfree"): Probe(WEBHOOK, 400, headers=forged_cashfree_signature, body=lambda w, c: {
        "type": "PAYMENT_LINK_EVENT", "event_time": "2026-11-01T10:00:05+05:30", "data": {}}),
    ("get", ACCT): Probe(VIEW_BILLING, 200),
    ("post", f"{ACCT}/quotes"): Probe(MANAGE_BILLING, 201, body=lambda w, c: {"plan_code": PLAN}),
    ("post", f"{ACCT}/checkout"): Probe(MANAGE_BILLING, 201, body=lambda w, c: {"plan_code": PLAN}),
    ("get", f"{ACCT}/checkout/{{checkout_id}}"): Probe(
        VIEW_BILLING, 200, params=lambda w, c, f: {"checkout_id": w.record(c, f, "checkout")}),
    ("get", f"{ACCT}/history"): Probe(VIEW_BILLING, 200),
    ("get", f"{ACCT}/payment-methods"): Probe(VIEW_BILLING, 200),
    ("post", f"{ACCT}/subscription/cancel"): Probe(MANAGE_BILLING, 409, body=lambda w, c: {}),  # no plan yet
    ("post", f"{ACCT}/payment-links"): Probe(MANAGE_BILLING, 201, body=lambda w, c: {"plan_code": PLAN}),
    ("get", f"{ACCT}/payment-links"): Probe(VIEW_BILLING, 200),
    ("post", f"{ACCT}/payment-links/{{link_id}}/cancel"): Probe(  # cancelling twice answers 200 again
        MANAGE_BILLING, 200, params=lambda w, c, f: {"link_id": w.record(c, f, "payment-link")}),
    ("get", f"{ACCT}/usage"): Probe(VIEW_BILLING, 200),
}


def expected_status(probe, caller, form, names_a_record):
    """The permission table, applied to one cell."""
    if probe.need in (PUBLIC, WEBHOOK, INGEST_KEY):
        return probe.ok  # whoever calls, and whatever user token they send
    if caller == ANONYMOUS:
        return 401
    if probe.need == SIGNED_IN:
        return probe.ok
    if form == "personal":  # the caller's own licence; another user's records are unknown there
        if caller == STRANGER and names_a_record:
            return 404
        return probe.ok if personal_owner_may(probe.need) else 404
    if caller in (OUTSIDER, STRANGER):
        return 404  # never leak that the organization exists
    return probe.ok if role_may(caller, probe.need) else 403


def served_routes(document):
    methods = {"get", "post", "put", "patch", "delete"}
    return {(method, path) for path, operations in document["paths"].items() for method in operations
            if method in methods}


def table_routes():
    """ROUTE_NEEDS with {acct} spelt both ways: (method, path, form, probe)."""
    for (method, path), probe in ROUTE_NEEDS.items():
        if path.startswith(ACCT):
            for form, prefix in ACCT_FORMS.items():
                yield method, prefix + path[len(ACCT):], form, probe
        else:
            yield method, path, "org" if "{org_id}" in path else None, probe


class World:
    """The organization under test, its members, and the records the probes name."""

    def __init__(self, team, sign_up, base_url):
        self.org, self.members = team
        self.members[STRANGER] = sign_up(name="Stella Stranger")
        self.host = sign_up(name="Hal Host")  # owns the lobby, an organization nobody else is in
        self.lobby = self.host.post("/api/v1/orgs", json={"name": "Lobby"}).json()
        self.base_url = base_url
        self.pending_invitation = self._invite(self.org["id"], fresh_email())["id"]
        self._records = {}

    def _invite(self, org_id, email, role="standard", inviter=None):
        answer = (inviter or self.members["owner"]).post(f"/api/v1/orgs/{org_id}/invitations",
                                                         json={"email": email, "role": role})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def invitation_to_the_lobby(self, caller):
        email = self.members[caller].user["email"] if caller != ANONYMOUS else fresh_email()
        return self._invite(self.lobby["id"], email, inviter=self.host)["token"]

    def new_member(self):
        """A standard member made for one call (a removal cannot be repeated)."""
        owner = self.members["owner"]
        with Client(self.base_url) as person:
            signed_up = person.post("/api/v1/auth/signup", json={
                "email": fresh_email(), "password": PASSWORD, "name": "Spare", "country": "US"}).json()
            person.token = signed_up["token"]
            token = self._invite(self.org["id"], signed_up["user"]["email"], inviter=owner)["token"]
            assert person.post(f"/api/v1/invitations/{token}/accept").status_code == 200
        return signed_up["user"]["id"]

    def record(self, caller, form, kind):
        """The id of a checkout or payment link of the account the call names. In the personal form
        that is the caller's own licence, except for the stranger, who is handed the owner's."""
        if form == "org":
            maker, prefix = self.members["owner"], f"/api/v1/orgs/{self.org['id']}/billing"
        else:
            maker = self.members["owner" if caller in (STRANGER, ANONYMOUS) else caller]
            prefix = ACCT_FORMS["personal"]
        key = (maker.user["id"], form, kind)
        if key not in self._records:
            path = "/checkout" if kind == "checkout" else "/payment-links"
            answer = maker.post(prefix + path, json={"plan_code": PLAN})
            assert answer.status_code == 201, answer.text
            self._records[key] = answer.json()["id"]
        return self._records[key]

    def token_of(self, caller, fresh):
        if caller == ANONYMOUS:
            return None
        if not fresh:
            return self.members[caller].token
        login = self.members[caller].post("/api/v1/auth/login", json={
            "email": self.members[caller].user["email"], "password": PASSWORD})
        assert login.status_code == 200, login.text
        return login.json()["token"]


def call(world, anonymous, method, path, form, probe, caller):
    params = {"org_id": world.org["id"]}
    if probe.params:
        params.update(probe.params(world, caller, form))
    body = json.dumps(probe.body(world, caller)).encode() if probe.body else None
    headers = {"Content-Type": "application/json"}
    token = world.token_of(caller, probe.fresh_token)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if probe.headers:
        headers.update(probe.headers(world, body))
    return anonymous.request(method.upper(), path.format(**params), data=body, headers=headers,
                             params=probe.query)


def test_every_served_route_has_an_entry_in_the_table(anonymous):
    served = served_routes(anonymous.get("/api/v1/openapi.json").json())
    tabled = {(method, path) for method, path, _, _ in table_routes()}
    assert served - tabled == set(), "routes served without an entry in ROUTE_NEEDS"
    assert tabled - served == set(), "entries in ROUTE_NEEDS for routes the document does not serve"


def test_every_caller_gets_what_the_permission_table_says_on_every_route(team, sign_up, anonymous, stack):
    world = World(team, sign_up, stack.base_url)
    wrong = []
    for method, path, form, probe in sorted(table_routes(), key=lambda route: route[:2]):
        names_a_record = probe.params is not None and form == "personal"
        for caller in CALLERS:
            expected = expected_status(probe, caller, form, names_a_record)
            answer = call(world, anonymous, method, path, form, probe, caller)
            if answer.status_code != expected:
                wrong.append(f"{method.upper()} {path} as {caller}: {answer.status_code}, expected {expected}"
                             f" {answer.text[:120]}")
            elif answer.status_code >= 400:
                error = answer.json()["error"]  # API.md's error body, whoever is refused
                assert set(error) == {"code", "message", "details"}, answer.text
    assert not wrong, "\n".join(wrong)


def test_the_personal_form_names_only_the_callers_own_licence(team, sign_up, stack):
    """/billing/personal is always the caller's own licence: another user's shows up nowhere, and
    naming it through the organization form (its id is the user's id) is a 404 like any unknown account."""
    owner, stranger = team[1]["owner"], sign_up(name="Stella Stranger")
    link = owner.post("/api/v1/billing/personal/payment-links", json={"plan_code": PLAN}).json()
    checkout = owner.post("/api/v1/billing/personal/checkout", json={"plan_code": PLAN}).json()

    summary = stranger.get("/api/v1/billing/personal").json()
    assert (summary["account"]["kind"], summary["account"]["id"]) == ("personal", stranger.user["id"])
    assert link["id"] not in {item["id"] for item in stranger.get("/api/v1/billing/personal/payment-links")
                              .json()["items"]}
    for path in (f"/api/v1/billing/personal/checkout/{checkout['id']}",
                 f"/api/v1/orgs/{owner.user['id']}/billing",
                 f"/api/v1/orgs/{owner.user['id']}/billing/payment-links"):
        assert stranger.get(path).status_code == 404, path
    refused = stranger.post(f"/api/v1/billing/personal/payment-links/{link['id']}/cancel")
    assert refused.status_code == 404
    assert owner.get("/api/v1/billing/personal/payment-links").json()["items"][0]["status"] == "active"


def test_a_non_member_cannot_tell_an_organization_that_exists_from_one_that_does_not(team):
    """The outsider's 404 for a real organization is the very answer for a made-up id."""
    org, members = team
    outsider, made_up = members[OUTSIDER], str(uuid.uuid4())
    for method, path, form, probe in table_routes():
        if form != "org" or probe.params is not None:
            continue
        body = probe.body(None, OUTSIDER) if probe.body else None
        answers = [outsider.request(method.upper(), path.format(org_id=org_id), json=body)
                   for org_id in (org["id"], made_up)]
        assert [a.status_code for a in answers] == [404, 404], path
        assert answers[0].json() == answers[1].json(), path
