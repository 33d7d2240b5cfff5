"""Webhooks lost for a while: reconciliation on demand recovers what they carried, once, per
region, and the webhooks that arrive late change nothing (the schedule: test_reconciliation_schedule.py)."""
import time

import psycopg
import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e


def rpc(stack, service, method, *args):
    with ClusterRpcProxy({"AMQP_URI": stack.env["AMQP_URI"]}, timeout=60) as cluster:
        return getattr(getattr(cluster, service), method)(*args)


def pay_while_webhooks_fail(client, region):
    """Pay Now and Pay on the gateway's page while the gateway cannot reach us; returns the checkout."""
    checkout = client.post(f"{client.acct}/checkout", json={"plan_code": "growth_monthly"})
    assert checkout.status_code == 201, checkout.text
    region.fail_webhooks()
    assert region.pay(checkout.json()["redirect_url"]).status_code == 200
    return checkout.json()


def active_with_period(client):
    summary = client.get(client.acct).json()
    subscription = summary["subscription"]
    return subscription and subscription["status"] == "active" and subscription["next_payment_date"] and summary


def test_reconciliation_recovers_missed_webhooks_once_and_late_ones_change_nothing(org_owner, region, tap, stack):
    purchases = tap("billing", "plan.purchased")
    undelivered_before = set(region.undelivered_events())
    try:
        checkout = pay_while_webhooks_fail(org_owner, region)
        lost = eventually(lambda: set(region.undelivered_events()) - undelivered_before)
        assert lost, "the payment made no events at the gateway"
        time.sleep(2)  # the gateway paid, but nothing reached us: billing knows nothing of it
        assert org_owner.get(org_owner.acct).json()["subscription"] is None
        assert org_owner.get(f"{org_owner.acct}/checkout/{checkout['id']}").json()["status"] == "open"

        summary = rpc(stack, "billing", "reconcile", {"kind": "org", "id": org_owner.org["id"]})
        assert summary["failed"] == [] and summary["checked"]["checkouts"] == 1
        recovered = [fact for item in summary["recovered"] for fact in item["facts"]]
        assert "gateway.checkout_completed" in recovered and "gateway.payment_succeeded" in recovered
        active = eventually(lambda: active_with_period(org_owner))
        assert active, org_owner.get(org_owner.acct).text
        assert org_owner.get(f"{org_owner.acct}/checkout/{checkout['id']}").json()["status"] == "completed"
        history = eventually(lambda: org_owner.get(f"{org_owner.acct}/history").json()["items"])
        assert [(h["status"], h["amount"]) for h in history] == [("paid", active["subscription"]["plan"]["amount"])]
        announced = eventually(purchases.drain)
        assert [e["plan_code"] for e in announced] == ["growth_monthly"]

        # Asked again, the gateway tells the same facts: none is applied twice (checked below).
        assert rpc(stack, "billing", "reconcile", {"kind": "org", "id": org_owner.org["id"]})["failed"] == []
    finally:
        region.resume_webhooks()

    # The gateway's retries (and a resend of every lost event) reach us late.
    region.redeliver(lost & set(region.undelivered_events()))
    assert eventually(lambda: not (lost & set(region.undelivered_events())), timeout=60), region.undelivered_events()
    time.sleep(2)  # what the adapters would announce has had time to arrive
    after = org_owner.get(org_owner.acct).json()
    assert after["subscription"] == active["subscription"]
    assert org_owner.get(f"{org_owner.acct}/history").json()["items"] == history
    assert purchases.drain() == []


def test_a_link_paid_while_webhooks_fail_is_recovered(org_owner, region, tap, stack):
    purchases = tap("billing", "plan.purchased")
    made = org_owner.post(f"{org_owner.acct}/payment-links", json={"plan_code": "starter_monthly"})
    assert made.status_code == 201, made.text
    link = made.json()
    region.fail_webhooks()
    try:
        region.pay_link(link["url"])
        summary = rpc(stack, "billing", "reconcile", {"kind": "org", "id": org_owner.org["id"]})
        assert summary["checked"]["links"] == 1 and summary["failed"] == []
        assert "gateway.link_paid" in [fact for item in summary["recovered"] for fact in item["facts"]]
        # (a Cashfree link buys one period, which does not renew: no next payment date)
        assert eventually(lambda: (s := org_owner.get(org_owner.acct).json()["subscription"]) and
                          s["status"] == "active" and s["current_period_end"]), org_owner.get(org_owner.acct).text
        assert eventually(lambda: [item["status"] for item in
                                   org_owner.get(f"{org_owner.acct}/payment-links").json()["items"]] == ["paid"])
        assert [e["plan_code"] for e in eventually(purchases.drain)] == ["starter_monthly"]
    finally:
        region.resume_webhooks()


def test_a_checkout_past_its_expiry_is_closed_here_and_at_the_gateway(org_owner, region, stack):
    checkout = org_owner.post(f"{org_owner.acct}/checkout", json={"plan_code": "growth_monthly"}).json()
    assert region.checkout_state_at_gateway(checkout) == "open"
    # An hour is long for a test: move the expiry into the past, as the clock would.
    with psycopg.connect(f"dbname={stack.database_prefix}billing host=127.0.0.1") as conn:
        conn.execute("UPDATE checkouts SET expires_at = now() - interval '1 second' WHERE id = %s", (checkout["id"],))

    # The settle pass (every second here) or reconciliation, whichever comes first, closes it there
    # (reconciliation on its own: tests/unit/test_billing_one_plan.py).
    rpc(stack, "billing", "reconcile", {"kind": "org", "id": org_owner.org["id"]})

    assert org_owner.get(f"{org_owner.acct}/checkout/{checkout['id']}").json()["status"] == "expired"
    assert eventually(lambda: region.checkout_state_at_gateway(checkout) == "expired")  # nobody can pay it there
    assert eventually(lambda: rpc(stack, "billing", "reconcile", {"kind": "org", "id": org_owner.org["id"]})
                      ["checked"]["checkouts"] == 0)  # confirmed closed: not asked about again
