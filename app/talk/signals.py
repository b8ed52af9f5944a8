"""Signals: every report and post, read once as talk (where, when, which service, language,
mood, terms). Reports are copied by the ``talk`` job; posts are recorded by the social
pipeline with ``record_signal``, in its own transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.talk import repository as sql
from app.talk.models import Source
from app.talk.words import read_text

COPY_BATCH = 2000  # reports per statement round
COPY_MARGIN = 10_000  # ids looked back: reports commit out of id order


async def record_signal(
    session: AsyncSession,
    *,
    jurisdiction_id: int,
    source: str,
    service_code: str | None,
    point: tuple[float, float] | None,
    text: str | None,
    sentiment: float | None,
    at: datetime,
    ticket_id: int | None = None,
    post_id: int | None = None,
    language: str | None = None,
) -> int | None:
    """Record one social post as talk; returns the signal's id (None when ``post_id`` was
    recorded before: a retry is harmless).

    ``source`` is the platform (``x``, ``mastodon``, ...), ``point`` (lon, lat) where the
    post is about if known, ``sentiment`` and ``language`` the classifier's when it ran (else
    they are read here), ``ticket_id`` the ticket the post filed or joined. A located post
    takes part in spike detection with the reports of its service.
    """
    languages = (await session.execute(sql.LANGUAGES, {"j": jurisdiction_id})).scalar_one()
    reading = read_text(text, languages or ())
    service_id = None
    if service_code is not None:
        service_id = (
            await session.execute(sql.SERVICE_ID, {"j": jurisdiction_id, "code": service_code})
        ).scalar_one_or_none()
    row = {
        "jurisdiction_id": jurisdiction_id,
        "source": Source.post.value,
        "report_id": None,
        "post_id": post_id,
        "ticket_id": ticket_id,
        "service_id": service_id,
        "channel": source[:32],
        "area_id": None,
        "lon": point[0] if point else None,
        "lat": point[1] if point else None,
        "at": at,
        "language": (language or reading.language)[:8],
        "sentiment": sentiment if sentiment is not None else reading.sentiment,
        "terms": list(reading.terms),
    }
    found = (await session.execute(sql.INSERT_SIGNAL, row)).scalar_one_or_none()
    return int(found) if found is not None else None


def _report_signal(row: Any) -> dict[str, Any]:
    reading = read_text(row.description, row.languages or ())
    return {
        "jurisdiction_id": row.jurisdiction_id,
        "source": Source.report.value,
        "report_id": row.id,
        "post_id": None,
        "ticket_id": row.ticket_id,
        "service_id": row.service_id,
        "channel": row.channel,
        "area_id": row.area_id,
        "lon": row.lon,
        "lat": row.lat,
        "at": row.received_at,
        "language": reading.language,
        "sentiment": reading.sentiment,
        "terms": list(reading.terms),
    }


async def copy_reports(session: AsyncSession, *, limit: int = 20_000) -> int:
    """Copy the reports filed since the last copy into signals (at most ``limit``)."""
    after = int(
        (await session.execute(sql.RESUME_AFTER, {"margin": COPY_MARGIN})).scalar_one() or 0
    )
    copied = 0
    while copied < limit:
        rows: Sequence[Any] = (
            await session.execute(sql.NEW_REPORTS, {"after": after, "batch": COPY_BATCH})
        ).all()
        if not rows:
            break
        await session.execute(sql.INSERT_SIGNALS, [_report_signal(r) for r in rows])
        copied += len(rows)
        after = rows[-1].id
        if len(rows) < COPY_BATCH:
            break
    return copied
