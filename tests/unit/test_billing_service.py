"""The billing service, one worker at a time, on a real PostgreSQL database.

`worker_factory` hands the service the test's own session and mocks everything else: `orgs` (a small
fake of the permission table answers `authorize`), the gateway adapters (`gateway_stripe`,
`gateway_cashfree`) and the outbox relay. What billing commits, and the outbox rows it stages, are
read back here. gateway.* events are delivered by calling the consumers directly, as nameko would
(the consumer commits itself and dedupes on `event_id`). After every call the session is rolled
back, as a worker's session is closed: only what the service committed survives.
"""
import itertools
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from services.billing.models import BillingAccount, Checkout, Outbox, PaymentMethodSnapshot, Quote
from services.billing.service import BillingService
from shared.config import settings
from shared.errors import Conflict, Forbidden, GatewayError, NotFound, ValidationFailed
from shared.events import validate_event
from shared.outbox import rfc3339, utc_now
from shared.permissions import MANAGE_BILLING, VIEW_BILLING, org_account
from tests.unit.workers import end_like_workers

ORG_ID = str(uuid4())
ORG = org_account(ORG_ID)
PERSONAL = {"kind": "personal"}

# The permission table of API.md for billing actions, written out by hand.
ROLES_ALLOWED = {
    VIEW_BILLING: {"owner", "super_admin", "admin"},
    MANAGE_BILLING: {"owner", "super_admin"},
}

DAY = 86400
NOW = int(time.time())
PERIOD_START = NOW - 15 * DAY  # halfway through a 30-day period
PERIOD_END = PERIOD_START + 30 * DAY
NEXT_PERIOD_END = PERIOD_END + 30 * DAY

STARTER = {"code": "starter_monthly", "name": "Starter", "interval": "month", "amount": 1900, "currency": "usd"}
GIB = 1024 ** 3


def iso(unix_seconds):
    return rfc3339(datetime.fromtimestamp(unix_seconds, timezone.utc))


# -- helpers -----------------------------------------------------------------------------------

INDIAN_PHONE = "+919812345678"
PEOPLE = {}  # everyone make_person made, by id: what identity.get_user answers (fake_get_user)


def make_person(country="US", phone=...):
    """A signed-in principal, as gateway_http hands it to the service. Identity knows them; they
    have a phone if they live in India (as signup requires there) unless `phone` says otherwise."""
    user_id = str(uuid4())
    if phone is ...:
        phone = INDIAN_PHONE if country == "IN" else None
    person = {"id": user_id, "email": f"user-{user_id[:8]}@example.com", "name": f"User {user_id[:8]}",
              "country": country, "phone": phone}
    PEOPLE[user_id] = person
    return person


def fake_get_user(user_id):
    if user_id not in PEOPLE:
        raise NotFound("No such user.")
    return {**PEOPLE[user_id], "created_at": "2026-01-01T00:00:00Z"}


def fake_authorize(roles, country="US"):
    """orgs.authorize for one org (ORG_ID, in `country`) whose members are `roles` (user id -> role)."""

    def authorize(user_id, ref, action):
        if ref["kind"] == "personal":
            if ref["id"] != user_id:
                raise NotFound("Not found.")
            return {"account": {"kind": "personal", "id": user_id, "owner_id": user_id}, "role": "owner",
                    "actions": ["billing.view", "billing.manage"]}
        role = roles.get(user_id) if ref["id"] == ORG_ID else None
        if role is None:
            raise NotFound("No such organization.")
        if role not in ROLES_ALLOWED[action]:
            raise Forbidden()
        owner_id = next(user for user, held in roles.items() if held == "owner")
        return {"account": {"kind": "org", "id": ORG_ID, "name": "Acme", "country": country, "owner_id": owner_id},
                "role": role, "actions": [name for name, allowed in ROLES_ALLOWED.items() if role in allowed]}

    return authorize


def hosted_checkouts():
    """adapter.create_checkout: a new sandbox session for each call (cs_test_1, cs_test_2, ...)."""
    numbers = itertools.count(1)

    def create_checkout(request):
        gateway_checkout_id = f"cs_test_{next(numbers)}"
        return {"gateway_checkout_id": gateway_checkout_id,
                "redirect_url": f"http://sandbox/checkout/{gateway_checkout_id}",
                "expires_at": request["expires_at"]}

    return create_checkout


EVENT_DEFAULTS = {
    "checkout_completed": lambda: {
        "gateway_checkout_id": "cs_test_1", "gateway_subscription_id": "sub_1", "gateway_customer_id": "cus_1",
        "collected": {"amount": 1900, "currency": "usd"}},
    "checkout_failed": lambda: {"gateway_checkout_id": "cs_test_1", "reason": "declined"},
    "subscription_updated": lambda: {
        "gateway_subscription_id": "sub_1", "checkout_id": None, "plan_code": "starter_monthly", "status": "active",
        "amount": 1900, "currency": "usd", "current_period_start": PERIOD_START, "current_period_end": PERIOD_END,
        "cancel_at_period_end": False},
    "payment_succeeded": lambda: {
        "gateway_invoice_id": "in_1", "gateway_subscription_id": "sub_1", "amount": 1900, "currency": "usd",
        "description": "Starter (monthly)", "invoice_url": "http://sandbox/invoices/in_1",
        "period_start": PERIOD_START, "period_end": PERIOD_END},
    "payment_failed": lambda: {
        "gateway_invoice_id": "in_2", "gateway_subscription_id": "sub_1", "amount": 1900, "currency": "usd",
        "description": "Starter (monthly)", "invoice_url": "http://sandbox/invoices/in_2",
        "period_start": PERIOD_END, "period_end": NEXT_PERIOD_END},
}
HANDLERS = {
    "checkout_completed": "on_checkout_completed", "checkout_failed": "on_checkout_failed",
    "subscription_updated": "on_subscription_updated", "payment_succeeded": "on_payment_succeeded",
    "payment_failed": "on_payment_failed",
}


def gateway_event(type, **fields):
    """A gateway.<type> payload as an adapter publishes it (checked against its schema)."""
    payload = {"event_id": str(uuid4()), "occurred_at": rfc3339(utc_now()), "gateway": "stripe",
               "gateway_event_id": f"evt_{uuid4().hex[:16]}", "gateway_event_at": NOW,
               **EVENT_DEFAULTS[type](), **fields}
    validate_event(f"gateway.{type}", payload)
    return type, payload


def adapter_snapshot(**fields):
    """What adapter.change_subscription / cancel_subscription return: the subscription_updated data."""
    _, payload = gateway_event("subscription_updated", **fields)
    return {key: value for key, value in payload.items() if key not in ("event_id", "occurred_at")}


def outbox_events(session, event_type):
    """Payloads of the staged `event_type` events."""
    return [row.payload for row in session.scalars(select(Outbox).where(Outbox.event_type == event_type))]


@dataclass
class Team:
    """The org's members by role, and a person who is not a member."""

    owner: dict
    super_admin: dict
    admin: dict
    standard: dict
    outsider: dict

    def person(self, role):
        return getattr(self, role)


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture
def session(db_session):
    return db_session("billing")


@pytest.fixture
def roles():
    return {}


ENTRYPOINTS = ("summary", "create_quote", "create_checkout", "get_checkout", "list_history", "list_payment_methods",
               "cancel_subscription", *HANDLERS.values())


@pytest.fixture
def billing(session, roles):
    service = worker_factory(BillingService, db=session)
    service.usage.summary_for.return_value = {"used_bytes": 0}

    end_like_workers(service, session, ENTRYPOINTS)
    service.orgs.authorize.side_effect = fake_authorize(roles)
    service.identity.get_user.side_effect = fake_get_user
    for adapter in (service.gateway_stripe, service.gateway_cashfree):
        adapter.create_checkout.side_effect = hosted_checkouts()
    return service


@pytest.fixture
def team(roles):
    people = {role: make_person() for role in ("owner", "super_admin", "admin", "standard")}
    roles.update({person["id"]: role for role, person in people.items()})
    return Team(**people, outsider=make_person())


@pytest.fixture
def refused(session):
    """`with refused(Conflict, "NO_SUBSCRIPTION"):` the call must raise that error (and code)."""

    @contextmanager
    def refused(error_type, code=None):
        with pytest.raises(error_type) as caught:
            yield caught
        assert type(caught.value) is error_type
        if code is not None:
            assert caught.value.error_code == code
    return refused


@pytest.fixture
def deliver(billing, caplog):
    """deliver(*events): hand each (type, payload) to its consumer; a dropped event fails the test."""

    def deliver(*events):
        for event_type, payload in events:
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="shared.consumers"):
                getattr(billing, HANDLERS[event_type])(payload)
            dropped = [r.getMessage() for r in caplog.records if r.name == "shared.consumers"]
            assert not dropped, dropped

    return deliver


@pytest.fixture
def account_id(billing, team, session):
    """The org's billing account id, as billing stored it (gateway events name the account by it)."""
    billing.create_quote(team.owner, ORG, {"plan_code": "starter_monthly"})  # any write makes the account
    return str(session.scalar(select(BillingAccount.id).where(BillingAccount.owner_ref == ORG_ID)))


def purchase_events(account_id, checkout_id):
    """What the gateway reports for a paid hosted checkout of Starter (monthly), in its own order."""
    return [
        gateway_event("checkout_completed", account_id=account_id, checkout_id=checkout_id, gateway_event_at=NOW),
        gateway_event("subscription_updated", account_id=account_id, checkout_id=checkout_id, gateway_event_at=NOW),
        gateway_event("payment_succeeded", account_id=account_id, gateway_event_at=NOW),
    ]


@pytest.fixture
def bought(billing, team, account_id, deliver):
    """The org on Starter (monthly), bought through a hosted checkout and paid: returns the checkout."""
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    deliver(*purchase_events(account_id, checkout["id"]))
    return checkout


def subscription_of(billing, actor, ref=ORG):
    return billing.summary(actor, ref)["subscription"]


EXPECTED_STARTER_SUBSCRIPTION = {
    "plan": STARTER, "status": "active", "current_period_start": iso(PERIOD_START),
    "current_period_end": iso(PERIOD_END), "next_payment_date": iso(PERIOD_END), "cancel_at_period_end": False,
    "scheduled_change": None,
}


# -- the billing page --------------------------------------------------------------------------

@pytest.mark.parametrize("role, can_manage", [("owner", True), ("super_admin", True), ("admin", False)])
def test_an_org_without_a_plan_shows_buy_plan_and_who_may_manage_it(billing, team, role, can_manage):
    summary = billing.summary(team.person(role), ORG)

    assert summary["subscription"] is None
    assert summary["usage"]["quota_bytes"] is None
    assert summary["can_manage"] is can_manage
    assert {k: summary["account"][k] for k in ("kind", "id", "country", "currency", "gateway")} == {
        "kind": "org", "id": ORG_ID, "country": "US", "currency": "usd", "gateway": "stripe"}


@pytest.mark.parametrize("who, error", [("standard", Forbidden), ("outsider", NotFound)])
def test_a_standard_member_and_an_outsider_cannot_see_the_org_billing(billing, team, refused, who, error):
    with refused(error):
        billing.summary(team.person(who), ORG)


@pytest.mark.parametrize("country, currency, gateway", [("US", "usd", "stripe"), ("IN", "inr", "cashfree")])
def test_a_personal_account_takes_its_owners_country_currency_and_gateway(billing, country, currency, gateway):
    person = make_person(country=country)

    summary = billing.summary(person, PERSONAL)

    assert summary["subscription"] is None
    assert summary["can_manage"] is True
    account = summary["account"]
    assert (account["kind"], account["id"], account["country"], account["currency"], account["gateway"]) == (
        "personal", person["id"], country, currency, gateway)


def test_the_billing_account_the_summary_shows_is_the_one_that_pays(billing, team):
    shown = billing.summary(team.owner, ORG)["account"]["billing_account_id"]
    assert billing.summary(team.admin, ORG)["account"]["billing_account_id"] == shown

    billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})

    (request,), _ = billing.gateway_stripe.create_checkout.call_args
    assert request["account"]["id"] == shown


def test_personal_always_means_the_callers_own_account(billing):
    ann, bob = make_person(), make_person()
    assert billing.summary(ann, {"kind": "personal", "id": bob["id"]})["account"]["id"] == ann["id"]


# -- quotes ------------------------------------------------------------------------------------

def test_an_unknown_plan_cannot_be_quoted(billing, team, refused):
    with refused(ValidationFailed) as caught:
        billing.create_quote(team.owner, ORG, {"plan_code": "platinum_forever"})
    assert "plan_code" in caught.value.details


def test_a_quote_for_a_new_plan_is_one_line_at_the_full_price(billing, team, session):
    quote = billing.create_quote(team.owner, ORG, {"plan_code": "starter_monthly"})

    assert quote["kind"] == "new"
    assert quote["plan"]["code"] == "starter_monthly"
    assert quote["currency"] == "usd"
    assert quote["lines"] == [{"description": "Starter (monthly)", "amount": 1900}]
    assert quote["amount_due"] == 1900
    expires_at = datetime.fromisoformat(quote["expires_at"])
    assert utc_now() < expires_at <= utc_now() + timedelta(hours=1)
    assert session.get(Quote, UUID(quote["id"])) is not None


def test_an_indian_account_is_quoted_in_rupees(billing):
    quote = billing.create_quote(make_person(country="IN"), PERSONAL, {"plan_code": "starter_monthly"})
    assert (quote["currency"], quote["amount_due"]) == ("inr", 149900)


def test_an_admin_may_not_ask_for_a_quote(billing, team, refused, session):
    with refused(Forbidden):
        billing.create_quote(team.admin, ORG, {"plan_code": "starter_monthly"})
    assert session.scalar(select(Quote)) is None


def test_the_current_plan_cannot_be_quoted_again(billing, team, refused, bought):
    with refused(Conflict, "ALREADY_ON_PLAN"):
        billing.create_quote(team.owner, ORG, {"plan_code": "starter_monthly"})


def test_a_change_quote_credits_the_unused_time_and_charges_the_new_plan(billing, team, bought):
    quote = billing.create_quote(team.owner, ORG, {"plan_code": "growth_monthly"})

    assert quote["kind"] == "change"
    credit, charge = [line["amount"] for line in quote["lines"]]
    # About half the period is left: -950 for Starter, +2450 for Growth (a few seconds' rounding aside).
    assert -951 <= credit <= -949
    assert 2449 <= charge <= 2451
    assert quote["amount_due"] == credit + charge


# -- checkouts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    pytest.param({}, id="neither"),
    pytest.param({"plan_code": "starter_monthly", "quote_id": str(uuid4())}, id="both"),
])
def test_a_checkout_needs_a_plan_code_or_a_quote_but_not_both(billing, team, refused, data):
    with refused(ValidationFailed):
        billing.create_checkout(team.owner, ORG, data)
    billing.gateway_stripe.create_checkout.assert_not_called()


def test_a_checkout_for_a_plan_opens_a_hosted_checkout_at_the_accounts_gateway(billing, team):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})

    assert checkout["status"] == "open"
    assert checkout["gateway"] == "stripe"
    assert checkout["redirect_url"] == "http://sandbox/checkout/cs_test_1"
    assert (checkout["plan_code"], checkout["amount"], checkout["currency"]) == ("starter_monthly", 1900, "usd")
    billing.gateway_cashfree.create_checkout.assert_not_called()
    (request,), _ = billing.gateway_stripe.create_checkout.call_args
    base = settings().public_base_url
    assert request["checkout_id"] == checkout["id"]
    assert request["success_url"].startswith(f"{base}/") and checkout["id"] in request["success_url"]
    assert request["cancel_url"].startswith(f"{base}/") and checkout["id"] in request["cancel_url"]
    assert request["success_url"] != request["cancel_url"]
    assert {k: request["plan"][k] for k in STARTER} == STARTER
    assert billing.get_checkout(team.admin, ORG, checkout["id"])["status"] == "open"


def test_an_indian_account_pays_through_cashfree_in_rupees(billing):
    person = make_person(country="IN")

    checkout = billing.create_checkout(person, PERSONAL, {"plan_code": "growth_yearly"})

    assert (checkout["gateway"], checkout["amount"], checkout["currency"]) == ("cashfree", 3999000, "inr")
    billing.gateway_stripe.create_checkout.assert_not_called()
    (request,), _ = billing.gateway_cashfree.create_checkout.call_args
    assert (request["plan"]["amount"], request["plan"]["currency"]) == (3999000, "inr")


def test_the_gateway_is_given_the_org_owners_contact_whoever_opens_the_checkout(billing, team, roles):
    billing.orgs.authorize.side_effect = fake_authorize(roles, country="IN")
    team.owner["phone"] = PEOPLE[team.owner["id"]]["phone"] = INDIAN_PHONE
    billing.summary(team.admin, ORG)  # the first to open the billing page is not who pays

    billing.create_checkout(team.super_admin, ORG, {"plan_code": "starter_monthly"})

    (request,), _ = billing.gateway_cashfree.create_checkout.call_args
    owner = team.owner
    assert {k: request["account"][k] for k in ("email", "name", "phone")} == {
        "email": owner["email"], "name": owner["name"], "phone": INDIAN_PHONE}


def test_an_indian_checkout_without_the_payers_phone_is_refused_before_anything_is_recorded(
        billing, refused, session):
    person = make_person(country="IN", phone=None)  # e.g. signed up before phones were asked for

    with refused(ValidationFailed, "PHONE_REQUIRED") as caught:
        billing.create_checkout(person, PERSONAL, {"plan_code": "starter_monthly"})

    assert list(caught.value.details) == ["phone"]
    assert session.scalar(select(Checkout)) is None and session.scalar(select(Quote)) is None
    billing.gateway_cashfree.create_checkout.assert_not_called()


def test_an_indian_orgs_checkout_needs_its_owners_phone_not_the_managers(billing, team, roles, refused, session):
    """A US owner of an Indian organization has no phone; a super admin's own does not stand in."""
    billing.orgs.authorize.side_effect = fake_authorize(roles, country="IN")
    team.super_admin["phone"] = PEOPLE[team.super_admin["id"]]["phone"] = INDIAN_PHONE

    with refused(ValidationFailed, "PHONE_REQUIRED") as caught:
        billing.create_checkout(team.super_admin, ORG, {"plan_code": "starter_monthly"})

    assert "owner" in caught.value.message
    assert session.scalar(select(Checkout)) is None
    billing.gateway_cashfree.create_checkout.assert_not_called()


def test_a_us_checkout_needs_no_phone(billing, team):
    assert team.owner["phone"] is None
    assert billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})["status"] == "open"
    (request,), _ = billing.gateway_stripe.create_checkout.call_args
    assert request["account"]["email"] == team.owner["email"]


def test_a_checkout_for_a_quote_is_opened_once_however_often_it_is_asked_for(billing, team):
    quote = billing.create_quote(team.owner, ORG, {"plan_code": "starter_monthly"})

    first = billing.create_checkout(team.owner, ORG, {"quote_id": quote["id"]})
    second = billing.create_checkout(team.owner, ORG, {"quote_id": quote["id"]})

    assert second["id"] == first["id"]
    assert second["status"] == "open"
    assert second["quote_id"] == quote["id"]
    assert billing.gateway_stripe.create_checkout.call_count == 1


def test_a_gateway_failure_leaves_a_failed_checkout_that_a_retry_reopens_under_the_same_id(
        billing, team, refused, session):
    adapter = billing.gateway_stripe
    quote = billing.create_quote(team.owner, ORG, {"plan_code": "starter_monthly"})
    adapter.create_checkout.side_effect = GatewayError(details={"gateway": "stripe"})

    with refused(GatewayError):
        billing.create_checkout(team.owner, ORG, {"quote_id": quote["id"]})

    stored = session.scalar(select(Checkout))
    assert (stored.status, stored.failure_reason) == ("failed", "gateway_error")
    failed = billing.get_checkout(team.owner, ORG, str(stored.id))
    assert (failed["status"], failed["failure_reason"]) == ("failed", "gateway_error")

    adapter.create_checkout.side_effect = hosted_checkouts()
    retried = billing.create_checkout(team.owner, ORG, {"quote_id": quote["id"]})

    assert retried["id"] == str(stored.id)
    assert retried["status"] == "open"
    assert retried["failure_reason"] is None
    first_request, second_request = [c.args[0] for c in adapter.create_checkout.call_args_list]
    assert first_request["checkout_id"] == second_request["checkout_id"] == retried["id"]


def test_an_expired_quote_cannot_be_paid(billing, team, refused, session):
    quote = billing.create_quote(team.owner, ORG, {"plan_code": "starter_monthly"})
    session.get(Quote, UUID(quote["id"])).expires_at = utc_now() - timedelta(seconds=1)
    session.commit()

    with refused(Conflict, "QUOTE_EXPIRED"):
        billing.create_checkout(team.owner, ORG, {"quote_id": quote["id"]})
    billing.gateway_stripe.create_checkout.assert_not_called()
    assert session.scalar(select(Checkout)) is None


@pytest.mark.parametrize("quote_id", ["mine-from-elsewhere", "not-a-uuid", str(uuid4())])
def test_only_the_accounts_own_quotes_can_be_paid(billing, team, refused, quote_id):
    if quote_id == "mine-from-elsewhere":  # the owner's personal quote, used on the org's page
        quote_id = billing.create_quote(team.owner, PERSONAL, {"plan_code": "starter_monthly"})["id"]

    with refused(NotFound):
        billing.create_checkout(team.owner, ORG, {"quote_id": quote_id})
    billing.gateway_stripe.create_checkout.assert_not_called()


def test_a_new_checkout_expires_the_accounts_other_open_checkout(billing, team):
    first = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})

    second = billing.create_checkout(team.super_admin, ORG, {"plan_code": "growth_monthly"})

    assert second["status"] == "open"
    billing.gateway_stripe.expire_checkout.assert_called_once_with("cs_test_1")
    assert billing.get_checkout(team.owner, ORG, first["id"])["status"] == "expired"
    assert billing.get_checkout(team.owner, ORG, second["id"])["status"] == "open"


def test_an_open_checkout_past_its_expiry_reads_as_expired(billing, team, session):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    session.get(Checkout, UUID(checkout["id"])).expires_at = utc_now() - timedelta(seconds=1)
    session.commit()

    assert billing.get_checkout(team.owner, ORG, checkout["id"])["status"] == "expired"
    assert session.get(Checkout, UUID(checkout["id"])).status == "expired"


def test_another_accounts_checkout_is_not_found(billing, team, refused):
    personal = billing.create_checkout(team.owner, PERSONAL, {"plan_code": "starter_monthly"})
    with refused(NotFound):
        billing.get_checkout(team.owner, ORG, personal["id"])


# -- a purchase, as the gateway reports it --------------------------------------------------------

def test_a_paid_checkout_makes_the_plan_active_until_the_period_end(billing, team, session, bought):
    summary = billing.summary(team.admin, ORG)

    assert summary["subscription"] == EXPECTED_STARTER_SUBSCRIPTION
    assert summary["usage"]["quota_bytes"] == 10 * GIB
    assert billing.get_checkout(team.owner, ORG, bought["id"])["status"] == "completed"
    history = billing.list_history(team.owner, ORG)
    assert [(line["status"], line["amount"], line["currency"]) for line in history] == [("paid", 1900, "usd")]
    assert history[0]["date"] == iso(NOW)
    purchased = outbox_events(session, "plan.purchased")
    assert len(purchased) == 1
    assert purchased[0]["plan_code"] == "starter_monthly"
    assert purchased[0]["checkout_id"] == bought["id"]
    assert purchased[0]["account"] == {"kind": "org", "id": ORG_ID}
    assert purchased[0]["data_quota_bytes"] == 10 * GIB


def test_every_event_delivered_three_times_changes_nothing_more(billing, team, account_id, session, deliver):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    events = purchase_events(account_id, checkout["id"])

    for _ in range(3):
        deliver(*events)

    assert subscription_of(billing, team.owner) == EXPECTED_STARTER_SUBSCRIPTION
    assert len(billing.list_history(team.owner, ORG)) == 1
    assert len(outbox_events(session, "plan.purchased")) == 1


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=lambda o: "-".join(map(str, o)))
def test_the_purchase_events_in_any_order_end_in_the_same_state(billing, team, account_id, session, deliver, order):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    events = purchase_events(account_id, checkout["id"])

    deliver(*[events[i] for i in order])

    assert subscription_of(billing, team.owner) == EXPECTED_STARTER_SUBSCRIPTION
    assert billing.get_checkout(team.owner, ORG, checkout["id"])["status"] == "completed"
    assert [line["status"] for line in billing.list_history(team.owner, ORG)] == ["paid"]
    assert len(outbox_events(session, "plan.purchased")) == 1


def test_a_completed_checkout_shows_the_plan_before_the_subscriptions_own_events_arrive(
        billing, team, account_id, session, deliver):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    completed, updated, paid = purchase_events(account_id, checkout["id"])

    deliver(completed)

    subscription = subscription_of(billing, team.owner)
    assert (subscription["status"], subscription["plan"]) == ("active", STARTER)
    # plan.purchased carries the period, which only the subscription's or invoice's facts bring.
    assert outbox_events(session, "plan.purchased") == []

    deliver(updated, paid)

    assert subscription_of(billing, team.owner) == EXPECTED_STARTER_SUBSCRIPTION
    assert len(outbox_events(session, "plan.purchased")) == 1


def test_the_subscriptions_own_events_grant_nothing_until_the_gateway_says_what_it_collected(
        billing, team, account_id, session, deliver):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    completed, updated, paid = purchase_events(account_id, checkout["id"])

    deliver(updated, paid)  # checkout.session.completed late (or lost, until reconciliation reads it)

    assert billing.get_checkout(team.owner, ORG, checkout["id"])["status"] == "open"
    subscription = subscription_of(billing, team.owner)
    assert (subscription["status"], subscription["next_payment_date"]) == ("incomplete", None)
    assert billing.summary(team.owner, ORG)["usage"]["quota_bytes"] is None
    assert outbox_events(session, "plan.purchased") == []

    deliver(completed)

    assert billing.get_checkout(team.owner, ORG, checkout["id"])["status"] == "completed"
    assert subscription_of(billing, team.owner) == EXPECTED_STARTER_SUBSCRIPTION
    assert len(outbox_events(session, "plan.purchased")) == 1


def test_a_snapshot_older_than_the_one_applied_is_ignored(billing, team, account_id, deliver, bought):
    deliver(gateway_event("subscription_updated", account_id=account_id, gateway_event_at=NOW + 100,
                          current_period_start=PERIOD_END, current_period_end=NEXT_PERIOD_END))
    deliver(gateway_event("subscription_updated", account_id=account_id, gateway_event_at=NOW + 50,
                          status="past_due"))

    subscription = subscription_of(billing, team.owner)
    assert subscription["status"] == "active"
    assert subscription["current_period_end"] == iso(NEXT_PERIOD_END)


# -- a declined payment ------------------------------------------------------------------------

def test_a_declined_checkout_fails_and_buys_nothing(billing, team, account_id, session, deliver):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})

    deliver(gateway_event("checkout_failed", account_id=account_id, checkout_id=checkout["id"], reason="declined"))

    failed = billing.get_checkout(team.owner, ORG, checkout["id"])
    assert (failed["status"], failed["failure_reason"]) == ("failed", "declined")
    assert subscription_of(billing, team.owner) is None
    assert outbox_events(session, "plan.purchased") == []


@pytest.mark.parametrize("reason", ["declined", "expired"])
def test_a_late_checkout_failure_does_not_undo_a_completed_purchase(billing, team, account_id, deliver, bought,
                                                                     reason):
    deliver(gateway_event("checkout_failed", account_id=account_id, checkout_id=bought["id"], reason=reason,
                          gateway_event_at=NOW + 60))

    assert billing.get_checkout(team.owner, ORG, bought["id"])["status"] == "completed"
    assert subscription_of(billing, team.owner)["status"] == "active"


# -- changing plan -----------------------------------------------------------------------------

def test_a_plan_change_is_applied_to_the_existing_subscription(billing, team, account_id, session, bought):
    adapter = billing.gateway_stripe
    adapter.change_subscription.side_effect = lambda request: adapter_snapshot(
        account_id=request["account_id"], checkout_id=request["checkout_id"], plan_code=request["plan"]["code"],
        amount=request["plan"]["amount"], gateway_event_at=NOW + 60)
    quote = billing.create_quote(team.owner, ORG, {"plan_code": "growth_monthly"})

    checkout = billing.create_checkout(team.owner, ORG, {"quote_id": quote["id"]})

    assert checkout["status"] == "completed"
    assert adapter.create_checkout.call_count == 1  # the original purchase only
    (request,), _ = adapter.change_subscription.call_args
    assert request["gateway_subscription_id"] == "sub_1"
    assert request["plan"]["code"] == "growth_monthly"
    assert request["change_id"] == checkout["id"]
    assert request["account_id"] == account_id
    subscription = subscription_of(billing, team.owner)
    assert (subscription["plan"]["code"], subscription["plan"]["amount"]) == ("growth_monthly", 4900)
    changed = outbox_events(session, "plan.changed")
    assert len(changed) == 1
    assert (changed[0]["from_plan_code"], changed[0]["plan_code"]) == ("starter_monthly", "growth_monthly")
    assert changed[0]["data_quota_bytes"] == 100 * GIB
    assert len(outbox_events(session, "plan.purchased")) == 1


# -- cancelling --------------------------------------------------------------------------------

def test_cancelling_at_period_end_keeps_the_plan_until_then_without_a_next_payment(
        billing, team, account_id, session, deliver, bought):
    adapter = billing.gateway_stripe
    adapter.cancel_subscription.return_value = adapter_snapshot(
        account_id=account_id, checkout_id=bought["id"], cancel_at_period_end=True, gateway_event_at=NOW + 60)

    subscription = billing.cancel_subscription(team.owner, ORG, {})

    (request,), _ = adapter.cancel_subscription.call_args
    assert (request["gateway_subscription_id"], request["at_period_end"]) == ("sub_1", True)
    assert subscription["status"] == "active"
    assert subscription["next_payment_date"] is None
    assert subscription["cancel_at_period_end"] is True
    assert subscription_of(billing, team.owner) == subscription
    assert outbox_events(session, "plan.cancelled") == []

    ended = gateway_event("subscription_updated", account_id=account_id, status="cancelled",
                          cancel_at_period_end=True, gateway_event_at=NOW + 120)
    deliver(ended, ended)
    deliver(gateway_event("subscription_updated", account_id=account_id, status="cancelled",
                          cancel_at_period_end=True, gateway_event_at=NOW + 120))  # redelivered under a new id
    deliver(gateway_event("subscription_updated", account_id=account_id, gateway_event_at=NOW + 90))
    deliver(gateway_event("subscription_updated", account_id=account_id, status="cancelled",
                          cancel_at_period_end=False, gateway_event_at=NOW + 180))  # a later, still cancelled one

    assert subscription_of(billing, team.owner)["status"] == "cancelled"
    cancelled = outbox_events(session, "plan.cancelled")
    assert len(cancelled) == 1
    assert cancelled[0]["plan_code"] == "starter_monthly"


def test_asking_again_to_cancel_at_period_end_does_not_go_back_to_the_gateway(billing, team, account_id, bought):
    adapter = billing.gateway_stripe
    adapter.cancel_subscription.return_value = adapter_snapshot(
        account_id=account_id, cancel_at_period_end=True, gateway_event_at=NOW + 60)
    first = billing.cancel_subscription(team.owner, ORG, {"at_period_end": True})

    second = billing.cancel_subscription(team.super_admin, ORG, {})

    assert second == first
    assert adapter.cancel_subscription.call_count == 1


def test_cancelling_without_a_plan_is_a_conflict(billing, team, refused):
    with refused(Conflict, "NO_SUBSCRIPTION"):
        billing.cancel_subscription(team.owner, ORG, {})
    billing.gateway_stripe.cancel_subscription.assert_not_called()


def test_a_plan_that_has_ended_cannot_be_cancelled_again(billing, team, account_id, deliver, refused, bought):
    deliver(gateway_event("subscription_updated", account_id=account_id, status="cancelled",
                          gateway_event_at=NOW + 120))
    billing.gateway_stripe.cancel_subscription.side_effect = AssertionError("the gateway was asked to cancel it")

    with refused(Conflict, "NO_SUBSCRIPTION"):
        billing.cancel_subscription(team.owner, ORG, {"at_period_end": False})


def test_an_admin_may_not_cancel(billing, team, refused, bought):
    with refused(Forbidden):
        billing.cancel_subscription(team.admin, ORG, {})
    billing.gateway_stripe.cancel_subscription.assert_not_called()


@pytest.mark.parametrize("plan_code, amount", [("starter_monthly", 1900), ("growth_monthly", 4900)])
def test_after_a_cancellation_a_plan_is_bought_anew_through_a_hosted_checkout(
        billing, team, account_id, deliver, bought, plan_code, amount):
    deliver(gateway_event("subscription_updated", account_id=account_id, status="cancelled",
                          current_period_start=PERIOD_START - 30 * DAY, current_period_end=PERIOD_START,
                          gateway_event_at=NOW + 120))
    assert subscription_of(billing, team.owner)["status"] == "cancelled"

    quote = billing.create_quote(team.owner, ORG, {"plan_code": plan_code})
    assert (quote["kind"], quote["amount_due"]) == ("new", amount)
    checkout = billing.create_checkout(team.owner, ORG, {"quote_id": quote["id"]})

    assert checkout["status"] == "open"
    billing.gateway_stripe.change_subscription.assert_not_called()
    assert billing.gateway_stripe.create_checkout.call_count == 2


# -- renewals and failed payments --------------------------------------------------------------

def test_a_paid_renewal_moves_the_period_on(billing, team, account_id, deliver, bought):
    deliver(gateway_event("payment_succeeded", account_id=account_id, gateway_invoice_id="in_2",
                          period_start=PERIOD_END, period_end=NEXT_PERIOD_END, gateway_event_at=PERIOD_END))

    subscription = subscription_of(billing, team.owner)
    assert subscription["status"] == "active"
    assert subscription["current_period_start"] == iso(PERIOD_END)
    assert subscription["current_period_end"] == subscription["next_payment_date"] == iso(NEXT_PERIOD_END)
    assert [line["status"] for line in billing.list_history(team.owner, ORG)] == ["paid", "paid"]


def test_a_failed_renewal_makes_the_plan_past_due_once(billing, team, account_id, session, deliver, bought):
    failure = gateway_event("payment_failed", account_id=account_id, gateway_event_at=NOW + 60)

    deliver(failure)
    deliver(failure)
    deliver(gateway_event("payment_failed", account_id=account_id, gateway_event_at=NOW + 60))  # same invoice, new id

    subscription = subscription_of(billing, team.owner)
    assert subscription["status"] == "past_due"
    assert subscription["next_payment_date"] is None
    history = billing.list_history(team.owner, ORG)
    assert [(line["status"], line["amount"]) for line in history] == [("failed", 1900), ("paid", 1900)]
    failed = outbox_events(session, "payment.failed")
    assert len(failed) == 1
    assert (failed[0]["gateway_invoice_id"], failed[0]["amount"], failed[0]["currency"]) == ("in_2", 1900, "usd")


def test_an_old_payment_reported_again_under_a_new_id_does_not_undo_a_failed_renewal(
        billing, team, account_id, session, deliver, bought):
    deliver(gateway_event("payment_failed", account_id=account_id, gateway_event_at=NOW + 60))
    assert subscription_of(billing, team.owner)["status"] == "past_due"

    # The first period's payment (in_1) again, as a replay or a reconciliation would report it:
    # the same invoice under a new event id. It was applied once; it must not make the plan active.
    deliver(gateway_event("payment_succeeded", account_id=account_id, gateway_event_at=NOW))

    assert subscription_of(billing, team.owner)["status"] == "past_due"
    assert [line["status"] for line in billing.list_history(team.owner, ORG)] == ["failed", "paid"]
    assert len(outbox_events(session, "plan.purchased")) == 1


def test_a_paid_retry_of_a_failed_renewal_makes_the_plan_active_again(billing, team, account_id, deliver, bought):
    renewal = {"period_start": PERIOD_END, "period_end": NEXT_PERIOD_END}
    deliver(
        gateway_event("subscription_updated", account_id=account_id, status="past_due", gateway_event_at=NOW + 60,
                      current_period_start=PERIOD_END, current_period_end=NEXT_PERIOD_END),
        gateway_event("payment_failed", account_id=account_id, gateway_event_at=NOW + 60, **renewal),
    )
    assert subscription_of(billing, team.owner)["status"] == "past_due"

    deliver(gateway_event("payment_succeeded", account_id=account_id, gateway_invoice_id="in_2",
                          gateway_event_at=NOW + 120, **renewal))

    subscription = subscription_of(billing, team.owner)
    assert subscription["status"] == "active"
    assert subscription["next_payment_date"] == iso(NEXT_PERIOD_END)
    assert [line["status"] for line in billing.list_history(team.owner, ORG)] == ["paid", "failed", "paid"]


def test_a_late_failure_of_an_invoice_that_was_since_paid_leaves_the_plan_active(
        billing, team, account_id, deliver, bought):
    # In order: in_2 fails (past_due), the retry pays it (active). Delivered with the failure last:
    deliver(
        gateway_event("subscription_updated", account_id=account_id, current_period_start=PERIOD_END,
                      current_period_end=NEXT_PERIOD_END, gateway_event_at=NOW + 120),
        gateway_event("payment_succeeded", account_id=account_id, gateway_invoice_id="in_2",
                      period_start=PERIOD_END, period_end=NEXT_PERIOD_END, gateway_event_at=NOW + 120),
        gateway_event("subscription_updated", account_id=account_id, status="past_due", gateway_event_at=NOW + 60),
        gateway_event("payment_failed", account_id=account_id, gateway_invoice_id="in_2", gateway_event_at=NOW + 60),
    )

    assert subscription_of(billing, team.owner)["status"] == "active"


# -- payment methods ---------------------------------------------------------------------------

CARD = {"id": "pm_1", "type": "card", "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030,
        "is_default": True}


def test_payment_methods_come_from_the_gateway_and_are_remembered(billing, team, account_id, session):
    billing.gateway_stripe.list_payment_methods.return_value = [CARD]

    assert billing.list_payment_methods(team.admin, ORG) == {"items": [CARD], "stale": False}

    billing.gateway_stripe.list_payment_methods.assert_called_once_with(account_id)
    assert session.get(PaymentMethodSnapshot, UUID(account_id)).methods == [CARD]


def test_when_the_gateway_fails_the_last_known_payment_methods_are_shown_as_stale(billing, team):
    adapter = billing.gateway_stripe
    adapter.list_payment_methods.side_effect = GatewayError()
    assert billing.list_payment_methods(team.owner, ORG) == {"items": [], "stale": True}

    adapter.list_payment_methods.side_effect = None
    adapter.list_payment_methods.return_value = [CARD]
    billing.list_payment_methods(team.owner, ORG)
    adapter.list_payment_methods.side_effect = GatewayError()

    assert billing.list_payment_methods(team.owner, ORG) == {"items": [CARD], "stale": True}


def test_a_renewal_announces_the_new_period_once(billing, team, account_id, session, deliver, bought):
    renewal = gateway_event("payment_succeeded", account_id=account_id, gateway_invoice_id="in_renewal",
                            period_start=PERIOD_END, period_end=NEXT_PERIOD_END, gateway_event_at=PERIOD_END)
    deliver(renewal, renewal)
    [renewed] = outbox_events(session, "plan.renewed")
    assert renewed["current_period_end"] == subscription_of(billing, team.owner)["current_period_end"]


def test_a_payment_that_arrives_before_its_subscription_still_sets_the_period(billing, team, account_id, deliver):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    completed, _, paid = purchase_events(account_id, checkout["id"])
    deliver(paid, completed)  # the payment first: no subscription here yet to put its period on
    subscription = subscription_of(billing, team.owner)
    assert (subscription["status"], subscription["current_period_end"]) == ("active", iso(PERIOD_END))


def test_the_summary_shows_usage_against_the_plans_quota(billing, team, bought):
    billing.usage.summary_for.return_value = {"used_bytes": 9663676416}  # 9 GiB of Starter's 10 GiB
    assert billing.summary(team.owner, ORG)["usage"] == {
        "used_bytes": 9663676416, "quota_bytes": 10737418240, "percent": 90.0, "over_quota": False}
    billing.usage.summary_for.return_value = {"used_bytes": 10737418241}
    assert billing.summary(team.owner, ORG)["usage"]["over_quota"] is True


def test_a_silent_usage_service_does_not_break_the_billing_page(billing, team, bought):
    billing.usage.summary_for.side_effect = RuntimeError("usage is down")
    usage = billing.summary(team.owner, ORG)["usage"]
    assert (usage["used_bytes"], usage["quota_bytes"], usage["percent"]) == (None, 10737418240, None)


def test_a_gateway_fact_naming_another_accounts_checkout_or_subscription_changes_nothing(
        billing, team, account_id, deliver, caplog, session):
    """An event for account A that names B's checkout must not complete B's checkout or move B's plan."""
    org_checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    billing.summary(team.owner, PERSONAL)  # the owner's personal account exists too
    personal_id = str(session.scalar(select(BillingAccount.id).where(BillingAccount.kind == "personal")))
    completed, _, _ = purchase_events(personal_id, org_checkout["id"])
    _, payload = completed
    with caplog.at_level("ERROR"):
        billing.on_checkout_completed(payload)
    assert billing.get_checkout(team.owner, ORG, org_checkout["id"])["status"] == "open"
    assert subscription_of(billing, team.owner) is None
    assert subscription_of(billing, team.owner, PERSONAL) is None
