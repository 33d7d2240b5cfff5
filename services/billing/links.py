"""Payment links: a manager makes a link for a plan, sends its URL to whoever should pay, and may
cancel it. The payer needs no account with us; the payment credits the account that made the link,
exactly as a checkout does. A mixin of BillingService (same database, same adapters).

Lifecycle: creating -> active -> paid | cancelled | expired; creating -> failed when the gateway
failed (such a link is then deactivated at the gateway too, in case it was made there after all).
"""
import logging
import os
import uuid
from datetime import timedelta

from nameko.timer import timer
from sqlalchemy import or_, select

from services.billing.models import BillingAccount, Inbox, Outbox, PaymentLink, Subscription
from services.billing.schemas import PaymentLinkInput
from services.billing.subscriptions import from_unix
from shared.config import settings
from shared.consumers import consumes
from shared.db import parse_uuid
from shared.errors import Conflict, GatewayError, NotFound
from shared.outbox import add_event, rfc3339, utc_now
from shared.periods import add_interval
from shared.permissions import MANAGE_BILLING, VIEW_BILLING
from shared.schemas import load_or_raise
from shared.service import api_rpc

log = logging.getLogger(__name__)

# How often due links are expired (and failed ones deactivated); tests make it fast.
EXPIRY_POLL_SECONDS = float(os.environ.get("LINK_EXPIRY_POLL_SECONDS", "30"))


def link_dict(link):
    return {
        "id": str(link.id), "url": link.url, "status": "failed" if link.status == "creating" else link.status,
        "plan_code": link.plan_code, "amount": link.amount, "currency": link.currency,
        "created_by": link.created_by, "created_at": rfc3339(link.created_at),
        "expires_at": rfc3339(link.expires_at), "closed_at": rfc3339(link.closed_at) if link.closed_at else None,
    }


class PaymentLinks:
    """Entrypoints and event handlers for payment links (mixed into BillingService)."""

    @api_rpc
    def create_payment_link(self, actor, account_ref, data):
        """A link at the account's gateway for a plan (a new purchase). Raises ValidationFailed,
        Conflict HAS_PLAN when the account already has a plan, GatewayError (502: no active link is
        left, here or at the gateway)."""
        account, granted = self._authorized_account(actor, account_ref, MANAGE_BILLING)
        data = load_or_raise(PaymentLinkInput(), data)
        payer = self._payer_contact(actor, account, granted["account"]["owner_id"])
        with self._purchases_of(account):
            return self._create_payment_link(self._locked_account(str(account.id)), actor, data, payer)

    def _create_payment_link(self, account, actor, data, payer):
        if "quote_id" in data:
            quote = self._quote_of(account, data["quote_id"])
            if quote.expires_at <= utc_now():
                raise Conflict("This quote has expired; ask for a new one.", code="QUOTE_EXPIRED")
            if quote.kind != "new":
                raise Conflict("A payment link buys a plan; change a plan with checkout.", code="HAS_PLAN")
            plan = quote.plan
        else:
            plan = self._plan_for(account, data["plan_code"])
        if self._live_subscription(account) is not None:
            raise Conflict("This account already has a plan; change it with checkout.", code="HAS_PLAN")
        self._refuse_while_a_purchase_is_pending(account)
        link = PaymentLink(
            id=uuid.uuid4(), account_id=account.id, plan_code=plan["code"], amount=plan["amount"],
            currency=plan["currency"], status="creating", gateway=account.gateway, created_by=actor["id"],
            created_at=utc_now(), expires_at=utc_now() + timedelta(hours=data["expires_in_hours"]),
        )
        self.db.add(link)
        self.db.commit()  # recorded before the gateway hears of it

        request = self._link_request(account, link, plan, payer)
        try:
            made = self._call_adapter(account, "create_payment_link", request)
        except Exception as error:  # a gateway failure, or the adapter itself failing
            link.status = "failed"
            self.db.commit()
            self._abandon(account, link, request)
            if isinstance(error, GatewayError):
                raise GatewayError(error.message, {**error.details, "link_id": str(link.id)}) from None
            raise
        link.status, link.gateway_link_id, link.url = "active", made["gateway_link_id"], made["url"]
        self._announce_link(account, link, "payment_link.created")
        self.db.commit()
        return link_dict(link)

    @api_rpc
    def list_payment_links(self, actor, account_ref):
        """The account's usable and closed links, newest first (failed creations left out)."""
        account, _ = self._account(actor, account_ref, VIEW_BILLING)
        links = self.db.scalars(select(PaymentLink).where(
            PaymentLink.account_id == account.id, PaymentLink.status.not_in(("creating", "failed")))
            .order_by(PaymentLink.created_at.desc())).all()
        return [link_dict(link) for link in links]

    @api_rpc
    def cancel_payment_link(self, actor, account_ref, link_id):
        """Deactivate a link at the gateway, then here. Cancelling a cancelled link is a no-op (200).
        Raises Conflict LINK_PAID when it was paid (also when the payment won a race with this
        cancel), LINK_EXPIRED when it expired; GatewayError when the gateway cannot be reached."""
        account, _ = self._account(actor, account_ref, MANAGE_BILLING, lock=True)
        link = self._link_of(account, link_id, lock=True)
        if link.status == "active":
            outcome = self._deactivate(account, link)
            self._close_link(account, link, "paid" if outcome == "paid" else "cancelled")
            self.db.commit()
        if link.status == "paid":
            raise Conflict("This link was already paid.", details={"link": link_dict(link)}, code="LINK_PAID")
        if link.status == "expired":
            raise Conflict("This link has expired.", details={"link": link_dict(link)}, code="LINK_EXPIRED")
        return link_dict(link)

    @timer(interval=EXPIRY_POLL_SECONDS)
    def expire_due_links(self):
        """Links past their expiry are deactivated at the gateway (Stripe's have no expiry of their
        own), and failed creations too, in case the gateway made them after all. (The links of an
        account that has a plan now are the settle pass's: services/billing/settlement.py.)"""
        due = self.db.scalars(select(PaymentLink.id).where(
            PaymentLink.status == "active", PaymentLink.expires_at <= utc_now())).all()
        for link_id in due:
            self._close_at_gateway(link_id, "expired")
        self._end_one_off_periods()
        stuck_since = utc_now() - timedelta(seconds=2 * self.adapter_timeout_seconds)
        abandoned = self.db.scalars(select(PaymentLink).where(PaymentLink.abandoned_at.is_(None), or_(
            PaymentLink.status == "failed",
            # a worker that died mid-creation left it "creating": it may exist at the gateway
            (PaymentLink.status == "creating") & (PaymentLink.created_at <= stuck_since)))).all()
        for link in abandoned:
            link.status = "failed"
            account = self.db.get(BillingAccount, link.account_id)
            self._abandon(account, link, self._link_request(account, link, self._plan_for(account, link.plan_code)))

    @consumes("gateway.link_paid", sources=("gateway_stripe", "gateway_cashfree"), inbox=Inbox)
    def on_link_paid(self, event):
        """A paid link credits its account: the plan from a subscription behind it (its own
        events follow), or one paid period when the payment was one-off."""
        found = self._link_by_id(event["link_id"], lock=False)
        if found is None:
            log.warning("link_paid for an unknown link: %s", event)
            return
        # Locks in one order everywhere, account then link, or a cancel racing this would deadlock.
        account = self._locked_account(str(found.account_id))
        link = self._link_by_id(event["link_id"])
        if link.status != "paid":
            # Money was taken: paid wins over a cancel or an expiry that raced it.
            self._close_link(account, link, "paid")
        gateway_subscription_id = event["gateway_subscription_id"] or f"link:{link.id}"
        subscription = self._subscription_by_gateway_id(gateway_subscription_id, account)
        if subscription is None and event["gateway_subscription_id"] is None:
            subscription = self._grant_one_period(account, link, event)
        elif subscription is None:
            subscription = self._new_subscription(account, gateway_subscription_id,
                                                  self._plan_for(account, link.plan_code), "active", link_id=link.id)
        self._verify_first_payment(account, subscription, event["collected"], link=link)

    # -- helpers -------------------------------------------------------------------------------

    def _close_at_gateway(self, link_id, closed_status):
        """Deactivate one active link at the gateway, then here (paid, if a payment beat us).
        True when it was closed now."""
        account = self._locked_account(str(self._link_by_id(link_id, lock=False).account_id))
        link = self._link_by_id(link_id)  # account, then link: the one lock order
        if link.status != "active":
            self.db.rollback()
            return False
        self.db.commit()  # no lock held while the gateway is asked
        try:
            outcome = self._deactivate(account, link)
        except GatewayError:
            return False  # the next pass tries again
        account = self._locked_account(str(account.id))
        link = self._link_by_id(link_id)
        if link.status != "active":  # a payment (or another pass) closed it meanwhile
            self.db.rollback()
            return False
        self._close_link(account, link, "paid" if outcome == "paid" else closed_status)
        self.db.commit()
        return True

    def _link_request(self, account, link, plan, payer=None):
        base = settings().public_base_url
        return {"link_id": str(link.id), "account": self._gateway_account(account, payer), "plan": plan,
                "amount": link.amount, "currency": link.currency, "expires_at": int(link.expires_at.timestamp()),
                "success_url": f"{base}/billing/links/{link.id}/paid"}

    def _abandon(self, account, link, request):
        """Make sure a link whose creation failed is not payable at the gateway."""
        try:
            self._call_adapter(account, "abandon_payment_link", request)
        except GatewayError:
            log.warning("payment link %s: could not confirm it is inactive at the gateway yet", link.id)
            return
        link.abandoned_at = utc_now()
        self.db.commit()

    def _deactivate(self, account, link):
        return self._call_adapter(account, "cancel_payment_link", {
            "link_id": str(link.id), "gateway_link_id": link.gateway_link_id})["outcome"]

    def _close_link(self, account, link, status):
        link.status, link.closed_at = status, utc_now()
        self._announce_link(account, link, f"payment_link.{status}")

    def _announce_link(self, account, link, event_type):
        add_event(self.db, Outbox, event_type, {
            **self._event_account(account), "link_id": str(link.id), "plan_code": link.plan_code,
            "amount": link.amount, "currency": link.currency, "status": link.status})

    def _link_of(self, account, link_id, lock=False):
        link = self._link_by_id(link_id, lock)
        if link is None or link.account_id != account.id or link.status in ("creating", "failed"):
            raise NotFound("No such payment link.")
        return link

    def _link_by_id(self, link_id, lock=True):
        """The link; with `lock`, locked and re-read (take the account's lock first)."""
        link_uuid = parse_uuid(link_id)
        if link_uuid is None:
            return None
        query = select(PaymentLink).where(PaymentLink.id == link_uuid)
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        return self.db.scalar(query)

    def _end_one_off_periods(self):
        """A period paid once through a link ends without renewal; no gateway will say so."""
        ended = self.db.scalars(select(Subscription.id).where(
            Subscription.gateway_subscription_id.like("link:%"), Subscription.status == "active",
            Subscription.current_period_end <= utc_now())).all()
        for subscription_id in ended:
            subscription = self.db.get(Subscription, subscription_id)
            self._end_locally(self._locked_account(str(subscription.account_id)), subscription)
            self.db.commit()

    def _grant_one_period(self, account, link, event):
        """A one-off payment buys one period of the plan, with no renewal behind it (granted once
        the payment is verified against the link)."""
        plan = self._plan_for(account, link.plan_code)
        subscription = self._new_subscription(account, f"link:{link.id}", plan, "active", link_id=link.id)
        start = from_unix(event["paid_at"])
        subscription.current_period_start = start
        subscription.current_period_end = add_interval(start, plan["interval"])
        subscription.cancel_at_period_end = True
        subscription.last_event_at = event["gateway_event_at"]
        return subscription
