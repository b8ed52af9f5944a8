"""Retention: personal data is dropped from tickets closed long enough ago.

A ticket closed more than ``retention_days`` ago (the city file's
``privacy.contact_retention_days``, else ``KERBSIDE_PRIVACY_CONTACT_RETENTION_DAYS``) loses
what ties it to people: its reports' links to contacts and reporter names, its followers' and
supporters' contact subscriptions, the consent evidence given for it, its outbox rows, and the
contacts nothing else uses any more. The ticket, its reports (place, description, photos
without EXIF) and its public timeline stay: they are the city's record and open data.

Idempotent (a ticket is marked when done, and is due again only if closed again later),
batched (one transaction per batch, so a run can stop anywhere), and safe to run from two
places at once (due tickets are locked with SKIP LOCKED). Logged with counts only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.privacy import repository as sql

log = logging.getLogger("kerbside.privacy")


@dataclass
class Dropped:
    """What one run (or batch) dropped: counts, never the data itself."""

    tickets: int = 0
    reporter_names: int = 0
    report_contacts: int = 0
    subscriptions: int = 0
    consents: int = 0
    notifications: int = 0
    contacts: int = 0

    def add(self, other: Dropped) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def count_due(session: AsyncSession, *, now: datetime, default_days: int) -> int:
    """How many closed tickets still hold personal data past their retention."""
    found = await session.execute(sql.COUNT_DUE, {"now": now, "default_days": default_days})
    return int(found.scalar_one())


async def drop_batch(
    session: AsyncSession, *, now: datetime, default_days: int, batch: int
) -> Dropped:
    """Drop the personal data of up to ``batch`` due tickets, in the caller's transaction."""
    params = {"now": now, "default_days": default_days, "batch": batch}
    ids = [row.id for row in await session.execute(sql.DUE, params)]
    if not ids:
        return Dropped()
    on = {"ids": ids}
    contacts = [row.contact_id for row in await session.execute(sql.CONTACTS_OF, on)]
    dropped = Dropped(tickets=len(ids))
    dropped.report_contacts = _count(await session.execute(sql.UNLINK_REPORT_CONTACTS, on))
    dropped.reporter_names = _count(await session.execute(sql.CLEAR_REPORTER_NAMES, on))
    dropped.subscriptions = _count(await session.execute(sql.DROP_SUBSCRIPTIONS, on))
    dropped.consents = _count(await session.execute(sql.DROP_CONSENTS, on))
    dropped.notifications = _count(await session.execute(sql.DROP_NOTIFICATIONS, on))
    if contacts:
        dropped.contacts = _count(
            await session.execute(sql.DROP_ORPHAN_CONTACTS, {"contacts": contacts})
        )
    await session.execute(sql.MARK_DROPPED, {**on, "now": now})
    return dropped


async def drop_expired_personal_data(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    default_days: int,
    batch: int,
    progress: Callable[[int, int], None] | None = None,
) -> Dropped:
    """Every due ticket, one committed transaction per batch; ``progress(done, total)``."""
    total = 0
    if progress is not None:
        async with sessionmaker() as session:
            total = await count_due(session, now=now, default_days=default_days)
        progress(0, total)
    dropped = Dropped()
    while True:
        async with sessionmaker() as session, session.begin():
            step = await drop_batch(session, now=now, default_days=default_days, batch=batch)
        if not step.tickets:
            break
        dropped.add(step)
        if progress is not None:
            progress(dropped.tickets, max(total, dropped.tickets))
    log.info("personal data dropped from closed tickets", extra=asdict(dropped))
    return dropped
