"""What the Stripe sandbox saves across restarts (STRIPE_SANDBOX_STATE_FILE), and restoring it.

The file's life (load or set aside, the background writer, atomic saves) is sandbox_kit.persistence's;
see there why. What is saved (file format FORMAT_VERSION): every object as served (payment links
and their completed-session counts too) and what Stripe keeps private about it (the line item of a
session or a payment link, a subscription's pending proration lines), the creation order that
breaks ties between equal `created`, the events with the exact bodies their deliveries sent and
their delivery records, the clock offset, and the idempotency records of
finished requests (a retry after a restart replays the original answer). Webhook deliveries still
pending at shutdown are not resumed after a restart: those events stay listed (GET /v1/events,
pending_webhooks as they were) for reconciliation, as a lost webhook would.
"""
import logging

from services.sandbox_kit import idempotency, persistence
from services.sandbox_kit.persistence import StateError, dict_field

from .store import Store

log = logging.getLogger(__name__)

FORMAT = "stripe-sandbox-state"
# 2: paid invoices have their PaymentIntent, Charge and InvoicePayment (a version-1 file's have none,
# so nothing of them could be refunded): a version-1 file is set aside.
FORMAT_VERSION = 2


def snapshot(store: Store) -> dict:
    """The persistent part of the store (live references: serialise before releasing the lock)."""
    return {
        "clock_offset": store.clock_offset,
        "objects": store.objects,
        "private": store.private,
        "sequence": store._sequence,
        "event_ids": store.event_ids,
        "event_bodies": store.event_bodies,
        "deliveries": store.deliveries,
        "idempotency": idempotency.saved(store.idempotency, request_field="params", response_field="body"),
    }


def restore(store: Store, state: dict) -> None:
    """Replace the store's persistent part by `state`, all or nothing: a state that does not fit raises
    (StateError, or whatever a missing key or a wrong type raises) before anything is replaced."""
    clock_offset = state["clock_offset"]
    objects, private = dict_field(state, "objects"), dict_field(state, "private")
    sequence = dict_field(state, "sequence")
    event_ids, bodies, deliveries = (list(state["event_ids"]), dict_field(state, "event_bodies"),
                                     dict_field(state, "deliveries"))
    if not isinstance(clock_offset, int):
        raise StateError("clock_offset is not an integer")
    for object_id, obj in objects.items():
        if not isinstance(obj, dict) or obj.get("id") != object_id or not isinstance(obj.get("object"), str):
            raise StateError(f"object {object_id!r} is not a Stripe object")
    for event_id in event_ids:
        if event_id not in objects or not isinstance(bodies.get(event_id), str):
            raise StateError(f"event {event_id!r} has no object or body")
        # Delivery records come back as they were; deliveries still pending at shutdown are not
        # resumed (their threads died with the old process): the event stays listed for reconciliation.
        deliveries.setdefault(event_id, [])
    order = sorted(objects, key=lambda object_id: (sequence.get(object_id, float("inf"))))
    sequence = {object_id: position for position, object_id in enumerate(order)}  # gap-free, complete
    records = idempotency.restored(dict_field(state, "idempotency"), request_field="params", response_field="body")
    with store.lock:
        store.clock_offset = clock_offset
        store.objects, store.private = objects, private
        store._sequence = sequence
        store.reset_counter(len(sequence))
        store.event_ids, store.event_bodies, store.deliveries = event_ids, bodies, deliveries
        store.pending_update_ids = {object_id for object_id, obj in objects.items()
                                    if obj["object"] == "subscription" and obj.get("pending_update")}
        store.idempotency = records


class StateFile(persistence.StateFile):
    """Keeps the Stripe sandbox's store and one JSON file in step (sandbox_kit.persistence.StateFile)."""

    FORMAT = FORMAT
    FORMAT_VERSION = FORMAT_VERSION
    LABEL = "Stripe sandbox"
    log = log

    def snapshot(self) -> dict:
        return snapshot(self.store)

    def restore(self, state: dict) -> None:
        restore(self.store, state)

    def summary(self) -> str:
        return f"{len(self.store.objects)} objects, of which {len(self.store.event_ids)} events"
