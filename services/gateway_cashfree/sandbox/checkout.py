"""The payer's side of a subscription: the hosted mandate authorisation behind a session id.

Pay authorises the mandate with the chosen method (the AUTH payment); Decline fails it. Either way
the session is used up: a second attempt is refused (409) and nothing is charged twice. A declined
subscription stays INITIALIZED, as at Cashfree.

What the AUTH payment collects depends on the method. A UPI or card mandate is set up by paying
authorization_amount, which the AUTH payment's payment_amount shows. An e-NACH mandate (the page's
"netbanking"; physical NACH, pnach, alike) is registered with the payer's bank and debits nothing
when approved: its AUTH payment has payment_amount 0, while authorization_details keeps the
authorization_amount that was asked for, as the mandate's amount. The OpenAPI document says no
more than "Authorization amount for the auth payment" and gives no method-specific rule; this
follows Cashfree's guides, where NACH mandates are registrations whose first debit is a charge.
So whoever relies on the authorisation to have paid the first period must read payment_amount.
"""
from decimal import Decimal
from typing import Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import periods, subscriptions
from .errors import CashfreeError, invalid_value
from .ids import random_digits
from .store import Store

# The page's choice -> what Cashfree reports as the mandate's payment_method.
METHODS = {"upi": "upi", "card": "card", "netbanking": "enach"}
REGISTERED_WITHOUT_DEBIT = ("enach", "pnach")  # NACH mandates: the bank registers them, nothing is collected
DECLINED = "Payment declined by customer"


def allowed_methods(store: Store, subscription: dict) -> list:
    """The page's choices the merchant allowed (authorization_details.payment_methods; none = all)."""
    asked = store.private[subscription["subscription_id"]]["methods"]
    if not asked:
        return list(METHODS)
    return [choice for choice, method in METHODS.items()
            if method in asked or (choice == "netbanking" and "pnach" in asked)]


def _mandate_method(store: Store, subscription: dict, choice: str) -> str:
    """The mandate's payment_method for the page's choice: a bank mandate is e-NACH unless the
    merchant allowed only physical NACH."""
    asked = store.private[subscription["subscription_id"]]["methods"]
    if choice == "netbanking" and "pnach" in asked and "enach" not in asked:
        return "pnach"
    return METHODS[choice]


def is_open(store: Store, subscription: dict) -> bool:
    return (store.private[subscription["subscription_id"]]["session_open"]
            and subscription["subscription_status"] == "INITIALIZED")


def pay(store: Store, session_id: str, method: str = "upi") -> Tuple[dict, dict]:
    """The payer approved the mandate: (subscription, AUTH payment)."""
    with store.transaction():
        subscription = _open_subscription(store, session_id)
        method = (method or "upi").lower()
        if method not in allowed_methods(store, subscription):
            raise invalid_value("method", "Possible values - " + ", ".join(allowed_methods(store, subscription)))
        now = store.now()
        auth = subscription["authorisation_details"]
        auth.update(authorization_status="ACTIVE", authorization_time=periods.iso(now),
                    payment_method=_mandate_method(store, subscription, method),
                    authorization_reference=_reference(method, subscription))
        collected = Decimal(0) if auth["payment_method"] in REGISTERED_WITHOUT_DEBIT else auth["authorization_amount"]
        payment = _auth_payment(store, subscription, "SUCCESS", amount=collected)
        subscription["subscription_status"] = "ACTIVE"
        subscriptions.schedule_first_charge(store, subscription, now)
        store.private[subscription["subscription_id"]]["session_open"] = False
        store.emit("SUBSCRIPTION_AUTH_STATUS", payment)
        subscriptions.status_changed(store, subscription)
        store.emit("SUBSCRIPTION_PAYMENT_SUCCESS", payment)
        return store.render(subscription), store.render(payment)


def decline(store: Store, session_id: str) -> Tuple[dict, dict]:
    """The payer refused (or the bank declined): a FAILED AUTH payment, the subscription unchanged."""
    with store.transaction():
        subscription = _open_subscription(store, session_id)
        subscription["authorisation_details"]["authorization_status"] = "FAILED"
        payment = _auth_payment(store, subscription, "FAILED", failure_reason=DECLINED)
        store.private[subscription["subscription_id"]]["session_open"] = False
        store.emit("SUBSCRIPTION_AUTH_STATUS", payment)
        store.emit("SUBSCRIPTION_PAYMENT_FAILED", payment)
        return store.render(subscription), store.render(payment)


def return_redirect(subscription: dict) -> str:
    """subscription_meta.return_url with ?subscription_id=... added to any query it already has."""
    url = subscription["subscription_meta"]["return_url"]
    if not url:
        return ""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + [("subscription_id", subscription["subscription_id"])]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _auth_payment(store: Store, subscription: dict, status: str, failure_reason: str = "",
                  amount: Optional[Decimal] = None) -> dict:
    """The AUTH payment, of `amount` (default: the authorization_amount asked for)."""
    now = periods.iso(store.now())
    if amount is None:
        amount = subscription["authorisation_details"]["authorization_amount"]
    payment = subscriptions.add_payment(
        store, subscription, payment_type="AUTH", amount=amount, status=status, scheduled=now, remarks="authpayment",
        failure_reason=failure_reason)
    subscription["authorisation_details"]["payment_id"] = payment["payment_id"]
    payment["authorization_details"] = dict(subscription["authorisation_details"])
    return payment


def _open_subscription(store: Store, session_id: str) -> dict:
    subscription = store.subscription_by_session(session_id)
    if not is_open(store, subscription):
        raise CashfreeError(409, "invalid_request_error",
                            f"subscription session is no longer active (subscription status: "
                            f"{subscription['subscription_status']})", "subscription_session_closed")
    return subscription


def _reference(method: str, subscription: dict) -> str:
    """What identifies the mandate: a UPI mandate number (UMN), a masked card, or an e-NACH UMRN."""
    if method == "upi":
        local = subscription["customer_details"].get("customer_email", "").split("@")[0]
        handle = "".join(ch for ch in local.lower() if ch.isalnum() or ch in "._-") or "payer"
        return f"{handle}@okaxis"
    if method == "card":
        return "XXXXXXXXXXXX1111"
    return "HDFC" + random_digits(13)
