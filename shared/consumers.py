"""Consuming events: each delivery handled once, transient failures retried, poison logged.

    @consumes("gateway.payment_succeeded", sources=("gateway_stripe", "gateway_cashfree"), inbox=Inbox)
    def on_payment(self, payload): ...   # change state in self.db; do not commit

The handler's changes, the inbox row and any events it stages commit in one transaction. A
redelivered event finds its id in the inbox and does nothing. A service may define
`after_commit(self)`: it runs once the handler's transaction is committed (work that must not hold
the transaction open, such as calling a gateway; its failures are the service's to log and retry). A database or broker hiccup
re-queues the message (after a pause, so a dead dependency is not hammered); a payload that can
never be applied is logged with its id and acknowledged, so it cannot block the queue.
"""
import functools
import logging

import eventlet
from nameko.events import event_handler
from sqlalchemy.exc import DBAPIError, OperationalError

from shared.inbox import first_delivery

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, DBAPIError, ConnectionError, TimeoutError, eventlet.Timeout)
RETRY_PAUSE_SECONDS = 1.0


def consumes(event_type, sources, inbox):
    def decorate(fn):
        @functools.wraps(fn)
        def handler(self, payload):
            try:
                if first_delivery(self.db, inbox, payload["event_id"]):
                    fn(self, payload)
                    self.db.commit()
                else:
                    self.db.rollback()
                    return
            except TRANSIENT_ERRORS:
                self.db.rollback()
                log.warning("%s %s: transient failure, re-queued", event_type, payload.get("event_id"),
                            exc_info=True)
                eventlet.sleep(RETRY_PAUSE_SECONDS)
                raise
            except Exception:
                self.db.rollback()
                log.exception("%s %s could not be applied and was dropped: %r", event_type,
                              payload.get("event_id"), payload)
                return
            after_commit = getattr(self, "after_commit", None)
            if after_commit is not None:
                after_commit()

        for source in sources:
            handler = event_handler(source, event_type, requeue_on_error=True)(handler)
        return handler
    return decorate
