"""usage: metering reports, per-period aggregates, the plan quota projection, threshold events.

Reports come in batches (`record_events`, from gateway_http's ingestion endpoint). Each report's id
is the sender's idempotency key: the raw row's primary key. A batch inserts its raw rows with one
INSERT ... ON CONFLICT DO NOTHING RETURNING, folds only the rows actually inserted into the period
and daily aggregates (metrics.py says how), checks the quota thresholds, and commits all of it in
one transaction. Reads (`get_usage`, `summary_for`) touch only aggregates and the plan projection.

Accounts and plans are learned from events (user.signed_up, org.created, plan.*); usage never reads
another service's tables.
"""
import logging
import os
import re
from datetime import datetime, timedelta, timezone

import eventlet
from nameko.rpc import RpcProxy
from nameko.timer import timer
from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert

from services.usage.metrics import BIGINT_MAX, METRICS, QUOTA_METRIC
from services.usage.models import (
    DailyUsage, Inbox, Outbox, PeriodUsage, ThresholdCrossing, UsageAccount, UsageEvent,
)
from services.usage.schemas import MAX_EVENTS_PER_REQUEST, TOO_MANY_EVENTS
from shared.consumers import consumes
from shared.db import Database
from shared.errors import ValidationFailed
from shared.outbox import add_event, OutboxRelay, rfc3339, utc_now
from shared.periods import add_interval
from shared.permissions import ACCOUNT_KINDS, VIEW_BILLING, requested_account
from shared.quota import quota_figures
from shared.schemas import Principal, load_or_raise
from shared.service import HealthMixin, api_rpc

log = logging.getLogger(__name__)

DEFAULT_RAW_RETENTION_DAYS = 35
FUTURE_TOLERANCE = timedelta(minutes=5)  # senders' clocks drift a little; more than this is a bug
MAX_ID_LENGTH = 200
MAX_ACCOUNT_ID_LENGTH = 100
THRESHOLDS = (80, 100)  # percent of the quota; each announced once per account, metric and period
PURGE_BATCH_SIZE = 5000  # rows per DELETE: short transactions, short locks, bounded WAL bursts
PURGE_INTERVAL_SECONDS = 3600

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")


def raw_retention_days():
    """USAGE_RAW_RETENTION_DAYS (default 35): how long raw reports are kept, and how old one may be.

    Read here rather than in shared.config, which this service does not own; read per call so a
    change needs no restart of anything but the environment.
    """
    try:
        return max(1, int(os.environ.get("USAGE_RAW_RETENTION_DAYS") or DEFAULT_RAW_RETENTION_DAYS))
    except ValueError:
        return DEFAULT_RAW_RETENTION_DAYS


def parse_rfc3339(text):
    """An aware datetime for an RFC 3339 timestamp (Z or an offset), or None."""
    if not isinstance(text, str) or not _RFC3339.match(text):
        return None
    try:
        return datetime.fromisoformat(text.upper().replace(" ", "T"))
    except ValueError:  # 2024-02-30, 25:00, ...
        return None


# -- one report, checked by hand ---------------------------------------------------------------
#
# Why not marshmallow per event: a batch has up to 1000 reports and must be answered in a few
# milliseconds; a marshmallow load costs tens of microseconds per event (nested schema, error
# dicts), more than the whole batch's INSERT. And a bad report must not fail the batch: it is
# listed in `rejected` with one short machine reason, which this function returns directly.
# schemas.UsageEventInput documents the same rules for OpenAPI.

def check_event(event, now, oldest):
    """(row for usage_events, None) for a good report, (None, reason) for a bad one."""
    if not isinstance(event, dict):
        return None, "bad_event"
    event_id = event.get("id")
    if event_id is None or event_id == "":
        return None, "missing_id"
    if not isinstance(event_id, str) or len(event_id) > MAX_ID_LENGTH or "\x00" in event_id:  # no NUL in text
        return None, "bad_id"
    account = event.get("account")
    if not isinstance(account, dict) or account.get("kind") not in ACCOUNT_KINDS:
        return None, "bad_account"
    account_id = account.get("id")
    if (not isinstance(account_id, str) or not account_id or len(account_id) > MAX_ACCOUNT_ID_LENGTH
            or "\x00" in account_id):
        return None, "bad_account"
    metric = event.get("metric")
    if not isinstance(metric, str) or metric not in METRICS:
        return None, "unknown_metric"
    value = event.get("value")
    if type(value) is not int:  # `type is`, not isinstance: True is an int to Python, not a byte count
        return None, "bad_value"
    if value < 0:
        return None, "negative_value"
    if value > BIGINT_MAX:
        return None, "value_too_large"
    moment = parse_rfc3339(event.get("timestamp"))
    if moment is None:
        return None, "bad_timestamp"
    if moment > now + FUTURE_TOLERANCE:
        return None, "future_timestamp"
    if moment < oldest:
        return None, "too_old"  # older than the raw retention: its id could no longer be deduplicated
    return {"event_id": event_id, "kind": account["kind"], "account_id": account_id, "metric": metric,
            "value": value, "occurred_at": moment}, None


def _given_id(event):
    event_id = event.get("id") if isinstance(event, dict) else None
    return event_id if isinstance(event_id, (str, int)) and not isinstance(event_id, bool) else None


# -- periods -----------------------------------------------------------------------------------

def calendar_month(moment):
    moment = moment.astimezone(timezone.utc)
    start = datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)
    return start, add_interval(start, "month")


def period_of(account, moment):
    """(start, end) of the account's period holding `moment`.

    The plan's current period as billing announced it; before or after it, periods of the plan's
    interval stepping back from its start or on from its end; without a plan, calendar months (UTC).
    """
    if account is None or account.period_start is None or account.period_end is None:
        return calendar_month(moment)
    start, end = account.period_start, account.period_end
    if start <= moment < end:
        return start, end
    anchor = (end if moment >= end else start).astimezone(timezone.utc)
    interval = account.interval if account.interval in ("month", "year") else "month"
    months = 12 if interval == "year" else 1
    moment_utc = moment.astimezone(timezone.utc)
    step = ((moment_utc.year - anchor.year) * 12 + moment_utc.month - anchor.month) // months
    while add_interval(anchor, interval, step) > moment:
        step -= 1
    while add_interval(anchor, interval, step + 1) <= moment:
        step += 1
    return add_interval(anchor, interval, step), add_interval(anchor, interval, step + 1)


class UsageService(HealthMixin):
    name = "usage"

    db = Database()
    outbox = OutboxRelay(Outbox)
    orgs = RpcProxy("orgs")

    # -- ingestion -----------------------------------------------------------------------------

    @api_rpc
    def record_events(self, events):
        """Record a batch of at most 1000 reports -> {accepted, duplicates, rejected: [{id, reason}]}.

        A report whose id was seen before (in an earlier batch or earlier in this one) is counted in
        `duplicates` and applied once; the same id with different content in one batch is rejected
        ("duplicate_in_batch"). Raw rows, aggregates and threshold events commit together.
        """
        if not isinstance(events, list):
            raise ValidationFailed(details={"events": ["Must be a list of events."]})
        if len(events) > MAX_EVENTS_PER_REQUEST:
            raise ValidationFailed(details={"events": [TOO_MANY_EVENTS]})
        now = utc_now()
        oldest = now - timedelta(days=raw_retention_days())
        rejected = []  # (position, {id, reason}): listed in the order they were sent
        good = {}  # event id -> (position, row), first occurrence
        duplicates = 0
        for position, event in enumerate(events):
            row, reason = check_event(event, now, oldest)
            if row is not None:
                seen = good.get(row["event_id"])
                if seen is None:
                    good[row["event_id"]] = (position, row)
                    continue
                if seen[1] == row:
                    duplicates += 1
                    continue
                reason = "duplicate_in_batch"
            rejected.append((position, {"id": _given_id(event), "reason": reason}))

        accounts = self._known_accounts({(row["kind"], row["account_id"]) for _, row in good.values()})
        rows = []
        for position, row in good.values():
            if (row["kind"], row["account_id"]) in accounts:
                rows.append(row)
            else:
                rejected.append((position, {"id": row["event_id"], "reason": "unknown_account"}))

        inserted = []
        if rows:
            # One INSERT ... ON CONFLICT DO NOTHING RETURNING for the batch; RETURNING names the rows
            # that are new, the rest are resends. Passed as executemany parameters, which SQLAlchemy
            # sends as multi-row VALUES from a cached statement ("insertmanyvalues"): for 1000 rows
            # about 4x faster than insert().values([...]), which compiles a 6000-parameter statement
            # every time (services/usage/timing_check.py measures both).
            # (The Core table, not the ORM entity: the ORM's bulk-insert path adds per-row overhead.)
            raw = UsageEvent.__table__
            new_ids = set(self.db.scalars(
                insert(raw).on_conflict_do_nothing(index_elements=["event_id"]).returning(raw.c.event_id), rows))
            inserted = [row for row in rows if row["event_id"] in new_ids]
            duplicates += len(rows) - len(inserted)
            self._fold(inserted, accounts)
            self._check_thresholds(inserted, accounts, now)
        self.db.commit()
        rejected.sort(key=lambda item: item[0])
        return {"accepted": len(inserted), "duplicates": duplicates, "rejected": [entry for _, entry in rejected]}

    def _known_accounts(self, keys):
        if not keys:
            return {}
        found = self.db.scalars(select(UsageAccount).where(
            tuple_(UsageAccount.kind, UsageAccount.account_id).in_(list(keys)))
            .execution_options(populate_existing=True))
        return {(account.kind, account.account_id): account for account in found}

    def _fold(self, rows, accounts):
        """Fold new reports into per-period and per-day rows: first in Python (one row per key), then
        one upsert per metric and table (the metric's ON CONFLICT ... DO UPDATE ... WHERE)."""
        periods, days = {}, {}
        for row in rows:
            metric = METRICS[row["metric"]]
            value, moment = row["value"], row["occurred_at"]
            start, end = period_of(accounts[(row["kind"], row["account_id"])], moment)
            key = (row["kind"], row["account_id"], metric.name, start)
            current = periods.get(key)
            periods[key] = (end, metric.fold(current[1] if current else None, value, moment))
            day_key = (row["kind"], row["account_id"], metric.name, moment.astimezone(timezone.utc).date())
            days[day_key] = metric.fold(days.get(day_key), value, moment)
        # Sorted keys: concurrent batches lock shared rows in the same order, so they cannot deadlock.
        for metric in METRICS.values():
            period_rows = [
                {"kind": kind, "account_id": account_id, "metric": name, "period_start": start,
                 "period_end": end, "value": value, "value_at": at}
                for (kind, account_id, name, start), (end, (value, at)) in sorted(periods.items())
                if name == metric.name]
            if period_rows:
                self.db.execute(metric.upsert(PeriodUsage, ["kind", "account_id", "metric", "period_start"],
                                              period_rows))
            day_rows = [
                {"kind": kind, "account_id": account_id, "metric": name, "day": day, "value": value,
                 "value_at": at}
                for (kind, account_id, name, day), (value, at) in sorted(days.items()) if name == metric.name]
            if day_rows:
                self.db.execute(metric.upsert(DailyUsage, ["kind", "account_id", "metric", "day"], day_rows))

    def _check_thresholds(self, rows, accounts, now):
        """usage.threshold_crossed once per account, metric, current period and threshold reached."""
        touched = sorted({(row["kind"], row["account_id"]) for row in rows if row["metric"] == QUOTA_METRIC})
        for key in touched:
            account = accounts[key]
            if not account.quota_bytes:
                continue
            start, end = period_of(account, now)
            used = self._current_value(key, METRICS[QUOTA_METRIC], start, end)
            for threshold in THRESHOLDS:
                if used * 100 < threshold * account.quota_bytes:
                    break
                first = self.db.execute(insert(ThresholdCrossing).values(
                    kind=key[0], account_id=key[1], metric=QUOTA_METRIC, period_start=start, threshold=threshold,
                    used_bytes=used, quota_bytes=account.quota_bytes,
                ).on_conflict_do_nothing().returning(ThresholdCrossing.threshold)).first()
                if first is not None:
                    add_event(self.db, Outbox, "usage.threshold_crossed", {
                        "account": {"kind": key[0], "id": key[1]}, "metric": QUOTA_METRIC,
                        "threshold": threshold, "used_bytes": used, "quota_bytes": account.quota_bytes,
                        "period_start": rfc3339(start)})

    # -- reads ---------------------------------------------------------------------------------

    @api_rpc
    def get_usage(self, actor, account_ref):
        """The usage page: storage used in the current period, the quota, and the daily series.
        Authorized like billing's pages (billing.view); NotFound / Forbidden from orgs pass through."""
        kind, account_id = self._authorized(actor, account_ref)
        account = self._account(kind, account_id)
        start, end = period_of(account, utc_now())
        metric = METRICS[QUOTA_METRIC]
        used = self._current_value((kind, account_id), metric, start, end)
        last_day = (end - timedelta(microseconds=1)).astimezone(timezone.utc).date()
        daily = self.db.execute(
            select(DailyUsage.day, DailyUsage.value).where(
                DailyUsage.kind == kind, DailyUsage.account_id == account_id, DailyUsage.metric == metric.name,
                DailyUsage.day >= start.astimezone(timezone.utc).date(), DailyUsage.day <= last_day)
            .order_by(DailyUsage.day)).all()
        return {
            "period_start": rfc3339(start), "period_end": rfc3339(end),
            **quota_figures(used, account.quota_bytes if account else None),
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
        projection = self._account(kind, account_id)
        start, end = period_of(projection, utc_now())
        used = self._current_value((kind, account_id), METRICS[QUOTA_METRIC], start, end)
        return quota_figures(used, projection.quota_bytes if projection else None)

    def _authorized(self, actor, account_ref):
        """(kind, account id) after orgs.authorize, as billing's _account asks it."""
        actor = load_or_raise(Principal(), actor)
        ref = requested_account(actor, account_ref)
        granted = self.orgs.authorize(actor["id"], ref, VIEW_BILLING)
        return ref["kind"], str(granted["account"]["id"])

    def _account(self, kind, account_id):
        return self.db.scalar(select(UsageAccount).where(
            UsageAccount.kind == kind, UsageAccount.account_id == account_id)
            .execution_options(populate_existing=True))

    def _current_value(self, key, metric, start, end):
        """The metric's value in the period starting at `start`: its period row (primary-key lookup).
        A gauge with no report in this period yet carries the last known level over (storage does
        not empty itself at a renewal): the latest day before the period's end, one index probe."""
        kind, account_id = key
        value = self.db.scalar(select(PeriodUsage.value).where(
            PeriodUsage.kind == kind, PeriodUsage.account_id == account_id,
            PeriodUsage.metric == metric.name, PeriodUsage.period_start == start))
        if value is None and metric.carries_over:
            value = self.db.scalar(select(DailyUsage.value).where(
                DailyUsage.kind == kind, DailyUsage.account_id == account_id, DailyUsage.metric == metric.name,
                DailyUsage.day <= (end - timedelta(microseconds=1)).astimezone(timezone.utc).date())
                .order_by(DailyUsage.day.desc()).limit(1))
        return value or 0

    # -- what other services tell us -----------------------------------------------------------

    @consumes("user.signed_up", sources=("identity",), inbox=Inbox)
    def on_user_signed_up(self, event):
        self._learn_account("personal", event["user_id"])

    @consumes("org.created", sources=("orgs",), inbox=Inbox)
    def on_org_created(self, event):
        self._learn_account("org", event["org_id"])

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
