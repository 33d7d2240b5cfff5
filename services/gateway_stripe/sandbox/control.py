"""/_sandbox: what Stripe does on its own (a payer clicking, a period ending, a network failing),
made into requests that tests and demos can send. Not Stripe's API; no authentication; JSON in
and out.
"""
import json
from typing import Tuple

from werkzeug.wrappers import Request

from . import checkout, faults, subscriptions
from .errors import StripeError, invalid
from .store import Store

Answer = Tuple[int, object]


class Control:
    def __init__(self, store: Store, public_url: str):
        self.store = store
        self.public_url = public_url

    def health(self, request: Request, **_) -> Answer:
        return 200, {"status": "ok"}

    def pay_session(self, request: Request, id: str) -> Answer:
        with self.store.transaction() as store:
            return 200, store.render(checkout.pay(store, self.public_url, id))

    def decline_session(self, request: Request, id: str) -> Answer:
        with self.store.transaction() as store:
            return 200, store.render(checkout.decline(store, id))

    def renew(self, request: Request, id: str) -> Answer:
        outcome = _json(request).get("outcome", "paid")
        if outcome not in ("paid", "failed"):
            raise invalid("outcome must be 'paid' or 'failed'", param="outcome")
        with self.store.transaction() as store:
            subscription, invoice = subscriptions.renew(store, self.public_url, id, paid=outcome == "paid")
            return 200, {"subscription": store.render(subscription),
                         "invoice": store.render(invoice) if invoice else None}

    def pay_invoice(self, request: Request, id: str) -> Answer:
        with self.store.transaction() as store:
            return 200, store.render(subscriptions.pay_open_invoice(store, id))

    def add_fault(self, request: Request, **_) -> Answer:
        try:
            fault = faults.add(self.store, _json(request))
        except faults.FaultSpecError as exc:
            raise invalid(str(exc))
        return 200, {"fault": fault, "faults": self._faults()}

    def list_faults(self, request: Request, **_) -> Answer:
        return 200, {"faults": self._faults()}

    def clear_faults(self, request: Request, **_) -> Answer:
        faults.clear(self.store)
        return 200, {"faults": []}

    def pause_webhooks(self, request: Request, **_) -> Answer:
        with self.store.lock:
            self.store.webhooks_paused = True
        return 200, {"paused": True}

    def resume_webhooks(self, request: Request, **_) -> Answer:
        with self.store.lock:
            self.store.webhooks_paused = False
        return 200, {"paused": False}

    def events(self, request: Request, **_) -> Answer:
        """Every event, oldest first, each with its `delivery_attempts`: a JSON array."""
        return 200, self.store.events_with_attempts()

    def requests(self, request: Request, **_) -> Answer:
        """The last 500 API requests, oldest first, as a JSON array: what the adapter actually sent."""
        with self.store.lock:
            return 200, list(self.store.requests)

    def clock(self, request: Request, **_) -> Answer:
        """GET: the sandbox's now. POST {"advance_seconds": n}: move it forward (renewal demos)."""
        if request.method == "POST":
            advance = _json(request).get("advance_seconds")
            if not isinstance(advance, int) or advance < 0:
                raise invalid("advance_seconds must be a non-negative integer", param="advance_seconds")
            with self.store.lock:
                self.store.clock_offset += advance
            self.store.changed()
        return 200, {"now": self.store.now(), "offset_seconds": self.store.clock_offset}

    def _faults(self) -> list:
        with self.store.lock:
            return [dict(fault) for fault in self.store.faults]


def _json(request: Request) -> dict:
    if not request.get_data():
        return {}
    try:
        body = json.loads(request.get_data())
    except ValueError:
        raise StripeError(400, "invalid_request_error", "The body must be JSON.")
    if not isinstance(body, dict):
        raise StripeError(400, "invalid_request_error", "The body must be a JSON object.")
    return body


ROUTES = [
    ("GET", "/_sandbox/health", "health"),
    ("POST", "/_sandbox/checkout/<id>/pay", "pay_session"),
    ("POST", "/_sandbox/checkout/<id>/decline", "decline_session"),
    ("POST", "/_sandbox/subscriptions/<id>/renew", "renew"),
    ("POST", "/_sandbox/invoices/<id>/pay", "pay_invoice"),
    ("POST", "/_sandbox/faults", "add_fault"),
    ("GET", "/_sandbox/faults", "list_faults"),
    ("DELETE", "/_sandbox/faults", "clear_faults"),
    ("POST", "/_sandbox/webhooks/pause", "pause_webhooks"),
    ("POST", "/_sandbox/webhooks/resume", "resume_webhooks"),
    ("GET", "/_sandbox/events", "events"),
    ("GET", "/_sandbox/requests", "requests"),
    ("GET", "/_sandbox/clock", "clock"),
    ("POST", "/_sandbox/clock", "clock"),
]
