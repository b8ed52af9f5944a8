"""Jurisdictions (municipalities), their areas and their services (report categories)."""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Interval,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, CreatedAt, check_in

DEFAULT_BUSINESS_HOURS = (
    '{"mon": [["08:00", "18:00"]], "tue": [["08:00", "18:00"]], "wed": [["08:00", "18:00"]],'
    ' "thu": [["08:00", "18:00"]], "fri": [["08:00", "18:00"]]}'
)


class DuplicateStrategy(StrEnum):
    """How a service decides that a new report is one more report of an existing ticket."""

    # The nearest open ticket within duplicate_radius_m and duplicate_window (GPS reports).
    radius = "radius"
    # The same normalised address, or the same street within duplicate_street_within_m, in
    # the window (call-centre reports geocoded to an address); no address: `radius`.
    same_address = "same_address"
    # Every report is its own ticket (abandoned vehicles, test-kit requests).
    never = "never"


class Jurisdiction(CreatedAt, Base):
    __tablename__ = "jurisdiction"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)  # Open311 jurisdiction_id
    name: Mapped[str] = mapped_column(String(200))
    boundary: Mapped[Any] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False
    )
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    languages: Mapped[list[str]] = mapped_column(
        ARRAY(String(16)), server_default=text("ARRAY['en']::varchar[]")
    )
    reference_prefix: Mapped[str] = mapped_column(String(8), server_default="K")
    allow_anonymous: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Working hours for services whose levels count business time only, in local time:
    # {"mon": [["08:00", "18:00"]], ...}; days left out are closed. Plus closed dates.
    business_hours: Mapped[dict[str, list[list[str]]]] = mapped_column(
        JSONB, server_default=text("'" + DEFAULT_BUSINESS_HOURS + "'")
    )
    holidays: Mapped[list[date]] = mapped_column(
        ARRAY(Date), server_default=text("ARRAY[]::date[]")
    )
    # How the city's legacy exports read (the city file's ``history``): the import's defaults.
    history: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    # Quiet hours and rate limits of notifications (the city file's ``notifications``).
    notifications: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    # How its social posts are classified (the city file's ``classify``; app/social).
    classify: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    # How long personal data is kept (the city file's ``privacy``; read by ``app.privacy``).
    privacy: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    # Spike thresholds over the defaults (app/talk/spikes.py: ``SpikeRule``).
    talk: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    # Its own channel accounts (the city file's ``channels``; app/channels/accounts.py):
    # names of environment variables, never secrets.
    channels: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))

    __table_args__ = (
        Index("ix_jurisdiction_boundary", "boundary", postgresql_using="gist"),
        CheckConstraint("reference_prefix ~ '^[A-Z]{1,8}$'", name="reference_prefix_format"),
    )


class Area(CreatedAt, Base):
    """A named polygon of a jurisdiction: district, ward, crew territory."""

    __tablename__ = "area"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(
        ForeignKey("jurisdiction.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32), server_default="district")
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    geom: Mapped[Any] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False
    )

    __table_args__ = (
        UniqueConstraint("jurisdiction_id", "kind", "code"),
        Index("ix_area_geom", "geom", postgresql_using="gist"),
    )


class AreaPart(Base):
    """Small pieces of an area (``ST_Subdivide``) for fast point-in-polygon.

    Kept in step with ``area.geom`` by a database trigger (see the initial migration), so
    every way of writing an area keeps its pieces right.
    """

    __tablename__ = "area_part"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("area.id", ondelete="CASCADE"), index=True)
    geom: Mapped[Any] = mapped_column(
        Geometry("GEOMETRY", srid=4326, spatial_index=False), nullable=False
    )

    __table_args__ = (Index("ix_area_part_geom", "geom", postgresql_using="gist"),)


class Service(CreatedAt, Base):
    """A report category (Open311 service) of one jurisdiction."""

    __tablename__ = "service"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(
        ForeignKey("jurisdiction.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(64))
    names: Mapped[dict[str, str]] = mapped_column(JSONB)  # {"en": "Pothole", "es": "Bache"}
    descriptions: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'"))
    group: Mapped[str | None] = mapped_column(String(100))
    keywords: Mapped[dict[str, list[str]]] = mapped_column(JSONB, server_default=text("'{}'"))
    # Hashtags (without "#") per language that mark a social post as this service.
    hashtags: Mapped[dict[str, list[str]]] = mapped_column(JSONB, server_default=text("'{}'"))
    duplicate_radius_m: Mapped[float] = mapped_column(Float, server_default=text("50"))
    duplicate_window: Mapped[timedelta] = mapped_column(
        Interval, server_default=text("interval '30 days'")
    )
    duplicate_strategy: Mapped[str] = mapped_column(
        String(16), server_default=DuplicateStrategy.radius.value
    )
    # For `same_address`: another house on the same street this close is the same job too
    # (snow on one street); 0 = the same address only (bulky items at neighbours' doors).
    duplicate_street_within_m: Mapped[float] = mapped_column(Float, server_default=text("0"))
    acknowledge_within: Mapped[timedelta | None] = mapped_column(Interval)
    resolve_within: Mapped[timedelta | None] = mapped_column(Interval)
    business_hours: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    hazard_level: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    description_required: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # Crews must attach an after-photo to finish a work order of this service.
    completion_photo_required: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # A reporter may reopen a fixed ticket, and a new report nearby reopens it, within this.
    reopen_within: Mapped[timedelta] = mapped_column(
        Interval, server_default=text("interval '14 days'")
    )
    # Public outputs snap locations to this grid (metres); 0 = exact. For sensitive services.
    public_location_snap_m: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    __table_args__ = (
        UniqueConstraint("jurisdiction_id", "code"),
        CheckConstraint(
            "duplicate_radius_m >= 0 AND duplicate_radius_m <= 2000", name="radius_range"
        ),
        CheckConstraint(
            check_in("duplicate_strategy", tuple(DuplicateStrategy)),
            name="duplicate_strategy_known",
        ),
        CheckConstraint(
            "duplicate_street_within_m >= 0 AND duplicate_street_within_m <= 2000",
            name="street_within_range",
        ),
        CheckConstraint("hazard_level BETWEEN 1 AND 5", name="hazard_range"),
        CheckConstraint(
            "public_location_snap_m BETWEEN 0 AND 5000", name="public_location_snap_range"
        ),
        CheckConstraint("code ~ '^[a-z0-9_.-]{1,64}$'", name="code_format"),
    )
