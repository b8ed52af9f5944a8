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


_posts = iter(range(1, 10**9))


async def store_post(
    db: AsyncSession,
    city: Jurisdiction,
    *,
    text_: str,
    at: datetime,
    point: tuple[float, float] | None = None,
    platform: str = "mastodon",
    account: str = "@city",
    status: str = "needs_human",
    service_code: str | None = None,
    ticket_id: int | None = None,
    report_id: int | None = None,
    link_rule: str | None = None,
    answered_at: datetime | None = None,
    closed_at: datetime | None = None,
) -> int:
    """One processed post as the social pipeline stores it (``social_post``); its id."""
    row = await db.execute(
        text(
            "INSERT INTO social_post (platform, post_id, account, jurisdiction_id, author_id,"
            " text, raw, posted_at, received_at, status, service_code, ticket_id, report_id,"
            " link_rule, answered_at, closed_at, location)"
            " VALUES (:platform, :post_id, :account, :j, 'someone', :text, '{}', :at, :at,"
            " :status, :service_code, :ticket_id, :report_id, :link_rule, :answered_at,"
            " :closed_at, CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL"
            " ELSE ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) END)"
            " RETURNING id"
        ),
        {
            "platform": platform,
            "post_id": f"p{next(_posts)}",
            "account": account,
            "j": city.id,
            "text": text_,
            "at": at,
            "status": status,
            "service_code": service_code,
            "ticket_id": ticket_id,
            "report_id": report_id,
            "link_rule": link_rule,
            "answered_at": answered_at,
            "closed_at": closed_at,
            "lon": point[0] if point else None,
            "lat": point[1] if point else None,
        },
    )
    return int(row.scalar_one())
