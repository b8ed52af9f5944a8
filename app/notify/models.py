"""The outbox: one row per message for one contact about one timeline event."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
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


class Reason(StrEnum):
    """Why a person hears about something."""

    reporter = "reporter"  # their own report: the acknowledgement
    subscriber = "subscriber"  # they follow the ticket (reported, supported, followed)
    area = "area"  # they follow the place
    broadcast = "broadcast"  # the city's notice to everyone in an area
    reply = "reply"  # an answer in the thread of a post the person addressed to the city
    staff = "staff"  # a staff member's own contact: a spike alert (app/talk)


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
    reason: Mapped[str] = mapped_column(String(16), server_default="subscriber")
    broadcast_id: Mapped[int | None] = mapped_column(ForeignKey("broadcast.id", ondelete="CASCADE"))
    # A place's daily digest: {"label", "new": [references], "fixed": [references]}.
    digest: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # An answer in a social thread (``app.social``): the post it answers, and where to reply
    # ({"platform", "account", "post", "handle", "credentials"}); the body is written here.
    social_post_id: Mapped[int | None] = mapped_column(
        ForeignKey("social_post.id", ondelete="SET NULL")
    )
    reply_to: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
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
    # What the platform said later about a sent message (WhatsApp's receipts, by provider_id).
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("contact_id", "event_id"),
        UniqueConstraint("contact_id", "broadcast_id"),
        CheckConstraint(check_in("status", tuple(NotificationStatus)), name="status_known"),
        CheckConstraint(check_in("reason", tuple(Reason)), name="reason_known"),
        Index(
            "ix_notification_undelivered",
            "contact_id",
            "ticket_id",
            "id",
            postgresql_where=text("status IN ('pending', 'retrying')"),
        ),
        # The delivery job's claim (oldest first) and its next wake-up (migration 0020).
        Index(
            "ix_notification_queue",
            "id",
            postgresql_where=text("status IN ('pending', 'retrying')"),
        ),
        Index(
            "ix_notification_waiting",
            "next_attempt_at",
            postgresql_where=text(
                "status IN ('pending', 'retrying') AND next_attempt_at IS NOT NULL"
            ),
        ),
        # How many messages a contact was sent in the last hour (the city's rate limit).
        Index(
            "ix_notification_sent_recently",
            "contact_id",
            "sent_at",
            postgresql_where=text("status = 'sent'"),
        ),
        # One acknowledgement and one question for the location per post, however often
        # the pipeline runs over it.
        Index(
            "uq_notification_social_post_id_event_kind",
            "social_post_id",
            "event_kind",
            unique=True,
            postgresql_where=text(
                "social_post_id IS NOT NULL AND event_kind IN ('post_linked', 'location_asked')"
            ),
        ),
        # Linking a post that replies to one of the city's answers (``app.social``).
        Index(
            "ix_notification_provider_id",
            "provider_id",
            postgresql_where=text(
                "provider_id IS NOT NULL AND reason IN ('reporter', 'subscriber', 'reply')"
            ),
        ),
        # A WhatsApp receipt finds its message (``app.notify.receipts``).
        Index(
            "ix_notification_whatsapp_provider_id",
            "provider_id",
            postgresql_where=text("channel = 'whatsapp' AND provider_id IS NOT NULL"),
        ),
        Index(
            "ix_notification_dead",
            "created_at",
            postgresql_where=text("status IN ('dead', 'failed')"),
        ),
    )


class AreaSubscription(Base):
    """A contact follows a place: an area of the city, or a radius around a point."""

    __tablename__ = "area_subscription"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id", ondelete="CASCADE"))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="SET NULL"))
    geom: Mapped[Any] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False
    )
    label: Mapped[str | None] = mapped_column(String(200))
    topics: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    mode: Mapped[str] = mapped_column(String(16), server_default="immediate")
    # Digests: told up to this time (the daily job moves it with the message it writes).
    digest_through: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("mode IN ('immediate', 'digest')", name="mode_known"),
        CheckConstraint(
            "topics <@ ARRAY['new_tickets', 'fixes']::varchar[] AND cardinality(topics) > 0",
            name="topics_known",
        ),
        Index(
            "ix_area_subscription_live_geom",
            "geom",
            postgresql_using="gist",
            postgresql_where=text("ended_at IS NULL"),
        ),
    )


class Broadcast(Base):
    """An emergency notice to every subscriber inside a polygon (CAP 1.2 when published)."""

    __tablename__ = "broadcast"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), unique=True, server_default=text("gen_random_uuid()")
    )
    jurisdiction_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("jurisdiction.id", ondelete="CASCADE"), index=True
    )
    polygon: Mapped[Any] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False
    )
    area_description: Mapped[str] = mapped_column(String(500))
    headline: Mapped[str] = mapped_column(String(160))
    body: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    urgency: Mapped[str] = mapped_column(String(16))
    certainty: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), server_default="queueing")
    # Queued in batches by contact id: a crash resumes after the last one queued.
    queued_through_contact: Mapped[int] = mapped_column(BigInteger, server_default="0")
    counts: Mapped[dict[str, int]] = mapped_column(JSONB, server_default=text("'{}'"))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("status IN ('queueing', 'queued', 'cancelled')", name="status_known"),
    )
