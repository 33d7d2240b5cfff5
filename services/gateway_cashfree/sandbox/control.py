"""/_sandbox: what Cashfree does on its own (a payer approving a mandate, a scheduled charge),
made into requests that tests and demos can send. Not Cashfree's API; no authentication; JSON in
and out (amounts as exact numbers); errors in Cashfree's shape.

The endpoints every sandbox has (health, faults, webhooks pause/resume, events, requests, clock)
are sandbox_kit.control's; these are Cashfree's (and redelivering a webhook), and how Cashfree's
sandbox reads and refuses a control request.
"""
from decimal import Decimal

from werkzeug.wrappers import Request

from services.sandbox_kit import control
from services.sandbox_kit.control import Answer
from services.sandbox_kit.faults import FaultSpecError

from . import checkout, links, params, subscriptions
from .encoding import JSONBodyError, loads
from .errors import CashfreeError, invalid, invalid_value, not_found
from .store import Store
from .webhooks import WebhookSender


class Control(control.CommonControl):
    FAULT_PATH_EXAMPLE = "/pg/subscriptions"

    def __init__(self, store: Store, public_url: str, sender: WebhookSender):
        super().__init__(store)
        self.public_url = public_url
        self.sender = sender

    # what Cashfree does on its own

    def pay_session(self, request: Request, session_id: str) -> Answer:
        """{"method": "upi" | "card" | "netbanking"} (default upi): the payer pressed Pay."""
        method = params.text(self.body(request), "method", default="upi")
        subscription, payment = checkout.pay(self.store, session_id, method)
        return 200, {"subscription": subscription, "payment": payment,
                     "redirect_url": checkout.return_redirect(subscription)}

    def decline_session(self, request: Request, session_id: str) -> Answer:
        subscription, payment = checkout.decline(self.store, session_id)
        return 200, {"subscription": subscription, "payment": payment,
                     "redirect_url": checkout.return_redirect(subscription)}

    def pay_link(self, request: Request, link_id: str) -> Answer:
        """{"method": "upi" | "card" | "netbanking"} (default upi): the payer paid through the link."""
        return self._link_attempt(request, link_id, "pay")

    def fail_link(self, request: Request, link_id: str) -> Answer:
        """{"method"}: the payer's attempt failed (FAILED); the link stays payable."""
        return self._link_attempt(request, link_id, "fail")

    def drop_link(self, request: Request, link_id: str) -> Answer:
        """{"method"}: the payer gave up part way (USER_DROPPED); the link stays payable."""
        return self._link_attempt(request, link_id, "drop")

    def _link_attempt(self, request: Request, link_id: str, outcome: str) -> Answer:
        method = params.text(self.body(request), "method", default="upi")
        link, order, payment = links.attempt(self.store, link_id, outcome, method)
        return 200, {"link": link, "order": order, "payment": payment,
                     "redirect_url": links.return_redirect(link) if outcome == "pay" else ""}

    def charge(self, request: Request, subscription_id: str) -> Answer:
        """{"outcome": "success" | "failed" (default: the subscription's charge outcome), "amount": optional}:
        the next scheduled charge; answers the payment."""
        body = self.body(request)
        outcome = self._outcome(body, required=False)
        amount = params.amount(body, "amount")
        success = None if outcome is None else outcome == "success"
        return 200, subscriptions.charge(self.store, subscription_id, success, amount)

    def charge_outcome(self, request: Request, subscription_id: str) -> Answer:
        """{"outcome": "success" | "failed"}: how the payer's bank answers this mandate's charges from
        now on, raised by the merchant (POST /pg/subscriptions/pay) or scheduled."""
        outcome = self._outcome(self.body(request), required=True)
        return 200, subscriptions.set_charge_outcome(self.store, subscription_id, outcome)

    @staticmethod
    def _outcome(body: dict, required: bool):
        outcome = params.text(body, "outcome", required=required)
        if outcome is not None and outcome not in subscriptions.CHARGE_OUTCOMES:
            raise invalid_value("outcome", "Possible values - " + ", ".join(subscriptions.CHARGE_OUTCOMES))
        return outcome

    def subscriptions(self, request: Request) -> Answer:
        """Every subscription the sandbox holds. Cashfree's API has no such list; tests use it to
        check that no account of the portal holds two live subscriptions here."""
        with self.store.lock:
            return 200, self.store.render(list(self.store.subscriptions.values()))

    def redeliver(self, request: Request, event_id: str) -> Answer:
        """Send an event again: the same body and x-idempotency-key, a fresh timestamp and signature."""
        with self.store.lock:
            if event_id not in self.store.events:
                raise not_found("event", event_id)
        self.sender.redeliver(event_id)
        return 200, {"redelivering": event_id}

    # how control requests are read and refused

    def body(self, request: Request) -> dict:
        if not request.get_data().strip():
            return {}
        try:
            body = loads(request.get_data())
        except (ValueError, JSONBodyError):
            raise CashfreeError(400, "invalid_request_error", "The body must be JSON.", "request_body_invalid")
        if not isinstance(body, dict):
            raise CashfreeError(400, "invalid_request_error", "The body must be a JSON object.",
                                "request_body_invalid")
        return body

    def bad_request(self, message: str) -> CashfreeError:
        return invalid(message)

    def check_fault_numbers(self, fault: dict) -> None:
        """Numbers as Cashfree's JSON reads them: Decimals, and never true or false; delays become floats."""
        if isinstance(fault["times"], bool) or not isinstance(fault["times"], int) or fault["times"] < 1:
            raise FaultSpecError("times must be a positive integer")
        delay = fault["delay_seconds"]
        if isinstance(delay, bool) or not isinstance(delay, (int, float, Decimal)) or delay < 0:
            raise FaultSpecError("delay_seconds must be a non-negative number")
        fault["delay_seconds"] = float(delay)

    def advance_seconds(self, body: dict) -> int:
        advance = body.get("advance_seconds")
        if isinstance(advance, bool) or not isinstance(advance, int) or advance < 0:
            raise invalid_value("advance_seconds", "Expected a non-negative integer")
        return advance


ROUTES = control.COMMON_ROUTES + [
    ("POST", "/_sandbox/checkout/subscription/<session_id>/pay", "pay_session"),
    ("POST", "/_sandbox/checkout/subscription/<session_id>/decline", "decline_session"),
    ("GET", "/_sandbox/subscriptions", "subscriptions"),
    ("POST", "/_sandbox/subscriptions/<subscription_id>/charge", "charge"),
    ("POST", "/_sandbox/subscriptions/<subscription_id>/charges", "charge_outcome"),
    ("POST", "/_sandbox/links/<link_id>/pay", "pay_link"),
    ("POST", "/_sandbox/links/<link_id>/fail", "fail_link"),
    ("POST", "/_sandbox/links/<link_id>/drop", "drop_link"),
    ("POST", "/_sandbox/webhooks/<event_id>/redeliver", "redeliver"),
]
