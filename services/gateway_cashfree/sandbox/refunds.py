"""Refunds: of a subscription's payments (POST /subscriptions/{id}/refunds, GET .../refunds/{refund_id})
and of a paid order, such as a payment link's (POST and GET /orders/{order_id}/refunds, GET
.../refunds/{refund_id}).

A refund is settled at once: answered SUCCESS (an order's refund processed when created), where
Cashfree answers PENDING or INITIATED and settles within days; its shape is Cashfree's all the
same. refund_id is the merchant's and unique within its subscription or order (409 when used
before). Refused with 400: a payment the subscription does not have, one that did not succeed, an
order that is not PAID, and more than is left to refund of the payment (partial refunds add up).

An order's refund is announced with REFUND_STATUS_WEBHOOK, whose data is the document's
RefundWebhookDataEntity ({"refund": RefundEntity}). A subscription's refund is announced with
nothing: Cashfree's guides name a SUBSCRIPTION_REFUND_STATUS webhook, but the OpenAPI document
defines no schema for it (nor for any subscription webhook), so the sandbox does not make one up.

refund_speed follows the document's prose: an order's refund is STANDARD unless INSTANT is asked
for; a subscription payment's refund is STANDARD for UPI (the only speed UPI takes), INSTANT for
e-NACH and physical NACH (their only speed), and either for cards (STANDARD by default).
"""
from decimal import Decimal
from typing import List, Optional

from . import params, periods, shapes
from .errors import duplicate, invalid, invalid_value, missing, not_found
from .ids import random_digits
from .money import format_inr
from .store import Store

SPEEDS = ("STANDARD", "INSTANT")
ONLY_SPEED = {"upi": "STANDARD", "enach": "INSTANT", "pnach": "INSTANT"}  # by the mandate's payment_method
ORDER_REFUND_ID_MAX = 40


# a subscription's payments

def refund_subscription_payment(store: Store, subscription_id: str, body: dict) -> dict:
    """Refund (part of) a SUCCESS payment of the subscription, named by payment_id or cf_payment_id."""
    named = params.text(body, "subscription_id", required=True)
    if named != subscription_id:
        raise invalid_value("subscription_id", "Must be the subscription in the URL")
    refund_id = params.text(body, "refund_id", required=True)
    amount = params.amount(body, "refund_amount", required=True)
    payment_id = params.text(body, "payment_id")
    cf_payment_id = params.integer(body, "cf_payment_id", minimum=1)
    if payment_id is None and cf_payment_id is None:
        raise missing("payment_id")
    note = params.text(body, "refund_note", default="")
    speed = params.choice(body, "refund_speed", SPEEDS)
    with store.transaction():
        store.subscription(subscription_id)
        earlier = store.subscription_refunds.get(subscription_id, [])
        _check_new(earlier, refund_id)
        payment = _subscription_payment(store, subscription_id, payment_id, cf_payment_id)
        speed = _subscription_speed(speed, payment["authorization_details"]["payment_method"])
        _check_refundable(payment, earlier, amount, "payment")
        refund = shapes.subscription_refund(payment=payment, cf_refund_id=store.new_reference(), refund_id=refund_id,
                                            amount=amount, note=note, speed=speed)
        store.subscription_refunds.setdefault(subscription_id, []).append(refund)
        return store.render(refund)


def subscription_refund(store: Store, subscription_id: str, refund_id: str) -> dict:
    with store.lock:
        store.subscription(subscription_id)
        return store.render(_find(store.subscription_refunds.get(subscription_id, []), refund_id))


def _subscription_payment(store: Store, subscription_id: str, payment_id: Optional[str],
                          cf_payment_id: Optional[int]) -> dict:
    """The subscription's payment with these ids (both must name the same one when both are given)."""
    for payment in store.payments_of(subscription_id):
        if ((payment_id is None or payment["payment_id"] == payment_id)
                and (cf_payment_id is None or payment["cf_payment_id"] == str(cf_payment_id))):
            return payment
    named = payment_id if payment_id is not None else cf_payment_id
    raise invalid(f"payment not found for id: {named} in subscription {subscription_id}", code="payment_not_found")


def _subscription_speed(asked: Optional[str], method: str) -> str:
    only = ONLY_SPEED.get(method)
    if asked and only and asked != only:
        raise invalid_value("refund_speed", f"A {method} payment is refunded {only} only")
    return asked or only or "STANDARD"


# an order's payment

def refund_order(store: Store, order_id: str, body: dict) -> dict:
    """Refund (part of) what a PAID order collected; REFUND_STATUS_WEBHOOK announces it."""
    refund_id = params.text(body, "refund_id", required=True, max_length=ORDER_REFUND_ID_MAX)
    amount = params.amount(body, "refund_amount", required=True)
    note = params.text(body, "refund_note", default="")
    speed = params.choice(body, "refund_speed", SPEEDS, default="STANDARD")
    if body.get("refund_splits"):
        raise invalid_value("refund_splits", "Easy Split is not part of the sandbox")
    with store.transaction():
        order = store.order(order_id)
        earlier = store.order_refunds.get(order_id, [])
        _check_new(earlier, refund_id)
        if order["order_status"] != "PAID":
            raise invalid(f"only a PAID order can be refunded; this one is {order['order_status']}",
                          code="order_not_paid")
        payment = next(p for p in store.order_payments[order_id] if p["payment_status"] == "SUCCESS")
        _check_refundable(payment, earlier, amount, "order")
        refund = shapes.order_refund(order=order, payment=payment, cf_refund_id=store.new_reference(),
                                     refund_id=refund_id, amount=amount, note=note, speed=speed,
                                     at=periods.iso(store.now()), arn=random_digits(12))
        store.order_refunds.setdefault(order_id, []).append(refund)
        store.emit("REFUND_STATUS_WEBHOOK", {"refund": refund})
        return store.render(refund)


def order_refunds(store: Store, order_id: str) -> List[dict]:
    """The order's refunds, oldest first."""
    with store.lock:
        store.order(order_id)
        return store.render(store.order_refunds.get(order_id, []))


def order_refund(store: Store, order_id: str, refund_id: str) -> dict:
    with store.lock:
        store.order(order_id)
        return store.render(_find(store.order_refunds.get(order_id, []), refund_id))


# both

def _check_new(earlier: List[dict], refund_id: str) -> None:
    if any(refund["refund_id"] == refund_id for refund in earlier):
        raise duplicate("refund")


def _check_refundable(payment: dict, earlier: List[dict], amount: Decimal, kind: str) -> None:
    """A SUCCESS payment, refunded at most what it collected, all its refunds together."""
    if payment["payment_status"] != "SUCCESS":
        raise invalid(f"only a successful payment can be refunded; this one is {payment['payment_status']}",
                      code="payment_not_successful")
    refunded = sum((refund["refund_amount"] for refund in earlier
                    if refund["cf_payment_id"] == payment["cf_payment_id"]), Decimal(0))
    left = payment["payment_amount"] - refunded
    if amount > left:
        raise invalid(f"refund_amount {format_inr(amount)} is more than the {format_inr(left)} left to refund "
                      f"of this {kind}'s {format_inr(payment['payment_amount'])}", code="refund_amount_exceeded")


def _find(refunds: List[dict], refund_id: str) -> dict:
    for refund in refunds:
        if refund["refund_id"] == refund_id:
            return refund
    raise not_found("refund", refund_id)
