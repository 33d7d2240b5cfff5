"""Refunds of card charges: POST /v1/refunds by payment_intent or charge, all or part of what is
left, settled at once (`succeeded`) as in test mode; refund.created and charge.refunded announce it.

A refund changes the charge only (amount_refunded, refunded, its refunds list): the invoice it paid
stays paid, as at Stripe. Asking for more than is left is refused the way Stripe refuses it
(charge_already_refunded when nothing is left, amount_too_large otherwise).

Callers hold the store's transaction; these functions validate first and mutate after.
"""
from . import shapes, subscriptions
from .errors import invalid
from .ids import new_id
from .money import format_amount
from .params import Enum, Int, Metadata, Str
from .store import Store

CREATE = {"payment_intent": Str(), "charge": Str(), "amount": Int(), "metadata": Metadata(),
          "reason": Enum("duplicate", "fraudulent", "requested_by_customer")}


def create(store: Store, params: dict, request: dict) -> dict:
    charge = _refundable_charge(store, params)
    left = charge["amount_captured"] - charge["amount_refunded"]
    if left == 0:
        raise invalid(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
    amount = params.get("amount", left)
    if amount < 1:
        raise invalid("Invalid positive integer", param="amount")
    if amount > left:
        raise invalid(f"Refund amount ({format_amount(amount, charge['currency'])}) is greater than unrefunded "
                      f"amount on charge ({format_amount(left, charge['currency'])})", param="amount",
                      code="amount_too_large")
    refund = shapes.refund(id=new_id("re"), created=store.now(), amount=amount, charge_obj=charge,
                           reason=params.get("reason"), metadata=params.get("metadata") or {})
    store.add(refund)
    before = store.render(charge)
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
    charge["refunds"]["data"].insert(0, store.render(refund))
    store.emit("refund.created", refund, request=request)
    store.emit("charge.refunded", charge, subscriptions.changed_attributes(before, store.render(charge)), request)
    return refund


def _refundable_charge(store: Store, params: dict) -> dict:
    """The succeeded charge the request names (directly, or as its PaymentIntent's latest charge)."""
    if "payment_intent" not in params and "charge" not in params:
        raise invalid("One of the following params should be provided for this request: payment_intent or charge.",
                      code="parameter_missing")
    if "payment_intent" in params:
        payment_intent = store.get(params["payment_intent"], "payment_intent", param="payment_intent")
        latest = store.objects.get(payment_intent["latest_charge"] or "")
        if payment_intent["status"] != "succeeded" or latest is None:
            raise invalid(f"This PaymentIntent ({payment_intent['id']}) does not have a successful charge to "
                          "refund.", param="payment_intent")
        if params.get("charge") not in (None, latest["id"]):
            raise invalid(f"The charge `{params['charge']}` does not belong to the PaymentIntent "
                          f"`{payment_intent['id']}`.", param="charge")
        return latest
    charge = store.get(params["charge"], "charge", param="charge")
    if charge["status"] != "succeeded":
        raise invalid(f"Charge {charge['id']} has failed; there is nothing to refund.", param="charge")
    return charge


def matches(refund: dict, params: dict) -> bool:
    """GET /v1/refunds filters."""
    return all(params.get(field) in (None, refund[field]) for field in ("payment_intent", "charge"))
