import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.models import InboxMixin, OutboxMixin, utc_now_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (Index("uq_users_email_lower", text("lower(email)"), unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320))  # as typed; uniqueness ignores case
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    password_hash: Mapped[str] = mapped_column(String(200))
    # The plan picked on the marketing site before signup, offered once right after it.
    pending_plan_code: Mapped[str | None] = mapped_column(String(64))
    pending_plan_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = utc_now_column()


class AuthSession(Base):
    """A signed-in session. Only the SHA-256 of its token is stored: a database leak yields no tokens."""

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = utc_now_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Outbox(OutboxMixin, Base):
    pass


class Inbox(InboxMixin, Base):
    pass
