"""How code reaches the database: four words, each for one kind of work.

- ``SessionDep`` (``get_session``): the request's ``AsyncSession``, one transaction. Every
  write goes through it: services ``flush()``, the dependency commits when the route returns
  (before the response is sent) and rolls back on any error.
- ``read_db`` / ``ReadDbDep``: a ``ReadConnection`` of the read pool (psycopg, autocommit) for
  reads that are one statement (maps, work-order searches, the caller's API key): no BEGIN and
  COMMIT round trips, no SQLAlchemy checkout.
- ``read_session`` / ``ReadSessionDep``: an autocommit ``AsyncSession`` for reads that need the
  ORM or take a few statements that need not agree (a bearer token's user, a work order's
  scope and row), without BEGIN and COMMIT.
- ``replica_db`` / ``ReplicaDbDep``: like ``read_db``, for reads that may be a few seconds
  behind (maps, tiles, statistics, exports): a connection of the read replica
  (``KERBSIDE_READ_DATABASE_URL``) while it is up and close enough behind, else ``read_db``'s.
- ``HotStatement``: a hand-written statement prepared on the server and run on either a
  session's connection (inside its transaction) or a read connection; ``Db`` is that "either".

The engine and the read pool are made in the application's lifespan (never at import time).
Tests swap ``app.state.sessionmaker`` for one bound to a rolled-back connection; read sessions
and ``read_db`` then use that connection too. See docs/architecture.md, "Database access".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.settings import Settings, to_libpq_url

log = logging.getLogger(__name__)


def make_engine(
    settings: Settings, *, pool_size: int | None = None, parallel_query: bool = False
) -> AsyncEngine:
    """The engine; ``parallel_query`` lets the planner use parallel workers (batch jobs).

    Request statements run without: they read a page in a few milliseconds, while parallel
    workers (which the planner picks for costly filters such as a district polygon) take
    tens of milliseconds to start and compete for the same cores under load.
    """
    return create_async_engine(
        settings.async_database_url,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        # A ping costs a round trip on every request; recycling stale connections and the
        # statement timeout cover most failures. Turn it on where connections get cut often.
        pool_pre_ping=settings.database_pre_ping,
        pool_recycle=1800,
        pool_timeout=settings.database_pool_timeout_seconds,
        # JIT compiles for queries it guesses are long; ours are short and its guesses cost
        # tens of milliseconds each (measured on the work-order searches at 1M tickets).
        connect_args=_connect_args(settings, parallel_query=parallel_query),
    )


def _connect_args(settings: Settings, *, parallel_query: bool) -> dict[str, Any]:
    """What every connection is opened with.

    Behind a transaction-mode pooler a client's statements run on whichever server
    connection is free: a statement prepared on one is missing on the next (or its name is
    taken), and the pooler may refuse the ``options`` startup parameter (PgBouncer 1.18
    does). There, nothing is prepared (``prepare_threshold=None``; ``prepare_flag``) and the
    session settings come from the role instead (``ALTER ROLE ... SET``, docs/scaling.md).
    """
    common = {
        "application_name": "kerbside",
        "connect_timeout": settings.database_connect_timeout_seconds,
    }
    if settings.database_transaction_pooler:
        return {**common, "prepare_threshold": None}
    return {**common, "options": _session_options(settings, parallel_query=parallel_query)}


def prepare_flag(connection: psycopg.AsyncConnection[Any]) -> bool | None:
    """``prepare=`` for a hot statement: prepared on the server (True), or left to the
    connection (None), which prepares nothing when opened for a transaction-mode pooler."""
    return None if connection.prepare_threshold is None else True


def _session_options(settings: Settings, *, parallel_query: bool) -> str:
    options = f"-c statement_timeout={settings.database_statement_timeout_ms}"
    options += " -c timezone=UTC -c jit=off"
    if not parallel_query:
        options += " -c max_parallel_workers_per_gather=0"
    return options


# A connection for one-statement reads: psycopg, in autocommit, from the read pool (or, in
# tests, the application's one connection). Also what work outside a request borrows from the
# engine when it wants psycopg directly (the grid refresh).
ReadConnection = psycopg.AsyncConnection[Any]


def make_read_pool(settings: Settings) -> AsyncConnectionPool[ReadConnection]:
    """Autocommit psycopg connections for the map routes' one-statement reads (not opened).

    Their own pool, beside the engine's: a map answer is one statement on a connection that
    stays in autocommit, so there is nothing for SQLAlchemy's checkout, reset-on-return and the
    autocommit switch to do - which cost about 130 µs of CPU per request (measured), a tenth
    of a street-sized map page. Sized like the engine's pool.
    """
    return AsyncConnectionPool(
        to_libpq_url(settings.async_database_url),
        min_size=1,
        max_size=settings.database_pool_size + settings.database_max_overflow,
        kwargs={"autocommit": True, **_connect_args(settings, parallel_query=False)},
        check=AsyncConnectionPool.check_connection if settings.database_pre_ping else None,
        open=False,
        name="kerbside-read",
        timeout=settings.database_pool_timeout_seconds,
    )


class ReadReplica:
    """A streaming replica for reads that may lag a little, and whether it may be used now.

    A task checks the replica every ``read_replica_check_seconds`` on a connection of its
    own: it is usable while it answers and its replay is at most
    ``read_replica_max_lag_seconds`` behind. Otherwise ``replica_db`` hands out the
    primary's read connections: a map a few seconds behind is fine, one missing the last
    minutes is not, and the primary serves these reads on its own when there is no replica.
    Requests already running on a replica that dies meanwhile fail as any database outage
    does (503, ``Retry-After``); the next check moves the rest to the primary.
    """

    # Caught up when everything received is replayed; otherwise as old as the last replayed
    # commit. Without a WAL receiver (the primary is gone) nothing says how much is missing:
    # the age of the last replayed commit is then the lag (NULL, unknown: not used). After
    # an idle spell this overstates the lag in the moment between receiving a record and
    # replaying it; a check that lands there sends reads to the primary until the next one.
    LAG_SQL = """
        SELECT CASE
            WHEN NOT pg_is_in_recovery() THEN 0.0
            WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')
                 AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
        END
    """

    def __init__(self, settings: Settings) -> None:
        assert settings.read_database_url is not None
        self.url = to_libpq_url(settings.read_database_url)
        self.max_lag_seconds = settings.read_replica_max_lag_seconds
        self.check_seconds = settings.read_replica_check_seconds
        self._connect_args = _connect_args(settings, parallel_query=False)
        self.pool: AsyncConnectionPool[ReadConnection] = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=settings.database_pool_size + settings.database_max_overflow,
            kwargs={"autocommit": True, **self._connect_args},
            open=False,
            name="kerbside-replica",
            timeout=settings.database_pool_timeout_seconds,
        )
        self.usable = False
        self.lag_seconds: float | None = None
        self._first_check = True
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.pool.open(wait=False)  # a replica that is down does not stop the API
        await self.check()
        self._task = asyncio.create_task(self._keep_checking(), name="kerbside-replica-check")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pool.close()

    async def check(self) -> None:
        """Measure the lag once and decide whether reads go to the replica."""
        why_not: str | None = None
        lag: float | None = None
        try:
            connection = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, **self._connect_args
            )
            async with connection:
                row = await (await connection.execute(self.LAG_SQL)).fetchone()
            lag = None if row is None or row[0] is None else float(row[0])
        except psycopg.Error as exc:
            # The driver's text may name hosts: it is for the log, never for a client.
            why_not = f"unreachable ({type(exc).__name__}: {str(exc).strip()[:200]})"
        else:
            if lag is None:
                why_not = "lag unknown (no WAL receiver and nothing replayed yet)"
            elif lag > self.max_lag_seconds:
                why_not = f"{lag:.1f} s behind (more than {self.max_lag_seconds:g} s)"
        self.lag_seconds = lag
        was_usable, first = self.usable, self._first_check
        self.usable, self._first_check = why_not is None, False
        if why_not is not None and (was_usable or first):
            log.warning("read replica not used, reads go to the primary: %s", why_not)
        elif self.usable and not was_usable:
            # Connections made before an outage are dead: let the pool replace them.
            await self.pool.check()
            log.info("read replica in use (%.1f s behind)", lag or 0.0)

    async def _keep_checking(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                await self.check()
            except Exception:  # the checker must outlive any surprise; reads then use the primary
                log.exception("read replica check failed")
                self.usable = False


@contextlib.asynccontextmanager
async def replica_db(request: Request) -> AsyncIterator[ReadConnection]:
    """A connection in autocommit for one-statement reads that may lag a little (maps,
    tiles, statistics): the replica's while ``ReadReplica`` says it is usable, else
    ``read_db``'s (the primary's)."""
    replica: ReadReplica | None = getattr(request.app.state, "replica", None)
    if replica is not None and replica.usable:
        async with replica.pool.connection() as connection:
            yield connection
        return
    async with read_db(request) as connection:
        yield connection


@contextlib.asynccontextmanager
async def replica_snapshot(request: Request) -> AsyncIterator[ReadConnection]:
    """A psycopg connection inside a read transaction, for a server-side cursor (exports),
    on the replica while it is usable, else on a session of the primary; rolled back."""
    replica: ReadReplica | None = getattr(request.app.state, "replica", None)
    if replica is not None and replica.usable:
        async with replica.pool.connection() as connection, connection.transaction():
            yield connection
        return
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield await driver_of(session)
        finally:
            await session.rollback()


async def get_replica_db(request: Request) -> AsyncIterator[ReadConnection]:
    async with replica_db(request) as db:
        yield db


ReplicaDbDep = Annotated[ReadConnection, Depends(get_replica_db, scope="function")]


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": the commit happens when the route returns, before the response is sent, so a
# client never sees 201 for a write that then fails to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def make_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose statements each commit on their own (the pool's connections, no BEGIN)."""
    return make_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))


# What a hand-written statement runs on: a session's connection (inside its transaction) or
# a read connection.
Db = AsyncSession | ReadConnection


@contextlib.asynccontextmanager
async def read_db(request: Request) -> AsyncIterator[ReadConnection]:
    """A psycopg connection in autocommit for one-statement reads (maps, searches, the
    caller's API key): from the read pool (``make_read_pool``). When the application's
    sessions are bound to one connection (the tests' rolled-back transaction), that
    connection, inside its transaction; with an engine installed from outside and no pool
    (tests that commit), one of the engine's connections (the sessionmaker's engine when the
    application was given only a sessionmaker)."""
    state = request.app.state
    sessionmaker: async_sessionmaker[AsyncSession] = state.sessionmaker
    bind = sessionmaker.kw.get("bind")
    if isinstance(bind, AsyncConnection):
        yield await _driver(bind)  # no savepoint: a route's session may hold one meanwhile
        return
    pool: AsyncConnectionPool[ReadConnection] | None = getattr(state, "read_pool", None)
    if pool is not None:
        async with pool.connection() as connection:
            yield connection
        return
    # The application's engine, or (an application given only a sessionmaker) the one its
    # sessions are bound to.
    engine = getattr(state, "engine", None) or bind
    assert isinstance(engine, AsyncEngine), "the application has no database engine"
    async with engine.connect() as borrowed:
        driver = await _driver(borrowed)
        await driver.set_autocommit(True)
        try:
            yield driver
        finally:
            with contextlib.suppress(psycopg.Error):
                await driver.set_autocommit(False)


async def _driver(connection: AsyncConnection) -> psycopg.AsyncConnection[Any]:
    raw = await connection.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    return driver


async def get_read_db(request: Request) -> AsyncIterator[ReadConnection]:
    async with read_db(request) as db:
        yield db


ReadDbDep = Annotated[ReadConnection, Depends(get_read_db, scope="function")]


@contextlib.asynccontextmanager
async def read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for work that reads (and at most makes one-statement writes).

    Without a transaction there are no BEGIN and COMMIT round trips: two of the four a
    read-only request would otherwise make. Each statement sees its own snapshot, so code
    reading through it must not need two statements to agree. When the application's sessions
    are bound to one connection (the tests' rolled-back transaction), that is used instead.
    """
    state = request.app.state
    sessionmaker: async_sessionmaker[AsyncSession] = (
        getattr(state, "read_sessionmaker", None) or state.sessionmaker
    )
    async with sessionmaker() as session:
        yield session
        await session.commit()  # nothing to commit in autocommit; ends a bound savepoint


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with read_session(request) as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


class HotStatement:
    """A hand-written statement run on the session's own psycopg connection.

    For the few statements on the hottest path (report intake): it skips SQLAlchemy's
    execution layers (about a sixth of intake's CPU in a profile) but stays inside the
    session's transaction, so commits and rollbacks are unchanged. Parameters are named
    ``:name`` as in ``text()``; the statement is prepared on the server once per connection
    (unless the connection is for a transaction-mode pooler: ``prepare_flag``).
    """

    def __init__(self, sql: str, *, prepared: bool = True) -> None:
        self.text = sql  # the `text()`-style SQL (the benchmark's pgbench script reads it)
        # Unprepared: planned for its values on every run. For a statement whose best plan
        # changes as a table grows from nothing: a prepared statement's generic plan is made
        # once per connection, and one made on a few rows scans thousands later.
        self.prepared = prepared
        # :name -> %(name)s, leaving PostgreSQL casts (::type) alone; a literal % is doubled.
        self.sql = _NAMED_PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
        # And in PostgreSQL's own $n form, which psycopg sends as it is: it parses a
        # statement's placeholders on every run when the statement is longer than 4 kB
        # (the intake's, about half a millisecond each).
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        self.numbered = _NAMED_PARAM.sub(number, sql)
        self.names = tuple(names)

    async def one(self, db: Db, params: dict[str, Any]) -> Any:
        """The first row (a named tuple) or None, on a session's connection (inside its
        transaction) or on a psycopg connection (``make_read_pool``'s)."""
        async with self._run(db, params) as cursor:
            return await cursor.fetchone() if cursor.description is not None else None

    async def all(self, db: Db, params: dict[str, Any]) -> list[Any]:
        """Every row (named tuples), as ``one``."""
        async with self._run(db, params) as cursor:
            return await cursor.fetchall() if cursor.description is not None else []

    @contextlib.asynccontextmanager
    async def _run(
        self, db: Db, params: dict[str, Any]
    ) -> AsyncIterator[psycopg.AsyncRawCursor[Any]]:
        driver = await driver_of(db)
        prepare = prepare_flag(driver) if self.prepared else False
        async with psycopg.AsyncRawCursor(driver, row_factory=namedtuple_row) as cursor:
            await cursor.execute(self.numbered, [params[n] for n in self.names], prepare=prepare)
            yield cursor


_NAMED_PARAM = re.compile(r"(?<![:\w]):(\w+)")

# What a statement that failed in the database raises: SQLAlchemy's error for one run through
# a session, psycopg's own for a ``HotStatement``.
DATABASE_ERRORS = (DBAPIError, psycopg.Error)


def driver_error(error: BaseException) -> BaseException:
    """The driver's error under a ``DATABASE_ERRORS`` one."""
    return error.orig if isinstance(error, DBAPIError) and error.orig is not None else error


async def driver_of(db: Db) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under ``db`` (a session's: it begins the session's transaction,
    and the savepoint of a ``begin_nested`` block, which SQLAlchemy emits when the block
    first asks for the connection).

    A session keeps its connection for the whole of a transaction, so the connection found
    is remembered with the transaction (or savepoint) it was asked for in: asking the
    session again costs two greenlet switches, a tenth of a hot statement's time on the
    intake's path. Asked in another one, the session is asked again."""
    if isinstance(db, AsyncSession):
        found = db.info.get(_DRIVER_OF)
        current = _innermost(db)
        if found is not None and current is not None and found[0] is current:
            driver: psycopg.AsyncConnection[Any] = found[1]
            return driver
        driver = await _driver(await db.connection())
        db.info[_DRIVER_OF] = (_innermost(db), driver)
        return driver
    return db


def _innermost(session: AsyncSession) -> object | None:
    """The session's innermost transaction: its savepoint, else its transaction."""
    sync = session.sync_session
    return sync.get_nested_transaction() or sync.get_transaction()


_DRIVER_OF = "kerbside.driver_of"
