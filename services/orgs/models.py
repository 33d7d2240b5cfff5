import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.emails import EMAIL_KEY_MAX_LENGTH
from shared.models import InboxMixin, OutboxMixin, utc_now_column


class Base(DeclarativeBase):
    pass


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    owner_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = utc_now_column()


class Membership(Base):
    """A user's role in an organization, with the user's email and name as they were when they joined."""

    __tablename__ = "memberships"
    __table_args__ = (
        # The database itself refuses a second owner, whatever a bug upstream might try.
        Index("uq_memberships_one_owner", "org_id", unique=True, postgresql_where=text("role = 'owner'")),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(20))
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(EMAIL_KEY_MAX_LENGTH))  # shared.emails.email_key(email)
    name: Mapped[str] = mapped_column(String(200))
    joined_at: Mapped[datetime] = utc_now_column()


class Invitation(Base):
    """An invitation by email. Only a hash of its token is kept; the token itself is shown once."""

    __tablename__ = "invitations"
    __table_args__ = (
        Index(
            "uq_invitations_one_pending_per_email", "org_id", "email_key",
            unique=True, postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))  # as typed, to show
    email_key: Mapped[str] = mapped_column(String(EMAIL_KEY_MAX_LENGTH))  # as compared: shared.emails.email_key
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|accepted|revoked|expired
    invited_by: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = utc_now_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepted_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Outbox(OutboxMixin, Base):
    pass


class Inbox(InboxMixin, Base):
    pass
