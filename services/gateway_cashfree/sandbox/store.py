"""All Cashfree sandbox state, in memory, behind one lock (saved to a file too if configured: persistence.py).

The lock, transactions, the event outbox and the clock are sandbox_kit.store's; this adds Cashfree's
plans, subscriptions, checkout sessions and payments, payment links with their orders and order
payments, refunds, and its webhook events.
"""
import copy
import time
from typing import Callable, List, Optional

from services.sandbox_kit import store

from . import periods
from .encoding import dumps, loads
from .errors import not_found
from .ids import new_uuid, numeric_id


class Store(store.SandboxStore):
    def __init__(self, clock: Callable[[], float], webhooks_enabled: bool = True):
        super().__init__(clock, webhooks_enabled)
        self.plans: dict = {}  # plan_id -> PlanEntity, as served
        self.subscriptions: dict = {}  # subscription_id -> SubscriptionEntity, as served
        self.private: dict = {}  # subscription_id -> what Cashfree knows but does not show
        self.sessions: dict = {}  # subscription_session_id -> subscription_id
        self.payments: dict = {}  # cf_payment_id -> SubscriptionPaymentEntity
        self.cf_ids: set = set()  # every numeric reference handed out
        self.events: dict = {}  # event id (= its x-idempotency-key) -> {id, type, event_time, body, ...}
        self.links: dict = {}  # link_id -> LinkEntity, as served
        self.link_facts: dict = {}  # link_id -> {"expires_at": timestamp, "order_id": its order's id or None}
        self.orders: dict = {}  # order_id -> PaymentLinkOrderEntity (a link's one order)
        self.order_payments: dict = {}  # order_id -> [PaymentEntity of every attempt, oldest first]
        self.subscription_refunds: dict = {}  # subscription_id -> [SubscriptionPaymentRefundEntity, oldest first]
        self.order_refunds: dict = {}  # order_id -> [RefundEntity, oldest first]

    # objects

    def new_reference(self) -> str:
        """A numeric cf_* reference never handed out before (call under the lock)."""
        reference = numeric_id(self.cf_ids)
        self.cf_ids.add(reference)
        return reference

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

    def link(self, link_id: str) -> dict:
        """The stored LinkEntity itself (callers mutate it under the lock); 404 if absent."""
        with self.lock:
            link = self.links.get(link_id)
            if link is None:
                raise not_found("link", link_id)
            return link

    def order(self, order_id: str) -> dict:
        """The stored order itself; 404 if absent."""
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                raise not_found("order", order_id)
            return order

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
                self.send_after_transaction(event_id)
            return event

    def record_attempt(self, event_id: str, attempt: dict, status: Optional[str] = None) -> None:
        with self.lock:
            self.deliveries[event_id].append(attempt)
            if status:
                self.events[event_id]["status"] = status
        self.changed()

    def events_with_attempts(self) -> list:
        """Every event, oldest first: id (= its x-idempotency-key), type, payload, status, delivery_attempts."""
        with self.lock:
            return [{**{key: value for key, value in self.events[event_id].items() if key != "body"},
                     "idempotency_key": event_id, "payload": loads(self.events[event_id]["body"]),
                     "delivery_attempts": copy.deepcopy(self.deliveries[event_id])}
                    for event_id in self.event_ids]
