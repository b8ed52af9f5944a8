"""``kerbside worker``: a procrastinate worker running every task of ``app.jobs.tasks``.

Any number of workers may run, on any host that reaches the database: they share the jobs
(each taken once), periodic jobs are deferred once per tick, and each periodic job's lock
keeps two of its runs apart. ``once`` is the burst mode: defer every periodic job now, run
everything due, then exit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from procrastinate import App, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued

from app.channels.registry import channels_for, close_all, unavailable
from app.db import make_engine, make_sessionmaker
from app.jobs import tasks  # registers every task on ``queue``
from app.jobs.queue import queue
from app.media.service import PhotoPipeline
from app.settings import Settings, to_libpq_url

log = logging.getLogger("kerbside.worker")

# On a stop, running jobs get this long to finish (a photo decodes in well under it); a job
# cut short is retried by the next worker (see ``app.jobs.tasks.retry_stalled_jobs``).
SHUTDOWN_GRACE_SECONDS = 20.0


@asynccontextmanager
async def open_queue(settings: Settings, *, pool_size: int = 4) -> AsyncIterator[App]:
    """``queue`` on the settings' database for the block (the worker, tests): one at a time
    in a process, since tasks (and the periodic deferrer) reach the database through it.
    Several workers may run on it at once."""
    if settings.database_url is None:
        raise RuntimeError("database_url is not set; start the embedded cluster first")
    connector = PsycopgConnector(
        conninfo=to_libpq_url(settings.database_url), min_size=1, max_size=pool_size
    )
    with queue.replace_connector(connector) as app:
        async with app.open_async():
            yield app


async def defer_periodic_now(app: App) -> list[str]:
    """Defer every periodic job for now (one not already waiting); returns their names."""
    deferred = []
    now = int(time.time())
    for periodic in app.periodic_registry.periodic_tasks.values():
        try:
            await periodic.task.defer_async(timestamp=now)
        except AlreadyEnqueued:
            continue
        deferred.append(periodic.task.name)
    return sorted(deferred)


async def run_worker(
    settings: Settings,
    *,
    once: bool = False,
    concurrency: int | None = None,
    install_signal_handlers: bool = True,
) -> None:
    """Run jobs until stopped (SIGINT, SIGTERM), or with ``once`` until none is due."""
    concurrency = concurrency or settings.worker_concurrency
    engine = make_engine(settings, pool_size=concurrency + 1, parallel_query=True)
    photos = PhotoPipeline(settings)
    channels = channels_for(settings)
    if missing := unavailable(channels):
        log.warning("no channel delivers to these contact kinds", extra={"kinds": missing})
    context = {
        tasks.RESOURCES: tasks.Resources(settings, make_sessionmaker(engine), photos, channels),
    }
    try:
        async with open_queue(settings, pool_size=concurrency + 2) as app:
            # A worker that starts delivers what waits at once (its job may have died with
            # the worker before it), not at the next sweep.
            await tasks.deliver_notifications.defer_async()
            if once:
                log.info("deferred periodic jobs", extra={"jobs": await defer_periodic_now(app)})
            await app.run_worker_async(
                concurrency=concurrency,
                wait=not once,
                additional_context=context,
                install_signal_handlers=install_signal_handlers,
                update_heartbeat_interval=settings.worker_heartbeat_seconds,
                stalled_worker_timeout=settings.worker_stalled_after_seconds,
                shutdown_graceful_timeout=SHUTDOWN_GRACE_SECONDS,
            )
    finally:
        photos.close()
        await close_all(channels)
        await engine.dispose()
