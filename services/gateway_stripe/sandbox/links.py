"""Payment Links (subscription mode): create, retrieve, update, and the payer's side of one.

A link is a reusable page (/b/<id>) that opens a fresh Checkout Session for whoever pays through
it. That session carries `payment_link`, has no metadata of its own, makes a new customer, and
starts a subscription with the link's `subscription_data.metadata`; paying it is paying a checkout
(checkout.pay), which also counts the completion against `restrictions.completed_sessions` and
deactivates the link once the limit is reached (payment_link.updated). Deactivating a link
(active=false) closes the page but not the sessions already opened from it: those stay payable
until they are expired (POST /v1/checkout/sessions/{id}/expire), as at Stripe.

Callers hold the store's transaction; these functions validate first and mutate after.
"""
from typing import Optional

from . import checkout, shapes, subscriptions
from .errors import StripeError, invalid, missing_param
from .ids import new_id
from .params import Bool, Enum, Int, ListOf, Metadata, Str
from .store import Store

CREATE = {
    "line_items": ListOf({"price": Str(), "quantity": Int()}),
    "metadata": Metadata(),
    "subscription_data": {"metadata": Metadata(), "description": Str()},
    "restrictions": {"completed_sessions": {"limit": Int()}},
    "after_completion": {"type": Enum("hosted_confirmation", "redirect"), "redirect": {"url": Str()},
                         "hosted_confirmation": {"custom_message": Str()}},
    "inactive_message": Str(),
}
UPDATE = {"active": Bool(), "metadata": Metadata(), "inactive_message": Str()}


def create(store: Store, public_url: str, params: dict, request: dict) -> dict:
    price, quantity = _line(store, params.get("line_items"))
    limit = _limit(params.get("restrictions"))
    redirect_url, custom_message = _after_completion(params.get("after_completion"))
    subscription_data = params.get("subscription_data") or {}
    link_id = new_id("plink")
    link = shapes.payment_link(
        id=link_id, url=f"{public_url}/b/{link_id}", currency=price["currency"],
        metadata=params.get("metadata") or {}, subscription_metadata=subscription_data.get("metadata") or {},
        subscription_description=subscription_data.get("description"), limit=limit, redirect_url=redirect_url,
        custom_message=custom_message, inactive_message=params.get("inactive_message") or None)
    store.add(link, private={"price": price["id"], "quantity": quantity})
    store.emit("payment_link.created", link, request=request)
    return link


def get(store: Store, link_id: str) -> dict:
    return store.get(link_id, "payment_link")


def update(store: Store, link_id: str, params: dict, request: dict) -> dict:
    link = get(store, link_id)
    restriction = (link["restrictions"] or {}).get("completed_sessions")
    if params.get("active") and not link["active"] and restriction and restriction["count"] >= restriction["limit"]:
        raise invalid("This payment link has reached its limit of completed sessions "
                      "(restrictions[completed_sessions][limit]) and cannot be activated again.", param="active")
    before = store.render(link)
    if "active" in params:
        link["active"] = params["active"]
    if "inactive_message" in params:
        link["inactive_message"] = params["inactive_message"] or None
    if "metadata" in params:
        subscriptions.merge_metadata(link, params["metadata"])
    previous = subscriptions.changed_attributes(before, store.render(link))
    if previous:
        store.emit("payment_link.updated", link, previous, request)
    return link


def open_session(store: Store, public_url: str, link_id: str) -> dict:
    """The payer pressed Pay on an active link: a new open Checkout Session for it (409 if inactive)."""
    link = get(store, link_id)
    if not link["active"]:
        raise StripeError(409, "invalid_request_error", "This payment link is no longer active.",
                          code="payment_link_inactive")
    return checkout.create_for_link(store, public_url, link)


def pay(store: Store, public_url: str, link_id: str) -> dict:
    """The payer paid through the link with the test card: the completed session."""
    session = open_session(store, public_url, link_id)
    return checkout.pay(store, public_url, session["id"])


def completion_redirect(link: dict, session: dict) -> Optional[str]:
    """Where the payer goes after paying: after_completion.redirect.url ({CHECKOUT_SESSION_ID} filled
    in), or None for Stripe's hosted confirmation."""
    if link["after_completion"]["type"] != "redirect":
        return None
    return link["after_completion"]["redirect"]["url"].replace("{CHECKOUT_SESSION_ID}", session["id"])


def _line(store: Store, lines: Optional[list]):
    if not lines:
        raise missing_param("line_items")
    if len(lines) != 1:
        raise invalid("The sandbox supports exactly one line item (line_items[0]).", param="line_items")
    line = lines[0]
    if "price" not in line:
        raise missing_param("line_items[0][price]")
    if "quantity" not in line:
        raise missing_param("line_items[0][quantity]")
    price = store.get(line["price"], "price", param="line_items[0][price]")
    if not price["active"]:
        raise invalid(f"The price `{price['id']}` is not active.", param="line_items[0][price]")
    if price["recurring"] is None:
        raise invalid("The sandbox supports subscription payment links only: line_items[0][price] must be a "
                      "recurring price.", param="line_items[0][price]")
    if line["quantity"] < 1:
        raise invalid("Quantity must be at least 1.", param="line_items[0][quantity]")
    return price, line["quantity"]


def _limit(restrictions: Optional[dict]) -> Optional[int]:
    completed = (restrictions or {}).get("completed_sessions")
    if restrictions is not None and completed is None:
        raise missing_param("restrictions[completed_sessions]")
    if completed is None:
        return None
    if "limit" not in completed:
        raise missing_param("restrictions[completed_sessions][limit]")
    if completed["limit"] < 1:
        raise invalid("This value must be greater than or equal to 1.", param="restrictions[completed_sessions][limit]")
    return completed["limit"]


def _after_completion(after: Optional[dict]):
    """(redirect url, custom message): one of them, as after_completion asks."""
    if after is None:
        return None, None
    if "type" not in after:
        raise missing_param("after_completion[type]")
    if after["type"] == "redirect":
        url = (after.get("redirect") or {}).get("url")
        if not url:
            raise missing_param("after_completion[redirect][url]")
        return url, None
    return None, (after.get("hosted_confirmation") or {}).get("custom_message")
