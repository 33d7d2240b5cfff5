"""Never bill twice, never give a plan away: the sequences of issue 12, end to end through each
region's gateway sandbox (Stripe for the USA, Cashfree for India).

Each test reproduces what an unlucky customer (or an attacker) can do and checks both sides: what
the portal shows and what is live, refunded or closed at the gateway itself.
"""
import threading
import time
from decimal import Decimal

import psycopg
import pytest

from tests.e2e.conftest import buy, eventually

pytestmark = pytest.mark.e2e


def quote(client, plan_code):
    answer = client.post(f"{client.acct}/quotes", json={"plan_code": plan_code})
    assert answer.status_code == 201, answer.text
    return answer.json()


def pay_now(client, plan_code):
    answer = client.post(f"{client.acct}/checkout", json={"quote_id": quote(client, plan_code)["id"]})
    assert answer.status_code == 201, answer.text
    return answer.json()


def no_account_has_two_live_subscriptions_at(region):
    counts = region.live_subscriptions_by_account()
    return max(counts.values(), default=0) <= 1


def test_a_checkout_paid_after_a_payment_link_is_refunded_and_the_account_keeps_one_plan(org_owner, region, tap):
    """A manager opens a checkout (valid for an hour); someone pays a payment link for the same
    account; the manager then pays the still-open checkout, which the gateway could not close."""
    refunds = tap("billing", "payment.refunded")
    checkout = pay_now(org_owner, "starter_monthly")
    region.block_closing(checkout)
    link = org_owner.post(f"{org_owner.acct}/payment-links", json={"plan_code": "starter_monthly"}).json()

    region.pay_link(link["url"])
    assert eventually(lambda: (s := org_owner.get(org_owner.acct).json()["subscription"]) and s["status"] == "active")
    region.pay(checkout["redirect_url"])  # still payable: the gateway refused to close it
    region.clear_faults()

    refunded = eventually(lambda: [h for h in org_owner.get(f"{org_owner.acct}/history").json()["items"]
                                   if h["status"] == "refunded"], timeout=30)
    assert [(h["amount"], h["currency"]) for h in refunded] == [(checkout["amount"], region.currency)]
    [announced] = eventually(refunds.drain)
    assert (announced["reason"], announced["amount"]) == ("duplicate_purchase", checkout["amount"])
    assert eventually(lambda: region.subscription_status(checkout) in ("canceled", "CANCELLED"))
    assert region.refunded_amount(checkout) == checkout["amount"]
    closed = org_owner.get(f"{org_owner.acct}/checkout/{checkout['id']}").json()
    assert (closed["status"], closed["failure_reason"]) == ("failed", "duplicate_purchase")
    summary = org_owner.get(org_owner.acct).json()
    assert summary["subscription"]["status"] == "active"
    assert no_account_has_two_live_subscriptions_at(region)


def test_two_concurrent_pay_nows_leave_one_payable_checkout(org_owner, region):
    """Two managers press Pay Now at once; the gateway takes a moment to make the first checkout."""
    quotes = [quote(org_owner, plan)["id"] for plan in ("starter_monthly", "growth_monthly")]
    region.fail_next_checkout_creation("create_then_timeout", times=1, delay_seconds=1)  # slow, then answers
    answers = [None, None]

    def press(index):
        answers[index] = org_owner.post(f"{org_owner.acct}/checkout", json={"quote_id": quotes[index]})

    threads = [threading.Thread(target=press, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join()

    assert [answer.status_code for answer in answers] == [201, 201], [answer.text for answer in answers]
    states = [region.checkout_state_at_gateway(answer.json()) for answer in answers]
    assert sorted(states) == ["expired", "open"], states


def test_a_checkout_past_its_expiry_is_closed_at_the_gateway_when_another_is_opened(stack, org_owner, region):
    """Cashfree keeps a subscription nobody authorised payable for years: a checkout that lapsed here
    must still be closed there, not only marked here."""
    first = pay_now(org_owner, "starter_monthly")
    with psycopg.connect(stack.database_url("billing"), autocommit=True) as db:
        db.execute("UPDATE checkouts SET expires_at = now() - interval '1 second' WHERE id = %s", (first["id"],))
    assert org_owner.get(f"{org_owner.acct}/checkout/{first['id']}").json()["status"] == "expired"

    pay_now(org_owner, "growth_monthly")

    assert region.checkout_state_at_gateway(first) == "expired"


# -- a plan change takes effect only when it is paid -------------------------------------------

def test_a_declined_upgrade_leaves_the_plan_and_fails_the_checkout(org_owner, region, tap):
    if not region.prorates_changes:
        pytest.skip("Cashfree charges a change from the next cycle: nothing is charged now to decline")
    bought, _ = buy(org_owner, region, "starter_monthly")
    changes = tap("billing", "plan.changed")
    region.decline_saved_cards(bought)

    answer = org_owner.post(f"{org_owner.acct}/checkout", json={"quote_id": quote(org_owner, "scale_monthly")["id"]})

    assert (answer.status_code, answer.json()["error"]["code"]) == (402, "PAYMENT_DECLINED")
    failed = org_owner.get(f"{org_owner.acct}/checkout/{answer.json()['error']['details']['checkout_id']}").json()
    assert (failed["status"], failed["failure_reason"]) == ("failed", "payment_declined")
    time.sleep(1)  # the gateway's webhooks for the attempt have landed
    summary = org_owner.get(org_owner.acct).json()
    assert (summary["subscription"]["plan"]["code"], summary["subscription"]["status"]) == ("starter_monthly", "active")
    assert summary["usage"]["quota_bytes"] == 10 * 1024 ** 3
    assert region.subscription_price(bought) == (1900, None)  # unchanged, and no pending change left
    assert changes.drain() == []


def test_a_change_charged_from_the_next_cycle_keeps_the_old_quota_until_that_charge(org_owner, region, tap):
    if region.prorates_changes:
        pytest.skip("Stripe charges a change at once")
    bought, _ = buy(org_owner, region, "scale_monthly")
    changes = tap("billing", "plan.changed")

    answer = org_owner.post(f"{org_owner.acct}/checkout", json={"quote_id": quote(org_owner, "starter_monthly")["id"]})
    assert answer.status_code == 201, answer.text

    time.sleep(1)
    summary = org_owner.get(org_owner.acct).json()
    assert summary["subscription"]["plan"]["code"] == "scale_monthly"  # a downgrade keeps what was paid for
    assert summary["subscription"]["scheduled_change"]["plan_code"] == "starter_monthly"
    assert changes.drain() == []

    region.renew(bought, paid=True)
    summary = eventually(lambda: (s := org_owner.get(org_owner.acct).json())["subscription"]["plan"]["code"]
                         == "starter_monthly" and s)
    assert summary["usage"]["quota_bytes"] == 10 * 1024 ** 3
    assert [(e["from_plan_code"], e["plan_code"]) for e in eventually(changes.drain)] == [
        ("scale_monthly", "starter_monthly")]


# -- activate only on the money that was due ---------------------------------------------------

def test_an_enach_mandate_is_charged_for_the_first_period_before_the_plan_starts(org_owner, region, tap):
    if region.gateway != "cashfree":
        pytest.skip("e-NACH is a Cashfree mandate")
    purchases = tap("billing", "plan.purchased")
    checkout = pay_now(org_owner, "growth_monthly")

    region.pay_with(checkout["redirect_url"], "netbanking")  # the mandate collects nothing

    summary = eventually(lambda: (s := org_owner.get(org_owner.acct).json())["subscription"] and
                         s["subscription"]["status"] == "active" and s)
    assert summary["subscription"]["plan"]["code"] == "growth_monthly"
    payments = region.payments(checkout)
    assert sorted((p["payment_type"], p["payment_status"], Decimal(str(p["payment_amount"]))) for p in payments) == [
        ("AUTH", "SUCCESS", Decimal("0")), ("CHARGE", "SUCCESS", Decimal("3999"))]
    history = eventually(lambda: org_owner.get(f"{org_owner.acct}/history").json()["items"])
    assert [(h["status"], h["amount"]) for h in history] == [("paid", 399900)]
    assert len(eventually(purchases.drain)) == 1


def test_an_enach_mandate_whose_first_charge_fails_buys_nothing(org_owner, region, tap):
    if region.gateway != "cashfree":
        pytest.skip("e-NACH is a Cashfree mandate")
    purchases = tap("billing", "plan.purchased")
    checkout = pay_now(org_owner, "growth_monthly")
    region.fail_charges(checkout)

    region.pay_with(checkout["redirect_url"], "netbanking")

    failed = eventually(lambda: (c := org_owner.get(f"{org_owner.acct}/checkout/{checkout['id']}").json())
                        ["status"] == "failed" and c)
    assert failed["failure_reason"] == "declined"
    assert eventually(lambda: region.subscription_status(checkout) == "CANCELLED")
    summary = org_owner.get(org_owner.acct).json()
    assert summary["subscription"] is None or summary["subscription"]["status"] != "active"
    assert summary["usage"]["quota_bytes"] is None
    assert purchases.drain() == []
