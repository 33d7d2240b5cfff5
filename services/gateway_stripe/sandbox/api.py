"""The /v1 endpoints: the subset of Stripe's API the adapter uses, one small function each.

Handlers receive a Call (decoded parameters, path arguments, who asked) and return the Stripe
object to send; the app (app.py) does authentication, faults, idempotency and rendering. Each
handler validates its parameters against a declared shape first (params.py), so unknown or
mistyped parameters fail like they do at Stripe.
"""
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Callable, Optional

from . import checkout, links, refunds, shapes, subscriptions
from .errors import invalid
from .ids import new_id
from .listing import paginate
from .params import Bool, Enum, Int, ListOf, Metadata, Range, Str, parse
from .periods import INTERVALS
from .store import Store


@dataclass
class Call:
    store: Store
    public_url: str
    raw: dict  # decoded, not yet validated
    args: dict  # from the URL rule
    request: dict  # {"id": "req_...", "idempotency_key": ...}: what events' `request` shows
    account_id: str  # the Stripe account this sandbox is (GET /v1/account)


PAGE = {"limit": Int(), "starting_after": Str(), "ending_before": Str(), "created": Range()}


# customers

CUSTOMER_FIELDS = {"email": Str(), "name": Str(), "description": Str(), "phone": Str(), "metadata": Metadata()}


def create_customer(call: Call) -> dict:
    params = parse(call.raw, CUSTOMER_FIELDS)
    with call.store.transaction() as store:
        customer = shapes.customer(id=new_id("cus"), created=store.now(), email=params.get("email"),
                                   name=params.get("name"), metadata=params.get("metadata") or {},
                                   description=params.get("description"), phone=params.get("phone"))
        store.add(customer)
        store.emit("customer.created", customer, request=call.request)
        return store.render(customer)


def get_customer(call: Call) -> dict:
    parse(call.raw, {})
    return call.store.render(call.store.get(call.args["id"], "customer"))


def update_customer(call: Call) -> dict:
    params = parse(call.raw, {**CUSTOMER_FIELDS, "invoice_settings": {"default_payment_method": Str()}})
    with call.store.transaction() as store:
        customer = store.get(call.args["id"], "customer")
        method_id = (params.get("invoice_settings") or {}).get("default_payment_method")
        if method_id:
            method = store.get(method_id, "payment_method", param="invoice_settings[default_payment_method]")
            if method["customer"] != customer["id"]:
                raise invalid(f"The customer does not have a payment method with the ID {method_id}. The payment "
                              "method must be attached to the customer.",
                              param="invoice_settings[default_payment_method]")
        before = store.render(customer)
        for field in ("email", "name", "description", "phone"):
            if field in params:
                customer[field] = params[field] or None
        if "metadata" in params:
            subscriptions.merge_metadata(customer, params["metadata"])
        if "invoice_settings" in params and "default_payment_method" in params["invoice_settings"]:
            customer["invoice_settings"]["default_payment_method"] = method_id or None
        previous = subscriptions.changed_attributes(before, store.render(customer))
        if previous:
            store.emit("customer.updated", customer, previous, call.request)
        return store.render(customer)


def list_customers(call: Call) -> dict:
    params = parse(call.raw, {**PAGE, "email": Str()})
    found = call.store.find("customer", lambda c: params.get("email") in (None, c["email"]))
    return paginate(call.store, found, params, "/v1/customers")


def list_customer_payment_methods(call: Call) -> dict:
    params = parse(call.raw, {**PAGE, "type": Str()})
    customer = call.store.get(call.args["id"], "customer")
    found = call.store.find("payment_method", lambda pm: pm["customer"] == customer["id"]
                            and params.get("type") in (None, pm["type"]))
    return paginate(call.store, found, params, f"/v1/customers/{customer['id']}/payment_methods")


# prices and products

PRICE_CREATE = {
    "currency": Str(), "unit_amount": Int(), "lookup_key": Str(), "transfer_lookup_key": Bool(),
    "recurring": {"interval": Enum(*INTERVALS), "interval_count": Int()},
    "product": Str(), "product_data": {"name": Str(), "metadata": Metadata(), "active": Bool()},
    "metadata": Metadata(), "nickname": Str(), "active": Bool(),
}
PRICE_UPDATE = {"active": Bool(), "lookup_key": Str(), "transfer_lookup_key": Bool(), "metadata": Metadata(),
                "nickname": Str()}


def create_price(call: Call) -> dict:
    params = parse(call.raw, PRICE_CREATE, required=["currency", "unit_amount"])
    if ("product" in params) == ("product_data" in params):
        raise invalid("You must specify either `product` or `product_data` when creating a price.",
                      param="product")
    if params["unit_amount"] < 0:
        raise invalid("Invalid unit_amount: must be a non-negative integer", param="unit_amount")
    with call.store.transaction() as store:
        now = store.now()
        if "product" in params:
            product = store.get(params["product"], "product", param="product")
        else:
            data = params["product_data"]
            if not data.get("name"):
                raise invalid("Missing required param: product_data[name].", param="product_data[name]",
                              code="parameter_missing")
            product = shapes.product(id=new_id("prod"), created=now, name=data["name"],
                                     metadata=data.get("metadata") or {})
        _claim_lookup_key(store, params.get("lookup_key"), params.get("transfer_lookup_key", False))
        price = shapes.price(id=new_id("price"), created=now, currency=params["currency"].lower(),
                             unit_amount=params["unit_amount"], recurring=params.get("recurring"),
                             product_id=product["id"], lookup_key=params.get("lookup_key"),
                             metadata=params.get("metadata") or {}, nickname=params.get("nickname"))
        price["active"] = params.get("active", True)
        if product["id"] not in store.objects:
            product["default_price"] = price["id"]
            store.add(product)
            store.emit("product.created", product, request=call.request)
        store.add(price)
        store.emit("price.created", price, request=call.request)
        return store.render(price)


def update_price(call: Call) -> dict:
    params = parse(call.raw, PRICE_UPDATE)
    with call.store.transaction() as store:
        price = store.get(call.args["id"], "price")
        if params.get("lookup_key") and params["lookup_key"] != price["lookup_key"]:
            _claim_lookup_key(store, params["lookup_key"], params.get("transfer_lookup_key", False))
        before = store.render(price)
        for field in ("active", "lookup_key", "nickname"):
            if field in params:
                price[field] = params[field] if params[field] != "" else None
        if "metadata" in params:
            subscriptions.merge_metadata(price, params["metadata"])
        previous = subscriptions.changed_attributes(before, store.render(price))
        if previous:
            store.emit("price.updated", price, previous, call.request)
        return store.render(price)


def _claim_lookup_key(store: Store, lookup_key: Optional[str], transfer: bool) -> None:
    """Stripe keeps lookup keys unique among active prices; transfer_lookup_key moves one."""
    if not lookup_key:
        return
    for holder in store.find("price", lambda p: p["lookup_key"] == lookup_key and p["active"]):
        if not transfer:
            raise invalid(f"A price (`{holder['id']}`) already uses that lookup key.", param="lookup_key")
        holder["lookup_key"] = None


def get_price(call: Call) -> dict:
    parse(call.raw, {})
    return call.store.render(call.store.get(call.args["id"], "price"))


def list_prices(call: Call) -> dict:
    params = parse(call.raw, {**PAGE, "lookup_keys": ListOf(Str()), "active": Bool(), "product": Str(),
                              "currency": Str(), "type": Enum("one_time", "recurring")})

    def wanted(price):
        return (("lookup_keys" not in params or price["lookup_key"] in params["lookup_keys"])
                and params.get("active") in (None, price["active"])
                and params.get("product") in (None, price["product"])
                and params.get("currency") in (None, price["currency"])
                and params.get("type") in (None, price["type"]))

    return paginate(call.store, call.store.find("price", wanted), params, "/v1/prices")


def get_product(call: Call) -> dict:
    parse(call.raw, {})
    return call.store.render(call.store.get(call.args["id"], "product"))


# checkout sessions

SESSION_CREATE = {
    "mode": Enum("payment", "setup", "subscription"), "customer": Str(), "customer_email": Str(),
    "line_items": ListOf({"price": Str(), "quantity": Int()}), "success_url": Str(), "cancel_url": Str(),
    "client_reference_id": Str(), "metadata": Metadata(), "expires_at": Int(),
    "subscription_data": {"metadata": Metadata(), "description": Str()},
    "payment_method_types": ListOf(Str()), "locale": Str(),
}


def create_session(call: Call) -> dict:
    params = parse(call.raw, SESSION_CREATE, required=["mode"])
    if "customer" in params and "customer_email" in params:
        raise invalid("You may only specify one of these parameters: customer, customer_email.", param="customer")
    with call.store.transaction() as store:
        session = checkout.create(store, call.public_url, params)
        return store.render(session)


def get_session(call: Call) -> dict:
    parse(call.raw, {})
    with call.store.transaction() as store:
        return store.render(checkout.get(store, call.args["id"]))


def list_sessions(call: Call) -> dict:
    params = parse(call.raw, {**PAGE, "customer": Str(), "subscription": Str(), "payment_link": Str(),
                              "status": Enum("open", "complete", "expired")})
    with call.store.transaction() as store:
        for session in store.find("checkout.session"):
            checkout.refresh(store, session)
        found = store.find("checkout.session", lambda s: all(
            params.get(field) in (None, s[field]) for field in ("customer", "subscription", "payment_link", "status")))
        return paginate(store, found, params, "/v1/checkout/sessions")


def expire_session(call: Call) -> dict:
    parse(call.raw, {})
    with call.store.transaction() as store:
        return store.render(checkout.expire(store, call.args["id"], call.request))


# payment links

def create_payment_link(call: Call) -> dict:
    params = parse(call.raw, links.CREATE, required=["line_items"])
    with call.store.transaction() as store:
        return store.render(links.create(store, call.public_url, params, call.request))


def get_payment_link(call: Call) -> dict:
    parse(call.raw, {})
    return call.store.render(links.get(call.store, call.args["id"]))


def update_payment_link(call: Call) -> dict:
    params = parse(call.raw, links.UPDATE)
    with call.store.transaction() as store:
        return store.render(links.update(store, call.args["id"], params, call.request))


# subscriptions

SUBSCRIPTION_UPDATE = {
    "items": ListOf({"id": Str(), "price": Str()}),
    "proration_behavior": Enum("always_invoice", "create_prorations", "none"), "proration_date": Int(),
    "cancel_at_period_end": Bool(), "metadata": Metadata(), "default_payment_method": Str(),
    "payment_behavior": Enum("allow_incomplete", "default_incomplete", "error_if_incomplete",
                             "pending_if_incomplete"),
    "cancellation_details": {"comment": Str(), "feedback": Str()},
}
SUBSCRIPTION_STATUSES = ("active", "all", "canceled", "ended", "incomplete", "incomplete_expired", "past_due",
                         "paused", "trialing", "unpaid")


def get_subscription(call: Call) -> dict:
    parse(call.raw, {})
    return call.store.render(call.store.get(call.args["id"], "subscription"))


def update_subscription(call: Call) -> dict:
    params = parse(call.raw, SUBSCRIPTION_UPDATE)
    with call.store.transaction() as store:
        return store.render(subscriptions.update(store, call.public_url, call.args["id"], params, call.request))


def cancel_subscription(call: Call) -> dict:
    params = parse(call.raw, {"invoice_now": Bool(), "prorate": Bool(),
                              "cancellation_details": {"comment": Str(), "feedback": Str()}})
    with call.store.transaction() as store:
        return store.render(subscriptions.cancel(store, call.args["id"], params, call.request))


def list_subscriptions(call: Call) -> dict:
    params = parse(call.raw, {**PAGE, "customer": Str(), "price": Str(), "status": Enum(*SUBSCRIPTION_STATUSES)})
    status = params.get("status")

    def wanted(sub):
        if status in (None, "all"):
            status_ok = status == "all" or sub["status"] != "canceled"  # Stripe hides canceled by default
        else:
            status_ok = sub["status"] == status or (status == "ended" and sub["status"] == "canceled")
        return (status_ok and params.get("customer") in (None, sub["customer"])
                and params.get("price") in (None, sub["items"]["data"][0]["price"]["id"]))

    return paginate(call.store, call.store.find("subscription", wanted), params, "/v1/subscriptions")


# invoices

def get_invoice(call: Call) -> dict:
    parse(call.raw, {})
    return call.store.render(call.store.get(call.args["id"], "invoice"))


def list_invoices(call: Call) -> dict:
    params = parse(call.raw, {**PAGE, "customer": Str(), "subscription": Str(),
                              "status": Enum("draft", "open", "paid", "uncollectible", "void")})

    def wanted(invoice):
        return (params.get("customer") in (None, invoice["customer"])
                and params.get("subscription") in (None, invoice["parent"]["subscription_details"]["subscription"])
                and params.get("status") in (None, invoice["status"]))

    return paginate(call.store, call.store.find("invoice", wanted), params, "/v1/invoices")


def void_invoice(call: Call) -> dict:
    parse(call.raw, {})
    with call.store.transaction() as store:
        return store.render(subscriptions.void_invoice(store, call.args["id"], call.request))


# the money behind invoices: invoice payments, payment intents, charges, refunds

def list_invoice_payments(call: Call) -> dict:
    params = parse(call.raw, {**PAGE, "invoice": Str(), "status": Enum("canceled", "open", "paid"),
                              "payment": {"type": Enum("payment_intent", "payment_record"),
                                          "payment_intent": Str(), "payment_record": Str()}})
    payment = params.get("payment") or {}

    def wanted(invoice_payment):
        return (params.get("invoice") in (None, invoice_payment["invoice"])
                and params.get("status") in (None, invoice_payment["status"])
                and all(payment[field] == invoice_payment["payment"].get(field) for field in payment))

    return paginate(call.store, call.store.find("invoice_payment", wanted), params, "/v1/invoice_payments")


def get_payment_intent(call: Call) -> dict:
    parse(call.raw, {})
    return call.store.render(call.store.get(call.args["id"], "payment_intent"))


def get_charge(call: Call) -> dict:
    parse(call.raw, {})
    return call.store.render(call.store.get(call.args["id"], "charge"))


def list_charges(call: Call) -> dict:
    params = parse(call.raw, {**PAGE, "customer": Str(), "payment_intent": Str()})
    found = call.store.find("charge", lambda charge: all(
        params.get(field) in (None, charge[field]) for field in ("customer", "payment_intent")))
    return paginate(call.store, found, params, "/v1/charges")


def create_refund(call: Call) -> dict:
    params = parse(call.raw, refunds.CREATE)
    with call.store.transaction() as store:
        return store.render(refunds.create(store, params, call.request))


def get_refund(call: Call) -> dict:
    parse(call.raw, {})
    return call.store.render(call.store.get(call.args["id"], "refund"))


def list_refunds(call: Call) -> dict:
    params = parse(call.raw, {**PAGE, "payment_intent": Str(), "charge": Str()})
    found = call.store.find("refund", lambda refund: refunds.matches(refund, params))
    return paginate(call.store, found, params, "/v1/refunds")


# the account, payment methods, events

def get_account(call: Call) -> dict:
    parse(call.raw, {})
    return shapes.account(id=call.account_id)


def get_payment_method(call: Call) -> dict:
    parse(call.raw, {})
    return call.store.render(call.store.get(call.args["id"], "payment_method"))


def list_payment_methods(call: Call) -> dict:
    params = parse(call.raw, {**PAGE, "customer": Str(), "type": Str()})
    found = call.store.find("payment_method", lambda pm: params.get("customer") in (None, pm["customer"])
                            and params.get("type") in (None, pm["type"]))
    return paginate(call.store, found, params, "/v1/payment_methods")


def get_event(call: Call) -> dict:
    parse(call.raw, {})
    return call.store.render(call.store.get(call.args["id"], "event"))


def list_events(call: Call) -> dict:
    params = parse(call.raw, {**PAGE, "type": Str(), "types": ListOf(Str()), "delivery_success": Bool()})
    if "type" in params and "types" in params:
        raise invalid("You may only specify one of these parameters: type, types.", param="type")
    patterns = params.get("types") or ([params["type"]] if "type" in params else None)

    def wanted(event):  # `type` may be a wildcard such as invoice.*
        return patterns is None or any(fnmatchcase(event["type"], pattern) for pattern in patterns)

    return paginate(call.store, call.store.find("event", wanted), params, "/v1/events")


Handler = Callable[[Call], dict]

ROUTES = [
    ("POST", "/v1/customers", create_customer),
    ("GET", "/v1/customers", list_customers),
    ("GET", "/v1/customers/<id>", get_customer),
    ("POST", "/v1/customers/<id>", update_customer),
    ("GET", "/v1/customers/<id>/payment_methods", list_customer_payment_methods),
    ("POST", "/v1/prices", create_price),
    ("GET", "/v1/prices", list_prices),
    ("GET", "/v1/prices/<id>", get_price),
    ("POST", "/v1/prices/<id>", update_price),
    ("GET", "/v1/products/<id>", get_product),
    ("POST", "/v1/checkout/sessions", create_session),
    ("GET", "/v1/checkout/sessions", list_sessions),
    ("GET", "/v1/checkout/sessions/<id>", get_session),
    ("POST", "/v1/checkout/sessions/<id>/expire", expire_session),
    ("POST", "/v1/payment_links", create_payment_link),
    ("GET", "/v1/payment_links/<id>", get_payment_link),
    ("POST", "/v1/payment_links/<id>", update_payment_link),
    ("GET", "/v1/subscriptions", list_subscriptions),
    ("GET", "/v1/subscriptions/<id>", get_subscription),
    ("POST", "/v1/subscriptions/<id>", update_subscription),
    ("DELETE", "/v1/subscriptions/<id>", cancel_subscription),
    ("GET", "/v1/invoices", list_invoices),
    ("GET", "/v1/invoices/<id>", get_invoice),
    ("POST", "/v1/invoices/<id>/void", void_invoice),
    ("GET", "/v1/invoice_payments", list_invoice_payments),
    ("GET", "/v1/payment_intents/<id>", get_payment_intent),
    ("GET", "/v1/charges", list_charges),
    ("GET", "/v1/charges/<id>", get_charge),
    ("POST", "/v1/refunds", create_refund),
    ("GET", "/v1/refunds", list_refunds),
    ("GET", "/v1/refunds/<id>", get_refund),
    ("GET", "/v1/account", get_account),
    ("GET", "/v1/payment_methods", list_payment_methods),
    ("GET", "/v1/payment_methods/<id>", get_payment_method),
    ("GET", "/v1/events", list_events),
    ("GET", "/v1/events/<id>", get_event),
]
