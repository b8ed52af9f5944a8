"""Reading tickets: by reference with reports, photos and public timeline; nearby open ones."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.core.models import check_in
from app.reports.queries import photos_of_reports
from app.tickets.models import OPEN_STATUSES
from app.tickets.schemas import (
    NearbyTicket,
    PublicReport,
    TicketDetail,
    TimelineEntry,
    summary_fields,
)
from geo.distance import near_params

_TICKET_COLUMNS = """
    t.id, t.reference, t.status, t.description, ST_X(t.location) AS lon, ST_Y(t.location) AS lat,
    t.report_count, t.supporter_count, t.first_reported_at, t.last_reported_at,
    t.acknowledge_due_at, t.resolve_due_at, t.jurisdiction_id, s.code AS service_code,
    s.names AS service_names, a.code AS area_code, a.name AS area_name
"""
_FROM = " FROM ticket t JOIN service s ON s.id = t.service_id LEFT JOIN area a ON a.id = t.area_id"

# Timeline data keys safe to show the public (never contacts, never internal notes).
PUBLIC_EVENT_KEYS = {"channel", "distance_m", "age_seconds", "photos", "from", "to", "count"}


def _summary(row: Any, base_url: str) -> dict[str, Any]:
    names = row.service_names or {}
    name = names.get("en") or next(iter(names.values()), row.service_code)
    return summary_fields(row, base_url, service_code=row.service_code, service_name=name)


async def ticket_row(session: AsyncSession, reference: str) -> Any:
    row = (
        await session.execute(
            text("SELECT " + _TICKET_COLUMNS + _FROM + " WHERE t.reference = :ref"),
            {"ref": reference.upper()},
        )
    ).first()
    if row is None:
        raise NotFound(f"No ticket {reference}")
    return row


async def ticket_detail(session: AsyncSession, reference: str, base_url: str) -> TicketDetail:
    row = await ticket_row(session, reference)
    reports = (
        await session.execute(
            text(
                "SELECT id, public_id, channel, description, reported_at FROM report"
                " WHERE ticket_id = :t ORDER BY reported_at, id LIMIT 500"
            ),
            {"t": row.id},
        )
    ).all()
    photos = await photos_of_reports(session, [r.id for r in reports], base_url)
    events = await session.execute(
        text(
            "SELECT id, kind, created_at, note, data FROM ticket_event"
            " WHERE ticket_id = :t AND public ORDER BY id LIMIT 1000"
        ),
        {"t": row.id},
    )
    return TicketDetail(
        **_summary(row, base_url),
        reports=[
            PublicReport(
                id=r.public_id,
                channel=r.channel,
                description=r.description,
                reported_at=r.reported_at,
                photos=photos.get(r.id, []),
            )
            for r in reports
        ],
        timeline=[
            TimelineEntry(
                id=e.id,
                kind=e.kind,
                at=e.created_at,
                note=e.note,
                data={k: v for k, v in (e.data or {}).items() if k in PUBLIC_EVENT_KEYS},
            )
            for e in events
        ],
    )


async def nearby_open_tickets(
    session: AsyncSession,
    *,
    service_id: int,
    lon: float,
    lat: float,
    radius_m: float,
    limit: int,
    base_url: str,
) -> list[NearbyTicket]:
    rows = await session.execute(
        text(
            "SELECT " + _TICKET_COLUMNS + ", ST_Distance(t.location::geography,"
            " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS distance_m"
            + _FROM
            + " WHERE t.service_id = CAST(:service_id AS int4) AND "
            + check_in("t.status", OPEN_STATUSES)
            + " AND t.location && ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326)"
            " AND ST_DWithin(t.location::geography,"
            " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :radius_m)"
            " ORDER BY distance_m, t.id LIMIT :limit"
        ),
        {**near_params(lon, lat, radius_m), "service_id": service_id, "limit": limit},
    )
    return [
        NearbyTicket(**_summary(r, base_url), distance_m=round(float(r.distance_m), 1))
        for r in rows
    ]
