"""/_sandbox: what Stripe does on its own (a payer clicking, a period ending), made into requests
that tests and demos can send. Not Stripe's API; no authentication; JSON in and out.

The endpoints every sandbox has (health, faults, webhooks pause/resume, events, requests, clock)
are sandbox_kit.control's; these are Stripe's, and how Stripe's sandbox reads and refuses a
control request (errors in Stripe's shape).

A customer's saved card pays off-session unless a test says otherwise:
POST /_sandbox/customers/{id}/card {"declines": true} makes it decline every payment Stripe takes
without the payer (a plan change's proration invoice, a renewal sent without an "outcome") until
{"declines": false}. Checkout and Payment Link pages are not affected (the payer chooses Pay or
Decline there), nor is POST /_sandbox/invoices/{id}/pay (an open invoice paid after all).
"""
import json

from werkzeug.wrappers import Request

from services.sandbox_kit import control
from services.sandbox_kit.control import Answer
from services.sandbox_kit.faults import FaultSpecError

from . import checkout, links, payments, subscriptions
from .errors import StripeError, invalid
from .store import Store


class Control(control.CommonControl):
    FAULT_PATH_EXAMPLE = "/v1/checkout/sessions"

    def __init__(self, store: Store, public_url: str):
        super().__init__(store)
        self.public_url = public_url

    # what Stripe does on its own

    def pay_session(self, request: Request, id: str) -> Answer:
        with self.store.transaction() as store:
            return 200, store.render(checkout.pay(store, self.public_url, id))

    def decline_session(self, request: Request, id: str) -> Answer:
        with self.store.transaction() as store:
            return 200, store.render(checkout.decline(store, id))

    def pay_link(self, request: Request, id: str) -> Answer:
        """The payer paid through a Payment Link (its page's Pay): the completed session."""
        with self.store.transaction() as store:
            return 200, store.render(links.pay(store, self.public_url, id))

    def start_link(self, request: Request, id: str) -> Answer:
        """A payer opened a Payment Link's checkout but has not paid (yet): the open session."""
        with self.store.transaction() as store:
            return 200, store.render(links.open_session(store, self.public_url, id))

    def renew(self, request: Request, id: str) -> Answer:
        """The period ended: {"outcome": "paid"|"failed"} says how its payment goes; without one, the
        customer's saved card decides (POST /_sandbox/customers/{id}/card)."""
        outcome = self.body(request).get("outcome")
        if outcome not in (None, "paid", "failed"):
            raise invalid("outcome must be 'paid' or 'failed'", param="outcome")
        with self.store.transaction() as store:
            subscription, invoice = subscriptions.renew(store, self.public_url, id,
                                                        paid=None if outcome is None else outcome == "paid")
            return 200, {"subscription": store.render(subscription),
                         "invoice": store.render(invoice) if invoice else None}

    def set_card(self, request: Request, id: str) -> Answer:
        """{"declines": true}: from now on the customer's saved card is declined off-session (plan
        change prorations, renewals without an outcome) until {"declines": false}."""
        declines = self.body(request).get("declines")
        if not isinstance(declines, bool):
            raise invalid("declines must be true or false", param="declines")
        with self.store.transaction() as store:
            customer = store.get(id, "customer")
            payments.set_card_declines(store, customer["id"], declines)
            return 200, {"customer": customer["id"], "declines": declines}

    def pay_invoice(self, request: Request, id: str) -> Answer:
        with self.store.transaction() as store:
            return 200, store.render(subscriptions.pay_open_invoice(store, id))

    def redeliver(self, request: Request, id: str) -> Answer:
        """Send an event again, as the Dashboard's Resend does: the same body, a fresh signature,
        retried on the usual schedule (a late delivery, for tests of what reconciliation did)."""
        with self.store.lock:
            self.store.get(id, "event")
        if self.store.on_events:
            self.store.on_events([id])
        return 200, {"redelivering": id}

    # how control requests are read and refused

    def body(self, request: Request) -> dict:
        if not request.get_data():
            return {}
        try:
            body = json.loads(request.get_data())
        except ValueError:
            raise StripeError(400, "invalid_request_error", "The body must be JSON.")
        if not isinstance(body, dict):
            raise StripeError(400, "invalid_request_error", "The body must be a JSON object.")
        return body

    def bad_request(self, message: str) -> StripeError:
        return invalid(message)

    def check_fault_numbers(self, fault: dict) -> None:
        if not isinstance(fault["times"], int) or fault["times"] < 1:
            raise FaultSpecError("times must be a positive integer")
        if not isinstance(fault["delay_seconds"], (int, float)) or fault["delay_seconds"] < 0:
            raise FaultSpecError("delay_seconds must be a non-negative number")

    def advance_seconds(self, body: dict) -> int:
        advance = body.get("advance_seconds")
        if not isinstance(advance, int) or advance < 0:
            raise invalid("advance_seconds must be a non-negative integer", param="advance_seconds")
        return advance


ROUTES = control.COMMON_ROUTES + [
    ("POST", "/_sandbox/checkout/<id>/pay", "pay_session"),
    ("POST", "/_sandbox/checkout/<id>/decline", "decline_session"),
    ("POST", "/_sandbox/links/<id>/pay", "pay_link"),
    ("POST", "/_sandbox/links/<id>/start", "start_link"),
    ("POST", "/_sandbox/subscriptions/<id>/renew", "renew"),
    ("POST", "/_sandbox/invoices/<id>/pay", "pay_invoice"),
    ("POST", "/_sandbox/customers/<id>/card", "set_card"),
    ("POST", "/_sandbox/webhooks/<id>/redeliver", "redeliver"),
]
