"""Sample tickets for the demo city, written straight to the tables.

Each sample is a ticket with one report and its timeline line, in a realistic status for its
age. (Reports from real channels go through the intake service instead.)
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.jurisdictions.models import Service

_INSERT = text(
    """
    WITH new_id AS (SELECT nextval(pg_get_serial_sequence('ticket', 'id')) AS id),
    point AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS geom),
    area AS (
        SELECT a.id FROM area_part p JOIN area a ON a.id = p.area_id, point
        WHERE a.jurisdiction_id = :jurisdiction_id AND ST_Intersects(p.geom, point.geom)
        ORDER BY a.id LIMIT 1
    ),
    ticket AS (
        INSERT INTO ticket (
            id, reference, jurisdiction_id, service_id, area_id, location, description, status,
            report_count, first_reported_at, last_reported_at, acknowledge_due_at,
            resolve_due_at, acknowledged_at, fixed_at, created_at, updated_at)
        SELECT new_id.id,
               :prefix || '-' || to_char(:reported_at AT TIME ZONE 'UTC', 'YYYY') || '-'
                   || lpad(new_id.id::text, greatest(6, length(new_id.id::text)), '0'),
               :jurisdiction_id, :service_id, (SELECT id FROM area), point.geom, :description,
               :status, 1, :reported_at, :reported_at, :ack_due, :resolve_due, :acknowledged_at,
               :fixed_at, :reported_at, coalesce(:fixed_at, :acknowledged_at, :reported_at)
        FROM new_id, point
        RETURNING id, location
    ),
    report AS (
        INSERT INTO report (
            ticket_id, jurisdiction_id, service_id, channel, location, description,
            reported_at, received_at)
        SELECT ticket.id, :jurisdiction_id, :service_id, 'app', ticket.location, :description,
               :reported_at, :reported_at
        FROM ticket
        RETURNING id, ticket_id
    )
    INSERT INTO ticket_event (ticket_id, kind, public, actor_label, report_id, data, created_at)
    SELECT report.ticket_id, 'ticket_opened', true, 'demo-seed', report.id,
           '{"channel": "app"}'::jsonb, :reported_at
    FROM report
    """
)


async def submit_sample_report(
    session: AsyncSession,
    *,
    jurisdiction_id: int,
    service: Service,
    lon: float,
    lat: float,
    description: str,
    reported_at: datetime,
    rng: random.Random,
) -> None:
    age = datetime.now(reported_at.tzinfo) - reported_at
    status, acknowledged_at, fixed_at = "open", None, None
    if age > timedelta(days=3) and rng.random() < 0.7:
        status, acknowledged_at = "acknowledged", reported_at + timedelta(hours=rng.randint(2, 40))
        if age > timedelta(days=10) and rng.random() < 0.6:
            status, fixed_at = "fixed", acknowledged_at + timedelta(days=rng.randint(1, 8))
    await session.execute(
        _INSERT,
        {
            "lon": lon,
            "lat": lat,
            "jurisdiction_id": jurisdiction_id,
            "service_id": service.id,
            "prefix": "K",
            "description": description,
            "status": status,
            "reported_at": reported_at,
            "ack_due": reported_at + service.acknowledge_within
            if service.acknowledge_within
            else None,
            "resolve_due": reported_at + service.resolve_within if service.resolve_within else None,
            "acknowledged_at": acknowledged_at,
            "fixed_at": fixed_at,
        },
    )
