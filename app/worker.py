"""Background jobs: service-level sweeps, priority refresh, maintenance; outbox delivery later.

Any number of workers may run: each job takes a PostgreSQL advisory lock for its run, so two
workers never run the same job at once. Photo processing is the exception: workers share it,
each claiming one photo at a time with ``FOR UPDATE SKIP LOCKED``. ``kerbside worker --once``
runs every job once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import clock
from app.db import make_engine, make_sessionmaker
from app.media.service import PhotoPipeline
from app.settings import Settings
from app.tickets import priority
from app.tickets.service_levels import service_level_job
from app.tickets.workflow import close_undisputed_fixes

log = logging.getLogger("kerbside.worker")

JobFn = Callable[[AsyncSession], Awaitable[int]]


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    run: JobFn
    # True: one run at a time across all workers, in one transaction under an advisory lock.
    # False: the job claims its own rows (FOR UPDATE SKIP LOCKED) and commits as it goes, so
    # every worker runs it at once.
    exclusive: bool = True

    @property
    def lock_id(self) -> int:
        return zlib.crc32(f"kerbside-job:{self.name}".encode())


async def purge_expired_idempotency_records(session: AsyncSession) -> int:
    """Forget idempotency keys past their expiry (kept at least 24 h)."""
    result = await session.execute(
        text(
            "DELETE FROM idempotency_record WHERE ctid IN ("
            " SELECT ctid FROM idempotency_record WHERE expires_at < now() LIMIT 10000)"
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def refresh_priorities(session: AsyncSession) -> int:
    """Keep computed priorities in step with reports, supporters and age."""
    return await priority.refresh(session, clock.now())


JOBS: list[Job] = [
    Job("purge-idempotency", timedelta(minutes=10), purge_expired_idempotency_records),
    Job("service-levels", timedelta(minutes=1), service_level_job),
    Job("refresh-priorities", timedelta(minutes=15), refresh_priorities),
    Job("close-undisputed-fixes", timedelta(hours=1), close_undisputed_fixes),
]


def default_jobs(settings: Settings) -> list[Job]:
    """``JOBS``, and processing the photos that API processes left pending (any number of
    workers share that work)."""
    photos = PhotoPipeline(settings)
    every = timedelta(seconds=settings.photo_sweep_seconds)
    return [*JOBS, Job("process-photos", every, photos.process_pending, exclusive=False)]


async def run_job(sessionmaker: async_sessionmaker[AsyncSession], job: Job) -> int | None:
    """Run ``job`` once under its advisory lock; None when another worker holds it."""
    if not job.exclusive:
        async with sessionmaker() as session:
            done = await job.run(session)
        log.info("job done", extra={"job": job.name, "items": done})
        return done
    async with sessionmaker() as session, session.begin():
        locked = (
            await session.execute(
                text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": job.lock_id}
            )
        ).scalar_one()
        if not locked:
            return None
        done = await job.run(session)
    log.info("job done", extra={"job": job.name, "items": done})
    return done


async def run_worker(
    settings: Settings, *, once: bool = False, jobs: list[Job] | None = None
) -> None:
    jobs = jobs if jobs is not None else default_jobs(settings)
    engine = make_engine(settings, pool_size=2, parallel_query=True)
    sessionmaker = make_sessionmaker(engine)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    next_run = {job.name: loop.time() for job in jobs}
    log.info("worker started", extra={"jobs": [job.name for job in jobs]})
    try:
        while not stop.is_set():
            for job in jobs:
                if loop.time() >= next_run[job.name]:
                    try:
                        await run_job(sessionmaker, job)
                    except Exception:
                        log.exception("job failed", extra={"job": job.name})
                    next_run[job.name] = loop.time() + job.every.total_seconds()
            if once:
                break
            wake = min(next_run.values()) - loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.1, wake))
    finally:
        await engine.dispose()
        log.info("worker stopped")
