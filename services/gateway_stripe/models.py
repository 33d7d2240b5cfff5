from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.models import InboxMixin, OutboxMixin, utc_now_column


class Base(DeclarativeBase):
    pass


class StripeCustomer(Base):
    """Stripe customers of our billing accounts: the one we made for the account's checkouts (the
    first), and those Stripe made for whoever paid one of its payment links."""

    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = utc_now_column()


class StripePaymentLink(Base):
    """Our payment link <-> Stripe's Payment Link (Stripe copies no metadata to its sessions)."""

    __tablename__ = "payment_links"

    payment_link_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    link_id: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = utc_now_column()


class StripePrice(Base):
    """Prices we created, by lookup key (plan, currency, amount): a price change makes a new key."""

    __tablename__ = "prices"

    lookup_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    price_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = utc_now_column()


class WebhookEvent(Base):
    """Every Stripe event we took in, stored once by its id (a verified webhook before we answer 200,
    or one that reconciliation found through GET /v1/events): what a replay runs again."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[int] = mapped_column(BigInteger)  # Stripe's own timestamp
    payload: Mapped[dict] = mapped_column(JSONB)
    received_at: Mapped[datetime] = utc_now_column()
    source: Mapped[str] = mapped_column(String(20), server_default="webhook")  # webhook | reconcile


class SyncCursor(Base):
    """How far reconciliation has read a gateway's event list (`events`: Stripe's newest `created`)."""

    __tablename__ = "sync_cursors"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = utc_now_column()


class Outbox(OutboxMixin, Base):
    pass


class Inbox(InboxMixin, Base):
    pass
