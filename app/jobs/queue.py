"""The job queue: procrastinate on our PostgreSQL, and deferring inside a caller's transaction.

``queue`` is the procrastinate ``App`` every task is registered on (``app.jobs.tasks``). It
carries no database until ``open_queue`` gives it one, which only the worker (and tests that
run one) need: the API never opens it, because it defers jobs with ``defer`` on its own
session, in the transaction of the change the job announces. A job deferred there exists
exactly when that change is committed: a crash right after the commit loses nothing, and a
rollback leaves no job behind.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from procrastinate import App, PsycopgConnector
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings, to_libpq_url

# Task names (``app.jobs.tasks``) that other code defers. PROCESS_PHOTO and its queue are
# also written in the photo trigger (migration 0008).
PROCESS_PHOTO = "process_photo"
SEND_MAIL = "send_mail"
REFRESH_MAP_GRID = "refresh_map_grid"

# A connector without a database: ``open_queue`` swaps in a real one.
queue = App(connector=PsycopgConnector())

# procrastinate's own function (schema 3.x, migrations/sql): one INSERT into
# procrastinate_jobs, whose trigger NOTIFYs the workers (delivered at COMMIT).
_DEFER = text(
    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, :priority, :lock,"
    " :queueing_lock, CAST(:args AS jsonb), :scheduled_at)::procrastinate_job_to_defer_v1]))"
)


async def defer(
    session: AsyncSession,
    task: str,
    args: Mapping[str, Any] | None = None,
    *,
    queue: str = "default",
    lock: str | None = None,
    queueing_lock: str | None = None,
    priority: int = 0,
    scheduled_at: datetime | None = None,
) -> int | None:
    """Defer the job ``task(**args)`` in ``session``'s transaction; returns its id.

    ``task`` is the registered name (``app.jobs.tasks``), ``args`` JSON-serialisable keyword
    arguments. With a ``queueing_lock``, a job with that lock already waiting means this one
    is not needed: returns None, and the caller's transaction goes on (a savepoint absorbs
    the unique violation).
    """
    params = {
        "queue": queue,
        "task": task,
        "priority": priority,
        "lock": lock,
        "queueing_lock": queueing_lock,
        "args": json.dumps(dict(args or {})),
        "scheduled_at": scheduled_at,
    }
    if queueing_lock is None:
        return int((await session.execute(_DEFER, params)).scalar_one())
    try:
        async with session.begin_nested():
            return int((await session.execute(_DEFER, params)).scalar_one())
    except IntegrityError:
        return None


@asynccontextmanager
async def open_queue(settings: Settings, *, pool_size: int = 4) -> AsyncIterator[App]:
    """``queue`` on the settings' database for the block (the worker, tests): one at a time
    in a process, since tasks (and the periodic deferrer) reach the database through it.
    Several workers may run on it at once."""
    if settings.database_url is None:
        raise RuntimeError("database_url is not set; start the embedded cluster first")
    from app.jobs import tasks  # noqa: F401  (registers every task on ``queue``)

    connector = PsycopgConnector(
        conninfo=to_libpq_url(settings.database_url), min_size=1, max_size=pool_size
    )
    with queue.replace_connector(connector) as app:
        async with app.open_async():
            yield app
