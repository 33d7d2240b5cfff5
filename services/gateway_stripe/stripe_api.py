"""The thin wrapper around the official Stripe SDK: every Stripe call the adapter makes.

One `StripeClient` per process, no global SDK state, the base URL from STRIPE_API_BASE (the local
sandbox by default), network retries on. Every POST carries an Idempotency-Key derived from our
own record, so the SDK's retries and ours never create a second object; this module alone builds
them. Any SDK error leaves this module as the shared GatewayError with a safe message; the SDK's
own text is only logged.
"""
import functools
import hashlib
import logging
import os

import stripe

from shared.config import settings
from shared.errors import GatewayError

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = float(os.environ.get("STRIPE_TIMEOUT_SECONDS", "6"))
NETWORK_RETRIES = int(os.environ.get("STRIPE_NETWORK_RETRIES", "2"))


@functools.lru_cache(maxsize=1)
def client():
    config = settings()
    return stripe.StripeClient(
        config.stripe_secret_key,
        base_addresses={"api": config.stripe_api_base},
        max_network_retries=NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS),
    )


def gateway_errors(fn):
    """Turn any Stripe SDK failure into GatewayError (502), keeping Stripe's detail in our logs only."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except stripe.StripeError as exc:
            log.warning("stripe %s failed: %s (status %s, request %s)", fn.__name__, exc.user_message or exc,
                        exc.http_status, exc.request_id)
            error = getattr(exc, "error", None)
            raise GatewayError(details={
                "gateway": "stripe", "status": exc.http_status, "code": getattr(error, "code", None),
                "param": getattr(error, "param", None)}) from None
    return wrapper


def missing_param(error: GatewayError):
    """The request parameter naming an object Stripe does not have (e.g. a deleted price), or None."""
    if error.details.get("code") == "resource_missing":
        return error.details.get("param") or ""
    return None


@functools.lru_cache(maxsize=1)
@gateway_errors
def account_scope():
    """The gateway account and mode of the keys in use, "<live|test>:<acct id>": every Stripe object
    the adapter remembers is kept under it, so objects made with other keys (the local sandbox,
    test mode, another account) are never named to this one. Asked once per process (GET
    /v1/account): a process's keys never change while it runs; a failure is not remembered."""
    live = settings().stripe_secret_key.startswith(("sk_live_", "rk_live_"))
    return f"{'live' if live else 'test'}:{client().v1.accounts.retrieve_current().id}"


def _idempotent(key):
    return {"idempotency_key": key}


def _naming(key, *parameters):
    """The key of a request whose parameters may differ from one attempt to the next (the objects
    we remember that it names: a customer, a price): with a digest of the scope and of them, so the
    same request after one was made again, or under other Stripe keys, is a new request (Stripe
    refuses a key sent again with other parameters), while an exact retry is the same one."""
    digest = hashlib.sha256("\n".join([account_scope(), *(value or "" for value in parameters)]).encode())
    return _idempotent(f"{key}-{digest.hexdigest()[:16]}")


@gateway_errors
def create_customer(account_id, email, name, replacing=None):
    """The account's own customer; `replacing`: the one Stripe no longer has (a new request then)."""
    return client().v1.customers.create(
        params={"email": email, "name": name, "metadata": {"account_id": account_id}},
        options=_naming(f"customer-{account_id}", replacing, email, name),
    )


@gateway_errors
def find_price(lookup_key):
    found = client().v1.prices.list(params={"lookup_keys": [lookup_key], "active": True, "limit": 1})
    return found.data[0] if found.data else None


@gateway_errors
def create_price(lookup_key, plan, replacing=None):
    """A recurring price (and its product) for the plan; `replacing`: the price Stripe no longer has."""
    return client().v1.prices.create(
        params={
            "currency": plan["currency"],
            "unit_amount": plan["amount"],
            "recurring": {"interval": plan["interval"]},
            "lookup_key": lookup_key,
            "product_data": {"name": plan["name"], "metadata": {"plan_code": plan["code"]}},
            "metadata": {"plan_code": plan["code"]},
        },
        options=_naming(f"price-{lookup_key}", replacing),
    )


@gateway_errors
def create_checkout_session(checkout_id, customer_id, price_id, metadata, success_url, cancel_url, expires_at):
    return client().v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer_id,
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": checkout_id,
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
            "expires_at": expires_at,
        },
        options=_naming(f"checkout-{checkout_id}", customer_id, price_id),
    )


@gateway_errors
def expire_checkout_session(session_id):
    return client().v1.checkout.sessions.expire(session_id, options=_idempotent(f"expire-{session_id}"))


@gateway_errors
def retrieve_subscription(subscription_id):
    return client().v1.subscriptions.retrieve(subscription_id)


@gateway_errors
def change_subscription_price(subscription_id, item_id, price_id, metadata, change_id):
    """The proration is invoiced and charged at once; if the charge is declined, Stripe applies
    nothing and keeps the change in `pending_update` until that invoice is paid or voided."""
    return client().v1.subscriptions.update(
        subscription_id,
        params={
            "items": [{"id": item_id, "price": price_id}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
            "cancel_at_period_end": False,
            "metadata": metadata,
        },
        options=_naming(f"change-{change_id}", price_id),
    )


@gateway_errors
def set_cancel_at_period_end(subscription_id, cancel, request_id):
    return client().v1.subscriptions.update(
        subscription_id, params={"cancel_at_period_end": cancel}, options=_idempotent(f"cancel-{request_id}"),
    )


@gateway_errors
def cancel_subscription_now(subscription_id):
    """Cancel at once, invoicing nothing more; None when Stripe no longer has it live (an earlier
    cancel already went through)."""
    try:
        return client().v1.subscriptions.cancel(subscription_id, params={"invoice_now": False, "prorate": False})
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return None
        raise


@gateway_errors
def invoices_of(subscription_id, status):
    return list(client().v1.invoices.list(
        params={"subscription": subscription_id, "status": status, "limit": 100}).auto_paging_iter())


@gateway_errors
def void_invoice(invoice_id):
    return client().v1.invoices.void_invoice(invoice_id, options=_idempotent(f"void-{invoice_id}"))


@gateway_errors
def payment_intents_of(invoice_id):
    """The PaymentIntents that paid an invoice (current API: InvoicePayments, not invoice.payment_intent)."""
    paid = client().v1.invoice_payments.list(params={"invoice": invoice_id, "status": "paid", "limit": 100}).data
    return [payment.payment.payment_intent for payment in paid
            if payment.payment.type == "payment_intent" and payment.payment.payment_intent]


@gateway_errors
def refund(payment_intent_id, key, metadata):
    """Refund what is left of a payment in full."""
    return client().v1.refunds.create(
        params={"payment_intent": payment_intent_id, "reason": "duplicate", "metadata": metadata},
        options=_idempotent(key))


@gateway_errors
def refunds_of(payment_intent_id):
    return client().v1.refunds.list(params={"payment_intent": payment_intent_id, "limit": 100}).data


@gateway_errors
def list_payment_methods(customer_id):
    return client().v1.payment_methods.list(params={"customer": customer_id, "type": "card", "limit": 20}).data


@gateway_errors
def retrieve_customer(customer_id):
    return client().v1.customers.retrieve(customer_id)


@gateway_errors
def create_payment_link(link_id, price_id, metadata, success_url):
    """A single-use Payment Link: it accepts one completed payment, then deactivates itself. The
    same link_id and price_id are the same request (what abandoning a failed create relies on)."""
    return client().v1.payment_links.create(
        params={
            "line_items": [{"price": price_id, "quantity": 1}],
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
            "restrictions": {"completed_sessions": {"limit": 1}},
            "after_completion": {"type": "redirect", "redirect": {"url": success_url}},
        },
        options=_naming(f"link-{link_id}", price_id),
    )


@gateway_errors
def deactivate_payment_link(payment_link_id):
    return client().v1.payment_links.update(
        payment_link_id, params={"active": False}, options=_idempotent(f"deactivate-{payment_link_id}"))


@gateway_errors
def checkout_sessions_of_link(payment_link_id, status):
    return client().v1.checkout.sessions.list(
        params={"payment_link": payment_link_id, "status": status, "limit": 10}).data


@gateway_errors
def retrieve_checkout_session(session_id):
    return client().v1.checkout.sessions.retrieve(session_id)


@gateway_errors
def events_since(created_gte, types):
    """Every event of these types created at or after `created_gte` (None: all Stripe still keeps,
    30 days), oldest first, as plain JSON dicts (what a webhook body holds: decimals as strings)."""
    params = {"limit": 100, "types": list(types)}
    if created_gte is not None:
        params["created"] = {"gte": int(created_gte)}
    listed = client().v1.events.list(params=params).auto_paging_iter()  # newest first, page after page
    return [event.to_dict(for_json=True) for event in listed][::-1]
