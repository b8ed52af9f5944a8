"""Tickets for the map tests, written straight to the database with chosen times and states.

(The intake path is tested on its own; here we need exact statuses, times and places.)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.jurisdictions.models import Jurisdiction, Service
from tests.factories import CITY

_numbers = itertools.count(1)
NOW = datetime.now(UTC).replace(microsecond=0)
CENTER = CITY.center


@dataclass(frozen=True)
class Made:
    id: int
    reference: str
    lon: float
    lat: float


async def add_ticket(
    db: AsyncSession,
    jurisdiction: Jurisdiction,
    service: Service,
    lon: float,
    lat: float,
    *,
    status: str = "open",
    reported_at: datetime | None = None,
    updated_at: datetime | None = None,
    **columns: Any,
) -> Made:
    """One ticket at (lon, lat), in the district that holds it; ``columns`` set any others."""
    n = next(_numbers)
    reference = f"M-2026-{n:06d}"
    reported = reported_at or NOW - timedelta(days=1)
    values: dict[str, Any] = {
        "reference": reference,
        "j": jurisdiction.id,
        "s": service.id,
        "lon": lon,
        "lat": lat,
        "status": status,
        "reported": reported,
        "updated": updated_at or reported,
        "ack_due": reported + timedelta(days=2),
        "ack_warn": reported + timedelta(days=1.6),
        "fix_due": reported + timedelta(days=14),
        "fix_warn": reported + timedelta(days=11.2),
    }
    extra_names = "".join(f", {name}" for name in columns)
    extra_values = "".join(f", :{name}" for name in columns)
    values.update(columns)
    row = (
        await db.execute(
            text(
                "INSERT INTO ticket (reference, jurisdiction_id, service_id, area_id, location,"  # noqa: S608
                " status, report_count, first_reported_at, last_reported_at, created_at,"
                " updated_at, acknowledge_due_at, acknowledge_warn_at, resolve_due_at,"
                f" resolve_warn_at{extra_names})"
                " SELECT :reference, :j, :s, (SELECT a.id FROM area a WHERE a.jurisdiction_id = :j"
                " AND ST_Covers(a.geom, p) ORDER BY a.id LIMIT 1), p, :status, 1, :reported,"
                " :reported, :reported, :updated, :ack_due, :ack_warn, :fix_due, :fix_warn"
                f"{extra_values}"
                " FROM (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS p) x RETURNING id"
            ),
            values,
        )
    ).one()
    return Made(int(row.id), reference, lon, lat)
