"""All sandbox state, in memory, behind one lock (saved to a file too if configured: persistence.py).

One re-entrant lock is enough for a test double and makes every operation atomic: a handler takes
it for the whole operation (`with store.transaction():`), so two requests never interleave half
way. Events emitted inside a transaction are handed to the webhook sender only after the lock is
released, so delivery threads never wait on the operation that created their event.
"""
import copy
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Callable, List, Optional

from . import periods
from .encoding import dumps, loads
from .errors import not_found
from .ids import new_uuid


class Store:
    def __init__(self, clock: Callable[[], float], webhooks_enabled: bool = True):
        self.lock = threading.RLock()
        self._clock = clock
        self.clock_offset = 0  # seconds added by POST /_sandbox/clock, for demos of schedules
        self.webhooks_enabled = webhooks_enabled
        self.webhooks_paused = False
        self.plans: dict = {}  # plan_id -> PlanEntity, as served
        self.subscriptions: dict = {}  # subscription_id -> SubscriptionEntity, as served
        self.private: dict = {}  # subscription_id -> what Cashfree knows but does not show
        self.sessions: dict = {}  # subscription_session_id -> subscription_id
        self.payments: dict = {}  # cf_payment_id -> SubscriptionPaymentEntity
        self.cf_ids: set = set()  # every numeric reference handed out
        self.events: dict = {}  # event id (= its x-idempotency-key) -> {id, type, event_time, body, ...}
        self.event_ids: List[str] = []  # creation order
        self.deliveries: dict = {}  # event id -> [attempt records]
        self.idempotency: dict = {}  # x-idempotency-key -> idempotency.Record
        self.requests: deque = deque(maxlen=500)
        self.faults: list = []
        self._outbox: List[str] = []
        self._depth = 0
        self.on_events: Optional[Callable[[List[str]], None]] = None
        self.on_change: Optional[Callable[[], None]] = None  # persistence.StateFile.changed, when saving

    def changed(self) -> None:
        """Something persistent may have changed: the state file (if any) saves soon. Cheap; any thread."""
        if self.on_change:
            self.on_change()

    def now(self) -> float:
        return int(self._clock()) + self.clock_offset

    @contextmanager
    def transaction(self):
        """Hold the lock for one whole operation; hand its events to the sender afterwards, and tell
        the state file (if any) that the store may have changed."""
        events: List[str] = []
        outermost = False
        try:
            with self.lock:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                    if self._depth == 0:  # the outermost transaction flushes
                        outermost = True
                        events, self._outbox = self._outbox, []
        finally:
            if outermost:
                self.changed()
            if events and self.on_events:
                self.on_events(events)

    # objects

    def plan(self, plan_id: str) -> dict:
        with self.lock:
            plan = self.plans.get(plan_id)
            if plan is None:
                raise not_found("plan", plan_id)
            return plan

    def subscription(self, subscription_id: str) -> dict:
        """The stored entity itself (callers mutate it under the lock); 404 if absent."""
        with self.lock:
            subscription = self.subscriptions.get(subscription_id)
            if subscription is None:
                raise not_found("subscription", subscription_id)
            return subscription

    def subscription_by_session(self, session_id: str) -> dict:
        with self.lock:
            subscription_id = self.sessions.get(session_id)
            if subscription_id is None:
                raise not_found("subscription_session", session_id)
            return self.subscriptions[subscription_id]

    def payments_of(self, subscription_id: str) -> List[dict]:
        """A subscription's payments, newest first."""
        with self.lock:
            ids = self.private[subscription_id]["payments"]
            return [self.payments[cf_payment_id] for cf_payment_id in reversed(ids)]

    def render(self, obj):
        """A copy safe to serialise after the lock is gone."""
        with self.lock:
            return copy.deepcopy(obj)

    # events

    def emit(self, type_: str, data: dict) -> dict:
        """Record a webhook event carrying a snapshot of `data` now; sent once the transaction ends.

        The body is serialised here, once: every delivery of the event sends (and signs) these bytes.
        """
        with self.lock:
            event_id = new_uuid()
            payload = {"data": self.render(data), "event_time": periods.iso(self.now()), "type": type_}
            event = {"id": event_id, "type": type_, "event_time": payload["event_time"], "created_at": time.time(),
                     "body": dumps(payload), "status": "pending" if self.webhooks_enabled else "not_sent",
                     "delivery_runs": 0}
            self.events[event_id] = event
            self.event_ids.append(event_id)
            self.deliveries[event_id] = []
            if self.webhooks_enabled:
                self._outbox.append(event_id)
            return event

    def record_attempt(self, event_id: str, attempt: dict, status: Optional[str] = None) -> None:
        with self.lock:
            self.deliveries[event_id].append(attempt)
            if status:
                self.events[event_id]["status"] = status
        self.changed()

    def events_with_attempts(self) -> list:
        with self.lock:
            return [{**{key: value for key, value in self.events[event_id].items() if key != "body"},
                     "idempotency_key": event_id, "payload": loads(self.events[event_id]["body"]),
                     "delivery_attempts": copy.deepcopy(self.deliveries[event_id])}
                    for event_id in self.event_ids]
