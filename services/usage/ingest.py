"""usage_ingest: the write side of usage, in a process of its own.

Reports come in batches: `record_batch` takes the ingestion endpoint's JSON body as text (parsed
here, at this process's low priority, not in gateway_http); `record_events` takes a list, for
internal callers. Each report's id is the sender's idempotency key: the raw row's primary key.
A batch inserts its raw rows with one INSERT ... ON CONFLICT DO NOTHING RETURNING, folds only the
rows actually inserted into the period and daily aggregates (metrics.py says how), checks the quota
thresholds, and commits all of it in one transaction.

Why a service apart from `usage` (services/usage/service.py): a batch is CPU work in bursts of
milliseconds, and eventlet runs one greenthread at a time; in the same process, every read of the
usage page would queue behind the batches in flight. Both are usage: the same database, the same
outbox, events published under usage's name (`owner="usage"`).
"""
import json
from datetime import timedelta, timezone

from sqlalchemy import select, text, tuple_
from sqlalchemy.dialects.postgresql import insert

from services.usage.metrics import METRICS, QUOTA_METRIC
from services.usage.models import DailyUsage, Outbox, PeriodUsage, ThresholdCrossing, UsageAccount
from services.usage.periods import period_of
from services.usage.reads import current_value
from services.usage.reports import check_report, given_id, raw_retention_days
from services.usage.schemas import MAX_EVENTS_PER_REQUEST, TOO_MANY_EVENTS
from shared.db import Database
from shared.errors import ValidationFailed
from shared.outbox import add_event, OutboxRelay, rfc3339, utc_now
from shared.schemas import parse_json
from shared.service import HealthMixin, api_rpc

THRESHOLDS = (80, 100)  # percent of the quota; each announced once per account, metric and period

# The raw rows of a batch as one JSON text parameter, unpacked by PostgreSQL (json_to_recordset):
# one statement, one parameter, whatever the batch size. A multi-row VALUES of 1000 rows has 6,000
# parameters, which the driver re-parsed on every call (about 40 ms a batch); six arrays through
# unnest() took 10 ms of this process's CPU in psycopg's Python array dumper (py-spy, 28 % of a
# batch); json.dumps of the rows and PostgreSQL's JSON parser, both in C, take about 1 ms.
INSERT_REPORTS = text("""
    INSERT INTO usage_events (event_id, kind, account_id, metric, value, occurred_at)
    SELECT r.event_id, r.kind, r.account_id, r.metric, r.value, r.occurred_at
    FROM json_to_recordset(CAST(:rows AS json))
         AS r (event_id varchar, kind varchar, account_id varchar, metric varchar, value bigint,
               occurred_at timestamptz)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id""")


def reports_json(rows):
    """The rows for INSERT_REPORTS. Times go as RFC 3339 with their offset: the same instants."""
    return json.dumps([{"event_id": row["event_id"], "kind": row["kind"], "account_id": row["account_id"],
                        "metric": row["metric"], "value": row["value"],
                        "occurred_at": row["occurred_at"].isoformat()} for row in rows])


PERIOD_UPSERTS = {name: metric.upsert(PeriodUsage, ["kind", "account_id", "metric", "period_start"])
                  for name, metric in METRICS.items()}
DAILY_UPSERTS = {name: metric.upsert(DailyUsage, ["kind", "account_id", "metric", "day"])
                 for name, metric in METRICS.items()}


class UsageIngestService(HealthMixin):
    name = "usage_ingest"

    db = Database(owner="usage")
    outbox = OutboxRelay(Outbox, owner="usage")

    @api_rpc
    def record_batch(self, body):
        """POST /api/v1/usage/events's body, `{"events": [...]}` as JSON text -> as record_events.
        Raises BadRequest MALFORMED_JSON when it is not JSON (shared.schemas.parse_json's rules)."""
        # No depth walk (it would cost as much as the parse, 1.3 ms a batch): nothing here recurses
        # into a report, check_report reads fixed fields and refuses a report nested where a value
        # belongs, and a body deeper than the parser goes is still MALFORMED_JSON.
        batch = parse_json(body, max_depth=None) if isinstance(body, str) else None
        return self.record_events(batch.get("events") if isinstance(batch, dict) else None)

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
            row, reason = check_report(event, now, oldest)
            if row is not None:
                seen = good.get(row["event_id"])
                if seen is None:
                    good[row["event_id"]] = (position, row)
                    continue
                if seen[1] == row:
                    duplicates += 1
                    continue
                reason = "duplicate_in_batch"
            rejected.append((position, {"id": given_id(event), "reason": reason}))

        accounts = self._known_accounts({(row["kind"], row["account_id"]) for _, row in good.values()})
        rows = []
        for position, row in good.values():
            if (row["kind"], row["account_id"]) in accounts:
                rows.append(row)
            else:
                rejected.append((position, {"id": row["event_id"], "reason": "unknown_account"}))

        inserted = []
        if rows:
            # RETURNING names the rows that are new; the rest are resends of earlier batches.
            new_ids = set(self.db.scalars(INSERT_REPORTS, {"rows": reports_json(rows)}))
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
        last_period = {}  # account -> its (start, end) last found: a batch's reports mostly share one
        for row in rows:
            metric = METRICS[row["metric"]]
            value, moment = row["value"], row["occurred_at"]
            account_key = (row["kind"], row["account_id"])
            start, end = last_period.get(account_key, (None, None))
            if start is None or not start <= moment < end:
                start, end = last_period[account_key] = period_of(accounts[account_key], moment)
            key = (*account_key, metric.name, start)
            current = periods.get(key)
            periods[key] = (end, metric.fold(current[1] if current else None, value, moment))
            day_key = (row["kind"], row["account_id"], metric.name, moment.astimezone(timezone.utc).date())
            days[day_key] = metric.fold(days.get(day_key), value, moment)
        # Sorted keys: concurrent batches lock shared rows in the same order, so they cannot deadlock.
        for name in METRICS:
            period_rows = [
                {"kind": kind, "account_id": account_id, "metric": metric, "period_start": start,
                 "period_end": end, "value": value, "value_at": at}
                for (kind, account_id, metric, start), (end, (value, at)) in sorted(periods.items())
                if metric == name]
            if period_rows:
                self.db.execute(PERIOD_UPSERTS[name], period_rows)
            day_rows = [
                {"kind": kind, "account_id": account_id, "metric": metric, "day": day, "value": value,
                 "value_at": at}
                for (kind, account_id, metric, day), (value, at) in sorted(days.items()) if metric == name]
            if day_rows:
                self.db.execute(DAILY_UPSERTS[name], day_rows)

    def _check_thresholds(self, rows, accounts, now):
        """usage.threshold_crossed once per account, metric, current period and threshold reached."""
        touched = sorted({(row["kind"], row["account_id"]) for row in rows if row["metric"] == QUOTA_METRIC})
        for key in touched:
            account = accounts[key]
            if not account.quota_bytes:
                continue
            start, end = period_of(account, now)
            used = current_value(self.db, *key, METRICS[QUOTA_METRIC], start, end)
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
