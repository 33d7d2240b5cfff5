"""All Stripe sandbox state, in memory, behind one lock (saved to a file too if configured: persistence.py).

The lock, transactions, the event outbox and the clock are sandbox_kit.store's; this adds Stripe's
objects (one table keyed by id, as Stripe's ids carry their type) and its events.
"""
import copy
import itertools
import json
from fnmatch import fnmatchcase
from typing import Callable, List, Optional, Sequence

from services.sandbox_kit import store

from . import shapes
from .errors import no_such
from .ids import new_id

# What "No such <kind>" says for each id prefix (Stripe's wording).
KINDS = {"cus": "customer", "price": "price", "prod": "product", "cs": "checkout.session",
         "sub": "subscription", "in": "invoice", "pm": "PaymentMethod", "evt": "event",
         "plink": "payment_link", "pi": "payment_intent", "ch": "charge", "re": "refund",
         "inpay": "invoice_payment"}


class Store(store.SandboxStore):
    def __init__(self, clock: Callable[[], float], webhooks_enabled: bool = True,
                 enabled_events: Sequence[str] = ("*",)):
        super().__init__(clock, webhooks_enabled)
        self.enabled_events = tuple(enabled_events)  # like a webhook endpoint's enabled_events
        self.objects: dict = {}  # id -> the Stripe object, as served
        self.private: dict = {}  # id -> what Stripe knows but does not show (a session's line items...)
        self._sequence: dict = {}  # id -> creation order, to break ties between equal `created`
        self._counter = itertools.count()
        self.event_bodies: dict = {}  # event id -> the exact JSON text every delivery sends
        self.pending_update_ids: set = set()  # subscriptions with a pending_update, checked for expiry

    def reset_counter(self, start: int) -> None:
        """Continue the creation order after `start` objects (restored from a state file)."""
        with self.lock:
            self._counter = itertools.count(start)

    # objects

    def add(self, obj: dict, private: Optional[dict] = None) -> dict:
        with self.lock:
            self.objects[obj["id"]] = obj
            self._sequence[obj["id"]] = next(self._counter)
            if private is not None:
                self.private[obj["id"]] = private
        return obj

    def get(self, object_id: str, object_type: str, param: str = "id") -> dict:
        """The stored object itself (callers mutate it under the lock); 404 like Stripe if absent."""
        with self.lock:
            obj = self.objects.get(object_id)
            if obj is None or obj["object"] != object_type:
                raise no_such(KINDS.get(object_id.split("_")[0], object_type), object_id, param)
            return obj

    def find(self, object_type: str, match: Callable[[dict], bool] = lambda obj: True) -> List[dict]:
        """Objects of one type, newest first (as every Stripe list is; creation order for the types that,
        like payment links, have no `created`)."""
        with self.lock:
            found = [obj for obj in self.objects.values() if obj["object"] == object_type and match(obj)]
            return sorted(found, key=lambda obj: (obj.get("created", 0), self._sequence[obj["id"]]), reverse=True)

    def render(self, obj: dict) -> dict:
        """A copy safe to serialise after the lock is gone, with embedded prices as they are now."""
        with self.lock:
            rendered = copy.deepcopy(obj)
            if rendered.get("object") == "subscription":
                for item in rendered["items"]["data"]:
                    current = self.objects.get(item["price"]["id"])
                    if current:
                        item["price"] = copy.deepcopy(current)
                        item["plan"] = shapes.plan_from_price(current)
            return rendered

    def lookup(self, object_id: str) -> Optional[dict]:
        """Any object by id, for `expand`."""
        with self.lock:
            obj = self.objects.get(object_id)
            return self.render(obj) if obj else None

    # events

    def emit(self, type_: str, obj: dict, previous_attributes: Optional[dict] = None,
             request: Optional[dict] = None) -> dict:
        """Record an event carrying a snapshot of `obj` now; delivered once the transaction ends."""
        with self.lock:
            sent = self.webhooks_enabled and any(fnmatchcase(type_, pattern) for pattern in self.enabled_events)
            event = shapes.event(
                id=new_id("evt"), created=self.now(), type_=type_, obj=self.render(obj),
                previous_attributes=copy.deepcopy(previous_attributes),
                request=request or {"id": None, "idempotency_key": None},
                pending_webhooks=1 if sent else 0,
            )
            self.add(event)
            self.event_ids.append(event["id"])
            self.event_bodies[event["id"]] = json.dumps(event)
            self.deliveries[event["id"]] = []
            if sent:
                self.send_after_transaction(event["id"])
            return event

    def record_attempt(self, event_id: str, attempt: dict, final: bool) -> None:
        with self.lock:
            self.deliveries[event_id].append(attempt)
            if final:
                self.objects[event_id]["pending_webhooks"] = 0
        self.changed()

    def events_with_attempts(self) -> list:
        with self.lock:
            return [dict(self.render(self.objects[event_id]),
                         delivery_attempts=copy.deepcopy(self.deliveries[event_id]))
                    for event_id in self.event_ids]
