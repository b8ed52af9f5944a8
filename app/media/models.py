"""Photos of a ticket: from a report, or a crew's after-photo. Stored without any metadata."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, CreatedAt


class Photo(CreatedAt, Base):
    __tablename__ = "photo"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Random, so a photo URL says nothing about who reported or when.
    public_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), unique=True, server_default=text("gen_random_uuid()")
    )
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("report.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), server_default="report")
    storage_key: Mapped[str] = mapped_column(String(255))
    thumbnail_key: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    public: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))

    __table_args__ = (CheckConstraint("kind IN ('report', 'completion')", name="kind_known"),)
