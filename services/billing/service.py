"""billing: plans, billing accounts, quotes, checkouts, subscriptions and payment history.

Billing picks the payment gateway adapter from the account's country and otherwise does not know
which gateway it talks to: adapters share one RPC contract and one set of gateway.* events. What the
gateways report is applied in purchases.py (one live plan per account, paid for as quoted), made
true at the gateways in settlement.py, checked against them in reconciliation.py; links.py has the
payment links.
"""
import logging
import uuid
from contextlib import contextmanager
from datetime import timedelta

import eventlet
from nameko.rpc import RpcProxy
from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert

from services.billing.catalogue import load_catalogue, priced_plan
from services.billing.links import PaymentLinks, link_dict
from services.billing.models import (
    Alert, BillingAccount, Checkout, Outbox, Payment, PaymentLink, PaymentMethodSnapshot, Quote, Subscription,
)
from services.billing.pricing import quote_lines
from services.billing.purchases import Purchases, is_one_off
from services.billing.reconciliation import Reconciliation
from services.billing.schemas import CancelInput, CheckoutInput, QuoteInput
from services.billing.settlement import GatewaySettlement, checkout_to_close
from shared.config import settings
from shared.consumers import ReplayParkedMixin
from shared.db import Database, LockBusy, advisory_lock, parse_uuid
from shared.errors import Conflict, GatewayError, NotFound, PaymentDeclined, ValidationFailed
from shared.events import COUNTRIES, COUNTRIES_NEEDING_PHONE
from shared.money import CURRENCY_BY_COUNTRY
from shared.outbox import OutboxRelay, rfc3339, utc_now
from shared.permissions import MANAGE_BILLING, VIEW_BILLING, requested_account
from shared.quota import quota_figures
from shared.schemas import Principal, load_or_raise
from shared.service import HealthMixin, api_rpc

log = logging.getLogger(__name__)

# The region decides the gateway; this table is the only place billing names them.
ADAPTER_BY_COUNTRY = {"US": "gateway_stripe", "IN": "gateway_cashfree"}
GATEWAY_BY_COUNTRY = {"US": "stripe", "IN": "cashfree"}

QUOTE_TTL = timedelta(minutes=30)
CHECKOUT_TTL = timedelta(hours=1)
ADAPTER_TIMEOUT_SECONDS = 25
PURCHASE_WAIT_SECONDS = 10  # how long one account's purchase waits for the one before it
USAGE_TIMEOUT_SECONDS = 2


def _iso(moment):
    return rfc3339(moment) if moment else None


def checkout_dict(checkout):
    return {
        "id": str(checkout.id), "gateway": checkout.gateway, "redirect_url": checkout.redirect_url,
        "status": "failed" if checkout.status == "creating" else checkout.status,
        "expires_at": _iso(checkout.expires_at), "quote_id": str(checkout.quote_id), "plan_code": checkout.plan_code,
        "amount": checkout.amount, "currency": checkout.currency, "failure_reason": checkout.failure_reason,
        "created_at": _iso(checkout.created_at), "completed_at": _iso(checkout.completed_at),
    }


def alert_dict(alert):
    return {"id": str(alert.id), "kind": alert.kind, "message": alert.message, "details": alert.details,
            "created_at": _iso(alert.created_at)}


def quote_dict(quote):
    plan = quote.plan
    return {
        "id": str(quote.id), "kind": quote.kind, "plan": plan, "currency": quote.currency, "lines": quote.lines,
        "amount_due": quote.amount_due,
        "recurring": {"amount": plan["amount"], "currency": plan["currency"], "interval": plan["interval"],
                      "starts_at": _iso(quote.recurring_from)},
        "created_at": _iso(quote.created_at), "expires_at": _iso(quote.expires_at),
    }


class BillingService(Purchases, PaymentLinks, GatewaySettlement, Reconciliation, ReplayParkedMixin, HealthMixin):
    name = "billing"
    adapter_timeout_seconds = ADAPTER_TIMEOUT_SECONDS
    ADAPTER_BY_COUNTRY, GATEWAY_BY_COUNTRY = ADAPTER_BY_COUNTRY, GATEWAY_BY_COUNTRY

    db = Database()
    outbox = OutboxRelay(Outbox)
    orgs = RpcProxy("orgs")
    identity = RpcProxy("identity")
    gateway_stripe = RpcProxy("gateway_stripe")
    gateway_cashfree = RpcProxy("gateway_cashfree")
    usage = RpcProxy("usage")

    # -- plans ---------------------------------------------------------------------------------

    @api_rpc
    def list_plans(self, country):
        """Every plan priced for `country` ("US" -> usd, "IN" -> inr)."""
        if country not in COUNTRIES:
            raise ValidationFailed(details={"country": [f"Must be one of: {', '.join(COUNTRIES)}."]})
        return [priced_plan(plan, country) for plan in load_catalogue().values()]

    @api_rpc
    def get_plan(self, code):
        """The catalogue entry for `code` (all prices), or None."""
        return load_catalogue().get(code)

    # -- the billing page ----------------------------------------------------------------------

    @api_rpc
    def summary(self, actor, account_ref):
        """The billing page: account, current plan (None: "Buy Plan"), usage, and can_manage."""
        account, allowed = self._account(actor, account_ref, VIEW_BILLING)
        subscription = self._current_subscription(account)
        plan = self._live_subscription(account)  # the quota is the plan paid for (not a scheduled change)
        quota = self._plan(plan.plan_code)["data_quota_bytes"] if plan else None
        return {
            "account": self._account_dict(account),
            "subscription": self._subscription_dict(subscription) if subscription else None,
            "usage": self._usage_brief(account, quota),
            "can_manage": MANAGE_BILLING in allowed,
        }

    @api_rpc
    def list_alerts(self):
        """For operators (not routed to HTTP): every unresolved alert, oldest first, with its account."""
        rows = self.db.execute(select(Alert, BillingAccount).join(BillingAccount, BillingAccount.id == Alert.account_id)
                               .where(Alert.resolved_at.is_(None)).order_by(Alert.created_at)).all()
        return [{**alert_dict(alert), "account": {"kind": account.kind, "id": account.owner_ref}}
                for alert, account in rows]

    @api_rpc
    def resolve_alert(self, alert_id):
        """For operators (not routed to HTTP): mark an alert decided, so `alerts` stops listing it.
        Returns True when it was open, False when it was resolved already; NotFound otherwise."""
        alert_uuid = parse_uuid(alert_id)
        alert = self.db.get(Alert, alert_uuid, with_for_update=True) if alert_uuid else None
        if alert is None:
            raise NotFound(f"No alert {alert_id}.")
        if alert.resolved_at is not None:
            self.db.rollback()
            return False
        alert.resolved_at = utc_now()
        self.db.commit()
        return True

    @api_rpc
    def describe_account(self, account):
        """For operators (no caller, no permission check: not routed to HTTP): the account's billing
        state. account: {"kind", "id"}. Returns None when billing has no such account, else
        {"account", "subscriptions", "checkouts" (open ones, and closed ones still payable at the
        gateway), "payments" (last 10), "links", "alerts" (unresolved)}."""
        account = self.db.scalar(select(BillingAccount).where(
            BillingAccount.kind == (account or {}).get("kind"),
            BillingAccount.owner_ref == str((account or {}).get("id") or "")))
        if account is None:
            return None
        subscriptions = self.db.scalars(select(Subscription).where(Subscription.account_id == account.id)
                                        .order_by(Subscription.created_at.desc())).all()
        checkouts = self.db.scalars(select(Checkout).where(Checkout.account_id == account.id, or_(
            Checkout.status.in_(("creating", "open")), checkout_to_close())).order_by(Checkout.created_at.desc())).all()
        payments = self.db.scalars(select(Payment).where(Payment.account_id == account.id)
                                   .order_by(Payment.occurred_at.desc(), Payment.recorded_at.desc()).limit(10)).all()
        links = self.db.scalars(select(PaymentLink).where(PaymentLink.account_id == account.id)
                                .order_by(PaymentLink.created_at.desc())).all()
        alerts = self.db.scalars(select(Alert).where(Alert.account_id == account.id, Alert.resolved_at.is_(None))
                                 .order_by(Alert.created_at)).all()
        return {
            "account": {**self._account_dict(account), "name": account.name, "email": account.email},
            "subscriptions": [{**self._subscription_dict(s), "id": str(s.id),
                               "gateway_subscription_id": s.gateway_subscription_id,
                               "purchased_at": _iso(s.purchased_at), "verified_at": _iso(s.verified_at),
                               "hold_reason": s.hold_reason, "gateway_settled_at": _iso(s.gateway_settled_at)}
                              for s in subscriptions],
            "checkouts": [{**checkout_dict(c), "gateway_checkout_id": c.gateway_checkout_id,
                           "gateway_closed_at": _iso(c.gateway_closed_at)} for c in checkouts],
            "payments": [{"date": _iso(p.occurred_at), "status": p.status, "amount": p.amount,
                          "currency": p.currency, "description": p.description,
                          "gateway_invoice_id": p.gateway_invoice_id} for p in payments],
            "links": [link_dict(link) for link in links],
            "alerts": [alert_dict(alert) for alert in alerts],
        }

    @api_rpc
    def create_quote(self, actor, account_ref, data):
        """An immutable price summary for buying `plan_code`, or changing to it (with proration).
        Raises ValidationFailed for an unknown plan, Conflict ALREADY_ON_PLAN for the current one."""
        account, _ = self._account(actor, account_ref, MANAGE_BILLING)
        data = load_or_raise(QuoteInput(), data)
        quote = self._make_quote(account, data["plan_code"], actor["id"])
        self.db.commit()
        return quote_dict(quote)

    @api_rpc
    def create_checkout(self, actor, account_ref, data):
        """"Pay Now": a hosted checkout at the account's gateway for a quote (or a plan, quoted on
        the spot). A plan change is applied to the existing subscription instead, with proration.

        Idempotent per quote: asking again returns the same open checkout, and after a gateway
        failure retries it under the same id (so the gateway's idempotency key is the same too).
        One account's purchases are made one at a time, end to end, and a new hosted checkout
        first closes the account's other open ones at the gateway: only one is ever payable.
        Raises GatewayError (502) when the gateway fails (no open checkout is left behind then),
        PaymentDeclined (402) when a plan change's charge was declined (the plan stays as it was),
        Conflict PURCHASE_PENDING while an earlier purchase's payment is still being confirmed.
        """
        account, granted = self._authorized_account(actor, account_ref, MANAGE_BILLING)
        data = load_or_raise(CheckoutInput(), data)
        payer = self._payer_contact(actor, account, granted["account"]["owner_id"])
        with self._purchases_of(account):
            account = self._locked_account(str(account.id))
            if "plan_code" in data:
                quote = self._make_quote(account, data["plan_code"], actor["id"])
            else:
                quote = self._quote_of(account, data["quote_id"])

            checkout = self.db.scalar(select(Checkout).where(Checkout.quote_id == quote.id))
            if checkout is not None and checkout.status in ("open", "completed"):
                self.db.commit()
                return checkout_dict(checkout)
            if (checkout is not None and checkout.status in ("expired", "failed")
                    and checkout.failure_reason != "gateway_error"):
                raise Conflict(f"This quote's checkout is {checkout.status}; ask for a new quote.",
                               code="CHECKOUT_CLOSED")
            if quote.expires_at <= utc_now():
                raise Conflict("This quote has expired; ask for a new one.", code="QUOTE_EXPIRED")
            self._check_quote_still_fits(account, quote)
            self.db.commit()  # the quote made on the spot is kept; no lock held while gateways are asked

            if quote.kind == "new":
                self._close_other_open_checkouts(account, keep=checkout)
            account = self._locked_account(str(account.id))
            if checkout is None:
                checkout = Checkout(
                    id=uuid.uuid4(), account_id=account.id, quote_id=quote.id, kind=quote.kind,
                    plan_code=quote.plan["code"], amount=quote.amount_due, currency=quote.currency,
                    gateway=account.gateway, expires_at=utc_now() + CHECKOUT_TTL, created_by=actor["id"],
                    status="creating",
                )
                self.db.add(checkout)
            checkout.status, checkout.failure_reason = "creating", None
            self.db.commit()  # the record exists before the gateway hears of it: a crash leaves a retryable row

            try:
                if quote.kind == "new":
                    self._open_hosted_checkout(account, quote, checkout, payer)
                else:
                    self._change_plan(account, quote, checkout)
            except PaymentDeclined as declined:
                checkout.status, checkout.failure_reason = "failed", "payment_declined"
                self.db.commit()
                raise PaymentDeclined("The payment for the plan change was declined; your plan has not changed.",
                                      {**declined.details, "checkout_id": str(checkout.id)}) from None
            except GatewayError as error:
                checkout.status, checkout.failure_reason = "failed", "gateway_error"
                self.db.commit()
                # Name the checkout: the same quote retries it under the same id (and idempotency key).
                raise GatewayError(error.message, {**error.details, "checkout_id": str(checkout.id)}) from None
            self.db.commit()
            return checkout_dict(checkout)

    @api_rpc
    def get_checkout(self, actor, account_ref, checkout_id):
        account, _ = self._account(actor, account_ref, VIEW_BILLING)
        checkout_uuid = parse_uuid(checkout_id)
        checkout = self.db.get(Checkout, checkout_uuid) if checkout_uuid else None
        if checkout is None or checkout.account_id != account.id:
            raise NotFound("No such checkout.")
        if checkout.status == "open" and checkout.expires_at <= utc_now():
            checkout.status = "expired"
            self.db.commit()
        return checkout_dict(checkout)

    @api_rpc
    def list_history(self, actor, account_ref):
        """Payments and failed attempts, newest first."""
        account, _ = self._account(actor, account_ref, VIEW_BILLING)
        payments = self.db.scalars(
            select(Payment).where(Payment.account_id == account.id)
            .order_by(Payment.occurred_at.desc(), Payment.recorded_at.desc())
        ).all()
        return [{
            "id": str(p.id), "date": _iso(p.occurred_at), "description": p.description, "amount": p.amount,
            "currency": p.currency, "status": p.status, "invoice_url": p.invoice_url,
        } for p in payments]

    @api_rpc
    def list_payment_methods(self, actor, account_ref):
        """The gateway's current list; the last known one (stale: true) when it cannot be reached."""
        account, _ = self._account(actor, account_ref, VIEW_BILLING)
        try:
            methods = self._call_adapter(account, "list_payment_methods", str(account.id))
        except GatewayError:
            snapshot = self.db.get(PaymentMethodSnapshot, account.id)
            return {"items": snapshot.methods if snapshot else [], "stale": True}
        self.db.execute(insert(PaymentMethodSnapshot).values(account_id=account.id, methods=methods)
                        .on_conflict_do_update(index_elements=["account_id"],
                                               set_={"methods": methods, "updated_at": utc_now()}))
        self.db.commit()
        return {"items": methods, "stale": False}

    @api_rpc
    def cancel_subscription(self, actor, account_ref, data):
        """Cancel the current plan, at the end of the paid period by default. Returns the subscription."""
        account, _ = self._account(actor, account_ref, MANAGE_BILLING)
        data = load_or_raise(CancelInput(), data)
        with self._purchases_of(account):
            subscription = self._live_subscription(account)
            if subscription is None:
                raise Conflict("There is no plan to cancel.", code="NO_SUBSCRIPTION")
            if subscription.cancel_at_period_end and data["at_period_end"]:
                return self._subscription_dict(subscription)
            if is_one_off(subscription):  # paid once through a link: nothing at the gateway to stop
                self._end_locally(self._locked_account(str(account.id)), subscription)
                self.db.commit()
                return self._subscription_dict(subscription)
            request = {"request_id": f"{subscription.id}-{'end' if data['at_period_end'] else 'now'}",
                       "gateway_subscription_id": subscription.gateway_subscription_id,
                       "account_id": str(account.id), "at_period_end": data["at_period_end"]}
            self.db.commit()  # no lock held while the gateway is asked
            snapshot = self._call_adapter(account, "cancel_subscription", request)
            account = self._locked_account(str(account.id))
            subscription = self._apply_snapshot(account, snapshot, authoritative=True)
            self.db.commit()
            return self._subscription_dict(subscription)

    def _usage_brief(self, account, quota):
        """Billing owns the plan's quota, usage the measurement. A silent usage service leaves
        `used_bytes` unknown (None) rather than failing the billing page."""
        try:
            with eventlet.Timeout(USAGE_TIMEOUT_SECONDS):
                used = self.usage.summary_for({"kind": account.kind, "id": account.owner_ref})["used_bytes"]
        except Exception:  # noqa: BLE001  (a timeout, an unknown service, a usage bug: same answer)
            log.warning("usage for account %s unavailable", account.id, exc_info=True)
            used = None
        return quota_figures(used, quota)

    # -- accounts and permissions --------------------------------------------------------------

    def _account(self, actor, account_ref, action, lock=False):
        """(BillingAccount, the actions the caller may take on it) after orgs.authorize; the
        account is made on first use. `lock`: the account's row lock, for this transaction."""
        account, granted = self._authorized_account(actor, account_ref, action, lock)
        return account, granted["actions"]

    def _authorized_account(self, actor, account_ref, action, lock=False):
        """(BillingAccount, orgs.authorize's grant: {account: {..., owner_id}, role, actions})."""
        actor = load_or_raise(Principal(), actor)
        ref = requested_account(actor, account_ref)
        granted = self.orgs.authorize(actor["id"], ref, action)
        subject = granted["account"]
        country = subject.get("country") or actor["country"]
        name = subject.get("name") or actor["name"]
        query = select(BillingAccount).where(BillingAccount.kind == ref["kind"],
                                             BillingAccount.owner_ref == subject["id"])
        query = query.with_for_update() if lock else query
        account = self.db.scalar(query)
        if account is None:  # made on first use only: the insert cost every call a round trip
            self.db.execute(insert(BillingAccount).values(
                id=uuid.uuid4(), kind=ref["kind"], owner_ref=subject["id"], country=country,
                currency=CURRENCY_BY_COUNTRY[country], gateway=GATEWAY_BY_COUNTRY[country], name=name,
                email=actor["email"],
            ).on_conflict_do_nothing(constraint="uq_accounts_kind_owner"))
            self.db.commit()  # even a read-only call keeps the account it made
            account = self.db.scalar(query)
        return account, granted

    @contextmanager
    def _purchases_of(self, account):
        """One account's purchases (checkouts, plan changes, payment links, cancellations) run one at
        a time, end to end, gateway calls included: a row lock would end with the first commit, and
        two Pay Nows could each open a payable checkout. Webhook handlers take the row lock only.
        A purchase that waits PURCHASE_WAIT_SECONDS for another answers Conflict PURCHASE_IN_PROGRESS
        rather than hold a worker (and a connection) while the first one's gateway is slow."""
        self.db.commit()  # a waiter holds no transaction, nor a second connection, while it waits
        try:
            with advisory_lock(self.db, f"billing.purchases:{account.id}", PURCHASE_WAIT_SECONDS):
                yield
        except LockBusy:
            raise Conflict("Another payment for this account is being set up; try again in a moment.",
                           code="PURCHASE_IN_PROGRESS") from None

    def _payer_contact(self, actor, account, owner_id):
        """{email, name, phone} of whoever pays for `account` in the gateway's eyes: its owner (the
        user of a personal account, the owner of an organization, whoever of its managers opens the
        page), `owner_id` from the caller's grant. Raises ValidationFailed PHONE_REQUIRED (422) when
        the account's gateway needs a phone (Cashfree) and they have none; callers ask before they
        record anything."""
        payer = self.identity.get_user(owner_id)
        if account.country in COUNTRIES_NEEDING_PHONE and not payer["phone"]:
            whose = "your" if owner_id == actor["id"] else "the organization owner's"
            message = f"The payment gateway needs the payer's phone number: add one to {whose} profile first."
            raise ValidationFailed(message, details={"phone": [message]}, code="PHONE_REQUIRED")
        return {"email": payer["email"], "name": payer["name"], "phone": payer["phone"]}

    @staticmethod
    def _gateway_account(account, payer=None):
        """The account as adapter requests name it: our id, and the payer's contact when the gateway
        is to be given one (`_payer_contact`)."""
        return {"id": str(account.id), **(payer or {})}

    @staticmethod
    def _account_dict(account):
        return {"kind": account.kind, "id": account.owner_ref, "billing_account_id": str(account.id),
                "country": account.country, "currency": account.currency, "gateway": account.gateway}

    @staticmethod
    def _event_account(account):
        return {"billing_account_id": str(account.id), "account": {"kind": account.kind, "id": account.owner_ref}}

    # -- quotes and checkouts ------------------------------------------------------------------

    def _plan(self, code):
        plan = load_catalogue().get(code)
        if plan is None:
            raise ValidationFailed(details={"plan_code": ["Unknown plan."]})
        return plan

    def _plan_for(self, account, code):
        return priced_plan(self._plan(code), account.country)

    def _make_quote(self, account, plan_code, created_by):
        plan = self._plan_for(account, plan_code)
        current = self._live_subscription(account)
        self._refuse_the_plan_held(current, plan_code)
        if current is not None and is_one_off(current):
            # A period paid once through a link has nothing at the gateway to change: a new
            # subscription is bought at full price, and the one-off period ends when it starts.
            lines, amount_due, recurring_from = quote_lines(plan, utc_now())
            kind = "new"
        elif current is not None:
            old_plan = {**self._plan_for(account, current.plan_code), "amount": current.amount}
            policy = self._call_adapter(account, "plan_change_policy")
            lines, amount_due, recurring_from = quote_lines(plan, utc_now(), {
                "plan": old_plan, "period_start": current.current_period_start,
                "period_end": current.current_period_end}, policy)
            kind = "change"
        else:
            lines, amount_due, recurring_from = quote_lines(plan, utc_now())
            kind = "new"
        quote = Quote(id=uuid.uuid4(), account_id=account.id, kind=kind, plan=plan,
                      from_subscription_id=current.id if current is not None else None, currency=account.currency,
                      lines=lines, amount_due=amount_due, recurring_from=recurring_from,
                      created_by=created_by, created_at=utc_now(),
                      expires_at=utc_now() + QUOTE_TTL)
        self.db.add(quote)
        self.db.flush()
        return quote

    def _quote_of(self, account, quote_id):
        quote_uuid = parse_uuid(quote_id)
        quote = self.db.get(Quote, quote_uuid) if quote_uuid else None
        if quote is None or quote.account_id != account.id:
            raise NotFound("No such quote.")
        return quote

    def _check_quote_still_fits(self, account, quote):
        """A quote priced against the state it saw; if the plan changed since, it no longer holds."""
        self._refuse_while_a_purchase_is_pending(account)
        current = self._live_subscription(account)
        current_id = current.id if current is not None else None
        if current_id != quote.from_subscription_id:
            raise Conflict("Your plan changed since this quote; ask for a new one.", code="QUOTE_STALE")
        self._refuse_the_plan_held(current, quote.plan["code"])

    @staticmethod
    def _refuse_the_plan_held(current, plan_code):
        """Conflict ALREADY_ON_PLAN for the plan the account holds, unless a change to another is
        scheduled for the next cycle (Cashfree): choosing it again cancels that change."""
        if current is not None and current.plan_code == plan_code and not current.pending_plan_code:
            raise Conflict("This is already your plan.", code="ALREADY_ON_PLAN")

    def _close_other_open_checkouts(self, account, keep):
        """Only one hosted checkout may be payable at a time, or a payer could buy two plans: the
        account's others are closed at the gateway first, those past their expiry too (a Cashfree
        subscription nobody authorised stays payable until it is cancelled there). A gateway that
        cannot close one fails this Pay Now (GatewayError) rather than open a second."""
        others = self.db.scalars(select(Checkout.id).where(
            Checkout.account_id == account.id, Checkout.kind == "new", Checkout.id != (keep.id if keep else None),
            Checkout.status.in_(("open", "expired", "failed")), Checkout.gateway_checkout_id.is_not(None),
            Checkout.gateway_closed_at.is_(None))).all()
        self.db.commit()
        for other in others:
            try:
                self._close_checkout_at_gateway(other, raise_on_failure=True)
            except GatewayError as error:
                if error.details.get("checkout_state") in ("complete", "pending"):
                    raise Conflict("A payment through another checkout of this account is going through; "
                                   "look at the billing page again in a moment.", code="PAYMENT_IN_PROGRESS",
                                   details={"checkout_id": str(other)}) from None
                raise

    def _open_hosted_checkout(self, account, quote, checkout, payer):
        base = settings().public_base_url
        opened = self._call_adapter(account, "create_checkout", {
            "checkout_id": str(checkout.id),
            "account": self._gateway_account(account, payer),
            "plan": quote.plan,
            "success_url": f"{base}/billing/checkout/{checkout.id}/return",
            "cancel_url": f"{base}/billing/checkout/{checkout.id}/cancelled",
            "expires_at": int(checkout.expires_at.timestamp()),
            "created_at": int(checkout.created_at.timestamp()),  # a retry must send the gateway the same request
        })
        checkout.status = "open"
        checkout.gateway_checkout_id = opened["gateway_checkout_id"]
        checkout.redirect_url = opened["redirect_url"]

    def _change_plan(self, account, quote, checkout):
        """Change the plan at the gateway. Stripe charges the proration first and applies nothing
        when it is declined (PaymentDeclined); Cashfree schedules the new plan for the next cycle,
        and its quota applies only once that charge succeeds (pending_plan_code)."""
        subscription = self.db.get(Subscription, quote.from_subscription_id)
        snapshot = self._call_adapter(account, "change_subscription", {
            "change_id": str(checkout.id), "gateway_subscription_id": subscription.gateway_subscription_id,
            "account_id": str(account.id), "checkout_id": str(checkout.id), "plan": quote.plan,
        })
        self._locked_account(str(account.id))  # after the gateway call: serialise with its webhooks again
        self._apply_snapshot(account, snapshot, authoritative=True)
        self._complete(checkout)
        checkout.redirect_url = f"{settings().public_base_url}/billing/checkout/{checkout.id}/return"

    def _call_adapter(self, account, method, *args):
        """Call the account's gateway adapter; a silent adapter is a gateway failure (502)."""
        adapter = getattr(self, ADAPTER_BY_COUNTRY[account.country])
        try:
            with eventlet.Timeout(self.adapter_timeout_seconds):
                return getattr(adapter, method)(*args)
        except eventlet.Timeout:
            raise GatewayError(details={"gateway": account.gateway}) from None
