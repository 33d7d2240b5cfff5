"""gateway_stripe: the Stripe adapter. Billing calls it through the gateway contract (the same RPC
names and dict shapes as gateway_cashfree) and hears from it through normalized gateway.* events."""
import logging
import time

import stripe
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from services.gateway_stripe import stripe_api
from services.gateway_stripe.models import (
    Outbox, StripeCustomer, StripePaymentLink, StripePrice, SyncCursor, WebhookEvent,
)
from services.gateway_stripe.normalize import HANDLED_TYPES, normalize, subscription_snapshot
from shared.config import settings
from shared.db import Database
from shared.errors import BadRequest, GatewayError, NotFound, PaymentDeclined
from shared.models import UNKNOWN_SCOPE
from shared.outbox import OutboxRelay, add_event_once
from shared.schemas import parse_json
from shared.service import HealthMixin, api_rpc

log = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_SECONDS = 300
# Reconciliation re-reads this much of the event list before its cursor: Stripe may list an event
# a little after the newest one it already listed. Events read twice are duplicates, dropped by id.
EVENTS_OVERLAP_SECONDS = 300


def price_lookup_key(plan):
    """One Stripe price per plan, currency and amount: changing a price in plans.yaml makes a new one."""
    return f"{plan['code']}_{plan['currency']}_{plan['amount']}"


def remembered_kind(missing_param):
    """Which object we remember a request named, from the parameter Stripe says names nothing."""
    if missing_param == "customer":
        return "customer"
    if missing_param is not None and missing_param.startswith(("line_items", "items")):
        return "price"  # a checkout's or link's line_items[0][price], a subscription update's items[0][price]
    return None


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
        The session's customer is the account's own (never a link payer's). Returns
        {gateway_checkout_id, redirect_url, expires_at}. Raises GatewayError when Stripe fails or
        times out; a retry with the same checkout_id is safe (the same Idempotency-Key while it
        names the same customer and price).
        """
        account, plan = request["account"], request["plan"]
        metadata = {"account_id": account["id"], "checkout_id": request["checkout_id"], "plan_code": plan["code"]}
        session = self._naming_remembered(plan, account, lambda price_id, customer_id: (
            stripe_api.create_checkout_session(request["checkout_id"], customer_id, price_id, metadata,
                                               request["success_url"], request["cancel_url"], request["expires_at"])))
        return {"gateway_checkout_id": session.id, "redirect_url": session.url, "expires_at": session.expires_at}

    @api_rpc
    def create_payment_link(self, request):
        """A single-use Stripe Payment Link for the plan (subscription mode: the payer's payment
        starts a subscription carrying our ids). request: {link_id, account, plan, success_url,
        ...}. Returns {gateway_link_id, url}. Stripe links do not expire: billing deactivates them.
        Raises GatewayError; a retry with the same link_id returns the same link."""
        made = self._naming_remembered(request["plan"], None, lambda price_id, _: self._send_link(request, price_id))
        self.db.execute(insert(StripePaymentLink).values(
            payment_link_id=made.id, link_id=request["link_id"], account_id=request["account"]["id"],
            scope=stripe_api.account_scope()).on_conflict_do_nothing())
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
        Idempotency-Key returns the link if Stripe made it after all; it is then deactivated. The
        price is the one the create sent last (it is remembered), so the key is the same."""
        made = self._send_link(request, self._price_for(request["plan"]))
        stripe_api.deactivate_payment_link(made.id)
        return {"outcome": "cancelled"}

    @api_rpc
    def expire_checkout(self, gateway_checkout_id):
        """Make sure a Checkout Session can no longer be paid: expire it if it is open; one that
        expired, or completed with a payment that failed, already is. Raises GatewayError when Stripe
        cannot be asked, and GatewayError with details.checkout_state "complete" when it was paid,
        "pending" while its (delayed, e.g. bank debit) payment is still processing: its
        subscription is `incomplete` until that payment succeeds or fails."""
        try:
            return {"status": stripe_api.expire_checkout_session(gateway_checkout_id).status}
        except GatewayError:
            session = stripe_api.retrieve_checkout_session(gateway_checkout_id)
            if session.status == "open":
                raise
        if session.status == "complete" and session.payment_status in ("paid", "no_payment_required"):
            raise GatewayError(f"Checkout Session {gateway_checkout_id} was paid; it cannot be closed.",
                               {"gateway": "stripe", "checkout_state": "complete"})
        subscription_id = session.subscription if isinstance(session.subscription, str) else getattr(
            session.subscription, "id", None)
        if session.status == "complete" and subscription_id and (
                stripe_api.retrieve_subscription(subscription_id).status == "incomplete"):
            raise GatewayError(f"Checkout Session {gateway_checkout_id}'s payment is still processing.",
                               {"gateway": "stripe", "checkout_state": "pending"})
        return {"status": session.status}

    @api_rpc
    def change_subscription(self, request):
        """Move a subscription to another plan now, once the proration is paid.

        request: {change_id, gateway_subscription_id, account_id, checkout_id, plan}. Returns the
        subscription snapshot (gateway.subscription_updated shape). Raises PaymentDeclined when the
        saved card declined the proration: Stripe applied nothing (a pending update), and its open
        invoice is voided so the change can never apply later behind the payer's back.
        Raises GatewayError. A retry with the same change_id is the same request (while it names the
        same price; a price Stripe lost is made again, as for checkouts).
        """
        subscription = stripe_api.retrieve_subscription(request["gateway_subscription_id"])
        item_id = subscription["items"].data[0].id
        metadata = {"account_id": request["account_id"], "checkout_id": request["checkout_id"],
                    "plan_code": request["plan"]["code"]}
        updated = self._naming_remembered(request["plan"], None, lambda price_id, _: (
            stripe_api.change_subscription_price(subscription.id, item_id, price_id, metadata, request["change_id"])))
        if getattr(updated, "pending_update", None):
            latest = getattr(updated, "latest_invoice", None)
            if latest:
                stripe_api.void_invoice(latest if isinstance(latest, str) else latest.id)
            raise PaymentDeclined(details={"gateway": "stripe"})
        return self._snapshot(updated, request["account_id"], f"change-{request['change_id']}")

    @api_rpc
    def refund_purchase(self, request):
        """Undo a purchase billing cannot keep (a second plan for an account that has one): cancel
        its subscription now, void its open invoices and refund every payment it took, in full.

        request: {request_id, account_id, gateway_subscription_id, gateway_link_id, reason}. Returns
        {"refunds": [{gateway_invoice_id, gateway_refund_id, amount, currency, refunded_at}]}, the
        same list when asked again (refunds are keyed by invoice and payment). Raises GatewayError;
        what was done stays done and a retry finishes the rest."""
        subscription_id = request["gateway_subscription_id"]
        if not subscription_id:
            return {"refunds": []}  # Stripe's payment links start a subscription: there is always one
        stripe_api.cancel_subscription_now(subscription_id)
        self._void_open_invoices(subscription_id)
        refunds = []
        for invoice in stripe_api.invoices_of(subscription_id, "paid"):
            if not invoice.amount_paid:
                continue
            for payment_intent in stripe_api.payment_intents_of(invoice.id):
                refunds += [{"gateway_invoice_id": invoice.id, "gateway_refund_id": refund.id, "amount": refund.amount,
                             "currency": refund.currency, "refunded_at": refund.created}
                            for refund in self._refunded(payment_intent, invoice.id, request)]
        return {"refunds": refunds}

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
            if request.get("void_open_invoices"):  # nobody may revive it by paying an old invoice
                self._void_open_invoices(subscription_id)
        return self._snapshot(subscription, request["account_id"], f"cancel-{request['request_id']}")

    @api_rpc
    def list_payment_methods(self, account_id):
        """The cards saved for the account at the Stripe in use, default first: its own customer's,
        and those of whoever paid its payment links (payers' customers are listed here, though the
        account's checkouts never use them). Customers kept before scopes were are asked too; one
        Stripe does not have (made with other keys) is left out. Raises GatewayError."""
        customer_ids = self.db.scalars(select(StripeCustomer.customer_id).where(
            StripeCustomer.account_id == account_id,
            StripeCustomer.scope.in_([stripe_api.account_scope(), UNKNOWN_SCOPE]))
            .order_by(StripeCustomer.created_at)).all()
        methods = []
        for customer_id in customer_ids:
            try:
                customer = stripe_api.retrieve_customer(customer_id)
            except GatewayError as error:
                if stripe_api.missing_param(error) is None:
                    raise
                continue
            settings_ = customer.to_dict().get("invoice_settings") or {}
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
        secret = settings().stripe_webhook_secret
        if not secret:  # anyone can sign with an empty key (shared.runner refuses to start without one)
            raise BadRequest("The webhook signature is invalid or too old.", code="SIGNATURE_INVALID")
        try:
            stripe.WebhookSignature.verify_header(body, signature, secret, SIGNATURE_TOLERANCE_SECONDS)
            event = parse_json(body)  # strict: NaN or a deep nesting is MALFORMED_JSON, never stored
            event["id"], event["type"], int(event["created"]), event["data"]["object"]  # noqa: B018  (a Stripe event?)
        except stripe.SignatureVerificationError:
            raise BadRequest("The webhook signature is invalid or too old.", code="SIGNATURE_INVALID") from None
        except (ValueError, KeyError, TypeError):
            raise BadRequest("The webhook body is not a Stripe event.", code="MALFORMED_EVENT") from None

        return {"status": self._ingest(event, "webhook")["status"]}

    # -- reconciliation and replay ---------------------------------------------------------------

    @api_rpc
    def reconcile(self, request):
        """Find what Stripe's webhooks should have told us and announce it exactly as a webhook would.

        request: {"checkouts": [{checkout_id, gateway_checkout_id, account_id}], "subscriptions":
        [...], "links": [...]}: what billing still thinks is open. Stripe lists every event it made
        (GET /v1/events, 30 days): the events since our cursor go through the webhook's own intake
        (stored once by id, the same facts), so a missed webhook is recovered and one that arrives
        later is a duplicate (so the subscriptions and links named need no reading of their own).
        The open checkouts are read: their state at Stripe is answered, so billing can close one that
        can no longer be paid. Returns {"checkouts": {gateway_checkout_id:
        open|complete|expired|unknown}, "events_read": n, "recovered": [{gateway_event_id, type,
        facts}], "failed": [ids of events that could not be taken in, logged]}. Raises GatewayError
        when the event list cannot be read.
        """
        checkouts = {}
        for item in request.get("checkouts") or []:
            try:  # read before the event list: the session's own expiry event is then in it
                checkouts[item["gateway_checkout_id"]] = stripe_api.retrieve_checkout_session(
                    item["gateway_checkout_id"]).status
            except GatewayError:
                checkouts[item["gateway_checkout_id"]] = "unknown"
        cursor = self.db.get(SyncCursor, "events")
        since = cursor.value - EVENTS_OVERLAP_SECONDS if cursor else None
        events = stripe_api.events_since(since, HANDLED_TYPES)
        recovered, failed = [], []
        for event in events:
            try:
                taken = self._ingest(event, "reconcile")
            except Exception:  # one event we cannot take in must not hold up the others
                self.db.rollback()
                log.exception("reconciliation could not take in stripe event %s", event.get("id"))
                failed.append(event.get("id"))
                continue
            if taken["status"] == "accepted":
                recovered.append({"gateway_event_id": event["id"], "type": event["type"], "facts": taken["facts"]})
        if events:
            # Not past an event that failed: the next pass reads it again (after a fix, or once what
            # it needs has arrived) instead of leaving it to the log.
            newest = min([max(event["created"] for event in events),
                          *(event["created"] for event in events if event.get("id") in failed)])
            self.db.execute(insert(SyncCursor).values(name="events", value=newest).on_conflict_do_update(
                index_elements=["name"], set_={"value": func.greatest(SyncCursor.value, newest),
                                               "updated_at": func.now()}))
            self.db.commit()
        if recovered:
            log.warning("reconciliation recovered %d stripe events webhooks did not bring: %s", len(recovered),
                        [r["gateway_event_id"] for r in recovered])
        return {"checkouts": checkouts, "events_read": len(events), "recovered": recovered, "failed": failed}

    @api_rpc
    def replay_webhook(self, event_id):
        """Run a stored event through normal processing again (e.g. after a fix, for an event that
        named no account we knew). Facts it already produced are not produced again (they carry the
        event's id): {"event_id", "type", "status": "republished"|"unchanged", "facts": [...]}.
        Raises NotFound for an event we never stored."""
        stored = self.db.get(WebhookEvent, event_id)
        if stored is None:
            raise NotFound(f"No stored Stripe event {event_id}.")
        facts = self._stage_facts(stored.payload)
        self.db.commit()
        return {"event_id": event_id, "type": stored.type, "status": "republished" if facts else "unchanged",
                "facts": facts}

    def _ingest(self, event, source):
        """The one intake of a Stripe event, verified webhook or listed by reconciliation: stored
        once by its id, then its facts staged, in one transaction. {"status": accepted|duplicate,
        "facts": [fact types staged]}."""
        inserted = self.db.execute(
            insert(WebhookEvent).values(id=event["id"], type=event["type"], created=int(event["created"]),
                                        payload=event, source=source)
            .on_conflict_do_nothing().returning(WebhookEvent.id)
        ).first()
        if inserted is None:
            self.db.rollback()
            return {"status": "duplicate", "facts": []}
        facts = self._stage_facts(event)
        self.db.commit()
        return {"status": "accepted", "facts": facts}

    def _stage_facts(self, event):
        """The event's gateway.* facts into the outbox, each under an id made from the event's id (so
        running an event again stages nothing new). Returns the fact types staged now."""
        if event["type"] == "checkout.session.completed" and event["data"]["object"].get("payment_link"):
            self._remember_payer(event["data"]["object"])
        staged = []
        for index, (fact_type, data) in enumerate(normalize(event, self._account_for_customer, self._link_for)):
            if add_event_once(self.db, Outbox, fact_type, data, f"stripe:{event['id']}:{index}"):
                staged.append(fact_type)
        return staged

    # -- helpers -------------------------------------------------------------------------------

    def _snapshot(self, subscription, account_id, event_id):
        """The snapshot fact for a subscription the API just returned (stamped with our clock)."""
        return subscription_snapshot(subscription.to_dict(), account_id, event_id, int(time.time()))

    @staticmethod
    def _void_open_invoices(subscription_id):
        for invoice in stripe_api.invoices_of(subscription_id, "open"):
            stripe_api.void_invoice(invoice.id)

    @staticmethod
    def _refunded(payment_intent, invoice_id, request):
        """Refund one payment in full; when an earlier attempt already did (its answer was lost and
        the idempotency key has expired), what Stripe has on record."""
        try:
            return [stripe_api.refund(payment_intent, f"refund-{invoice_id}-{payment_intent}", {
                "account_id": request["account_id"], "reason": request.get("reason") or "duplicate"})]
        except GatewayError as error:
            if error.details.get("code") != "charge_already_refunded":
                raise
            return stripe_api.refunds_of(payment_intent)

    def _naming_remembered(self, plan, account, send):
        """send(price_id, customer_id): a request naming the plan's price and (given an account) the
        account's own customer, as remembered for the Stripe in use. One Stripe says it does not
        have (deleted there) is forgotten and made again, once each, and the request sent again;
        naming another object, it goes under another Idempotency-Key. Raises GatewayError."""
        replaced = {}
        while True:
            price_id = self._price_for(plan, replacing=replaced.get("price"))
            customer_id = self._customer_for(account, replacing=replaced.get("customer")) if account else None
            try:
                return send(price_id, customer_id)
            except GatewayError as error:
                lost = remembered_kind(stripe_api.missing_param(error))
                if lost is None or lost in replaced:
                    raise
                replaced[lost] = price_id if lost == "price" else customer_id
                log.warning("stripe has no %s %s any more: it is made again", lost, replaced[lost])
                model, column = ((StripePrice, StripePrice.price_id) if lost == "price"
                                 else (StripeCustomer, StripeCustomer.customer_id))
                self.db.execute(delete(model).where(column == replaced[lost]))
                self.db.commit()

    def _send_link(self, request, price_id):
        plan, account = request["plan"], request["account"]
        metadata = {"account_id": account["id"], "link_id": request["link_id"], "plan_code": plan["code"]}
        return stripe_api.create_payment_link(request["link_id"], price_id, metadata, request["success_url"])

    def _link_for(self, payment_link_id):
        row = self.db.get(StripePaymentLink, payment_link_id) if payment_link_id else None
        return {"link_id": row.link_id, "account_id": row.account_id} if row else None

    def _remember_payer(self, session):
        """Whoever paid a link became a Stripe customer, in the link's scope: their card is listed
        with the link's account, their customer is never the account's own."""
        link = self.db.get(StripePaymentLink, session.get("payment_link"))
        customer = session.get("customer")
        if link and isinstance(customer, str):
            self.db.execute(insert(StripeCustomer).values(customer_id=customer, account_id=link.account_id,
                                                          kind="payer", scope=link.scope)
                            .on_conflict_do_nothing())

    def _account_for_customer(self, customer_id):
        if not customer_id:
            return None
        return self.db.scalar(select(StripeCustomer.account_id).where(StripeCustomer.customer_id == customer_id))

    def _customer_for(self, account, replacing=None):
        """The account's own Stripe customer at the Stripe in use, created once per scope (racing
        creates for one account send its owner's contact under one Idempotency-Key, so they make
        one); `replacing`: the one Stripe no longer has."""
        scope = stripe_api.account_scope()
        customer_id = self.db.scalar(select(StripeCustomer.customer_id).where(
            StripeCustomer.account_id == account["id"], StripeCustomer.kind == "account",
            StripeCustomer.scope == scope).order_by(StripeCustomer.created_at).limit(1))
        if customer_id:
            return customer_id
        customer = stripe_api.create_customer(account["id"], account.get("email"), account.get("name"), replacing)
        self.db.execute(insert(StripeCustomer).values(account_id=account["id"], customer_id=customer.id,
                                                      kind="account", scope=scope).on_conflict_do_nothing())
        self.db.commit()
        return customer.id

    def _price_for(self, plan, replacing=None):
        """The plan's price at the Stripe in use: remembered, else found there by its lookup key
        (made before it was remembered under this scope), else created."""
        scope, key = stripe_api.account_scope(), price_lookup_key(plan)
        price_id = self.db.scalar(select(StripePrice.price_id).where(StripePrice.scope == scope,
                                                                     StripePrice.lookup_key == key))
        if price_id:
            return price_id
        price = stripe_api.find_price(key) or stripe_api.create_price(key, plan, replacing)
        self.db.execute(insert(StripePrice).values(scope=scope, lookup_key=key, price_id=price.id)
                        .on_conflict_do_nothing())
        self.db.commit()
        return price.id
