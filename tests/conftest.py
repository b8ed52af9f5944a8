"""Test fixtures: one throwaway PostGIS cluster per run, schema built by the Alembic migrations,
every test inside a transaction that is rolled back.

Set ``KERBSIDE_TEST_DATABASE_URL`` to run against an existing (empty, disposable) PostGIS
database instead of starting a cluster.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from app.embedded import throwaway_cluster
from app.main import create_app
from app.migrations import upgrade_to_head
from app.settings import Settings, to_sqlalchemy_url

# The SMTP inbox fixture (``inbox``) for every test that checks mail.
pytest_plugins = ("tests.mailbox",)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    given = os.environ.get("KERBSIDE_TEST_DATABASE_URL")
    if given:
        upgrade_to_head(given)
        yield given
        return
    cluster = throwaway_cluster()
    try:
        url = cluster.ensure_running()
        upgrade_to_head(url)
        yield url
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        env="test",
        database_url=database_url,
        media_dir=tmp_path_factory.mktemp("media"),
        log_json=False,
    )


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(to_sqlalchemy_url(database_url), pool_size=5, max_overflow=60)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside a transaction that is always rolled back."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            if transaction.is_active:
                await transaction.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    # Commits inside the code under test become savepoints of the outer transaction.
    return async_sessionmaker(
        bind=connection,
        expire_on_commit=False,
        autoflush=False,
        join_transaction_mode="create_savepoint",
    )


@pytest.fixture
async def db(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture(scope="session")
def counters(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def app(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    counters: psycopg.Connection[Any],
) -> FastAPI:
    # Rate limits live in PostgreSQL (the default store): this test's own hits are rolled
    # back with its transaction, but a live server or real process of an earlier test may
    # have committed some for the same client address.
    counters.execute("DELETE FROM rate_limit_hit")
    app = create_app(settings)
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


# -- committing variants, for tests that need real parallel connections ------------------------


@pytest.fixture
async def committed_db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Real commits on separate connections; every domain table and the job queue are
    emptied afterwards."""
    engine = create_async_engine(to_sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "TRUNCATE jurisdiction, app_user, contact, idempotency_record, "
                    "procrastinate_jobs, procrastinate_workers, procrastinate_periodic_defers, "
                    "rate_limit_hit "
                    "RESTART IDENTITY CASCADE"
                )
            )
        await engine.dispose()


@pytest.fixture
def fresh_rate_limits(database_url: str) -> Iterator[None]:
    """Rate limit counters emptied before and after, for tests whose API commits them (live
    servers and real processes keep the default store, PostgreSQL)."""

    def empty() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("TRUNCATE rate_limit_hit")

    empty()
    yield
    empty()
