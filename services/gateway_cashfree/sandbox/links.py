"""Payment Links: create, fetch, cancel, list their orders, and the payer paying (or failing, or
dropping out) on the link's page.

A link collects one payment of its link_amount, in INR (partial payments are not part of the
sandbox). Its one ORDER is made on the payer's first attempt (order_id "<link_id>_order", tagged
with a copy of the link's notes plus cf_link_id) and every attempt is a payment on that order:

  Pay   SUCCESS: the order and the link are PAID (link_amount_paid = link_amount); announced by
        PAYMENT_SUCCESS_WEBHOOK, then PAYMENT_LINK_EVENT.
  Fail  FAILED, with error_details: PAYMENT_FAILED_WEBHOOK; the link stays ACTIVE for another try.
  Drop  USER_DROPPED (the payer gave up): PAYMENT_USER_DROPPED_WEBHOOK; the link stays ACTIVE.

A link past its link_expiry_time is EXPIRED from the first time anyone reads or pays it (its
order, if any, too); only an ACTIVE link can be cancelled (CANCELLED), and only an ACTIVE link can
be paid (409 otherwise). Webhook payloads follow the OpenAPI document's PaymentWebhook; a
PAYMENT_LINK_EVENT carries the LinkEntity and the order that paid it.
"""
import copy
from typing import Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import params, periods, shapes
from .errors import CashfreeError, duplicate, invalid, invalid_value
from .ids import random_digits, random_token
from .store import Store

LINK_ID = r"[A-Za-z0-9_-]{1,50}"
DEFAULT_LIFETIME = 30 * 24 * 3600  # Cashfree's default link_expiry_time: 30 days
MAX_NOTES = 5
METHODS = ("upi", "card", "netbanking")  # the page's choices
OUTCOMES = {"pay": "SUCCESS", "fail": "FAILED", "drop": "USER_DROPPED"}
WEBHOOKS = {"SUCCESS": "PAYMENT_SUCCESS_WEBHOOK", "FAILED": "PAYMENT_FAILED_WEBHOOK",
            "USER_DROPPED": "PAYMENT_USER_DROPPED_WEBHOOK"}
MESSAGES = {"SUCCESS": "Transaction Successful",
            "FAILED": "Transaction declined by the issuing bank",
            "USER_DROPPED": "User dropped and did not complete the payment"}
ERRORS = {
    "FAILED": {"error_code": "TRANSACTION_DECLINED",
               "error_description": "issuer bank or payment service provider declined the transaction",
               "error_reason": "auth_declined", "error_source": "customer", "error_code_raw": "ZM",
               "error_description_raw": "INVALID / INCORRECT MPIN"},
    "USER_DROPPED": {"error_code": "USER_DROPPED",
                     "error_description": "user dropped and did not complete the two factor authentication",
                     "error_reason": "user_dropped", "error_source": "customer", "error_code_raw": "",
                     "error_description_raw": ""},
}
GROUPS = {"upi": "upi", "card": "credit_card", "netbanking": "net_banking"}
ENDED_ORDER = "EXPIRED"  # what an unpaid order becomes when its link expires or is cancelled


# the merchant's side (/pg/links)

def create(store: Store, public_url: str, body: dict) -> dict:
    link_id = params.text(body, "link_id", required=True, pattern=LINK_ID,
                          why="Only alpha-numerics, hyphen and underscore are allowed (at most 50)")
    amount = params.amount(body, "link_amount", required=True)
    currency = params.text(body, "link_currency", required=True)
    if currency.upper() != "INR":
        raise invalid_value("link_currency", "The sandbox collects INR only")
    purpose = params.text(body, "link_purpose", required=True, max_length=500)
    customer = params.obj(body, "customer_details", required=True)
    params.text(customer, "customer_phone", "customer_details.", required=True)
    if params.boolean(body, "link_partial_payments"):
        raise invalid_value("link_partial_payments", "The sandbox supports full payments only")
    expiry = params.time_text(body, "link_expiry_time")
    notes = params.obj(body, "link_notes") or {}
    if len(notes) > MAX_NOTES or not all(isinstance(value, str) for value in notes.values()):
        raise invalid_value("link_notes", f"At most {MAX_NOTES} key-value pairs of strings are allowed")
    meta = params.obj(body, "link_meta") or {}
    notify = params.obj(body, "link_notify") or {}
    splits = body.get("order_splits") or []
    if not isinstance(splits, list):
        raise invalid_value("order_splits", "Expected an array")
    reminders = params.boolean(body, "link_auto_reminders")
    with store.transaction():
        now = store.now()
        expires_at = periods.parse(expiry) if expiry else now + DEFAULT_LIFETIME
        if expires_at <= now:
            raise invalid_value("link_expiry_time", "The expiry time must be in the future")
        if link_id in store.links:
            raise duplicate("link")
        cf_link_id = store.new_reference()
        link = shapes.link(
            cf_link_id=cf_link_id, link_id=link_id, amount=amount, currency="INR", purpose=purpose,
            created_at=periods.iso(now), customer=copy.deepcopy(customer),
            meta={"return_url": "", "notify_url": "", **copy.deepcopy(meta)},
            url=f"{public_url}/links/{link_id}", expiry_time=expiry or periods.iso(expires_at),
            notes=dict(notes), auto_reminders=reminders,
            notify={"send_sms": False, "send_email": False, **copy.deepcopy(notify)}, partial_payments=False,
            minimum_partial_amount=None, splits=copy.deepcopy(splits))
        store.links[link_id] = link
        store.link_facts[link_id] = {"expires_at": expires_at, "order_id": None}
        return store.render(link)


def get(store: Store, link_id: str) -> dict:
    with store.transaction():
        return store.render(refresh(store, store.link(link_id)))


def cancel(store: Store, link_id: str) -> dict:
    """Only an ACTIVE link can be cancelled; a PAID, CANCELLED or EXPIRED one is refused (400)."""
    with store.transaction():
        link = refresh(store, store.link(link_id))
        status = link["link_status"]
        if status == "PAID":
            raise invalid("link is already paid and cannot be cancelled", code="link_already_paid")
        if status == "CANCELLED":
            raise invalid("link is already cancelled", code="link_already_cancelled")
        if status != "ACTIVE":
            raise invalid(f"only an ACTIVE link can be cancelled; this one is {status}", code="link_not_active")
        link["link_status"] = "CANCELLED"
        _end_order(store, link_id)
        return store.render(link)


def orders(store: Store, link_id: str, status: Optional[str]) -> list:
    """The link's orders (at most one here): PAID ones only unless status=ALL, as Cashfree's default."""
    wanted = (status or "PAID").upper()
    if wanted not in ("ALL", "PAID"):
        raise invalid_value("status", "Possible values - ALL, PAID")
    with store.transaction():
        refresh(store, store.link(link_id))
        order_id = store.link_facts[link_id]["order_id"]
        found = [store.orders[order_id]] if order_id else []
        return store.render([order for order in found if wanted == "ALL" or order["order_status"] == "PAID"])


def order(store: Store, order_id: str) -> dict:
    """GET /orders/{order_id}: the order as OrderEntity (which does not name its link)."""
    with store.transaction():
        found = store.order(order_id)
        refresh(store, store.link(found["link_id"]))
        return store.render({name: value for name, value in found.items() if name != "link_id"})


def refresh(store: Store, link: dict) -> dict:
    """Expire an ACTIVE link whose link_expiry_time has passed (and its unpaid order), when first seen."""
    facts = store.link_facts[link["link_id"]]
    if link["link_status"] == "ACTIVE" and store.now() >= facts["expires_at"]:
        link["link_status"] = "EXPIRED"
        _end_order(store, link["link_id"])
    return link


# the payer's side (the page and /_sandbox/links)

def is_open(link: dict) -> bool:
    return link["link_status"] == "ACTIVE"


def attempt(store: Store, link_id: str, outcome: str, method: str = "upi") -> Tuple[dict, dict, dict]:
    """One try at paying the link: outcome "pay", "fail" or "drop". (link, order, payment)."""
    status = OUTCOMES[outcome]
    method = (method or "upi").lower()
    if method not in METHODS:
        raise invalid_value("method", "Possible values - " + ", ".join(METHODS))
    with store.transaction():
        link = refresh(store, store.link(link_id))
        if not is_open(link):
            raise CashfreeError(409, "invalid_request_error",
                                f"link is no longer active (link_status: {link['link_status']})", "link_not_active")
        order = _order(store, link)
        payment = _payment(store, link, order, status, method)
        store.emit(WEBHOOKS[status], _payment_webhook(order, payment))
        if status == "SUCCESS":
            order["order_status"] = "PAID"
            link.update(link_status="PAID", link_amount_paid=link["link_amount"])
            store.emit("PAYMENT_LINK_EVENT", _link_event(link, order, payment))
        return store.render(link), store.render(order), store.render(payment)


def last_attempt(store: Store, link_id: str) -> Optional[dict]:
    """The newest payment on the link's order, or None before the first attempt."""
    with store.lock:
        order_id = store.link_facts[link_id]["order_id"]
        payments = store.order_payments.get(order_id) or []
        return store.render(payments[-1]) if payments else None


def return_redirect(link: dict) -> str:
    """link_meta.return_url with ?link_id=... added to any query it already has ("" without one)."""
    url = link["link_meta"].get("return_url") or ""
    if not url:
        return ""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + [("link_id", link["link_id"])]
    return urlunsplit(parts._replace(query=urlencode(query)))


# inside

def _order(store: Store, link: dict) -> dict:
    """The link's one order, made on the first attempt."""
    facts = store.link_facts[link["link_id"]]
    if facts["order_id"]:
        return store.orders[facts["order_id"]]
    cf_order_id, customer_id = store.new_reference(), store.new_reference()
    tags = {key: value for key, value in link["link_notes"].items() if value}  # tags may not be empty
    tags["cf_link_id"] = link["cf_link_id"]
    order = shapes.link_order(link=link, cf_order_id=cf_order_id, order_id=f"{link['link_id']}_order",
                              customer_id=customer_id, session="session_" + random_token(48),
                              created_at=periods.iso(store.now()), tags=tags)
    store.orders[order["order_id"]] = order
    store.order_payments[order["order_id"]] = []
    facts["order_id"] = order["order_id"]
    return order


def _payment(store: Store, link: dict, order: dict, status: str, method: str) -> dict:
    succeeded = status == "SUCCESS"
    payment = shapes.order_payment(
        order=order, cf_payment_id=store.new_reference(), status=status, message=MESSAGES[status],
        at=periods.iso(store.now()), bank_reference=random_digits(12) if status != "USER_DROPPED" else "",
        auth_id=random_digits(6) if succeeded else "", method=_method(method, link), group=GROUPS[method],
        error=None if succeeded else dict(ERRORS[status]))
    store.order_payments[order["order_id"]].append(payment)
    return payment


def _method(method: str, link: dict) -> dict:
    """What Cashfree reports under payment.payment_method for the page's choice."""
    if method == "upi":
        local = str(link["customer_details"].get("customer_email") or "").split("@")[0]
        handle = "".join(ch for ch in local.lower() if ch.isalnum() or ch in "._-") or "payer"
        return {"upi": {"channel": "collect", "upi_id": f"{handle}@okaxis"}}
    if method == "card":
        return {"card": {"channel": "link", "card_number": "XXXXXXXXXXXX1111", "card_network": "visa",
                         "card_type": "credit_card", "card_country": "IN", "card_bank_name": "HDFC"}}
    return {"netbanking": {"channel": "link", "netbanking_bank_code": 3021, "netbanking_bank_name": "HDFC Bank"}}


def _payment_webhook(order: dict, payment: dict) -> dict:
    """PaymentWebhook's data: the order, the payment, the payer and the gateway (error_details on failure)."""
    customer = order["customer_details"]
    data = {
        "order": {"order_id": order["order_id"], "order_amount": order["order_amount"],
                  "order_currency": order["order_currency"], "order_tags": dict(order["order_tags"])},
        "payment": {name: copy.deepcopy(payment[name]) for name in (
            "cf_payment_id", "payment_status", "payment_amount", "payment_currency", "payment_message",
            "payment_time", "bank_reference", "auth_id", "payment_method", "payment_group")},
        "customer_details": {"customer_name": customer.get("customer_name", ""),
                             "customer_id": customer["customer_id"],
                             "customer_email": customer.get("customer_email", ""),
                             "customer_phone": customer.get("customer_phone", "")},
        "payment_gateway_details": dict(payment["payment_gateway_details"]),
        "payment_offers": None,
    }
    if "error_details" in payment:
        data["error_details"] = dict(payment["error_details"])
    return data


def _link_event(link: dict, order: dict, payment: dict) -> dict:
    """PAYMENT_LINK_EVENT's data: the LinkEntity as it now is, and the order that paid it."""
    return {**link, "order": {"order_id": order["order_id"], "order_expiry_time": order["order_expiry_time"],
                              "order_hash": random_token(20), "transaction_id": int(payment["cf_payment_id"]),
                              "transaction_status": payment["payment_status"]}}


def _end_order(store: Store, link_id: str) -> None:
    order_id = store.link_facts[link_id]["order_id"]
    if order_id and store.orders[order_id]["order_status"] == "ACTIVE":
        store.orders[order_id]["order_status"] = ENDED_ORDER
