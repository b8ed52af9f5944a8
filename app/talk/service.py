"""What staff read of talk: alerts (and acknowledging one), trends, moods over time."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal, ensure_own_object, ensure_same_jurisdiction
from app.core import clock
from app.core.errors import InvalidInput, NotFound
from app.social import config as social_config
from app.talk import repository as sql
from app.talk.schemas import (
    AlertDetail,
    AlertOut,
    AlertPage,
    AlertSignal,
    Answering,
    AnsweringBucket,
    BroadcastDraft,
    Centre,
    MoodBucket,
    Moods,
    Trend,
    Trends,
)


async def jurisdiction_of(session: AsyncSession, staff: Principal, slug: str | None) -> Any:
    """The jurisdiction staff ask about: ``slug``, or their own; 403 for another's."""
    if slug is None:
        if staff.jurisdiction_id is None:
            raise InvalidInput("jurisdiction: say which", errors=[_query_error("jurisdiction")])
        return (await session.execute(sql.JURISDICTIONS_BY_ID, {"id": staff.jurisdiction_id})).one()
    row = (await session.execute(sql.JURISDICTION_BY_SLUG, {"slug": slug})).first()
    if row is None:
        raise NotFound(f"No jurisdiction {slug!r}")
    ensure_same_jurisdiction(staff, row.id)
    return row


def _query_error(name: str) -> dict[str, Any]:
    return {"field": name, "message": "unknown or missing", "type": "value_error", "in": "query"}


def _alert(row: Any) -> AlertOut:
    polygon = json.loads(row.polygon)
    where = row.area_name or row.area or f"{row.lat:.5f}, {row.lon:.5f}"
    what = row.service or "posts"
    return AlertOut(
        id=row.id,
        jurisdiction=row.jurisdiction,
        service=row.service,
        area=row.area,
        area_name=row.area_name,
        status=row.status,
        signal_count=row.signal_count,
        report_count=row.report_count,
        post_count=row.post_count,
        expected=row.expected,
        threshold=row.threshold,
        radius_m=row.radius_m,
        centre=Centre(lon=row.lon, lat=row.lat),
        polygon=polygon,
        opened_at=row.opened_at,
        last_signal_at=row.last_signal_at,
        closed_at=row.closed_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        broadcast=BroadcastDraft(
            jurisdiction=row.jurisdiction,
            polygon=polygon,
            area_description=f"Within {row.radius_m:.0f} m of the {what} reports in {where}",
            headline=f"{what.replace('_', ' ').capitalize()} in {where}",
            body=f"We know about the {what.replace('_', ' ')} in {where} and are on it.",
        ),
    )


async def list_alerts(
    session: AsyncSession,
    staff: Principal,
    slug: str | None,
    *,
    status: Literal["open", "closed"] | None,
    before: int | None,
    limit: int,
) -> AlertPage:
    jurisdiction = await jurisdiction_of(session, staff, slug)
    rows = (
        await session.execute(
            sql.LIST_ALERTS,
            {"j": jurisdiction.id, "status": status, "before": before, "limit": limit + 1},
        )
    ).all()
    items = [_alert(r) for r in rows[:limit]]
    return AlertPage(items=items, next_before=items[-1].id if len(rows) > limit else None)


async def _own_alert(session: AsyncSession, staff: Principal, alert_id: int) -> Any:
    row = (await session.execute(sql.GET_ALERT, {"id": alert_id})).first()
    if row is None:
        raise NotFound("No such alert")
    ensure_own_object(staff, row.jurisdiction_id, "No such alert")
    return row


async def get_alert(session: AsyncSession, staff: Principal, alert_id: int) -> AlertDetail:
    row = await _own_alert(session, staff, alert_id)
    members = (await session.execute(sql.ALERT_MEMBERS, {"id": alert_id})).all()
    signals = [
        AlertSignal(
            id=m.id,
            source=m.source,
            channel=m.channel,
            ticket=m.ticket,
            post_id=m.post_id,
            at=m.at,
            sentiment=m.sentiment,
            lon=m.lon,
            lat=m.lat,
        )
        for m in members
    ]
    tickets = sorted({s.ticket for s in signals if s.ticket is not None})
    return AlertDetail(**_alert(row).model_dump(), signals=signals, tickets=tickets)


async def acknowledge(session: AsyncSession, staff: Principal, alert_id: int) -> AlertDetail:
    """Staff saw the alert (the first acknowledgement stands)."""
    await _own_alert(session, staff, alert_id)
    await session.execute(
        sql.ACKNOWLEDGE, {"id": alert_id, "now": clock.now(), "by": staff.label[:100]}
    )
    return await get_alert(session, staff, alert_id)


async def _area_id(session: AsyncSession, jurisdiction_id: int, code: str | None) -> int | None:
    if code is None:
        return None
    found = (
        await session.execute(sql.AREA_BY_CODE, {"j": jurisdiction_id, "code": code})
    ).scalar_one_or_none()
    if found is None:
        raise InvalidInput(f"area: no area {code!r}", errors=[_query_error("area")])
    return int(found)


async def trends(
    session: AsyncSession,
    staff: Principal,
    slug: str | None,
    *,
    area: str | None,
    kind: Literal["terms", "services"],
    baseline_days: int,
    min_count: int,
    limit: int,
    now: datetime | None = None,
) -> Trends:
    """Terms (stems and hashtags) or services mentioned more in the last 24 hours than on a
    usual day of the ``baseline_days`` before, with their daily counts for a trend line."""
    now = now or clock.now()
    jurisdiction = await jurisdiction_of(session, staff, slug)
    area_id = await _area_id(session, jurisdiction.id, area)
    since = now - timedelta(days=1)
    params = {
        "j": jurisdiction.id,
        "area": area_id,
        "now": now,
        "since": since,
        "base_from": since - timedelta(days=baseline_days),
        "days": baseline_days,
        "min_count": min_count,
        "limit": limit,
    }
    query = sql.TERM_TRENDS if kind == "terms" else sql.SERVICE_TRENDS
    rows = (await session.execute(query, params)).all()
    series: dict[str, list[int]] = {r.term: [0] * (baseline_days + 1) for r in rows}
    if rows and kind == "terms":
        counted = await session.execute(sql.TERM_SERIES, {**params, "terms": list(series)})
        for term, days_ago, n in counted.tuples():
            if 0 <= days_ago <= baseline_days:
                series[term][baseline_days - days_ago] = int(n)
    elif rows:
        counted = await session.execute(sql.SERVICE_SERIES, {**params, "codes": list(series)})
        for code, days_ago, n in counted.tuples():
            if 0 <= days_ago <= baseline_days:
                series[code][baseline_days - days_ago] = int(n)
    return Trends(
        jurisdiction=jurisdiction.slug,
        area=area,
        kind=kind,
        baseline_days=baseline_days,
        items=[
            Trend(
                term=r.term,
                today=r.today,
                per_day=round(r.per_day, 3),
                lift=round(r.lift, 3),
                series=series[r.term],
            )
            for r in rows
        ],
    )


async def moods(
    session: AsyncSession,
    staff: Principal,
    slug: str | None,
    *,
    by: Literal["none", "service", "area", "channel"],
    bucket_days: int,
    days: int,
    service: str | None,
    area: str | None,
    channel: str | None,
    replies: bool = False,
    now: datetime | None = None,
) -> Moods:
    """Sentiment of reports and posts over time, per service, area or channel; ``replies``:
    only the replies to the city's answers."""
    now = now or clock.now()
    jurisdiction = await jurisdiction_of(session, staff, slug)
    rows = (
        await session.execute(
            sql.SENTIMENT,
            {
                "j": jurisdiction.id,
                "by": by,
                "days": bucket_days,
                "since": now - timedelta(days=days),
                "now": now,
                "service": service,
                "area": area,
                "channel": channel,
                "replies": replies,
            },
        )
    ).all()
    return Moods(
        jurisdiction=jurisdiction.slug,
        by=by,
        bucket_days=bucket_days,
        items=[
            MoodBucket(
                bucket=r.bucket,
                key=r.key,
                count=r.n,
                mean=round(float(r.mean), 3),
                negative=round(float(r.negative), 3),
                positive=round(float(r.positive), 3),
            )
            for r in rows
        ],
    )


def _share(on_time: int, due: int) -> float | None:
    return round(on_time / due, 4) if due > 0 else None


async def answering(
    session: AsyncSession,
    staff: Principal,
    slug: str | None,
    *,
    within_hours: float | None,
    bucket_days: int,
    days: int,
    account: str | None,
    now: datetime | None = None,
) -> Answering:
    """The service level of answering posts: per bucket, platform and city account, the share
    answered within ``within_hours`` (default: the city's ``social.respond_within_hours``)."""
    now = now or clock.now()
    jurisdiction = await jurisdiction_of(session, staff, slug)
    if within_hours is None:
        within_hours = (await social_config.read(session, jurisdiction.id)).respond_within_hours
    rows = (
        await session.execute(
            sql.ANSWERING,
            {
                "j": jurisdiction.id,
                "days": bucket_days,
                "within": within_hours * 3600,
                "since": now - timedelta(days=days),
                "now": now,
                "account": account,
            },
        )
    ).all()
    items = [
        AnsweringBucket(
            bucket=r.bucket,
            platform=r.platform,
            account=r.account,
            posts=r.posts,
            answered=r.answered,
            on_time=r.on_time,
            pending=r.pending,
            share=_share(r.on_time, r.posts - r.pending),
            median_minutes=round(r.median_s / 60, 1) if r.median_s is not None else None,
        )
        for r in rows
    ]
    return Answering(
        jurisdiction=jurisdiction.slug,
        within_hours=within_hours,
        bucket_days=bucket_days,
        share=_share(sum(i.on_time for i in items), sum(i.posts - i.pending for i in items)),
        items=items,
    )
