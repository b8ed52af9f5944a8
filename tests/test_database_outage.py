"""A database that cannot be reached is a 503 problem with ``Retry-After``, quickly, on every
kind of route (issue 22, defect 3): reads through the read pool, sessions, streamed exports,
intake and the readiness probe, which keeps the driver's text to the log."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.embedded import throwaway_cluster
from app.main import create_app
from app.migrations import upgrade_to_head
from app.settings import Settings

# Statements the driver would print: none of them may reach a client.
DRIVER_WORDS = ("connection", "refused", "127.0.0.1", "port", "psycopg", "Operational")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def down(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an application whose database port has nothing listening."""
    settings = Settings(
        env="test",
        database_url=f"postgresql://kerbside@127.0.0.1:{_closed_port()}/kerbside",
        media_dir=tmp_path,
        log_json=False,
        database_pool_timeout_seconds=1.0,
    )
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/v1/tickets.geojson?bbox=-2.6,51.4,-2.5,51.5", None),
        ("GET", "/v1/tiles/14/8073/5448.mvt", None),
        ("GET", "/v1/tickets/K-2026-000001", None),
        ("GET", "/v1/jurisdictions", None),
        ("GET", "/v1/export/tickets.csv", None),
        ("GET", "/v1/export/tickets.geojson", None),
        (
            "POST",
            "/v1/reports",
            {"service_code": "pothole", "location": {"lon": -2.59, "lat": 51.45}},
        ),
    ],
)
async def test_an_unreachable_database_is_a_quick_503_with_retry_after(
    down: httpx.AsyncClient, method: str, url: str, body: dict[str, object] | None
) -> None:
    started = time.monotonic()
    response = await down.request(method, url, json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    problem = response.json()
    assert problem["type"].endswith("/unavailable")
    assert not any(word in problem["detail"] for word in DRIVER_WORDS), problem
    assert elapsed < 8, f"{method} {url} took {elapsed:.1f} s"


async def test_readiness_says_not_ready_without_the_drivers_text(
    down: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await down.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "retry-after" in response.headers
    text = response.text
    assert not any(word in text for word in DRIVER_WORDS), text
    # The operator still learns why, from the log.
    assert any("readiness check failed" in r.getMessage() for r in caplog.records)


async def _until(client: httpx.AsyncClient, url: str, status: int, seconds: float) -> float:
    """Seconds until ``url`` answers ``status`` (fails after ``seconds``)."""
    started = time.monotonic()
    while True:
        response = await client.get(url)
        if response.status_code == status:
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            pytest.fail(f"{url} still answers {response.status_code}: {response.text[:200]}")
        await asyncio.sleep(0.2)


async def test_postgres_stopped_then_started_503_in_between_and_recovery_by_itself(
    tmp_path: Path,
) -> None:
    cluster = throwaway_cluster()
    try:
        url = await asyncio.to_thread(cluster.ensure_running)
        await asyncio.to_thread(upgrade_to_head, url)  # alembic runs its own event loop
        settings = Settings(
            env="test",
            database_url=url,
            media_dir=tmp_path,
            log_json=False,
            database_pool_timeout_seconds=1.0,
        )
        app = create_app(settings)
        reads = ["/v1/jurisdictions", "/v1/tickets.geojson", "/readyz"]
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for read in reads:
                    assert (await client.get(read)).status_code == 200, read
                await asyncio.to_thread(cluster.stop)
                for read in reads:
                    started = time.monotonic()
                    response = await client.get(read)
                    assert response.status_code == 503, (read, response.text)
                    assert "retry-after" in response.headers
                    assert time.monotonic() - started < 8
                await asyncio.to_thread(cluster.ensure_running)
                # Pooled connections died with the server; new ones are made as needed.
                for read in reads:
                    await _until(client, read, 200, 20)
    finally:
        cluster.destroy()
