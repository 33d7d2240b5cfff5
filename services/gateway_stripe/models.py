from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.models import InboxMixin, OutboxMixin, gateway_scope_column, utc_now_column


class Base(DeclarativeBase):
    pass


class StripeCustomer(Base):
    """Stripe customers of our billing accounts, each in the scope it was made in. kind "account":
    the one we made for the account's own checkouts (one per scope); kind "payer": one Stripe made
    for whoever paid one of the account's payment links, never used for the account's checkouts
    (the payer's email would be on them). Either maps back to the account (webhooks, cards)."""

    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    # A row that does not say is a payer's: never reused for a checkout.
    kind: Mapped[str] = mapped_column(String(10), server_default="payer")  # account | payer
    scope: Mapped[str] = gateway_scope_column()
    created_at: Mapped[datetime] = utc_now_column()


class StripePaymentLink(Base):
    """Our payment link <-> Stripe's Payment Link (Stripe copies no metadata to its sessions)."""

    __tablename__ = "payment_links"

    payment_link_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    link_id: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = gateway_scope_column()  # also that of the customer Stripe makes for its payer
    created_at: Mapped[datetime] = utc_now_column()


class StripePrice(Base):
    """Prices we created, per scope and lookup key (plan, currency, amount): a price change makes a
    new key, other Stripe keys a new scope."""

    __tablename__ = "prices"

    scope: Mapped[str] = gateway_scope_column(primary_key=True)
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
