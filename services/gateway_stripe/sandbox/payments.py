"""The money behind invoices: a PaymentIntent per invoice, a Charge per attempt on the saved card,
and the InvoicePayment that ties the two together, as the current API shows an invoice's payments
(GET /v1/invoice_payments?invoice=...; the invoice itself no longer names a payment_intent or charge).

An invoice's first attempt makes its PaymentIntent and its (open) InvoicePayment; every attempt adds
a Charge, succeeded or declined, which becomes the PaymentIntent's latest_charge. A later attempt
that succeeds (an open invoice paid after all) reuses the same PaymentIntent, as Stripe's retries do.
Voiding the invoice cancels both. An invoice that asks for nothing (customer credit covered it) has
no payment at all.

Whether the saved card pays is the customer's: it is declined off-session once a test says so
(POST /_sandbox/customers/{id}/card {"declines": true}) until it says otherwise.

Callers hold the store's transaction.
"""
from typing import Optional

from . import shapes
from .ids import new_id
from .store import Store

# Stripe's description of an invoice's PaymentIntent, by the invoice's billing_reason.
DESCRIPTIONS = {"subscription_create": "Subscription creation", "subscription_update": "Subscription update",
                "subscription_cycle": "Subscription cycle"}


def card_declines(store: Store, customer_id: str) -> bool:
    return store.private.get(customer_id, {}).get("card_declines", False)


def set_card_declines(store: Store, customer_id: str, declines: bool) -> None:
    store.private.setdefault(customer_id, {})["card_declines"] = declines


def attempt(store: Store, invoice: dict, succeeded: bool) -> dict:
    """One try at collecting the invoice's amount_due with the saved card: the Charge it made."""
    now = store.now()
    payment_intent, invoice_payment = _payment_of(store, invoice)
    method = _saved_card(store, invoice)
    charge = shapes.charge(
        id=new_id("ch"), created=now, amount=payment_intent["amount"], currency=payment_intent["currency"],
        customer_id=invoice["customer"], description=payment_intent["description"],
        payment_intent_id=payment_intent["id"], method=method, succeeded=succeeded)
    store.add(charge)
    payment_intent.update(latest_charge=charge["id"], payment_method=charge["payment_method"])
    if succeeded:
        payment_intent.update(status="succeeded", amount_received=payment_intent["amount"], last_payment_error=None)
        invoice_payment.update(status="paid", amount_paid=payment_intent["amount"])
        invoice_payment["status_transitions"]["paid_at"] = now
    else:
        payment_intent["last_payment_error"] = shapes.card_decline_error(charge_id=charge["id"], method=method)
    return charge


def cancel(store: Store, invoice: dict) -> None:
    """The invoice was voided: its PaymentIntent and InvoicePayment (if it had any) are canceled."""
    facts = store.private.get(invoice["id"], {})
    if "payment_intent" not in facts:
        return
    now = store.now()
    payment_intent = store.objects[facts["payment_intent"]]
    payment_intent.update(status="canceled", canceled_at=now, cancellation_reason="void_invoice")
    invoice_payment = store.objects[facts["invoice_payment"]]
    invoice_payment["status"] = "canceled"
    invoice_payment["status_transitions"]["canceled_at"] = now


def _payment_of(store: Store, invoice: dict):
    """The invoice's PaymentIntent and InvoicePayment, made at its first attempt."""
    facts = store.private.setdefault(invoice["id"], {})
    if "payment_intent" in facts:
        return store.objects[facts["payment_intent"]], store.objects[facts["invoice_payment"]]
    now = store.now()
    payment_intent = store.add(shapes.payment_intent(
        id=new_id("pi"), created=now, amount=invoice["amount_due"], currency=invoice["currency"],
        customer_id=invoice["customer"], description=DESCRIPTIONS.get(invoice["billing_reason"])))
    invoice_payment = store.add(shapes.invoice_payment(
        id=new_id("inpay"), created=now, invoice_id=invoice["id"], amount_requested=invoice["amount_due"],
        currency=invoice["currency"], payment_intent_id=payment_intent["id"]))
    facts.update(payment_intent=payment_intent["id"], invoice_payment=invoice_payment["id"])
    return payment_intent, invoice_payment


def _saved_card(store: Store, invoice: dict) -> Optional[dict]:
    """The card an invoice is charged to: its subscription's default, else the customer's."""
    subscription = store.objects.get(invoice["parent"]["subscription_details"]["subscription"]) or {}
    customer = store.get(invoice["customer"], "customer")
    method_id = subscription.get("default_payment_method") or customer["invoice_settings"]["default_payment_method"]
    return store.objects.get(method_id) if method_id else None
