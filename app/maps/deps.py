"""Dependencies of the map routes, lean because these are the busiest read paths.

- ``ReadDb``: a psycopg connection in autocommit mode from the read pool
  (``app.db.make_read_pool``). A map answer is one read-only statement, so BEGIN and COMMIT
  would be two extra round trips per request. When the application's sessions are bound to
  one connection (the tests' rolled-back transaction), that connection is used instead,
  inside its transaction.
- ``MapPrincipal``: the same caller as ``OptionalPrincipal`` (and the same checks, by
  calling it), resolved only when the request carries credentials; anonymous requests, most
  of the map traffic, skip building the user manager and JWT strategy.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.principal import Principal, resolve_principal
from app.db import read_session


async def _driver(connection: AsyncConnection) -> psycopg.AsyncConnection[Any]:
    raw = await connection.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    return driver


async def read_connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    if isinstance(sessionmaker.kw.get("bind"), AsyncConnection):
        async with sessionmaker() as session:
            yield await _driver(await session.connection())
        return
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = getattr(
        request.app.state, "read_pool", None
    )
    if pool is not None:
        async with pool.connection() as connection:
            yield connection
        return
    # An engine installed from outside (tests that commit): borrow one of its connections.
    async with request.app.state.engine.connect() as borrowed:
        driver = await _driver(borrowed)
        await driver.set_autocommit(True)
        try:
            yield driver
        finally:
            with contextlib.suppress(psycopg.Error):
                await driver.set_autocommit(False)


def background_engine(request: Request) -> AsyncEngine | None:
    """The engine for work outside the request (the grid refresh), or None when sessions are
    bound to one connection (tests): such work must then run on that connection."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    if isinstance(sessionmaker.kw.get("bind"), AsyncConnection):
        return None
    engine: AsyncEngine = request.app.state.engine
    return engine


def _has_credentials(request: Request) -> bool:
    headers = request.headers
    return "authorization" in headers or "x-api-key" in headers or "api_key" in request.query_params


async def map_principal(request: Request) -> Principal | None:
    if not _has_credentials(request):
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    async with read_session(request) as session:
        return await resolve_principal(
            session,
            request.app.state.settings,
            token.strip() if scheme.lower() == "bearer" else None,
            request.headers.get("x-api-key") or request.query_params.get("api_key"),
        )


# For the OpenAPI document: credentials are optional (the `{}`) and change what is shown.
OPTIONAL_AUTH: dict[str, Any] = {
    "security": [{"OAuth2PasswordBearer": []}, {"ApiKeyHeader": []}, {"ApiKeyQuery": []}, {}]
}

ReadDb = Annotated[psycopg.AsyncConnection[Any], Depends(read_connection, scope="function")]
MapPrincipal = Annotated[Principal | None, Depends(map_principal)]
