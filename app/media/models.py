"""Photos of a ticket: from a report, or a crew's after-photo. Stored without any metadata.

A report photo is accepted before it is processed: its row starts ``pending`` with the upload
kept privately under ``original_key``, and ``app.media.tasks`` turns it ``ready`` (stripped
files written, original deleted) or ``failed`` (why is in ``failure``, which is internal).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

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
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, CreatedAt, check_in


class PhotoStatus(StrEnum):
    pending = "pending"  # accepted; the stripped files are not made yet
    ready = "ready"
    failed = "failed"  # the upload could not be decoded; nothing is served


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
    # The stored image's size; known (and promised) when the upload is accepted.
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # Of the stored image, once it is made.
    bytes: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    public: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    status: Mapped[str] = mapped_column(String(16), server_default=PhotoStatus.ready.value)
    # The upload as received (private, see app.media.storage.ORIGINALS_PREFIX) until processed.
    original_key: Mapped[str | None] = mapped_column(String(255))
    # How many tries of processing started (app.media.repository.CLAIM_PHOTO).
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    failure: Mapped[str | None] = mapped_column(Text)  # why it failed; for staff, never public

    __table_args__ = (
        CheckConstraint("kind IN ('report', 'completion', 'update')", name="kind_known"),
        CheckConstraint(check_in("status", tuple(PhotoStatus)), name="status_known"),
        # What the sweep looks for (app.media.repository.DEFER_LEFT_PENDING) and what
        # leaks originals if left behind.
        Index("ix_photo_pending", "id", postgresql_where=text("status = 'pending'")),
        Index(
            "ix_photo_leftover_original",
            "id",
            postgresql_where=text("original_key IS NOT NULL AND status <> 'pending'"),
        ),
    )
