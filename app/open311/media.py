"""Photos an Open311 client names by ``media_url`` (a link to its own server) instead of
uploading them.

The request is filed at once; the links are kept (``open311_media``) and fetched by the
``fetch_open311_media`` job deferred in the filing transaction, so a slow or failing photo
server never holds up or loses the report (the social posts' photos work the same way,
``app.social.photos``). Each download goes through ``app.channels.media.download`` (bounded
in bytes and time, every redirect checked again) over a client that connects to public
addresses only (``app.channels.webhook``'s guard: no private, link-local or loopback target,
loopback only with ``KERBSIDE_MEDIA_URL_ALLOW_LOOPBACK`` outside production), then through
the upload checks of the photo pipeline. A download that may succeed later (a timeout, a
5xx, a 429) makes the job try again; on the last try, or for a refusal that will not change,
why is recorded on the row and on the ticket's timeline (internal), and the photos that
could be had are attached.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels import transport
from app.channels.media import MediaHosts, MediaUnavailable, download
from app.channels.webhook import TargetRefused, guarded_transport
from app.core import clock
from app.core.errors import KerbsideError
from app.core.jobs import FETCH_OPEN311_MEDIA, FETCH_OPEN311_UPDATE_MEDIA, defer
from app.media.service import AcceptedPhoto, PhotoPipeline
from app.open311 import repository as sql
from app.open311.models import MediaState
from app.open311.params import Params, invalid
from app.reports.service import attach_photos, attach_ticket_photos
from app.settings import Settings
from app.tickets.events import add_event
from app.tickets.models import EventKind

log = logging.getLogger("kerbside.open311")

MAX_URL = 2000
ACTOR = "open311:media_url"


class MediaLater(Exception):
    """A download may succeed later: the job is tried again (nothing was attached)."""


def urls_of(params: Params, *, limit: int) -> list[str]:
    """The ``media_url`` values of a POST (FixMyStreet repeats the key), checked as links:
    http or https, a host, no credentials; at most ``limit``."""
    urls = list(dict.fromkeys(u.strip() for u in params.all("media_url")))
    if len(urls) > limit:
        raise invalid("media_url", f"at most {limit} photos a request")
    for url in urls:
        if len(url) > MAX_URL:
            raise invalid("media_url", f"at most {MAX_URL} characters")
        try:
            parts = urlsplit(url)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or not port_ok
        ):
            raise invalid("media_url", f"an http or https link to a photo, not {url[:100]!r}")
    return urls


async def ask_for(session: AsyncSession, report_id: int, urls: Sequence[str]) -> None:
    """Fetch these photos into the report after the commit (in the filing transaction)."""
    await session.execute(sql.INSERT_MEDIA, {"report_id": report_id, "urls": list(urls)})
    await defer(
        session,
        FETCH_OPEN311_MEDIA,
        {"report_id": report_id},
        queue="photos",
        lock=f"open311-media:{report_id}",
    )


async def ask_for_update(
    session: AsyncSession, event_id: int, ticket_id: int, urls: Sequence[str]
) -> None:
    """Fetch a pushed update's photos onto its ticket after the commit (in the update's
    transaction)."""
    await session.execute(
        sql.INSERT_UPDATE_MEDIA, {"event_id": event_id, "ticket_id": ticket_id, "urls": list(urls)}
    )
    await defer(
        session,
        FETCH_OPEN311_UPDATE_MEDIA,
        {"event_id": event_id},
        queue="photos",
        lock=f"open311-update-media:{event_id}",
    )


async def fetch_request_media(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    photos: PhotoPipeline,
    report_id: int,
    *,
    last_try: bool,
) -> str:
    """Fetch a filed request's ``media_url`` photos into its report (the job); says what
    became of them. Raises ``MediaLater`` when a download may succeed later and this is not
    the last try."""
    async with sessionmaker() as session:
        row = (await session.execute(sql.MEDIA_TO_FETCH, {"report_id": report_id})).first()
    if row is None:
        return "nothing to fetch"
    accepted, failures = await _fetch(settings, photos, row.urls, last_try=last_try)

    async def attach(session: AsyncSession, failure: str | None) -> None:
        await attach_photos(session, report_id, accepted, actor_label=ACTOR)
        if failure is not None:
            await add_event(
                session,
                int(row.ticket_id),
                EventKind.comment,
                at=clock.now(),
                public=False,
                actor_label=ACTOR,
                report_id=report_id,
                note=f"Photos named by media_url that could not be fetched: {failure}",
                data={"media_url_failed": len(failures)},
            )

    return await _keep(
        sessionmaker,
        photos,
        accepted,
        failures,
        done=(sql.MEDIA_DONE, {"report_id": report_id}),
        attach=attach,
    )


async def fetch_update_media(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    photos: PhotoPipeline,
    event_id: int,
    *,
    last_try: bool,
) -> str:
    """Fetch the photos a pushed update named (``POST servicerequestupdates``'s
    ``media_url``) onto its ticket as ``update`` photos (the job); says what became of them.
    As a request's: ``MediaLater`` while a download may succeed later, the failures noted
    on the timeline (internal), never attached twice."""
    async with sessionmaker() as session:
        row = (await session.execute(sql.UPDATE_MEDIA_TO_FETCH, {"event_id": event_id})).first()
    if row is None:
        return "nothing to fetch"
    accepted, failures = await _fetch(settings, photos, row.urls, last_try=last_try)

    async def attach(session: AsyncSession, failure: str | None) -> None:
        await attach_ticket_photos(session, int(row.ticket_id), accepted, kind="update")
        await add_event(
            session,
            int(row.ticket_id),
            EventKind.photo_added if accepted else EventKind.comment,
            at=clock.now(),
            public=False,
            actor_label=ACTOR,
            note=f"Photos named by media_url that could not be fetched: {failure}"
            if failure is not None
            else None,
            data={"photos": len(accepted), "open311_update_event": event_id}
            | ({"media_url_failed": len(failures)} if failures else {}),
        )

    return await _keep(
        sessionmaker,
        photos,
        accepted,
        failures,
        done=(sql.UPDATE_MEDIA_DONE, {"event_id": event_id}),
        attach=attach,
    )


async def _keep(
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
    accepted: list[AcceptedPhoto],
    failures: list[str],
    *,
    done: tuple[TextClause, dict[str, Any]],
    attach: Callable[[AsyncSession, str | None], Awaitable[None]],
) -> str:
    """Finish a fetch in one transaction: its row marked done (only a pending one, so two
    tries never attach twice) and the photos attached (``attach``); the photos' files are
    discarded when that does not commit. Says the row's new state."""
    state = MediaState.fetched if accepted or not failures else MediaState.failed
    failure = "; ".join(failures)[:2000] or None
    statement, key = done
    try:
        async with sessionmaker() as session, session.begin():
            finished = (
                await session.execute(statement, key | {"state": state.value, "failure": failure})
            ).scalar_one_or_none()
            if finished is None:  # another try finished first
                await photos.discard(accepted)
                return "taken"
            await attach(session, failure)
    except BaseException:
        await photos.discard(accepted)
        raise
    if failures:
        log.info(
            "media_url photos could not be fetched",
            extra={**key, "failed": len(failures), "attached": len(accepted)},
        )
    return state.value


async def _fetch(
    settings: Settings, photos: PhotoPipeline, urls: Sequence[str], *, last_try: bool
) -> tuple[list[AcceptedPhoto], list[str]]:
    """Download ``urls`` (public addresses only, bounded) and accept each through the upload
    checks; the photos accepted, and why each other one could not be had. Raises
    ``MediaLater`` when a download may succeed later and this is not the last try (nothing
    is kept then)."""
    failures: list[str] = []
    contents: list[tuple[int, bytes]] = []
    client = transport.client(
        settings, guarded_transport(allow_loopback=settings.media_url_allow_loopback)
    )
    try:
        for number, url in enumerate(urls, 1):
            try:
                media = await download(
                    client,
                    url,
                    MediaHosts.any_public(),
                    max_bytes=settings.max_photo_bytes,
                    deadline=settings.media_url_timeout_seconds,
                )
                contents.append((number, media.content))
            except TargetRefused as refused:  # the first host, or one a redirect named
                failures.append(f"photo {number}: its host is a {refused.why} address")
            except MediaUnavailable as error:
                if error.retry and not last_try:
                    raise MediaLater(f"photo {number}: {error}") from None
                failures.append(f"photo {number}: {error}")
    finally:
        await client.aclose()
    accepted: list[AcceptedPhoto] = []
    for number, content in contents:
        try:
            uploads = await photos.accept([content])
            try:
                await uploads.written()
            except BaseException:
                await uploads.discard()
                raise
            accepted.extend(uploads.photos)
        except KerbsideError as error:  # not a photo, too large, a polyglot: as an upload
            failures.append(f"photo {number}: {error}")
    return accepted, failures
