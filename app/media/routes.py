"""Serving photos. URLs carry a random id: they say nothing about who reported or when.

A photo that is still being processed answers 503 with ``Retry-After`` (and is never cached);
one that could not be processed answers 410. Unprocessed uploads are never served.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import text

from app.auth.principal import CHECK_CREDENTIALS
from app.core.errors import NotFound
from app.db import SessionDep
from app.media.models import PhotoStatus
from app.media.service import PhotoFailed, PhotoPipeline, PhotoStillProcessing
from app.media.storage import PhotoNotFound

router = APIRouter(prefix="/v1/photos", tags=["photos"], dependencies=[CHECK_CREDENTIALS])

_PHOTO = text(
    "SELECT storage_key, thumbnail_key, content_type, sha256, status FROM photo"
    " WHERE public_id = :id AND public"
)
# Processing usually takes well under a second; a client polling this often is cheap.
RETRY_AFTER_SECONDS = 2


async def _serve(
    request: Request, session: SessionDep, photo_id: uuid.UUID, thumbnail: bool
) -> Response:
    row = (await session.execute(_PHOTO, {"id": photo_id})).first()
    if row is None:
        raise NotFound(f"No photo {photo_id}")
    if row.status == PhotoStatus.pending:
        raise PhotoStillProcessing(
            f"Photo {photo_id} was accepted and is still being processed; try again shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
        )
    if row.status == PhotoStatus.failed:
        raise PhotoFailed(f"Photo {photo_id} could not be processed, so it is not available")
    pipeline: PhotoPipeline = request.app.state.photos
    key = row.thumbnail_key if thumbnail else row.storage_key
    direct = pipeline.storage.url(key)
    if direct:
        return RedirectResponse(direct, status_code=302)
    etag = f'"{row.sha256[:32]}{"-t" if thumbnail else ""}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    try:
        data = await pipeline.storage.get(key)
    except PhotoNotFound:
        raise NotFound(f"Photo {photo_id} is missing from storage") from None
    return Response(data, media_type=row.content_type, headers=headers)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}}},
    404: {"description": "No such photo", "content": {"application/problem+json": {}}},
    410: {
        "description": "The photo could not be processed (status failed)",
        "content": {"application/problem+json": {}},
    },
    503: {
        "description": "The photo is still being processed (status pending); see Retry-After",
        "content": {"application/problem+json": {}},
    },
}


@router.get(
    "/{photo_id}.jpg",
    summary="A report photo (metadata stripped, long edge capped)",
    response_class=Response,
    responses=_RESPONSES,
)
async def photo(photo_id: uuid.UUID, request: Request, session: SessionDep) -> Response:
    return await _serve(request, session, photo_id, thumbnail=False)


@router.get(
    "/{photo_id}/thumbnail.jpg",
    summary="A report photo's thumbnail",
    response_class=Response,
    responses=_RESPONSES,
)
async def thumbnail(photo_id: uuid.UUID, request: Request, session: SessionDep) -> Response:
    return await _serve(request, session, photo_id, thumbnail=True)
