"""Buying, changing and cancelling a plan end to end, through the gateway sandbox of each region.

Scenarios are written once and run per region (country -> gateway) from the `region` fixture.
"""
import json
import time

import pytest

from tests.e2e.conftest import billing_rows, buy, eventually

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("account_kind", ["org", "personal"])
def test_buying_a_plan_shows_it_active_with_history_and_card(sign_up, region, tap, account_kind):
    client = sign_up(country=region.country)
    if account_kind == "org":
        org = client.post("/api/v1/orgs", json={"name": "Acme"}).json()
        client.acct = f"/api/v1/orgs/{org['id']}/billing"
    else:
        client.acct = "/api/v1/billing/personal"
    purchases = tap("billing", "plan.purchased")

    before = client.get(client.acct).json()
    assert before["subscription"] is None  # the client shows "Buy Plan"
    assert before["account"] == {"kind": account_kind, "id": before["account"]["id"], "country": region.country,
                                 "currency": region.currency, "gateway": region.gateway}

    checkout, summary = buy(client, region)
    subscription = summary["subscription"]
    assert subscription["plan"]["code"] == "growth_monthly"
    assert subscription["plan"]["currency"] == region.currency
    assert subscription["next_payment_date"] == subscription["current_period_end"] is not None
    assert subscription["cancel_at_period_end"] is False
    assert summary["usage"]["quota_bytes"] == 107374182400

    history = eventually(lambda: client.get(f"{client.acct}/history").json()["items"])
    assert [(h["status"], h["amount"], h["currency"]) for h in history] == [
        ("paid", subscription["plan"]["amount"], region.currency)]
    methods = client.get(f"{client.acct}/payment-methods").json()
    assert methods["stale"] is False
    assert [(m["type"], m["is_default"]) for m in methods["items"]] == [(region.method_type, True)]
    if region.method_type == "card":
        assert len(methods["items"][0]["last4"]) == 4

    assert client.get(f"{client.acct}/checkout/{checkout['id']}").json()["status"] == "completed"
    announced = eventually(purchases.drain)
    time.sleep(1)
    announced += purchases.drain()
    assert [(e["plan_code"], e["account"]["kind"]) for e in announced] == [("growth_monthly", account_kind)]


def test_declining_on_the_gateway_page_leaves_no_plan(org_owner, region):
    checkout = org_owner.post(f"{org_owner.acct}/checkout", json={"plan_code": "starter_monthly"}).json()
    region.decline(checkout["redirect_url"])
    status = eventually(lambda: (s := org_owner.get(f"{org_owner.acct}/checkout/{checkout['id']}").json()["status"])
                        != "open" and s)
    assert status == "failed"
    assert org_owner.get(org_owner.acct).json()["subscription"] is None


def test_the_same_plan_cannot_be_bought_twice_and_unknown_plans_are_refused(org_owner, region):
    buy(org_owner, region, "starter_monthly")
    again = org_owner.post(f"{org_owner.acct}/quotes", json={"plan_code": "starter_monthly"})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "ALREADY_ON_PLAN")
    unknown = org_owner.post(f"{org_owner.acct}/quotes", json={"plan_code": "platinum_forever"})
    assert unknown.status_code == 422 and "plan_code" in unknown.json()["error"]["details"]


def test_upgrade_shows_proration_and_moves_the_plan_once_paid(org_owner, region, tap):
    bought, _ = buy(org_owner, region, "starter_monthly")
    changes = tap("billing", "plan.changed")
    quote = org_owner.post(f"{org_owner.acct}/quotes", json={"plan_code": "scale_monthly"}).json()
    assert quote["kind"] == "change"
    period_end = org_owner.get(org_owner.acct).json()["subscription"]["current_period_end"]
    if region.prorates_changes:
        credit, charge = quote["lines"][0]["amount"], quote["lines"][1]["amount"]
        assert credit < 0 < charge
        assert quote["amount_due"] == credit + charge > 0
    else:  # the gateway charges the new price from the next cycle: nothing now
        assert quote["amount_due"] == 0
    assert quote["recurring"]["starts_at"] == period_end
    checkout = org_owner.post(f"{org_owner.acct}/checkout", json={"quote_id": quote["id"]})
    assert checkout.status_code == 201, checkout.text
    if not region.prorates_changes:
        # Nothing was charged, so nothing changed: Starter (and its quota) until Scale is charged.
        time.sleep(1)
        summary = org_owner.get(org_owner.acct).json()
        assert summary["subscription"]["plan"]["code"] == "starter_monthly"
        assert summary["subscription"]["scheduled_change"]["plan_code"] == "scale_monthly"
        assert summary["usage"]["quota_bytes"] == 10 * 1024 ** 3
        assert changes.drain() == []
        region.renew(bought, paid=True)  # the next cycle's charge, at Scale's price
    summary = eventually(lambda: (s := org_owner.get(org_owner.acct).json())["subscription"]["plan"]["code"]
                         == "scale_monthly" and s)
    assert summary["subscription"]["status"] == "active"
    assert summary["usage"]["quota_bytes"] == 1024 ** 4
    assert [(e["from_plan_code"], e["plan_code"]) for e in eventually(changes.drain)] == [
        ("starter_monthly", "scale_monthly")]


def test_cancel_at_period_end_then_cancelled_by_the_gateway(org_owner, region, tap):
    buy(org_owner, region)
    cancellations = tap("billing", "plan.cancelled")
    answer = org_owner.post(f"{org_owner.acct}/subscription/cancel", json={})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["next_payment_date"], answer.json()["cancel_at_period_end"]) == \
        ("active", None, True)
    assert org_owner.get(org_owner.acct).json()["subscription"]["cancel_at_period_end"] is True

    # The period ends: the gateway ends the subscription and tells us.
    assert org_owner.post(f"{org_owner.acct}/subscription/cancel", json={"at_period_end": False}).status_code == 200
    final = eventually(lambda: (s := org_owner.get(org_owner.acct).json())["subscription"]["status"]
                       == "cancelled" and s)
    assert final["subscription"]["next_payment_date"] is None
    assert len(eventually(cancellations.drain)) == 1


def test_renewal_moves_the_period_and_a_failed_renewal_is_past_due(org_owner, region, tap):
    checkout, summary = buy(org_owner, region)
    first_end = summary["subscription"]["current_period_end"]
    region.renew(checkout, paid=True)
    renewed = eventually(lambda: (s := org_owner.get(org_owner.acct).json())["subscription"]["current_period_end"]
                         > first_end and s)
    assert renewed["subscription"]["status"] == "active"
    failures = tap("billing", "payment.failed")
    region.renew(checkout, paid=False)
    past_due = eventually(lambda: org_owner.get(org_owner.acct).json()["subscription"]["status"] == "past_due")
    assert past_due
    history = eventually(lambda: len(h := org_owner.get(f"{org_owner.acct}/history").json()["items"]) == 3 and h)
    assert [h["status"] for h in history] == ["failed", "paid", "paid"]
    assert len(eventually(failures.drain)) == 1


def test_a_gateway_error_on_checkout_is_a_502_and_the_retry_reuses_the_checkout(org_owner, region):
    quote = org_owner.post(f"{org_owner.acct}/quotes", json={"plan_code": "growth_monthly"}).json()
    region.fail_next_checkout_creation("error_500", times=3)  # every attempt the adapter makes fails
    failed = org_owner.post(f"{org_owner.acct}/checkout", json={"quote_id": quote["id"]})
    assert (failed.status_code, failed.json()["error"]["code"]) == (502, "GATEWAY_ERROR")
    retried = org_owner.post(f"{org_owner.acct}/checkout", json={"quote_id": quote["id"]})
    assert retried.status_code == 201, retried.text
    checkout = retried.json()
    assert checkout["status"] == "open"
    again = org_owner.post(f"{org_owner.acct}/checkout", json={"quote_id": quote["id"]}).json()
    assert again["id"] == checkout["id"] and again["redirect_url"] == checkout["redirect_url"]


def test_a_gateway_that_never_answers_is_a_502_with_no_open_checkout(org_owner, region):
    region.fail_next_checkout_creation("timeout", times=3, delay_seconds=3)  # past the adapter's 2 s timeout
    failed = org_owner.post(f"{org_owner.acct}/checkout", json={"plan_code": "growth_monthly"})
    assert failed.status_code == 502, failed.text
    checkout_id = failed.json()["error"]["details"]["checkout_id"]
    assert org_owner.get(f"{org_owner.acct}/checkout/{checkout_id}").json()["status"] == "failed"
    assert org_owner.get(org_owner.acct).json()["subscription"] is None


def test_a_gateway_that_times_out_after_creating_yields_one_checkout(org_owner, region):
    """The gateway made the session but the answer was lost: the retry, with the same key, gets it back."""
    region.fail_next_checkout_creation("create_then_timeout", times=1, delay_seconds=4)
    answer = org_owner.post(f"{org_owner.acct}/checkout", json={"plan_code": "growth_monthly"})
    assert answer.status_code == 201, answer.text
    checkout = answer.json()
    assert checkout["status"] == "open"
    assert region.checkout_sessions_created_for(checkout["id"]) == 1


def test_billing_permissions_by_role(team):
    org, members = team
    acct = f"/api/v1/orgs/{org['id']}/billing"
    expected = {  # view, manage
        "owner": (200, 201), "super_admin": (200, 201), "admin": (200, 403), "standard": (403, 403),
        "outsider": (404, 404),
    }
    for caller, (view, manage) in expected.items():
        client = members[caller]
        for read in ("", "/history", "/payment-methods", "/usage", "/payment-links"):
            assert client.get(f"{acct}{read}").status_code == view, (caller, read)
        assert client.post(f"{acct}/quotes", json={"plan_code": "starter_monthly"}).status_code == manage, caller
        if manage != 201:
            assert client.post(f"{acct}/checkout", json={"plan_code": "starter_monthly"}).status_code == manage
            assert client.post(f"{acct}/subscription/cancel", json={}).status_code == manage
    assert members["admin"].get(acct).json()["can_manage"] is False
    assert members["owner"].get(acct).json()["can_manage"] is True


FORGED_WEBHOOKS = [
    ("/webhooks/stripe", {"Stripe-Signature": "t=1,v1=deadbeef"}),
    ("/webhooks/stripe", {}),
    ("/webhooks/cashfree", {"x-webhook-timestamp": "1700000000000", "x-webhook-signature": "Zm9yZ2Vk"}),
    ("/webhooks/cashfree", {}),
]


@pytest.mark.parametrize("path, headers", FORGED_WEBHOOKS)
def test_unsigned_or_forged_webhooks_are_a_400(anonymous, path, headers):
    body = json.dumps({"id": "evt_forged", "type": "invoice.paid", "created": int(time.time()),
                       "data": {"object": {}}})
    answer = anonymous.post(path, data=body, headers={"Content-Type": "application/json", **headers})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] in ("SIGNATURE_INVALID", "SIGNATURE_MISSING")


@pytest.mark.parametrize("path", ["/webhooks/stripe", "/webhooks/cashfree"])
def test_an_oversized_webhook_is_a_413(anonymous, path):
    answer = anonymous.post(path, data=b"x" * (256 * 1024 + 1), headers={"Stripe-Signature": "t=1,v1=x"})
    assert answer.status_code == 413


# -- the payer's phone (Cashfree takes no payment without it) ----------------------------------

def test_cashfree_is_sent_the_phone_the_indian_payer_signed_up_with(sign_up, cashfree):
    client = sign_up(country="IN", phone="+91 98123 45678")
    assert client.user["phone"] == "+919812345678"
    client.acct = "/api/v1/billing/personal"

    buy(client, cashfree)

    sent = cashfree.customers_sent_for(client.user["email"])
    assert [customer["customer_phone"] for customer in sent] == ["9812345678"]


def test_an_indian_org_whose_owner_has_no_phone_can_check_out_once_the_owner_adds_one(
        stack, phoneless_indian_org, cashfree):
    owner = phoneless_indian_org
    refused = owner.post(f"{owner.acct}/checkout", json={"plan_code": "starter_monthly"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert (error["code"], list(error["details"])) == ("PHONE_REQUIRED", ["phone"])
    assert billing_rows(stack, "checkouts", owner.org["id"]) == 0
    assert cashfree.customers_sent_for(owner.user["email"]) == []

    patched = owner.patch("/api/v1/me", json={"phone": "+91 99876 54321"})
    assert (patched.status_code, patched.json()["user"]["phone"]) == (200, "+919987654321")
    buy(owner, cashfree)

    assert [(c["customer_name"], c["customer_email"], c["customer_phone"])
            for c in cashfree.customers_sent_for(owner.user["email"])] == [
        ("Pat Phoneless", owner.user["email"], "9987654321")]
