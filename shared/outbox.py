"""The transactional outbox: state and the event announcing it commit together.

`add_event(session, Outbox, ...)` writes the event row in the caller's transaction. The relay (a
dependency of every publishing service) publishes unsent rows with broker confirms and marks them
sent. A crash between commit and publish leaves the row unsent, and the next relay pass, in this
process or its replacement, publishes it: delivery is at-least-once, so consumers dedupe with the
inbox on `event_id`.
"""
import logging
import uuid
from datetime import datetime, timezone

import eventlet
from eventlet.event import Event
from nameko.extensions import DependencyProvider
from nameko.amqp.publish import Publisher
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.standalone.events import get_event_exchange
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from shared import db
from shared.events import validate_event

log = logging.getLogger(__name__)


def utc_now():
    return datetime.now(timezone.utc)


def rfc3339(moment):
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _payload(event_type, event_id, data):
    """The event as it goes out: its id and time, then `data`, checked against its schema."""
    payload = {"event_id": str(event_id), "occurred_at": rfc3339(utc_now()), **data}
    validate_event(event_type, payload)
    return payload


def add_event(session, outbox_model, event_type, data):
    """Stage `event_type` with `data` in the session's transaction; returns the event id."""
    event_id = uuid.uuid4()
    payload = _payload(event_type, event_id, data)
    session.add(outbox_model(id=event_id, event_type=event_type, payload=payload))
    session.info["outbox"] = True  # wakes the relay after commit (shared.db.make_session_factory)
    return str(event_id)


# Names the ids of facts staged with add_event_once (uuid5 of the fact's own key).
ONCE_NAMESPACE = uuid.UUID("5d1f0c1e-8a7b-4d53-9a51-0c3f1b7e2a40")


def add_event_once(session, outbox_model, event_type, data, key):
    """Stage like add_event, under an id derived from `key` (what makes the fact the same fact, e.g.
    the gateway's event id): the fact staged again (a webhook and a reconciliation finding the same
    payment, a replay) is not staged twice, and had it been, consumers' inboxes would see one id.
    Returns the event id, or None when it was staged before."""
    event_id = uuid.uuid5(ONCE_NAMESPACE, f"{event_type}:{key}")
    payload = _payload(event_type, event_id, data)
    staged = session.execute(insert(outbox_model).values(id=event_id, event_type=event_type, payload=payload)
                             .on_conflict_do_nothing().returning(outbox_model.id)).first()
    if staged is None:
        return None
    session.info["outbox"] = True
    return str(event_id)


def event_publisher(service_name, nameko_config):
    """publish(event_type, payload) onto `<service>.events`, as nameko's EventDispatcher would.

    Confirmed by the broker before it returns (so "sent" means RabbitMQ has it), persistent, and
    declaring the exchange, which may not exist yet when no consumer has started.
    """
    exchange = get_event_exchange(service_name, nameko_config)
    publisher = Publisher(nameko_config[AMQP_URI_CONFIG_KEY], use_confirms=True, serializer="json",
                          declare=[exchange])

    def publish(event_type, payload):
        publisher.publish(payload, exchange=exchange, routing_key=event_type,
                          message_id=payload["event_id"])

    return publish


def relay_pending(session_factory, outbox_model, publish, batch_size=100):
    """Publish one batch of unsent events in creation order; returns how many were sent.

    Rows are locked with SKIP LOCKED so several processes of one service never publish the same
    row at once. A publish failure stops the batch and leaves that row (and later ones) unsent.
    """
    with session_factory() as session:
        rows = session.scalars(
            select(outbox_model)
            .where(outbox_model.sent_at.is_(None))
            .order_by(outbox_model.created_at, outbox_model.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        ).all()
        sent = 0
        for row in rows:
            try:
                publish(row.event_type, row.payload)
            except Exception as exc:  # broker down, connection reset...: retried on the next pass
                row.attempts += 1
                row.last_error = repr(exc)[:1000]
                log.warning("outbox publish of %s %s failed: %r", row.event_type, row.id, exc)
                break
            row.sent_at = utc_now()
            sent += 1
        session.commit()
        return sent


class OutboxRelay(DependencyProvider):
    """Background greenlet that drains the service's outbox to RabbitMQ.

    Woken right after a commit that staged events, and every `poll_interval` seconds anyway
    (events left by a crashed process, or a broker that was down).
    """

    def __init__(self, outbox_model, poll_interval=1.0, owner=None):
        self.outbox_model = outbox_model
        self.poll_interval = poll_interval
        self.owner = owner  # as Database's: whose outbox, and whose name the events go out under

    @property
    def service_name(self):
        return self.owner or self.container.service_name

    def setup(self):
        service_name = self.service_name
        self.session_factory = db.make_session_factory(service_name)
        self.publish = event_publisher(service_name, self.container.config)
        self._wakeup = Event()
        self._running = False
        db.on_commit(service_name, self.wake)

    def start(self):
        self._running = True
        self._thread = self.container.spawn_managed_thread(self._run, identifier="outbox_relay")

    def stop(self):
        self._running = False
        self.wake()
        self._thread.wait()
        db.remove_commit_listener(self.service_name, self.wake)

    def kill(self):
        self._running = False
        db.remove_commit_listener(self.service_name, self.wake)

    def wake(self):
        if not self._wakeup.ready():
            self._wakeup.send(True)

    def _run(self):
        while self._running:
            # A fresh event before the pass: a commit during the pass wakes the next wait.
            self._wakeup = Event()
            try:
                while relay_pending(self.session_factory, self.outbox_model, self.publish):
                    pass
            except Exception:  # the database is down: keep the relay alive and try again
                log.exception("outbox relay pass failed")
            with eventlet.Timeout(self.poll_interval, False):
                self._wakeup.wait()

    def get_dependency(self, worker_ctx):
        return self
