"""Sample reports for the demo city, filed through the real intake path.

Reports cluster into tickets exactly as live ones do; older tickets are then moved on to a
status that fits their age, with the matching timeline lines.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.auth.principal import Principal
from app.jurisdictions.catalog import Catalog
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.tickets import workflow
from app.tickets.models import TicketStatus as S

SEED = Submitter(label="demo-seed", trusted=True, identified=True)

# The seed acts as an admin would, through the real workflow (events, templates, times).
SEEDER = Principal(kind="user", role=Role.admin, label="demo-seed")


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
    filed = await submit_report(
        session,
        catalog,
        Submission(
            channel=rng.choice([Channel.app, Channel.app, Channel.web, Channel.open311]),
            submitter=SEED,
            service_code=service_code,
            place=Place(lon, lat, LocationSource.device, rng.choice([5.0, 8.0, 12.0, None])),
            description=description,
            reported_at=reported_at,
        ),
        now=now,
    )
    if filed.joined:
        return
    age = now - reported_at
    if age < timedelta(days=2) or rng.random() > 0.75:
        return
    if rng.random() < 0.05:
        path = [S.not_our_responsibility]
    elif age > timedelta(days=45):
        path = [S.acknowledged, S.scheduled, S.fixed, S.closed]
    elif age > timedelta(days=12):
        path = [S.acknowledged, S.in_progress, S.fixed]
    elif age > timedelta(days=5):
        path = [S.acknowledged, S.scheduled]
    else:
        path = [S.acknowledged]
    ticket_id = filed.ticket_id
    at = reported_at
    for status in path:
        at = min(now, at + timedelta(hours=rng.uniform(2, 24 * 5)))
        await workflow.change_status(session, ticket_id, status, actor=SEEDER, now=at)
