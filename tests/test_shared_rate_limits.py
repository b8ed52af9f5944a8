"""Rate limits kept in PostgreSQL (``KERBSIDE_RATE_LIMIT_STORE=postgres``) are shared by every
API process: two applications on one database count one budget (issue 22, defect 4)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.main import create_app
from app.settings import Settings


def _app(settings: Settings, engine: AsyncEngine, sessionmaker: Any, store: str) -> FastAPI:
    app = create_app(
        settings.model_copy(
            update={
                "rate_limit_store": store,
                "rate_limit_login_per_minute": 100,
                "rate_limit_login_per_address_per_minute": 3,
            }
        )
    )
    app.state.engine, app.state.sessionmaker = engine, sessionmaker
    return app


@pytest.fixture
async def two_processes(
    settings: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:

        async def clients(store: str) -> list[httpx.AsyncClient]:
            made = []
            for _ in range(2):
                app = _app(settings, engine, sessionmaker, store)
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
                made.append(await stack.enter_async_context(client))
            return made

        yield clients


async def _logins(clients: list[httpx.AsyncClient], attempts: int) -> list[int]:
    codes = []
    for n in range(attempts):
        response = await clients[n % 2].post(
            "/v1/auth/jwt/login",
            data={"username": f"someone{n}@example.org", "password": "not the password"},
        )
        codes.append(response.status_code)
    return codes


async def test_two_processes_share_one_budget_in_postgres(
    two_processes: Any, db: AsyncSession
) -> None:
    clients = await two_processes("postgres")
    codes = await _logins(clients, 5)
    assert codes == [400, 400, 400, 429, 429]
    refused = await clients[0].post(
        "/v1/auth/jwt/login", data={"username": "x@example.org", "password": "not it at all"}
    )
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    stored = (
        await db.execute(text("SELECT sum(hits) FROM rate_limit_hit WHERE name = 'login-address'"))
    ).scalar_one()
    assert stored == 3  # refused attempts are not counted


async def test_in_memory_each_process_counts_alone(two_processes: Any) -> None:
    clients = await two_processes("memory")
    assert await _logins(clients, 5) == [400] * 5
