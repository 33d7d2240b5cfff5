"""usage's tables: raw reports (kept for a retention window), aggregates (kept), plan projection.

Every read of the usage page or the billing summary is answered from `period_usage` (one row by
primary key) and `daily_usage` (one primary-key range of at most the days in a period); no read
ever scans `usage_events`, which only serves idempotency and the retention purge.
"""
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, DateTime, Index, SmallInteger, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.models import InboxMixin, OutboxMixin, ParkedMessageMixin, utc_now_column


class Base(DeclarativeBase):
    pass


class UsageAccount(Base):
    """An account usage knows (from user.signed_up / org.created / plan.*) and its plan projection.

    `quota_bytes` None: no plan. `period_start`/`period_end` None: periods are calendar months (UTC).
    `plan_event_at` is the occurred_at of the last plan event applied: an older one, delivered late,
    changes nothing.
    """

    __tablename__ = "usage_accounts"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # the PK is the ingest check's lookup
    account_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    subscription_id: Mapped[str | None] = mapped_column(String(100))
    plan_code: Mapped[str | None] = mapped_column(String(100))
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    interval: Mapped[str | None] = mapped_column(String(10))  # "month" | "year"
    period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="none")  # none | active | cancelled
    plan_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = utc_now_column()


class UsageMember(Base):
    """Who is a member of an organization, with what role: a projection of orgs' member.* events,
    so that a usage read is authorized without a call to orgs.

    A removed member keeps a row with `role` None, and `changed_at` is the occurred_at of the newest
    event applied: an older event delivered late (a join after the removal that followed it) changes
    nothing. A pair with no row was never announced here (it predates the projection, or its event
    is still in flight): reads ask orgs for those.
    """

    __tablename__ = "usage_members"

    org_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str | None] = mapped_column(String(20))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UsageEvent(Base):
    """One accepted report. The primary key on the sender's id makes a resend a no-op."""

    __tablename__ = "usage_events"
    __table_args__ = (
        # The retention purge deletes by age in bounded batches: without this index every batch would
        # scan the whole (large) table.
        Index("ix_usage_events_occurred_at", "occurred_at"),
    )

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    account_id: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(50))
    value: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = utc_now_column()


class PeriodUsage(Base):
    """Per (account, metric, period): the value (gauge: latest by timestamp; counter: sum) and the
    report time it came from. The primary key makes the current-period read one index lookup."""

    __tablename__ = "period_usage"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    metric: Mapped[str] = mapped_column(String(50), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    value: Mapped[int] = mapped_column(BigInteger)
    value_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = utc_now_column()


class DailyUsage(Base):
    """Per (account, metric, UTC day): gauge: the day's latest report; counter: the day's sum.

    The primary key's order (account, metric, day) makes a period's series one range scan of at most
    the period's days, and "the latest day before X" (a gauge carried into a new period) one backward
    index probe."""

    __tablename__ = "daily_usage"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    metric: Mapped[str] = mapped_column(String(50), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
    value_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ThresholdCrossing(Base):
    """A usage.threshold_crossed already announced: the primary key lets it happen once per account,
    metric, period and threshold (a new period has a new key, so it starts afresh)."""

    __tablename__ = "usage_thresholds"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    metric: Mapped[str] = mapped_column(String(50), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    threshold: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    used_bytes: Mapped[int] = mapped_column(BigInteger)
    quota_bytes: Mapped[int] = mapped_column(BigInteger)
    crossed_at: Mapped[datetime] = utc_now_column()


class Outbox(OutboxMixin, Base):
    pass


class Inbox(InboxMixin, Base):
    pass


class ParkedMessage(ParkedMessageMixin, Base):
    pass
