"""Social posts as talk: the ``talk`` job copies stored posts into signals beside the reports
(a post that filed a report counted once), their hashtags trend, replies to the city's answers
have a mood of their own, and the share of posts answered in time per city account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.jurisdictions.models import Jurisdiction, Service
from app.settings import Settings
from app.talk import spikes
from app.talk.signals import copy_posts, copy_reports
from geo.distance import offset_lonlat
from tests.factories import CITY, bearer_headers, make_jurisdiction, make_service, make_user
from tests.talk_support import place_reports, store_post

NOW = datetime(2026, 11, 30, 8, 25, tzinfo=UTC)
CENTRE = CITY.center


async def city_with(db: AsyncSession, **talk: Any) -> tuple[Jurisdiction, Service]:
    city = await make_jurisdiction(db, talk=talk)
    return city, await make_service(db, city, "fallen_tree")


async def signals(db: AsyncSession, city: Jurisdiction) -> list[Any]:
    rows = await db.execute(
        text(
            "SELECT id, source, report_id, post_id, channel, location IS NOT NULL AS located,"
            " reply, terms, sentiment FROM talk_signal WHERE jurisdiction_id = :j ORDER BY id"
        ),
        {"j": city.id},
    )
    return list(rows)


async def open_alerts(db: AsyncSession, city: Jurisdiction) -> list[Any]:
    rows = await db.execute(
        text(
            "SELECT id, signal_count, report_count, post_count FROM talk_alert"
            " WHERE jurisdiction_id = :j AND status = 'open' ORDER BY id"
        ),
        {"j": city.id},
    )
    return list(rows)


def near(k: int) -> tuple[float, float]:
    return offset_lonlat(*CENTRE, 12.0 * k, -8.0)


async def test_a_burst_of_posts_and_reports_is_one_alert_and_a_filing_post_counts_once(
    db: AsyncSession,
) -> None:
    # Seven make a spike. Three reports, three located posts, and a post that filed the
    # first report: six problems (seven if the filing post counted twice): no alert.
    city, service = await city_with(db, min_signals=7, radius_m=100, window_minutes=10)
    reports = await place_reports(
        db,
        city,
        service,
        CENTRE,
        [(5.0 * k, 0.0, NOW - timedelta(minutes=k)) for k in range(3)],
        description="Tree down on the cycle path",
    )
    ticket_id = (
        await db.execute(text("SELECT ticket_id FROM report WHERE id = :r"), {"r": reports[0]})
    ).scalar_one()
    for k in range(3):
        await store_post(
            db,
            city,
            text_=f"Boom omgevallen, weg versperd #storm {k}",
            at=NOW - timedelta(minutes=k),
            point=near(k),
            service_code="fallen_tree",
        )
    filing = await store_post(
        db,
        city,
        text_="Huge tree fell on the path #storm",
        at=NOW - timedelta(minutes=4),
        point=CENTRE,
        status="ticket_created",
        service_code="fallen_tree",
        ticket_id=ticket_id,
        report_id=reports[0],
        link_rule="intake",
    )
    tick = await spikes.tick(db, NOW)
    assert (tick.copied, tick.posts) == (3, 4)
    assert await open_alerts(db, city) == []
    rows = await signals(db, city)
    assert len(rows) == 6
    # The filing post took its report's signal over: one row, both ids, the platform.
    [merged] = [r for r in rows if r.report_id == reports[0]]
    assert (merged.source, merged.post_id, merged.channel, merged.located) == (
        "post",
        filing,
        "mastodon",
        True,
    )
    # The seventh: one more located post. One alert, reports and posts behind it.
    await store_post(
        db,
        city,
        text_="Nog een boom om #storm",
        at=NOW - timedelta(minutes=1),
        point=near(4),
        service_code="fallen_tree",
    )
    tick = await spikes.tick(db, NOW)
    assert tick.posts == 1
    [alert] = await open_alerts(db, city)
    assert (alert.signal_count, alert.report_count, alert.post_count) == (7, 2, 5)
    # Idempotent: another run copies nothing and the alert stays as it is.
    tick = await spikes.tick(db, NOW)
    assert (tick.copied, tick.posts) == (0, 0)
    assert len(await signals(db, city)) == 7
    assert [a.signal_count for a in await open_alerts(db, city)] == [7]


async def test_a_post_copied_before_its_report_keeps_the_report_from_counting_again(
    db: AsyncSession,
) -> None:
    city, service = await city_with(db)
    [report] = await place_reports(db, city, service, CENTRE, [(0.0, 0.0, NOW)])
    post = await store_post(
        db,
        city,
        text_="Tree down",
        at=NOW,
        point=CENTRE,
        status="ticket_created",
        service_code="fallen_tree",
        report_id=report,
    )
    assert await copy_posts(db) == 1
    await copy_reports(db)
    [signal] = await signals(db, city)
    assert (signal.report_id, signal.post_id, signal.located) == (report, post, True)


async def test_a_post_that_joined_a_ticket_is_talk_but_no_point_and_replies_have_a_mood(
    db: AsyncSession, client: httpx.AsyncClient, settings: Settings
) -> None:
    city, service = await city_with(db)
    now = datetime.now(UTC)
    [report] = await place_reports(
        db, city, service, CENTRE, [(0.0, 0.0, now - timedelta(hours=3))], description="Tree"
    )
    ticket_id = (
        await db.execute(text("SELECT ticket_id FROM report WHERE id = :r"), {"r": report})
    ).scalar_one()
    reply = await store_post(
        db,
        city,
        text_="Thank you, great work, fantastic service!",
        at=now - timedelta(hours=1),
        point=CENTRE,
        status="linked",
        ticket_id=ticket_id,
        link_rule="reply",
    )
    # Ignored posts (the city's own, reposts, spam) and unprocessed ones are not talk.
    await store_post(db, city, text_="Our own post", at=now, status="ignored")
    await store_post(db, city, text_="Just in", at=now, status="received")
    await spikes.tick(db, now)
    rows = await signals(db, city)
    [post] = [r for r in rows if r.post_id == reply]
    assert (post.source, post.located, post.reply) == ("post", False, True)
    assert len(rows) == 2
    headers = await bearer_headers(
        settings, await make_user(db, role=Role.staff, jurisdiction=city)
    )
    replies = (
        await client.get(
            "/v1/talk/sentiment", headers=headers, params={"by": "service", "replies": "true"}
        )
    ).json()
    # The reply takes its ticket's service; its mood is its own.
    [bucket] = replies["items"]
    assert (bucket["key"], bucket["count"]) == ("fallen_tree", 1)
    assert bucket["mean"] > 0.05
    every = (
        await client.get("/v1/talk/sentiment", headers=headers, params={"by": "channel"})
    ).json()
    assert {m["key"] for m in every["items"]} == {"app", "mastodon"}


async def test_hashtags_of_posts_trend(
    db: AsyncSession, client: httpx.AsyncClient, settings: Settings
) -> None:
    city, _ = await city_with(db)
    now = datetime.now(UTC)
    for k in range(4):
        await store_post(
            db, city, text_=f"Water everywhere #wateroverlast {k}", at=now - timedelta(hours=k)
        )
    await store_post(db, city, text_="Quiet day #wateroverlast", at=now - timedelta(days=5))
    await spikes.tick(db, now)
    headers = await bearer_headers(
        settings, await make_user(db, role=Role.staff, jurisdiction=city)
    )
    trends = (await client.get("/v1/talk/trends", headers=headers)).json()
    tag = next(t for t in trends["items"] if t["term"] == "#wateroverlast")
    assert tag["today"] == 4
    assert sum(tag["series"]) == 5


async def test_the_share_of_posts_answered_in_time_per_account(
    db: AsyncSession, client: httpx.AsyncClient, settings: Settings
) -> None:
    city = await make_jurisdiction(db)
    now = datetime.now(UTC)
    ago = now - timedelta(days=3)

    async def post(**fields: Any) -> None:
        await store_post(db, city, text_="When will the bin be emptied?", platform="x", **fields)

    await post(at=ago, answered_at=ago + timedelta(hours=2))  # on time
    await post(at=ago, answered_at=ago + timedelta(hours=30))  # late for 24 h
    await post(at=ago)  # overdue: not answered
    await post(at=ago, closed_at=ago + timedelta(hours=1))  # no answer needed
    await post(at=ago, status="ignored", closed_at=ago)  # not for us
    await post(at=now - timedelta(hours=1))  # not due yet
    await post(
        at=now - timedelta(days=2),
        account="@city_help",
        answered_at=now - timedelta(days=2) + timedelta(minutes=30),
    )
    headers = await bearer_headers(
        settings, await make_user(db, role=Role.staff, jurisdiction=city)
    )

    async def level(**params: Any) -> dict[str, Any]:
        found = await client.get(
            "/v1/talk/answering", headers=headers, params={"bucket_days": 31, **params}
        )
        assert found.status_code == 200, found.text
        body: dict[str, Any] = found.json()
        return body

    def per_account(body: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
        out: dict[str, tuple[int, int, int, int]] = {}
        for item in body["items"]:
            was = out.get(item["account"], (0, 0, 0, 0))
            out[item["account"]] = (
                was[0] + item["posts"],
                was[1] + item["answered"],
                was[2] + item["on_time"],
                was[3] + item["pending"],
            )
        return out

    body = await level()
    assert body["within_hours"] == 24
    assert per_account(body) == {"@city": (4, 2, 1, 1), "@city_help": (1, 1, 1, 0)}
    assert body["share"] == 0.5  # two of the four due were answered within 24 h
    # The city's own response time is the default target.
    await db.execute(
        text(
            "INSERT INTO social_settings (jurisdiction_id, config) VALUES (:j, CAST(:c AS jsonb))"
        ),
        {"j": city.id, "c": '{"respond_within_hours": 36}'},
    )
    body = await level()
    assert body["within_hours"] == 36
    assert per_account(body)["@city"] == (4, 2, 2, 1)
    assert body["share"] == 0.75
    only = await level(account="@city_help", within_hours=0.25)
    assert per_account(only) == {"@city_help": (1, 1, 0, 0)}
    assert only["share"] == 0.0
    other = await make_jurisdiction(db, slug="elsewhere")
    refused = await client.get(
        "/v1/talk/answering", headers=headers, params={"jurisdiction": other.slug}
    )
    assert refused.status_code == 403
