"""The photos of social posts, into the photo pipeline: a filed post's photos become its
report's photos, with the same checks as an app upload (format from the bytes, size and pixel
limits, polyglots and bombs refused; EXIF stripped when the photo is processed).

A post names its photos by URL (or, on WhatsApp, by media id). They are fetched after the
post is filed, by the ``fetch_post_photos`` job deferred in the filing transaction, so a
slow or failing platform never holds up or loses the report: a download that may succeed
later (a timeout, a 5xx, a 429) makes the job try again later, with nothing attached; on the
last try, or for a refusal that will not change (a 404, a host outside the platform's, not a
photo, too large), the post records why (``photos_state`` failed, ``photos_failure``) and
the photos that could be had are attached. Downloads go only to the platform's own hosts
(``app.channels.media``). A chat's photos (WhatsApp, Messenger) are fetched at once instead:
the reporting dialogue must know whether it has one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels import transport, whatsapp
from app.channels.media import Media, MediaHosts, MediaUnavailable, download
from app.core.errors import KerbsideError
from app.core.jobs import FETCH_POST_PHOTOS, defer
from app.media.service import AcceptedPhoto, PhotoPipeline
from app.reports.service import attach_photos
from app.settings import Settings
from app.social import config as social_config
from app.social import repository as sql
from app.social.config import AccountOf
from app.social.models import PhotosState

log = logging.getLogger("kerbside.social")


class PhotosLater(Exception):
    """A download may succeed later: the job is tried again (nothing was attached)."""


class PostMedia:
    """Fetches a post's media from its platform: URLs from the platform's hosts only,
    WhatsApp media ids through the Cloud API with the account's token."""

    def __init__(self, settings: Settings, of: AccountOf, platform: str) -> None:
        self.settings = settings
        self.hosts = MediaHosts.of(platform, [of.account.base_url], of.account.media_hosts)
        self._of = of
        self._client = transport.client(settings)
        self._whatsapp: whatsapp.WhatsAppMedia | None = None

    async def fetch(self, reference: str) -> Media:
        if whatsapp.media_id(reference):
            return await self._whatsapp_media().fetch(reference)
        return await download(
            self._client,
            reference,
            self.hosts,
            max_bytes=self.settings.max_photo_bytes,
            deadline=self.settings.social_photo_timeout_seconds,
        )

    def _whatsapp_media(self) -> whatsapp.WhatsAppMedia:
        token = self._of.account.secret("access_token")
        if not token:
            raise MediaUnavailable("the account's access token is not set", retry=True)
        if self._whatsapp is None:
            account = whatsapp.WhatsAppAccount(
                phone_number_id=self._of.account.key,
                access_token=token,
                base_url=self._of.account.base_url or whatsapp.GRAPH_URL,
            )
            self._whatsapp = whatsapp.WhatsAppMedia(account, self.settings, http=self._client)
        return self._whatsapp

    async def close(self) -> None:
        await self._client.aclose()


async def accept_one(photos: PhotoPipeline, content: bytes) -> list[AcceptedPhoto]:
    """One photo through the upload checks, its original kept (``KerbsideError``: refused)."""
    uploads = await photos.accept([content])
    try:
        await uploads.written()
    except BaseException:
        await uploads.discard()
        raise
    return uploads.photos


async def chat_photos(
    photos: PhotoPipeline, settings: Settings, references: Sequence[str], of: AccountOf
) -> tuple[list[AcceptedPhoto], list[str]]:
    """A chat message's photos, fetched now; those that cannot be had are left out (why)."""
    accepted: list[AcceptedPhoto] = []
    left_out: list[str] = []
    media = PostMedia(settings, of, of.account.platform)
    try:
        for number, reference in enumerate(references, 1):
            try:
                accepted.extend(await accept_one(photos, (await media.fetch(reference)).content))
            except (MediaUnavailable, KerbsideError) as error:
                left_out.append(f"photo {number}: {error}")
    finally:
        await media.close()
    return accepted, left_out


async def ask_for(session: AsyncSession, post_row_id: int) -> None:
    """The filed post has photos: fetch them after the commit (in the filing transaction)."""
    await session.execute(sql.PHOTOS_PENDING, {"id": post_row_id})
    await defer(
        session,
        FETCH_POST_PHOTOS,
        {"post_id": post_row_id},
        queue="social",
        lock=f"post-photos:{post_row_id}",
    )


async def fetch_post_photos(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    photos: PhotoPipeline,
    post_id: int,
    *,
    last_try: bool,
) -> str:
    """Fetch a filed post's photos into its report (the job); says what became of them.

    Raises ``PhotosLater`` when a download may succeed later and this is not the last try.
    """
    async with sessionmaker() as session:
        row = (await session.execute(sql.PHOTOS_TO_FETCH, {"id": post_id})).first()
        known = await social_config.accounts(session) if row is not None else []
    if row is None:
        return "nothing to fetch"
    of = social_config.find(known, row.platform, row.account)
    references = [str(u) for u in row.media or []]
    references = references[: settings.max_photos_per_report]
    failures: list[str] = []
    contents: list[tuple[int, bytes]] = []
    if of is None:
        failures.append("the account is no longer in the city file")
    else:
        media = PostMedia(settings, of, row.platform)
        try:
            for number, reference in enumerate(references, 1):
                try:
                    contents.append((number, (await media.fetch(reference)).content))
                except MediaUnavailable as error:
                    if error.retry and not last_try:
                        raise PhotosLater(f"photo {number}: {error}") from None
                    failures.append(f"photo {number}: {error}")
        finally:
            await media.close()
    accepted: list[AcceptedPhoto] = []
    for number, content in contents:
        try:
            accepted.extend(await accept_one(photos, content))
        except KerbsideError as error:  # not a photo, too large, a polyglot: as an upload
            failures.append(f"photo {number}: {error}")
    state = PhotosState.fetched if accepted or not failures else PhotosState.failed
    try:
        async with sessionmaker() as session, session.begin():
            report_id = (
                await session.execute(
                    sql.PHOTOS_DONE,
                    {
                        "id": post_id,
                        "state": state.value,
                        "failure": "; ".join(failures)[:2000] or None,
                    },
                )
            ).scalar_one_or_none()
            if report_id is None:  # another try finished first
                await photos.discard(accepted)
                return "taken"
            await attach_photos(
                session, int(report_id), accepted, actor_label=f"social:{row.platform}"
            )
    except BaseException:
        await photos.discard(accepted)
        raise
    if failures:
        log.info(
            "photos of a post could not be fetched",
            extra={"post": post_id, "failed": len(failures), "attached": len(accepted)},
        )
    return state.value
