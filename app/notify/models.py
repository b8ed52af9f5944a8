"""The outbox: one row per message for one contact about one timeline event."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, check_in


class NotificationStatus(StrEnum):
    pending = "pending"  # queued, not tried yet
    retrying = "retrying"  # a transient failure; tried again at next_attempt_at
    sent = "sent"  # the provider took it: never sent again
    failed = "failed"  # a permanent failure (the contact may be disabled)
    dead = "dead"  # gave up after the last attempt: staff see it and may retry
    suppressed = "suppressed"  # nothing to send any more (consent withdrawn, contact disabled)


UNDELIVERED = (NotificationStatus.pending.value, NotificationStatus.retrying.value)


class Notification(Base):
    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("ticket.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[int | None] = mapped_column(ForeignKey("ticket_event.id", ondelete="SET NULL"))
    event_kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))  # the contact's kind when it was queued
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(Text)
    # What was sent, as rendered at the first attempt (the citizen's own view shows it).
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("contact_id", "event_id"),
        CheckConstraint(check_in("status", tuple(NotificationStatus)), name="status_known"),
        Index(
            "ix_notification_undelivered",
            "contact_id",
            "ticket_id",
            "id",
            postgresql_where=text("status IN ('pending', 'retrying')"),
        ),
        Index(
            "ix_notification_dead",
            "created_at",
            postgresql_where=text("status IN ('dead', 'failed')"),
        ),
    )
