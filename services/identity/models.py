import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.emails import EMAIL_KEY_MAX_LENGTH
from shared.models import InboxMixin, OutboxMixin, utc_now_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (Index("uq_users_email_key", "email_key", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320))  # as typed
    # One account per key (shared.emails.email_key), the form orgs matches invitations in.
    email_key: Mapped[str] = mapped_column(String(EMAIL_KEY_MAX_LENGTH))
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    phone: Mapped[str | None] = mapped_column(String(16))  # E.164 (at most 15 digits after the +)
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


class LoginAttempt(Base):
    """A login attempt not (yet) known to have succeeded, once for its email and once for its
    client's address. The brute-force limit counts these rows in a sliding window: kept in the
    database, the count holds across every gateway_http and identity process."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_subject_time", "subject", "attempted_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # "email:" + SHA-256 of the lower-cased email (what was typed there is not kept), or "ip:" + address
    subject: Mapped[str] = mapped_column(String(100))
    attempted_at: Mapped[datetime] = utc_now_column()


class Outbox(OutboxMixin, Base):
    pass


class Inbox(InboxMixin, Base):
    pass
