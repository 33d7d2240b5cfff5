"""Reconciliation on its schedule: webhooks lost, nobody asks, the plan still becomes active.

The shared e2e stack reconciles only on demand (its tests need a quiet gateway); this one starts a
stack of its own that reconciles every 2 seconds.
"""
import time

import pytest

from tests.conftest import running_stack
from tests.e2e.conftest import PASSWORD, Client, eventually
from tests.e2e.gateways import DRIVERS
from tests.e2e.test_reconciliation import active_with_period, pay_while_webhooks_fail

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def scheduled_stack(tmp_path_factory):
    """A stack of its own whose reconciliation runs every 2 seconds."""
    yield from running_stack(tmp_path_factory, "e2e_sched", extra_env={"RECONCILE_INTERVAL_SECONDS": "2"})


@pytest.mark.parametrize("country", sorted(DRIVERS))
def test_the_schedule_recovers_missed_webhooks_unasked(scheduled_stack, country):
    region = DRIVERS[country](scheduled_stack)
    with Client(scheduled_stack.base_url) as client:
        signed_up = client.post("/api/v1/auth/signup", json={
            "email": f"sched-{country.lower()}-{time.monotonic_ns()}@example.com", "password": PASSWORD,
            "name": "Sam", "country": country, "phone": region.payer_phone}).json()
        client.token = signed_up["token"]
        client.acct = "/api/v1/billing/personal"
        try:
            pay_while_webhooks_fail(client, region)
            assert eventually(lambda: active_with_period(client), timeout=60), client.get(client.acct).text
        finally:
            region.resume_webhooks()
