"""Identity and organizations through the running stack, as a client would use them."""
import uuid

import pytest
from openapi_spec_validator import validate

from tests.e2e.conftest import PASSWORD, eventually

pytestmark = pytest.mark.e2e


def test_the_stack_is_healthy_and_describes_itself(anonymous):
    health = anonymous.get("/healthz")
    assert health.status_code == 200
    assert set(health.json()["services"]) == {"identity", "orgs", "billing", "usage", "usage_ingest",
                                              "gateway_stripe", "gateway_cashfree"}
    validate(anonymous.get("/api/v1/openapi.json").json())


def test_signup_login_org_invitations_and_roles(stack, anonymous, sign_up):
    """The foundation's acceptance flow: a US owner builds a team of three."""
    owner = sign_up(country="US", name="Ann", email="Ann.Owner@example.com", plan="growth_monthly")
    assert owner.signup_answer["pending_plan"] == {"code": "growth_monthly", "name": "Growth"}

    login = anonymous.post("/api/v1/auth/login", json={"email": "ann.owner@example.com", "password": PASSWORD})
    assert login.status_code == 200
    owner.token = login.json()["token"]

    org = owner.post("/api/v1/orgs", json={"name": "Acme Inc"})
    assert org.status_code == 201
    org = org.json()
    assert (org["country"], org["owner_id"]) == ("US", owner.user["id"])

    admin, standard = sign_up(name="Adam"), sign_up(name="Stan", country="IN")
    tokens = {}
    for person, role in ((admin, "admin"), (standard, "standard")):
        invitation = owner.post(f"/api/v1/orgs/{org['id']}/invitations",
                                json={"email": person.user["email"].upper(), "role": role})
        assert invitation.status_code == 201, invitation.text
        assert invitation.json()["status"] == "pending"
        tokens[role] = invitation.json()["token"]

    # The wrong person cannot use someone else's invitation.
    wrong = standard.post(f"/api/v1/invitations/{tokens['admin']}/accept")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "INVITATION_EMAIL_MISMATCH")

    assert admin.post(f"/api/v1/invitations/{tokens['admin']}/accept").json() == {"org_id": org["id"],
                                                                                   "role": "admin"}
    assert standard.post(f"/api/v1/invitations/{tokens['standard']}/accept").json()["role"] == "standard"

    members = owner.get(f"/api/v1/orgs/{org['id']}/members").json()["items"]
    assert [(m["name"], m["role"]) for m in members] == [("Ann", "owner"), ("Adam", "admin"), ("Stan", "standard")]
    invitations = owner.get(f"/api/v1/orgs/{org['id']}/invitations").json()["items"]
    assert {i["status"] for i in invitations} == {"accepted"}

    me = admin.get("/api/v1/me").json()
    assert me["organizations"] == [{"id": org["id"], "name": "Acme Inc", "role": "admin"}]
    assert me["pending_plan"] is None


# Expected status for each role on each org route; "ok" is the route's success status.
# Derived from API.md's permission table: members view, owner/super_admin manage, owner transfers.
ORG_ROUTE_MATRIX = [
    # route name,        owner, super_admin, admin, standard, outsider
    ("get_org",          "ok",  "ok",        "ok",  "ok",     404),
    ("list_members",     "ok",  "ok",        "ok",  "ok",     404),
    ("invite",           "ok",  "ok",        403,   403,      404),
    ("list_invitations", "ok",  "ok",        403,   403,      404),
    ("change_role",      "ok",  "ok",        403,   403,      404),
    ("transfer",         "ok",  403,         403,   403,      404),
]
CALLERS = ("owner", "super_admin", "admin", "standard", "outsider")


def call_org_route(name, client, org_id, target_id):
    base = f"/api/v1/orgs/{org_id}"
    return {
        "get_org": lambda: (client.get(base), 200),
        "list_members": lambda: (client.get(f"{base}/members"), 200),
        "invite": lambda: (client.post(f"{base}/invitations",
                                       json={"email": f"new-{uuid.uuid4().hex[:8]}@example.com", "role": "standard"}),
                           201),
        "list_invitations": lambda: (client.get(f"{base}/invitations"), 200),
        "change_role": lambda: (client.patch(f"{base}/members/{target_id}", json={"role": "admin"}), 200),
        "transfer": lambda: (client.post(f"{base}/transfer-ownership", json={"user_id": target_id}), 200),
    }[name]()


@pytest.mark.parametrize("route_name, expectations", [(row[0], row[1:]) for row in ORG_ROUTE_MATRIX])
def test_org_routes_follow_the_permission_table(team, sign_up, route_name, expectations):
    org, members = team
    for caller, expected in zip(CALLERS, expectations):
        # A fresh standard member as the target, so one call cannot change the next caller's rights.
        target = sign_up(name="target")
        invitation = members["owner"].post(f"/api/v1/orgs/{org['id']}/invitations",
                                           json={"email": target.user["email"], "role": "standard"}).json()
        target.post(f"/api/v1/invitations/{invitation['token']}/accept")
        response, success = call_org_route(route_name, members[caller], org["id"], target.user["id"])
        want = success if expected == "ok" else expected
        assert response.status_code == want, f"{caller} on {route_name}: {response.text}"
        if route_name == "transfer" and response.status_code == 200:
            # Hand the org back so the next caller finds the roles as the table assumes.
            assert target.post(f"/api/v1/orgs/{org['id']}/transfer-ownership",
                               json={"user_id": members["owner"].user["id"]}).status_code == 200


def test_owner_cannot_be_removed_and_there_is_never_a_second_owner(team):
    org, members = team
    base = f"/api/v1/orgs/{org['id']}"
    owner_id = members["owner"].user["id"]
    assert members["super_admin"].delete(f"{base}/members/{owner_id}").status_code == 403
    assert members["owner"].delete(f"{base}/members/{owner_id}").json()["error"]["code"] == "OWNER_REQUIRED"
    promote = members["owner"].patch(f"{base}/members/{members['admin'].user['id']}", json={"role": "owner"})
    assert (promote.status_code, promote.json()["error"]["code"]) == (409, "SECOND_OWNER")
    roles = [m["role"] for m in members["owner"].get(f"{base}/members").json()["items"]]
    assert roles.count("owner") == 1


def test_transfer_of_ownership_over_http(team):
    org, members = team
    base = f"/api/v1/orgs/{org['id']}"
    new_owner = members["admin"].user["id"]
    answer = members["owner"].post(f"{base}/transfer-ownership", json={"user_id": new_owner})
    assert answer.status_code == 200
    assert answer.json()["owner_id"] == new_owner
    roles = {m["user_id"]: m["role"] for m in members["owner"].get(f"{base}/members").json()["items"]}
    assert roles[new_owner] == "owner"
    assert roles[members["owner"].user["id"]] == "super_admin"


def test_a_non_member_cannot_tell_an_org_exists(team):
    org, members = team
    unknown = members["outsider"].get("/api/v1/orgs/00000000-0000-0000-0000-000000000000")
    hidden = members["outsider"].get(f"/api/v1/orgs/{org['id']}")
    assert unknown.status_code == hidden.status_code == 404
    assert unknown.json() == hidden.json()


def test_logout_stops_the_token_at_once(sign_up):
    user = sign_up()
    assert user.get("/api/v1/me").status_code == 200
    assert user.post("/api/v1/auth/logout").status_code == 204
    assert user.get("/api/v1/me").status_code == 401


def test_revoked_and_expired_invitations_cannot_be_accepted(team, sign_up):
    org, members = team
    guest = sign_up()
    invitation = members["owner"].post(f"/api/v1/orgs/{org['id']}/invitations",
                                       json={"email": guest.user["email"], "role": "admin"}).json()
    assert members["owner"].delete(f"/api/v1/orgs/{org['id']}/invitations/{invitation['id']}").status_code == 204
    refused = guest.post(f"/api/v1/invitations/{invitation['token']}/accept")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "INVITATION_REVOKED")


def test_invitation_tokens_never_reach_the_stacks_log(stack, team, sign_up):
    """The log holds every process's output: gateway_http's request lines, orgs' and nameko's own."""
    org, members = team
    guest, stranger = sign_up(), sign_up()
    invitation = members["owner"].post(f"/api/v1/orgs/{org['id']}/invitations",
                                       json={"email": guest.user["email"], "role": "standard"}).json()
    token, request_id = invitation["token"], f"accept-{uuid.uuid4().hex}"
    accept = f"/api/v1/invitations/{token}/accept"

    assert stranger.post(accept, headers={"X-Request-Id": request_id}).status_code == 403
    assert guest.post(accept, headers={"X-Request-Id": request_id}).status_code == 200
    assert guest.post(accept, headers={"X-Request-Id": request_id}).status_code == 200  # a second click
    revoked_late = members["owner"].delete(f"/api/v1/orgs/{org['id']}/invitations/{invitation['id']}")
    assert revoked_late.status_code == 409

    log = eventually(lambda: (text := stack.log_path.read_text()).count(f"{request_id} POST ") == 3 and text)
    assert log, "gateway_http's three request lines never reached the stack's log"
    assert token not in log


def fullwidth(text):
    """Letters and digits in their fullwidth forms ('ａ' for 'a'): NFKC makes them plain again."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def test_one_account_per_email_however_it_is_written(anonymous, sign_up):
    ann = sign_up()
    local, domain = ann.user["email"].split("@")

    again = anonymous.post("/api/v1/auth/signup", json={
        "email": f"{fullwidth(local)}@{domain}", "password": PASSWORD, "name": "Not Ann", "country": "US"})

    assert (again.status_code, again.json()["error"]["code"]) == (409, "EMAIL_TAKEN")
    login = anonymous.post("/api/v1/auth/login", json={"email": f"{fullwidth(local)}@{domain}", "password": PASSWORD})
    assert login.json()["user"]["id"] == ann.user["id"]


def test_pending_plan_popup_can_be_dismissed(sign_up):
    user = sign_up(country="IN", plan="starter_yearly")
    assert user.get("/api/v1/me").json()["pending_plan"] == {"code": "starter_yearly", "name": "Starter"}
    assert user.delete("/api/v1/me/pending-plan").status_code == 204
    assert user.get("/api/v1/me").json()["pending_plan"] is None


def test_bad_requests_over_the_real_stack(sign_up, anonymous):
    user = sign_up()
    assert anonymous.post("/api/v1/auth/signup", data=b"{not json").status_code == 400
    short = anonymous.post("/api/v1/auth/signup", json={"email": "a@example.com", "password": "short",
                                                        "name": "A", "country": "US"})
    assert short.status_code == 422 and "password" in short.json()["error"]["details"]
    duplicate = anonymous.post("/api/v1/auth/signup", json={"email": user.user["email"].upper(), "password": PASSWORD,
                                                            "name": "B", "country": "US"})
    assert duplicate.status_code == 409
    assert user.post("/api/v1/orgs", data=b"x" * (1024 * 1024 + 1)).status_code == 413
    bad_login = anonymous.post("/api/v1/auth/login", json={"email": user.user["email"], "password": "nope nope nope"})
    assert bad_login.status_code == 401
    assert user.get("/api/v1/plans").json()["items"][0]["currency"] == "usd"


def test_an_indian_signup_needs_a_phone_which_is_kept_in_e164(anonymous, sign_up):
    body = {"email": f"ravi-{uuid.uuid4().hex[:8]}@example.in", "password": PASSWORD, "name": "Ravi", "country": "IN"}
    refused = anonymous.post("/api/v1/auth/signup", json=body)
    assert refused.status_code == 422, refused.text
    assert list(refused.json()["error"]["details"]) == ["phone"]
    invalid = anonymous.post("/api/v1/auth/signup", json={**body, "phone": "98123 45678"})  # no country code
    assert (invalid.status_code, list(invalid.json()["error"]["details"])) == (422, ["phone"])

    ravi = sign_up(country="IN", email=body["email"], phone="+91 98123 45678")
    assert ravi.user["phone"] == "+919812345678"
    assert ravi.get("/api/v1/me").json()["user"]["phone"] == "+919812345678"
    assert sign_up(country="US").user["phone"] is None  # the US gateway needs none


def test_patch_me_changes_the_name_and_phone_and_the_next_request_sees_them(sign_up):
    ann = sign_up(country="US", name="Ann")
    assert ann.get("/api/v1/orgs").status_code == 200  # gateway_http has her cached now

    changed = ann.patch("/api/v1/me", json={"name": "Ann Lee", "phone": "+1 201-555-0123"})

    assert changed.status_code == 200, changed.text
    assert changed.json() == {"user": {**ann.user, "name": "Ann Lee", "phone": "+12015550123"}}
    assert ann.get("/api/v1/me").json()["user"] == changed.json()["user"]
    # A new organization's first member is the signed-in user as gateway_http hands it over.
    org = ann.post("/api/v1/orgs", json={"name": "Lee & Co"}).json()
    assert [m["name"] for m in ann.get(f"/api/v1/orgs/{org['id']}/members").json()["items"]] == ["Ann Lee"]
    assert ann.patch("/api/v1/me", json={"phone": None}).json()["user"]["phone"] is None


def test_an_indian_user_cannot_remove_their_phone(sign_up):
    ravi = sign_up(country="IN")
    refused = ravi.patch("/api/v1/me", json={"phone": None})
    assert (refused.status_code, list(refused.json()["error"]["details"])) == (422, ["phone"])
    assert ravi.get("/api/v1/me").json()["user"]["phone"] == ravi.user["phone"]
