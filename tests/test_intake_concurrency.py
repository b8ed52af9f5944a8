"""Concurrency on real parallel connections: one spot, many reporters, one ticket."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.main import create_app
from app.settings import Settings, to_sqlalchemy_url
from geo.distance import offset_lonlat
from tests.factories import CITY, make_jurisdiction, make_service

pytestmark = pytest.mark.slow


@pytest.fixture
async def live_app(
    settings: Settings, database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> AsyncIterator[FastAPI]:
    """The app on a real pool: every request its own connection and its own commit."""
    async with committed_db() as session, session.begin():
        city = await make_jurisdiction(session, slug="busytown")
        await make_service(
            session, city, "pothole", duplicate_radius_m=30.0, duplicate_window=timedelta(days=30)
        )
    engine = create_async_engine(to_sqlalchemy_url(database_url), pool_size=60, max_overflow=0)
    app = create_app(settings.model_copy(update={"rate_limit_reports_per_minute": 0}))
    app.state.engine = engine
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    try:
        yield app
    finally:
        await engine.dispose()


async def _post_all(
    app: FastAPI, payloads: list[tuple[dict[str, Any], dict[str, str]]]
) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", timeout=60
    ) as client:
        return await asyncio.gather(
            *(client.post("/v1/reports", json=body, headers=headers) for body, headers in payloads)
        )


async def test_fifty_simultaneous_reports_of_one_spot_make_one_ticket(
    live_app: FastAPI, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    lon, lat = CITY.center
    # Scattered within a few metres, so they also straddle lock-cell boundaries.
    payloads = []
    for i in range(50):
        plon, plat = offset_lonlat(lon, lat, (i % 7 - 3) * 2.0, (i % 5 - 2) * 2.0)
        payloads.append(({"service_code": "pothole", "location": {"lon": plon, "lat": plat}}, {}))
    responses = await _post_all(live_app, payloads)
    assert [r.status_code for r in responses] == [201] * 50, [
        r.text for r in responses if r.status_code != 201
    ][:3]
    references = {r.json()["ticket"]["reference"] for r in responses}
    assert len(references) == 1
    assert sum(not r.json()["joined_existing"] for r in responses) == 1
    async with committed_db() as session:
        tickets = (await session.execute(text("SELECT reference, report_count FROM ticket"))).all()
        assert [tuple(t) for t in tickets] == [(references.pop(), 50)]
        assert (await session.execute(text("SELECT count(*) FROM report"))).scalar_one() == 50
        events = await session.execute(
            text("SELECT kind, count(*) FROM ticket_event GROUP BY kind")
        )
        assert dict(events.tuples().all()) == {"ticket_opened": 1, "report_attached": 49}


async def test_concurrent_retries_with_one_key_file_once(
    live_app: FastAPI, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    key = str(uuid.uuid4())
    body = {"service_code": "pothole", "location": {"lon": CITY.center[0], "lat": CITY.center[1]}}
    responses = await _post_all(live_app, [(body, {"Idempotency-Key": key})] * 10)
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 9
    async with committed_db() as session:
        assert (await session.execute(text("SELECT count(*) FROM report"))).scalar_one() == 1


async def test_reports_far_apart_do_not_wait_for_each_other(
    live_app: FastAPI, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    points = CITY.random_points(30, seed=3, hotspot_share=0.0)
    responses = await _post_all(
        live_app,
        [({"service_code": "pothole", "location": {"lon": x, "lat": y}}, {}) for x, y in points],
    )
    assert {r.status_code for r in responses} == {201}
    async with committed_db() as session:
        count = (await session.execute(text("SELECT count(*) FROM ticket"))).scalar_one()
    # Uniform points 30 m apart or more are separate problems.
    assert count == 30
