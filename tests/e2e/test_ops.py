"""python -m deploy.ops against the running stack: what an operator sees and does."""
import re
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from nameko.standalone.events import event_dispatcher

from deploy.stack import ROOT
from services.gateway_cashfree.service import subscription_id_for
from tests.e2e.conftest import buy, eventually

pytestmark = pytest.mark.e2e

PAYMENT_EVENT = {"stripe": "invoice.paid", "cashfree": "SUBSCRIPTION_PAYMENT_SUCCESS"}


def ops(stack, *args):
    """(exit status, stdout, stderr) of the command, run as an operator would, against `stack`."""
    done = subprocess.run([sys.executable, "-m", "deploy.ops", *args], cwd=ROOT, env=stack.env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def stored_payment_event(stack, region, checkout):
    """The id the adapter stored the purchase's payment webhook under: what replay-webhook takes."""
    event_type = PAYMENT_EVENT[region.gateway]
    if region.gateway == "stripe":  # Stripe's own event id
        events = region.http.get(f"{region.base}/_sandbox/events", timeout=10).json()
        return [event["id"] for event in events if event["type"] == event_type][-1]
    # gateway_cashfree's: the type and digest of the signed body, which names the checkout's subscription
    with psycopg.connect(f"dbname={stack.database_prefix}gateway_cashfree host=127.0.0.1") as conn:
        [(event_id,)] = conn.execute("SELECT id FROM webhook_events WHERE type = %s AND strpos(body, %s) > 0",
                                     (event_type, subscription_id_for(checkout["id"]))).fetchall()
    return event_id


def test_show_account_reconcile_and_replay(org_owner, region, stack, tap):
    checkout, summary = buy(org_owner, region)
    org_id = org_owner.org["id"]
    eventually(lambda: org_owner.get(f"{org_owner.acct}/history").json()["items"])

    status, shown, _ = ops(stack, "show-account", f"org:{org_id}")
    assert status == 0, shown
    assert f"org:{org_id}  Acme, {region.country}, 1 member(s)" in shown
    assert f"growth_monthly active, period {summary['subscription']['current_period_start']}" in shown
    assert "open checkouts: 0" in shown and "last payments: 1" in shown and "payment links: 0" in shown
    projected = eventually(lambda: "usage projection: growth_monthly" in (
        s := ops(stack, "show-account", f"org:{org_id}")[1]) and s)  # usage hears of the plan by event
    assert projected and "usage: 0 of 107374182400 bytes used" in projected, projected
    assert "outbox backlog (unsent events): identity" in shown

    status, by_email, _ = ops(stack, "show-account", org_owner.user["email"])
    assert status == 0 and f"personal:{org_owner.user['id']}  Olive Owner" in by_email and f"org:{org_id}" in by_email

    status, reconciled, _ = ops(stack, "reconcile", "--account", f"org:{org_id}")
    assert status == 0, reconciled
    assert "reconciled 1 account(s): 0 open checkout(s), 1 subscription(s), 0 link(s) checked" in reconciled
    assert '"closed_checkouts": []' in reconciled  # (Stripe's event list is read for everyone: what
    # it recovers may belong to other tests' accounts, so only this account's figures are pinned)

    purchases = tap("billing", "plan.purchased")
    event_id = stored_payment_event(stack, region, checkout)
    status, replayed, errors = ops(stack, "replay-webhook", region.gateway, event_id)
    assert status == 0, errors
    assert f"{event_id} ({PAYMENT_EVENT[region.gateway]}): already processed; replaying it changed nothing" in replayed
    assert org_owner.get(org_owner.acct).json()["subscription"] == summary["subscription"]
    assert len(org_owner.get(f"{org_owner.acct}/history").json()["items"]) == 1
    assert purchases.drain() == []

    status, _, errors = ops(stack, "replay-webhook", region.gateway, "evt_never_seen")
    assert status == 1 and "evt_never_seen" in errors
    status, _, errors = ops(stack, "show-account", "org:")
    assert status != 0


def parked_in_billing(stack, event_id):
    with psycopg.connect(f"dbname={stack.database_prefix}billing host=127.0.0.1") as conn:
        return conn.execute("SELECT count(*) FROM parked_messages WHERE event_id = %s", (event_id,)).fetchone()[0]


def test_a_message_billing_cannot_apply_is_parked_listed_shown_and_replayed(sign_up, stack):
    """A payment fact whose amount no bigint holds: billing parks it (and moves on); the operator
    sees it in `parked` and on the account, and a replay that fails again leaves it parked."""
    owner = sign_up(name="Pat Parked")
    org = owner.post("/api/v1/orgs", json={"name": "Parked Ltd"}).json()
    assert owner.post(f"/api/v1/orgs/{org['id']}/billing/quotes", json={"plan_code": "starter_monthly"}
                      ).status_code == 201  # billing has the account now
    billing_account_id = re.search(r"billing account (\S+):", ops(stack, "show-account", f"org:{org['id']}")[1])[1]
    event_id, now = str(uuid.uuid4()), int(time.time())
    event_dispatcher({"AMQP_URI": stack.env["AMQP_URI"]})("gateway_stripe", "gateway.payment_succeeded", {
        "event_id": event_id, "occurred_at": "2026-12-01T10:00:00Z", "gateway": "stripe",
        "gateway_event_id": f"evt_{uuid.uuid4().hex[:12]}", "gateway_event_at": now, "account_id": billing_account_id,
        "gateway_invoice_id": f"in_{uuid.uuid4().hex[:12]}", "gateway_subscription_id": None, "amount": 10 ** 20,
        "currency": "usd", "description": "Starter (monthly)", "invoice_url": None, "period_start": None,
        "period_end": None})

    assert eventually(lambda: parked_in_billing(stack, event_id), timeout=60)
    status, listed, _ = ops(stack, "parked")
    assert status == 0, listed
    parked_id = re.search(rf"billing (\S+): gateway.payment_succeeded {event_id}, parked .*: DataError", listed)[1]
    shown = ops(stack, "show-account", f"org:{org['id']}")[1]
    assert "parked messages naming it: 1" in shown and parked_id in shown
    assert owner.get(f"/api/v1/orgs/{org['id']}/billing/history").json()["items"] == []

    status, _, errors = ops(stack, "replay-parked", "billing", parked_id)
    assert status == 1 and f"{parked_id} (gateway.payment_succeeded {event_id}) failed again" in errors
    assert parked_id in ops(stack, "parked")[1]
    status, _, errors = ops(stack, "replay-parked", "billing", str(uuid.uuid4()))
    assert status == 1 and "No parked message" in errors
