"""Signals: every report and post, read once as talk (where, when, which service, language,
mood, terms). The ``talk`` job copies reports (``copy_reports``) and stored social posts
(``copy_posts``) by id; ``record_signal`` records one post directly (a seam for callers that
want it at once)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
        "reply": False,
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
        "reply": False,
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


def _post_signal(row: Any, *, merged: bool) -> dict[str, Any]:
    """A stored post as a signal. ``merged``: it takes its report's signal over."""
    reading = read_text(row.text, row.languages or ())
    # A post that joined a ticket without filing (a reply, the same conversation, a
    # reference) speaks of a problem whose reports are the spike's points already: it counts
    # for trends and mood, not as a point of its own.
    located = row.lon is not None and (merged or row.ticket_id is None)
    return {
        "jurisdiction_id": row.jurisdiction_id,
        "source": Source.post.value,
        "report_id": row.report_id if merged else None,
        "post_id": row.id,
        "ticket_id": row.ticket_id,
        "service_id": row.service_id,
        "channel": row.platform[:32],
        "area_id": row.area_id,
        "lon": row.lon if located else None,
        "lat": row.lat if located else None,
        "at": row.posted_at,
        "language": (row.language or reading.language)[:8],
        "sentiment": row.sentiment if row.sentiment is not None else reading.sentiment,
        "terms": list(reading.terms),
        "reply": row.link_rule == "reply",
    }


async def copy_posts(session: AsyncSession, *, limit: int = 20_000) -> int:
    """Copy the social posts processed since the last copy into signals (at most ``limit``).

    Run after ``copy_reports``. A post that filed a report becomes that report's signal
    (``MERGE_POST_SIGNAL``): one problem, one point, whichever arrived first. A second post
    of the same report (rare: a resumed conversation) is copied without a point.
    """
    after = int(
        (await session.execute(sql.RESUME_POSTS_AFTER, {"margin": COPY_MARGIN})).scalar_one() or 0
    )
    copied = 0
    while copied < limit:
        rows: Sequence[Any] = (
            await session.execute(sql.NEW_POSTS, {"after": after, "batch": COPY_BATCH})
        ).all()
        if not rows:
            break
        plain: list[dict[str, Any]] = []
        for row in rows:
            if row.report_id is not None:
                merged = await session.execute(
                    sql.MERGE_POST_SIGNAL, _post_signal(row, merged=True)
                )
                if merged.scalar_one_or_none() is not None:
                    continue
                plain.append({**_post_signal(row, merged=False), "lon": None, "lat": None})
            else:
                plain.append(_post_signal(row, merged=False))
        if plain:
            await session.execute(sql.INSERT_SIGNALS, plain)
        copied += len(rows)
        after = rows[-1].id
        if len(rows) < COPY_BATCH:
            break
    return copied


PRUNE_BATCH = 5000  # signals per transaction: short locks, a bounded WAL burst


async def prune_signals(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime, days: int
) -> int:
    """Delete the signals older than ``days`` (the nightly job), jurisdiction by jurisdiction
    and batch by batch, each batch committed; returns how many went. The copy cursors read
    the newest signals, so an old one deleted is never copied again."""
    cutoff = now - timedelta(days=days)
    async with sessionmaker() as session:
        jurisdictions = (
            (await session.execute(sql.JURISDICTIONS_WITH_SIGNALS, {"cutoff": cutoff}))
            .scalars()
            .all()
        )
    deleted = 0
    for jurisdiction_id in jurisdictions:
        while True:
            async with sessionmaker() as session, session.begin():
                result = await session.execute(
                    sql.PRUNE_SIGNALS,
                    {"jurisdiction_id": jurisdiction_id, "cutoff": cutoff, "batch": PRUNE_BATCH},
                )
            count = int(getattr(result, "rowcount", 0) or 0)
            deleted += count
            if count < PRUNE_BATCH:
                break
    return deleted
