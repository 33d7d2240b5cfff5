"""python -m deploy.ops against the running stack: what an operator sees and does."""
import subprocess
import sys

import pytest

from deploy.stack import ROOT
from tests.e2e.conftest import buy, eventually

pytestmark = pytest.mark.e2e

PAYMENT_EVENT = {"stripe": "invoice.paid", "cashfree": "SUBSCRIPTION_PAYMENT_SUCCESS"}


def ops(stack, *args):
    """(exit status, stdout, stderr) of the command, run as an operator would, against `stack`."""
    done = subprocess.run([sys.executable, "-m", "deploy.ops", *args], cwd=ROOT, env=stack.env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def newest_event(region, event_type):
    events = region.http.get(f"{region.base}/_sandbox/events", timeout=10).json()
    return [event["id"] for event in events if event["type"] == event_type][-1]


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
    event_id = newest_event(region, PAYMENT_EVENT[region.gateway])
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
