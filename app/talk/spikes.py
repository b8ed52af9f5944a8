"""Spikes: N signals of one service within R metres in T minutes, beyond what that place and
hour of the week usually see. Each becomes an alert for staff with the signals behind it (and
their tickets), the area, and a suggested broadcast polygon; an alert grows while the burst
goes on and closes by itself a window after it ends.

The ``talk`` job runs ``tick`` every 15 seconds: copy new reports into signals, find
bursts, grow and open alerts, close quiet ones. Nothing runs on the intake path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import clock
from app.core.jobs import DELIVER_NOTIFICATIONS, SEND_MAIL, defer
from app.settings import Settings
from app.talk import repository as sql
from app.talk.signals import copy_posts, copy_reports


@dataclass(frozen=True)
class SpikeRule:
    """When a burst is a spike; a jurisdiction's ``talk`` settings override the defaults."""

    min_signals: int = 10  # N: never fewer than this, however quiet the place
    radius_m: float = 200.0  # R
    window_minutes: int = 30  # T; also how long a quiet alert stays open
    baseline_weeks: int = 8  # history: the same stretch of the week over these weeks
    slack_minutes: int = 30  # the stretch is the window widened by this, each side
    factor: float = 2.0  # a spike is at least factor times the usual count ...
    z: float = 3.0  # ... plus z Poisson deviations of it

    @classmethod
    def of(cls, given: Mapping[str, Any] | None) -> SpikeRule:
        """The defaults, overridden by the known keys of ``given`` (unknown keys ignored)."""
        rule = cls()
        known = {f.name: f.type for f in fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in (given or {}).items():
            if key in known and isinstance(value, int | float) and not isinstance(value, bool):
                changes[key] = type(getattr(rule, key))(value)
        return replace(rule, **changes)

    def threshold(self, expected: float) -> int:
        """How many signals make a spike where ``expected`` are usual in a window."""
        return max(
            self.min_signals,
            math.ceil(self.factor * expected + self.z * math.sqrt(max(expected, 0.0))),
        )


@dataclass
class Tick:
    """What one run did."""

    copied: int = 0  # reports
    posts: int = 0  # social posts copied
    opened: list[int] = field(default_factory=list)
    grown: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    notifications: int = 0


async def expected_count(
    session: AsyncSession,
    rule: SpikeRule,
    *,
    jurisdiction_id: int,
    service_id: int | None,
    lon: float,
    lat: float,
    now: datetime,
) -> float:
    """The signals usual in one window at this place and time of the week."""
    seen = (
        await session.execute(
            sql.BASELINE,
            {
                "j": jurisdiction_id,
                "service": service_id,
                "lon": lon,
                "lat": lat,
                "radius": rule.radius_m,
                "now": now,
                "weeks": rule.baseline_weeks,
                "window": rule.window_minutes,
                "slack": rule.slack_minutes,
            },
        )
    ).scalar_one()
    stretch = rule.window_minutes + 2 * rule.slack_minutes
    return float(seen) / rule.baseline_weeks * rule.window_minutes / stretch


async def detect(
    session: AsyncSession,
    jurisdiction: Any,
    now: datetime,
    settings: Settings | None = None,
    tick: Tick | None = None,
) -> Tick:
    """Grow, open and close one jurisdiction's alerts from its signals up to ``now``."""
    tick = tick or Tick()
    rule = SpikeRule.of(jurisdiction.talk)
    window = {"j": jurisdiction.id, "now": now, "window": rule.window_minutes}
    touched = set((await session.execute(sql.JOIN_OPEN_ALERTS, window)).scalars().all())
    bursts = (
        await session.execute(
            sql.BURSTS, {**window, "radius": rule.radius_m, "min": rule.min_signals}
        )
    ).all()
    for burst in bursts:
        place = {"lon": burst.lon, "lat": burst.lat, "radius": rule.radius_m}
        alert_id = (
            await session.execute(
                sql.OPEN_ALERT_FOR,
                {"j": jurisdiction.id, "service": burst.service_id, "ids": burst.ids, **place},
            )
        ).scalar_one_or_none()
        if alert_id is None:
            expected = await expected_count(
                session,
                rule,
                jurisdiction_id=jurisdiction.id,
                service_id=burst.service_id,
                lon=burst.lon,
                lat=burst.lat,
                now=now,
            )
            threshold = rule.threshold(expected)
            if burst.n < threshold:
                continue  # the usual wave for this place and hour
            alert_id = (
                await session.execute(
                    sql.NEW_ALERT,
                    {
                        "j": jurisdiction.id,
                        "service": burst.service_id,
                        "expected": round(expected, 3),
                        "threshold": threshold,
                        "now": now,
                        **place,
                    },
                )
            ).scalar_one()
            tick.opened.append(alert_id)
        touched.add(alert_id)
        await session.execute(sql.ADD_MEMBERS, {"alert": alert_id, "ids": burst.ids})
    for alert_id in sorted(touched):
        await session.execute(sql.RESHAPE, {"alert": alert_id, "radius": rule.radius_m, "now": now})
        if alert_id not in tick.opened:
            tick.grown.append(alert_id)
    tick.closed += (await session.execute(sql.CLOSE_QUIET, window)).scalars().all()
    for alert_id in tick.opened:
        tick.notifications += await tell_staff(session, alert_id, settings)
    return tick


async def tick(
    session: AsyncSession, now: datetime | None = None, settings: Settings | None = None
) -> Tick:
    """One run of the ``talk`` job: copy new reports and posts (reports first, so a post
    that filed one finds its signal), then detect in every jurisdiction."""
    now = now or clock.now()
    result = Tick(copied=await copy_reports(session))
    result.posts = await copy_posts(session)
    for jurisdiction in (await session.execute(sql.JURISDICTIONS)).all():
        await detect(session, jurisdiction, now, settings, result)
    return result


def alert_link(settings: Settings | None, alert_id: int) -> str:
    base = settings.public_base_url if settings is not None else ""
    return f"{base}/v1/alerts/{alert_id}"


async def tell_staff(session: AsyncSession, alert_id: int, settings: Settings | None) -> int:
    """Queue the news of a new alert to the jurisdiction's staff: one outbox row per live
    contact of theirs (email, push, webhook; delivered by ``deliver_notification``), and a
    mail to the account address of staff who have none. Returns how many were queued."""
    alert = (await session.execute(sql.GET_ALERT, {"id": alert_id})).one()
    where = alert.area_name or alert.area or f"{alert.lat:.5f}, {alert.lon:.5f}"
    what = alert.service or "posts"
    subject = f"Spike: {alert.signal_count} {what} signals in {where}"
    body = (
        f"{alert.signal_count} reports and posts about {what} within {alert.radius_m:.0f} m"
        f" in {where} (usually {alert.expected:.1f} at this hour; threshold"
        f" {alert.threshold}).\n\nAlert, its tickets and the suggested broadcast polygon:"
        f" {alert_link(settings, alert_id)}"
    )
    rows = (
        await session.execute(
            sql.STAFF_CONTACTS, {"j": alert.jurisdiction_id, "subject": subject, "body": body}
        )
    ).all()
    queued = len(rows)
    if queued:  # one delivery job for the lot, as the event stream defers it
        await defer(session, DELIVER_NOTIFICATIONS, queue="notify")
    emails = (
        (await session.execute(sql.STAFF_WITHOUT_CONTACTS, {"j": alert.jurisdiction_id}))
        .scalars()
        .all()
    )
    for email in emails:
        mail = {"to": email, "subject": subject, "body": body}
        await defer(session, SEND_MAIL, mail, queue="mail")
        queued += 1
    return queued
