"""Polling the city's accounts (the periodic job) and processing pushed posts (webhooks).

Each account is fetched from its cursor by its platform's ``MentionSource``; the posts are
kept and processed in one transaction with the cursor's move, and the cursor moves only when
every page came in (a 429 or an error half-way keeps it: the next run asks again, and the
posts already kept are not kept twice). A rate-limited account waits for its reset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels.pollers import BlueskySource, MastodonSource
from app.channels.sources import AccountRef, MentionSource
from app.channels.x import XSource
from app.core import clock
from app.geocoding.service import HttpGeocoder
from app.media.service import PhotoPipeline
from app.settings import Settings
from app.social import config as social_config
from app.social import repository as sql
from app.social import service
from app.social.config import AccountOf
from app.social.service import Counts, Pipeline, process, receive

log = logging.getLogger("kerbside.social")

BATCH = 100  # posts per transaction

# The platforms whose mentions we poll, by name; each makes its source from the settings.
SOURCES: Mapping[str, Callable[[Settings], MentionSource]] = {
    "x": XSource,
    "mastodon": MastodonSource,
    "bluesky": BlueskySource,
}


@dataclass
class Polled:
    accounts: int = 0
    skipped: int = 0  # rate limited, or not to be polled
    posts: int = 0
    stored: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage

    def add(self, counts: Counts) -> None:
        self.posts += counts.received
        self.stored += counts.stored
        for status, n in counts.outcomes.items():
            self.outcomes[status] = self.outcomes.get(status, 0) + n
        for stage, spent in counts.seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + spent


def account_ref(of: AccountOf) -> AccountRef:
    account = of.account
    return AccountRef(
        platform=account.platform,
        handle=account.handle,
        id=account.id,
        base_url=account.base_url,
        secrets={name: account.secret(name) for name in account.credentials},
    )


@asynccontextmanager
async def pipeline_for(settings: Settings) -> AsyncIterator[Pipeline]:
    """A pipeline with the configured geocoder, closed afterwards."""
    geocoder = HttpGeocoder(settings) if settings.geocoder_url else None
    try:
        yield Pipeline(settings, geocoder=geocoder)
    finally:
        if geocoder is not None:
            await geocoder.close()


async def poll_accounts(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    sources: Mapping[str, MentionSource] | None = None,
) -> Polled:
    """Fetch and process the mentions of every account to poll (one run of the job)."""
    owned = sources is None
    sources = sources if sources is not None else {p: make(settings) for p, make in SOURCES.items()}
    polled = Polled()
    try:
        async with sessionmaker() as session:
            known = await social_config.accounts(session)
        async with pipeline_for(settings) as pipeline:
            for of in known:
                source = sources.get(of.account.platform)
                if source is None or not of.account.poll:
                    polled.skipped += 1
                    continue
                await _poll_one(sessionmaker, pipeline, source, of, polled)
    finally:
        if owned:
            for source in sources.values():
                await source.close()
    return polled


async def _poll_one(
    sessionmaker: async_sessionmaker[AsyncSession],
    pipeline: Pipeline,
    source: MentionSource,
    of: AccountOf,
    polled: Polled,
) -> None:
    key = {"platform": of.account.platform, "account": of.account.key}
    async with sessionmaker() as session:
        cursor = (await session.execute(sql.CURSOR, key)).first()
    if cursor is not None and cursor.retry_at is not None and cursor.retry_at > clock.now():
        polled.skipped += 1
        return
    polled.accounts += 1
    started = time.perf_counter()
    fetched = await source.fetch(account_ref(of), cursor.since_id if cursor else None)
    polled.seconds["fetch"] = polled.seconds.get("fetch", 0.0) + time.perf_counter() - started
    # A transaction per batch: the intake's neighbourhood locks are held to the commit, and
    # a backlog of thousands in one transaction would hold them all.
    # Oldest first (sources give newest first): a reply finds the post it answers linked.
    posts = fetched.posts[::-1]
    for first in range(0, len(posts), BATCH):
        began = time.perf_counter()
        async with sessionmaker() as session, session.begin():
            counts = await receive(session, pipeline, posts[first : first + BATCH])
        await pipeline.close()  # photos of chats that ended, once their end is committed
        # The commit runs the event stream, which writes the acknowledgements' outbox rows.
        counts.seconds["commit"] = time.perf_counter() - began - sum(counts.seconds.values())
        polled.add(counts)
    async with sessionmaker() as session, session.begin():
        previous = (
            await session.execute(
                sql.MOVE_CURSOR,
                {
                    **key,
                    "since_id": fetched.cursor if fetched.complete else None,
                    "retry_at": fetched.retry_at,
                    "error": fetched.error,
                },
            )
        ).scalar_one()
    where = {"platform": of.account.platform}
    if fetched.error:
        polled.errors.append(f"{of.account.platform}:{of.account.handle}: {fetched.error}")
        # A missing token or an unreachable platform lasts: said once when it starts or
        # changes (the cursor keeps it), then only at debug, not once a minute per worker.
        level = logging.DEBUG if fetched.error == previous else logging.WARNING
        log.log(level, "polling stopped early", extra={**where, "error": fetched.error})
    elif previous:
        log.info("polling works again", extra={**where, "after": previous})


async def process_posts(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, ids: Sequence[int]
) -> dict[str, Any]:
    """Run the pipeline over posts kept by a webhook (one transaction)."""
    counts = Counts()
    async with pipeline_for(settings) as pipeline:
        async with sessionmaker() as session, session.begin():
            for row_id in ids:
                counts.add(await process(session, pipeline, row_id, counts))
        await pipeline.close()  # photos of chats that ended, once their end is committed
    return counts.outcomes


async def end_silent_dialogues(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> int:
    """Close the reporting chats silent for ``KERBSIDE_SOCIAL_DIALOGUE_TIMEOUT_MINUTES`` (the
    periodic job), saying so while the messaging window is open."""
    silent_for = timedelta(minutes=settings.social_dialogue_timeout_minutes)
    async with sessionmaker() as session, session.begin():
        ended, discard = await service.end_silent_dialogues(session, settings, silent_for)
    if discard:
        await PhotoPipeline(settings).discard(discard)
    return ended
