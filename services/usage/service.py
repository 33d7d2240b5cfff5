"""usage: the read side and the plan projection (services/usage/ingest.py records reports).

Reads (`get_usage`, `summary_for`) touch only aggregates and the plan projection, never the raw
reports. Accounts, plans and memberships are learned from events (user.signed_up, org.created,
plan.*, member.*); usage never reads another service's tables. Raw reports older than the
retention window are purged here.
"""
import logging
from datetime import timedelta

import eventlet
from nameko.rpc import RpcProxy
from nameko.timer import timer
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from services.usage.members import apply_membership, authorize_locally
from services.usage.metrics import METRICS, QUOTA_METRIC
from services.usage.models import Inbox, UsageAccount, UsageEvent
from services.usage.reads import account_and_role, usage_in_period
from services.usage.reports import parse_rfc3339, raw_retention_days
from shared.consumers import ReplayParkedMixin, consumes
from shared.db import Database
from shared.errors import ValidationFailed
from shared.outbox import rfc3339, utc_now
from shared.permissions import ACCOUNT_KINDS, VIEW_BILLING, requested_account
from shared.quota import quota_figures
from shared.schemas import Principal, load_or_raise
from shared.service import HealthMixin, api_rpc

log = logging.getLogger(__name__)

PRINCIPAL = Principal()  # one instance: making a schema copies its fields, load keeps nothing on it
PURGE_BATCH_SIZE = 5000  # rows per DELETE: short transactions, short locks, bounded WAL bursts
PURGE_INTERVAL_SECONDS = 3600


class UsageService(ReplayParkedMixin, HealthMixin):
    name = "usage"

    db = Database()
    orgs = RpcProxy("orgs")

    # -- reads ---------------------------------------------------------------------------------

    @api_rpc
    def get_usage(self, actor, account_ref):
        """The usage page: storage used in the current period, the quota, and the daily series.
        Authorized like billing's pages (billing.view): from usage's projection of memberships when
        it knows the caller (services/usage/members.py), else by orgs.authorize; NotFound / Forbidden
        pass through. Two statements in all (services/usage/reads.py)."""
        actor = load_or_raise(PRINCIPAL, actor)
        ref = requested_account(actor, account_ref)
        kind, account_id = ref["kind"], ref["id"]
        projection = account_and_role(self.db, kind, account_id, actor["id"])
        if not authorize_locally(kind, projection, VIEW_BILLING):
            granted = self.orgs.authorize(actor["id"], ref, VIEW_BILLING)
            account_id = str(granted["account"]["id"])
            projection = account_and_role(self.db, kind, account_id, actor["id"])
        start, end, used, daily = usage_in_period(self.db, kind, account_id, METRICS[QUOTA_METRIC], projection,
                                                  utc_now())
        return {
            "period_start": rfc3339(start), "period_end": rfc3339(end),
            **quota_figures(used, projection.quota_bytes),
            "daily": [{"date": day.isoformat(), "used_bytes": value} for day, value in daily],
        }

    @api_rpc
    def summary_for(self, account):
        """{used_bytes, quota_bytes, percent, over_quota} of `account` ({kind, id}) in its current
        period. No authorization: the caller (billing's summary) has checked it."""
        if (not isinstance(account, dict) or account.get("kind") not in ACCOUNT_KINDS
                or not isinstance(account.get("id"), str) or not account["id"]):
            raise ValidationFailed(details={"account": ["Must be {kind: personal|org, id}."]})
        kind, account_id = account["kind"], account["id"]
        projection = account_and_role(self.db, kind, account_id, None)
        _, _, used, _ = usage_in_period(self.db, kind, account_id, METRICS[QUOTA_METRIC], projection, utc_now())
        return quota_figures(used, projection.quota_bytes)

    # -- what other services tell us -----------------------------------------------------------

    @consumes("user.signed_up", sources=("identity",), inbox=Inbox)
    def on_user_signed_up(self, event):
        self._learn_account("personal", event["user_id"])

    @consumes("org.created", sources=("orgs",), inbox=Inbox)
    def on_org_created(self, event):
        self._learn_account("org", event["org_id"])

    @consumes("member.joined", sources=("orgs",), inbox=Inbox)
    def on_member_joined(self, event):
        apply_membership(self.db, event, event["role"])

    @consumes("member.role_changed", sources=("orgs",), inbox=Inbox)
    def on_member_role_changed(self, event):
        apply_membership(self.db, event, event["new_role"])

    @consumes("member.removed", sources=("orgs",), inbox=Inbox)
    def on_member_removed(self, event):
        apply_membership(self.db, event, None)

    @consumes("plan.purchased", sources=("billing",), inbox=Inbox)
    def on_plan_purchased(self, event):
        self._apply_plan(event)

    @consumes("plan.changed", sources=("billing",), inbox=Inbox)
    def on_plan_changed(self, event):
        self._apply_plan(event)

    @consumes("plan.renewed", sources=("billing",), inbox=Inbox)
    def on_plan_renewed(self, event):
        self._apply_plan(event)

    @consumes("plan.cancelled", sources=("billing",), inbox=Inbox)
    def on_plan_cancelled(self, event):
        self._apply_plan(event, cancelled=True)

    def _learn_account(self, kind, account_id):
        self.db.execute(insert(UsageAccount).values(kind=kind, account_id=str(account_id), status="none")
                        .on_conflict_do_nothing())

    def _apply_plan(self, event, cancelled=False):
        """The plan projection: the newest plan event (by occurred_at) wins, in any delivery order."""
        kind, account_id = event["account"]["kind"], str(event["account"]["id"])
        self._learn_account(kind, account_id)
        account = self.db.scalar(select(UsageAccount).where(
            UsageAccount.kind == kind, UsageAccount.account_id == account_id)
            .with_for_update().execution_options(populate_existing=True))
        occurred_at = parse_rfc3339(event.get("occurred_at")) or utc_now()
        if account.plan_event_at is not None and occurred_at < account.plan_event_at:
            log.info("plan event %s older than the projection; ignored", event.get("event_id"))
            return
        if cancelled:
            if account.subscription_id not in (None, event["subscription_id"]):
                return  # the end of a plan that another has already replaced
            account.quota_bytes = None
            account.period_start = account.period_end = account.interval = None
            account.status = "cancelled"
        else:
            account.quota_bytes = event["data_quota_bytes"]
            account.interval = event.get("interval")
            account.period_start = parse_rfc3339(event.get("current_period_start"))
            account.period_end = parse_rfc3339(event.get("current_period_end"))
            if account.period_start is None or account.period_end is None:
                account.period_start = account.period_end = None
            account.status = "active"
        account.subscription_id = event["subscription_id"]
        account.plan_code = event["plan_code"]
        account.plan_event_at = occurred_at

    # -- retention -----------------------------------------------------------------------------

    @timer(interval=PURGE_INTERVAL_SECONDS)
    def purge_raw_events(self):
        """Delete raw reports older than the retention window, PURGE_BATCH_SIZE rows per transaction
        (ix_usage_events_occurred_at finds them); aggregates are kept. Returns how many went."""
        cutoff = utc_now() - timedelta(days=raw_retention_days())
        total = 0
        while True:
            batch = select(UsageEvent.event_id).where(UsageEvent.occurred_at < cutoff).limit(PURGE_BATCH_SIZE)
            deleted = self.db.execute(delete(UsageEvent).where(UsageEvent.event_id.in_(batch))).rowcount
            self.db.commit()
            total += deleted
            if deleted < PURGE_BATCH_SIZE:
                break
            eventlet.sleep(0)  # let this process's other workers run between batches
        if total:
            log.info("purged %d raw usage events older than %s", total, rfc3339(cutoff))
        return total
