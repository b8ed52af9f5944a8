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


# Fixed or closed: a new report of the same problem soon after reopens the ticket.
DONE_STATUSES: tuple[str, ...] = (TicketStatus.fixed, TicketStatus.closed)

# Ended without a fix: no service level applies any more.
DISMISSED_STATUSES: tuple[str, ...] = (
    TicketStatus.duplicate,
    TicketStatus.not_our_responsibility,
    TicketStatus.rejected,
)


class WorkStatus(StrEnum):
    """Where a crew is with a ticket assigned to it (the work order's lifecycle)."""

    assigned = "assigned"
    accepted = "accepted"
    en_route = "en_route"
    on_site = "on_site"
    done = "done"
    unable = "unable"


class SlaFlag:
    """Bits of ``ticket.sla_flags``: which service-level events the sweep has recorded."""

    acknowledge_warning = 1
    acknowledge_breached = 2
    resolve_warning = 4
    resolve_breached = 8


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
    # The address as the `same_address` duplicate rule compares it (geo/address.py).
    address_key: Mapped[str | None] = mapped_column(Text)
    street_key: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), server_default=TicketStatus.open.value)
    # 1 (most urgent) to 5. Set by staff (`priority_manual`) or kept in step with the
    # computed signal by the service-level sweep (see app/tickets/priority.py).
    priority: Mapped[int] = mapped_column(SmallInteger, server_default=text("3"))
    priority_manual: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    report_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    supporter_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    first_reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acknowledge_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolve_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # 80 % of the way to each deadline (in business time when the service counts it).
    acknowledge_warn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolve_warn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sla_flags: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    # When the service-level sweep must next look at this ticket (the earliest warning or
    # deadline it has not recorded yet); NULL when nothing is left to watch.
    sla_next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fixed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the retention job dropped this closed ticket's personal data (``app.privacy``).
    personal_data_dropped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reopened_count: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    # The work order: set while a crew holds the ticket.
    work_status: Mapped[str | None] = mapped_column(String(16))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", ondelete="SET NULL"))
    # Needs more information (app/tickets/information.py): when staff last asked the
    # reporters, and when a reporter last answered (after it: back with staff).
    information_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    information_answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(check_in("status", tuple(TicketStatus)), name="status_known"),
        CheckConstraint("priority BETWEEN 1 AND 5", name="priority_range"),
        CheckConstraint(
            "work_status IS NULL OR " + check_in("work_status", tuple(WorkStatus)),
            name="work_status_known",
        ),
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
        # The retention job's scan: closed tickets whose personal data is still there.
        Index(
            "ix_ticket_closed_personal_data",
            "closed_at",
            postgresql_where=text(
                "closed_at IS NOT NULL AND (personal_data_dropped_at IS NULL"
                " OR personal_data_dropped_at < closed_at)"
            ),
        ),
        # "A new report soon after a fix reopens the ticket": fixed/closed ones near a point.
        Index(
            "ix_ticket_done_service_location",
            "service_id",
            "location",
            postgresql_using="gist",
            postgresql_where=text(check_in("status", DONE_STATUSES)),
        ),
        # The `same_address` duplicate check: open, and fixed/closed, tickets on one street.
        Index(
            "ix_ticket_open_service_street",
            "service_id",
            "street_key",
            postgresql_where=text(
                check_in("status", OPEN_STATUSES) + " AND street_key IS NOT NULL"
            ),
        ),
        Index(
            "ix_ticket_done_service_street",
            "service_id",
            "street_key",
            postgresql_where=text(
                check_in("status", DONE_STATUSES) + " AND street_key IS NOT NULL"
            ),
        ),
        # Work orders and queues in priority order, then by due time.
        Index(
            "ix_ticket_open_priority_due",
            "priority",
            "resolve_due_at",
            "id",
            postgresql_where=text(check_in("status", OPEN_STATUSES)),
        ),
        # The service-level sweep: open tickets with a warning or deadline still to record.
        Index(
            "ix_ticket_open_sla_next",
            "sla_next_at",
            postgresql_where=text(check_in("status", OPEN_STATUSES)),
        ),
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
    work_progress = "work_progress"
    # Staff ask the reporters a question (public: the question is sent to them), and a
    # reporter's answer (internal: an answer may carry personal details).
    information_requested = "information_requested"
    information_given = "information_given"


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
        # Public status changes city-wide by time (Open311 servicerequestupdates).
        Index(
            "ix_ticket_event_public_status_created",
            "created_at",
            "id",
            postgresql_where=text("kind = 'status_changed' AND public"),
        ),
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
        # Who follows this ticket now (the event stream asks on every timeline line).
        Index(
            "ix_subscription_ticket_live", "ticket_id", postgresql_where=text("ended_at IS NULL")
        ),
        Index(
            "uq_subscription_ticket_contact",
            "ticket_id",
            "contact_id",
            unique=True,
            postgresql_where=text("contact_id IS NOT NULL"),
        ),
    )


class ResponseTemplate(Base):
    """The public note sent with a status change, per service (or any) and language.

    Placeholders: ``{reference}``, ``{service}``, ``{status}``, ``{expected_date}``,
    ``{area}``, ``{jurisdiction}``.
    """

    __tablename__ = "response_template"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id", ondelete="CASCADE"))
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(check_in("status", tuple(TicketStatus)), name="status_known"),
        Index(
            "uq_response_template_scope",
            "jurisdiction_id",
            "service_id",
            "status",
            "language",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )
