"""Deferring a background job inside the caller's own transaction (the job queue's one
door for the domains).

The queue is procrastinate on our PostgreSQL (``app.jobs``); this module needs none of it,
only procrastinate's SQL function, so any domain may defer a job without importing the
worker's tasks. A job deferred here exists exactly when the caller's change is committed: a
crash right after the commit loses nothing, and a rollback leaves no job behind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

# Task names (``app.jobs.tasks``) that other code defers. PROCESS_PHOTO and its queue are
# also written in the photo trigger (migration 0008).
PROCESS_PHOTO = "process_photo"
SEND_MAIL = "send_mail"
REFRESH_MAP_GRID = "refresh_map_grid"
QUEUE_BROADCAST = "queue_broadcast"
# Deferred once per change by the event stream (migration 0020), broadcasts and digests.
DELIVER_NOTIFICATIONS = "deliver_notifications"
PROCESS_SOCIAL_POSTS = "process_social_posts"  # posts a webhook kept (app.social)
FETCH_POST_PHOTOS = "fetch_post_photos"  # a filed social post's photos (app.social.photos)
FETCH_OPEN311_MEDIA = "fetch_open311_media"  # an Open311 request's media_url (app.open311.media)
# An Open311 update's media_url, onto its ticket (app.open311.media)
FETCH_OPEN311_UPDATE_MEDIA = "fetch_open311_update_media"
TALK = "talk"  # spikes, every 15 s (app/talk); the bench waits for it

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
