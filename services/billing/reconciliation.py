"""Reconciliation: what the gateways' webhooks should have told us, asked of the gateways.

A gateway that dropped every webhook for a while (beyond its own retries) leaves billing thinking a
checkout is still open, a subscription unpaid, a link unused. Every RECONCILE_INTERVAL_SECONDS, and
on demand (`reconcile`, `python -m deploy.ops reconcile`), billing sends each adapter what it still
thinks is open; the adapter asks its gateway for their current state and announces what it finds
through its webhook intake: the same gateway.* facts, deduplicated by the same keys, applied here by
the same idempotent consumers. A fact found both ways is applied once; nothing here changes a
subscription directly. Every hosted checkout not yet confirmed closed at its gateway is asked
about, those closed here too (superseded, lapsed): one the gateway reports expired is marked so,
one still open that should not be is closed there (settlement.py), and one paid meanwhile brings
its facts, which billing applies (a second purchase is refunded). A mixin of BillingService.
"""
import logging
import os
from types import SimpleNamespace

from nameko.timer import timer
from sqlalchemy import select, union

from services.billing.models import LIVE_STATUSES, BillingAccount, Checkout, PaymentLink, Subscription
from services.billing.settlement import checkout_to_close
from shared.errors import GatewayError, NotFound
from shared.permissions import ACCOUNT_KINDS
from shared.service import api_rpc

log = logging.getLogger(__name__)

RECONCILE_INTERVAL_SECONDS = float(os.environ.get("RECONCILE_INTERVAL_SECONDS", "300"))
ACCOUNTS_PER_CALL = 50  # one adapter call carries the open things of at most this many accounts


class Reconciliation:
    """The reconcile entrypoints (mixed into BillingService, which provides ADAPTER_BY_COUNTRY etc.)."""

    @api_rpc
    def reconcile(self, account=None):
        """Ask the gateways about what is still open here and let them announce what was missed.

        account: {"kind": "org"|"personal", "id": org or user id}, or None for every account (each
        adapter is then asked even with nothing open, so Stripe's event list is read anyway).
        Returns {"accounts": n, "checked": {"checkouts", "subscriptions", "links"}, "recovered":
        [{"gateway", "gateway_event_id", "facts"}], "closed_checkouts": [checkout ids],
        "failed": [gateways that did not answer, and "<gateway>:<id>" for an object or event the
        gateway's adapter could not check]}. What was recovered is applied as the adapters'
        events arrive, moments later. Raises NotFound for an account billing does not know.
        """
        accounts = self._accounts_to_reconcile(account)
        summary = {"accounts": len(accounts), "checked": {"checkouts": 0, "subscriptions": 0, "links": 0},
                   "recovered": [], "closed_checkouts": [], "failed": []}
        countries = {a.country for a in accounts} if account is not None else set(self.ADAPTER_BY_COUNTRY)
        for country in sorted(countries):
            in_country = [a for a in accounts if a.country == country]
            for start in range(0, max(len(in_country), 1), ACCOUNTS_PER_CALL):
                self._reconcile_batch(country, in_country[start:start + ACCOUNTS_PER_CALL], summary)
        return summary

    @timer(interval=RECONCILE_INTERVAL_SECONDS)
    def reconcile_periodically(self):
        """The schedule: every account, every RECONCILE_INTERVAL_SECONDS."""
        summary = self.reconcile(None)
        if summary["recovered"] or summary["closed_checkouts"] or summary["failed"]:
            log.warning("reconciliation: %d facts recovered, checkouts closed %s, gateways failed %s",
                        sum(len(r["facts"]) for r in summary["recovered"]), summary["closed_checkouts"],
                        summary["failed"])

    # -- helpers -------------------------------------------------------------------------------

    def _accounts_to_reconcile(self, account):
        if account is not None:
            kind, owner_ref = (account or {}).get("kind"), str((account or {}).get("id") or "")
            found = self.db.scalar(select(BillingAccount).where(
                BillingAccount.kind == kind, BillingAccount.owner_ref == owner_ref)) if kind in ACCOUNT_KINDS else None
            if found is None:
                raise NotFound("Billing knows no such account.")
            return [found]
        with_open = union(select(Checkout.account_id).where(self._open_checkout()),
                          select(Subscription.account_id).where(self._live_at_gateway()),
                          select(PaymentLink.account_id).where(self._active_link()))
        return self.db.scalars(select(BillingAccount).where(BillingAccount.id.in_(with_open))
                               .order_by(BillingAccount.created_at)).all()

    @staticmethod
    def _open_checkout():
        """Hosted checkouts the gateway has not confirmed closed: open ones, and those closed here."""
        return ((Checkout.kind == "new") & Checkout.gateway_checkout_id.is_not(None)
                & Checkout.gateway_closed_at.is_(None) & (Checkout.status != "completed"))

    @staticmethod
    def _live_at_gateway():
        return Subscription.status.in_(LIVE_STATUSES) & Subscription.gateway_subscription_id.not_like("link:%")

    @staticmethod
    def _active_link():
        return (PaymentLink.status == "active") & PaymentLink.gateway_link_id.is_not(None)

    def _reconcile_batch(self, country, accounts, summary):
        ids = [a.id for a in accounts]
        checkouts = self.db.scalars(select(Checkout).where(Checkout.account_id.in_(ids), self._open_checkout())).all()
        subscriptions = self.db.scalars(select(Subscription).where(
            Subscription.account_id.in_(ids), self._live_at_gateway())).all()
        links = self.db.scalars(select(PaymentLink).where(PaymentLink.account_id.in_(ids), self._active_link())).all()
        self.db.commit()  # no transaction held while the gateway is asked
        request = {
            "checkouts": [{"checkout_id": str(c.id), "gateway_checkout_id": c.gateway_checkout_id,
                           "account_id": str(c.account_id)} for c in checkouts],
            "subscriptions": [{"gateway_subscription_id": s.gateway_subscription_id, "account_id": str(s.account_id)}
                              for s in subscriptions],
            "links": [{"link_id": str(link.id), "gateway_link_id": link.gateway_link_id,
                       "account_id": str(link.account_id)} for link in links],
        }
        for name in ("checkouts", "subscriptions", "links"):
            summary["checked"][name] += len(request[name])
        gateway = self.GATEWAY_BY_COUNTRY[country]
        adapter_of = SimpleNamespace(country=country, gateway=gateway)
        try:
            answer = self._call_adapter(adapter_of, "reconcile", request)
        except Exception as error:  # noqa: BLE001  (a gateway failure, or the adapter's own: the next pass retries)
            if isinstance(error, GatewayError):
                log.warning("reconciliation: %s could not be asked; the next pass tries again", gateway)
            else:
                log.exception("reconciliation: %s failed", gateway)
            if gateway not in summary["failed"]:
                summary["failed"].append(gateway)
            return
        summary["recovered"] += [{"gateway": gateway, "gateway_event_id": r["gateway_event_id"],
                                  "facts": r.get("facts") or [r["type"]]} for r in answer["recovered"]]
        summary["failed"] += [f"{gateway}:{object_id}" for object_id in answer.get("failed") or []]
        for checkout in checkouts:
            state = answer["checkouts"].get(checkout.gateway_checkout_id)
            if self._close_if_dead(checkout.id, state):
                summary["closed_checkouts"].append(str(checkout.id))

    def _close_if_dead(self, checkout_id, state):
        """Settle one checkout with what its gateway says of it; True if it was closed now. Expired
        there: closed here too. Still open there although it should not be: closed there first.
        Paid there (complete): its facts are on their way; unknown: asked again next pass."""
        if state == "expired":
            return self._mark_closed_at_gateway(checkout_id, reason="expired")
        if state == "open" and self.db.scalar(select(Checkout.id).where(Checkout.id == checkout_id, checkout_to_close())):
            return self._close_checkout_at_gateway(checkout_id, raise_on_failure=False)
        self.db.rollback()
        return False
