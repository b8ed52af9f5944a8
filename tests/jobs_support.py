"""A real procrastinate worker in the test process, in burst mode, on committed data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels.base import Channel
from app.db import make_engine, make_sessionmaker
from app.jobs.tasks import RESOURCES, Resources
from app.jobs.worker import open_queue
from app.media.service import PhotoPipeline
from app.settings import Settings


async def drain(
    settings: Settings,
    *,
    queues: Iterable[str] | None = None,
    photos: Sequence[PhotoPipeline] = (),
    concurrency: int = 1,
    channels: Mapping[str, Channel] | None = None,
) -> None:
    """Run every job that is due (on ``queues``, default all), then return: one worker per
    pipeline of ``photos`` (default one worker with its own), all at once."""
    engine = make_engine(settings, pool_size=2 * concurrency + 2)
    sessionmaker = make_sessionmaker(engine)
    pipelines = list(photos) or [PhotoPipeline(settings)]
    try:
        async with open_queue(settings, pool_size=4 * len(pipelines)) as app:
            await asyncio.gather(
                *(
                    app.run_worker_async(
                        name=f"test-worker-{n}",
                        wait=False,
                        queues=list(queues) if queues is not None else None,
                        concurrency=concurrency,
                        additional_context={
                            RESOURCES: Resources(settings, sessionmaker, pipeline, channels or {})
                        },
                        install_signal_handlers=False,
                    )
                    for n, pipeline in enumerate(pipelines)
                )
            )
    finally:
        if not photos:
            pipelines[0].close()
        await engine.dispose()


async def jobs_of(sessionmaker: async_sessionmaker[AsyncSession], task: str) -> list[Any]:
    """The queue's rows of ``task`` (status, args, attempts), oldest first."""
    async with sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT id, status, args, attempts, lock FROM procrastinate_jobs"
                " WHERE task_name = :task ORDER BY id"
            ),
            {"task": task},
        )
        return list(rows.all())
