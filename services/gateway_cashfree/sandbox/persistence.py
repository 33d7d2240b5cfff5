"""What the Cashfree sandbox saves across restarts (CASHFREE_SANDBOX_STATE_FILE), and restoring it.

The file's life (load or set aside, the background writer, atomic saves) is sandbox_kit.persistence's;
see there why. What is saved (file format FORMAT_VERSION): plans and subscriptions as served, what
Cashfree keeps private about a subscription (its payments, whether its checkout session is still
open, the allowed methods, the next charge time, how its charges turn out), checkout sessions,
payments, payment links as served with when they expire and their orders and every payment attempt
on those, the refunds of subscription payments and of orders, every numeric cf_*
reference handed out (so none is handed out twice), the events with the exact bodies their
deliveries sent, their status and delivery records, the clock offset, and the idempotency records
of successful requests (a retry after a restart replays the original answer). Amounts stay exact:
a Decimal is written as {"__decimal__": "1499.00"}. Webhook deliveries still pending at shutdown
are not resumed after a restart: those events stay listed (GET /_sandbox/events, status "pending")
and can be sent again with POST /_sandbox/webhooks/{event_id}/redeliver.
"""
import json
import logging
from decimal import Decimal
from typing import Callable

from services.sandbox_kit import idempotency, persistence
from services.sandbox_kit.persistence import SAVE_INTERVAL, StateError, dict_field

from .store import Store

log = logging.getLogger(__name__)

FORMAT = "cashfree-sandbox-state"
FORMAT_VERSION = 1


# how amounts are written

DECIMAL = "__decimal__"


def encode(document: dict) -> str:
    return json.dumps(document, default=_tag)


def decode(text: str):
    return json.loads(text, object_hook=_untag)


def _tag(value):
    if isinstance(value, Decimal):
        return {DECIMAL: str(value)}  # str keeps the exponent: 1499.00 comes back as 1499.00
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _untag(obj: dict):
    if len(obj) == 1 and DECIMAL in obj:
        return Decimal(obj[DECIMAL])
    return obj


# what is saved, and restoring it

def snapshot(store: Store) -> dict:
    """The persistent part of the store (live references: serialise before releasing the lock)."""
    return {
        "clock_offset": store.clock_offset,
        "plans": store.plans,
        "subscriptions": store.subscriptions,
        "private": store.private,
        "sessions": store.sessions,
        "payments": store.payments,
        "cf_ids": sorted(store.cf_ids),
        "events": store.events,
        "event_ids": store.event_ids,
        "deliveries": store.deliveries,
        "idempotency": idempotency.saved(store.idempotency, request_field="body", response_field="response"),
        "links": store.links,
        "link_facts": store.link_facts,
        "orders": store.orders,
        "order_payments": store.order_payments,
        "subscription_refunds": store.subscription_refunds,
        "order_refunds": store.order_refunds,
    }


def restore(store: Store, state: dict) -> None:
    """Replace the store's persistent part by `state`, all or nothing: a state that does not fit raises
    (StateError, or whatever a missing key or a wrong type raises) before anything is replaced."""
    clock_offset = state["clock_offset"]
    if isinstance(clock_offset, bool) or not isinstance(clock_offset, int):
        raise StateError("clock_offset is not an integer")
    plans, subscriptions = dict_field(state, "plans"), dict_field(state, "subscriptions")
    private, sessions = dict_field(state, "private"), dict_field(state, "sessions")
    payments = dict_field(state, "payments")
    cf_ids = set(state["cf_ids"])
    events, event_ids = dict_field(state, "events"), list(state["event_ids"])
    deliveries = dict_field(state, "deliveries")
    for subscription_id, subscription in subscriptions.items():
        if not isinstance(subscription, dict) or subscription.get("subscription_id") != subscription_id:
            raise StateError(f"subscription {subscription_id!r} is not a subscription")
        facts = private[subscription_id]
        if any(payment_id not in payments for payment_id in facts["payments"]):
            raise StateError(f"subscription {subscription_id!r} names a payment that is not there")
    for session_id, subscription_id in sessions.items():
        if subscription_id not in subscriptions:
            raise StateError(f"session {session_id!r} belongs to no subscription")
    for event_id in event_ids:
        event = events[event_id]
        if not isinstance(event["body"], str) or not isinstance(event["delivery_runs"], int):
            raise StateError(f"event {event_id!r} has no body")
        # Delivery records come back as they were; deliveries still pending at shutdown are not
        # resumed (their threads died with the old process): the event stays listed for reconciliation.
        deliveries.setdefault(event_id, [])
    # Payment links came later in version 1: a file saved before them has none.
    links, link_facts = _optional(state, "links"), _optional(state, "link_facts")
    orders, order_payments = _optional(state, "orders"), _optional(state, "order_payments")
    for link_id, link in links.items():
        if not isinstance(link, dict) or link.get("link_id") != link_id:
            raise StateError(f"link {link_id!r} is not a link")
        order_id = link_facts[link_id]["order_id"]
        if order_id is not None and (order_id not in orders or not isinstance(order_payments[order_id], list)):
            raise StateError(f"link {link_id!r} names an order that is not there")
    # Refunds came later still: a file saved before them has none.
    subscription_refunds, order_refunds = _optional(state, "subscription_refunds"), _optional(state, "order_refunds")
    for refunded, owners in ((subscription_refunds, subscriptions), (order_refunds, orders)):
        for owner, refunds in refunded.items():
            if owner not in owners or not isinstance(refunds, list):
                raise StateError(f"refunds of {owner!r} are not a list of refunds of something stored")
    records = idempotency.restored(dict_field(state, "idempotency"), request_field="body", response_field="response")
    with store.lock:
        store.clock_offset = clock_offset
        store.plans, store.subscriptions, store.private = plans, subscriptions, private
        store.sessions, store.payments, store.cf_ids = sessions, payments, cf_ids
        store.events, store.event_ids, store.deliveries = events, event_ids, deliveries
        store.idempotency = records
        store.links, store.link_facts, store.orders, store.order_payments = links, link_facts, orders, order_payments
        store.subscription_refunds, store.order_refunds = subscription_refunds, order_refunds


def _optional(state: dict, name: str) -> dict:
    return dict_field(state, name) if name in state else {}


# the file

class StateFile(persistence.StateFile):
    """Keeps the Cashfree sandbox's store and one JSON file in step (sandbox_kit.persistence.StateFile)."""

    FORMAT = FORMAT
    FORMAT_VERSION = FORMAT_VERSION
    LABEL = "Cashfree sandbox"
    log = log

    def __init__(self, path: str, store: Store, *, interval: float = SAVE_INTERVAL,
                 encode: Callable[[dict], str] = encode, decode: Callable[[str], object] = decode):
        super().__init__(path, store, interval=interval, encode=encode, decode=decode)

    def snapshot(self) -> dict:
        return snapshot(self.store)

    def restore(self, state: dict) -> None:
        restore(self.store, state)

    def summary(self) -> str:
        return (f"{len(self.store.plans)} plans, {len(self.store.subscriptions)} subscriptions, "
                f"{len(self.store.links)} payment links, {len(self.store.event_ids)} events")
