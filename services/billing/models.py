import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.models import InboxMixin, OutboxMixin, ParkedMessageMixin, utc_now_column


class Base(DeclarativeBase):
    pass


# A subscription in one of these states is the account's plan, or is becoming it. An account has at
# most one (a partial unique index): a second purchase that lands anyway is refunded. `unpaid` (the
# gateway gave up collecting) is not live: the account may buy again.
LIVE_STATUSES = ("incomplete", "active", "past_due")
IS_LIVE_SQL = "status IN ({})".format(", ".join(f"'{status}'" for status in LIVE_STATUSES))


def uuid_pk():
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


class BillingAccount(Base):
    """Who pays: a user's personal licence or an organization. Country, currency and gateway are
    fixed when the account is made: they decide where money goes and in what currency."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("kind", "owner_ref", name="uq_accounts_kind_owner"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    kind: Mapped[str] = mapped_column(String(10))  # personal | org
    owner_ref: Mapped[str] = mapped_column(String(64))  # the user id or the org id
    country: Mapped[str] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3))
    gateway: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = utc_now_column()


class Quote(Base):
    """What "Upgrade Now" shows before paying. Never changed after it is made; it expires."""

    __tablename__ = "quotes"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # new | change
    plan: Mapped[dict] = mapped_column(JSONB)  # the plan as priced for this account
    from_subscription_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    currency: Mapped[str] = mapped_column(String(3))
    lines: Mapped[list] = mapped_column(JSONB)
    amount_due: Mapped[int] = mapped_column(BigInteger)
    recurring_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # when the plan's own price applies
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = utc_now_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Checkout(Base):
    """One attempt to pay a quote ("Pay Now"). At most one per quote, so a retry of the same quote
    reuses the id, and with it the gateway idempotency key."""

    __tablename__ = "checkouts"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    quote_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quotes.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    plan_code: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # creating -> open -> completed | expired | failed; creating/failed(gateway_error) may be retried
    status: Mapped[str] = mapped_column(String(12))
    # expired | superseded | declined | gateway_error | payment_declined | duplicate_purchase | amount_mismatch
    failure_reason: Mapped[str | None] = mapped_column(String(40))
    gateway: Mapped[str] = mapped_column(String(20))
    gateway_checkout_id: Mapped[str | None] = mapped_column(String(255), index=True)
    redirect_url: Mapped[str | None] = mapped_column(String(2000))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = utc_now_column()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the gateway confirmed that this hosted checkout can no longer be paid. A checkout closed
    # here (superseded, expired) stays payable at the gateway until then: the settle pass closes it.
    gateway_closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PaymentLink(Base):
    """A link to pay for a plan, made by a manager and sent to whoever pays; the payment credits
    the account that made it. active -> paid | cancelled | expired (creating/failed: never usable)."""

    __tablename__ = "payment_links"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    plan_code: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12))
    gateway: Mapped[str] = mapped_column(String(20))
    gateway_link_id: Mapped[str | None] = mapped_column(String(255), index=True)
    url: Mapped[str | None] = mapped_column(String(2000))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = utc_now_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # paid, cancelled or expired
    # A link whose creation failed may still exist at the gateway: it is deactivated there, then marked.
    abandoned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Subscription(Base):
    """Our view of one gateway subscription, moved only by newer gateway snapshots, and our verdict
    on it: a plan is granted only once the gateway says the quoted amount was collected
    (`verified_at`), and a subscription put on hold (`hold_reason`) never becomes live again."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("uq_subscriptions_one_live_per_account", "account_id", unique=True,
              postgresql_where=text(IS_LIVE_SQL)),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(20))
    gateway_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    checkout_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    link_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))  # the payment link that bought it
    plan_code: Mapped[str] = mapped_column(String(64))
    # A plan change the gateway charges from the next cycle (Cashfree): the quota stays the paid-for
    # plan's until the new plan's first charge succeeds.
    pending_plan_code: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12))  # incomplete | active | past_due | unpaid | cancelled
    current_period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    # The gateway's time of the newest snapshot applied (unix s); older ones are ignored.
    last_event_at: Mapped[int] = mapped_column(BigInteger, default=0)
    purchased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # plan.purchased sent
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The gateway collected the quoted amount and currency for the first period (checkout or link).
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # duplicate_purchase: bought while the account had a plan (cancelled and refunded at the gateway);
    # second_live_plan: came back to life beside another plan (cancelled at the gateway; an operator
    # decides on a refund); amount_mismatch: collected something other than the quote (no plan; an
    # operator decides).
    hold_reason: Mapped[str | None] = mapped_column(String(30))
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))  # the plan it would have doubled
    # When the gateway was made to match the hold (cancelled, and refunded where due).
    gateway_settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = utc_now_column()


class Payment(Base):
    """A line of billing history: one gateway invoice paid, or one failed attempt to pay it."""

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("gateway_invoice_id", "status", name="uq_payments_invoice_status"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    gateway_invoice_id: Mapped[str] = mapped_column(String(255))
    gateway_subscription_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(10))  # paid | failed | refunded
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(String(500))
    invoice_url: Mapped[str | None] = mapped_column(String(2000))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the gateway's time (seconds)
    # The period a paid invoice pays for: a payment may arrive before the subscription it pays.
    period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = utc_now_column()  # orders lines the gateway stamped in the same second


class Alert(Base):
    """Something an operator must look at (`make ops ARGS="show-account ..."` and `... alerts`):
    money taken that did not match what was quoted, a plan that came back beside another."""

    __tablename__ = "alerts"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = utc_now_column()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PaymentMethodSnapshot(Base):
    """The last list of payment methods the gateway gave for an account, shown if it is unreachable."""

    __tablename__ = "payment_method_snapshots"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    methods: Mapped[list] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = utc_now_column()


class Outbox(OutboxMixin, Base):
    pass


class Inbox(InboxMixin, Base):
    pass


class ParkedMessage(ParkedMessageMixin, Base):
    pass
