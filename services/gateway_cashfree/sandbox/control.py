"""/_sandbox: what Cashfree does on its own (a payer approving a mandate, a scheduled charge, a
network failing), made into requests that tests and demos can send. Not Cashfree's API; no
authentication; JSON in and out (amounts as exact numbers); errors in Cashfree's shape.
"""
from typing import Tuple

from werkzeug.wrappers import Request

from . import checkout, faults, params, subscriptions
from .encoding import JSONBodyError, loads
from .errors import CashfreeError, invalid, invalid_value, not_found
from .store import Store
from .webhooks import WebhookSender

Answer = Tuple[int, object]


class Control:
    def __init__(self, store: Store, public_url: str, sender: WebhookSender):
        self.store = store
        self.public_url = public_url
        self.sender = sender

    def health(self, request: Request, **_) -> Answer:
        return 200, {"status": "ok"}

    def pay_session(self, request: Request, session_id: str) -> Answer:
        """{"method": "upi" | "card" | "netbanking"} (default upi): the payer pressed Pay."""
        method = params.text(_json(request), "method", default="upi")
        subscription, payment = checkout.pay(self.store, session_id, method)
        return 200, {"subscription": subscription, "payment": payment,
                     "redirect_url": checkout.return_redirect(subscription)}

    def decline_session(self, request: Request, session_id: str) -> Answer:
        subscription, payment = checkout.decline(self.store, session_id)
        return 200, {"subscription": subscription, "payment": payment,
                     "redirect_url": checkout.return_redirect(subscription)}

    def charge(self, request: Request, subscription_id: str) -> Answer:
        """{"outcome": "success" | "failed", "amount": optional}: the next scheduled charge; answers the payment."""
        body = _json(request)
        outcome = params.text(body, "outcome", default="success")
        if outcome not in ("success", "failed"):
            raise invalid_value("outcome", "Possible values - success, failed")
        amount = params.amount(body, "amount")
        return 200, subscriptions.charge(self.store, subscription_id, outcome == "success", amount)

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

    def redeliver(self, request: Request, event_id: str) -> Answer:
        """Send an event again: the same body and x-idempotency-key, a fresh timestamp and signature."""
        with self.store.lock:
            if event_id not in self.store.events:
                raise not_found("event", event_id)
        self.sender.redeliver(event_id)
        return 200, {"redelivering": event_id}

    def events(self, request: Request, **_) -> Answer:
        """Every event, oldest first: id (= its x-idempotency-key), type, payload, status, delivery_attempts."""
        return 200, self.store.events_with_attempts()

    def requests(self, request: Request, **_) -> Answer:
        """The last 500 API requests, oldest first, as a JSON array: what the adapter actually sent."""
        with self.store.lock:
            return 200, list(self.store.requests)

    def clock(self, request: Request, **_) -> Answer:
        """GET: the sandbox's now. POST {"advance_seconds": n}: move it forward (schedule demos)."""
        if request.method == "POST":
            advance = _json(request).get("advance_seconds")
            if isinstance(advance, bool) or not isinstance(advance, int) or advance < 0:
                raise invalid_value("advance_seconds", "Expected a non-negative integer")
            with self.store.lock:
                self.store.clock_offset += advance
            self.store.changed()
        return 200, {"now": self.store.now(), "offset_seconds": self.store.clock_offset}

    def _faults(self) -> list:
        with self.store.lock:
            return [dict(fault) for fault in self.store.faults]


def _json(request: Request) -> dict:
    if not request.get_data().strip():
        return {}
    try:
        body = loads(request.get_data())
    except (ValueError, JSONBodyError):
        raise CashfreeError(400, "invalid_request_error", "The body must be JSON.", "request_body_invalid")
    if not isinstance(body, dict):
        raise CashfreeError(400, "invalid_request_error", "The body must be a JSON object.", "request_body_invalid")
    return body


ROUTES = [
    ("GET", "/_sandbox/health", "health"),
    ("POST", "/_sandbox/checkout/subscription/<session_id>/pay", "pay_session"),
    ("POST", "/_sandbox/checkout/subscription/<session_id>/decline", "decline_session"),
    ("POST", "/_sandbox/subscriptions/<subscription_id>/charge", "charge"),
    ("POST", "/_sandbox/faults", "add_fault"),
    ("GET", "/_sandbox/faults", "list_faults"),
    ("DELETE", "/_sandbox/faults", "clear_faults"),
    ("POST", "/_sandbox/webhooks/pause", "pause_webhooks"),
    ("POST", "/_sandbox/webhooks/resume", "resume_webhooks"),
    ("POST", "/_sandbox/webhooks/<event_id>/redeliver", "redeliver"),
    ("GET", "/_sandbox/events", "events"),
    ("GET", "/_sandbox/requests", "requests"),
    ("GET", "/_sandbox/clock", "clock"),
    ("POST", "/_sandbox/clock", "clock"),
]
