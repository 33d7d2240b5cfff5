"""The /pg endpoints: the subset of Cashfree's PG API (2025-01-01) the adapter uses.

Handlers receive a Call (the parsed JSON body, path arguments, who asked) and return the entity to
send; the app (app.py) does authentication, the version check, faults, idempotency, OpenAPI
validation of the body and rendering. Each route names its operation's path in Cashfree's
OpenAPI document, which is how the app finds the schema to validate against.
"""
from dataclasses import dataclass, field
from typing import Any

from . import links, plans, refunds, subscriptions
from .store import Store


@dataclass
class Call:
    store: Store
    public_url: str
    body: Any  # parsed JSON (amounts as Decimal), already checked against the OpenAPI schema
    args: dict  # from the URL rule
    request_id: str
    query: dict = field(default_factory=dict)  # the query string's parameters


def create_plan(call: Call) -> dict:
    return plans.create(call.store, call.body)


def get_plan(call: Call) -> dict:
    return call.store.render(call.store.plan(call.args["plan_id"]))


def create_subscription(call: Call) -> dict:
    return subscriptions.create(call.store, call.body)


def get_subscription(call: Call) -> dict:
    return call.store.render(call.store.subscription(call.args["subscription_id"]))


def manage_subscription(call: Call) -> dict:
    return subscriptions.manage(call.store, call.args["subscription_id"], call.body)


def list_subscription_payments(call: Call) -> list:
    """Every payment of the subscription (AUTH and CHARGE), newest first."""
    with call.store.lock:
        call.store.subscription(call.args["subscription_id"])
        return call.store.render(call.store.payments_of(call.args["subscription_id"]))


def raise_charge(call: Call) -> dict:
    return subscriptions.raise_charge(call.store, call.body)


def refund_subscription_payment(call: Call) -> dict:
    return refunds.refund_subscription_payment(call.store, call.args["subscription_id"], call.body)


def get_subscription_refund(call: Call) -> dict:
    return refunds.subscription_refund(call.store, call.args["subscription_id"], call.args["refund_id"])


def create_link(call: Call) -> dict:
    return links.create(call.store, call.public_url, call.body)


def get_link(call: Call) -> dict:
    return links.get(call.store, call.args["link_id"])


def cancel_link(call: Call) -> dict:
    return links.cancel(call.store, call.args["link_id"])


def list_link_orders(call: Call) -> list:
    return links.orders(call.store, call.args["link_id"], call.query.get("status"))


def get_order(call: Call) -> dict:
    """An order (here: a link's), as OrderEntity: the link's expiry applies to it first."""
    return links.order(call.store, call.args["order_id"])


def list_order_payments(call: Call) -> list:
    """Every attempt to pay the order, oldest first."""
    with call.store.lock:
        call.store.order(call.args["order_id"])
        return call.store.render(call.store.order_payments[call.args["order_id"]])


def refund_order(call: Call) -> dict:
    return refunds.refund_order(call.store, call.args["order_id"], call.body)


def list_order_refunds(call: Call) -> list:
    return refunds.order_refunds(call.store, call.args["order_id"])


def get_order_refund(call: Call) -> dict:
    return refunds.order_refund(call.store, call.args["order_id"], call.args["refund_id"])


# (method, werkzeug rule, the operation's path in the OpenAPI document, handler)
ROUTES = [
    ("POST", "/pg/plans", "/plans", create_plan),
    ("GET", "/pg/plans/<plan_id>", "/plans/{plan_id}", get_plan),
    ("POST", "/pg/subscriptions", "/subscriptions", create_subscription),
    ("GET", "/pg/subscriptions/<subscription_id>", "/subscriptions/{subscription_id}", get_subscription),
    ("POST", "/pg/subscriptions/<subscription_id>/manage", "/subscriptions/{subscription_id}/manage",
     manage_subscription),
    ("GET", "/pg/subscriptions/<subscription_id>/payments", "/subscriptions/{subscription_id}/payments",
     list_subscription_payments),
    ("POST", "/pg/subscriptions/pay", "/subscriptions/pay", raise_charge),
    ("POST", "/pg/subscriptions/<subscription_id>/refunds", "/subscriptions/{subscription_id}/refunds",
     refund_subscription_payment),
    ("GET", "/pg/subscriptions/<subscription_id>/refunds/<refund_id>",
     "/subscriptions/{subscription_id}/refunds/{refund_id}", get_subscription_refund),
    ("POST", "/pg/links", "/links", create_link),
    ("GET", "/pg/links/<link_id>", "/links/{link_id}", get_link),
    ("POST", "/pg/links/<link_id>/cancel", "/links/{link_id}/cancel", cancel_link),
    ("GET", "/pg/links/<link_id>/orders", "/links/{link_id}/orders", list_link_orders),
    ("GET", "/pg/orders/<order_id>", "/orders/{order_id}", get_order),
    ("GET", "/pg/orders/<order_id>/payments", "/orders/{order_id}/payments", list_order_payments),
    ("POST", "/pg/orders/<order_id>/refunds", "/orders/{order_id}/refunds", refund_order),
    ("GET", "/pg/orders/<order_id>/refunds", "/orders/{order_id}/refunds", list_order_refunds),
    ("GET", "/pg/orders/<order_id>/refunds/<refund_id>", "/orders/{order_id}/refunds/{refund_id}", get_order_refund),
]

# POSTs whose operation takes no body (the document gives them no requestBody): an empty body is {}.
BODYLESS = {"/links/{link_id}/cancel"}
