"""Stripe events -> the gateway-neutral facts billing understands (shared/events.py, gateway.*).

Pure functions of the event payload (plus a customer -> account lookup), so the same event always
gives the same facts, and billing can order them by Stripe's own timestamps.
"""
import logging

log = logging.getLogger(__name__)

SUBSCRIPTION_STATUS = {
    "active": "active",
    "trialing": "active",
    "past_due": "past_due",
    "unpaid": "unpaid",  # Stripe gave up collecting: no longer a plan (billing lets the account buy again)
    "paused": "past_due",
    "incomplete": "incomplete",
    "incomplete_expired": "cancelled",
    "canceled": "cancelled",
}


def _id(value):
    """An expandable field: an id string, or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value


def _base(event, account_id):
    return {"gateway": "stripe", "gateway_event_id": event["id"], "gateway_event_at": int(event["created"]),
            "account_id": account_id}


def subscription_snapshot(subscription, account_id, event_id, event_at):
    """gateway.subscription_updated data for a Stripe subscription object (current API: periods on items)."""
    item = subscription["items"]["data"][0]
    price = item["price"]
    metadata = subscription.get("metadata") or {}
    # The price is what is charged, so it names the plan; the subscription's metadata may still name
    # the plan it was bought with.
    plan_code = (price.get("metadata") or {}).get("plan_code") or metadata.get("plan_code") or price.get("lookup_key")
    return {
        "gateway": "stripe", "gateway_event_id": event_id, "gateway_event_at": int(event_at),
        "account_id": account_id,
        "gateway_subscription_id": subscription["id"],
        "checkout_id": metadata.get("checkout_id"),
        "link_id": metadata.get("link_id"),
        "plan_code": plan_code,
        "status": SUBSCRIPTION_STATUS.get(subscription["status"], "incomplete"),
        "amount": int(price["unit_amount"]),
        "currency": price["currency"],
        "current_period_start": item.get("current_period_start"),
        "current_period_end": item.get("current_period_end"),
        "cancel_at_period_end": bool(subscription.get("cancel_at_period_end") or subscription.get("cancel_at")),
    }


def _invoice_fact(event, invoice, account_id, amount):
    subscription_details = ((invoice.get("parent") or {}).get("subscription_details") or {})
    lines = (invoice.get("lines") or {}).get("data") or []
    period = lines[0].get("period", {}) if lines else {}
    description = lines[-1].get("description") if lines else None
    return {
        **_base(event, account_id),
        "gateway_invoice_id": invoice["id"],
        "gateway_subscription_id": _id(subscription_details.get("subscription")),
        "amount": int(amount),
        "currency": invoice["currency"],
        "description": description or invoice.get("description") or "Subscription payment",
        "invoice_url": invoice.get("hosted_invoice_url"),
        "period_start": period.get("start"),
        "period_end": period.get("end"),
        "plan_change": invoice.get("billing_reason") == "subscription_update",
    }


def _account_of(obj, account_for_customer):
    metadata = obj.get("metadata") or {}
    subscription_details = ((obj.get("parent") or {}).get("subscription_details") or {})
    return (metadata.get("account_id")
            or (subscription_details.get("metadata") or {}).get("account_id")
            or account_for_customer(_id(obj.get("customer"))))


def normalize(event, account_for_customer, link_for=lambda payment_link_id: None):
    """[(event_type, data), ...] for a verified Stripe event; [] for types we do not act on.

    `link_for(payment_link_id)` gives our {link_id, account_id} for a Stripe Payment Link.
    """
    obj = event["data"]["object"]
    kind = event["type"]
    if kind not in HANDLED_TYPES:
        return []
    if kind == "checkout.session.completed" and obj.get("payment_link"):
        return _link_paid(event, obj, link_for(_id(obj["payment_link"])))
    account_id = _account_of(obj, account_for_customer)
    if not account_id:
        log.warning("stripe event %s (%s) names no account of ours; ignored", event["id"], kind)
        return []

    if kind == "checkout.session.completed":
        if obj.get("mode") != "subscription" or obj.get("payment_status") not in ("paid", "no_payment_required"):
            return []
        return [("gateway.checkout_completed", {
            **_base(event, account_id),
            "checkout_id": obj.get("client_reference_id") or (obj.get("metadata") or {}).get("checkout_id"),
            "gateway_checkout_id": obj["id"],
            "gateway_subscription_id": _id(obj.get("subscription")),
            "gateway_customer_id": _id(obj.get("customer")),
            "collected": _collected(obj),
        })]
    if kind in ("checkout.session.expired", "checkout.session.async_payment_failed"):
        return [("gateway.checkout_failed", {
            **_base(event, account_id),
            "checkout_id": obj.get("client_reference_id") or (obj.get("metadata") or {}).get("checkout_id"),
            "gateway_checkout_id": obj["id"],
            "reason": "expired" if kind == "checkout.session.expired" else "declined",
        })]
    if kind.startswith("customer.subscription."):
        return [("gateway.subscription_updated", subscription_snapshot(obj, account_id, event["id"], event["created"]))]
    if kind == "invoice.paid":
        if not obj.get("amount_paid"):
            return []  # a zero invoice (a downgrade credit) is not a payment
        return [("gateway.payment_succeeded", _invoice_fact(event, obj, account_id, obj["amount_paid"]))]
    if kind == "invoice.payment_failed":
        return [("gateway.payment_failed", _invoice_fact(event, obj, account_id, obj["amount_due"]))]
    return []


def _collected(session):
    """What a completed Checkout Session collected for the first period (billing compares it with
    what it quoted): its total after discounts and taxes, in its currency."""
    return {"amount": int(session.get("amount_total") or 0), "currency": session.get("currency") or ""}


def _link_paid(event, session, link):
    if link is None or session.get("payment_status") not in ("paid", "no_payment_required"):
        return []
    return [("gateway.link_paid", {
        **_base(event, link["account_id"]), "link_id": link["link_id"], "gateway_link_id": _id(session["payment_link"]),
        "gateway_subscription_id": _id(session.get("subscription")), "paid_at": int(event["created"]),
        "collected": _collected(session),
    })]


HANDLED_TYPES = (
    "checkout.session.completed",
    "checkout.session.expired",
    "checkout.session.async_payment_failed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
)
