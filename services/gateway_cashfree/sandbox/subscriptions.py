"""Subscriptions: create, manage (CANCEL, PAUSE, ACTIVATE, CHANGE_PLAN), charge, and the payments
and webhooks each step produces.

Statuses are Cashfree's: INITIALIZED until the payer authorises the mandate, then ACTIVE; PAUSED
and CANCELLED by the merchant (CUSTOMER_PAUSED / CUSTOMER_CANCELLED are the payer's own, which the
sandbox never does); ON_HOLD after a failed charge, until a charge succeeds or the merchant
ACTIVATEs; COMPLETED once plan_max_cycles charges succeeded. Every change of status or plan is
announced with SUBSCRIPTION_STATUS_CHANGED carrying the whole subscription.

A mandate is charged two ways, with the same payment, webhooks and status changes: Cashfree's own
scheduled charge of a PERIODIC plan (`charge`, driven by /_sandbox/subscriptions/{id}/charge),
and a charge the merchant raises (`raise_charge`, POST /subscriptions/pay with payment_type
CHARGE and the merchant's payment_id). Whether the payer's bank pays is a sticky per-subscription
setting (`set_charge_outcome`, /_sandbox/subscriptions/{id}/charges; "success" until changed),
which a scheduled charge follows too unless told otherwise. Both settle at once (SUCCESS or
FAILED in the answer), where at Cashfree a charge goes INITIALIZED, PENDING, then SUCCESS or
FAILED, for some methods days later: the webhook or GET /subscriptions/{id}/payments is what
says how a charge ended.
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
CHARGE_OUTCOMES = ("success", "failed")
PAYMENT_TYPES = ("AUTH", "CHARGE")


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
                                          "next_charge": None, "charge_outcome": "success"}
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


def charge(store: Store, subscription_id: str, success: Optional[bool] = None,
           amount: Optional[Decimal] = None) -> dict:
    """Cashfree charging the mandate at the next scheduled date: a CHARGE payment and its webhooks.
    `success` None: as the subscription's charge outcome says."""
    with store.transaction():
        subscription = store.subscription(subscription_id)
        _check_chargeable(subscription)
        plan = subscription["plan_details"]
        if amount is None:
            if plan["plan_type"] != "PERIODIC":
                raise missing("amount")
            amount = plan["plan_recurring_amount"]
        _check_amount(plan, amount, "amount")
        due = store.private[subscription_id]["next_charge"] or store.now()
        next_due = (periods.add_interval(due, plan["plan_interval_type"], plan["plan_intervals"])
                    if plan["plan_type"] == "PERIODIC" else None)
        return store.render(_settle_charge(
            store, subscription, payment_id=None, amount=amount, scheduled=due, remarks="Subscription charge",
            success=success, next_due=next_due))


def raise_charge(store: Store, body: dict) -> dict:
    """POST /subscriptions/pay with payment_type CHARGE: the merchant debits the authorised mandate
    now (or on payment_schedule_date), up to plan_max_amount, under its own payment_id (unique: 409
    when used before). Answers CreateSubscriptionPaymentResponse.

    It leaves next_schedule_date alone. Cashfree's guide ("Charge a Subscription") has Cashfree
    itself debit a PERIODIC plan at each billing interval and the merchant raise charges of its own
    (on-demand plans need them); nothing there lets a raised charge stand in for the next scheduled
    debit, which still falls due when it was going to."""
    subscription_id = params.text(body, "subscription_id", required=True)
    payment_id = params.text(body, "payment_id", required=True)
    payment_type = params.choice(body, "payment_type", PAYMENT_TYPES, required=True)
    if payment_type != "CHARGE":
        raise invalid_value("payment_type", "The sandbox raises CHARGE payments; a mandate is authorised on "
                                            "its hosted checkout (subscription_session_id)")
    amount = params.amount(body, "payment_amount", required=True)
    scheduled = params.time_text(body, "payment_schedule_date")
    remarks = params.text(body, "payment_remarks", default="")
    with store.transaction():
        subscription = store.subscription(subscription_id)
        if any(payment["payment_id"] == payment_id for payment in store.payments.values()):
            raise duplicate("payment")
        _check_chargeable(subscription)
        if not scheduled and subscription["authorisation_details"].get("payment_method") in ("upi", "card"):
            # CreateSubscriptionPaymentRequest: "Required for UPI and CARD payment modes".
            raise missing("payment_schedule_date")
        _check_amount(subscription["plan_details"], amount, "payment_amount")
        payment = _settle_charge(
            store, subscription, payment_id=payment_id, amount=amount,
            scheduled=periods.parse(scheduled) if scheduled else store.now(), remarks=remarks, success=None,
            next_due=None)
        return shapes.charge_answer(store.render(payment), subscription["authorisation_details"]["payment_method"])


def set_charge_outcome(store: Store, subscription_id: str, outcome: str) -> dict:
    """How the payer's bank answers this mandate's charges from now on: "success" or "failed"."""
    with store.transaction():
        store.subscription(subscription_id)
        store.private[subscription_id]["charge_outcome"] = outcome
        return {"subscription_id": subscription_id, "outcome": outcome}


def _settle_charge(store: Store, subscription: dict, *, payment_id: Optional[str], amount: Decimal,
                   scheduled: float, remarks: str, success: Optional[bool], next_due: Optional[float]) -> dict:
    """One CHARGE on the mandate, paid or refused by the bank: the payment, its webhook, the
    schedule moved to `next_due` (None: left alone) on success, and the status it leads to."""
    subscription_id = subscription["subscription_id"]
    status = subscription["subscription_status"]
    if success is None:
        success = store.private[subscription_id].get("charge_outcome", "success") == "success"
    payment = add_payment(store, subscription, payment_type="CHARGE", amount=amount,
                          status="SUCCESS" if success else "FAILED", scheduled=periods.iso(scheduled),
                          remarks=remarks, failure_reason="" if success else CHARGE_FAILURE, payment_id=payment_id)
    if not success:
        store.emit("SUBSCRIPTION_PAYMENT_FAILED", payment)
        if status == "ACTIVE":
            _set_status(store, subscription, "ON_HOLD")
        return payment
    store.emit("SUBSCRIPTION_PAYMENT_SUCCESS", payment)
    if next_due is not None:
        _schedule(store, subscription, next_due)
    plan = subscription["plan_details"]
    charged = sum(1 for p in store.payments_of(subscription_id)
                  if p["payment_type"] == "CHARGE" and p["payment_status"] == "SUCCESS")
    if plan["plan_max_cycles"] and charged >= plan["plan_max_cycles"]:
        _set_status(store, subscription, "COMPLETED")
    elif status == "ON_HOLD":
        _set_status(store, subscription, "ACTIVE")
    return payment


def _check_chargeable(subscription: dict) -> None:
    """Only an authorised mandate of an ACTIVE (or ON_HOLD: retrying lifts the hold) subscription is debited."""
    status = subscription["subscription_status"]
    if status not in ("ACTIVE", "ON_HOLD"):
        raise CashfreeError(409, "invalid_request_error",
                            f"subscription in {status} state cannot be charged", "subscription_not_active")
    if subscription["authorisation_details"]["authorization_status"] != "ACTIVE":
        raise CashfreeError(409, "invalid_request_error", "the subscription's mandate is not authorised",
                            "subscription_not_active")


def _check_amount(plan: dict, amount: Decimal, field: str) -> None:
    if amount > plan["plan_max_amount"]:
        raise invalid_value(field, "Must not exceed plan_max_amount")


def add_payment(store: Store, subscription: dict, *, payment_type: str, amount: Decimal, status: str,
                scheduled: str, remarks: str, failure_reason: str = "", payment_id: Optional[str] = None) -> dict:
    """A payment on the subscription; `payment_id` is the merchant's, else one is made up (Cashfree's own)."""
    with store.lock:
        cf_payment_id, cf_order_id, cf_txn_id = (store.new_reference() for _ in range(3))
        payment = shapes.payment(
            subscription=subscription, cf_payment_id=cf_payment_id, cf_order_id=cf_order_id, cf_txn_id=cf_txn_id,
            payment_id=payment_id or f"{payment_type.lower()}_{random_token(20)}", payment_type=payment_type,
            amount=amount, status=status, initiated=periods.iso(store.now()), scheduled=scheduled, remarks=remarks,
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
    """After authorisation: subscription_first_charge_time if asked for, else one interval on (in this
    project's design a UPI or card authorisation pays the first period; after an e-NACH one, which
    collects nothing, the merchant raises the first period's charge itself)."""
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
