"""Tickets (a real-world problem at a place: a cluster of reports), their timeline and followers."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, check_in


class TicketStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    scheduled = "scheduled"
    in_progress = "in_progress"
    fixed = "fixed"
    closed = "closed"
    duplicate = "duplicate"
    not_our_responsibility = "not_our_responsibility"
    rejected = "rejected"
    reopened = "reopened"


# A new report of the same problem may join a ticket only while it is in one of these.
OPEN_STATUSES: tuple[str, ...] = (
    TicketStatus.open,
    TicketStatus.acknowledged,
    TicketStatus.scheduled,
    TicketStatus.in_progress,
    TicketStatus.reopened,
)


class Ticket(Base):
    __tablename__ = "ticket"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)  # K-2026-000123
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"), index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"))
    area_id: Mapped[int | None] = mapped_column(
        ForeignKey("area.id", ondelete="SET NULL"), index=True
    )
    crew_id: Mapped[int | None] = mapped_column(
        ForeignKey("crew.id", ondelete="SET NULL"), index=True
    )
    location: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=4326, spatial_index=False), nullable=False
    )
    address: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), server_default=TicketStatus.open.value)
    priority: Mapped[int] = mapped_column(SmallInteger, server_default=text("3"))
    report_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    supporter_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    first_reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acknowledge_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolve_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fixed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(check_in("status", tuple(TicketStatus)), name="status_known"),
        CheckConstraint("priority BETWEEN 1 AND 5", name="priority_range"),
        CheckConstraint("report_count >= 0 AND supporter_count >= 0", name="counts_positive"),
        Index("ix_ticket_location", "location", postgresql_using="gist"),
        # The duplicate check: open tickets of one service near a point (needs btree_gist).
        Index(
            "ix_ticket_open_service_location",
            "service_id",
            "location",
            postgresql_using="gist",
            postgresql_where=text(check_in("status", OPEN_STATUSES)),
        ),
        Index("ix_ticket_jurisdiction_updated", "jurisdiction_id", "updated_at", "id"),
        Index("ix_ticket_status_service", "status", "service_id"),
    )


class EventKind(StrEnum):
    ticket_opened = "ticket_opened"
    report_attached = "report_attached"
    supporter_added = "supporter_added"
    follower_added = "follower_added"
    status_changed = "status_changed"
    comment = "comment"
    assigned = "assigned"
    priority_changed = "priority_changed"
    merged = "merged"
    split_off = "split"  # not "split": that would shadow str.split
    photo_added = "photo_added"
    inbound_message = "inbound_message"
    notification_sent = "notification_sent"
    notification_failed = "notification_failed"
    sla_warning = "sla_warning"
    sla_breached = "sla_breached"


class TicketEvent(Base):
    """One append-only line on a ticket's timeline. ``public`` lines are shown to everyone."""

    __tablename__ = "ticket_event"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    public: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("app_user.id", ondelete="SET NULL")
    )
    actor_label: Mapped[str | None] = mapped_column(String(100))  # "system", "api-key:importer"
    report_id: Mapped[int | None] = mapped_column(ForeignKey("report.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(check_in("kind", tuple(EventKind)), name="kind_known"),
        Index("ix_ticket_event_ticket_id_id", "ticket_id", "id"),
    )


class SubscriptionReason(StrEnum):
    reporter = "reporter"
    follower = "follower"
    supporter = "supporter"


class Subscription(Base):
    """Someone who hears about a ticket's progress: a reporter, a follower or a supporter.

    Either a signed-in user or a contact (email, push token, ...) with consent to be told.
    One row per person per ticket, so nobody is told twice.
    """

    __tablename__ = "subscription"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("user_id IS NOT NULL OR contact_id IS NOT NULL", name="has_someone"),
        CheckConstraint(check_in("reason", tuple(SubscriptionReason)), name="reason_known"),
        Index(
            "uq_subscription_ticket_user",
            "ticket_id",
            "user_id",
            unique=True,
            postgresql_where=text("user_id IS NOT NULL"),
        ),
        Index(
            "uq_subscription_ticket_contact",
            "ticket_id",
            "contact_id",
            unique=True,
            postgresql_where=text("contact_id IS NOT NULL"),
        ),
    )
