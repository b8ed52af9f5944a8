"""Map, tile, statistics and export reads from a real streaming replica (issue 22).

Two local clusters: a primary and a hot standby made from it with ``pg_basebackup``. The
replica's replay is paused to hold it behind: a ticket filed meanwhile is on the primary
only, so a read that misses it was served by the replica, and one that shows it by the
primary. A replica further behind than ``KERBSIDE_READ_REPLICA_MAX_LAG_SECONDS``, or down,
is left alone: those reads go to the primary (docs/operations.md, "Read replica").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from app.embedded import EmbeddedCluster, throwaway_cluster
from app.main import create_app
from app.migrations import upgrade_to_head
from app.settings import Settings, to_sqlalchemy_url
from tests.factories import CITY, make_jurisdiction, make_service

LON, LAT = CITY.center
BBOX = f"{LON - 0.01},{LAT - 0.01},{LON + 0.01},{LAT + 0.01}"


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[EmbeddedCluster, EmbeddedCluster]]:
    primary = throwaway_cluster()
    replica: EmbeddedCluster | None = None
    try:
        upgrade_to_head(primary.ensure_running())
        replica = primary.standby()
        yield primary, replica
    finally:
        if replica is not None:
            replica.destroy()
        primary.destroy()


async def _sql(url: str, sql: str) -> Any:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        cursor = await connection.execute(sql)
        row = await cursor.fetchone() if cursor.description else None
        return row[0] if row else None


async def _until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def _api(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield app, client


async def _refs(client: httpx.AsyncClient) -> set[str]:
    response = await client.get("/v1/tickets.geojson", params={"bbox": BBOX, "limit": 1000})
    assert response.status_code == 200, response.text
    return {f["id"] for f in response.json()["features"]}


async def _exported(client: httpx.AsyncClient) -> str:
    response = await client.get("/v1/export/tickets.csv")
    assert response.status_code == 200, response.text
    return response.text


async def test_reads_from_the_replica_writes_to_the_primary_lag_and_outage_fall_back(
    clusters: tuple[EmbeddedCluster, EmbeddedCluster], tmp_path: Path
) -> None:
    primary, replica = clusters
    engine = create_async_engine(to_sqlalchemy_url(primary.url), poolclass=NullPool)
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        city = await make_jurisdiction(session)
        await make_service(session, city, "pothole")
        await session.commit()
    await engine.dispose()

    async def replayed() -> bool:
        return bool(await _sql(replica.url, "SELECT count(*) FROM service"))

    await _until(replayed, "the replica replays the primary's city")
    assert await _sql(replica.url, "SELECT pg_is_in_recovery()") is True

    def settings(max_lag: float) -> Settings:
        return Settings(
            env="test",
            database_url=primary.url,
            read_database_url=replica.url,
            read_replica_max_lag_seconds=max_lag,
            read_replica_check_seconds=0.2,
            database_pool_timeout_seconds=2.0,
            media_dir=tmp_path,
            log_json=False,
        )

    async with (
        _api(settings(max_lag=600)) as (patient_app, patient),
        _api(settings(max_lag=1.0)) as (strict_app, strict),
    ):
        replica_state = patient_app.state.replica
        assert replica_state.usable
        assert strict_app.state.replica.usable
        assert await _refs(patient) == set()

        await _sql(replica.url, "SELECT pg_wal_replay_pause()")
        filed = await patient.post(
            "/v1/reports",
            json={"service_code": "pothole", "location": {"lon": LON, "lat": LAT}},
        )
        assert filed.status_code == 201, filed.text  # a standby would refuse the INSERT
        reference = filed.json()["ticket"]["reference"]
        on_primary = f"SELECT count(*) FROM ticket WHERE reference = '{reference}'"  # noqa: S608
        assert await _sql(primary.url, on_primary) == 1
        assert await _sql(replica.url, on_primary) == 0

        # Served by the replica: the map, the export and the tiles' source miss the ticket.
        served_before = replica_state.pool.get_stats().get("requests_num", 0)
        assert reference not in await _refs(patient)
        assert reference not in await _exported(patient)
        assert replica_state.pool.get_stats()["requests_num"] >= served_before + 2

        # Behind by more than its 1 s: the strict API reads from the primary.
        async def strict_falls_back() -> bool:
            return reference in await _refs(strict)

        await _until(strict_falls_back, "reads go to the primary once the lag passes 1 s")
        assert not strict_app.state.replica.usable
        assert reference in await _exported(strict)
        assert reference not in await _refs(patient)  # 600 s allowed: still the replica

        await _sql(replica.url, "SELECT pg_wal_replay_resume()")

        async def caught_up() -> bool:
            return reference in await _refs(patient)

        await _until(caught_up, "the replica replays the ticket")

        async def strict_back_on_the_replica() -> bool:
            return bool(strict_app.state.replica.usable)

        await _until(strict_back_on_the_replica, "the strict API uses the replica again")

        # Down: reads go to the primary, answered 200, nothing hangs.
        await asyncio.to_thread(replica.stop)
        await _until(lambda: _not(replica_state), "the replica is noticed down")
        started = time.monotonic()
        assert reference in await _refs(patient)
        assert reference in await _exported(patient)
        assert (await patient.get("/v1/stats")).status_code == 200
        assert time.monotonic() - started < 5

        await asyncio.to_thread(replica.start)
        await _until(lambda: _usable(replica_state), "the replica is used again after restart")
        served_before = replica_state.pool.get_stats().get("requests_num", 0)
        assert reference in await _refs(patient)
        assert replica_state.pool.get_stats()["requests_num"] > served_before


async def _not(replica_state: Any) -> bool:
    return not replica_state.usable


async def _usable(replica_state: Any) -> bool:
    return bool(replica_state.usable)
