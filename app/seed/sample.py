"""Sample reports for the demo city, filed through the real intake path.

Reports cluster into tickets exactly as live ones do; older tickets are then moved on to a
status that fits their age, with the matching timeline lines.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.jurisdictions.catalog import Catalog
from app.reports.models import Channel
from app.reports.schemas import Location, ReportIn
from app.reports.service import Submitter, submit_report

SEED = Submitter(label="demo-seed", trusted=True, identified=True)

_MOVE_ON = text(
    """
    WITH moved AS (
        UPDATE ticket SET status = :status, acknowledged_at = :acknowledged_at,
                          fixed_at = :fixed_at, updated_at = coalesce(:fixed_at, :acknowledged_at)
        WHERE reference = :reference AND status = 'open'
        RETURNING id
    )
    INSERT INTO ticket_event (ticket_id, kind, public, actor_label, data, created_at)
    SELECT moved.id, 'status_changed', true, 'demo-seed', CAST(step.data AS jsonb), step.at
    FROM moved, (VALUES (:ack_data, CAST(:acknowledged_at AS timestamptz)),
                        (:fix_data, CAST(:fixed_at AS timestamptz))) AS step(data, at)
    WHERE step.at IS NOT NULL
    """
)


async def submit_sample_report(
    session: AsyncSession,
    catalog: Catalog,
    *,
    service_code: str,
    lon: float,
    lat: float,
    description: str,
    reported_at: datetime,
    now: datetime,
    rng: random.Random,
) -> None:
    accepted, _ = await submit_report(
        session,
        catalog,
        SEED,
        ReportIn(
            service_code=service_code,
            location=Location(lon=lon, lat=lat, accuracy_m=rng.choice([5.0, 8.0, 12.0, None])),
            description=description,
            reported_at=reported_at,
        ),
        channel=rng.choice([Channel.app, Channel.app, Channel.web, Channel.open311]),
        base_url="",
        now=now,
    )
    if accepted.joined_existing:
        return
    age = now - reported_at
    if age < timedelta(days=3) or rng.random() > 0.7:
        return
    acknowledged_at = reported_at + timedelta(hours=rng.randint(2, 40))
    fixed_at = None
    if age > timedelta(days=10) and rng.random() < 0.6:
        fixed_at = acknowledged_at + timedelta(days=rng.randint(1, 8))
    await session.execute(
        _MOVE_ON,
        {
            "reference": accepted.ticket.reference,
            "status": "fixed" if fixed_at else "acknowledged",
            "acknowledged_at": acknowledged_at,
            "fixed_at": fixed_at,
            "ack_data": orjson.dumps({"from": "open", "to": "acknowledged"}).decode(),
            "fix_data": orjson.dumps({"from": "acknowledged", "to": "fixed"}).decode(),
        },
    )
