"""Photos on the intake path: decode off the event loop, store, and clean up on failure."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio
from anyio import CapacityLimiter

from app.core.errors import InvalidInput, KerbsideError, PayloadTooLarge, UnsupportedMediaType
from app.media.processing import (
    GpsFix,
    PhotoRejected,
    PhotoTooLarge,
    ProcessedPhoto,
    TooManyPixels,
    UnsupportedFormat,
    process_photo,
)
from app.media.storage import PhotoStorage, make_storage, new_photo_keys
from app.settings import Settings

log = logging.getLogger("kerbside.media")


@dataclass(frozen=True)
class StoredPhoto:
    storage_key: str
    thumbnail_key: str
    content_type: str
    width: int
    height: int
    size: int
    sha256: str
    taken_at: datetime | None
    gps: GpsFix | None  # read before stripping; used only as the report's location


class PhotoPipeline:
    """Per-process photo processing: a bounded thread pool (Pillow releases the GIL) + storage."""

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
        self.limiter = CapacityLimiter(settings.photo_threads)

    async def process(self, uploads: Sequence[bytes]) -> list[ProcessedPhoto]:
        """Decode, orient, strip and resize each upload; the first bad one rejects them all."""
        processed = []
        for index, data in enumerate(uploads):
            try:
                processed.append(
                    await anyio.to_thread.run_sync(self._process_one, data, limiter=self.limiter)
                )
            except PhotoRejected as exc:
                raise rejected(index, exc) from None
        return processed

    def _process_one(self, data: bytes) -> ProcessedPhoto:
        return process_photo(
            data,
            max_edge=self.settings.photo_max_edge,
            max_pixels=self.settings.max_photo_pixels,
            max_bytes=self.settings.max_photo_bytes,
        )

    async def store(self, photos: Sequence[ProcessedPhoto]) -> list[StoredPhoto]:
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

    async def discard(self, stored: Sequence[StoredPhoto]) -> None:
        """Remove files whose database rows were never committed."""
        for photo in stored:
            for key in (photo.storage_key, photo.thumbnail_key):
                try:
                    await self.storage.delete(key)
                except Exception:  # best effort; an orphan file is harmless, a 500 is not
                    log.warning("could not delete orphan photo", extra={"key": key})


def rejected(index: int, exc: PhotoRejected) -> KerbsideError:
    field = f"photos[{index}]"
    errors = [{"field": field, "message": exc.reason, "type": exc.code}]
    if isinstance(exc, PhotoTooLarge | TooManyPixels):
        return PayloadTooLarge(f"Photo {index + 1}: {exc.reason}", errors=errors)
    if isinstance(exc, UnsupportedFormat):
        return UnsupportedMediaType(f"Photo {index + 1}: {exc.reason}", errors=errors)
    return InvalidInput(f"Photo {index + 1}: {exc.reason}", errors=errors)
