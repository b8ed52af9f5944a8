"""Every background job, as a procrastinate task on ``app.jobs.queue.queue``.

Deferred jobs announce a committed change (deferred in its transaction, see
``app.core.jobs.defer``): a photo to process, a staff mail to send, a grid to rebuild after
an import. Periodic jobs are deferred by the workers from their cron (procrastinate records
each tick once, whatever the number of workers); each has a ``queueing_lock`` (at most one
waiting) and a ``lock`` (at most one running), so two workers never sweep at once.

A job gets what it needs from ``Resources``, which the worker passes in its context.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from procrastinate import JobContext, RetryStrategy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels.base import Channel
from app.core import clock
from app.core.jobs import (
    DELIVER_NOTIFICATIONS,
    FETCH_OPEN311_MEDIA,
    FETCH_OPEN311_UPDATE_MEDIA,
    FETCH_POST_PHOTOS,
    PROCESS_PHOTO,
    PROCESS_SOCIAL_POSTS,
    QUEUE_BROADCAST,
    REFRESH_MAP_GRID,
    SEND_MAIL,
    TALK,
)
from app.db import driver_of
from app.jobs.queue import queue
from app.mail import Mail, deliver
from app.maps.service import refresh_grid
from app.media.service import PhotoPipeline
from app.notify import broadcasts, digests
from app.notify import service as notify
from app.open311 import media as open311_media
from app.privacy.service import drop_expired_personal_data
from app.settings import Settings
from app.social import photos as social_photos
from app.social import polling as social
from app.talk import signals as talk_signals
from app.talk import spikes
from app.tickets import priority
from app.tickets.service_levels import service_level_job
from app.tickets.workflow import close_undisputed_fixes

log = logging.getLogger("kerbside.jobs")

RESOURCES = "kerbside"  # the key of ``Resources`` in the worker's additional context
# Finished jobs (and their events) are kept this long for inspection, then deleted.
KEEP_FINISHED_JOBS_HOURS = 72


@dataclass(frozen=True)
class Resources:
    """What jobs use, made once per worker: settings, sessions, the photo pipeline."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    photos: PhotoPipeline
    # Outbound adapters by contact kind (``app.channels``).
    channels: Mapping[str, Channel] = field(default_factory=dict)


def resources(context: JobContext) -> Resources:
    found = context.additional_context[RESOURCES]
    assert isinstance(found, Resources)
    return found


async def _in_transaction(
    context: JobContext, run: Callable[[AsyncSession], Awaitable[int]]
) -> int:
    async with resources(context).sessionmaker() as session, session.begin():
        return await run(session)


# -- deferred by a committed change -------------------------------------------------------------


# Storage trouble is retried (2, 4, 8 ... 64 s); after that the photo stays pending and the
# sweep defers it again. A bad upload is not an error: the photo ends ``failed``.
@queue.task(
    name=PROCESS_PHOTO,
    queue="photos",
    pass_context=True,
    retry=RetryStrategy(max_attempts=6, exponential_wait=2),
)
async def process_photo(context: JobContext, public_id: str) -> str | None:
    """Decode, strip and resize one pending photo (deferred when its row is inserted)."""
    found = resources(context)
    async with found.sessionmaker() as session:
        return await found.photos.process_one(session, uuid.UUID(public_id))


# A mail server away for a while: 2, 4, 8 ... 512 s, then the job is failed (kept 72 h).
@queue.task(
    name=SEND_MAIL,
    queue="mail",
    pass_context=True,
    retry=RetryStrategy(max_attempts=10, exponential_wait=2),
)
async def send_mail(context: JobContext, to: str, subject: str, body: str) -> bool:
    """Send one mail that a committed change asked for (service-level escalations)."""
    return await deliver(resources(context).settings, Mail(to=to, subject=subject, body=body))


# Deferred by the event stream (migration 0020) in the transaction of each change that queues
# messages, by broadcasts, digests and staff retries, and scheduled for rows that wait: claims
# due rows in batches until none is left (``app.notify.service.deliver_due``). Outcomes are the
# notifications' own (retries, dead letters); a crash or an outage of our database is retried.
@queue.task(
    name=DELIVER_NOTIFICATIONS,
    queue="notify",
    pass_context=True,
    retry=RetryStrategy(max_attempts=5, exponential_wait=2),
)
async def deliver_notifications(context: JobContext) -> int:
    """Send every notification that is due; returns how many were attempted."""
    found = resources(context)
    return await notify.deliver_due(found.sessionmaker, found.channels, found.settings)


# Deferred when staff send a broadcast; one batch per transaction, so a crash resumes after the
# last contact queued (and the unique (contact, broadcast) never queues anyone twice).
@queue.task(
    name=QUEUE_BROADCAST,
    queue="notify",
    pass_context=True,
    retry=RetryStrategy(max_attempts=10, exponential_wait=2),
)
async def queue_broadcast(context: JobContext, broadcast_id: int) -> dict[str, int]:
    """Queue a broadcast's messages for every subscriber in its polygon."""
    found = resources(context)
    while True:
        async with found.sessionmaker() as session, session.begin():
            done, counts = await broadcasts.queue_batch(session, broadcast_id)
        log.info("broadcast batch queued", extra={"broadcast": broadcast_id, "counts": counts})
        if done:
            return counts


# Posts a webhook kept, processed after the delivery was answered (X wants 200 within 10 s).
@queue.task(
    name=PROCESS_SOCIAL_POSTS,
    queue="social",
    pass_context=True,
    retry=RetryStrategy(max_attempts=5, exponential_wait=2),
)
async def process_social_posts(context: JobContext, ids: list[int]) -> dict[str, Any]:
    """Classify, locate, link or file, and answer the posts a webhook delivered."""
    found = resources(context)
    return await social.process_posts(found.sessionmaker, found.settings, ids)


# A filed post's photos, from its platform: a download that may work later is tried again
# (5, 25, 125, 625 s: a platform's outage of minutes), the last try records what failed.
_PHOTO_TRIES = 5


def _photo_retries(later: type[Exception]) -> RetryStrategy:
    """Tried again on ``later`` (a download that may work later), ``_PHOTO_TRIES`` in all."""
    return RetryStrategy(
        max_attempts=_PHOTO_TRIES - 1, exponential_wait=5, retry_exceptions={later}
    )


def _last_photo_try(context: JobContext) -> bool:
    """This run is the last: what still fails is recorded instead of tried again."""
    tries = context.job.attempts if context.job is not None else 0
    return tries >= _PHOTO_TRIES - 1


@queue.task(
    name=FETCH_POST_PHOTOS,
    queue="social",
    pass_context=True,
    retry=_photo_retries(social_photos.PhotosLater),
)
async def fetch_post_photos(context: JobContext, post_id: int) -> str:
    """Fetch a filed social post's photos into its report (deferred when it is filed)."""
    found = resources(context)
    return await social_photos.fetch_post_photos(
        found.sessionmaker,
        found.settings,
        found.photos,
        post_id,
        last_try=_last_photo_try(context),
    )


@queue.task(
    name=FETCH_OPEN311_MEDIA,
    queue="photos",
    pass_context=True,
    retry=_photo_retries(open311_media.MediaLater),
)
async def fetch_open311_media(context: JobContext, report_id: int) -> str:
    """Fetch the photos an Open311 request named by media_url (deferred when it is filed)."""
    found = resources(context)
    return await open311_media.fetch_request_media(
        found.sessionmaker,
        found.settings,
        found.photos,
        report_id,
        last_try=_last_photo_try(context),
    )


@queue.task(
    name=FETCH_OPEN311_UPDATE_MEDIA,
    queue="photos",
    pass_context=True,
    retry=_photo_retries(open311_media.MediaLater),
)
async def fetch_open311_update_media(context: JobContext, event_id: int) -> str:
    """Fetch the photos a pushed Open311 update named by media_url onto its ticket."""
    found = resources(context)
    return await open311_media.fetch_update_media(
        found.sessionmaker,
        found.settings,
        found.photos,
        event_id,
        last_try=_last_photo_try(context),
    )


@queue.periodic(cron="* * * * *")
@queue.task(
    name="poll_social",
    queue="social",
    pass_context=True,
    lock="poll_social",
    queueing_lock="poll_social",
)
async def poll_social(context: JobContext, timestamp: int) -> dict[str, Any]:
    """Fetch the mentions of every city account from its cursor, and process them."""
    found = resources(context)
    polled = await social.poll_accounts(found.sessionmaker, found.settings)
    return {"accounts": polled.accounts, "stored": polled.stored, "errors": polled.errors}


@queue.periodic(cron="*/5 * * * *")
@queue.task(
    name="end_silent_dialogues",
    queue="social",
    pass_context=True,
    lock="end_silent_dialogues",
    queueing_lock="end_silent_dialogues",
)
async def end_silent_dialogues(context: JobContext, timestamp: int) -> int:
    """Close the WhatsApp and Messenger reporting chats that went silent, saying so."""
    found = resources(context)
    return await social.end_silent_dialogues(found.sessionmaker, found.settings)


@queue.periodic(cron="0 7 * * *")  # every morning, 07:00 UTC
@queue.task(
    name="send_area_digests",
    queue="notify",
    pass_context=True,
    lock="send_area_digests",
    queueing_lock="send_area_digests",
)
async def send_area_digests(context: JobContext, timestamp: int) -> int:
    """The daily news of every place followed as a digest."""
    return await _in_transaction(context, lambda s: digests.write_digests(s, clock.now()))


@queue.periodic(cron="* * * * *")
@queue.task(
    name=REFRESH_MAP_GRID,
    pass_context=True,
    lock=REFRESH_MAP_GRID,
    queueing_lock=REFRESH_MAP_GRID,
)
async def refresh_map_grid(context: JobContext, timestamp: int | None = None) -> None:
    """Rebuild the low-zoom cluster grid (every minute, and after an import)."""
    async with resources(context).sessionmaker() as session, session.begin():
        # A million tickets take seconds: more than API statements are allowed.
        await session.execute(text("SET LOCAL statement_timeout = '10min'"))
        await refresh_grid(await driver_of(session))


# -- periodic -----------------------------------------------------------------------------------


# Every 15 seconds (procrastinate's cron takes seconds as a sixth field): a spike is known
# well within a minute of its last report, and the intake path does nothing for it.
@queue.periodic(cron="* * * * * */15")
@queue.task(name=TALK, pass_context=True, lock=TALK, queueing_lock=TALK)
async def talk(context: JobContext, timestamp: int) -> int:
    """Copy new reports into signals; open, grow and close spike alerts (app/talk)."""
    found = resources(context)

    async def run(session: AsyncSession) -> int:
        result = await spikes.tick(session, settings=found.settings)
        if result.opened or result.closed:
            log.info(
                "talk",
                extra={
                    "opened": result.opened,
                    "closed": result.closed,
                    "copied": result.copied,
                    "posts": result.posts,
                },
            )
        return result.copied

    return await _in_transaction(context, run)


@queue.periodic(cron="* * * * *")
@queue.task(
    name="sweep_photos", pass_context=True, lock="sweep_photos", queueing_lock="sweep_photos"
)
async def sweep_photos(context: JobContext, timestamp: int) -> int:
    """Defer a job for photos left pending without one; delete leftover originals."""
    found = resources(context)
    async with found.sessionmaker() as session:
        return await found.photos.sweep(session)


@queue.periodic(cron="* * * * *")
@queue.task(
    name="service_levels", pass_context=True, lock="service_levels", queueing_lock="service_levels"
)
async def service_levels(context: JobContext, timestamp: int) -> int:
    """Record service-level warnings and breaches; queue staff mail for breaches."""
    return await _in_transaction(context, service_level_job)


@queue.periodic(cron="*/15 * * * *")
@queue.task(
    name="refresh_priorities",
    pass_context=True,
    lock="refresh_priorities",
    queueing_lock="refresh_priorities",
)
async def refresh_priorities(context: JobContext, timestamp: int) -> int:
    """Keep computed priorities in step with reports, supporters and age."""
    return await _in_transaction(context, lambda s: priority.refresh(s, clock.now()))


@queue.periodic(cron="0 * * * *")
@queue.task(
    name="close_undisputed_fixes",
    pass_context=True,
    lock="close_undisputed_fixes",
    queueing_lock="close_undisputed_fixes",
)
async def close_fixes(context: JobContext, timestamp: int) -> int:
    """Close fixed tickets whose reopen window has passed."""
    return await _in_transaction(context, close_undisputed_fixes)


@queue.periodic(cron="*/10 * * * *")
@queue.task(
    name="purge_idempotency",
    pass_context=True,
    lock="purge_idempotency",
    queueing_lock="purge_idempotency",
)
async def purge_idempotency(context: JobContext, timestamp: int) -> int:
    """Forget idempotency keys past their expiry (kept at least 24 h)."""
    return await _in_transaction(context, purge_expired_idempotency_records)


async def purge_expired_idempotency_records(session: AsyncSession) -> int:
    result = await session.execute(
        text(
            "DELETE FROM idempotency_record WHERE ctid IN ("
            " SELECT ctid FROM idempotency_record WHERE expires_at < now() LIMIT 10000)"
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


@queue.periodic(cron="* * * * *")
@queue.task(
    name="sweep_notifications",
    queue="notify",
    pass_context=True,
    lock="sweep_notifications",
    queueing_lock="sweep_notifications",
)
async def sweep_notifications(context: JobContext, timestamp: int) -> int:
    """Deliver what is due even if its job was lost (a worker killed, the database away)."""
    found = resources(context)
    return await notify.deliver_due(found.sessionmaker, found.channels, found.settings)


@queue.periodic(cron="41 2 * * *")  # daily, at night (UTC)
@queue.task(
    name="drop_expired_personal_data",
    pass_context=True,
    lock="drop_expired_personal_data",
    queueing_lock="drop_expired_personal_data",
)
async def drop_personal_data(context: JobContext, timestamp: int) -> int:
    """Drop contacts, reporter names and consent evidence from tickets closed longer ago than
    the retention period (``app.privacy``); returns the number of tickets."""
    found = resources(context)
    dropped = await drop_expired_personal_data(
        found.sessionmaker,
        now=clock.now(),
        default_days=found.settings.privacy_contact_retention_days,
        batch=found.settings.privacy_batch_size,
    )
    return dropped.tickets


@queue.periodic(cron="53 2 * * *")  # daily, at night (UTC)
@queue.task(
    name="prune_talk_signals",
    pass_context=True,
    lock="prune_talk_signals",
    queueing_lock="prune_talk_signals",
)
async def prune_talk_signals(context: JobContext, timestamp: int) -> int:
    """Delete talk signals older than ``KERBSIDE_TALK_SIGNAL_RETENTION_DAYS`` (app/talk)."""
    found = resources(context)
    deleted = await talk_signals.prune_signals(
        found.sessionmaker, now=clock.now(), days=found.settings.talk_signal_retention_days
    )
    if deleted:
        log.info("talk signals pruned", extra={"deleted": deleted})
    return deleted


# -- the queue's own upkeep ---------------------------------------------------------------------


@queue.periodic(cron="* * * * *")
@queue.task(
    name="retry_stalled_jobs",
    pass_context=True,
    lock="retry_stalled_jobs",
    queueing_lock="retry_stalled_jobs",
)
async def retry_stalled_jobs(context: JobContext, timestamp: int) -> int:
    """Put back the running jobs of workers that stopped sending heartbeats (killed,
    lost their host): another worker runs them again."""
    after = resources(context).settings.worker_stalled_after_seconds
    manager = context.app.job_manager
    stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=after))
    for job in stalled:
        log.warning("retrying a stalled job", extra={"job_id": job.id, "task": job.task_name})
        await manager.retry_job(job)
    return len(stalled)


@queue.periodic(cron="17 3 * * *")
@queue.task(
    name="remove_finished_jobs",
    pass_context=True,
    lock="remove_finished_jobs",
    queueing_lock="remove_finished_jobs",
)
async def remove_finished_jobs(context: JobContext, timestamp: int) -> None:
    """Delete jobs that finished (or failed for good) over three days ago."""
    await context.app.job_manager.delete_old_jobs(
        nb_hours=KEEP_FINISHED_JOBS_HOURS, include_failed=True
    )


def periodic_task_names() -> list[str]:
    return sorted(p.task.name for p in queue.periodic_registry.periodic_tasks.values())
