"""Subscriptions: create, manage (CANCEL, PAUSE, ACTIVATE, CHANGE_PLAN), charge, and the payments
and webhooks each step produces.

Statuses are Cashfree's: INITIALIZED until the payer authorises the mandate, then ACTIVE; PAUSED
and CANCELLED by the merchant (CUSTOMER_PAUSED / CUSTOMER_CANCELLED are the payer's own, which the
sandbox never does); ON_HOLD after a failed charge, until a charge succeeds or the merchant
ACTIVATEs; COMPLETED once plan_max_cycles charges succeeded. Every change of status or plan is
announced with SUBSCRIPTION_STATUS_CHANGED carrying the whole subscription.
"""
from decimal import Decimal
from typing import Optional

from . import params, periods, plans, shapes
from .errors import CashfreeError, duplicate, invalid, invalid_value, missing
from .ids import random_token, session_id
from .store import Store

PAYMENT_METHODS = ("enach", "pnach", "upi", "card")
ACTIONS = ("CANCEL", "PAUSE", "ACTIVATE", "CHANGE_PLAN")
ENDED = ("CANCELLED", "CUSTOMER_CANCELLED", "COMPLETED", "EXPIRED", "LINK_EXPIRED")
SUBSCRIPTION_ID = r"[A-Za-z0-9_. -]{1,250}"
DEFAULT_AUTHORIZATION_AMOUNT = Decimal("1.00")  # Cashfree's mandate check when none is asked for
CHARGE_FAILURE = "Insufficient balance in the customer's account"


def create(store: Store, body: dict) -> dict:
    subscription_id = params.text(body, "subscription_id", required=True, pattern=SUBSCRIPTION_ID,
                                  why="Alphanumerics, underscore, dot, hyphen and space are allowed (at most 250)")
    customer = params.obj(body, "customer_details", required=True)
    params.text(customer, "customer_email", "customer_details.", required=True)
    params.text(customer, "customer_phone", "customer_details.", required=True)
    plan_fields = params.obj(body, "plan_details", required=True)
    auth = params.obj(body, "authorization_details") or {}
    meta = params.obj(body, "subscription_meta") or {}
    tags = params.obj(body, "subscription_tags") or {}
    details = {
        "amount": params.amount(auth, "authorization_amount", "authorization_details.",
                                default=DEFAULT_AUTHORIZATION_AMOUNT),
        "refund": params.boolean(auth, "authorization_amount_refund", "authorization_details."),
        "methods": params.strings(auth, "payment_methods", PAYMENT_METHODS, "authorization_details."),
        "return_url": params.text(meta, "return_url", "subscription_meta.", default=""),
        "first_charge": params.time_text(body, "subscription_first_charge_time"),
        "expiry": params.time_text(body, "subscription_expiry_time"),
        "note": params.text(body, "subscription_note", default=""),
    }
    with store.transaction():
        if subscription_id in store.subscriptions:
            raise duplicate("subscription")
        plan_id = params.text(plan_fields, "plan_id", "plan_details.")
        if plan_id:
            plan = store.plans.get(plan_id)
            if plan is None or plan["plan_status"] != "ACTIVE":
                raise invalid_value("plan_details.plan_id", f"No active plan with id {plan_id}")
        else:
            plan = plans.inline(store, plan_fields)
        session = session_id()
        cf_subscription_id = store.new_reference()
        subscription = shapes.subscription(
            subscription_id=subscription_id, cf_subscription_id=cf_subscription_id, session_id=session,
            plan_details=store.render(plan), customer=shapes.customer_details(customer),
            authorization=shapes.authorization_details(amount=details["amount"], refund=details["refund"]),
            return_url=details["return_url"], first_charge_time=details["first_charge"],
            expiry_time=details["expiry"], note=details["note"], tags=tags,
            splits=body.get("subscription_payment_splits") or [],
        )
        store.subscriptions[subscription_id] = subscription
        store.sessions[session] = subscription_id
        store.private[subscription_id] = {"payments": [], "session_open": True, "methods": details["methods"],
                                          "next_charge": None}
        return store.render(subscription)


def manage(store: Store, subscription_id: str, body: dict) -> dict:
    named = params.text(body, "subscription_id", required=True)
    if named != subscription_id:
        raise invalid_value("subscription_id", "Must be the subscription in the URL")
    action = params.choice(body, "action", ACTIONS, required=True)
    action_details = params.obj(body, "action_details") or {}
    with store.transaction():
        subscription = store.subscription(subscription_id)
        status = subscription["subscription_status"]
        if status in ENDED:
            raise _not_allowed(action, status)
        if action == "CANCEL":
            _set_status(store, subscription, "CANCELLED")
        elif action == "PAUSE":
            if status != "ACTIVE":
                raise _not_allowed(action, status)
            _set_status(store, subscription, "PAUSED")
        elif action == "ACTIVATE":
            if status not in ("PAUSED", "CUSTOMER_PAUSED", "ON_HOLD"):
                raise _not_allowed(action, status)
            next_time = params.time_text(action_details, "next_scheduled_time", "action_details.")
            if next_time and subscription["plan_details"]["plan_type"] == "PERIODIC":
                _schedule(store, subscription, periods.parse(next_time))
            _set_status(store, subscription, "ACTIVE")
        else:  # CHANGE_PLAN: the new amount applies from the next charge; nothing is charged now
            plan_id = params.text(action_details, "plan_id", "action_details.")
            if not plan_id:
                raise missing("action_details.plan_id")
            plan = store.plans.get(plan_id)
            if plan is None or plan["plan_status"] != "ACTIVE":
                raise invalid_value("action_details.plan_id", f"No active plan with id {plan_id}")
            subscription["plan_details"] = store.render(plan)
            store.emit("SUBSCRIPTION_STATUS_CHANGED", {"subscription_details": subscription})
        return store.render(subscription)


def charge(store: Store, subscription_id: str, success: bool, amount: Optional[Decimal] = None) -> dict:
    """Cashfree charging the mandate at the next scheduled date: a CHARGE payment and its webhooks."""
    with store.transaction():
        subscription = store.subscription(subscription_id)
        status = subscription["subscription_status"]
        if status not in ("ACTIVE", "ON_HOLD"):
            raise CashfreeError(409, "invalid_request_error",
                                f"subscription in {status} state cannot be charged", "subscription_not_active")
        plan = subscription["plan_details"]
        if amount is None:
            if plan["plan_type"] != "PERIODIC":
                raise missing("amount")
            amount = plan["plan_recurring_amount"]
        if amount > plan["plan_max_amount"]:
            raise invalid_value("amount", "Must not exceed plan_max_amount")
        now = store.now()
        facts = store.private[subscription_id]
        due = facts["next_charge"] or now
        payment = add_payment(store, subscription, payment_type="CHARGE", amount=amount,
                              status="SUCCESS" if success else "FAILED", scheduled=periods.iso(due),
                              remarks="Subscription charge", failure_reason="" if success else CHARGE_FAILURE)
        if success:
            store.emit("SUBSCRIPTION_PAYMENT_SUCCESS", payment)
            if plan["plan_type"] == "PERIODIC":
                _schedule(store, subscription, periods.add_interval(due, plan["plan_interval_type"],
                                                                    plan["plan_intervals"]))
            charged = sum(1 for p in store.payments_of(subscription_id)
                          if p["payment_type"] == "CHARGE" and p["payment_status"] == "SUCCESS")
            if plan["plan_max_cycles"] and charged >= plan["plan_max_cycles"]:
                _set_status(store, subscription, "COMPLETED")
            elif status == "ON_HOLD":
                _set_status(store, subscription, "ACTIVE")
        else:
            store.emit("SUBSCRIPTION_PAYMENT_FAILED", payment)
            if status == "ACTIVE":
                _set_status(store, subscription, "ON_HOLD")
        return store.render(payment)


def add_payment(store: Store, subscription: dict, *, payment_type: str, amount: Decimal, status: str,
                scheduled: str, remarks: str, failure_reason: str = "") -> dict:
    with store.lock:
        cf_payment_id, cf_order_id, cf_txn_id = (store.new_reference() for _ in range(3))
        payment = shapes.payment(
            subscription=subscription, cf_payment_id=cf_payment_id, cf_order_id=cf_order_id, cf_txn_id=cf_txn_id,
            payment_id=f"{payment_type.lower()}_{random_token(20)}", payment_type=payment_type, amount=amount,
            status=status, initiated=periods.iso(store.now()), scheduled=scheduled, remarks=remarks,
            failure_reason=failure_reason)
        store.payments[cf_payment_id] = payment
        store.private[subscription["subscription_id"]]["payments"].append(cf_payment_id)
        return payment


def status_changed(store: Store, subscription: dict) -> None:
    store.emit("SUBSCRIPTION_STATUS_CHANGED", {"subscription_details": subscription})


def _set_status(store: Store, subscription: dict, status: str) -> None:
    subscription["subscription_status"] = status
    if status in ENDED:
        subscription["next_schedule_date"] = ""
        store.private[subscription["subscription_id"]]["next_charge"] = None
    status_changed(store, subscription)


def _schedule(store: Store, subscription: dict, timestamp: float) -> None:
    store.private[subscription["subscription_id"]]["next_charge"] = timestamp
    subscription["next_schedule_date"] = periods.iso(timestamp)


def schedule_first_charge(store: Store, subscription: dict, authorised_at: float) -> None:
    """After authorisation: subscription_first_charge_time if asked for, else one interval on (the
    authorisation payment pays the first period in this project's design)."""
    plan = subscription["plan_details"]
    if plan["plan_type"] != "PERIODIC":
        return
    first = periods.parse(subscription["subscription_first_charge_time"] or "")
    if first is None or first <= authorised_at:
        first = periods.add_interval(authorised_at, plan["plan_interval_type"], plan["plan_intervals"])
    _schedule(store, subscription, first)


def _not_allowed(action: str, status: str) -> CashfreeError:
    return invalid(f"action {action} is not allowed on a subscription in {status} state",
                   code="subscription_action_invalid")
