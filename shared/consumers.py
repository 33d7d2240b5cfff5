"""Consuming events: each delivery handled once, transient failures retried, the rest parked.

    @consumes("gateway.payment_succeeded", sources=("gateway_stripe", "gateway_cashfree"), inbox=Inbox)
    def on_payment(self, payload): ...   # change state in self.db; do not commit

The handler's changes, the inbox row and any events it stages commit in one transaction. A
redelivered event finds its id in the inbox and does nothing. A database or broker hiccup
re-queues the message (after a pause, so a dead dependency is not hammered). Any other failure
would fail the same way on every delivery (a constraint the event violates, a value out of range,
a payload that names no record of ours, a bug): the message is logged with its payload, parked in
the service's `parked_messages` table (its ParkedMessageMixin model, declared beside the inbox's)
for an operator, and acknowledged, so it neither blocks the queue nor is lost. The `replay_parked`
RPC (ReplayParkedMixin) runs a parked message through its handler again once the cause is fixed
(`make ops ARGS="replay-parked <service> <id>"`). A service may define `after_commit(self)`: it runs
once a handler's transaction is committed, for work that must not hold the transaction open (such
as calling a gateway); its failures are the service's to log and retry.
"""
import functools
import json
import logging
import uuid
from dataclasses import dataclass

import eventlet
from amqp.exceptions import RecoverableChannelError, RecoverableConnectionError
from kombu.exceptions import OperationalError as BrokerError
from nameko.events import event_handler
from nameko.exceptions import RpcTimeout, UnknownService
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.db import parse_uuid
from shared.errors import GatewayError, NotFound
from shared.inbox import first_delivery
from shared.models import ParkedMessageMixin
from shared.outbox import rfc3339, utc_now
from shared.service import api_rpc

log = logging.getLogger(__name__)

# What may well succeed on the next delivery: the database or the broker unreachable or restarting,
# a serialization failure or deadlock (OperationalError), a pool or RPC timeout, a service not up
# yet, a gateway that failed or did not answer.
TRANSIENT_ERRORS = (
    OperationalError, InterfaceError, DisconnectionError, PoolTimeout,
    BrokerError, RecoverableConnectionError, RecoverableChannelError, ConnectionError, TimeoutError,
    RpcTimeout, UnknownService, GatewayError, eventlet.Timeout,
)
RETRY_PAUSE_SECONDS = 1.0
MAX_ERROR_LENGTH = 4000


def is_transient(error):
    # Any database error met on a connection SQLAlchemy found broken is the connection's fault.
    return isinstance(error, TRANSIENT_ERRORS) or (isinstance(error, DBAPIError) and error.connection_invalidated)


@dataclass(frozen=True)
class Consumer:
    """What `consumes` knows of one handler, kept on it for replay_parked."""
    event_type: str
    apply: object  # the undecorated handler: apply(service, payload)
    inbox: type
    parked: type


def parked_model_beside(inbox):
    """The service's ParkedMessageMixin model: the one declared on the same Base as its inbox."""
    for mapper in inbox.registry.mappers:
        if issubclass(mapper.class_, ParkedMessageMixin):
            return mapper.class_
    raise LookupError(f"{inbox.__module__} declares no ParkedMessageMixin model beside {inbox.__name__}")


def consumes(event_type, sources, inbox):
    def decorate(fn):
        consumer = Consumer(event_type, fn, inbox, parked_model_beside(inbox))

        @functools.wraps(fn)
        def handler(self, payload):
            try:
                applied = _apply_once(self, consumer, payload)
                self.db.commit()
            except (Exception, eventlet.Timeout) as error:
                self.db.rollback()
                if is_transient(error):
                    log.warning("%s %s: transient failure, re-queued", event_type, _event_id(payload),
                                exc_info=True)
                    eventlet.sleep(RETRY_PAUSE_SECONDS)
                    raise
                log.exception("%s %s could not be applied and was parked: %r", event_type, _event_id(payload),
                              payload)
                _park(self, consumer, payload, error)
                return
            if applied:
                _after_commit(self)

        handler.consumer = consumer
        for source in sources:
            handler = event_handler(source, event_type, requeue_on_error=True)(handler)
        return handler
    return decorate


def _event_id(payload):
    return payload.get("event_id") if isinstance(payload, dict) else None


def _apply_once(service, consumer, payload):
    """Run the handler in the session's transaction unless the inbox has the event; True if it ran."""
    if not first_delivery(service.db, consumer.inbox, payload["event_id"]):
        return False
    consumer.apply(service, payload)
    return True


def _after_commit(service):
    callback = getattr(service, "after_commit", None)
    if callback is not None:
        callback()


def _describe(error):
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]


def _park(service, consumer, payload, error):
    """Keep the message in its own transaction (the handler's is rolled back): one row per event
    id, so a message parked again (a redelivery that raced the ack, a failed replay) updates its row.
    If even that fails, the message is re-queued: better retried than lost."""
    event_id = _event_id(payload)
    values = {"event_type": consumer.event_type, "event_id": str(event_id)[:200] if event_id is not None else None,
              "payload": json.dumps(payload), "error": _describe(error), "parked_at": utc_now(),
              "replayed_at": None}
    try:
        service.db.execute(insert(consumer.parked).values(id=uuid.uuid4(), **values).on_conflict_do_update(
            index_elements=["event_id"], set_={name: values[name] for name in ("payload", "error", "parked_at",
                                                                               "replayed_at")}))
        service.db.commit()
    except Exception:
        service.db.rollback()
        log.exception("%s %s could not be parked; re-queued", consumer.event_type, event_id)
        eventlet.sleep(RETRY_PAUSE_SECONDS)
        raise


@functools.cache
def _consumers_of(service_class):
    """{event type: Consumer} of a service class's @consumes handlers."""
    found = {}
    for name in dir(service_class):
        consumer = getattr(getattr(service_class, name, None), "consumer", None)
        if isinstance(consumer, Consumer):
            found[consumer.event_type] = consumer
    return found


def parked_dict(row):
    return {"id": str(row.id), "event_type": row.event_type, "event_id": row.event_id, "error": row.error,
            "parked_at": rfc3339(row.parked_at), "replayed_at": rfc3339(row.replayed_at) if row.replayed_at else None}


class ReplayParkedMixin:
    """`replay_parked(id)` RPC for a service whose consumers park what they cannot apply."""

    @api_rpc
    def replay_parked(self, parked_id):
        """Run a parked message through its handler again (after a fix): see shared.consumers.replay_parked."""
        consumers = _consumers_of(type(self)).values()
        return replay_parked(self, next(iter(consumers)).parked, parked_id)


def replay_parked(service, parked_model, parked_id):
    """Run a parked message through its handler again, in a fresh transaction with the inbox check,
    as its delivery would have: the row is marked replayed in the same transaction as what the
    handler changed. {"status": "applied" | "already_handled" (the inbox had its id: another
    delivery applied it since) | "already_replayed" | "failed" (the row keeps the new error), and the
    row (parked_dict)}. Raises NotFound for an id this service never parked."""
    parked_uuid = parse_uuid(parked_id)
    row = service.db.scalar(select(parked_model).where(parked_model.id == parked_uuid).with_for_update()
                            .execution_options(populate_existing=True)) if parked_uuid else None
    if row is None:
        raise NotFound(f"No parked message {parked_id} in {type(service).name}.")
    if row.replayed_at is not None:
        service.db.rollback()
        return {"status": "already_replayed", "message": parked_dict(row)}
    consumer = _consumers_of(type(service)).get(row.event_type)
    payload = json.loads(row.payload)
    try:
        if consumer is None:
            raise LookupError(f"{type(service).name} no longer consumes {row.event_type}")
        applied = _apply_once(service, consumer, payload)
        row.replayed_at = utc_now()
        service.db.commit()
    except (Exception, eventlet.Timeout) as error:
        service.db.rollback()
        log.exception("replaying parked %s %s failed", row.event_type, row.event_id)
        service.db.execute(parked_model.__table__.update().where(parked_model.id == parked_uuid)
                           .values(error=_describe(error)))
        service.db.commit()
        row = service.db.get(parked_model, parked_uuid, populate_existing=True)
        return {"status": "failed", "message": parked_dict(row)}
    if applied:
        _after_commit(service)
    return {"status": "applied" if applied else "already_handled", "message": parked_dict(row)}
