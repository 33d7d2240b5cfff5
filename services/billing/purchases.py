"""What the gateways tell billing about purchases, and the one rule over them: an account holds at
most one live plan, and a plan is granted only for the money that was quoted.

- A subscription is granted (`verified_at`) when the gateway's word that the purchase was paid
  (gateway.checkout_completed, gateway.link_paid) carries the quoted amount in the quoted currency.
  Anything else puts it on hold as `amount_mismatch`: no plan, an alert for operators.
- A purchase that lands while the account already has a live subscription (a checkout paid after a
  payment link, two sessions paid at once) is a `duplicate_purchase`: recorded cancelled, never
  live, and cancelled and refunded at the gateway by the settle pass (services/billing/settlement.py).
- A subscription that would come back to life beside another plan (an unpaid one whose old invoice
  was paid) is held as `second_live_plan`: cancelled at the gateway, an operator decides on a refund.
- A partial unique index (models.LIVE_STATUSES) makes two live subscriptions impossible even if
  this code were wrong: the handler's transaction would fail instead.

Facts arrive in any order and more than once; everything here is applied under the account's row
lock, and converges. A mixin of BillingService (same database, same adapters).
"""
import logging
import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from services.billing.models import (
    LIVE_STATUSES, Alert, BillingAccount, Checkout, Inbox, Outbox, Payment, Quote, Subscription,
)
from services.billing.subscriptions import from_unix, is_newer, next_payment_date
from shared.consumers import consumes
from shared.db import parse_uuid
from shared.errors import Conflict
from shared.outbox import add_event, rfc3339, utc_now

log = logging.getLogger(__name__)

ADAPTER_SOURCES = ("gateway_stripe", "gateway_cashfree")
# The plan the account has, with the gateway retrying a failed renewal in the second case.
GRANTED_STATUSES = ("active", "past_due")
# Holds whose gateway side the settle pass must still make true (cancel; refund for duplicates).
HOLDS_TO_SETTLE = ("duplicate_purchase", "second_live_plan")


def is_one_off(subscription):
    """A period paid once (a one-off link payment): no subscription behind it at the gateway."""
    return subscription.gateway_subscription_id.startswith("link:")


def _iso(moment):
    return rfc3339(moment) if moment else None


class Purchases:
    """gateway.* consumers and the subscription state they move (mixed into BillingService)."""

    @consumes("gateway.checkout_completed", sources=ADAPTER_SOURCES, inbox=Inbox)
    def on_checkout_completed(self, event):
        account = self._locked_account(event["account_id"])
        checkout = self._checkout(event["checkout_id"], account) if account else None
        if account is None or checkout is None:
            log.warning("checkout_completed for unknown account/checkout: %s", event)
            return
        if not event["gateway_subscription_id"]:
            log.warning("checkout_completed without a subscription; nothing to grant: %s", event)
            return
        subscription = self._subscription_by_gateway_id(event["gateway_subscription_id"], account)
        if subscription is None:  # the subscription's own events are late: start from the checkout
            subscription = self._new_subscription(account, event["gateway_subscription_id"],
                                                  self._plan_for(account, checkout.plan_code), "active",
                                                  checkout=checkout)
        self._verify_first_payment(account, subscription, event["collected"], checkout=checkout)

    @consumes("gateway.checkout_failed", sources=ADAPTER_SOURCES, inbox=Inbox)
    def on_checkout_failed(self, event):
        account = self._locked_account(event["account_id"])
        checkout = self._checkout(event["checkout_id"], account) if account else None
        if checkout is None or checkout.status not in ("open", "creating"):
            return  # a late "expired" never undoes a completed payment
        checkout.status = "failed" if event["reason"] == "declined" else "expired"
        checkout.failure_reason = event["reason"]
        if event["reason"] == "expired":
            checkout.gateway_closed_at = utc_now()  # the gateway says it can no longer be paid

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
        if subscription is None or subscription.status == "cancelled" or subscription.hold_reason:
            return  # a held subscription's payments are the settle pass's to refund, never a plan
        period_end, old_end = from_unix(event["period_end"]), subscription.current_period_end
        # A payment we already had (the same invoice again under another event id: a replay, a
        # reconciliation) was applied then; for the current period it must not make a plan whose
        # renewal has since failed active again. A later period's payment is never a stale one.
        if period_end and (old_end is None or period_end > old_end or (new and period_end == old_end)):
            if subscription.status not in LIVE_STATUSES and not self._may_come_back(account, subscription):
                return
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
        if (subscription is not None and subscription.status == "active" and paid_since is None
                and not subscription.hold_reason and not event.get("plan_change")):
            # A failure delivered after the retry's success changes nothing; a declined plan change
            # changed nothing (the gateway kept the plan as it was).
            subscription.status = "past_due"
        add_event(self.db, Outbox, "payment.failed", {
            **self._event_account(account), "gateway": account.gateway,
            "subscription_id": str(subscription.id) if subscription else None,
            "gateway_invoice_id": event["gateway_invoice_id"], "amount": event["amount"],
            "currency": event["currency"],
        })

    # -- the account's plan --------------------------------------------------------------------

    def _live_subscription_of(self, account, excluding=None):
        """The account's one live subscription (granted or still being verified), if any."""
        query = select(Subscription).where(Subscription.account_id == account.id,
                                           Subscription.status.in_(LIVE_STATUSES))
        if excluding is not None:
            query = query.where(Subscription.id != excluding.id)
        return self.db.scalar(query.limit(1))

    def _current_subscription(self, account):
        """The live subscription; else the most recent one (cancelled, unpaid), or None."""
        return self._live_subscription_of(account) or self.db.scalar(
            select(Subscription).where(Subscription.account_id == account.id)
            .order_by(Subscription.created_at.desc()).limit(1))

    def _live_subscription(self, account):
        """The plan the account has now (active, or past_due while the gateway retries) and was
        verified as paid for, if any."""
        current = self._live_subscription_of(account)
        return current if current is not None and current.status in GRANTED_STATUSES and current.verified_at else None

    def _refuse_while_a_purchase_is_pending(self, account):
        """Conflict PURCHASE_PENDING while a live subscription's payment is still being confirmed:
        buying again would double it."""
        current = self._live_subscription_of(account)
        if current is not None and current.verified_at is None:
            raise Conflict("A payment for this account is still being confirmed; wait a moment and look again.",
                           code="PURCHASE_PENDING")

    def _subscription_by_gateway_id(self, gateway_subscription_id, account):
        if not gateway_subscription_id:
            return None
        # Always the committed row, locked: another worker (a webhook) may have moved it since this
        # session loaded it, and the session keeps objects across commits.
        return self._owned_by(account, self.db.scalar(select(Subscription).where(
            Subscription.gateway_subscription_id == gateway_subscription_id).with_for_update()
            .execution_options(populate_existing=True)))

    def _new_subscription(self, account, gateway_subscription_id, plan, status, checkout=None, link_id=None):
        """Record a gateway subscription billing has not seen. If the account already has a live one,
        this is a second purchase (unless its quote was made to replace a period paid once): it is
        recorded on hold, cancelled, and the settle pass cancels and refunds it at the gateway."""
        live = self._live_subscription_of(account) if status in LIVE_STATUSES else None
        if live is not None and self._replaces(checkout, live):
            self._end_locally(account, live)  # the new plan replaces a period paid once
            live = None
        subscription = Subscription(
            id=uuid.uuid4(), account_id=account.id, gateway=account.gateway,
            gateway_subscription_id=gateway_subscription_id, checkout_id=checkout.id if checkout else None,
            link_id=parse_uuid(link_id) if link_id else None,
            plan_code=plan["code"], amount=plan["amount"], currency=plan["currency"], status=status,
            cancel_at_period_end=False, last_event_at=0, created_at=utc_now(),
        )
        if live is not None:
            subscription.status, subscription.cancelled_at = "cancelled", utc_now()
            subscription.hold_reason, subscription.duplicate_of = "duplicate_purchase", live.id
            log.warning("account %s: %s is a second purchase beside subscription %s; it is refunded",
                        account.id, gateway_subscription_id, live.id)
            if checkout is not None:
                checkout.status, checkout.failure_reason = "failed", "duplicate_purchase"
            self._settle_after_commit(account)
        self.db.add(subscription)
        self.db.flush()
        self._take_period_from_payments(subscription)
        return subscription

    def _replaces(self, checkout, live):
        """True when `checkout` was quoted to replace `live`, a period paid once through a link."""
        if checkout is None or not is_one_off(live):
            return False
        quote = self.db.get(Quote, checkout.quote_id)
        return quote is not None and quote.from_subscription_id == live.id

    def _may_come_back(self, account, subscription):
        """A subscription that is not live (unpaid) may become live again only if the account has no
        other plan meanwhile; otherwise it is held and cancelled at the gateway (False)."""
        other = self._live_subscription_of(account, excluding=subscription)
        if other is None:
            return True
        subscription.status, subscription.cancelled_at = "cancelled", utc_now()
        subscription.hold_reason, subscription.duplicate_of = "second_live_plan", other.id
        self._alert(account, "second_live_plan",
                    "A subscription came back to life beside the account's plan (an old invoice was paid): "
                    "it is being cancelled at the gateway; decide whether to refund that payment.",
                    {"subscription_id": str(subscription.id),
                     "gateway_subscription_id": subscription.gateway_subscription_id,
                     "kept_subscription_id": str(other.id)})
        self._settle_after_commit(account)
        return False

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
            checkout = self._checkout(snapshot["checkout_id"], account) if snapshot.get("checkout_id") else None
            subscription = self._new_subscription(account, snapshot["gateway_subscription_id"],
                                                  self._plan_for(account, snapshot["plan_code"]),
                                                  snapshot["status"], checkout=checkout,
                                                  link_id=snapshot.get("link_id"))
            if subscription.hold_reason:
                return subscription
        elif subscription.hold_reason:
            return subscription  # held: what the gateway says of it changes nothing here
        elif not (is_newer(subscription, snapshot) or (authoritative and subscription.status != "cancelled")):
            return subscription
        if (snapshot["status"] in LIVE_STATUSES and subscription.status not in LIVE_STATUSES
                and not self._may_come_back(account, subscription)):
            return subscription
        old_plan, old_status, old_end = subscription.plan_code, subscription.status, subscription.current_period_end
        subscription.plan_code = snapshot["plan_code"]
        subscription.pending_plan_code = snapshot.get("pending_plan_code")
        subscription.amount, subscription.currency = snapshot["amount"], snapshot["currency"]
        subscription.status = snapshot["status"]
        if snapshot["current_period_end"]:  # a gateway that does not know the period keeps ours
            subscription.current_period_start = from_unix(snapshot["current_period_start"])
            subscription.current_period_end = from_unix(snapshot["current_period_end"])
        subscription.cancel_at_period_end = snapshot["cancel_at_period_end"]
        subscription.last_event_at = max(subscription.last_event_at, snapshot["gateway_event_at"])

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

    def _verify_first_payment(self, account, subscription, collected, checkout=None, link=None):
        """Grant the plan when the gateway collected exactly what the checkout or link quoted.

        A mismatch (a coupon at the gateway, a price changed there, a mandate that collected
        nothing) leaves the purchase unpaid: the subscription is held (no plan), the checkout
        failed, and an alert tells operators what was collected against what was quoted."""
        if subscription.hold_reason:
            if checkout is not None and subscription.hold_reason == "duplicate_purchase":
                checkout.status, checkout.failure_reason = "failed", "duplicate_purchase"
            return
        if subscription.verified_at is not None:
            if checkout is not None:
                self._complete(checkout)
            return
        quoted = checkout or link
        if (collected["amount"], collected["currency"]) != (quoted.amount, quoted.currency):
            subscription.status, subscription.hold_reason = "unpaid", "amount_mismatch"
            if checkout is not None:
                checkout.status, checkout.failure_reason = "failed", "amount_mismatch"
            what = "checkout" if checkout is not None else "payment link"
            self._alert(account, "amount_mismatch",
                        f"The gateway collected {collected['amount']} {collected['currency']} for a {what} quoted "
                        f"at {quoted.amount} {quoted.currency}: no plan was granted.",
                        {"subscription_id": str(subscription.id),
                         "gateway_subscription_id": subscription.gateway_subscription_id,
                         f"{'checkout' if checkout is not None else 'link'}_id": str(quoted.id),
                         "collected": collected, "quoted": {"amount": quoted.amount, "currency": quoted.currency}})
            return
        subscription.verified_at = utc_now()
        if checkout is not None:
            self._complete(checkout)
        self._announce_purchase_once(account, subscription)

    def _announce_purchase_once(self, account, subscription):
        """plan.purchased, once per subscription, the first time we know it is paid for, active and
        for a known period (listeners such as usage need the period; it comes with the gateway's
        subscription or invoice facts, which may trail the checkout's). The account's other open
        checkouts and links are then closed at the gateway (the settle pass)."""
        if (subscription.purchased_at is not None or subscription.status != "active"
                or subscription.verified_at is None or subscription.current_period_end is None):
            return
        subscription.purchased_at = utc_now()
        add_event(self.db, Outbox, "plan.purchased", {
            **self._plan_event(account, subscription),
            "checkout_id": str(subscription.checkout_id) if subscription.checkout_id else None})
        self._settle_after_commit(account)

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
        # Live but not yet verified as paid: the payer sees it as still being paid for.
        status = "incomplete" if subscription.status in LIVE_STATUSES and not subscription.verified_at \
            else subscription.status
        pending = self._plan(subscription.pending_plan_code) if subscription.pending_plan_code else None
        return {
            "plan": {"code": plan["code"], "name": plan["name"], "interval": plan["interval"],
                     "amount": subscription.amount, "currency": subscription.currency},
            "status": status,
            "current_period_start": _iso(subscription.current_period_start),
            "current_period_end": _iso(subscription.current_period_end),
            "next_payment_date": _iso(next_payment_date(subscription)) if subscription.verified_at else None,
            "cancel_at_period_end": subscription.cancel_at_period_end,
            # A change the gateway charges from the next cycle: the current plan's quota until then.
            "scheduled_change": {"plan_code": pending["code"], "plan_name": pending["name"],
                                 "starts_at": _iso(subscription.current_period_end)} if pending else None,
        }

    # -- history and alerts --------------------------------------------------------------------

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

    def _alert(self, account, kind, message, details):
        """Something an operator must decide on: logged, and kept for `make ops`."""
        log.warning("ALERT %s for billing account %s: %s %s", kind, account.id, message, details)
        self.db.add(Alert(id=uuid.uuid4(), account_id=account.id, kind=kind, message=message, details=details,
                          created_at=utc_now()))

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
        checkout.gateway_closed_at = checkout.gateway_closed_at or utc_now()  # paid: nothing left to close

    def _locked_account(self, account_id):
        account_uuid = parse_uuid(account_id)
        if account_uuid is None:
            return None
        return self.db.scalar(select(BillingAccount).where(BillingAccount.id == account_uuid).with_for_update())
