"""Subscription life: start (from a paid checkout), plan change with proration, cancel at period
end or now, the renewals that the control API triggers in place of Stripe's clock, and the
pending updates of payment_behavior=pending_if_incomplete.

A plan change's invoice is paid with the saved card (payments.card_declines). If it is declined:
by default (allow_incomplete) the change stays and the subscription goes past_due; with
pending_if_incomplete the subscription keeps its items and shows the change in `pending_update`
(until `expires_at`: 23 hours later or the period's end, whichever comes first), its latest_invoice
the open invoice. Paying that invoice applies the change (customer.subscription.pending_update_applied);
voiding it discards the change; so do expires_at passing, the period renewing, cancelling and a later
change of the price or of cancel_at_period_end, which also void the invoice
(customer.subscription.pending_update_expired). Every one of these says customer.subscription.updated.

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
# What Stripe takes alongside payment_behavior=pending_if_incomplete in the SDK's API version
# (metadata since 2026-05-27, cancel_at_period_end since 2026-09-30); it refuses the rest.
PENDING_SUPPORTED = {"items", "proration_behavior", "proration_date", "payment_behavior", "metadata",
                     "cancel_at_period_end", "expand"}
PENDING_UPDATE_LIFETIME = 23 * 3600


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
    pending_if_incomplete = params.get("payment_behavior") == "pending_if_incomplete"
    if pending_if_incomplete:
        _check_pending_params(params)
    item = subscription["items"]["data"][0]
    new_price = _requested_price(store, subscription, item, params.get("items"))
    if "default_payment_method" in params:
        _check_payment_method(store, subscription["customer"], params["default_payment_method"])
    changes_price = new_price is not None and new_price["id"] != item["price"]["id"]
    if _replaces_pending_update(subscription, changes_price, params):
        _discard_pending_update(store, subscription, request, expired=True)
    before = store.render(subscription)
    unchanged = copy.deepcopy(subscription)

    if "metadata" in params:
        merge_metadata(subscription, params["metadata"])
    if "default_payment_method" in params:
        subscription["default_payment_method"] = params["default_payment_method"] or None
    if "cancellation_details" in params:
        subscription["cancellation_details"].update(params["cancellation_details"])
    invoice = None
    if changes_price:
        at = params.get("proration_date") or store.now()
        invoice = _change_price(store, public_url, subscription, item, new_price,
                                params.get("proration_behavior", "create_prorations"), at)
    if "cancel_at_period_end" in params:
        _schedule_cancel(store, subscription, params["cancel_at_period_end"])
    _set_cancel_at(subscription)
    if invoice is not None and invoice["status"] == "open":
        if pending_if_incomplete:
            _hold_as_pending_update(store, subscription, unchanged, invoice, params)
        else:
            subscription["status"] = "past_due"

    _announce_update(store, subscription, before, request)
    if invoice is not None:
        emit_invoice_outcome(store, invoice, request)
    return subscription


def cancel(store: Store, subscription_id: str, params: dict, request: dict) -> dict:
    """DELETE /v1/subscriptions/{id}: ends now. A canceled subscription is gone: 404, as at Stripe.
    invoice_now and prorate are accepted; nothing is left to invoice (prorations wait for a renewal)."""
    subscription = store.get(subscription_id, "subscription")
    if subscription["status"] == "canceled":
        raise no_such("subscription", subscription_id)
    if subscription["pending_update"]:
        # Nothing can apply to a canceled subscription. Its open invoice stays open, as at Stripe:
        # whoever cancels voids it if nobody should pay it any more.
        _forget_pending_update(store, subscription)
    now = store.now()
    _end(subscription, canceled_at=now, ended_at=now, details=params.get("cancellation_details") or {})
    store.emit("customer.subscription.deleted", subscription, request=request)
    return subscription


def renew(store: Store, public_url: str, subscription_id: str,
          paid: Optional[bool] = None) -> Tuple[dict, Optional[dict]]:
    """The period ended: bill the next one (paid or failed; None: as the saved card does), or end a
    subscription set to cancel. A pending update still waiting is discarded first.

    As at Stripe, the period advances whether or not the payment succeeds; a failed payment
    leaves an open invoice and the subscription `past_due`.
    """
    subscription = store.get(subscription_id, "subscription")
    if subscription["status"] == "canceled":
        raise StripeError(409, "invalid_request_error", "This subscription is canceled; it cannot renew.")
    if subscription["pending_update"]:
        _discard_pending_update(store, subscription, expired=True)
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
    """A retry of a failed invoice succeeded (the payer fixed their card): a past_due subscription
    whose latest invoice it is is active again, and a pending update waiting for it is applied."""
    invoice = store.get(invoice_id, "invoice")
    if invoice["status"] != "open":
        raise StripeError(409, "invalid_request_error", f"Invoice {invoice_id} is {invoice['status']}, not open.")
    invoices.collect(store, invoice, succeeded=True)
    emit_invoice_outcome(store, invoice)
    subscription = store.objects.get(invoice["parent"]["subscription_details"]["subscription"])
    if subscription is None:
        return invoice
    before = store.render(subscription)
    if store.private[subscription["id"]].get("pending_invoice") == invoice_id:
        _apply_pending_update(store, subscription)
    if subscription["status"] == "past_due" and subscription["latest_invoice"] == invoice_id:
        subscription["status"] = "active"
    _announce_update(store, subscription, before)
    return invoice


def void_invoice(store: Store, invoice_id: str, request: dict) -> dict:
    """POST /v1/invoices/{id}/void (invoice.voided); the pending update waiting for it is discarded."""
    invoice = invoices.void(store, invoice_id)
    store.emit("invoice.voided", invoice, request=request)
    subscription = store.objects.get(invoice["parent"]["subscription_details"]["subscription"])
    if subscription is not None and store.private[subscription["id"]].get("pending_invoice") == invoice_id:
        _discard_pending_update(store, subscription, request, expired=False)
    return invoice


def pending_updates_due(store: Store) -> list:
    """Ids of the subscriptions whose pending update's expires_at has passed."""
    with store.lock:
        now = store.now()
        return [subscription_id for subscription_id in sorted(store.pending_update_ids)
                if now >= store.objects[subscription_id]["pending_update"]["expires_at"]]


def expire_pending_updates(store: Store) -> None:
    """Discard the pending updates whose expires_at has passed (Stripe does it on its own clock)."""
    for subscription_id in pending_updates_due(store):
        _discard_pending_update(store, store.objects[subscription_id], expired=True)


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


def _check_pending_params(params: dict) -> None:
    unsupported = [name for name in params if name not in PENDING_SUPPORTED]
    if unsupported:
        named = ", ".join(f"`{name}`" for name in unsupported)
        raise invalid("When `payment_behavior` is set to `pending_if_incomplete`, you can only pass supported "
                      f"params. {named} {'is' if len(unsupported) == 1 else 'are'} not supported. See "
                      "https://stripe.com/docs/billing/subscriptions/pending-updates-reference#supported-attributes "
                      "for more details.", param=unsupported[0])


def _replaces_pending_update(subscription: dict, changes_price: bool, params: dict) -> bool:
    """A new price, or a cancel_at_period_end other than the pending one, ends the pending update."""
    pending = subscription["pending_update"]
    if not pending:
        return False
    wanted_cancel = params.get("cancel_at_period_end")
    return changes_price or (wanted_cancel is not None and pending["cancel_at_period_end"] not in (None, wanted_cancel))


def _hold_as_pending_update(store: Store, subscription: dict, unchanged: dict, invoice: dict, params: dict) -> None:
    """The change's invoice was declined: the subscription is put back as it was, the change kept in
    `pending_update` until that invoice is paid (or the update is discarded)."""
    changed = store.render(subscription)
    subscription.clear()
    subscription.update(unchanged)
    subscription["latest_invoice"] = invoice["id"]
    period_end = unchanged["items"]["data"][0]["current_period_end"]
    anchor = changed["billing_cycle_anchor"]
    subscription["pending_update"] = shapes.pending_update(
        expires_at=min(store.now() + PENDING_UPDATE_LIFETIME, period_end),
        subscription_items=changed["items"]["data"],
        billing_cycle_anchor=anchor if anchor != unchanged["billing_cycle_anchor"] else None,
        metadata=(params["metadata"] or {}) if "metadata" in params else None,
        cancel_at_period_end=params.get("cancel_at_period_end"))
    store.private[subscription["id"]]["pending_invoice"] = invoice["id"]
    store.pending_update_ids.add(subscription["id"])


def _apply_pending_update(store: Store, subscription: dict) -> None:
    """Its invoice was paid: the pending update's items (and anchor, metadata, cancellation) take effect."""
    pending = subscription["pending_update"]
    before = store.render(subscription)
    subscription["items"]["data"] = copy.deepcopy(pending["subscription_items"])
    if pending["billing_cycle_anchor"] is not None:
        subscription["billing_cycle_anchor"] = pending["billing_cycle_anchor"]
    if pending["metadata"] is not None:
        merge_metadata(subscription, pending["metadata"])
    if pending["cancel_at_period_end"] is not None:
        _schedule_cancel(store, subscription, pending["cancel_at_period_end"])
    _set_cancel_at(subscription)
    _forget_pending_update(store, subscription)
    store.emit("customer.subscription.pending_update_applied", subscription,
               changed_attributes(before, store.render(subscription)))


def _discard_pending_update(store: Store, subscription: dict, request: Optional[dict] = None, *,
                            expired: bool) -> None:
    """The pending update will never apply: forget it and void its invoice if still open."""
    invoice_id = store.private[subscription["id"]].get("pending_invoice")
    before = store.render(subscription)
    _forget_pending_update(store, subscription)
    if invoice_id and store.objects[invoice_id]["status"] == "open":
        store.emit("invoice.voided", invoices.void(store, invoice_id), request=request)
    if expired:
        store.emit("customer.subscription.pending_update_expired", subscription, request=request)
    _announce_update(store, subscription, before, request)


def _forget_pending_update(store: Store, subscription: dict) -> None:
    subscription["pending_update"] = None
    store.private[subscription["id"]].pop("pending_invoice", None)
    store.pending_update_ids.discard(subscription["id"])


def _schedule_cancel(store: Store, subscription: dict, scheduled: bool) -> None:
    # Stripe stamps canceled_at with the request that scheduled the cancellation.
    subscription["cancel_at_period_end"] = scheduled
    subscription["canceled_at"] = store.now() if scheduled else None
    subscription["cancellation_details"]["reason"] = "cancellation_requested" if scheduled else None


def _set_cancel_at(subscription: dict) -> None:
    item = subscription["items"]["data"][0]
    subscription["cancel_at"] = item["current_period_end"] if subscription["cancel_at_period_end"] else None


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
