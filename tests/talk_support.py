"""Reports and posts placed precisely in space and time, for the talk tests and bench."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.jurisdictions.models import Jurisdiction, Service
from geo.distance import offset_lonlat
from tests.factories import make_ticket

# (east metres, north metres, when): one report each.
Placed = tuple[float, float, datetime]


async def place_reports(
    db: AsyncSession,
    city: Jurisdiction,
    service: Service,
    centre: tuple[float, float],
    placed: Sequence[Placed],
    *,
    description: str | None = None,
    channel: str = "app",
) -> list[int]:
    """File ``placed`` reports straight into ``report`` (one ticket behind them all: a spike
    is about reports, whatever tickets they joined); returns their ids."""
    lon, lat = centre
    ticket = await make_ticket(db, city, service, lon, lat)
    points = [offset_lonlat(lon, lat, east, north) for east, north, _ in placed]
    rows = await db.execute(
        text(
            "INSERT INTO report (ticket_id, jurisdiction_id, service_id, channel, location,"
            " description, reported_at, received_at)"
            " SELECT :t, :j, :s, :channel, ST_SetSRID(ST_MakePoint(x, y), 4326), :d, at, at"
            " FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[]),"
            "             CAST(:ats AS timestamptz[])) AS p(x, y, at)"
            " RETURNING id"
        ),
        {
            "t": ticket.id,
            "j": city.id,
            "s": service.id,
            "channel": channel,
            "d": description,
            "xs": [p[0] for p in points],
            "ys": [p[1] for p in points],
            "ats": [at for _, _, at in placed],
        },
    )
    return list(rows.scalars().all())
