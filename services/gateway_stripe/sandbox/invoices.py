"""Subscription invoices: built from line specs, balanced against the customer's credit, then
either paid with the saved card or left open after a failed attempt (payments.py keeps the
PaymentIntent, Charges and InvoicePayment of each attempt); an open invoice can be voided.

A downgrade can make an invoice's total negative; like Stripe, nobody is refunded: the invoice
asks for 0 and the difference becomes customer credit (a negative `balance`) that the next
invoice uses first.
"""
from typing import List, Optional

from . import payments, shapes
from .errors import invalid
from .ids import new_id
from .money import format_amount
from .periods import format_date
from .store import Store

RETRY_AFTER_SECONDS = 3 * 24 * 3600  # when Stripe's smart retries would try a failed invoice again


def line_spec(*, amount: int, description: str, period_start: int, period_end: int, price: dict, quantity: int,
              proration: bool, subscription_item: str, credited_items: Optional[dict] = None) -> dict:
    """One future invoice line; pending prorations are kept in this form until invoiced."""
    return {"amount": amount, "description": description, "period_start": period_start,
            "period_end": period_end, "price_obj": price, "quantity": quantity, "proration": proration,
            "subscription_item_id": subscription_item, "credited_items": credited_items}


def cycle_line(store: Store, item: dict, period_start: int, period_end: int) -> dict:
    """The full-price line of a period: '1 × Pro (at $20.00 / month)'."""
    price = item["price"]
    unit = format_amount(price["unit_amount"], price["currency"])
    description = f"{item['quantity']} × {product_name(store, price)} (at {unit} / {price['recurring']['interval']})"
    return line_spec(amount=price["unit_amount"] * item["quantity"], description=description,
                     period_start=period_start, period_end=period_end, price=price, quantity=item["quantity"],
                     proration=False, subscription_item=item["id"])


def proration_line(store: Store, item: dict, price: dict, amount: int, start: int, end: int,
                   credited_items: Optional[dict] = None) -> dict:
    """'Unused time on Basic after 26 Jul 2024' (a credit) or 'Remaining time on Pro after ...'."""
    what = "Unused time" if amount < 0 else "Remaining time"
    return line_spec(amount=amount, description=f"{what} on {product_name(store, price)} after {format_date(start)}",
                     period_start=start, period_end=end, price=price, quantity=item["quantity"], proration=True,
                     subscription_item=item["id"], credited_items=credited_items)


def product_name(store: Store, price: dict) -> str:
    product = store.objects.get(price["product"])
    return product["name"] if product else price["id"]


def create(store: Store, public_url: str, subscription: dict, lines: List[dict], *, billing_reason: str,
           period_start: int, period_end: int, paid: Optional[bool] = None) -> dict:
    """Finalize an invoice for `subscription`, try the default card, and make it the latest invoice.
    `paid` says how the attempt ends; None: as the customer's saved card does (payments.card_declines)."""
    now = store.now()
    customer = store.get(subscription["customer"], "customer")
    invoice_id = new_id("in")
    line_objects = [
        shapes.line_item(id=new_id("il"), invoice_id=invoice_id, currency=subscription["currency"],
                         subscription_id=subscription["id"], **line)
        for line in lines
    ]
    number = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    invoice = shapes.invoice(
        id=invoice_id, created=now, customer_obj=customer, currency=subscription["currency"], lines=line_objects,
        billing_reason=billing_reason, subscription_id=subscription["id"],
        subscription_metadata=subscription["metadata"], period_start=period_start, period_end=period_end,
        hosted_url=f"{public_url}/invoices/{invoice_id}", number=number,
    )
    _apply_customer_balance(invoice, customer)
    store.add(invoice)
    subscription["latest_invoice"] = invoice_id
    collect(store, invoice, not payments.card_declines(store, customer["id"]) if paid is None else paid)
    return invoice


def collect(store: Store, invoice: dict, succeeded: bool) -> None:
    """One attempt at the invoice's amount_due with the saved card: paid, or left open to retry.
    An invoice that asks for nothing is paid without any payment."""
    now = store.now()
    if invoice["amount_due"] == 0:
        succeeded = True
    else:
        payments.attempt(store, invoice, succeeded)
    if succeeded:
        _mark_paid(invoice, now)
    else:
        _mark_failed(invoice, now)
    store.get(invoice["customer"], "customer")["delinquent"] = not succeeded


def void(store: Store, invoice_id: str) -> dict:
    """POST /v1/invoices/{id}/void: an open invoice is void for good; the credit it used goes back to
    the customer. The caller announces it (invoice.voided) and settles what hung on it."""
    invoice = store.get(invoice_id, "invoice")
    if invoice["status"] != "open":
        raise invalid(f"You can only void an invoice that is `open` or `uncollectible`. This invoice is "
                      f"`{invoice['status']}`.", param="invoice")
    invoice.update(status="void", auto_advance=False, next_payment_attempt=None)
    invoice["status_transitions"]["voided_at"] = store.now()
    payments.cancel(store, invoice)
    store.get(invoice["customer"], "customer")["balance"] += invoice["starting_balance"] - invoice["ending_balance"]
    return invoice


def _apply_customer_balance(invoice: dict, customer: dict) -> None:
    starting = customer["balance"]
    net = invoice["total"] + starting
    invoice["starting_balance"] = starting
    invoice["amount_due"] = invoice["amount_remaining"] = max(net, 0)
    invoice["ending_balance"] = min(net, 0)
    customer["balance"] = invoice["ending_balance"]


def _mark_paid(invoice: dict, now: int) -> None:
    if invoice["amount_due"] > 0:
        invoice["attempt_count"] += 1
    invoice.update(status="paid", attempted=True, amount_paid=invoice["amount_due"], amount_remaining=0,
                   auto_advance=False, next_payment_attempt=None)
    invoice["status_transitions"]["paid_at"] = now


def _mark_failed(invoice: dict, now: int) -> None:
    invoice["attempt_count"] += 1
    invoice.update(status="open", attempted=True, amount_paid=0, auto_advance=True,
                   next_payment_attempt=now + RETRY_AFTER_SECONDS)
