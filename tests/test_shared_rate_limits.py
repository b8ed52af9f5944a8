"""Rate limits are kept in PostgreSQL by default (``KERBSIDE_RATE_LIMIT_STORE=postgres``) and
shared by every API process and host: two applications on one database, and two real API
processes, count one budget (issue 22, defect 4). Every write of every route is limited per
client address, per account or API key and per device (``X-Device-Id``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.api_keys import issue_api_key
from app.auth.models import Role
from app.core.ratelimit import limit_writes
from app.embedded import free_port
from app.main import create_app
from app.settings import Settings
from tests.factories import bearer_headers, make_jurisdiction, make_user


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


# -- every write, per client address, account, API key and device ------------------------------


def _limited(app: FastAPI, **limits: int) -> None:
    """Only the named write limits on (the others off), for this test's application."""
    off = {
        "rate_limit_writes_per_address_per_minute": 0,
        "rate_limit_writes_per_account_per_minute": 0,
        "rate_limit_writes_per_device_per_minute": 0,
    }
    app.state.settings = app.state.settings.model_copy(update={**off, **limits})


def _refused(response: httpx.Response) -> bool:
    if response.status_code != 429:
        return False
    assert response.headers["content-type"] == "application/problem+json"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    return True


def test_shared_limits_are_the_default() -> None:
    assert Settings().rate_limit_store == "postgres"


def test_every_route_is_write_limited_and_documents_its_429() -> None:
    """Installed on the application, so a route added later is limited without a word."""
    app = create_app()
    assert limit_writes in [d.dependency for d in app.router.dependencies]
    operations = [
        (path, method, operation)
        for path, methods in app.openapi()["paths"].items()
        for method, operation in methods.items()
        if method in ("post", "put", "patch", "delete")
    ]
    assert len(operations) > 40
    for path, method, operation in operations:
        assert "429" in operation["responses"], (method, path)


async def test_writes_are_limited_per_client_address_on_any_route(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    _limited(app, rate_limit_writes_per_address_per_minute=3)
    staff = await bearer_headers(app.state.settings, await make_user(db, role=Role.staff))
    # Public and guarded routes, with and without credentials: one budget per address.
    answers = [
        await client.post("/v1/tickets/K-2026-000001/support", json={}),
        await client.post("/v1/crews", json={}, headers=staff),
        await client.post("/v1/auth/forgot-password", json={"email": "a@example.org"}),
        await client.post("/v1/crews", json={}, headers=staff),
        await client.delete("/v1/me/contacts/1", headers=staff),
    ]
    assert [_refused(r) for r in answers] == [False, False, False, True, True]
    # Reads are not writes.
    assert (await client.get("/v1/jurisdictions")).status_code == 200
    stored = await db.execute(
        text("SELECT sum(hits) FROM rate_limit_hit WHERE name = 'writes-address'")
    )
    assert stored.scalar_one() == 3  # counted in PostgreSQL; refusals are not counted


async def test_writes_are_limited_per_account_and_per_api_key(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    _limited(app, rate_limit_writes_per_account_per_minute=2)
    city = await make_jurisdiction(db)
    one = await bearer_headers(app.state.settings, await make_user(db, role=Role.staff))
    two = await bearer_headers(app.state.settings, await make_user(db, role=Role.staff))
    key = await issue_api_key(db, jurisdiction_id=city.id, name="app", role=Role.staff)
    by_key = {"X-API-Key": key.secret}
    for headers in (one, by_key):
        answers = [await client.post("/v1/crews", json={}, headers=headers) for _ in range(3)]
        assert [_refused(r) for r in answers] == [False, False, True]
    # Another account from the same address has its own budget.
    assert not _refused(await client.post("/v1/crews", json={}, headers=two))


async def test_writes_are_limited_per_device(app: FastAPI, client: httpx.AsyncClient) -> None:
    _limited(app, rate_limit_writes_per_device_per_minute=2)
    answers = [
        await client.post(
            "/v1/tickets/K-2026-000001/support", json={}, headers={"X-Device-Id": "phone-a"}
        )
        for _ in range(3)
    ]
    assert [_refused(r) for r in answers] == [False, False, True]
    other = await client.post(
        "/v1/tickets/K-2026-000001/support", json={}, headers={"X-Device-Id": "phone-b"}
    )
    assert not _refused(other)


async def test_a_fuzzing_run_turns_the_write_limits_off(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _limited(app)  # KERBSIDE_RATE_LIMIT_WRITES_PER_*_PER_MINUTE=0
    for _ in range(5):
        answer = await client.post(
            "/v1/tickets/K-2026-000001/support", json={}, headers={"X-Device-Id": "fuzz"}
        )
        assert not _refused(answer)


# -- two real API processes on one database ----------------------------------------------------


@contextlib.contextmanager
def _api_processes(database_url: str, media: Path, count: int) -> Iterator[list[str]]:
    """``count`` API processes on one database, started together; their base URLs."""
    env = {
        **os.environ,
        "KERBSIDE_ENV": "test",
        "KERBSIDE_DATABASE_URL": database_url,
        "KERBSIDE_MEDIA_DIR": str(media),
        "KERBSIDE_RATE_LIMIT_LOGIN_PER_MINUTE": "100",
        "KERBSIDE_RATE_LIMIT_LOGIN_PER_ADDRESS_PER_MINUTE": "3",
        "KERBSIDE_RATE_LIMIT_WRITES_PER_ADDRESS_PER_MINUTE": "1000",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "app.main:app_factory"]
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 120  # two cold starts on a busy machine
        for url, process in zip(urls, processes, strict=True):
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("an API process did not start")
                time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


@pytest.mark.usefixtures("fresh_rate_limits")
def test_two_api_processes_share_one_budget(database_url: str, tmp_path: Path) -> None:
    """The default store, with real processes: a limit of 3 holds across both."""
    with _api_processes(database_url, tmp_path, 2) as (first, second):
        codes = []
        for n in range(6):
            response = httpx.post(
                f"{(first, second)[n % 2]}/v1/auth/jwt/login",
                data={"username": f"someone{n}@example.org", "password": "not the password"},
                timeout=30,
            )
            codes.append(response.status_code)
            if response.status_code == 429:
                assert 1 <= int(response.headers["retry-after"]) <= 60
        assert codes == [400, 400, 400, 429, 429, 429]


async def test_a_device_id_is_bounded_and_documented_on_every_write(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _limited(app, rate_limit_writes_per_device_per_minute=5)
    for bad in ("x" * 129, "phone a", ""):
        answer = await client.post(
            "/v1/tickets/K-2026-000001/support", json={}, headers={"X-Device-Id": bad}
        )
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["errors"][0]["field"] == "X-Device-Id"
    for method, operation in (
        (method, operation)
        for methods in app.openapi()["paths"].values()
        for method, operation in methods.items()
    ):
        named = [p["name"] for p in operation.get("parameters", [])]
        assert ("X-Device-Id" in named) == (method in ("post", "put", "patch", "delete"))


async def test_account_writes_on_the_users_routes_count_too(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    # fastapi-users' own routes identify the caller themselves: the account budget still counts.
    _limited(app, rate_limit_writes_per_account_per_minute=2)
    me = await bearer_headers(app.state.settings, await make_user(db))
    answers = [
        await client.patch("/v1/users/me", json={"full_name": f"Me {n}"}, headers=me)
        for n in range(3)
    ]
    assert [_refused(r) for r in answers] == [False, False, True]
