"""The demo data: complete, idempotent, and filed through the real intake path."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.seed.demo import DEMO_USERS, seed_demo
from geo.city import make_city


async def test_demo_seed_is_complete_and_idempotent(
    database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    first = await seed_demo(database_url, reports=120, progress=False)
    second = await seed_demo(database_url, reports=120, progress=False)
    assert first["areas"] == 8
    assert first["services"] == ["fly_tipping", "pothole", "streetlight"]
    assert second["sample_reports_filed"] == 0
    async with committed_db() as session:
        counts = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM jurisdiction), (SELECT count(*) FROM report),"
                    " (SELECT count(*) FROM ticket), (SELECT sum(report_count) FROM ticket),"
                    " (SELECT count(*) FROM app_user), (SELECT count(*) FROM ticket"
                    "  WHERE area_id IS NULL), (SELECT count(DISTINCT status) FROM ticket)"
                )
            )
        ).one()
    jurisdictions, reports, tickets, attached, users, without_area, statuses = counts
    assert (jurisdictions, reports, users) == (1, 120, len(DEMO_USERS))
    assert 60 <= tickets <= 120
    assert attached == 120  # every report belongs to exactly one ticket
    assert without_area == 0
    assert statuses >= 2


async def test_the_map_shows_the_demo_right_after_the_seed(
    database_url: str, committed_db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    # Issue 16: the low-zoom grid was built only when a map request found it stale, so the
    # first minute of /maps showed no clusters (and let browsers cache the empty tiles).
    await seed_demo(database_url, reports=40, progress=False)
    west, south, east, north = make_city().boundary.bounds
    response = await client.get(
        "/v1/tickets/clusters", params={"bbox": f"{west},{south},{east},{north}", "zoom": 11}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=60"
    async with committed_db() as session:
        tickets = (await session.execute(text("SELECT count(*) FROM ticket"))).scalar_one()
    assert tickets > 0
    assert response.json()["tickets"] == tickets


async def test_demo_users_can_sign_in(
    database_url: str, committed_db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await seed_demo(database_url, reports=0, progress=False)
    # The rolled-back test connection sees committed rows too.
    email, password, *_ = DEMO_USERS[1]
    response = await client.post(
        "/v1/auth/jwt/login", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
