from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.models import InboxMixin, OutboxMixin, gateway_scope_column, utc_now_column


class Base(DeclarativeBase):
    pass


class CashfreePlan(Base):
    """A Cashfree plan per scope (cashfree_api.account_scope: merchant and environment), catalogue
    plan and INR price (a price change makes a new one; other credentials make it again there)."""

    __tablename__ = "plans"

    scope: Mapped[str] = gateway_scope_column(primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    plan_code: Mapped[str] = mapped_column(String(64))
    interval: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = utc_now_column()


class CashfreeSubscription(Base):
    """A subscription we created at Cashfree, one per checkout, with what Cashfree does not report:
    the current period (from its successful charges) and a cancellation we scheduled for its end."""

    __tablename__ = "subscriptions"

    subscription_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    checkout_id: Mapped[str] = mapped_column(String(64))
    plan_code: Mapped[str] = mapped_column(String(64))
    plan_label: Mapped[str] = mapped_column(String(200))  # "Growth (monthly)", for history lines
    amount: Mapped[int] = mapped_column(BigInteger)  # the plan's price in paise, when Cashfree omits it
    interval: Mapped[str] = mapped_column(String(10))
    session_id: Mapped[str | None] = mapped_column(String(255))
    authorized_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    current_period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Cashfree's subscription_status as last heard (webhook or reconciliation): reconciliation
    # announces a status only when Cashfree's differs from it.
    gateway_status: Mapped[str | None] = mapped_column(String(40))
    # The first period's money (see FIRST_PAYMENT in service.py): None until the mandate is authorised,
    # then verify | charge | charged | cancel | failed, or paid once the plan's price was collected.
    first_payment: Mapped[str | None] = mapped_column(String(10))
    # A CHANGE_PLAN charged from the next cycle: the plan above stays the one paid for until a charge
    # of the new plan's amount succeeds.
    pending_plan_code: Mapped[str | None] = mapped_column(String(64))
    pending_plan_label: Mapped[str | None] = mapped_column(String(200))
    pending_amount: Mapped[int | None] = mapped_column(BigInteger)
    pending_interval: Mapped[str | None] = mapped_column(String(10))
    # When the change was made: only a charge after it is the new plan's (reconciliation reads old ones again).
    pending_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = utc_now_column()


class CashfreeOrder(Base):
    """Order payments (payment links make orders): SUCCESS is final, so a late FAILED for a paid
    order changes nothing. How it was paid is kept for the billing page's payment methods."""

    __tablename__ = "orders"

    order_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    method_type: Mapped[str | None] = mapped_column(String(20))
    method_reference: Mapped[str | None] = mapped_column(String(100))


class CashfreeLink(Base):
    """A Cashfree payment link we made, by Cashfree's link_id (which we choose)."""

    __tablename__ = "links"

    cashfree_link_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    link_id: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = utc_now_column()


class WebhookEvent(Base):
    """Every verified Cashfree webhook, stored once (by its type and body digest, what Cashfree
    signed) before we answer 200: what a replay runs again."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)  # exactly as received (amounts stay exact decimals)
    received_at: Mapped[datetime] = utc_now_column()


class Outbox(OutboxMixin, Base):
    pass


class Inbox(InboxMixin, Base):
    pass
