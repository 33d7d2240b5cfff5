"""Parking on a real broker: a message whose handler fails for good is parked once and acknowledged (it
is not in its queue afterwards, even once the consumer has stopped), a transient failure comes back
and is applied, and replay_parked runs the parked message again over RPC."""
import uuid
from urllib.parse import quote

import eventlet
import pytest
import requests
from nameko.standalone.events import event_dispatcher
from nameko.testing.services import entrypoint_hook
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from services.billing.models import Inbox, ParkedMessage
from shared import consumers
from shared.consumers import ReplayParkedMixin, consumes
from shared.db import Database

SOURCE, EVENT_TYPE = "gateway_stripe", "gateway.checkout_failed"
OUTCOMES = []  # what each call of the handler does next: an exception to raise, or None to succeed
CALLS = []


class Consumer(ReplayParkedMixin):
    name = "parking_consumer"
    db = Database(owner="billing")

    @consumes(EVENT_TYPE, sources=(SOURCE,), inbox=Inbox)
    def on_event(self, payload):
        CALLS.append(payload["event_id"])
        outcome = OUTCOMES.pop(0) if OUTCOMES else None
        if outcome is not None:
            raise outcome


QUEUE = f"evt-{SOURCE}-{EVENT_TYPE}--{Consumer.name}.on_event"


@pytest.fixture
def consumer(container_factory, service_config, db_session, monkeypatch):
    monkeypatch.setattr(consumers, "RETRY_PAUSE_SECONDS", 0.1)
    OUTCOMES.clear()
    CALLS.clear()
    container = container_factory(Consumer, service_config)
    container.start()
    return container


def publish(service_config):
    event_id = str(uuid.uuid4())
    event_dispatcher(service_config)(SOURCE, EVENT_TYPE, {"event_id": event_id, "account_id": "a-1"})
    return event_id


def eventually(check, timeout=15):
    with eventlet.Timeout(timeout):
        while not check():
            eventlet.sleep(0.05)


def rows(db_session, model):
    session = db_session("billing")
    try:
        return session.scalars(select(model)).all()
    finally:
        session.close()


def queued(rabbit_config):
    """Messages still in the consumer's queue (unacknowledged ones come back here when the consumer
    stops), read through the management API and left there."""
    answer = requests.post(f"http://127.0.0.1:15672/api/queues/{quote(rabbit_config['vhost'], safe='')}/{QUEUE}/get",
                           json={"count": 10, "ackmode": "ack_requeue_true", "encoding": "auto"},
                           auth=("guest", "guest"), timeout=10)
    answer.raise_for_status()
    return answer.json()


def test_a_permanent_failure_is_parked_once_and_acknowledged(consumer, service_config, db_session,
                                                               rabbit_config):
    OUTCOMES.append(IntegrityError("INSERT ...", {}, Exception("duplicate key value violates unique constraint")))
    event_id = publish(service_config)
    eventually(lambda: rows(db_session, ParkedMessage))
    consumer.stop()  # an unacknowledged message would go back to the queue now
    assert queued(rabbit_config) == []
    assert CALLS == [event_id]
    [row] = rows(db_session, ParkedMessage)
    assert (row.event_type, row.event_id, row.replayed_at) == (EVENT_TYPE, event_id, None)
    assert rows(db_session, Inbox) == []


def test_a_transient_failure_is_delivered_again_and_applied(consumer, service_config, db_session,
                                                           rabbit_config):
    OUTCOMES.append(OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")))
    event_id = publish(service_config)
    eventually(lambda: [row.message_id for row in rows(db_session, Inbox)] == [event_id])
    assert CALLS == [event_id, event_id]
    assert rows(db_session, ParkedMessage) == []
    consumer.stop()
    assert queued(rabbit_config) == []


def test_replay_parked_runs_the_handler_again_over_rpc(consumer, service_config, db_session):
    OUTCOMES.append(ValueError("names no account of ours"))
    event_id = publish(service_config)
    eventually(lambda: rows(db_session, ParkedMessage))
    [row] = rows(db_session, ParkedMessage)
    with entrypoint_hook(consumer, "replay_parked") as replay_parked:
        assert replay_parked(str(row.id))["status"] == "applied"
    assert CALLS == [event_id, event_id]
    assert [inboxed.message_id for inboxed in rows(db_session, Inbox)] == [event_id]
    assert rows(db_session, ParkedMessage)[0].replayed_at is not None
