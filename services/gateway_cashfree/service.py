"""gateway_cashfree: the Cashfree adapter (India, INR). The same RPC contract and the same
gateway.* facts as gateway_stripe, so billing never needs to know which gateway it talks to.

Recurring plans are Cashfree Subscriptions: a Cashfree plan per catalogue plan and price, one
subscription per checkout, authorised on Cashfree's hosted page; Cashfree charges the renewals.
Cashfree reports no billing periods, so this adapter keeps them, from the successful charges it is
told about.

The first period is paid for only by money collected: an authorisation that collected the plan's
price (UPI, card) completes the checkout; one that collected less (an e-NACH mandate collects
nothing) is followed by a charge of the first period, raised here, and the checkout completes when
that charge succeeds (FIRST_PAYMENT below). A plan change (CHANGE_PLAN) is charged from the next
cycle: the subscription stays the old plan, and says so to billing, until a charge of the new
plan's amount succeeds.
"""
import base64
import hashlib
import hmac
import logging
import os
import time
from datetime import datetime, timedelta, timezone

import phonenumbers
from nameko.timer import timer
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from services.gateway_cashfree import cashfree_api
from services.gateway_cashfree.cashfree_api import paise, refusal_status, rupees
from services.gateway_cashfree.models import (
    CashfreeLink, CashfreeOrder, CashfreePlan, CashfreeSubscription, Outbox, WebhookEvent,
)
from shared.config import settings
from shared.db import Database
from shared.errors import BadRequest, GatewayError, NotFound
from shared.outbox import OutboxRelay, add_event_once, rfc3339, utc_now
from shared.periods import add_interval
from shared.schemas import parse_json
from shared.service import HealthMixin, api_rpc

log = logging.getLogger(__name__)

SIGNATURE_MAX_AGE_SECONDS = 300
INDIA_CALLING_CODE = 91
CANCEL_MARGIN = timedelta(hours=1)  # a scheduled cancellation goes in this long before the next charge

SUBSCRIPTION_STATUS = {
    "ACTIVE": "active",
    "INITIALIZED": "incomplete",
    "BANK_APPROVAL_PENDING": "incomplete",
    "ON_HOLD": "past_due",
    "PAUSED": "past_due",
    "CUSTOMER_PAUSED": "past_due",
    "CANCELLED": "cancelled",
    "CUSTOMER_CANCELLED": "cancelled",
    "COMPLETED": "cancelled",
    "EXPIRED": "cancelled",
    "LINK_EXPIRED": "cancelled",
}
# What a checkout's subscription says about the checkout: not authorised yet, paid, or never to be.
CHECKOUT_STATE = {"INITIALIZED": "open", "BANK_APPROVAL_PENDING": "open"}
METHOD_TYPES = {"upi": "upi", "card": "card", "enach": "netbanking", "pnach": "netbanking", "netbanking": "netbanking"}
ENDED = ("CANCELLED", "CUSTOMER_CANCELLED", "COMPLETED", "EXPIRED", "LINK_EXPIRED")
# A subscription's first period, from the mandate's authorisation (CashfreeSubscription.first_payment):
#   verify:  Cashfree says the mandate is authorised, but not what its AUTH payment collected: read it;
#   charge:  the authorisation collected less than the plan's price: raise a charge of the first period;
#   charged: that charge was raised (payment_id first_<subscription id>), its outcome is awaited;
#   paid:    the first period's price was collected: the checkout completed;
#   cancel:  the first charge failed: cancel the subscription (no later charge may start it); then failed.
FIRST_PAYMENT_TO_DO = ("verify", "charge", "cancel")  # the states the timer takes a step in
FIRST_PAYMENT_POLL_SECONDS = float(os.environ.get("CASHFREE_FIRST_PAYMENT_POLL_SECONDS", "10"))


def plan_label(plan):
    return f"{plan['name']} ({plan['interval']}ly)"


def cashfree_phone(e164):
    """The payer's phone as Cashfree wants it: an Indian number as its 10 digits ("+919812345678"
    -> "9812345678"), any other in E.164, as identity keeps it."""
    number = phonenumbers.parse(e164)
    if number.country_code == INDIA_CALLING_CODE:
        return phonenumbers.national_significant_number(number)
    return e164


def cashfree_link_id_for(link_id):
    return f"lnk_{link_id.replace('-', '')}"


def plan_id_for(plan):
    return f"{plan['code']}_inr_{plan['amount']}"


def subscription_id_for(checkout_id):
    return f"chk_{checkout_id.replace('-', '')}"


def _answer_field(answer, name):
    """A field Cashfree's answer must carry; its absence is the gateway failing (502), not our bug."""
    value = answer.get(name) if isinstance(answer, dict) else None
    if not value:
        log.warning("cashfree answered without %s: %r", name, answer)
        raise GatewayError(details={"gateway": "cashfree"})
    return value


def _cashfree_time(value):
    """Cashfree's time strings (RFC 3339, often +05:30) as aware datetimes; None if absent."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)


def _unix(moment):
    return int(moment.timestamp()) if moment else None


def signature_of(timestamp, body, secret):
    return base64.b64encode(hmac.new(secret.encode(), (timestamp + body).encode(), hashlib.sha256).digest()).decode()


def _payment_method(method):
    """(type, reference) from an order payment's payment_method, e.g. {"card": {"card_number": ...}}."""
    for kind, details in method.items():
        details = details if isinstance(details, dict) else {}
        if kind == "card":
            return "card", str(details.get("card_number") or "")[-4:] or None
        if kind == "upi":
            return "upi", details.get("upi_id")
        if kind in ("netbanking", "app", "banktransfer"):
            return METHOD_TYPES.get(kind, kind), details.get("netbanking_bank_name") or details.get("provider")
    return None, None


class GatewayCashfreeService(HealthMixin):
    name = "gateway_cashfree"

    db = Database()
    outbox = OutboxRelay(Outbox)

    # -- the gateway contract ------------------------------------------------------------------

    @api_rpc
    def plan_change_policy(self):
        """Cashfree's CHANGE_PLAN takes effect on the next charge: nothing is prorated now."""
        return "next_cycle"

    @api_rpc
    def create_checkout(self, request):
        """A Cashfree subscription for the plan, to be authorised on Cashfree's hosted checkout.

        Returns {gateway_checkout_id, redirect_url, expires_at}: redirect_url is our page that
        opens Cashfree's checkout for the subscription session (Cashfree's JS SDK). Raises
        GatewayError; a retry with the same checkout_id reuses the same idempotency keys, so it
        sends the same body: its times count from the checkout's `created_at`, not from now.
        """
        account, plan, checkout_id = request["account"], request["plan"], request["checkout_id"]
        plan_id = self._ensure_plan(plan)
        subscription_id = subscription_id_for(checkout_id)
        opened_at = datetime.fromtimestamp(request["created_at"], timezone.utc)
        created = cashfree_api.call("POST", "/subscriptions", idempotency_key=f"checkout-{checkout_id}", body={
            "subscription_id": subscription_id,
            "customer_details": {"customer_name": account.get("name") or "Customer",
                                 "customer_email": account.get("email"),
                                 "customer_phone": cashfree_phone(account["phone"])},
            "plan_details": {"plan_id": plan_id},
            "authorization_details": {"authorization_amount": rupees(plan["amount"]),
                                      "authorization_amount_refund": False,
                                      "payment_methods": ["upi", "card", "enach"]},
            "subscription_meta": {"return_url": request["success_url"]},
            "subscription_first_charge_time": rfc3339(add_interval(opened_at, plan["interval"])),
            "subscription_expiry_time": rfc3339(add_interval(opened_at, "year", 10)),
            "subscription_tags": {"account_id": account["id"], "checkout_id": checkout_id, "plan_code": plan["code"]},
        })
        session_id = _answer_field(created, "subscription_session_id")
        self.db.execute(insert(CashfreeSubscription).values(
            subscription_id=subscription_id, account_id=account["id"], checkout_id=checkout_id,
            plan_code=plan["code"], plan_label=plan_label(plan), amount=plan["amount"], interval=plan["interval"],
            session_id=session_id,
        ).on_conflict_do_update(index_elements=["subscription_id"], set_={"session_id": session_id}))
        self.db.commit()
        return {"gateway_checkout_id": subscription_id,
                "redirect_url": f"{settings().public_base_url}/pay/cashfree/subscription/{session_id}",
                "expires_at": request["expires_at"]}

    @api_rpc
    def create_payment_link(self, request):
        """A Cashfree Payment Link for one payment of the plan's price, in INR, expiring when ours
        does, with our ids in its notes. Returns {gateway_link_id, url}. Raises GatewayError; a
        retry with the same link_id reuses the same idempotency key and link id."""
        account, plan = request["account"], request["plan"]
        cashfree_link_id = cashfree_link_id_for(request["link_id"])
        made = cashfree_api.call("POST", "/links", idempotency_key=f"link-{request['link_id']}", body={
            "link_id": cashfree_link_id,
            "link_amount": rupees(request["amount"]),
            "link_currency": "INR",
            "link_purpose": plan_label(plan),
            "customer_details": {"customer_phone": cashfree_phone(account["phone"]),
                                 "customer_email": account.get("email"),
                                 "customer_name": account.get("name") or "Customer"},
            "link_partial_payments": False,
            "link_expiry_time": rfc3339(datetime.fromtimestamp(request["expires_at"], timezone.utc)),
            "link_notes": {"account_id": account["id"], "link_id": request["link_id"], "plan_code": plan["code"]},
            "link_meta": {"return_url": request["success_url"]},
            "link_auto_reminders": False,
        })
        self.db.execute(insert(CashfreeLink).values(
            cashfree_link_id=cashfree_link_id, link_id=request["link_id"], account_id=account["id"],
        ).on_conflict_do_nothing())
        self.db.commit()
        return {"gateway_link_id": cashfree_link_id, "url": _answer_field(made, "link_url")}

    @api_rpc
    def cancel_payment_link(self, request):
        """Cancel a link at Cashfree. {"outcome": "paid"} when Cashfree refuses because it was paid
        (a payment that won the race), else {"outcome": "cancelled"}. Raises GatewayError."""
        cashfree_link_id = request["gateway_link_id"]
        try:
            cashfree_api.call("POST", f"/links/{cashfree_link_id}/cancel", body={},
                              idempotency_key=f"cancel-{cashfree_link_id}")
        except GatewayError as error:
            if refusal_status(error) not in (400, 409, 422):
                raise
            status = cashfree_api.call("GET", f"/links/{cashfree_link_id}").get("link_status")
            if status == "PAID":
                return {"outcome": "paid"}
            if status not in ("CANCELLED", "EXPIRED", "INACTIVE"):
                raise
        return {"outcome": "cancelled"}

    @api_rpc
    def abandon_payment_link(self, request):
        """After a failed create: cancel the link if Cashfree made it after all (404: it did not)."""
        try:
            return self.cancel_payment_link({"gateway_link_id": cashfree_link_id_for(request["link_id"])})
        except GatewayError as error:
            if refusal_status(error) == 404:
                return {"outcome": "cancelled"}
            raise

    @api_rpc
    def expire_checkout(self, gateway_checkout_id):
        """Cancel a subscription nobody authorised yet, so its checkout can no longer be paid. Raises
        GatewayError, cancelling nothing, when Cashfree says it is past INITIALIZED: the payer has
        authorised it, or submitted a mandate the bank is still approving (BANK_APPROVAL_PENDING),
        and its facts are on their way; cancelling would cancel a plan being paid for."""
        current = cashfree_api.call("GET", f"/subscriptions/{gateway_checkout_id}")
        status = current.get("subscription_status")
        if status in ENDED:
            return {"status": status}  # closed already: nothing left to pay
        if status != "INITIALIZED":
            raise GatewayError(f"Cashfree subscription {gateway_checkout_id} is {status}; not cancelled.",
                               {"gateway": "cashfree", "subscription_status": status,
                                "checkout_state": "pending" if status == "BANK_APPROVAL_PENDING" else "complete"})
        answer = self._manage(gateway_checkout_id, "CANCEL", f"expire-{gateway_checkout_id}")
        return {"status": answer.get("subscription_status")}

    @api_rpc
    def change_subscription(self, request):
        """CHANGE_PLAN at Cashfree: the new amount is charged from the next cycle, so nothing changes
        until then: the snapshot keeps the plan paid for and names the new one as pending; the charge
        of the new plan's amount makes it the plan (_on_subscription_payment_success)."""
        subscription_id = request["gateway_subscription_id"]
        plan = request["plan"]
        plan_id = self._ensure_plan(plan)
        answer = self._manage(subscription_id, "CHANGE_PLAN", f"change-{request['change_id']}", {"plan_id": plan_id})
        row = self._subscription_row(subscription_id)
        if plan["code"] == row.plan_code:  # changed back before the new plan was charged
            row.pending_plan_code = row.pending_plan_label = row.pending_amount = row.pending_interval = None
            row.pending_since = None
        else:
            row.pending_plan_code, row.pending_plan_label = plan["code"], plan_label(plan)
            row.pending_amount, row.pending_interval = plan["amount"], plan["interval"]
            row.pending_since = utc_now()
        self.db.commit()
        return self._row_snapshot(row, answer.get("subscription_status"), f"change-{request['change_id']}",
                                  int(time.time()))

    @api_rpc
    def refund_purchase(self, request):
        """Undo a purchase billing cannot keep (a second plan for an account that has one): cancel
        its subscription now and refund, in full, every payment it collected; for a one-off payment
        link, refund its paid order. request: {request_id, account_id, gateway_subscription_id,
        gateway_link_id, reason}. Returns {"refunds": [{gateway_invoice_id, gateway_refund_id,
        amount, currency, refunded_at}]}, the same when asked again (refund ids are derived from the
        payments; `refunded_at` is Cashfree's time for an order refund, else when it was asked). Raises
        GatewayError; a retry finishes what is left."""
        if request.get("gateway_subscription_id"):
            return {"refunds": self._refund_subscription(request["gateway_subscription_id"])}
        if request.get("gateway_link_id"):
            return {"refunds": self._refund_link_orders(request["gateway_link_id"])}
        return {"refunds": []}

    @api_rpc
    def cancel_subscription(self, request):
        """Cancel now, or at the period's end. Cashfree has no end-of-period cancel, so that one is
        scheduled here and carried out by `cancel_due_subscriptions`. Returns the snapshot."""
        subscription_id = request["gateway_subscription_id"]
        row = self._subscription_row(subscription_id)
        if request["at_period_end"] and row.current_period_end and row.current_period_end > utc_now():
            row.cancel_at = row.current_period_end - CANCEL_MARGIN
            self.db.commit()
            answer = cashfree_api.call("GET", f"/subscriptions/{subscription_id}")
        else:
            answer = (self._cancel_now(subscription_id, f"cancel-{request['request_id']}")
                      or cashfree_api.call("GET", f"/subscriptions/{subscription_id}"))
        return self._row_snapshot(row, answer.get("subscription_status"), f"cancel-{request['request_id']}",
                                  int(time.time()))

    @timer(interval=60)
    def cancel_due_subscriptions(self):
        """Carry out the end-of-period cancellations that are due."""
        due = self.db.scalars(select(CashfreeSubscription).where(CashfreeSubscription.cancel_at <= utc_now())).all()
        for row in due:
            try:
                self._cancel_now(row.subscription_id, f"scheduled-cancel-{row.subscription_id}")
            except GatewayError:
                continue  # the next pass tries again
            row.cancel_at = None
            self.db.commit()

    @timer(interval=FIRST_PAYMENT_POLL_SECONDS)
    def settle_first_payments(self):
        """Authorised mandates whose first period is not paid yet: read what the authorisation
        collected, raise the first charge, or cancel after it failed (FIRST_PAYMENT). Not done in the
        webhook that makes the work: its answer must not wait on Cashfree."""
        for subscription_id in self.db.scalars(select(CashfreeSubscription.subscription_id).where(
                CashfreeSubscription.first_payment.in_(FIRST_PAYMENT_TO_DO))).all():
            try:
                for _ in range(len(FIRST_PAYMENT_TO_DO)):  # one step may lead to the next (verify -> charge)
                    if not self._settle_first_payment(subscription_id):
                        break
            except Exception:  # noqa: BLE001  (one subscription must not hold up the others)
                self.db.rollback()
                log.exception("cashfree subscription %s: its first payment could not be settled yet", subscription_id)

    @api_rpc
    def list_payment_methods(self, account_id):
        """How the account's live subscriptions are authorised (UPI, card with last4, netbanking)."""
        rows = self.db.scalars(select(CashfreeSubscription).where(
            CashfreeSubscription.account_id == account_id, CashfreeSubscription.authorized_at.is_not(None))
            .order_by(CashfreeSubscription.authorized_at.desc())).all()
        methods = []
        paid_orders = self.db.scalars(select(CashfreeOrder).where(
            CashfreeOrder.account_id == account_id, CashfreeOrder.method_type.is_not(None))
            .order_by(CashfreeOrder.paid_at.desc())).all()
        for order in paid_orders:  # how whoever paid the account's payment links paid
            methods.append({"id": order.order_id, "type": order.method_type, "brand": None,
                            "last4": order.method_reference if order.method_type == "card" else None,
                            "exp_month": None, "exp_year": None, "is_default": False})
        for row in rows:
            subscription = cashfree_api.call("GET", f"/subscriptions/{row.subscription_id}")
            if SUBSCRIPTION_STATUS.get(subscription.get("subscription_status")) == "cancelled":
                continue
            auth = subscription.get("authorisation_details") or {}
            method = METHOD_TYPES.get(str(auth.get("payment_method") or "").lower(), "other")
            reference = str(auth.get("authorization_reference") or "")
            methods.append({
                "id": reference or row.subscription_id, "type": method, "brand": None,
                "last4": reference[-4:] if method == "card" and len(reference) >= 4 else None,
                "exp_month": None, "exp_year": None, "is_default": False,
            })
        if methods:  # the newest mandate (or, failing that, the newest link payment) is the default
            mandates = [m for m in methods if m["id"] not in {o.order_id for o in paid_orders}]
            (mandates or methods)[0]["is_default"] = True
            methods.sort(key=lambda method: not method["is_default"])
        return methods

    @api_rpc
    def handle_webhook(self, headers, body):
        """Verify, store once, and announce a Cashfree webhook. Raises BadRequest (400) on a missing,
        forged or stale signature (nothing stored). Returns {"status": accepted|duplicate}."""
        headers = {key.lower(): value for key, value in headers.items()}
        timestamp, signature = headers.get("x-webhook-timestamp"), headers.get("x-webhook-signature")
        if not timestamp or not signature:
            raise BadRequest("Missing x-webhook-signature or x-webhook-timestamp.", code="SIGNATURE_MISSING")
        secret = settings().cashfree_client_secret
        expected = signature_of(timestamp, body, secret)
        # An empty key is one anyone can sign with (shared.runner refuses to start without one).
        if not secret or not hmac.compare_digest(expected.encode(), signature.encode()):
            raise BadRequest("The webhook signature is invalid.", code="SIGNATURE_INVALID")
        try:
            age = time.time() - int(timestamp) / 1000
        except ValueError:
            raise BadRequest("x-webhook-timestamp is not a time.", code="SIGNATURE_INVALID") from None
        if abs(age) > SIGNATURE_MAX_AGE_SECONDS:
            raise BadRequest("The webhook is too old (or from the future).", code="SIGNATURE_INVALID")
        event = parse_json(body, exact_decimals=True)  # strict: NaN or a deep nesting is MALFORMED_JSON
        try:
            kind, data = event["type"], event["data"]
            if not isinstance(kind, str) or not isinstance(data, dict):
                raise TypeError(kind)
        except (KeyError, TypeError):
            raise BadRequest("The webhook body is not a Cashfree event.", code="MALFORMED_EVENT") from None

        # Known by what Cashfree signed, not by x-idempotency-key, which nobody signs: a delivery
        # captured in transit could be sent again under a new key (stored and acted on twice), and a
        # key longer than the column failed the insert (a 500, which Cashfree retries).
        event_id = self._natural_id(kind, body)
        inserted = self.db.execute(insert(WebhookEvent).values(id=event_id, type=kind, body=body)
                                   .on_conflict_do_nothing().returning(WebhookEvent.id)).first()
        if inserted is None:
            self.db.rollback()
            return {"status": "duplicate"}
        self._handle(kind, data, event_id, event.get("event_time"))
        self.db.commit()
        return {"status": "accepted"}

    def _handle(self, kind, data, event_id, event_time):
        """A stored webhook's facts into the outbox (the webhook's intake, and a replay's)."""
        event_at = _cashfree_time(event_time) or utc_now()
        handler = getattr(self, f"_on_{kind.lower()}", None)
        if handler is None:
            log.info("cashfree webhook %s stored, not acted on", kind)
        else:
            handler(data, event_id, _unix(event_at))

    # -- reconciliation and replay ---------------------------------------------------------------

    @api_rpc
    def reconcile(self, request):
        """Ask Cashfree for what its webhooks should have told us, and announce it exactly as they
        would have: the same handlers, the same facts under the same keys (a payment is one fact
        whether a webhook or reconciliation found it first, so the other changes nothing).

        request: {"checkouts": [{checkout_id, gateway_checkout_id, account_id}], "subscriptions":
        [{gateway_subscription_id, account_id}], "links": [{link_id, gateway_link_id, account_id}]}:
        what billing still thinks is open. Reads each subscription and its payments, each link and
        its paid orders' payments. Returns {"checkouts": {gateway_checkout_id:
        open|complete|expired|unknown}, "recovered": [{"gateway_event_id", "type"}], "failed": [ids
        Cashfree did not answer for]}.
        """
        self.staged = []
        checkouts, failed = {}, []
        subscription_ids = [item["gateway_checkout_id"] for item in request.get("checkouts") or []]
        subscription_ids += [item["gateway_subscription_id"] for item in request.get("subscriptions") or []]
        for subscription_id in dict.fromkeys(subscription_ids):
            checkouts[subscription_id] = self._reconcile_one(
                subscription_id, self._reconcile_subscription, failed, otherwise="unknown")
        for item in request.get("links") or []:
            self._reconcile_one(item["gateway_link_id"], self._reconcile_link, failed)
        if self.staged:
            log.warning("reconciliation recovered cashfree facts webhooks did not bring: %s", self.staged)
        wanted = {item["gateway_checkout_id"] for item in request.get("checkouts") or []}
        return {"checkouts": {key: value for key, value in checkouts.items() if key in wanted},
                "recovered": self.staged, "failed": failed}

    @api_rpc
    def replay_webhook(self, event_id):
        """Run a stored webhook through its handler again (e.g. after a fix). Facts it already
        produced are not produced again (they carry the same keys): {"event_id", "type", "status":
        "republished"|"unchanged", "facts": [...]}. Raises NotFound for an event we never stored."""
        stored = self.db.get(WebhookEvent, event_id)
        if stored is None:
            raise NotFound(f"No stored Cashfree webhook {event_id}.")
        event = parse_json(stored.body, exact_decimals=True)  # as the intake read it
        self.staged = []
        self._handle(stored.type, event["data"], event_id, event.get("event_time"))
        self.db.commit()
        return {"event_id": event_id, "type": stored.type, "status": "republished" if self.staged else "unchanged",
                "facts": [fact["type"] for fact in self.staged]}

    def _reconcile_one(self, gateway_id, reconcile, failed, otherwise=None):
        """reconcile(gateway_id), or `otherwise` with gateway_id in `failed` when it raises: Cashfree
        did not answer, or answered something we cannot take in (logged). One object must not hold
        up the others, pass after pass; what it staged is rolled back and not reported."""
        staged_before = len(self.staged)
        try:
            return reconcile(gateway_id)
        except Exception as error:
            self.db.rollback()
            del self.staged[staged_before:]
            if not isinstance(error, GatewayError):
                log.exception("reconciliation could not take in cashfree object %s", gateway_id)
            failed.append(gateway_id)
            return otherwise

    def _reconcile_subscription(self, subscription_id):
        """One subscription's payments (oldest first) and status through the webhook handlers; the
        checkout's state at Cashfree (open, complete, expired) or "unknown" if it is not ours."""
        if self._subscription_row(subscription_id) is None:
            self.db.rollback()
            return "unknown"
        # Stamped just before asking: a change Cashfree makes after our read carries a later time.
        asked_at = int(time.time()) - 1
        subscription = cashfree_api.call("GET", f"/subscriptions/{subscription_id}")
        payments = cashfree_api.call("GET", f"/subscriptions/{subscription_id}/payments")
        for payment in sorted(payments, key=lambda p: str(p.get("payment_initiated_date") or "")):
            paid_at = _unix(_cashfree_time(payment.get("payment_initiated_date"))) or asked_at
            event_id = f"reconcile:{payment.get('cf_payment_id')}:{payment.get('payment_status')}"
            if payment.get("payment_type") == "AUTH":
                self._on_subscription_auth_status(payment, event_id, paid_at)
            if payment.get("payment_status") == "SUCCESS":
                self._on_subscription_payment_success(payment, event_id, paid_at)
            elif payment.get("payment_status") == "FAILED":
                self._on_subscription_payment_failed(payment, event_id, paid_at)
        row = self._subscription_row(subscription_id)
        status = subscription.get("subscription_status")
        if status != row.gateway_status:
            self._on_subscription_status_changed({"subscription_details": subscription},
                                                 f"reconcile:{subscription_id}:{status}:{asked_at}", asked_at)
        self.db.commit()
        if status in CHECKOUT_STATE:
            return CHECKOUT_STATE[status]
        # Authorised: its checkout completes once the first period is paid (its facts say when).
        return "expired" if row.authorized_at is None or row.first_payment in ("cancel", "failed") else "complete"

    def _reconcile_link(self, cashfree_link_id):
        """A paid link's successful order payments through the payment webhook's handler."""
        link = cashfree_api.call("GET", f"/links/{cashfree_link_id}")
        if link.get("link_status") != "PAID":
            return
        for listed in cashfree_api.call("GET", f"/links/{cashfree_link_id}/orders"):
            order = cashfree_api.call("GET", f"/orders/{listed['order_id']}")
            if order.get("order_status") != "PAID":
                continue
            for payment in cashfree_api.call("GET", f"/orders/{listed['order_id']}/payments"):
                if payment.get("payment_status") == "SUCCESS":
                    paid_at = _unix(_cashfree_time(payment.get("payment_time"))) or int(time.time())
                    self._order_payment({"order": order, "payment": payment},
                                        f"reconcile:{payment.get('cf_payment_id')}:SUCCESS", paid_at, succeeded=True)
        self.db.commit()

    def _stage(self, fact_type, data, key):
        """A fact into the outbox once per key (what makes it the same fact from any source)."""
        if add_event_once(self.db, Outbox, fact_type, data, f"cashfree:{key}"):
            self.__dict__.setdefault("staged", []).append({"gateway_event_id": data["gateway_event_id"],
                                                           "type": fact_type})

    # -- the first period, and refunds ----------------------------------------------------------

    def _settle_first_payment(self, subscription_id):
        """One step of FIRST_PAYMENT for one subscription, Cashfree asked with no lock held; True
        when it left another step to take now."""
        row = self._subscription_row(subscription_id)
        state, amount, label = row.first_payment, row.amount, row.plan_label
        self.db.commit()
        if state == "verify":
            auth = [payment for payment in cashfree_api.call("GET", f"/subscriptions/{subscription_id}/payments")
                    if payment.get("payment_type") == "AUTH" and payment.get("payment_status") == "SUCCESS"]
            if auth:
                at = _unix(_cashfree_time(auth[0].get("payment_initiated_date"))) or int(time.time())
                self._mandate_authorised(self._subscription_row(subscription_id), auth[0],
                                         f"read:{auth[0].get('cf_payment_id')}:AUTH", at)
        elif state == "charge":
            try:
                cashfree_api.call("POST", "/subscriptions/pay", idempotency_key=f"first-charge-{subscription_id}", body={
                    "subscription_id": subscription_id, "payment_id": f"first_{subscription_id}",
                    "payment_type": "CHARGE", "payment_amount": rupees(amount),
                    "payment_schedule_date": rfc3339(utc_now()), "payment_remarks": f"{label}, first payment"})
            except GatewayError as error:
                refused = refusal_status(error)
                if refused is None or refused >= 500 or refused == 429:
                    raise  # Cashfree did not answer: the next pass asks again
                if refused != 409:  # refused for good (409: this payment_id was raised before)
                    log.warning("cashfree refused the first charge of %s (%s): the checkout fails", subscription_id,
                                refused)
                    now = int(time.time())
                    self._first_payment_failed(self._subscription_row(subscription_id),
                                               f"first-charge-refused:{subscription_id}", now)
                    self.db.commit()
                    return True
            row = self._subscription_row(subscription_id)
            if row.first_payment == "charge":  # its outcome may have arrived already
                row.first_payment = "charged"
        elif state == "cancel":
            self._cancel_now(subscription_id, f"first-payment-failed-{subscription_id}")
            self._subscription_row(subscription_id).first_payment = "failed"
        after = self._subscription_row(subscription_id).first_payment
        self.db.commit()
        return after != state and after in FIRST_PAYMENT_TO_DO

    def _first_payment_failed(self, row, event_id, event_at):
        """The first period could not be collected: no plan (the checkout fails), and the mandate is
        cancelled so that no later charge starts one."""
        row.first_payment = "cancel"
        self._stage_checkout_failed(row, "declined", f"first:{row.subscription_id}:failed", event_id, event_at)

    def _cancel_now(self, subscription_id, idempotency_key):
        """CANCEL at Cashfree; None when it had ended already (Cashfree refuses with 400)."""
        try:
            return self._manage(subscription_id, "CANCEL", idempotency_key)
        except GatewayError as error:
            if refusal_status(error) != 400:
                raise
            return None

    def _refund_subscription(self, subscription_id):
        """Cancel a subscription now and refund every payment it collected, in full."""
        self._cancel_now(subscription_id, f"refund-cancel-{subscription_id}")
        refunds = []
        for payment in cashfree_api.call("GET", f"/subscriptions/{subscription_id}/payments"):
            if payment.get("payment_status") != "SUCCESS" or not paise(payment.get("payment_amount") or 0):
                continue
            cf_payment_id = _answer_field(payment, "cf_payment_id")
            refund_id = f"dup_{cf_payment_id}"
            refund = self._refund_once(
                f"/subscriptions/{subscription_id}/refunds", refund_id, {
                    "subscription_id": subscription_id, "payment_id": _answer_field(payment, "payment_id"),
                    "refund_amount": payment["payment_amount"], "refund_note": "Duplicate purchase"})
            refunds.append(self._refund_made(str(cf_payment_id), refund_id, refund, "inr"))
        return refunds

    def _refund_link_orders(self, cashfree_link_id):
        """Refund, in full, the paid order of a one-off payment link."""
        refunds = []
        for listed in cashfree_api.call("GET", f"/links/{cashfree_link_id}/orders"):
            order_id = _answer_field(listed, "order_id")
            order = cashfree_api.call("GET", f"/orders/{order_id}")
            if order.get("order_status") != "PAID":
                continue
            refund_id = f"dup_{order_id}"[:40]
            refund = self._refund_once(f"/orders/{order_id}/refunds", refund_id, {
                "refund_amount": _answer_field(order, "order_amount"), "refund_note": "Duplicate purchase"})
            refunds.append(self._refund_made(order_id, refund_id, refund,
                                             str(order.get("order_currency") or "INR").lower()))
        return refunds

    @staticmethod
    def _refund_made(gateway_invoice_id, refund_id, refund, currency):
        """What billing records of one refund (the gateway's refund entity, checked)."""
        refunded_at = _cashfree_time(refund.get("processed_at") or refund.get("created_at")) if isinstance(
            refund, dict) else None
        return {"gateway_invoice_id": gateway_invoice_id, "gateway_refund_id": refund_id,
                "amount": paise(_answer_field(refund, "refund_amount")), "currency": currency,
                "refunded_at": _unix(refunded_at) or int(time.time())}

    @staticmethod
    def _refund_once(path, refund_id, body):
        """POST a refund under our own refund_id; one made before (409) is read back instead."""
        try:
            return cashfree_api.call("POST", path, {**body, "refund_id": refund_id}, idempotency_key=refund_id)
        except GatewayError as error:
            if refusal_status(error) != 409:
                raise
            return cashfree_api.call("GET", f"{path}/{refund_id}")

    # -- webhook handlers (each stages gateway.* facts in the outbox) --------------------------

    def _on_subscription_auth_status(self, data, event_id, event_at):
        row = self._subscription_row(data.get("subscription_id"))
        if row is None:
            return
        if data.get("payment_status") == "SUCCESS":
            self._mandate_authorised(row, data, event_id, event_at)
        elif data.get("payment_status") in ("FAILED", "CANCELLED", "USER_DROPPED"):
            self._stage_checkout_failed(row, "declined", f"auth:{row.subscription_id}:{data.get('cf_payment_id')}",
                                        event_id, event_at)

    def _on_subscription_status_changed(self, data, event_id, event_at):
        subscription = data.get("subscription_details") or data
        row = self._subscription_row(subscription.get("subscription_id"))
        if row is None:
            return
        status = SUBSCRIPTION_STATUS.get(subscription.get("subscription_status"), "incomplete")
        row.gateway_status = subscription.get("subscription_status")
        authorisation = subscription.get("authorisation_details") or subscription.get("authorization_details") or {}
        if row.first_payment is None and authorisation.get("authorization_status") == "ACTIVE":
            # Authorised, though SUBSCRIPTION_AUTH_STATUS (with what it collected) may be late or lost:
            # the next first-payment pass reads the AUTH payment, rather than wait for reconciliation.
            row.first_payment = "verify"
        if row.first_payment != "paid":
            # Not paid for: not a plan anyone had. A cancellation only closes its checkout.
            if status == "cancelled":
                self._stage_checkout_failed(row, "expired", f"ended:{row.subscription_id}", event_id, event_at)
            return
        if status == "cancelled":
            row.cancel_at = None
        self._stage("gateway.subscription_updated",
                    self._row_snapshot(row, subscription.get("subscription_status"), event_id, event_at),
                    f"event:{event_id}")

    def _on_subscription_payment_success(self, data, event_id, event_at):
        row = self._subscription_row(data.get("subscription_id"))
        if row is None:
            return
        if data.get("payment_type") == "AUTH":
            self._mandate_authorised(row, data, event_id, event_at)
            return
        charged_at = _cashfree_time(data.get("payment_initiated_date")) or datetime.fromtimestamp(event_at, timezone.utc)
        if row.first_payment in ("charge", "charged"):  # the first period's charge, ours
            self._first_period_paid(row, data, charged_at, event_id, event_at)
            return
        # A renewal pays for the period starting at its scheduled date. A charge of a pending plan's
        # amount made after the change (not an older one read again by reconciliation) makes it the plan.
        changed = (row.pending_plan_code is not None and paise(data["payment_amount"]) == row.pending_amount
                   and charged_at >= row.pending_since)
        if changed:
            row.plan_code, row.plan_label = row.pending_plan_code, row.pending_plan_label
            row.amount, row.interval = row.pending_amount, row.pending_interval
            row.pending_plan_code = row.pending_plan_label = row.pending_amount = row.pending_interval = None
            row.pending_since = None
        start, end = self._paid_for(row, _cashfree_time(data.get("payment_schedule_date")) or charged_at)
        self._stage("gateway.payment_succeeded", self._payment_fact(data, row, event_id, event_at, start, end),
                    f"payment:{self._payment_key(data)}:SUCCESS")
        if changed:
            self._stage("gateway.subscription_updated", self._row_snapshot(row, "ACTIVE", event_id, event_at),
                        f"changed:{self._payment_key(data)}")

    def _on_subscription_payment_failed(self, data, event_id, event_at):
        row = self._subscription_row(data.get("subscription_id"))
        if row is None or data.get("payment_type") == "AUTH":
            return  # a failed authorisation is a declined checkout (SUBSCRIPTION_AUTH_STATUS), not a bill
        if row.first_payment in ("charge", "charged"):
            self._first_payment_failed(row, event_id, event_at)
            return
        self._stage("gateway.payment_failed", self._payment_fact(data, row, event_id, event_at, None, None),
                    f"payment:{self._payment_key(data)}:FAILED")

    def _mandate_authorised(self, row, auth, event_id, event_at):
        """The payer authorised the mandate (its AUTH payment succeeded): the first period is paid if
        the authorisation collected the plan's price, else the next first-payment pass charges it
        (FIRST_PAYMENT)."""
        if row.authorized_at is None:
            row.authorized_at = (_cashfree_time((auth.get("authorization_details") or {}).get("authorization_time"))
                                 or _cashfree_time(auth.get("payment_initiated_date"))
                                 or datetime.fromtimestamp(event_at, timezone.utc))
        if row.first_payment not in (None, "verify"):
            return  # decided already (this is the same authorisation again)
        if paise(auth.get("payment_amount") or 0) == row.amount:
            self._first_period_paid(row, auth, row.authorized_at, event_id, event_at)
            return
        row.first_payment = "charge"
        log.info("cashfree subscription %s: the mandate collected %s, not the plan's price: charging the first period",
                 row.subscription_id, auth.get("payment_amount"))

    def _first_period_paid(self, row, payment, paid_at, event_id, event_at):
        """The first period's price was collected: the checkout completes (billing compares what was
        collected with its quote), the payment starts the first period."""
        row.first_payment = "paid"
        start, end = self._paid_for(row, paid_at)
        base = self._base(row.account_id, event_id, event_at)
        self._stage("gateway.checkout_completed", {
            **base, "checkout_id": row.checkout_id, "gateway_checkout_id": row.subscription_id,
            "gateway_subscription_id": row.subscription_id, "gateway_customer_id": None,
            "collected": {"amount": paise(payment["payment_amount"]),
                          "currency": str(payment.get("payment_currency") or "INR").lower()}},
            f"auth:{row.subscription_id}")
        self._stage("gateway.payment_succeeded", self._payment_fact(payment, row, event_id, event_at, start, end,
                                                                    kind="first payment"),
                    f"payment:{self._payment_key(payment)}:SUCCESS")
        self._stage("gateway.subscription_updated", self._row_snapshot(row, "ACTIVE", event_id, event_at),
                    f"first:{row.subscription_id}:paid")

    @staticmethod
    def _paid_for(row, start):
        """(start, end) of the period a successful charge from `start` pays; the row's period moves
        on to it if it is later than the one held."""
        end = add_interval(start, row.interval)
        if row.current_period_end is None or end > row.current_period_end:
            row.current_period_start, row.current_period_end = start, end
        return start, end

    def _stage_checkout_failed(self, row, reason, key, event_id, event_at):
        self._stage("gateway.checkout_failed", {
            **self._base(row.account_id, event_id, event_at), "checkout_id": row.checkout_id,
            "gateway_checkout_id": row.subscription_id, "reason": reason}, key)

    def _on_payment_success_webhook(self, data, event_id, event_at):
        self._order_payment(data, event_id, event_at, succeeded=True)

    def _on_payment_failed_webhook(self, data, event_id, event_at):
        self._order_payment(data, event_id, event_at, succeeded=False)

    def _on_payment_user_dropped_webhook(self, data, event_id, event_at):
        self._order_payment(data, event_id, event_at, succeeded=False)

    def _order_payment(self, data, event_id, event_at, succeeded):
        """Order payments (payment links): only SUCCESS is final; a FAILED after it changes nothing."""
        order, payment = data.get("order") or {}, data.get("payment") or {}
        tags = order.get("order_tags") or {}
        if not order.get("order_id") or not tags.get("account_id"):
            log.warning("cashfree order event %s names no account of ours; ignored", event_id)
            return
        self.db.execute(insert(CashfreeOrder).values(order_id=order["order_id"], account_id=tags["account_id"])
                        .on_conflict_do_nothing())
        stored = self.db.scalar(select(CashfreeOrder).where(CashfreeOrder.order_id == order["order_id"])
                                .with_for_update())
        if stored.paid_at is not None:
            return
        fact = {
            **self._base(tags["account_id"], event_id, event_at), "gateway_invoice_id": order["order_id"],
            "gateway_subscription_id": None, "amount": paise(payment.get("payment_amount") or order["order_amount"]),
            "currency": "inr", "description": order.get("order_note") or "Payment", "invoice_url": None,
            "period_start": None, "period_end": None,
        }
        if succeeded:
            stored.paid_at = utc_now()
            stored.method_type, stored.method_reference = _payment_method(payment.get("payment_method") or {})
        outcome = "SUCCESS" if succeeded else payment.get("payment_status") or "FAILED"
        self._stage("gateway.payment_succeeded" if succeeded else "gateway.payment_failed", fact,
                    f"payment:{payment.get('cf_payment_id') or event_id}:{outcome}")
        if succeeded and tags.get("link_id"):  # PAYMENT_LINK_EVENT says so too; either may come first
            self._announce_link_paid(tags["link_id"], event_id, event_at, {
                "amount": fact["amount"], "currency": str(payment.get("payment_currency") or order.get("order_currency")
                                                          or "INR").lower()})

    def _on_payment_link_event(self, data, event_id, event_at):
        if data.get("link_status") == "PAID":
            notes = data.get("link_notes") or {}
            link = self._link_by_cashfree_id(data.get("link_id"))
            self._announce_link_paid(notes.get("link_id") or (link.link_id if link else None), event_id, event_at, {
                "amount": paise(data.get("link_amount_paid") or 0),
                "currency": str(data.get("link_currency") or "INR").lower()})

    def _announce_link_paid(self, link_id, event_id, event_at, collected):
        link = self.db.scalar(select(CashfreeLink).where(CashfreeLink.link_id == link_id)) if link_id else None
        if link is None:
            log.warning("cashfree: a payment for a link we did not make (%s); ignored", link_id)
            return
        self._stage("gateway.link_paid", {
            **self._base(link.account_id, event_id, event_at), "link_id": link.link_id,
            "gateway_link_id": link.cashfree_link_id, "gateway_subscription_id": None, "paid_at": int(event_at),
            "collected": collected}, f"link_paid:{link.link_id}")

    def _link_by_cashfree_id(self, cashfree_link_id):
        return self.db.get(CashfreeLink, cashfree_link_id) if cashfree_link_id else None

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _base(account_id, event_id, event_at):
        return {"gateway": "cashfree", "gateway_event_id": event_id, "gateway_event_at": int(event_at),
                "account_id": account_id}

    @staticmethod
    def _payment_key(payment):
        return payment.get("cf_payment_id") or payment.get("payment_id")

    @staticmethod
    def _natural_id(kind, body):
        """A webhook's stored id (what replay_webhook takes): its type and the SHA-256 of its body.
        Cashfree signs the timestamp and the body, and a retry re-signs the same body with a new
        timestamp: the body is the event's identity, so every delivery of it is one row."""
        return f"{kind}:{hashlib.sha256(body.encode()).hexdigest()}"

    def _row_snapshot(self, row, cashfree_status, event_id, event_at):
        """gateway.subscription_updated for one subscription with Cashfree's status. The plan and
        price are the ones paid for (ours): after a CHANGE_PLAN, Cashfree's plan_details already name
        the new plan, which is only pending until its first charge."""
        return {
            **self._base(row.account_id, event_id, event_at),
            "gateway_subscription_id": row.subscription_id, "checkout_id": row.checkout_id,
            "plan_code": row.plan_code, "pending_plan_code": row.pending_plan_code,
            "status": SUBSCRIPTION_STATUS.get(cashfree_status, "incomplete"),
            "amount": row.amount, "currency": "inr",
            "current_period_start": _unix(row.current_period_start),
            "current_period_end": _unix(row.current_period_end),
            "cancel_at_period_end": row.cancel_at is not None,
        }

    def _payment_fact(self, data, row, event_id, event_at, start, end, kind="renewal"):
        return {
            **self._base(row.account_id, event_id, event_at),
            "gateway_invoice_id": str(data.get("cf_payment_id") or data.get("payment_id")),
            "gateway_subscription_id": row.subscription_id, "amount": paise(data["payment_amount"]),
            "currency": "inr", "description": f"{row.plan_label}, {kind}",
            "invoice_url": None, "period_start": _unix(start), "period_end": _unix(end),
        }

    def _subscription_row(self, subscription_id):
        if not subscription_id:
            return None
        return self.db.scalar(select(CashfreeSubscription).where(
            CashfreeSubscription.subscription_id == subscription_id).with_for_update())

    def _manage(self, subscription_id, action, idempotency_key, details=None):
        body = {"subscription_id": subscription_id, "action": action}
        if details:
            body["action_details"] = details
        return cashfree_api.call("POST", f"/subscriptions/{subscription_id}/manage", body, idempotency_key)

    def _ensure_plan(self, plan):
        """The Cashfree plan for this catalogue plan and INR price, created once per scope: with
        other credentials (a sandbox, then production) it is made there too."""
        plan_id, scope = plan_id_for(plan), cashfree_api.account_scope()
        if self.db.get(CashfreePlan, (scope, plan_id)) is None:
            try:
                cashfree_api.call("POST", "/plans", idempotency_key=f"plan-{plan_id}", body={
                    "plan_id": plan_id, "plan_name": plan_label(plan),
                    "plan_type": "PERIODIC", "plan_currency": "INR",
                    "plan_recurring_amount": rupees(plan["amount"]), "plan_max_amount": rupees(plan["amount"]),
                    "plan_intervals": 1, "plan_interval_type": plan["interval"].upper(),
                    "plan_note": plan["code"],
                })
            except GatewayError as error:
                if refusal_status(error) != 409:  # 409: it exists already (made by an earlier attempt)
                    raise
            self.db.execute(insert(CashfreePlan).values(scope=scope, plan_id=plan_id, plan_code=plan["code"],
                                                        interval=plan["interval"]).on_conflict_do_nothing())
            self.db.commit()
        return plan_id
