"""billing: plans, billing accounts, quotes, checkouts, subscriptions and payment history.

Billing picks the payment gateway adapter from the account's country and otherwise does not know
which gateway it talks to: adapters share one RPC contract and one set of gateway.* events.
"""
import logging
import uuid
from datetime import timedelta

import eventlet
from nameko.rpc import RpcProxy
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from services.billing.catalogue import load_catalogue, priced_plan
from services.billing.links import PaymentLinks, link_dict
from services.billing.models import (
    BillingAccount, Checkout, Inbox, Outbox, Payment, PaymentLink, PaymentMethodSnapshot, Quote, Subscription,
)
from services.billing.pricing import quote_lines
from services.billing.reconciliation import Reconciliation
from services.billing.schemas import CancelInput, CheckoutInput, QuoteInput
from services.billing.subscriptions import from_unix, is_newer, next_payment_date
from shared.config import settings
from shared.consumers import ReplayParkedMixin, consumes
from shared.db import Database, parse_uuid
from shared.errors import Conflict, GatewayError, NotFound, ValidationFailed
from shared.events import COUNTRIES
from shared.money import CURRENCY_BY_COUNTRY
from shared.outbox import OutboxRelay, add_event, rfc3339, utc_now
from shared.permissions import MANAGE_BILLING, VIEW_BILLING, requested_account
from shared.quota import quota_figures
from shared.schemas import Principal, load_or_raise
from shared.service import HealthMixin, api_rpc

log = logging.getLogger(__name__)

# The region decides the gateway; this table is the only place billing names them.
ADAPTER_BY_COUNTRY = {"US": "gateway_stripe", "IN": "gateway_cashfree"}
GATEWAY_BY_COUNTRY = {"US": "stripe", "IN": "cashfree"}
ADAPTER_SOURCES = tuple(ADAPTER_BY_COUNTRY.values())

QUOTE_TTL = timedelta(minutes=30)
CHECKOUT_TTL = timedelta(hours=1)
ADAPTER_TIMEOUT_SECONDS = 25
USAGE_TIMEOUT_SECONDS = 2
LIVE_SUBSCRIPTION_STATUSES = ("incomplete", "active", "past_due")


def is_one_off(subscription):
    """A period paid once (a one-off link payment): no subscription behind it at the gateway."""
    return subscription.gateway_subscription_id.startswith("link:")


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


def quote_dict(quote):
    plan = quote.plan
    return {
        "id": str(quote.id), "kind": quote.kind, "plan": plan, "currency": quote.currency, "lines": quote.lines,
        "amount_due": quote.amount_due,
        "recurring": {"amount": plan["amount"], "currency": plan["currency"], "interval": plan["interval"],
                      "starts_at": _iso(quote.recurring_from)},
        "created_at": _iso(quote.created_at), "expires_at": _iso(quote.expires_at),
    }


class BillingService(PaymentLinks, Reconciliation, ReplayParkedMixin, HealthMixin):
    name = "billing"
    adapter_timeout_seconds = ADAPTER_TIMEOUT_SECONDS
    ADAPTER_BY_COUNTRY, GATEWAY_BY_COUNTRY = ADAPTER_BY_COUNTRY, GATEWAY_BY_COUNTRY

    db = Database()
    outbox = OutboxRelay(Outbox)
    orgs = RpcProxy("orgs")
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
        live = subscription is not None and subscription.status in ("active", "past_due")
        quota = self._plan(subscription.plan_code)["data_quota_bytes"] if live else None
        return {
            "account": self._account_dict(account),
            "subscription": self._subscription_dict(subscription) if subscription else None,
            "usage": self._usage_brief(account, quota),
            "can_manage": MANAGE_BILLING in allowed,
        }

    @api_rpc
    def describe_account(self, account):
        """For operators (no caller, no permission check: not routed to HTTP): the account's billing
        state. account: {"kind", "id"}. Returns None when billing has no such account, else
        {"account", "subscriptions", "checkouts" (open ones), "payments" (last 10), "links"}."""
        account = self.db.scalar(select(BillingAccount).where(
            BillingAccount.kind == (account or {}).get("kind"),
            BillingAccount.owner_ref == str((account or {}).get("id") or "")))
        if account is None:
            return None
        subscriptions = self.db.scalars(select(Subscription).where(Subscription.account_id == account.id)
                                        .order_by(Subscription.created_at.desc())).all()
        checkouts = self.db.scalars(select(Checkout).where(Checkout.account_id == account.id,
                                                           Checkout.status.in_(("creating", "open")))
                                    .order_by(Checkout.created_at.desc())).all()
        payments = self.db.scalars(select(Payment).where(Payment.account_id == account.id)
                                   .order_by(Payment.occurred_at.desc(), Payment.recorded_at.desc()).limit(10)).all()
        links = self.db.scalars(select(PaymentLink).where(PaymentLink.account_id == account.id)
                                .order_by(PaymentLink.created_at.desc())).all()
        return {
            "account": {**self._account_dict(account), "name": account.name, "email": account.email},
            "subscriptions": [{**self._subscription_dict(s), "id": str(s.id),
                               "gateway_subscription_id": s.gateway_subscription_id,
                               "purchased_at": _iso(s.purchased_at)} for s in subscriptions],
            "checkouts": [{**checkout_dict(c), "gateway_checkout_id": c.gateway_checkout_id} for c in checkouts],
            "payments": [{"date": _iso(p.occurred_at), "status": p.status, "amount": p.amount,
                          "currency": p.currency, "description": p.description,
                          "gateway_invoice_id": p.gateway_invoice_id} for p in payments],
            "links": [link_dict(link) for link in links],
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
        Raises GatewayError (502) when the gateway fails; no open checkout is left behind then.
        """
        account, _ = self._account(actor, account_ref, MANAGE_BILLING, lock=True)
        data = load_or_raise(CheckoutInput(), data)
        if "plan_code" in data:
            quote = self._make_quote(account, data["plan_code"], actor["id"])
        else:
            quote = self._quote_of(account, data["quote_id"])

        checkout = self.db.scalar(select(Checkout).where(Checkout.quote_id == quote.id))
        if checkout is not None and checkout.status in ("open", "completed"):
            self.db.commit()
            return checkout_dict(checkout)
        if checkout is not None and checkout.status in ("expired", "failed") and checkout.failure_reason != "gateway_error":
            raise Conflict(f"This quote's checkout is {checkout.status}; ask for a new quote.", code="CHECKOUT_CLOSED")
        if quote.expires_at <= utc_now():
            raise Conflict("This quote has expired; ask for a new one.", code="QUOTE_EXPIRED")
        self._check_quote_still_fits(account, quote)

        if checkout is None:
            checkout = Checkout(
                id=uuid.uuid4(), account_id=account.id, quote_id=quote.id, kind=quote.kind,
                plan_code=quote.plan["code"], amount=quote.amount_due, currency=quote.currency,
                gateway=account.gateway, expires_at=utc_now() + CHECKOUT_TTL, created_by=actor["id"],
                status="creating",
            )
            self.db.add(checkout)
        checkout.status, checkout.failure_reason = "creating", None
        if quote.kind == "new":
            self._close_other_open_checkouts(account, checkout)
        self.db.commit()  # the record exists before the gateway hears of it: a crash leaves a retryable row

        try:
            if quote.kind == "new":
                self._open_hosted_checkout(account, quote, checkout, actor)
            else:
                self._change_plan(account, quote, checkout)
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
        account, _ = self._account(actor, account_ref, MANAGE_BILLING, lock=True)
        data = load_or_raise(CancelInput(), data)
        subscription = self._live_subscription(account)
        if subscription is None:
            raise Conflict("There is no plan to cancel.", code="NO_SUBSCRIPTION")
        if subscription.cancel_at_period_end and data["at_period_end"]:
            return self._subscription_dict(subscription)
        if is_one_off(subscription):  # paid once through a link: nothing at the gateway to stop
            self._end_locally(account, subscription)
            self.db.commit()
            return self._subscription_dict(subscription)
        snapshot = self._call_adapter(account, "cancel_subscription", {
            "request_id": f"{subscription.id}-{'end' if data['at_period_end'] else 'now'}",
            "gateway_subscription_id": subscription.gateway_subscription_id,
            "account_id": str(account.id), "at_period_end": data["at_period_end"],
        })
        self._locked_account(str(account.id))
        subscription = self._apply_snapshot(account, snapshot, authoritative=True)
        self.db.commit()
        return self._subscription_dict(subscription)

    # -- what the gateways tell us -------------------------------------------------------------

    @consumes("gateway.checkout_completed", sources=ADAPTER_SOURCES, inbox=Inbox)
    def on_checkout_completed(self, event):
        account = self._locked_account(event["account_id"])
        checkout = self._checkout(event["checkout_id"], account) if account else None
        if account is None or checkout is None:
            log.warning("checkout_completed for unknown account/checkout: %s", event)
            return
        self._complete(checkout)
        if event["gateway_subscription_id"]:
            subscription = self._subscription_by_gateway_id(event["gateway_subscription_id"], account)
            if subscription is None:  # the subscription's own events are late: start from the checkout
                subscription = self._new_subscription(account, event["gateway_subscription_id"], checkout.id,
                                                      self._plan_for(account, checkout.plan_code), "active")
            self._announce_purchase_once(account, subscription)

    @consumes("gateway.checkout_failed", sources=ADAPTER_SOURCES, inbox=Inbox)
    def on_checkout_failed(self, event):
        account = self._locked_account(event["account_id"])
        checkout = self._checkout(event["checkout_id"], account) if account else None
        if checkout is None or checkout.status not in ("open", "creating"):
            return  # a late "expired" never undoes a completed payment
        checkout.status = "failed" if event["reason"] == "declined" else "expired"
        checkout.failure_reason = event["reason"]

    @consumes("gateway.subscription_updated", sources=ADAPTER_SOURCES, inbox=Inbox)
    def on_subscription_updated(self, event):
        account = self._locked_account(event["account_id"])
        if account is None:
            log.warning("subscription snapshot for unknown account: %s", event)
            return
        self._apply_snapshot(account, event)

    @consumes("gateway.payment_succeeded", sources=ADAPTER_SOURCES, inbox=Inbox)
    def on_payment_succeeded(self, event):
        account = self._locked_account(event["account_id"])
        if account is None:
            return
        new = self._record_payment(account, event, "paid")
        subscription = self._subscription_by_gateway_id(event["gateway_subscription_id"], account)
        if subscription is None or subscription.status == "cancelled":
            return
        period_end, old_end = from_unix(event["period_end"]), subscription.current_period_end
        # A payment we already had (the same invoice again under another event id: a replay, a
        # reconciliation) was applied then; for the current period it must not make a plan whose
        # renewal has since failed active again. A later period's payment is never a stale one.
        if period_end and (old_end is None or period_end > old_end or (new and period_end == old_end)):
            # A paid invoice for this period or a later one: the plan is paid up to its end.
            subscription.current_period_start = from_unix(event["period_start"])
            subscription.current_period_end = period_end
            subscription.status = "active"
            self._announce_renewal(account, subscription, old_end)
        self._announce_purchase_once(account, subscription)

    @consumes("gateway.payment_failed", sources=ADAPTER_SOURCES, inbox=Inbox)
    def on_payment_failed(self, event):
        account = self._locked_account(event["account_id"])
        if account is None:
            return
        if not self._record_payment(account, event, "failed"):
            return
        subscription = self._subscription_by_gateway_id(event["gateway_subscription_id"], account)
        paid_since = self.db.scalar(select(Payment.id).where(
            Payment.gateway_invoice_id == event["gateway_invoice_id"], Payment.status == "paid"))
        if subscription is not None and subscription.status == "active" and paid_since is None:
            subscription.status = "past_due"  # a failure delivered after the retry's success changes nothing
        add_event(self.db, Outbox, "payment.failed", {
            **self._event_account(account), "gateway": account.gateway,
            "subscription_id": str(subscription.id) if subscription else None,
            "gateway_invoice_id": event["gateway_invoice_id"], "amount": event["amount"],
            "currency": event["currency"],
        })

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
        account is made on first use."""
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
        return account, granted["actions"]

    def _locked_account(self, account_id):
        account_uuid = parse_uuid(account_id)
        if account_uuid is None:
            return None
        return self.db.scalar(select(BillingAccount).where(BillingAccount.id == account_uuid).with_for_update())

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
        if current is not None and current.plan_code == plan_code:
            raise Conflict("This is already your plan.", code="ALREADY_ON_PLAN")
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
        current = self._live_subscription(account)
        current_id = current.id if current is not None else None
        if current_id != quote.from_subscription_id:
            raise Conflict("Your plan changed since this quote; ask for a new one.", code="QUOTE_STALE")
        if current is not None and current.plan_code == quote.plan["code"]:
            raise Conflict("This is already your plan.", code="ALREADY_ON_PLAN")

    def _close_other_open_checkouts(self, account, keep):
        """Only one hosted checkout may be payable at a time, or a payer could buy two plans."""
        others = self.db.scalars(select(Checkout).where(
            Checkout.account_id == account.id, Checkout.status == "open", Checkout.id != keep.id,
            Checkout.kind == "new")).all()
        for other in others:
            if other.gateway_checkout_id and other.expires_at > utc_now():
                self._call_adapter(account, "expire_checkout", other.gateway_checkout_id)
            other.status, other.failure_reason = "expired", "superseded"

    def _open_hosted_checkout(self, account, quote, checkout, actor):
        base = settings().public_base_url
        opened = self._call_adapter(account, "create_checkout", {
            "checkout_id": str(checkout.id),
            "account": {"id": str(account.id), "email": account.email, "name": account.name},
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

    def _checkout(self, checkout_id, account):
        checkout_uuid = parse_uuid(checkout_id)
        if checkout_uuid is None:
            return None
        return self._owned_by(account, self.db.scalar(
            select(Checkout).where(Checkout.id == checkout_uuid).with_for_update()))

    @staticmethod
    def _owned_by(account, record):
        """A gateway fact names an account and our record; if they disagree, nothing is applied
        (the handler's transaction rolls back and the fact is logged as not applicable)."""
        if record is not None and record.account_id != account.id:
            raise ValueError(f"{type(record).__name__} {record.id} is not account {account.id}'s")
        return record

    def _complete(self, checkout):
        if checkout.status != "completed":
            checkout.status, checkout.failure_reason, checkout.completed_at = "completed", None, utc_now()

    # -- subscriptions -------------------------------------------------------------------------

    def _current_subscription(self, account):
        """The live subscription (newest first); else the most recently cancelled one."""
        subscriptions = self.db.scalars(select(Subscription).where(Subscription.account_id == account.id)
                                        .order_by(Subscription.created_at.desc())).all()
        live = [s for s in subscriptions if s.status in LIVE_SUBSCRIPTION_STATUSES]
        return (live or subscriptions or [None])[0]

    def _live_subscription(self, account):
        """The plan the account has now (active, or past_due while the gateway retries), if any."""
        current = self._current_subscription(account)
        return current if current is not None and current.status in ("active", "past_due") else None

    def _subscription_by_gateway_id(self, gateway_subscription_id, account):
        if not gateway_subscription_id:
            return None
        # Always the committed row, locked: another worker (a webhook) may have moved it since this
        # session loaded it, and the session keeps objects across commits.
        return self._owned_by(account, self.db.scalar(select(Subscription).where(
            Subscription.gateway_subscription_id == gateway_subscription_id).with_for_update()
            .execution_options(populate_existing=True)))

    def _new_subscription(self, account, gateway_subscription_id, checkout_id, plan, status):
        subscription = Subscription(
            id=uuid.uuid4(), account_id=account.id, gateway=account.gateway,
            gateway_subscription_id=gateway_subscription_id, checkout_id=parse_uuid(checkout_id),
            plan_code=plan["code"], amount=plan["amount"], currency=plan["currency"], status=status,
            cancel_at_period_end=False, last_event_at=0, created_at=utc_now(),
        )
        self.db.add(subscription)
        self.db.flush()
        self._take_period_from_payments(subscription)
        return subscription

    def _take_period_from_payments(self, subscription):
        """Payments are applied as they come, even before their subscription is known here; a
        subscription made later starts from the latest period already paid for."""
        paid = self.db.scalar(select(Payment).where(
            Payment.gateway_subscription_id == subscription.gateway_subscription_id, Payment.status == "paid",
            Payment.period_end.is_not(None)).order_by(Payment.period_end.desc()).limit(1))
        if paid is not None and (subscription.current_period_end is None
                                 or paid.period_end > subscription.current_period_end):
            subscription.current_period_start, subscription.current_period_end = paid.period_start, paid.period_end

    def _apply_snapshot(self, account, snapshot, authoritative=False):
        """Make our subscription match a gateway snapshot if it is newer than what we hold.

        `authoritative`: the gateway's answer to a change we just made. It is the newest state
        there is, even when a webhook stamped in the same second got here first.
        """
        subscription = self._subscription_by_gateway_id(snapshot["gateway_subscription_id"], account)
        if subscription is None:
            subscription = self._new_subscription(account, snapshot["gateway_subscription_id"],
                                                  snapshot["checkout_id"], self._plan_for(account, snapshot["plan_code"]),
                                                  snapshot["status"])
        elif not (is_newer(subscription, snapshot) or (authoritative and subscription.status != "cancelled")):
            return subscription
        old_plan, old_status, old_end = subscription.plan_code, subscription.status, subscription.current_period_end
        subscription.plan_code = snapshot["plan_code"]
        subscription.amount, subscription.currency = snapshot["amount"], snapshot["currency"]
        subscription.status = snapshot["status"]
        if snapshot["current_period_end"]:  # a gateway that does not know the period keeps ours
            subscription.current_period_start = from_unix(snapshot["current_period_start"])
            subscription.current_period_end = from_unix(snapshot["current_period_end"])
        subscription.cancel_at_period_end = snapshot["cancel_at_period_end"]
        subscription.last_event_at = max(subscription.last_event_at, snapshot["gateway_event_at"])

        if snapshot["checkout_id"] and subscription.status == "active":
            checkout = self._checkout(snapshot["checkout_id"], account)
            if checkout is not None and checkout.kind == "new":
                self._complete(checkout)  # the checkout's own event may be late or lost
        if old_plan != subscription.plan_code and subscription.purchased_at is not None:
            add_event(self.db, Outbox, "plan.changed", {
                **self._plan_event(account, subscription), "from_plan_code": old_plan})
        self._announce_renewal(account, subscription, old_end)
        if subscription.status == "cancelled" and old_status != "cancelled":
            subscription.cancelled_at = utc_now()
            add_event(self.db, Outbox, "plan.cancelled", {
                **self._event_account(account), "subscription_id": str(subscription.id),
                "gateway": account.gateway, "plan_code": subscription.plan_code})
        self._announce_purchase_once(account, subscription)
        return subscription

    def _announce_purchase_once(self, account, subscription):
        """plan.purchased, once per subscription, the first time we know it is active and paid for a
        known period (listeners such as usage need the period; it comes with the gateway's
        subscription or invoice facts, which may trail the checkout's)."""
        if (subscription.purchased_at is not None or subscription.status != "active"
                or subscription.current_period_end is None):
            return
        subscription.purchased_at = utc_now()
        for one_off in self.db.scalars(select(Subscription).where(
                Subscription.account_id == account.id, Subscription.id != subscription.id,
                Subscription.status == "active", Subscription.gateway_subscription_id.like("link:%"))).all():
            self._end_locally(account, one_off)  # the new plan replaces a period paid once
        add_event(self.db, Outbox, "plan.purchased", {
            **self._plan_event(account, subscription),
            "checkout_id": str(subscription.checkout_id) if subscription.checkout_id else None})

    def _end_locally(self, account, subscription):
        """End a plan no gateway knows about (a period paid once), as a gateway snapshot would."""
        self._apply_snapshot(account, {
            "gateway_subscription_id": subscription.gateway_subscription_id, "checkout_id": None,
            "plan_code": subscription.plan_code, "status": "cancelled", "amount": subscription.amount,
            "currency": subscription.currency, "current_period_start": None, "current_period_end": None,
            "cancel_at_period_end": True, "gateway_event_at": int(utc_now().timestamp())}, authoritative=True)

    def _announce_renewal(self, account, subscription, old_period_end):
        """plan.renewed when an announced plan enters a later period (usage starts a new one)."""
        new_end = subscription.current_period_end
        if subscription.purchased_at is not None and old_period_end and new_end and new_end > old_period_end:
            add_event(self.db, Outbox, "plan.renewed", self._plan_event(account, subscription))

    def _plan_event(self, account, subscription):
        plan = self._plan(subscription.plan_code)
        return {
            **self._event_account(account), "subscription_id": str(subscription.id), "gateway": account.gateway,
            "plan_code": subscription.plan_code, "data_quota_bytes": plan["data_quota_bytes"],
            "amount": subscription.amount, "currency": subscription.currency, "interval": plan["interval"],
            "current_period_start": _iso(subscription.current_period_start),
            "current_period_end": _iso(subscription.current_period_end),
        }

    def _subscription_dict(self, subscription):
        plan = self._plan(subscription.plan_code)
        return {
            "plan": {"code": plan["code"], "name": plan["name"], "interval": plan["interval"],
                     "amount": subscription.amount, "currency": subscription.currency},
            "status": subscription.status,
            "current_period_start": _iso(subscription.current_period_start),
            "current_period_end": _iso(subscription.current_period_end),
            "next_payment_date": _iso(next_payment_date(subscription)),
            "cancel_at_period_end": subscription.cancel_at_period_end,
        }

    # -- history -------------------------------------------------------------------------------

    def _record_payment(self, account, event, status):
        """One history line per gateway invoice and outcome; False if we already had it."""
        inserted = self.db.execute(insert(Payment).values(
            id=uuid.uuid4(), account_id=account.id, gateway_invoice_id=event["gateway_invoice_id"],
            gateway_subscription_id=event["gateway_subscription_id"], status=status, amount=event["amount"],
            currency=event["currency"], description=event["description"], invoice_url=event["invoice_url"],
            occurred_at=from_unix(event["gateway_event_at"]), period_start=from_unix(event["period_start"]),
            period_end=from_unix(event["period_end"]),
        ).on_conflict_do_nothing(constraint="uq_payments_invoice_status").returning(Payment.id)).first()
        return inserted is not None
