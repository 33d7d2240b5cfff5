"""The webhooks a gateway sandbox sends when a checkout is paid, for `make bench` to deliver itself.

The checkouts are real: the portal made them at the running sandbox (POST {acct}/checkout). What
the payer would do on the hosted page is replayed here with the sandbox's own code (its
checkout.pay, store, shapes and event serialisation) on a copy of the objects the running
sandbox holds, so the events are exactly those the sandbox would send, in shape and in number:
Stripe's customer.subscription.created, invoice.paid, invoice.payment_succeeded and
checkout.session.completed; Cashfree's SUBSCRIPTION_AUTH_STATUS, SUBSCRIPTION_STATUS_CHANGED and
SUBSCRIPTION_PAYMENT_SUCCESS. The running sandbox itself never learns of the payment (the adapters
do not ask it while handling a webhook), so the bench decides when each webhook is sent.

Each Webhook is signed when it is sent (`headers()`), as the sandbox signs each attempt:
Stripe-Signature with STRIPE_WEBHOOK_SECRET, Cashfree's base64 HMAC of timestamp + body with
CASHFREE_CLIENT_SECRET.
"""
import time
from dataclasses import dataclass

import requests
import stripe

from services.gateway_cashfree.sandbox import checkout as cashfree_checkout
from services.gateway_cashfree.sandbox.config import API_VERSION as CASHFREE_API_VERSION
from services.gateway_cashfree.sandbox.encoding import loads as cashfree_loads
from services.gateway_cashfree.sandbox.store import Store as CashfreeStore
from services.gateway_cashfree.sandbox.webhooks import signature as cashfree_signature
from services.gateway_stripe.sandbox import checkout as stripe_checkout
from services.gateway_stripe.sandbox.store import Store as StripeStore


@dataclass
class Webhook:
    gateway: str  # "stripe" | "cashfree"
    checkout_id: str  # ours: the payment it belongs to
    event_id: str
    event_type: str
    body: bytes  # exactly the bytes the sandbox would send (and sign)
    secret: str

    @property
    def path(self):
        return f"/webhooks/{self.gateway}"

    def headers(self):
        """Signed now, as each delivery attempt is."""
        if self.gateway == "stripe":
            header = stripe.WebhookSignature.generate_signature_header(self.body.decode(), self.secret,
                                                                       int(time.time()))
            return {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
        timestamp = str(int(time.time() * 1000))
        return {"Content-Type": "application/json", "x-webhook-timestamp": timestamp,
                "x-webhook-signature": cashfree_signature(self.secret, timestamp, self.body),
                "x-webhook-version": CASHFREE_API_VERSION, "x-idempotency-key": self.event_id}


class StripePayments:
    """Pays Checkout Sessions of the running Stripe sandbox on a local copy of them."""

    def __init__(self, api_base, secret_key, webhook_secret):
        self.api_base, self.webhook_secret = api_base, webhook_secret
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {secret_key}"
        # Events are recorded, never sent: no webhook sender is attached to this store.
        self.store = StripeStore(clock=time.time)
        self.public_url = api_base  # where the sandbox's hosted invoice pages live

    def _get(self, path):
        answer = self.http.get(f"{self.api_base}{path}", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def _copy(self, object_id, path):
        """The sandbox's object, fetched once into the local store."""
        if object_id not in self.store.objects:
            self.store.add(self._get(path))
        return self.store.objects[object_id]

    def _price_of(self, session):
        """The adapter's price for the session's plan (gateway_stripe.price_lookup_key)."""
        key = f"{session['metadata']['plan_code']}_{session['currency']}_{session['amount_total']}"
        found = self._get(f"/v1/prices?lookup_keys[]={key}&active=true")["data"]
        if not found:
            raise LookupError(f"no active price {key} at the sandbox")
        price = self._copy(found[0]["id"], f"/v1/prices/{found[0]['id']}")
        self._copy(price["product"], f"/v1/products/{price['product']}")
        return price

    def pay(self, checkout_id, session_id):
        """The webhooks of paying session `session_id` (our checkout `checkout_id`), in emission order."""
        session = self._get(f"/v1/checkout/sessions/{session_id}")
        self._copy(session["customer"], f"/v1/customers/{session['customer']}")
        price = self._price_of(session)
        # What the sandbox keeps privately for a session (checkout._new_session): the adapter sends the
        # same metadata for the session and its subscription.
        self.store.add(session, private={"price": price["id"], "quantity": 1,
                                         "subscription_metadata": dict(session["metadata"])})
        before = len(self.store.event_ids)
        stripe_checkout.pay(self.store, self.public_url, session_id)
        return [Webhook("stripe", checkout_id, event_id, self.store.objects[event_id]["type"],
                        self.store.event_bodies[event_id].encode(), self.webhook_secret)
                for event_id in self.store.event_ids[before:]]


class CashfreePayments:
    """Authorises subscriptions of the running Cashfree sandbox on a local copy of them."""

    def __init__(self, api_base, client_id, client_secret):
        self.api_base, self.client_secret = api_base.rstrip("/"), client_secret
        self.http = requests.Session()
        self.http.headers.update({"x-client-id": client_id, "x-client-secret": client_secret,
                                  "x-api-version": CASHFREE_API_VERSION, "x-request-id": "bench"})
        self.store = CashfreeStore(clock=time.time)  # records events; nothing sends them

    def pay(self, checkout_id, subscription_id):
        """The webhooks of the payer authorising subscription `subscription_id` with UPI."""
        answer = self.http.get(f"{self.api_base}/subscriptions/{subscription_id}", timeout=10)
        answer.raise_for_status()
        subscription = cashfree_loads(answer.content)  # amounts as exact decimals, as the sandbox keeps them
        session_id = subscription["subscription_session_id"]
        with self.store.lock:
            self.store.subscriptions[subscription_id] = subscription
            self.store.sessions[session_id] = subscription_id
            # What the sandbox keeps privately (subscriptions.create); no methods listed allows them all.
            self.store.private[subscription_id] = {"payments": [], "session_open": True, "methods": [],
                                                   "next_charge": None}
        before = len(self.store.event_ids)
        cashfree_checkout.pay(self.store, session_id, "upi")
        return [Webhook("cashfree", checkout_id, event_id, self.store.events[event_id]["type"],
                        self.store.events[event_id]["body"].encode(), self.client_secret)
                for event_id in self.store.event_ids[before:]]
