"""Reports (one submission by one person on one channel) and idempotency records."""

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
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, check_in


class Channel(StrEnum):
    app = "app"
    web = "web"
    open311 = "open311"
    x = "x"
    facebook = "facebook"
    whatsapp = "whatsapp"
    mastodon = "mastodon"
    bluesky = "bluesky"
    email = "email"
    phone = "phone"
    staff = "staff"
    import_ = "import"


class LocationSource(StrEnum):
    device = "device"  # the client's GPS / map pin
    exif = "exif"  # read from a photo's EXIF before stripping it
    address = "address"
    post = "post"  # a social post's coordinates or place
    import_ = "import"


class Report(Base):
    __tablename__ = "report"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), unique=True, server_default=text("gen_random_uuid()")
    )
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"))
    channel: Mapped[str] = mapped_column(String(16))
    location: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=4326, spatial_index=False), nullable=False
    )
    location_accuracy_m: Mapped[float | None] = mapped_column(Float)
    location_source: Mapped[str] = mapped_column(String(16), server_default="device")
    address: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    reporter_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("app_user.id", ondelete="SET NULL"), index=True
    )
    reporter_name: Mapped[str | None] = mapped_column(String(200))
    notify: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    locale: Mapped[str | None] = mapped_column(String(16))
    # The client's own id for this report, or the legacy system's id on import.
    external_id: Mapped[str | None] = mapped_column(String(200))
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    joined_existing: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    match_distance_m: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        CheckConstraint(check_in("channel", tuple(Channel)), name="channel_known"),
        CheckConstraint(
            check_in("location_source", tuple(LocationSource)), name="location_source_known"
        ),
        Index(
            "uq_report_channel_external_id",
            "jurisdiction_id",
            "channel",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index("ix_report_location", "location", postgresql_using="gist"),
    )


class IdempotencyRecord(Base):
    """What a request with an ``Idempotency-Key`` answered, to replay it on a retry.

    ``principal`` scopes keys to who sent them (a user, an API key, or anonymous clients),
    so one client cannot replay another's answer. ``status_code`` is null while the first
    request is still running.
    """

    __tablename__ = "idempotency_record"

    principal: Mapped[str] = mapped_column(String(80), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("report.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
