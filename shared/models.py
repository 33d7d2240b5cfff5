"""Table mixins every service's models use (the outbox, the inbox, parked messages), and columns
some share."""
import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, declared_attr, mapped_column


def utc_now_column(**kwargs):
    return mapped_column(DateTime(timezone=True), server_default=func.now(), **kwargs)


# The gateway scope of rows kept before scopes were (or written without one): it matches no real
# scope, so such a row never names an object to a gateway again.
UNKNOWN_SCOPE = "unknown"


def gateway_scope_column(**kwargs):
    """The gateway account and mode an object of a gateway adapter was made in (its API module's
    account_scope()): objects made with other keys are never named to the gateway in use."""
    return mapped_column(String(200), server_default=UNKNOWN_SCOPE, **kwargs)


class OutboxMixin:
    """Events waiting to be published. Written in the same transaction as the state they announce."""

    __tablename__ = "outbox"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = utc_now_column()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)

    @declared_attr.directive
    def __table_args__(cls):
        # The relay only ever reads unsent rows, oldest first: keep that read small.
        return (Index("ix_outbox_unsent", "created_at", postgresql_where=text("sent_at IS NULL")),)


class InboxMixin:
    """Ids of messages this service has already handled; a redelivery finds its id and does nothing."""

    __tablename__ = "inbox"

    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    handled_at: Mapped[datetime] = utc_now_column()


class ParkedMessageMixin:
    """Messages a consumer could not apply and never will by retrying (a constraint violated, a value
    out of range, a bug): kept here for an operator (`make ops ARGS="parked"`) instead of being
    re-queued forever or dropped, and replayed by the service's `replay_parked` once the cause is
    fixed. `payload` is the message's JSON as text: a payload that JSONB refuses can still be parked."""

    __tablename__ = "parked_messages"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    event_type: Mapped[str] = mapped_column(String(100))
    # One row per message (the inbox's id): the same message failing again updates its row.
    event_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    payload: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    parked_at: Mapped[datetime] = utc_now_column()
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
