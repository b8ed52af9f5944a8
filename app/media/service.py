"""Photos: accepted in the request, processed after it.

The request only checks each upload without decoding it (``check_photo``: limits, format,
header, structure, EXIF GPS), keeps it privately under ``originals/`` and inserts the photo
row as ``pending`` in the report's transaction; inserting it defers the photo's
``process_photo`` job in that transaction too (a trigger, migration 0008). ``kerbside
worker`` runs the job: it decodes, strips and resizes in a few lower-priority threads
(``process_one``), and procrastinate retries it after storage trouble or a killed worker.
``sweep``, a periodic job, defers a job again for any photo left pending without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import (
    Gone,
    InvalidInput,
    KerbsideError,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from app.media import repository as sql
from app.media.processing import (
    STORED_CONTENT_TYPE,
    CheckedPhoto,
    GpsFix,
    PhotoRejected,
    PhotoTooLarge,
    ProcessedPhoto,
    TooManyPixels,
    UnsupportedFormat,
    check_photo,
    process_photo,
)
from app.media.storage import (
    PhotoNotFound,
    PhotoStorage,
    make_storage,
    new_original_key,
    new_photo_keys,
)
from app.settings import Settings

log = logging.getLogger("kerbside.media")

# Photos left pending without a job that one sweep defers again.
SWEEP_BATCH = 1000
# Leftover originals deleted per sweep (see app.media.repository.LEFTOVER_ORIGINALS).
LEFTOVER_BATCH = 100
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}


@dataclass(frozen=True)
class AcceptedPhoto:
    """An accepted upload, kept privately until it is processed, and what its header said."""

    storage_key: str  # where the stripped image will be
    thumbnail_key: str
    original_key: str  # the upload as received (private)
    content_type: str  # of the stored image
    width: int  # of the stored image (upright, long edge capped), known before decoding
    height: int
    taken_at: datetime | None
    gps: GpsFix | None  # read from the upload's EXIF; used only as the report's location


@dataclass(frozen=True)
class StoredPhoto:
    """A photo processed while the request waited (``process`` then ``store``), files written."""

    storage_key: str
    thumbnail_key: str
    content_type: str
    width: int
    height: int
    size: int
    sha256: str
    taken_at: datetime | None
    gps: GpsFix | None  # read before stripping


class AcceptedUploads:
    """Photos accepted in a request, whose originals are being written to storage."""

    def __init__(
        self, photos: list[AcceptedPhoto], writing: asyncio.Task[None], pipeline: PhotoPipeline
    ) -> None:
        self.photos = photos
        self._writing = writing
        self._pipeline = pipeline

    async def written(self) -> None:
        """Wait until every original is stored; raises if storing one failed."""
        await asyncio.shield(self._writing)

    async def discard(self) -> None:
        """Remove the originals (once written) of photos whose rows were never committed."""
        await asyncio.wait([self._writing])
        if not self._writing.cancelled():
            self._writing.exception()  # retrieved, so asyncio does not log it as lost
        await self._pipeline.discard(self.photos)


class PhotoBacklogFull(ServiceUnavailable):
    slug, title = "photo-backlog-full", "Too many photos waiting to be processed"


# Counts at most limit + 1 rows of the partial index ix_photo_pending: cheap however long the
# backlog is.
_PENDING = text(
    "SELECT count(*) FROM (SELECT 1 FROM photo WHERE status = 'pending' LIMIT :limit) AS p"
)


async def ensure_photo_backlog_below(session: AsyncSession, limit: int) -> None:
    """503 (with Retry-After) before accepting more photos while ``limit`` are still waiting.

    Accepted photos keep their originals in storage until processed; under sustained overload
    the backlog (and the disk it uses) would otherwise grow without bound. Refusing before
    anything is stored keeps "accepted means kept" true; the app retries later. 0: no limit.
    """
    if limit <= 0:
        return
    waiting = (await session.execute(_PENDING, {"limit": limit + 1})).scalar_one()
    if waiting >= limit:
        raise PhotoBacklogFull(
            f"{waiting:,} photos are waiting to be processed; send this report again in a"
            " minute (a report without photos is accepted now)",
            headers={"Retry-After": "60"},
        )


class PhotoStillProcessing(ServiceUnavailable):
    slug, title = "photo-processing", "Photo still processing"


class PhotoFailed(Gone):
    slug, title = "photo-failed", "Photo could not be processed"


class PhotoPipeline:
    """Per-process photo handling: checks and private storage for the request, and the
    processing of pending photos (the worker's jobs)."""

    def __init__(self, settings: Settings, storage: PhotoStorage | None = None) -> None:
        self.settings = settings
        self.storage = storage or make_storage(
            settings.photo_storage,
            local_root=settings.media_dir,
            s3_bucket=settings.photo_s3_bucket,
            s3_endpoint_url=settings.photo_s3_endpoint_url,
            s3_region=settings.photo_s3_region,
            public_base_url=settings.photo_public_base_url,
        )
        self._decoder: ThreadPoolExecutor | None = None

    # -- in the request ------------------------------------------------------------------------

    async def accept(self, uploads: Sequence[bytes]) -> AcceptedUploads:
        """Check every upload without decoding it, then start keeping them privately.

        The first bad upload rejects them all (a ``KerbsideError`` naming ``photos[i]``), and
        then nothing is stored. The originals are written while the caller files the report:
        it must await ``written()`` before its transaction commits, and ``discard()`` if the
        transaction does not.
        """
        checked = []
        for index, data in enumerate(uploads):
            try:
                # A JPEG's check reads its header and looks at its last bytes: a fraction of a
                # millisecond, less than a hop to a thread. A PNG's checksums each byte.
                if data.startswith(b"\xff\xd8"):
                    checked.append(self._check_one(data))
                else:
                    checked.append(await anyio.to_thread.run_sync(self._check_one, data))
            except PhotoRejected as exc:
                raise rejected(index, exc) from None
        photos = []
        for photo in checked:
            key, thumb_key = new_photo_keys()
            photos.append(
                AcceptedPhoto(
                    storage_key=key,
                    thumbnail_key=thumb_key,
                    original_key=new_original_key(_EXTENSIONS[photo.original_format]),
                    content_type=STORED_CONTENT_TYPE,
                    width=photo.width,
                    height=photo.height,
                    taken_at=photo.taken_at,
                    gps=photo.gps,
                )
            )
        writing = asyncio.create_task(self._keep_originals(uploads, photos))
        return AcceptedUploads(photos, writing, self)

    async def _keep_originals(
        self, uploads: Sequence[bytes], photos: Sequence[AcceptedPhoto]
    ) -> None:
        for data, photo in zip(uploads, photos, strict=True):
            await self.storage.put(photo.original_key, data, "application/octet-stream")

    def _check_one(self, data: bytes) -> CheckedPhoto:
        return check_photo(
            data,
            max_edge=self.settings.photo_max_edge,
            max_pixels=self.settings.max_photo_pixels,
            max_bytes=self.settings.max_photo_bytes,
        )

    async def discard(self, stored: Sequence[AcceptedPhoto | StoredPhoto]) -> None:
        """Remove the files of photos whose rows were never committed."""
        for photo in stored:
            if isinstance(photo, AcceptedPhoto):
                await self._delete_quietly(photo.original_key)
            else:
                await self._delete_quietly(photo.storage_key)
                await self._delete_quietly(photo.thumbnail_key)

    # -- processed while the request waits (few, small photos: crews' after-photos) ------------

    async def process(self, uploads: Sequence[bytes]) -> list[ProcessedPhoto]:
        """Decode, orient, strip and resize each upload; the first bad one rejects them all."""
        processed = []
        for index, data in enumerate(uploads):
            try:
                processed.append(await self.decode(data))
            except PhotoRejected as exc:
                raise rejected(index, exc) from None
        return processed

    async def store(self, photos: Sequence[ProcessedPhoto]) -> list[StoredPhoto]:
        """Write processed photos' files (``discard`` them if their rows are not committed)."""
        stored: list[StoredPhoto] = []
        try:
            for photo in photos:
                key, thumb_key = new_photo_keys()
                await self.storage.put(key, photo.image, photo.content_type)
                stored.append(
                    StoredPhoto(
                        storage_key=key,
                        thumbnail_key=thumb_key,
                        content_type=photo.content_type,
                        width=photo.width,
                        height=photo.height,
                        size=len(photo.image),
                        sha256=photo.sha256,
                        taken_at=photo.taken_at,
                        gps=photo.gps,
                    )
                )
                await self.storage.put(thumb_key, photo.thumbnail, photo.content_type)
        except BaseException:
            await self.discard(stored)
            raise
        return stored

    # -- processing (the worker's jobs) ---------------------------------------------------------

    async def process_one(self, session: AsyncSession, public_id: uuid.UUID) -> str | None:
        """Process the pending photo ``public_id`` (``process_photo``'s job).

        Returns the photo's new status, or None when it is no longer pending (done by an
        earlier try). Errors other than a bad upload (storage or database trouble) propagate
        and leave the photo pending, for the job's retry; a try that started counts towards
        ``photo_max_attempts`` (storage trouble excepted).
        """
        claim = (await session.execute(sql.CLAIM_PHOTO, {"public_id": public_id})).first()
        await session.commit()
        if claim is None:
            return None
        if claim.attempts > self.settings.photo_max_attempts:
            return await self._fail(
                session,
                claim,
                "gave_up",
                f"Processing was tried {self.settings.photo_max_attempts} times"
                " and never finished.",
            )
        try:
            original = await self.storage.get(claim.original_key)
        except PhotoNotFound:
            return await self._fail(
                session, claim, "original_missing", "The upload is missing from storage."
            )
        except Exception:
            await self._storage_trouble(session, claim)
            raise
        try:
            photo = await self.decode(original)
        except PhotoRejected as exc:
            return await self._fail(session, claim, exc.code, exc.reason)
        del original
        try:
            await self.storage.put(claim.storage_key, photo.image, claim.content_type)
            await self.storage.put(claim.thumbnail_key, photo.thumbnail, claim.content_type)
        except Exception:
            await self._storage_trouble(session, claim)
            raise
        done = (
            await session.execute(
                sql.MARK_READY,
                {
                    "id": claim.id,
                    "attempts": claim.attempts,
                    "width": photo.width,
                    "height": photo.height,
                    "bytes": len(photo.image),
                    "sha256": photo.sha256,
                },
            )
        ).first()
        await session.commit()
        if done is not None:
            await self._forget_original(session, claim.id, claim.original_key)
        return "ready"

    async def sweep(self, session: AsyncSession, limit: int = SWEEP_BATCH) -> int:
        """Defer a job for each photo left pending without one; delete leftover originals.

        Returns how many jobs were deferred (the periodic ``sweep_photos`` job).
        """
        deferred = int(
            (await session.execute(sql.DEFER_LEFT_PENDING, {"limit": limit})).scalar_one()
        )
        await session.commit()
        for row in (await session.execute(sql.LEFTOVER_ORIGINALS, {"limit": LEFTOVER_BATCH})).all():
            await self._forget_original(session, row.id, row.original_key)
        await session.commit()
        return deferred

    async def decode(self, data: bytes) -> ProcessedPhoto:
        """``process_photo`` in this process's bounded, lower-priority decoding threads."""
        if self._decoder is None:
            self._decoder = ThreadPoolExecutor(
                max_workers=self.settings.photo_threads,
                thread_name_prefix="photo-decode",
                initializer=_lower_priority,
                initargs=(self.settings.photo_decode_nice,),
            )
        job = functools.partial(
            process_photo,
            data,
            max_edge=self.settings.photo_max_edge,
            max_pixels=self.settings.max_photo_pixels,
            max_bytes=self.settings.max_photo_bytes,
        )
        return await asyncio.get_running_loop().run_in_executor(self._decoder, job)

    async def _storage_trouble(self, session: AsyncSession, claim: Any) -> None:
        # Not the photo's fault: this try does not count towards giving up, and the job's
        # retries (then the sweep) try again, so a storage outage does not fail photos.
        await session.rollback()
        await session.execute(sql.UNCOUNT_ATTEMPT, {"id": claim.id, "attempts": claim.attempts})
        await session.commit()

    async def _fail(self, session: AsyncSession, claim: Any, code: str, reason: str) -> str:
        log.warning(
            "photo failed", extra={"photo": str(claim.public_id), "reason": code, "detail": reason}
        )
        failed = (
            await session.execute(
                sql.MARK_FAILED,
                {
                    "id": claim.id,
                    "attempts": claim.attempts,
                    "code": code,
                    "failure": f"Photo {claim.public_id} could not be processed: {reason}",
                },
            )
        ).first()
        await session.commit()
        if failed is not None:
            await self._forget_original(session, claim.id, claim.original_key)
        return "failed"

    async def _forget_original(self, session: AsyncSession, photo_id: int, key: str) -> None:
        if await self._delete_quietly(key):
            await session.execute(sql.FORGET_ORIGINAL, {"id": photo_id})
            await session.commit()

    async def _delete_quietly(self, key: str) -> bool:
        try:
            await self.storage.delete(key)
        except Exception:  # best effort; a later sweep retries, a 500 would help nobody
            log.warning("could not delete a photo file", extra={"key": key})
            return False
        return True

    def close(self) -> None:
        """Stop the decoding threads (at the end of a lifespan or a worker)."""
        if self._decoder is not None:
            self._decoder.shutdown(wait=False, cancel_futures=True)
            self._decoder = None


def _lower_priority(nice: int) -> None:
    # On Linux the nice value belongs to each thread: only the decoding threads are lowered,
    # so the event loop (accepting uploads, answering reads) gets the CPU first.
    if nice <= 0:
        return
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


def rejected(index: int, exc: PhotoRejected) -> KerbsideError:
    field = f"photos[{index}]"
    errors = [{"field": field, "message": exc.reason, "type": exc.code}]
    if isinstance(exc, PhotoTooLarge | TooManyPixels):
        return PayloadTooLarge(f"Photo {index + 1}: {exc.reason}", errors=errors)
    if isinstance(exc, UnsupportedFormat):
        return UnsupportedMediaType(f"Photo {index + 1}: {exc.reason}", errors=errors)
    return InvalidInput(f"Photo {index + 1}: {exc.reason}", errors=errors)
