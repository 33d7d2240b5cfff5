"""Payment links end to end, for both regions from one suite: made by a manager, paid by someone
with no account, cancelled, expired."""
import psycopg
import pytest

from tests.e2e.conftest import billing_rows, eventually

pytestmark = pytest.mark.e2e


def make_link(client, plan_code="starter_monthly", **extra):
    answer = client.post(f"{client.acct}/payment-links", json={"plan_code": plan_code, **extra})
    assert answer.status_code == 201, answer.text
    return answer.json()


def link_status(client, link_id):
    return next(link["status"] for link in client.get(f"{client.acct}/payment-links").json()["items"]
                if link["id"] == link_id)


def test_a_link_paid_by_someone_without_an_account_credits_the_account(org_owner, region, tap):
    purchases, paid_links = tap("billing", "plan.purchased"), tap("billing", "payment_link.paid")
    link = make_link(org_owner)
    assert (link["status"], link["currency"], link["plan_code"]) == ("active", region.currency, "starter_monthly")
    assert link["created_by"] == org_owner.user["id"]

    region.pay_link(link["url"])

    summary = eventually(lambda: (s := org_owner.get(org_owner.acct).json())["subscription"] and
                         s["subscription"]["status"] == "active" and s)
    assert summary["subscription"]["plan"]["code"] == "starter_monthly"
    assert eventually(lambda: link_status(org_owner, link["id"]) == "paid")
    history = eventually(lambda: org_owner.get(f"{org_owner.acct}/history").json()["items"])
    assert [(h["status"], h["amount"]) for h in history] == [("paid", link["amount"])]
    assert len(eventually(purchases.drain)) == 1 and len(eventually(paid_links.drain)) == 1
    assert region.link_payable(link["url"]) is False  # a second payment through it is impossible


def test_a_cancelled_link_is_dead_at_the_gateway_and_its_page_refuses_payment(org_owner, region):
    link = make_link(org_owner)
    cancelled = org_owner.post(f"{org_owner.acct}/payment-links/{link['id']}/cancel")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert region.link_payable(link["url"]) is False
    assert region.link_active_at_gateway(link["url"]) is False
    again = org_owner.post(f"{org_owner.acct}/payment-links/{link['id']}/cancel")
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")  # cancel twice: idempotent
    assert org_owner.get(org_owner.acct).json()["subscription"] is None


def test_a_link_that_expires_is_deactivated_and_reported_expired(stack, org_owner, region):
    link = make_link(org_owner, expires_in_hours=1)
    # An hour is long for a test: move the expiry into the past, as the clock would.
    with psycopg.connect(f"dbname={stack.database_prefix}billing host=127.0.0.1") as conn:
        conn.execute("UPDATE payment_links SET expires_at = now() - interval '1 second' WHERE id = %s",
                     (link["id"],))
    assert eventually(lambda: link_status(org_owner, link["id"]) == "expired")
    assert region.link_active_at_gateway(link["url"]) is False
    assert region.link_payable(link["url"]) is False


def test_a_paid_link_cannot_be_cancelled(org_owner, region):
    link = make_link(org_owner)
    region.pay_link(link["url"])
    # Cancel at once: whether our webhook arrived yet or the gateway refuses, the payment wins.
    answer = org_owner.post(f"{org_owner.acct}/payment-links/{link['id']}/cancel")
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "LINK_PAID")
    assert eventually(lambda: link_status(org_owner, link["id"]) == "paid")
    assert eventually(lambda: (s := org_owner.get(org_owner.acct).json()["subscription"]) and s["status"] == "active")


def test_link_permissions_by_role(team):
    org, members = team
    acct = f"/api/v1/orgs/{org['id']}/billing/payment-links"
    made = members["owner"].post(acct, json={"plan_code": "starter_monthly"})
    assert made.status_code == 201, made.text
    cancel = f"{acct}/{made.json()['id']}/cancel"
    expected = {"super_admin": (201, 200), "admin": (403, 200), "standard": (403, 403), "outsider": (404, 404)}
    for caller, (create, view) in expected.items():
        client = members[caller]
        assert client.post(acct, json={"plan_code": "starter_monthly"}).status_code == create, caller
        assert client.get(acct).status_code == view, caller
        if create != 201:
            assert client.post(cancel).status_code == create, caller


def test_a_link_for_an_unknown_plan_or_a_bad_expiry_is_a_422(org_owner):
    for body in ({"plan_code": "platinum_forever"}, {"plan_code": "starter_monthly", "expires_in_hours": 721},
                 {"plan_code": "starter_monthly", "expires_in_hours": 0}):
        answer = org_owner.post(f"{org_owner.acct}/payment-links", json=body)
        assert answer.status_code == 422, (body, answer.text)


def test_a_gateway_failure_leaves_no_active_link_here_or_there(org_owner, region):
    region.fail_next_link_creation("create_then_timeout", times=3, delay_seconds=3)  # every attempt times out
    answer = org_owner.post(f"{org_owner.acct}/payment-links", json={"plan_code": "starter_monthly"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (502, "GATEWAY_ERROR")
    link_id = answer.json()["error"]["details"]["link_id"]
    assert org_owner.get(f"{org_owner.acct}/payment-links").json()["items"] == []
    # The gateway made the link before the answer was lost: it must not stay payable there.
    assert eventually(lambda: region.active_links_for(link_id) == 0)


def test_an_indian_org_whose_owner_has_no_phone_makes_no_link_until_the_owner_adds_one(
        stack, phoneless_indian_org, cashfree):
    owner = phoneless_indian_org
    refused = owner.post(f"{owner.acct}/payment-links", json={"plan_code": "starter_monthly"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "PHONE_REQUIRED"
    assert owner.get(f"{owner.acct}/payment-links").json() == {"items": []}
    assert billing_rows(stack, "payment_links", owner.org["id"]) == 0

    assert owner.patch("/api/v1/me", json={"phone": "+919987654321"}).status_code == 200
    link = make_link(owner)

    assert [c["customer_phone"] for c in cashfree.customers_sent_for(owner.user["email"])] == ["9987654321"]
    assert [item["id"] for item in owner.get(f"{owner.acct}/payment-links").json()["items"]] == [link["id"]]
