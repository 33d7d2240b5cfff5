"""Cashfree's objects as the OpenAPI document of 2025-01-01 shapes them.

Every builder returns all the properties the document lists for its entity (PlanEntity,
SubscriptionEntity, AuthorizationDetails, SubscriptionPaymentEntity). Where Cashfree has nothing
to say yet it answers "" or an empty object, as the document's own examples do, and never null:
none of these properties is `nullable`, so a null would not validate against the contract.
Amounts are Decimals (rendered as exact JSON numbers); times are IST text (periods.iso).

One property the document does not list is added to the subscription, as Cashfree's answers
carry it: `next_schedule_date`, when the next charge of a PERIODIC plan falls due ("" if none).
"""
from decimal import Decimal

CUSTOMER_FIELDS = ("customer_bank_account_holder_name", "customer_bank_account_number",
                   "customer_bank_account_type", "customer_bank_code", "customer_bank_ifsc", "customer_email",
                   "customer_name", "customer_phone")
NEVER_EXPIRES = "2100-01-01T05:29:59+05:30"  # what Cashfree shows when no expiry was asked for


def plan(*, plan_id, plan_name, plan_type, plan_currency="INR", plan_recurring_amount=None,
         plan_max_amount, plan_max_cycles=0, plan_interval_type="", plan_intervals=0, plan_note="",
         plan_status="ACTIVE") -> dict:
    return {
        "plan_currency": plan_currency, "plan_id": plan_id, "plan_interval_type": plan_interval_type,
        "plan_intervals": plan_intervals, "plan_max_amount": plan_max_amount, "plan_max_cycles": plan_max_cycles,
        "plan_name": plan_name, "plan_note": plan_note,
        "plan_recurring_amount": plan_recurring_amount if plan_recurring_amount is not None else Decimal(0),
        "plan_status": plan_status, "plan_type": plan_type,
    }


def customer_details(given: dict) -> dict:
    details = {name: given.get(name) or "" for name in CUSTOMER_FIELDS}
    details.update({name: value for name, value in given.items() if name not in details})
    return details


def authorization_details(*, amount: Decimal, refund: bool) -> dict:
    return {
        "authorization_amount": amount, "authorization_amount_refund": refund, "authorization_reference": "",
        "authorization_status": "INITIALIZED", "authorization_time": "", "payment_id": "", "payment_method": "",
    }


def subscription(*, subscription_id, cf_subscription_id, session_id, plan_details, customer, authorization,
                 return_url, first_charge_time, expiry_time, note, tags, splits) -> dict:
    return {
        "authorisation_details": authorization,  # sic: Cashfree's spelling on the subscription
        "cf_subscription_id": cf_subscription_id,
        "customer_details": customer,
        "next_schedule_date": "",
        "plan_details": plan_details,
        "subscription_expiry_time": expiry_time or NEVER_EXPIRES,
        "subscription_first_charge_time": first_charge_time or "",
        "subscription_id": subscription_id,
        "subscription_meta": {"return_url": return_url or ""},
        "subscription_note": note or "",
        "subscription_payment_splits": splits or [],
        "subscription_session_id": session_id,
        "subscription_status": "INITIALIZED",
        "subscription_tags": tags or {},
    }


def payment(*, subscription: dict, cf_payment_id, cf_order_id, cf_txn_id, payment_id, payment_type, amount,
            status, initiated, scheduled, remarks, failure_reason="") -> dict:
    return {
        "authorization_details": dict(subscription["authorisation_details"]),
        "cf_order_id": cf_order_id,
        "cf_payment_id": cf_payment_id,
        "cf_subscription_id": subscription["cf_subscription_id"],
        "cf_txn_id": cf_txn_id,
        "failure_details": {"failure_reason": failure_reason},
        "payment_amount": amount,
        "payment_id": payment_id,
        "payment_initiated_date": initiated,
        "payment_remarks": remarks,
        "payment_schedule_date": scheduled,
        "payment_status": status,
        "payment_type": payment_type,
        "retry_attempts": 0,
        "subscription_id": subscription["subscription_id"],
    }
