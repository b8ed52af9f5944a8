"""Signals (one per report or post: where, when, which service, words and mood), the alerts
spikes of them raise, and the signals behind each alert."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, check_in


class Source(StrEnum):
    report = "report"  # a row of ``report`` (every channel's intake)
    post = "post"  # a social post (copied by the ``talk`` job)


class AlertStatus(StrEnum):
    open = "open"  # the burst goes on (or ended less than a window ago)
    closed = "closed"  # nothing new for a whole window: closed by itself


class Signal(Base):
    """One thing somebody said to or about the city, as talk: a report (copied by the
    ``talk`` job) or a post (recorded by the social pipeline)."""

    __tablename__ = "talk_signal"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("report.id", ondelete="CASCADE"), unique=True
    )
    # The social post (copied by the ``talk`` job). A post that filed a report shares the
    # report's signal: both ids on one row, counted once.
    post_id: Mapped[int | None] = mapped_column(ForeignKey("social_post.id", ondelete="SET NULL"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", ondelete="SET NULL"))
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(32))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="SET NULL"))
    # A post may say nothing of where: it still counts for trends and sentiment.
    location: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=4326, spatial_index=False), nullable=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    language: Mapped[str] = mapped_column(String(8), server_default="und")
    sentiment: Mapped[float | None] = mapped_column(Float)
    # Stems without stop words, and hashtags as "#tag": what trends count.
    terms: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    # A post that replies to the city's answer (linked to its ticket by the reply rule).
    reply: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))

    __table_args__ = (
        CheckConstraint(check_in("source", tuple(Source)), name="source_known"),
        Index("ix_talk_signal_jurisdiction_id_at", "jurisdiction_id", "at"),
        Index("ix_talk_signal_location", "location", postgresql_using="gist"),
        Index(
            "uq_talk_signal_post_id",
            "post_id",
            unique=True,
            postgresql_where=text("post_id IS NOT NULL"),
        ),
    )


class Alert(Base):
    """A spike: more signals of one service in one place than that place and hour usually
    see. It grows while the burst goes on and closes by itself when it ends."""

    __tablename__ = "talk_alert"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id", ondelete="CASCADE"))
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id", ondelete="SET NULL"))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    signal_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    report_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    post_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    expected: Mapped[float] = mapped_column(Float, server_default=text("0"))
    threshold: Mapped[int] = mapped_column(Integer)
    radius_m: Mapped[float] = mapped_column(Float)
    centroid: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=4326, spatial_index=False), nullable=False
    )
    # The members' convex hull buffered by the radius: the suggested broadcast polygon.
    polygon: Mapped[Any] = mapped_column(
        Geometry("POLYGON", srid=4326, spatial_index=False), nullable=False
    )
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_signal_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (
        CheckConstraint(check_in("status", tuple(AlertStatus)), name="status_known"),
        Index("ix_talk_alert_jurisdiction_id_opened_at", "jurisdiction_id", "opened_at"),
        Index(
            "ix_talk_alert_open",
            "jurisdiction_id",
            "service_id",
            postgresql_where=text("status = 'open'"),
        ),
    )


class AlertMember(Base):
    """A signal behind an alert (with its ticket, so staff see the tickets at once)."""

    __tablename__ = "talk_alert_member"

    alert_id: Mapped[int] = mapped_column(
        ForeignKey("talk_alert.id", ondelete="CASCADE"), primary_key=True
    )
    signal_id: Mapped[int] = mapped_column(
        ForeignKey("talk_signal.id", ondelete="CASCADE"), primary_key=True
    )

    __table_args__ = (Index("ix_talk_alert_member_signal_id", "signal_id"),)


__all__ = ["Alert", "AlertMember", "AlertStatus", "Signal", "Source"]
