"""Reading tickets: by reference with reports, photos and public timeline; nearby open ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.core.errors import NotFound
from app.core.models import check_in
from app.media.links import photo_ref, photos_of_reports
from app.media.schemas import PhotoRef
from app.tickets import information, priority
from app.tickets.models import OPEN_STATUSES
from app.tickets.schemas import (
    NearbyTicket,
    PrioritySignal,
    PublicReport,
    StaffTicketDetail,
    StaffTimelineEntry,
    TicketDetail,
    TimelineEntry,
    summary_fields,
)
from app.tickets.sla import expected_by_sql, sla_state_sql
from app.tickets.workflow import allowed_targets, ensure_may_act
from geo.distance import near_params

_TICKET_COLUMNS = f"""
    t.id, t.reference, t.status, t.description, ST_X(t.location) AS lon, ST_Y(t.location) AS lat,
    t.report_count, t.supporter_count, t.first_reported_at, t.last_reported_at,
    t.acknowledge_due_at, t.resolve_due_at, t.jurisdiction_id, s.code AS service_code,
    s.names AS service_names, a.code AS area_code, a.name AS area_name, t.priority,
    {sla_state_sql("t")} AS sla_state, {expected_by_sql("t")} AS expected_by,
    (SELECT m.reference FROM ticket m WHERE m.id = t.merged_into_id) AS merged_into
"""  # noqa: S608 (formats code constants only)
_FROM = " FROM ticket t JOIN service s ON s.id = t.service_id LEFT JOIN area a ON a.id = t.area_id"

# Timeline data keys safe to show the public (never contacts, never internal notes).
PUBLIC_EVENT_KEYS = {
    "channel",
    "distance_m",
    "age_seconds",
    "photos",
    "from",
    "to",
    "count",
    "into",
    "notes",
}


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
    reports, events = await _reports_and_events(session, row.id, base_url, public_only=True)
    return TicketDetail(
        **_summary(row, base_url),
        reports=reports,
        completion_photos=await completion_photos(session, row.id, base_url),
        update_photos=await update_photos(session, row.id, base_url),
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


async def staff_ticket_detail(
    session: AsyncSession, reference: str, base_url: str, *, actor: Principal, now: datetime
) -> StaffTicketDetail:
    """Everything about a ticket for staff and crews: internal timeline, crew, priority
    signal, and the moves ``actor`` may make now. Checks that ``actor`` may act on it."""
    row = await ticket_row(session, reference)
    extra = (
        await session.execute(
            text(
                "SELECT t.*, c.name AS crew_name, s.reopen_within FROM ticket t"
                " JOIN service s ON s.id = t.service_id"
                " LEFT JOIN crew c ON c.id = t.crew_id WHERE t.id = :t"
            ),
            {"t": row.id},
        )
    ).one()
    await ensure_may_act(session, actor, extra)
    reports, events = await _reports_and_events(session, row.id, base_url, public_only=False)
    signal = await priority.explain(session, row.id, now)
    return StaffTicketDetail(
        **_summary(row, base_url),
        reports=reports,
        completion_photos=await completion_photos(session, row.id, base_url),
        update_photos=await update_photos(session, row.id, base_url),
        timeline=[
            StaffTimelineEntry(
                id=e.id,
                kind=e.kind,
                at=e.created_at,
                note=e.note,
                data=e.data or {},
                public=e.public,
                actor=e.actor_label,
            )
            for e in events
        ],
        crew_id=extra.crew_id,
        crew=extra.crew_name,
        work_status=extra.work_status,
        assigned_at=extra.assigned_at,
        scheduled_for=extra.scheduled_for,
        acknowledged_at=extra.acknowledged_at,
        fixed_at=extra.fixed_at,
        closed_at=extra.closed_at,
        reopened_count=extra.reopened_count,
        information=information.state_of(extra),
        priority_signal=PrioritySignal(
            score=signal.score,
            suggested=signal.suggested,
            factors=signal.factors,
            manual=signal.manual,
        ),
        allowed_transitions=await allowed_targets(session, actor, extra, now),
    )


_TICKET_PHOTOS = text(
    "SELECT public_id, width, height, status FROM photo"
    " WHERE ticket_id = :t AND kind = :kind AND public ORDER BY id LIMIT 50"
)


async def completion_photos(session: AsyncSession, ticket_id: int, base_url: str) -> list[PhotoRef]:
    return await _ticket_photos(session, ticket_id, "completion", base_url)


async def update_photos(session: AsyncSession, ticket_id: int, base_url: str) -> list[PhotoRef]:
    return await _ticket_photos(session, ticket_id, "update", base_url)


async def _ticket_photos(
    session: AsyncSession, ticket_id: int, kind: str, base_url: str
) -> list[PhotoRef]:
    """The ticket's own public photos of one kind (not a report's)."""
    rows = await session.execute(_TICKET_PHOTOS, {"t": ticket_id, "kind": kind})
    return [photo_ref(base_url, r.public_id, r.width, r.height, status=r.status) for r in rows]


async def _reports_and_events(
    session: AsyncSession, ticket_id: int, base_url: str, *, public_only: bool
) -> tuple[list[PublicReport], list[Any]]:
    reports = (
        await session.execute(
            text(
                "SELECT id, public_id, channel, description, reported_at FROM report"
                " WHERE ticket_id = :t ORDER BY reported_at, id LIMIT 500"
            ),
            {"t": ticket_id},
        )
    ).all()
    photos = await photos_of_reports(session, [r.id for r in reports], base_url)
    events = await session.execute(
        text(
            "SELECT id, kind, created_at, note, data, public, actor_label FROM ticket_event"
            " WHERE ticket_id = :t AND (public OR NOT :public_only) ORDER BY id LIMIT 1000"
        ),
        {"t": ticket_id, "public_only": public_only},
    )
    return (
        [
            PublicReport(
                id=r.public_id,
                channel=r.channel,
                description=r.description,
                reported_at=r.reported_at,
                photos=photos.get(r.id, []),
            )
            for r in reports
        ],
        list(events),
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
