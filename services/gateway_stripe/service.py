"""gateway_stripe: the Stripe adapter. Billing calls it through the gateway contract (the same RPC
names and dict shapes as gateway_cashfree) and hears from it through normalized gateway.* events."""
import json
import logging
import time

import stripe
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from services.gateway_stripe import stripe_api
from services.gateway_stripe.models import Outbox, StripeCustomer, StripePaymentLink, StripePrice, WebhookEvent
from services.gateway_stripe.normalize import normalize, subscription_snapshot
from shared.config import settings
from shared.db import Database
from shared.errors import BadRequest, GatewayError
from shared.outbox import OutboxRelay, add_event
from shared.service import HealthMixin, api_rpc

log = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_SECONDS = 300


def price_lookup_key(plan):
    """One Stripe price per plan, currency and amount: changing a price in plans.yaml makes a new one."""
    return f"{plan['code']}_{plan['currency']}_{plan['amount']}"


class GatewayStripeService(HealthMixin):
    name = "gateway_stripe"

    db = Database()
    outbox = OutboxRelay(Outbox)

    # -- the gateway contract ------------------------------------------------------------------

    @api_rpc
    def plan_change_policy(self):
        """Stripe prorates a plan change and invoices the difference at once (always_invoice)."""
        return "prorate_now"

    @api_rpc
    def create_checkout(self, request):
        """A hosted Checkout Session (subscription mode) for one plan.

        request: {checkout_id, account: {id, email, name}, plan: {code, name, interval, amount,
        currency}, success_url, cancel_url, expires_at (unix s)}.
        Returns {gateway_checkout_id, redirect_url, expires_at}. Raises GatewayError when Stripe
        fails or times out; a retry with the same checkout_id is safe (same Idempotency-Key).
        """
        account, plan = request["account"], request["plan"]
        metadata = {"account_id": account["id"], "checkout_id": request["checkout_id"], "plan_code": plan["code"]}
        for attempt in (1, 2):
            customer_id, price_id = self._customer_for(account), self._price_for(plan)
            try:
                session = stripe_api.create_checkout_session(
                    request["checkout_id"], customer_id, price_id, metadata,
                    request["success_url"], request["cancel_url"], request["expires_at"],
                )
                break
            except GatewayError as error:
                # A customer or price we remember was deleted at Stripe (or we were pointed at
                # another account): forget it and make it again, once.
                if attempt == 2 or not self._forget_missing(stripe_api.missing_param(error), account, plan):
                    raise
        return {"gateway_checkout_id": session.id, "redirect_url": session.url, "expires_at": session.expires_at}

    @api_rpc
    def create_payment_link(self, request):
        """A single-use Stripe Payment Link for the plan (subscription mode: the payer's payment
        starts a subscription carrying our ids). request: {link_id, account, plan, success_url,
        ...}. Returns {gateway_link_id, url}. Stripe links do not expire: billing deactivates them.
        Raises GatewayError; a retry with the same link_id returns the same link."""
        plan, account = request["plan"], request["account"]
        metadata = {"account_id": account["id"], "link_id": request["link_id"], "plan_code": plan["code"]}
        made = stripe_api.create_payment_link(request["link_id"], self._price_for(plan), metadata,
                                              request["success_url"])
        self.db.execute(insert(StripePaymentLink).values(
            payment_link_id=made.id, link_id=request["link_id"], account_id=account["id"]).on_conflict_do_nothing())
        self.db.commit()
        return {"gateway_link_id": made.id, "url": made.url}

    @api_rpc
    def cancel_payment_link(self, request):
        """Deactivate a Payment Link and expire its open checkout sessions. Returns {"outcome":
        "paid"} when a payment through it completed first (it cannot be undone), else
        {"outcome": "cancelled"}. Raises GatewayError."""
        payment_link_id = request["gateway_link_id"]
        stripe_api.deactivate_payment_link(payment_link_id)
        if stripe_api.checkout_sessions_of_link(payment_link_id, "complete"):
            return {"outcome": "paid"}
        for session in stripe_api.checkout_sessions_of_link(payment_link_id, "open"):
            try:
                stripe_api.expire_checkout_session(session.id)
            except GatewayError:  # it completed between the two calls
                if stripe_api.checkout_sessions_of_link(payment_link_id, "complete"):
                    return {"outcome": "paid"}
                raise
        return {"outcome": "cancelled"}

    @api_rpc
    def abandon_payment_link(self, request):
        """After a failed create: make sure no usable link exists at Stripe for it. The same
        Idempotency-Key returns the link if Stripe made it after all; it is then deactivated."""
        made = stripe_api.create_payment_link(request["link_id"], self._price_for(request["plan"]), {
            "account_id": request["account"]["id"], "link_id": request["link_id"],
            "plan_code": request["plan"]["code"]}, request["success_url"])
        stripe_api.deactivate_payment_link(made.id)
        return {"outcome": "cancelled"}

    @api_rpc
    def expire_checkout(self, gateway_checkout_id):
        """Close an open Checkout Session so it can no longer be paid. Raises GatewayError."""
        session = stripe_api.expire_checkout_session(gateway_checkout_id)
        return {"status": session.status}

    @api_rpc
    def change_subscription(self, request):
        """Move a subscription to another plan now, invoicing the proration at once.

        request: {change_id, gateway_subscription_id, account_id, checkout_id, plan}. Returns the
        subscription snapshot (gateway.subscription_updated shape). Raises GatewayError.
        """
        subscription = stripe_api.retrieve_subscription(request["gateway_subscription_id"])
        item_id = subscription["items"].data[0].id
        metadata = {"account_id": request["account_id"], "checkout_id": request["checkout_id"],
                    "plan_code": request["plan"]["code"]}
        updated = stripe_api.change_subscription_price(
            subscription.id, item_id, self._price_for(request["plan"]), metadata, request["change_id"])
        return self._snapshot(updated, request["account_id"], f"change-{request['change_id']}")

    @api_rpc
    def cancel_subscription(self, request):
        """Cancel at period end (default) or now. request: {request_id, gateway_subscription_id,
        account_id, at_period_end}. Returns the subscription snapshot. Raises GatewayError."""
        subscription_id = request["gateway_subscription_id"]
        if request["at_period_end"]:
            subscription = stripe_api.set_cancel_at_period_end(subscription_id, True, request["request_id"])
        else:
            # DELETE carries no idempotency at Stripe: a retry after a lost answer gets 404.
            subscription = (stripe_api.cancel_subscription_now(subscription_id)
                            or stripe_api.retrieve_subscription(subscription_id))
        return self._snapshot(subscription, request["account_id"], f"cancel-{request['request_id']}")

    @api_rpc
    def list_payment_methods(self, account_id):
        """The cards saved for the account (its own and those of whoever paid its links), default
        first. Raises GatewayError."""
        customer_ids = self.db.scalars(select(StripeCustomer.customer_id).where(
            StripeCustomer.account_id == account_id).order_by(StripeCustomer.created_at)).all()
        methods = []
        for customer_id in customer_ids:
            settings_ = stripe_api.retrieve_customer(customer_id).to_dict().get("invoice_settings") or {}
            default = settings_.get("default_payment_method")
            methods += [{
                "id": pm.id, "type": "card", "brand": pm.card.brand, "last4": pm.card.last4,
                "exp_month": pm.card.exp_month, "exp_year": pm.card.exp_year,
                "is_default": pm.id == default and not any(m["is_default"] for m in methods),
            } for pm in stripe_api.list_payment_methods(customer_id)]
        return sorted(methods, key=lambda method: not method["is_default"])

    @api_rpc
    def handle_webhook(self, headers, body):
        """Verify, store once, and announce a Stripe webhook. Raises BadRequest (400) on a missing,
        forged or stale signature; nothing is stored then. Returns {"status": accepted|duplicate}."""
        signature = {k.lower(): v for k, v in headers.items()}.get("stripe-signature")
        if not signature:
            raise BadRequest("Missing Stripe-Signature header.", code="SIGNATURE_MISSING")
        try:
            stripe.WebhookSignature.verify_header(body, signature, settings().stripe_webhook_secret,
                                                  SIGNATURE_TOLERANCE_SECONDS)
            event = json.loads(body)
            event_id, event_type, created = event["id"], event["type"], int(event["created"])
            event["data"]["object"]
        except stripe.SignatureVerificationError:
            raise BadRequest("The webhook signature is invalid or too old.", code="SIGNATURE_INVALID") from None
        except (ValueError, KeyError, TypeError):
            raise BadRequest("The webhook body is not a Stripe event.", code="MALFORMED_EVENT") from None

        inserted = self.db.execute(
            insert(WebhookEvent).values(id=event_id, type=event_type, created=created, payload=event)
            .on_conflict_do_nothing().returning(WebhookEvent.id)
        ).first()
        if inserted is None:
            self.db.rollback()
            return {"status": "duplicate"}
        if event_type == "checkout.session.completed" and event["data"]["object"].get("payment_link"):
            self._remember_payer(event["data"]["object"])
        for fact_type, data in normalize(event, self._account_for_customer, self._link_for):
            add_event(self.db, Outbox, fact_type, data)
        self.db.commit()
        return {"status": "accepted"}

    # -- helpers -------------------------------------------------------------------------------

    def _snapshot(self, subscription, account_id, event_id):
        """The snapshot fact for a subscription the API just returned (stamped with our clock)."""
        return subscription_snapshot(subscription.to_dict(), account_id, event_id, int(time.time()))

    def _forget_missing(self, param, account, plan):
        """Drop the remembered id Stripe says it lacks; True if there was one to drop."""
        if param is None:
            return False
        if param == "customer":
            self.db.execute(delete(StripeCustomer).where(
                StripeCustomer.customer_id == self._customer_id(account["id"])))
        elif param.startswith("line_items"):
            self.db.execute(delete(StripePrice).where(StripePrice.lookup_key == price_lookup_key(plan)))
        else:
            return False
        self.db.commit()
        return True

    def _customer_id(self, account_id):
        """The customer we made for the account's own checkouts (its first)."""
        return self.db.scalar(select(StripeCustomer.customer_id).where(StripeCustomer.account_id == account_id)
                              .order_by(StripeCustomer.created_at).limit(1))

    def _link_for(self, payment_link_id):
        row = self.db.get(StripePaymentLink, payment_link_id) if payment_link_id else None
        return {"link_id": row.link_id, "account_id": row.account_id} if row else None

    def _remember_payer(self, session):
        """Whoever paid a link became a Stripe customer: their card belongs to the link's account."""
        link = self._link_for(session.get("payment_link"))
        customer = session.get("customer")
        if link and isinstance(customer, str):
            self.db.execute(insert(StripeCustomer).values(customer_id=customer, account_id=link["account_id"])
                            .on_conflict_do_nothing())

    def _account_for_customer(self, customer_id):
        if not customer_id:
            return None
        return self.db.scalar(select(StripeCustomer.account_id).where(StripeCustomer.customer_id == customer_id))

    def _customer_for(self, account):
        """The account's Stripe customer, created once (the Idempotency-Key makes racing creates one)."""
        customer_id = self._customer_id(account["id"])
        if customer_id:
            return customer_id
        customer = stripe_api.create_customer(account["id"], account.get("email"), account.get("name"))
        self.db.execute(insert(StripeCustomer).values(account_id=account["id"], customer_id=customer.id)
                        .on_conflict_do_nothing())
        self.db.commit()
        return customer.id

    def _price_for(self, plan):
        key = price_lookup_key(plan)
        price_id = self.db.scalar(select(StripePrice.price_id).where(StripePrice.lookup_key == key))
        if price_id:
            return price_id
        price = stripe_api.find_price(key) or stripe_api.create_price(key, plan)
        self.db.execute(insert(StripePrice).values(lookup_key=key, price_id=price.id).on_conflict_do_nothing())
        self.db.commit()
        return price.id
