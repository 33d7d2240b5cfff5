"""By hand, not a test: how long record_events takes for 1000 new reports, and which INSERT form
is faster for the raw rows.

    TEST_DATABASE_PREFIX=helper10_ .venv/bin/python -m services.usage.timing_check

Uses <prefix>usage (migrated to head first) and leaves it truncated.
"""
import os
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
os.environ["DATABASE_PREFIX"] = os.environ.get("TEST_DATABASE_PREFIX", "timing_")

import statistics  # noqa: E402
import time  # noqa: E402
from datetime import timedelta  # noqa: E402
from uuid import uuid4  # noqa: E402

from nameko.testing.services import worker_factory  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.dialects.postgresql import insert  # noqa: E402

from services.usage.models import UsageAccount, UsageEvent  # noqa: E402
from services.usage.ingest import UsageIngestService
from services.usage.reports import parse_rfc3339  # noqa: E402
from shared import db  # noqa: E402
from shared.migrate import upgrade  # noqa: E402
from shared.outbox import rfc3339, utc_now  # noqa: E402

RUNS = 10


def truncate(session):
    session.execute(text("TRUNCATE usage_events, period_usage, daily_usage, usage_thresholds, usage_accounts, "
                         "outbox, inbox"))
    session.commit()


def batch(accounts, size=1000):
    now = utc_now()
    return [{"id": str(uuid4()), "account": accounts[i % len(accounts)],
             "metric": ("storage_bytes", "transfer_bytes")[i % 2], "value": i,
             "timestamp": rfc3339(now - timedelta(seconds=i))} for i in range(size)]


def raw_rows(events):
    return [{"event_id": e["id"], "kind": e["account"]["kind"], "account_id": e["account"]["id"],
             "metric": e["metric"], "value": e["value"], "occurred_at": parse_rfc3339(e["timestamp"])}
            for e in events]


def timed(fn):
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main():
    upgrade("usage")
    session = db.make_session_factory("usage")()
    truncate(session)
    service = worker_factory(UsageIngestService, db=session)
    accounts = [{"kind": "org", "id": str(uuid4())} for _ in range(10)]
    for account in accounts:
        session.add(UsageAccount(kind=account["kind"], account_id=account["id"], status="none"))
    session.commit()

    service.record_events(batch(accounts))  # warm-up (connection, statement compilation)
    new = [timed(lambda: service.record_events(batch(accounts))) for _ in range(RUNS)]
    events = batch(accounts)
    service.record_events(events)
    resent = [timed(lambda: service.record_events(events)) for _ in range(RUNS)]
    validation_only = batch(accounts)
    for event in validation_only:
        event["metric"] = "nope"  # rejected before any SQL
    checks = [timed(lambda: service.record_events(validation_only)) for _ in range(RUNS)]

    def values_form():
        session.execute(insert(UsageEvent).values(raw_rows(batch(accounts)))
                        .on_conflict_do_nothing(index_elements=["event_id"]).returning(UsageEvent.event_id)).all()
        session.commit()

    def executemany_form():
        raw = UsageEvent.__table__
        session.execute(insert(raw).on_conflict_do_nothing(index_elements=["event_id"])
                        .returning(raw.c.event_id), raw_rows(batch(accounts))).all()
        session.commit()

    values_ms = [timed(values_form) for _ in range(RUNS)]
    executemany_ms = [timed(executemany_form) for _ in range(RUNS)]
    truncate(session)
    session.close()
    print(f"record_events, 1000 new reports (10 accounts, 2 metrics): median {statistics.median(new):.1f} ms "
          f"(min {min(new):.1f}, max {max(new):.1f})")
    print(f"record_events, the same 1000 again (all duplicates): median {statistics.median(resent):.1f} ms")
    print(f"record_events, 1000 rejected by the hand validator: median {statistics.median(checks):.2f} ms")
    print(f"raw INSERT only: insert().values([...]) median {statistics.median(values_ms):.1f} ms; "
          f"execute(insert, rows) median {statistics.median(executemany_ms):.1f} ms")


if __name__ == "__main__":
    main()
