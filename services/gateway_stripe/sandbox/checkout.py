"""Checkout Sessions (mode=subscription): create, pay, decline, expire.

Stripe expires an abandoned session on its own schedule; the sandbox does it lazily, the first
time anyone reads or tries to pay a session past its `expires_at`, and emits
`checkout.session.expired` exactly once.
"""
from datetime import datetime, timezone

from . import shapes, subscriptions
from .errors import StripeError, invalid
from .ids import new_id
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
    session_id = new_id("cs_test")
    session = shapes.checkout_session(
        id=session_id, created=now, expires_at=expires_at, url=f"{public_url}/checkout/{session_id}",
        customer_id=customer_id, customer_email=params.get("customer_email"),
        success_url=params.get("success_url"), cancel_url=params.get("cancel_url"),
        client_reference_id=params.get("client_reference_id"), metadata=params.get("metadata") or {},
        currency=price["currency"], amount_total=price["unit_amount"] * quantity,
    )
    subscription_data = params.get("subscription_data") or {}
    return store.add(session, private={"price": price["id"], "quantity": quantity,
                                       "subscription_metadata": subscription_data.get("metadata") or {}})


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
    return session


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
    customer = shapes.customer(id=new_id("cus"), created=store.now(), email=session["customer_email"],
                               name=None, metadata={})
    return store.add(customer)

