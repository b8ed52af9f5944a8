"""Links to photos in answers: the URLs of a photo and its thumbnail, and a report's photos."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.media.schemas import PhotoRef

_OF_REPORTS = text(
    "SELECT report_id, public_id, width, height, status FROM photo"
    " WHERE report_id = ANY(:ids) AND public ORDER BY id"
)


def photo_ref(
    base_url: str,
    public_id: uuid.UUID,
    width: int,
    height: int,
    *,
    status: Literal["pending", "ready", "failed"] = "ready",
) -> PhotoRef:
    return PhotoRef(
        id=public_id,
        url=f"{base_url}/v1/photos/{public_id}.jpg",
        thumbnail_url=f"{base_url}/v1/photos/{public_id}/thumbnail.jpg",
        width=width,
        height=height,
        status=status,
    )


async def photos_of_reports(
    session: AsyncSession, report_ids: list[int], base_url: str
) -> dict[int, list[PhotoRef]]:
    """The public photos of each report, in upload order."""
    photos: dict[int, list[PhotoRef]] = defaultdict(list)
    if not report_ids:
        return photos
    for row in await session.execute(_OF_REPORTS, {"ids": report_ids}):
        photos[row.report_id].append(
            photo_ref(base_url, row.public_id, row.width, row.height, status=row.status)
        )
    return photos
