"""Cashfree's objects as the OpenAPI document of 2025-01-01 shapes them.

Every builder returns all the properties the document lists for its entity (PlanEntity,
SubscriptionEntity, AuthorizationDetails, SubscriptionPaymentEntity,
CreateSubscriptionPaymentResponse, SubscriptionPaymentRefundEntity, LinkEntity,
PaymentLinkOrderEntity, PaymentEntity, and RefundEntity but for its forex properties). Where
Cashfree has nothing to say yet it answers "" or an empty object, as the document's own examples
do, and never null: none of these properties is `nullable`, so a null would not validate against
the contract. Amounts are Decimals (rendered as exact JSON numbers); times are IST text (periods.iso).

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


def charge_answer(payment: dict, payment_method: str) -> dict:
    """CreateSubscriptionPaymentResponse for a raised CHARGE: the payment, the mandate's method, and
    `data` empty ("for charge, the payload is empty")."""
    return {
        "cf_payment_id": payment["cf_payment_id"],
        "data": {},
        "failure_details": dict(payment["failure_details"]),
        "payment_amount": payment["payment_amount"],
        "payment_id": payment["payment_id"],
        "payment_initiated_date": payment["payment_initiated_date"],
        "payment_method": payment_method,
        "payment_status": payment["payment_status"],
        "payment_type": payment["payment_type"],
        "subscription_id": payment["subscription_id"],
    }


def subscription_refund(*, payment: dict, cf_refund_id, refund_id, amount, note, speed) -> dict:
    """SubscriptionPaymentRefundEntity: settled at once (SUCCESS)."""
    return {
        "cf_payment_id": payment["cf_payment_id"],
        "cf_refund_id": cf_refund_id,
        "payment_id": payment["payment_id"],
        "refund_amount": amount,
        "refund_id": refund_id,
        "refund_note": note,
        "refund_speed": speed,
        "refund_status": "SUCCESS",
    }


def order_refund(*, order: dict, payment: dict, cf_refund_id, refund_id, amount, note, speed, at, arn) -> dict:
    """RefundEntity of a merchant's refund, settled at once (SUCCESS, processed when created). The
    forex_* and charges_currency properties concern international payments, for which Cashfree
    sends null, which the document does not allow for them: they are left out."""
    return {
        "cf_payment_id": payment["cf_payment_id"],
        "cf_refund_id": cf_refund_id,
        "order_id": order["order_id"],
        "refund_id": refund_id,
        "entity": "refund",
        "refund_amount": amount,
        "refund_currency": order["order_currency"],
        "refund_note": note,
        "refund_status": "SUCCESS",
        "refund_arn": arn,
        "refund_charge": Decimal(0),
        "status_description": "Refund processed successfully",
        "metadata": {},
        "refund_splits": [],
        "refund_type": "MERCHANT_INITIATED",
        "refund_mode": speed,
        "created_at": at,
        "processed_at": at,
        "refund_speed": {"requested": speed, "accepted": speed, "processed": speed, "message": ""},
    }


LINK_CUSTOMER_FIELDS = ("customer_id", "customer_email", "customer_phone", "customer_name",
                        "customer_bank_account_number", "customer_bank_ifsc", "customer_bank_code")


def link(*, cf_link_id, link_id, amount, currency, purpose, created_at, customer, meta, url, expiry_time, notes,
         auto_reminders, notify, partial_payments, minimum_partial_amount, splits) -> dict:
    return {
        "cf_link_id": cf_link_id,
        "link_id": link_id,
        "link_status": "ACTIVE",
        "link_currency": currency,
        "link_amount": amount,
        "link_amount_paid": Decimal(0),
        "link_partial_payments": partial_payments,
        "link_minimum_partial_amount": minimum_partial_amount if minimum_partial_amount is not None else Decimal(0),
        "link_purpose": purpose,
        "link_created_at": created_at,
        "customer_details": customer,
        "link_meta": meta,
        "link_url": url,
        "link_expiry_time": expiry_time,
        "link_notes": notes,
        "link_auto_reminders": auto_reminders,
        "link_notify": notify,
        "link_qrcode": "",
        "order_splits": splits,
    }


def link_order(*, link: dict, cf_order_id, order_id, customer_id, session, created_at, tags) -> dict:
    """A link's one order (PaymentLinkOrderEntity), made on the payer's first attempt."""
    customer = {name: link["customer_details"][name] for name in LINK_CUSTOMER_FIELDS
                if name in link["customer_details"]}
    order_meta = {"return_url": link["link_meta"].get("return_url", ""),
                  "notify_url": link["link_meta"].get("notify_url", "")}
    if link["link_meta"].get("payment_methods"):
        order_meta["payment_methods"] = link["link_meta"]["payment_methods"]
    return {
        "cf_order_id": cf_order_id,
        "link_id": link["link_id"],
        "order_id": order_id,
        "entity": "order",
        "order_currency": link["link_currency"],
        "order_amount": link["link_amount"],
        "order_status": "ACTIVE",
        "payment_session_id": session,
        "order_expiry_time": link["link_expiry_time"],
        "order_note": link["link_purpose"],
        "created_at": created_at,
        "order_splits": list(link["order_splits"]),
        "customer_details": {"customer_id": customer_id, **customer},
        "order_meta": order_meta,
        "order_tags": tags,
    }


def order_payment(*, order: dict, cf_payment_id, status, message, at, bank_reference, auth_id, method,
                  group, error=None) -> dict:
    """One attempt to pay an order (PaymentEntity); `error_details` only when it did not succeed."""
    payment = {
        "cf_payment_id": cf_payment_id,
        "order_id": order["order_id"],
        "entity": "payment",
        "is_captured": status == "SUCCESS",
        "order_amount": order["order_amount"],
        "order_currency": order["order_currency"],
        "payment_group": group,
        "payment_currency": order["order_currency"],
        "payment_amount": order["order_amount"],
        "payment_time": at,
        "payment_completion_time": at,
        "payment_status": status,
        "payment_message": message,
        "bank_reference": bank_reference,
        "auth_id": auth_id,
        "payment_method": method,
        "payment_gateway_details": {
            "gateway_name": "CASHFREE", "gateway_order_id": order["cf_order_id"], "gateway_payment_id": cf_payment_id,
            "gateway_order_reference_id": "", "gateway_status_code": "", "gateway_settlement": "CASHFREE",
            "gateway_reference_name": "",
        },
    }
    if error is not None:
        payment["error_details"] = error
    return payment
