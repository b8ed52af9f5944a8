"""``kerbside worker``: a procrastinate worker running every task of ``app.jobs.tasks``.

Any number of workers may run, on any host that reaches the database: they share the jobs
(each taken once), periodic jobs are deferred once per tick, and each periodic job's lock
keeps two of its runs apart. ``once`` is the burst mode: defer every periodic job now, run
everything due, then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from procrastinate import App, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException

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
# Between attempts to start again while the database is away: 1, 2, 4 ... up to this; a
# worker that then ran this long starts from 1 s again at its next stop.
MAX_RECONNECT_WAIT_SECONDS = 30.0
HEALTHY_RUN_SECONDS = 60.0


@asynccontextmanager
async def open_queue(settings: Settings, *, pool_size: int = 4) -> AsyncIterator[App]:
    """``queue`` on the settings' database for the block (the worker, tests): one at a time
    in a process, since tasks (and the periodic deferrer) reach the database through it.
    Several workers may run on it at once."""
    if settings.database_url is None:
        raise RuntimeError("database_url is not set; start the embedded cluster first")
    # procrastinate's pool checks each connection as it leaves the pool, so the dead ones a
    # database restart leaves behind are replaced, not handed out.
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
            if once:
                log.info("deferred periodic jobs", extra={"jobs": await defer_periodic_now(app)})
            stop = asyncio.Event()
            if install_signal_handlers:
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(signum, stop.set)
            try:
                await _run_until_stopped(app, settings, concurrency, once, context, stop)
            finally:
                if install_signal_handlers:
                    for signum in (signal.SIGINT, signal.SIGTERM):
                        loop.remove_signal_handler(signum)
    finally:
        photos.close()
        await close_all(channels)
        await engine.dispose()


async def _run_until_stopped(
    app: App,
    settings: Settings,
    concurrency: int,
    once: bool,
    context: dict[str, Any],
    stop: asyncio.Event,
) -> None:
    """procrastinate's worker until ``stop`` (a signal) or, with ``once``, until none is due.

    procrastinate stops its worker when the database goes away (its listener fails) or
    raises; either way this starts it again, waiting 1, 2, 4 ... s, so a database restart
    needs no supervisor to bring the worker back.
    """
    wait = 1.0
    while not stop.is_set():
        failed = False
        started = time.monotonic()
        try:
            # A worker that starts delivers what waits at once (a job may have died with a
            # worker before it), not at the next sweep.
            await tasks.deliver_notifications.defer_async()
            run = asyncio.create_task(
                app.run_worker_async(
                    concurrency=concurrency,
                    wait=not once,
                    additional_context=context,
                    install_signal_handlers=False,
                    update_heartbeat_interval=settings.worker_heartbeat_seconds,
                    stalled_worker_timeout=settings.worker_stalled_after_seconds,
                    shutdown_graceful_timeout=SHUTDOWN_GRACE_SECONDS,
                )
            )
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({run, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                run.cancel()  # procrastinate stops gracefully: running jobs get the grace time
                with contextlib.suppress(asyncio.CancelledError):
                    await run
                return
            stopping.cancel()
            run.result()
        except ConnectorException:
            if once:
                raise
            failed = True
        if once:
            return
        if time.monotonic() - started >= HEALTHY_RUN_SECONDS:
            wait = 1.0  # a stop after a good run is a new outage, not the same one going on
        log.warning(
            "the worker stopped (the database went away?); it starts again in %gs",
            wait,
            extra={"failed": failed},
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
        wait = min(wait * 2, MAX_RECONNECT_WAIT_SECONDS)
