"""Checkout Sessions (mode=subscription): create, pay, decline, expire; and the sessions a
Payment Link opens (links.py), whose completions count against the link's restrictions.

Stripe expires an abandoned session on its own schedule; the sandbox does it lazily, the first
time anyone reads or tries to pay a session past its `expires_at`, and emits
`checkout.session.expired` exactly once.
"""
import copy
from datetime import datetime, timezone

from . import shapes, subscriptions
from .errors import StripeError, invalid
from .ids import new_id, random_token
from .store import Store

MIN_EXPIRY, MAX_EXPIRY = 30 * 60, 24 * 3600


def create(store: Store, public_url: str, params: dict) -> dict:
    if params["mode"] != "subscription":
        raise invalid(f"The sandbox supports only mode=subscription, not `{params['mode']}`.", param="mode")
    now = store.now()
    customer_id = params.get("customer")
    if customer_id:
        store.get(customer_id, "customer", param="customer")
    lines = params.get("line_items") or []
    if len(lines) != 1:
        raise invalid("The sandbox supports exactly one line item (line_items[0]).", param="line_items")
    line = lines[0]
    if "price" not in line:
        raise invalid("Missing required param: line_items[0][price].", param="line_items[0][price]",
                      code="parameter_missing")
    price = store.get(line["price"], "price", param="line_items[0][price]")
    if price["recurring"] is None:
        raise invalid("You must specify at least one recurring price in `subscription` mode when using "
                      "prices.", param="line_items[0][price]")
    if not price["active"]:
        raise invalid(f"The price `{price['id']}` is not active.", param="line_items[0][price]")
    quantity = line.get("quantity", 1)
    if quantity < 1:
        raise invalid("Quantity must be at least 1.", param="line_items[0][quantity]")
    expires_at = params.get("expires_at", now + MAX_EXPIRY)
    if not now + MIN_EXPIRY <= expires_at <= now + MAX_EXPIRY:
        raise invalid("The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session "
                      "creation.", param="expires_at")
    subscription_data = params.get("subscription_data") or {}
    return _new_session(
        store, public_url, price=price, quantity=quantity, expires_at=expires_at, customer_id=customer_id,
        customer_email=params.get("customer_email"), success_url=params.get("success_url"),
        cancel_url=params.get("cancel_url"), client_reference_id=params.get("client_reference_id"),
        metadata=params.get("metadata") or {}, subscription_metadata=subscription_data.get("metadata") or {})


def create_for_link(store: Store, public_url: str, link: dict) -> dict:
    """The session a Payment Link opens for whoever pays through it: no customer yet (Checkout makes
    a new one), the link's subscription_data, no metadata of its own, and the link's redirect as
    success_url. Stripe sessions of a link expire after 24 hours like any other."""
    facts = store.private[link["id"]]
    price = store.get(facts["price"], "price")
    redirect = link["after_completion"].get("redirect") or {}
    return _new_session(
        store, public_url, price=price, quantity=facts["quantity"], expires_at=store.now() + MAX_EXPIRY,
        customer_id=None, customer_email=None, success_url=redirect.get("url"), cancel_url=None,
        client_reference_id=None, metadata={},
        subscription_metadata=copy.deepcopy(link["subscription_data"]["metadata"]), payment_link=link["id"])


def _new_session(store: Store, public_url: str, *, price: dict, quantity: int, expires_at: int, customer_id,
                 customer_email, success_url, cancel_url, client_reference_id, metadata: dict,
                 subscription_metadata: dict, payment_link=None) -> dict:
    session_id = new_id("cs_test")
    session = shapes.checkout_session(
        id=session_id, created=store.now(), expires_at=expires_at, url=f"{public_url}/checkout/{session_id}",
        customer_id=customer_id, customer_email=customer_email, success_url=success_url, cancel_url=cancel_url,
        client_reference_id=client_reference_id, metadata=metadata, currency=price["currency"],
        amount_total=price["unit_amount"] * quantity, payment_link=payment_link,
    )
    return store.add(session, private={"price": price["id"], "quantity": quantity,
                                       "subscription_metadata": subscription_metadata})


def refresh(store: Store, session: dict) -> dict:
    """Expire an open session whose time has passed (once), before anyone looks at it."""
    if session["status"] == "open" and store.now() >= session["expires_at"]:
        session["status"] = "expired"
        store.emit("checkout.session.expired", session)
    return session


def get(store: Store, session_id: str) -> dict:
    return refresh(store, store.get(session_id, "checkout.session"))


def pay(store: Store, public_url: str, session_id: str) -> dict:
    """The payer paid with the test card: customer, card, subscription and its first paid invoice."""
    session = _open_session(store, session_id)
    facts = store.private[session_id]
    price = store.get(facts["price"], "price")
    customer = _payer(store, session)
    now = store.now()
    method = shapes.payment_method(id=new_id("pm"), created=now, customer_obj=customer,
                                   exp_year=datetime.fromtimestamp(now, tz=timezone.utc).year + 3)
    store.add(method)
    customer["invoice_settings"]["default_payment_method"] = method["id"]
    subscription, invoice = subscriptions.start(
        store, public_url, customer=customer, price=price, quantity=facts["quantity"],
        metadata=facts["subscription_metadata"], payment_method_id=method["id"])
    session.update(status="complete", payment_status="paid", customer=customer["id"],
                   subscription=subscription["id"], invoice=invoice["id"],
                   customer_details=shapes.customer_details(customer))
    store.emit("customer.subscription.created", subscription)
    subscriptions.emit_invoice_outcome(store, invoice)
    store.emit("checkout.session.completed", session)
    if session["payment_link"]:
        _count_link_completion(store, session["payment_link"])
    return session


def _count_link_completion(store: Store, link_id: str) -> None:
    """A session of a Payment Link completed: count it against restrictions.completed_sessions, and
    deactivate the link (payment_link.updated) once the limit is reached, as Stripe does."""
    link = store.objects.get(link_id)
    restriction = ((link or {}).get("restrictions") or {}).get("completed_sessions")
    if not restriction:
        return
    before = store.render(link)
    restriction["count"] += 1
    if link["active"] and restriction["count"] >= restriction["limit"]:
        link["active"] = False
        store.emit("payment_link.updated", link, subscriptions.changed_attributes(before, store.render(link)))


def decline(store: Store, session_id: str) -> dict:
    """The card was declined and the payer gave up: the session ends unpaid, nothing is created."""
    session = _open_session(store, session_id)
    session["status"] = "expired"
    store.emit("checkout.session.async_payment_failed", session)
    return session


def expire(store: Store, session_id: str, request: dict) -> dict:
    session = get(store, session_id)
    if session["status"] != "open":
        raise invalid(f"Only Checkout Sessions with a status of `open` can be expired. This Checkout Session "
                      f"has a status of `{session['status']}`.", param="session")
    session["status"] = "expired"
    store.emit("checkout.session.expired", session, request=request)
    return session


def success_redirect(session: dict) -> str:
    """Stripe fills the `{CHECKOUT_SESSION_ID}` template in success_url."""
    return session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])


def _open_session(store: Store, session_id: str) -> dict:
    session = get(store, session_id)
    if session["status"] != "open":
        raise StripeError(409, "invalid_request_error",
                          f"This Checkout Session is no longer open (status: {session['status']}).",
                          code="checkout_session_not_open")
    return session


def _payer(store: Store, session: dict) -> dict:
    """The session's customer, or (as Checkout does in subscription mode) a new one."""
    if session["customer"]:
        return store.get(session["customer"], "customer")
    email = session["customer_email"]
    if email is None and session["payment_link"]:  # an anonymous payer of a link types an address in
        email = f"payer_{random_token(10).lower()}@example.com"
    customer = shapes.customer(id=new_id("cus"), created=store.now(), email=email, name=None, metadata={})
    return store.add(customer)

