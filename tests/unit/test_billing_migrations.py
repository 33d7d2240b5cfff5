"""billing's data migrations, on a database of their own: what existing rows become."""
import os
import uuid

import psycopg
import pytest
from alembic import command

from shared import db
from shared.config import settings
from shared.migrate import alembic_config, drop_database

BEFORE_ONE_LIVE_PLAN = "48ead985578d"
ONE_LIVE_PLAN = "c3a9e1f07b52"


@pytest.fixture
def scratch_billing(monkeypatch):
    """billing's database under a prefix of its own, at the revision before one-live-plan."""
    monkeypatch.setenv("DATABASE_PREFIX", os.environ["DATABASE_PREFIX"] + "migrations_")
    settings.cache_clear()
    drop_database("billing")
    db.ensure_database("billing")
    command.upgrade(alembic_config("billing"), BEFORE_ONE_LIVE_PLAN)
    url = db.database_url("billing").set(drivername="postgresql").render_as_string(hide_password=False)
    yield url
    db.dispose_engines()
    drop_database("billing")
    monkeypatch.undo()
    settings.cache_clear()


def test_an_account_already_holding_two_live_subscriptions_keeps_the_newest_and_an_alert_is_raised(
        scratch_billing):
    account = uuid.uuid4()
    with psycopg.connect(scratch_billing, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts (id, kind, owner_ref, country, currency, gateway, name, email) "
                     "VALUES (%s, 'org', 'org-1', 'US', 'usd', 'stripe', 'Acme', 'a@example.com')", (account,))
        for gateway_id, status, age in (("sub_old", "active", "3 days"), ("sub_new", "past_due", "1 day"),
                                        ("sub_gone", "cancelled", "5 days")):
            conn.execute("INSERT INTO subscriptions (id, account_id, gateway, gateway_subscription_id, plan_code, "
                         "amount, currency, status, cancel_at_period_end, last_event_at, purchased_at, created_at) "
                         "VALUES (%s, %s, 'stripe', %s, 'starter_monthly', 1900, 'usd', %s, false, 0, now(), "
                         "now() - %s::interval)", (uuid.uuid4(), account, gateway_id, status, age))

    command.upgrade(alembic_config("billing"), ONE_LIVE_PLAN)

    with psycopg.connect(scratch_billing, autocommit=True) as conn:
        rows = dict((gateway_id, (status, hold, verified)) for gateway_id, status, hold, verified in conn.execute(
            "SELECT gateway_subscription_id, status, hold_reason, verified_at IS NOT NULL FROM subscriptions"))
        alerts = conn.execute("SELECT kind, details->>'gateway_subscription_id' FROM alerts").fetchall()
    assert rows == {"sub_new": ("past_due", None, True), "sub_old": ("cancelled", "second_live_plan", True),
                    "sub_gone": ("cancelled", None, True)}
    assert alerts == [("second_live_plan", "sub_old")]
