"""`make test-faults`: 200 purchases (half US through the Stripe sandbox, half India through the
Cashfree sandbox) while one thing breaks, one scenario per stack; then every paid purchase must be
active exactly once, announced by plan.purchased exactly once, with no checkout left open and no
outbox row unsent, and no account may hold two live subscriptions, in billing or at either
gateway sandbox. Killed processes come back because supervisord restarts them (deploy/supervise.py).
"""
import signal
import time

import eventlet
import pytest
import requests
from nameko.standalone.rpc import ClusterRpcProxy

from deploy.stack import IsolatedStack
from tests.faults import harness
from tests.faults.conftest import RESULTS, ROOT

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1200)]


class Progress:
    def __init__(self, total):
        self.total, self.finished = total, 0

    def wait_for(self, fraction):
        while self.finished < fraction * self.total:
            eventlet.sleep(0.2)


def wait_restarted(stack, name, old_pid, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stack.supervisor.status().get(name) == "RUNNING" and stack.supervisor.pid(name) not in (None, old_pid):
            return
        eventlet.sleep(0.5)
    raise AssertionError(f"{name} was not restarted: {stack.supervisor.status()}")


def kill_at(*steps):
    """kill -9 each named process once `fraction` of the purchases are done; supervisord restarts it."""
    def fault(context):
        for fraction, name in steps:
            context.progress.wait_for(fraction)
            pid = context.stack.kill(name, signal.SIGKILL)
            print(f"kill -9 {name} (pid {pid}) at {context.progress.finished} purchases done")
            wait_restarted(context.stack, name, pid)
    return fault


def restart_infra(which, down_seconds=5):
    def fault(context):
        context.progress.wait_for(0.4)
        print(f"restarting {which} at {context.progress.finished} purchases done")
        getattr(context, which).restart(down_seconds)
    return fault


def drop_webhooks(context):
    """Both sandboxes drop every webhook that falls due from 20 % of the purchases until all are
    paid; then reconciliation (billing.reconcile, and its timer) must find what was missed."""
    sandboxes = (context.stack.stripe_sandbox, context.stack.cashfree_sandbox)
    context.progress.wait_for(0.2)
    for base in sandboxes:
        requests.post(f"{base}/_sandbox/webhooks/pause", timeout=10).raise_for_status()
    print(f"webhooks dropped from {context.progress.finished} purchases done")
    context.progress.wait_for(1.0)
    for base in sandboxes:
        requests.post(f"{base}/_sandbox/webhooks/resume", timeout=10).raise_for_status()
    try:
        with ClusterRpcProxy({"AMQP_URI": context.stack.env["AMQP_URI"]}, timeout=120) as cluster:
            print("billing.reconcile(None):", cluster.billing.reconcile(None))
    except Exception as exc:  # noqa: BLE001  (billing without reconcile(): purchases stay lost, and the test says so)
        context.notes.append(f"billing.reconcile failed: {exc!r}"[:300])
        print(context.notes[-1])


class Context:
    def __init__(self, stack, postgres, rabbit, progress):
        self.stack, self.postgres, self.rabbit, self.progress = stack, postgres, rabbit, progress
        self.notes = []


# The sandboxes retry webhooks on their own schedule (Cashfree's minutes and Stripe's days as
# seconds), not the e2e tests' tenth of it: a gateway that gave up within a 5 s outage would
# leave the recovery to reconciliation. That is kept out of the way (an hour) except where the
# scenario is about it: the other scenarios must recover by the normal path alone.
STACK_ENV = {"STRIPE_SANDBOX_RETRY_SCALE": "1", "CASHFREE_SANDBOX_RETRY_SCALE": "1",
             "RECONCILE_INTERVAL_SECONDS": "3600"}
# name -> (fault, extra environment)
SCENARIOS = {
    "kill_billing": (kill_at((0.3, "billing"), (0.65, "billing")), {}),
    "kill_adapters": (kill_at((0.3, "gateway_stripe"), (0.65, "gateway_cashfree")), {}),
    "kill_gateway_http": (kill_at((0.3, "gateway_http"), (0.65, "gateway_http")), {}),
    "restart_rabbitmq": (restart_infra("rabbit"), {}),
    "restart_postgresql": (restart_infra("postgres"), {}),
    "drop_webhooks": (drop_webhooks, {"RECONCILE_INTERVAL_SECONDS": "10"}),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_purchases_survive(scenario, private_postgres, private_rabbit):
    fault, extra_env = SCENARIOS[scenario]
    logs = ROOT / "results" / "faults"
    logs.mkdir(parents=True, exist_ok=True)
    stack = IsolatedStack(f"faults_{scenario}_", logs / f"{scenario}.log",
                          extra_env={**STACK_ENV, **extra_env},
                          broker=private_rabbit.broker, database_url=private_postgres.url)
    stack.start()
    try:
        tap = harness.PurchasedTap(stack.env["AMQP_URI"])
        purchases = [harness.Purchase(country=("US", "IN")[i % 2]) for i in range(harness.PURCHASES)]
        pool = eventlet.GreenPool(harness.CONCURRENCY)
        signing_up = time.monotonic()
        list(pool.imap(lambda p: harness.sign_up(stack, p), purchases))
        print(f"{len(purchases)} payers signed up in {time.monotonic() - signing_up:.0f} s")

        progress = Progress(len(purchases))
        context = Context(stack, private_postgres, private_rabbit, progress)
        started = time.monotonic()
        breaking = eventlet.spawn(fault, context)

        def one(purchase):
            harness.buy(stack, purchase)
            progress.finished += 1

        list(pool.imap(one, purchases))
        breaking.wait()
        traffic_seconds = time.monotonic() - started
        books, took = harness.wait_until_balanced(
            lambda: harness.read_books(stack, private_postgres.url, purchases, tap), harness.RECOVERY_SECONDS)
    finally:
        stack.stop()

    row = {"scenario": scenario, "attempted": books.attempted, "paid": books.paid, "active": books.active,
           "events": books.events, "lost": books.lost, "doubled": books.doubled,
           "orphan_checkouts": books.orphan_checkouts, "outbox_backlog": books.outbox_backlog,
           "two_live_here": books.two_live_here, "two_live_at_gateways": books.two_live_at_gateways,
           "unsettled_holds": books.unsettled_holds,
           "recovery_seconds": round(took, 1) if took is not None else "-", "redelivered": books.redelivered,
           "traffic_seconds": round(traffic_seconds, 1), "client_errors": sum(len(p.errors) for p in purchases),
           "notes": context.notes}
    RESULTS.append(row)
    print(row)
    unpaid = [p.errors[-3:] for p in purchases if not p.paid][:3]
    assert books.balanced, (books, unpaid, context.notes)
