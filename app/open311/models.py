"""Open311's own rows: the photos a POST named by ``media_url``, fetched after filing, and
the index that makes FixMyStreet's pushed updates idempotent (migration 0111); the photos of
a pushed update, fetched after it is recorded (migration 0113)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, check_in
from app.tickets.models import TicketEvent


class MediaState(StrEnum):
    pending = "pending"  # the job has not fetched them yet
    fetched = "fetched"  # at least one photo was attached (failures, if any, are noted)
    failed = "failed"  # none could be had: why is in ``failure`` and on the timeline


class Open311Media(Base):
    """The ``media_url`` links of one filed report, until the job has fetched them."""

    __tablename__ = "open311_media"

    report_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("report.id", ondelete="CASCADE"), primary_key=True
    )
    urls: Mapped[list[str]] = mapped_column(ARRAY(Text))
    state: Mapped[str] = mapped_column(String(16), server_default=MediaState.pending.value)
    failure: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint(check_in("state", tuple(MediaState)), name="state_known"),)


class Open311UpdateMedia(Base):
    """The ``media_url`` links of one pushed update (its timeline line), until the job has
    fetched them onto the ticket as ``update`` photos."""

    __tablename__ = "open311_update_media"

    event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ticket_event.id", ondelete="CASCADE"), primary_key=True
    )
    ticket_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ticket.id", ondelete="CASCADE"))
    urls: Mapped[list[str]] = mapped_column(ARRAY(Text))
    state: Mapped[str] = mapped_column(String(16), server_default=MediaState.pending.value)
    failure: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint(check_in("state", tuple(MediaState)), name="state_known"),)


# FixMyStreet's update_id once per ticket: a retried push finds the comment it made.
ix_ticket_event_open311_update = Index(
    "uq_ticket_event_open311_update",
    TicketEvent.ticket_id,
    text("(data ->> 'open311_update_id')"),
    unique=True,
    postgresql_where=text("data ? 'open311_update_id'"),
)
