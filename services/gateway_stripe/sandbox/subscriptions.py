"""Subscription life: start (from a paid checkout), plan change with proration, cancel at period
end or now, and the renewals that the control API triggers in place of Stripe's clock.

A plan change's invoice is paid with the saved card (payments.card_declines); if it is declined,
the change stays and the subscription goes past_due (allow_incomplete, Stripe's default).

Callers hold the store's transaction; these functions validate first and mutate after, so a
refused request leaves nothing half done.
"""
import copy
from typing import Optional, Tuple

from . import invoices, shapes
from .errors import StripeError, invalid, no_such
from .ids import new_id
from .periods import add_interval, prorate
from .store import Store

ALLOWED_WHEN_CANCELED = {"metadata", "cancellation_details", "expand"}


def start(store: Store, public_url: str, *, customer: dict, price: dict, quantity: int, metadata: dict,
          payment_method_id: str) -> Tuple[dict, dict]:
    """An active subscription whose first period starts now, and its paid first invoice."""
    now = store.now()
    subscription_id = new_id("sub")
    interval = price["recurring"]
    item = shapes.subscription_item(
        id=new_id("si"), created=now, subscription_id=subscription_id, price_obj=price, quantity=quantity,
        period_start=now, period_end=add_interval(now, interval["interval"], interval["interval_count"]),
    )
    subscription = shapes.subscription(
        id=subscription_id, created=now, customer_id=customer["id"], currency=price["currency"],
        metadata=copy.deepcopy(metadata), default_payment_method=payment_method_id, item=item,
    )
    store.add(subscription, private={"pending_lines": []})
    customer["currency"] = customer["currency"] or price["currency"]
    invoice = invoices.create(
        store, public_url, subscription, [invoices.cycle_line(store, item, now, item["current_period_end"])],
        billing_reason="subscription_create", period_start=now, period_end=now, paid=True,
    )
    return subscription, invoice


def update(store: Store, public_url: str, subscription_id: str, params: dict, request: dict) -> dict:
    """POST /v1/subscriptions/{id}: plan change, cancel_at_period_end, metadata, default card."""
    subscription = store.get(subscription_id, "subscription")
    if subscription["status"] == "canceled" and set(params) - ALLOWED_WHEN_CANCELED:
        raise invalid("A canceled subscription can only update its cancellation_details and metadata.")
    item = subscription["items"]["data"][0]
    new_price = _requested_price(store, subscription, item, params.get("items"))
    if "default_payment_method" in params:
        _check_payment_method(store, subscription["customer"], params["default_payment_method"])
    before = store.render(subscription)

    if "metadata" in params:
        merge_metadata(subscription, params["metadata"])
    if "default_payment_method" in params:
        subscription["default_payment_method"] = params["default_payment_method"] or None
    if "cancellation_details" in params:
        subscription["cancellation_details"].update(params["cancellation_details"])
    invoice = None
    if new_price is not None and new_price["id"] != item["price"]["id"]:
        at = params.get("proration_date") or store.now()
        invoice = _change_price(store, public_url, subscription, item, new_price,
                                params.get("proration_behavior", "create_prorations"), at)
    if "cancel_at_period_end" in params:
        # Stripe stamps canceled_at with the request that scheduled the cancellation.
        scheduled = params["cancel_at_period_end"]
        subscription["cancel_at_period_end"] = scheduled
        subscription["canceled_at"] = store.now() if scheduled else None
        subscription["cancellation_details"]["reason"] = "cancellation_requested" if scheduled else None
    subscription["cancel_at"] = item["current_period_end"] if subscription["cancel_at_period_end"] else None
    if invoice is not None and invoice["status"] == "open":
        subscription["status"] = "past_due"

    _announce_update(store, subscription, before, request)
    if invoice is not None:
        emit_invoice_outcome(store, invoice, request)
    return subscription


def cancel(store: Store, subscription_id: str, params: dict, request: dict) -> dict:
    """DELETE /v1/subscriptions/{id}: ends now. A canceled subscription is gone: 404, as at Stripe."""
    subscription = store.get(subscription_id, "subscription")
    if subscription["status"] == "canceled":
        raise no_such("subscription", subscription_id)
    now = store.now()
    _end(subscription, canceled_at=now, ended_at=now, details=params.get("cancellation_details") or {})
    store.emit("customer.subscription.deleted", subscription, request=request)
    return subscription


def renew(store: Store, public_url: str, subscription_id: str,
          paid: Optional[bool] = None) -> Tuple[dict, Optional[dict]]:
    """The period ended: bill the next one (paid or failed; None: as the saved card does), or end a
    subscription set to cancel.

    As at Stripe, the period advances whether or not the payment succeeds; a failed payment
    leaves an open invoice and the subscription `past_due`.
    """
    subscription = store.get(subscription_id, "subscription")
    if subscription["status"] == "canceled":
        raise StripeError(409, "invalid_request_error", "This subscription is canceled; it cannot renew.")
    item = subscription["items"]["data"][0]
    old_start, old_end = item["current_period_start"], item["current_period_end"]
    if subscription["cancel_at_period_end"]:
        _end(subscription, canceled_at=subscription["canceled_at"] or store.now(), ended_at=old_end, details={})
        store.emit("customer.subscription.deleted", subscription)
        return subscription, None

    before = store.render(subscription)
    recurring = item["price"]["recurring"]
    item["current_period_start"] = old_end
    item["current_period_end"] = add_interval(old_end, recurring["interval"], recurring["interval_count"])
    lines = _take_pending(store, subscription) + [
        invoices.cycle_line(store, item, item["current_period_start"], item["current_period_end"])]
    invoice = invoices.create(store, public_url, subscription, lines, billing_reason="subscription_cycle",
                              period_start=old_start, period_end=old_end, paid=paid)
    subscription["status"] = "active" if invoice["status"] == "paid" else "past_due"
    emit_invoice_outcome(store, invoice)
    _announce_update(store, subscription, before)
    return subscription, invoice


def pay_open_invoice(store: Store, invoice_id: str) -> dict:
    """A retry of a failed invoice succeeded (the payer fixed their card)."""
    invoice = store.get(invoice_id, "invoice")
    if invoice["status"] != "open":
        raise StripeError(409, "invalid_request_error", f"Invoice {invoice_id} is {invoice['status']}, not open.")
    invoices.collect(store, invoice, succeeded=True)
    emit_invoice_outcome(store, invoice)
    subscription = store.objects.get(invoice["parent"]["subscription_details"]["subscription"])
    if subscription and subscription["status"] == "past_due" and subscription["latest_invoice"] == invoice_id:
        before = store.render(subscription)
        subscription["status"] = "active"
        _announce_update(store, subscription, before)
    return invoice


def emit_invoice_outcome(store: Store, invoice: dict, request: Optional[dict] = None) -> None:
    if invoice["status"] == "paid":
        store.emit("invoice.paid", invoice, request=request)
        store.emit("invoice.payment_succeeded", invoice, request=request)
    else:
        store.emit("invoice.payment_failed", invoice, request=request)


def merge_metadata(obj: dict, update: Optional[dict]) -> None:
    """Stripe's rules: `metadata=` clears all, a key set to "" is removed, others are set."""
    if update is None:
        obj["metadata"] = {}
        return
    for key, value in update.items():
        if value == "":
            obj["metadata"].pop(key, None)
        else:
            obj["metadata"][key] = value


def _announce_update(store: Store, subscription: dict, before: dict, request: Optional[dict] = None) -> None:
    """customer.subscription.updated, with the old values, if anything visible changed."""
    previous = changed_attributes(before, store.render(subscription))
    if previous:
        store.emit("customer.subscription.updated", subscription, previous, request)


def changed_attributes(before: dict, after: dict) -> dict:
    """`data.previous_attributes`: the old value of every top-level field that changed."""
    return {key: value for key, value in before.items() if after.get(key) != value}


def _requested_price(store: Store, subscription: dict, item: dict, items: Optional[list]) -> Optional[dict]:
    if not items:
        return None
    if len(items) > 1:
        raise invalid("The sandbox supports exactly one subscription item.", param="items")
    requested = items[0]
    if requested.get("id") != item["id"]:
        raise invalid(f"Invalid subscription_item: '{requested.get('id')}'. Pass the id of the subscription's "
                      "item to change its price.", param="items[0][id]")
    if "price" not in requested:
        return None
    price = store.get(requested["price"], "price", param="items[0][price]")
    if not price["active"]:
        raise invalid("The price specified is inactive. This field only accepts active prices.",
                      param="items[0][price]")
    if price["recurring"] is None:
        raise invalid("The price specified is set to `type=one_time` but this field only accepts prices with "
                      "`type=recurring`.", param="items[0][price]")
    if price["currency"] != subscription["currency"]:
        raise invalid(f"The price specified uses currency `{price['currency']}`, which does not match the "
                      f"subscription's currency `{subscription['currency']}`.", param="items[0][price]")
    return price


def _check_payment_method(store: Store, customer_id: str, payment_method_id: str) -> None:
    if payment_method_id:
        method = store.get(payment_method_id, "payment_method", param="default_payment_method")
        if method["customer"] != customer_id:
            raise invalid(f"The customer does not have a payment method with the ID {payment_method_id}. The "
                          "payment method must be attached to the customer.", param="default_payment_method")


def _change_price(store: Store, public_url: str, subscription: dict, item: dict, new_price: dict,
                  behavior: str, at: int) -> Optional[dict]:
    """Swap the item's price; credit the unused time on the old one, charge the rest on the new.

    Same interval: the period stays, both lines are prorated by the seconds left in it, and they
    are invoiced now (always_invoice) or on the next renewal (create_prorations). A different
    interval restarts the period now and is always invoiced now, as Stripe does: the full new
    price minus the unused-time credit.
    """
    old_price, quantity = item["price"], item["quantity"]
    start, end = item["current_period_start"], item["current_period_end"]
    at = max(start, min(at, end))
    remaining, length = end - at, end - start
    lines = []
    if behavior != "none":
        credit = -prorate(old_price["unit_amount"] * quantity, remaining, length)
        if credit:
            lines.append(invoices.proration_line(store, item, old_price, credit, at, end,
                                                 _credited_items(store, subscription, item)))
    item["price"] = copy.deepcopy(new_price)
    item["plan"] = shapes.plan_from_price(new_price)
    same_interval = (old_price["recurring"]["interval"], old_price["recurring"]["interval_count"]) == (
        new_price["recurring"]["interval"], new_price["recurring"]["interval_count"])
    if same_interval:
        if behavior != "none":
            charge = prorate(new_price["unit_amount"] * quantity, remaining, length)
            if charge:
                lines.append(invoices.proration_line(store, item, new_price, charge, at, end))
        if behavior != "always_invoice":
            store.private[subscription["id"]]["pending_lines"].extend(lines)
            return None
    else:
        recurring = new_price["recurring"]
        item["current_period_start"] = at
        item["current_period_end"] = add_interval(at, recurring["interval"], recurring["interval_count"])
        subscription["billing_cycle_anchor"] = at
        lines.append(invoices.cycle_line(store, item, at, item["current_period_end"]))
    lines = _take_pending(store, subscription) + lines
    if not lines:
        return None
    return invoices.create(store, public_url, subscription, lines, billing_reason="subscription_update",
                           period_start=at, period_end=at)


def _credited_items(store: Store, subscription: dict, item: dict) -> Optional[dict]:
    """Which earlier invoice line charged the time now credited (Stripe links the two)."""
    for invoice in store.find("invoice", lambda inv: inv["parent"]["subscription_details"]["subscription"]
                              == subscription["id"] and inv["status"] == "paid"):
        for line in invoice["lines"]["data"]:
            details = line["parent"]["subscription_item_details"]
            if details["subscription_item"] == item["id"] and line["amount"] > 0:
                return {"invoice": invoice["id"], "invoice_line_items": [line["id"]]}
    return None


def _take_pending(store: Store, subscription: dict) -> list:
    pending = store.private[subscription["id"]]["pending_lines"]
    taken, pending[:] = list(pending), []
    return taken


def _end(subscription: dict, *, canceled_at: int, ended_at: int, details: dict) -> None:
    subscription.update(status="canceled", canceled_at=canceled_at, ended_at=ended_at)
    subscription["cancellation_details"].update(
        {"reason": subscription["cancellation_details"]["reason"] or "cancellation_requested", **details})
