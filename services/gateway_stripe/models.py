from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.models import InboxMixin, OutboxMixin, utc_now_column


class Base(DeclarativeBase):
    pass


class StripeCustomer(Base):
    """Our billing account <-> its Stripe customer (one each way)."""

    __tablename__ = "customers"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = utc_now_column()


class StripePrice(Base):
    """Prices we created, by lookup key (plan, currency, amount): a price change makes a new key."""

    __tablename__ = "prices"

    lookup_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    price_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = utc_now_column()


class WebhookEvent(Base):
    """Every verified Stripe event, stored once by its id before we answer 200."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[int] = mapped_column(BigInteger)  # Stripe's own timestamp
    payload: Mapped[dict] = mapped_column(JSONB)
    received_at: Mapped[datetime] = utc_now_column()


class Outbox(OutboxMixin, Base):
    pass


class Inbox(InboxMixin, Base):
    pass
