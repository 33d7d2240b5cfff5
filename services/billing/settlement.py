"""The settle pass: make each gateway match what billing decided, so nothing stays payable or
charging behind the account's back.

Billing decides in its own transactions (a purchase completed, a second purchase held); the
gateway calls that make the decision true happen here, afterwards, and again on every pass until
the gateway confirms them:
- hosted checkouts closed here (superseded by a purchase, expired, declined) are closed at the
  gateway too (Stripe: the session expired; Cashfree: the subscription cancelled while nobody has
  authorised it). Until then `gateway_closed_at` is empty;
- active payment links of an account that has a plan are deactivated at the gateway;
- a second purchase (`duplicate_purchase`) is cancelled and every payment it took is refunded at
  the gateway; the refunds become history lines (`refunded`) and `payment.refunded` events;
- a subscription held as `second_live_plan`, and an `unpaid` one of an account that bought another
  plan, are cancelled at the gateway, so neither can start charging again.

Everything is derived from the database (what is still pending), so a crash or a gateway outage
only delays it: the timer retries every SETTLE_POLL_SECONDS, and a consumer that has just made
work for an account settles it right after its commit. Gateway calls carry idempotency keys
derived from our records, so running a step twice does nothing more. A mixin of BillingService.
"""
import logging
import os

from nameko.timer import timer
from sqlalchemy import exists, or_, select, union
from sqlalchemy.orm import aliased

from services.billing.models import (
    LIVE_STATUSES, BillingAccount, Checkout, Outbox, PaymentLink, Quote, Subscription,
)
from services.billing.purchases import HOLDS_TO_SETTLE, is_one_off
from shared.errors import GatewayError
from shared.outbox import add_event, utc_now

log = logging.getLogger(__name__)

SETTLE_POLL_SECONDS = float(os.environ.get("SETTLE_POLL_SECONDS", os.environ.get("LINK_EXPIRY_POLL_SECONDS", "30")))
DUPLICATE_REFUND_DESCRIPTION = "Refund: a second purchase while the account already had a plan"


def _account_has_live_plan(account_id_column):
    return exists().where(Subscription.account_id == account_id_column, Subscription.status.in_(LIVE_STATUSES))


def _superseded(checkout):
    """The account has a live plan other than the one this checkout was quoted to replace (a period
    paid once through a link is replaced by buying a subscription)."""
    replaces = select(Quote.from_subscription_id).where(Quote.id == checkout.quote_id).scalar_subquery()
    return exists().where(Subscription.account_id == checkout.account_id, Subscription.status.in_(LIVE_STATUSES),
                          Subscription.id.is_distinct_from(replaces))


def checkout_to_close():
    """A hosted checkout that is (or may still be) payable at the gateway although billing closed it,
    let it lapse, or the account has a plan now."""
    return ((Checkout.kind == "new") & Checkout.gateway_checkout_id.is_not(None)
            & Checkout.gateway_closed_at.is_(None) & (Checkout.status != "completed")
            & or_(Checkout.status.in_(("expired", "failed")),
                  (Checkout.status == "open") & or_(Checkout.expires_at <= utc_now(), _superseded(Checkout))))


def link_to_deactivate():
    return ((PaymentLink.status == "active") & PaymentLink.gateway_link_id.is_not(None)
            & _account_has_live_plan(PaymentLink.account_id))


def subscription_to_settle():
    """A held subscription not yet cancelled (and refunded) at the gateway, or an unpaid one beside
    the account's new plan (were its old invoice paid, it would come back beside the plan)."""
    other = aliased(Subscription)
    beside_a_plan = exists().where(other.account_id == Subscription.account_id, other.status.in_(LIVE_STATUSES))
    unpaid_beside_a_plan = (Subscription.status == "unpaid") & Subscription.hold_reason.is_(None) & beside_a_plan
    return Subscription.gateway_settled_at.is_(None) & or_(Subscription.hold_reason.in_(HOLDS_TO_SETTLE),
                                                           unpaid_beside_a_plan)


class GatewaySettlement:
    """The settle pass (mixed into BillingService: db, _call_adapter, _locked_account, ...)."""

    @timer(interval=SETTLE_POLL_SECONDS)
    def settle_with_gateways(self):
        """Every account with gateway work pending: close, deactivate, cancel, refund."""
        pending = union(select(Checkout.account_id).where(checkout_to_close()),
                        select(PaymentLink.account_id).where(link_to_deactivate()),
                        select(Subscription.account_id).where(subscription_to_settle()))
        accounts = self.db.scalars(select(BillingAccount.id).where(BillingAccount.id.in_(pending))).all()
        self.db.commit()
        self._settle_accounts(accounts)

    def _settle_after_commit(self, account):
        """Settle this account right after the current handler commits (the timer is the safety net)."""
        self.__dict__.setdefault("accounts_to_settle", set()).add(account.id)

    def after_commit(self):
        """Called by shared.consumers once a handler's transaction committed."""
        self._settle_accounts(self.__dict__.pop("accounts_to_settle", ()))

    def _settle_accounts(self, account_ids):
        for account_id in account_ids:
            try:
                self.settle_account(account_id)
            except Exception:  # noqa: BLE001  (one account must not hold up the others; the next pass retries)
                self.db.rollback()
                log.exception("settling billing account %s with its gateway failed; the next pass retries", account_id)

    def settle_account(self, account_id):
        """Make the gateway match billing for one account. Gateway failures are logged and left for
        the next pass."""
        for checkout_id in self.db.scalars(select(Checkout.id).where(
                Checkout.account_id == account_id, checkout_to_close())).all():
            self._close_checkout_at_gateway(checkout_id, raise_on_failure=False)
        for link_id in self.db.scalars(select(PaymentLink.id).where(
                PaymentLink.account_id == account_id, link_to_deactivate())).all():
            self._close_at_gateway(link_id, "cancelled")
        for subscription_id in self.db.scalars(select(Subscription.id).where(
                Subscription.account_id == account_id, subscription_to_settle())).all():
            self._settle_subscription(subscription_id)
        self.db.commit()

    # -- checkouts -----------------------------------------------------------------------------

    def _close_checkout_at_gateway(self, checkout_id, raise_on_failure):
        """Close one hosted checkout at its gateway, then here. A gateway refusal (it was paid a
        moment ago; its facts are on their way) or failure leaves it for the next pass, or raises
        GatewayError with `raise_on_failure` (Pay Now must not open a second payable checkout)."""
        checkout = self.db.get(Checkout, checkout_id)
        account = self._locked_account(str(checkout.account_id))  # account, then checkout: the one lock order
        checkout = self.db.scalar(select(Checkout).where(Checkout.id == checkout_id).with_for_update()
                                  .execution_options(populate_existing=True))
        if checkout.status == "completed" or checkout.gateway_closed_at is not None:
            self.db.rollback()
            return False
        gateway_checkout_id = checkout.gateway_checkout_id
        self.db.commit()  # no lock held while the gateway is asked
        try:
            self._call_adapter(account, "expire_checkout", gateway_checkout_id)
        except GatewayError:
            if raise_on_failure:
                raise
            log.info("checkout %s is not closed at the gateway yet; the next pass tries again", checkout_id)
            return False
        return self._mark_closed_at_gateway(checkout_id)

    def _mark_closed_at_gateway(self, checkout_id, reason=None):
        """Record that the gateway says this checkout can no longer be paid: closed here too (expired,
        for `reason`, or as it lapsed or was superseded). False when it was paid (its own facts
        decide) or recorded closed already."""
        account = self._locked_account(str(self.db.get(Checkout, checkout_id).account_id))  # account, then checkout
        checkout = self.db.scalar(select(Checkout).where(Checkout.id == checkout_id).with_for_update()
                                  .execution_options(populate_existing=True))
        if checkout.status == "completed" or checkout.gateway_closed_at is not None:
            self.db.rollback()
            return False
        if checkout.status in ("open", "creating"):
            lapsed = checkout.expires_at <= utc_now()
            checkout.status = "expired"
            checkout.failure_reason = reason or ("expired" if lapsed else "superseded")
        elif checkout.failure_reason is None:
            checkout.failure_reason = "expired"
        checkout.gateway_closed_at = utc_now()
        log.info("checkout %s of account %s is closed at the gateway (%s)", checkout_id, account.id,
                 checkout.failure_reason)
        self.db.commit()
        return True

    # -- subscriptions -------------------------------------------------------------------------

    def _settle_subscription(self, subscription_id):
        """Cancel (and refund, for a duplicate) one subscription at the gateway; a gateway failure
        leaves it for the next pass."""
        subscription = self.db.get(Subscription, subscription_id)
        account = self._locked_account(str(subscription.account_id))
        subscription = self.db.scalar(select(Subscription).where(Subscription.id == subscription_id)
                                      .with_for_update().execution_options(populate_existing=True))
        if subscription.gateway_settled_at is not None:
            self.db.rollback()
            return
        if subscription.hold_reason is None and self._live_subscription_of(account, excluding=subscription) is None:
            self.db.rollback()  # unpaid, and no other plan: it may still be paid and come back
            return
        request = {"request_id": f"settle-{subscription.id}", "account_id": str(account.id),
                   "gateway_subscription_id": None if is_one_off(subscription) else subscription.gateway_subscription_id,
                   "gateway_link_id": self._gateway_link_id(subscription)}
        refund = subscription.hold_reason == "duplicate_purchase"
        self.db.commit()
        try:
            if refund:
                answer = self._call_adapter(account, "refund_purchase", {**request, "reason": "duplicate"})
            elif request["gateway_subscription_id"]:
                answer = {"refunds": [], "snapshot": self._call_adapter(account, "cancel_subscription", {
                    **request, "at_period_end": False, "void_open_invoices": True})}
            else:
                answer = {"refunds": []}
        except GatewayError:
            log.warning("subscription %s could not be settled at the gateway yet; the next pass tries again",
                        subscription_id)
            return
        account = self._locked_account(str(account.id))
        subscription = self.db.scalar(select(Subscription).where(Subscription.id == subscription_id)
                                      .with_for_update().execution_options(populate_existing=True))
        for refund in answer["refunds"]:
            self._record_refund(account, subscription, refund)
        if answer.get("snapshot") and subscription.hold_reason is None:
            self._apply_snapshot(account, answer["snapshot"], authoritative=True)
        subscription.gateway_settled_at = utc_now()
        self.db.commit()

    def _gateway_link_id(self, subscription):
        if subscription.link_id is None:
            return None
        return self.db.scalar(select(PaymentLink.gateway_link_id).where(PaymentLink.id == subscription.link_id))

    def _record_refund(self, account, subscription, refund):
        """One `refunded` history line per refunded gateway payment, announced once."""
        if not self._record_payment(account, {
                "gateway_invoice_id": refund["gateway_invoice_id"],
                "gateway_subscription_id": subscription.gateway_subscription_id, "amount": refund["amount"],
                "currency": refund["currency"], "description": DUPLICATE_REFUND_DESCRIPTION, "invoice_url": None,
                "gateway_event_at": refund["refunded_at"], "period_start": None, "period_end": None}, "refunded"):
            return
        add_event(self.db, Outbox, "payment.refunded", {
            **self._event_account(account), "subscription_id": str(subscription.id), "gateway": account.gateway,
            "gateway_invoice_id": refund["gateway_invoice_id"], "gateway_refund_id": refund["gateway_refund_id"],
            "amount": refund["amount"], "currency": refund["currency"], "reason": "duplicate_purchase"})
