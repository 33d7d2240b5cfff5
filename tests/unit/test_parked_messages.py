"""Consumers: a message that fails the same way on every delivery is parked once and acknowledged (the
handler returns, so nameko acks it), a transient failure is re-queued (the handler raises), and an
operator's replay runs the parked message through the same handler again. Billing's and usage's
real handlers, one worker at a time on a real PostgreSQL database (tests/interface/test_parked_messages.py
does the same on a real broker)."""
from unittest import mock
from uuid import uuid4

import psycopg
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from services.billing.models import BillingAccount, Inbox as BillingInbox, ParkedMessage as BillingParked, Payment
from services.usage.models import Inbox as UsageInbox, ParkedMessage as UsageParked
from services.usage.service import UsageService
from shared import consumers
from shared.errors import NotFound
from shared.outbox import rfc3339, utc_now
from tests.unit.test_billing_service import (  # noqa: F401  (fixtures, reused as they are)
    ORG, PERSONAL, account_id, billing, gateway_event, roles, session, team,
)


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch):
    monkeypatch.setattr(consumers, "RETRY_PAUSE_SECONDS", 0)


def integrity_error():
    return IntegrityError("INSERT INTO payments ...", {}, psycopg.errors.UniqueViolation("duplicate key value"))


def connection_lost():
    return OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed the connection unexpectedly"))


def parked(session, model=BillingParked):
    session.rollback()  # a fresh snapshot: what the consumer committed
    return session.scalars(select(model).order_by(model.parked_at)).all()


def handled(session, event_id, inbox=BillingInbox):
    session.rollback()
    return session.get(inbox, event_id) is not None


def payments(session):
    session.rollback()
    return session.scalars(select(Payment)).all()


@pytest.fixture
def payment(account_id):
    """A gateway.payment_succeeded for the org's billing account."""
    _, payload = gateway_event("payment_succeeded", account_id=account_id)
    return payload


def test_a_constraint_violation_is_parked_once_and_acknowledged(billing, session, payment):
    with mock.patch.object(billing, "_record_payment", side_effect=integrity_error()):
        assert billing.on_payment_succeeded(payment) is None  # returned, not raised: nameko acks it
        billing.on_payment_succeeded(payment)  # delivered again all the same (a redelivery racing the ack)
    [row] = parked(session)
    assert (row.event_type, row.event_id, row.replayed_at) == ("gateway.payment_succeeded", payment["event_id"], None)
    assert row.error.startswith("IntegrityError") and payment["gateway_invoice_id"] in row.payload
    assert not handled(session, payment["event_id"]) and payments(session) == []  # the handler's work rolled back


def test_a_value_the_database_refuses_is_parked_not_retried(billing, session, payment):
    """A real DataError: an amount past bigint, which the event's schema does not bound."""
    huge = {**payment, "amount": 10 ** 20}
    assert billing.on_payment_succeeded(huge) is None
    [row] = parked(session)
    assert row.error.startswith("DataError") and row.event_id == huge["event_id"]
    assert payments(session) == []


def test_a_fact_naming_another_accounts_checkout_is_parked_not_dropped(billing, session, team):
    """Not a database error at all: what was 'logged and dropped' is now kept for an operator."""
    org_checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    billing.summary(team.owner, PERSONAL)  # the owner's personal account exists too
    personal_id = str(session.scalar(select(BillingAccount.id).where(BillingAccount.kind == "personal")))
    _, completed = gateway_event("checkout_completed", account_id=personal_id, checkout_id=org_checkout["id"])
    billing.on_checkout_completed(completed)
    [row] = parked(session)
    assert row.event_type == "gateway.checkout_completed" and row.error.startswith("ValueError: Checkout")
    assert billing.get_checkout(team.owner, ORG, org_checkout["id"])["status"] == "open"


@pytest.mark.parametrize("make_error", [connection_lost, lambda: ConnectionError("broker gone")])
def test_a_transient_failure_is_requeued_and_not_parked(billing, session, payment, make_error):
    with mock.patch.object(billing, "_record_payment", side_effect=make_error()):
        with pytest.raises(type(make_error())):  # raised: nameko re-queues it (requeue_on_error)
            billing.on_payment_succeeded(payment)
    assert parked(session) == [] and not handled(session, payment["event_id"])
    billing.on_payment_succeeded(payment)  # the next delivery, with the database back
    assert handled(session, payment["event_id"]) and len(payments(session)) == 1


def test_a_replay_after_the_fix_applies_the_message_once(billing, session, payment):
    with mock.patch.object(billing, "_record_payment", side_effect=integrity_error()):
        billing.on_payment_succeeded(payment)
    [row] = parked(session)

    replayed = billing.replay_parked(str(row.id))
    assert replayed["status"] == "applied" and replayed["message"]["event_id"] == payment["event_id"]
    assert [p.gateway_invoice_id for p in payments(session)] == [payment["gateway_invoice_id"]]
    assert handled(session, payment["event_id"])  # a later redelivery is a duplicate
    [row] = parked(session)
    assert row.replayed_at is not None

    assert billing.replay_parked(str(row.id))["status"] == "already_replayed"
    billing.on_payment_succeeded(payment)
    assert len(payments(session)) == 1


def test_a_replay_that_fails_again_keeps_it_parked_with_the_new_error(billing, session, payment):
    with mock.patch.object(billing, "_record_payment", side_effect=integrity_error()):
        billing.on_payment_succeeded(payment)
    [row] = parked(session)
    with mock.patch.object(billing, "_record_payment", side_effect=ValueError("still wrong")):
        failed = billing.replay_parked(str(row.id))
    assert failed["status"] == "failed" and failed["message"]["error"] == "ValueError: still wrong"
    [row] = parked(session)
    assert row.replayed_at is None and not handled(session, payment["event_id"]) and payments(session) == []


def test_a_message_another_delivery_applied_meanwhile_is_only_marked(billing, session, payment):
    with mock.patch.object(billing, "_record_payment", side_effect=integrity_error()):
        billing.on_payment_succeeded(payment)
    billing.on_payment_succeeded(payment)  # published again (the outbox is at-least-once), after the fix
    [row] = parked(session)
    assert billing.replay_parked(str(row.id))["status"] == "already_handled"
    assert len(payments(session)) == 1 and parked(session)[0].replayed_at is not None


def test_replaying_an_id_never_parked_is_not_found(billing):
    for unknown in (str(uuid4()), "not-a-uuid"):
        with pytest.raises(NotFound):
            billing.replay_parked(unknown)


def test_usage_parks_a_plan_its_projection_cannot_hold(db_session):
    """usage's consumers park too (into usage's own table): a quota past bigint."""
    session = db_session("usage")
    usage = worker_factory(UsageService, db=session)
    event = {"event_id": str(uuid4()), "occurred_at": rfc3339(utc_now()), "billing_account_id": str(uuid4()),
             "account": {"kind": "org", "id": str(uuid4())}, "subscription_id": "sub-1", "gateway": "stripe",
             "plan_code": "growth_monthly", "data_quota_bytes": 10 ** 20, "amount": 4900, "currency": "usd",
             "interval": "month", "current_period_start": None, "current_period_end": None, "checkout_id": None}
    usage.on_plan_purchased(event)
    [row] = parked(session, UsageParked)
    assert (row.event_type, row.event_id) == ("plan.purchased", event["event_id"]) and row.error.startswith("DataError")
    assert not handled(session, event["event_id"], UsageInbox)
    assert usage.replay_parked(str(row.id))["status"] == "failed"  # the payload itself is wrong: still parked


def test_after_commit_runs_once_for_an_event_applied_and_never_for_a_duplicate_or_a_parked_one(
        billing, session, payment):
    with mock.patch.object(type(billing), "after_commit", autospec=True) as after_commit:
        billing.on_payment_succeeded(payment)
        billing.on_payment_succeeded(payment)  # the same event again: the inbox drops it
        assert after_commit.call_count == 1

        _, other = gateway_event("payment_succeeded", account_id=payment["account_id"], gateway_invoice_id="in_9")
        with mock.patch.object(billing, "_record_payment", side_effect=integrity_error()):
            billing.on_payment_succeeded(other)  # parked
        assert after_commit.call_count == 1

        [row] = parked(session)
        assert billing.replay_parked(str(row.id))["status"] == "applied"
        assert after_commit.call_count == 2  # a replay that applied is followed up like a delivery


def test_a_message_that_cannot_even_be_parked_is_requeued_not_lost(billing, session, payment):
    with mock.patch.object(billing, "_record_payment", side_effect=integrity_error()), \
            mock.patch.object(consumers, "insert", side_effect=connection_lost()):
        with pytest.raises(OperationalError):
            billing.on_payment_succeeded(payment)  # raises: nameko re-queues it
    assert parked(session) == [] and not handled(session, payment["event_id"])
