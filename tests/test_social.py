"""Social intake (issue 18): posts that tag the city become located, de-duplicated tickets,
answered in the thread. Everything against a local fake X speaking the real payloads
(tests/fakes/x.py), a real PostGIS, the real intake and the real outbox.

Texts name their service unambiguously (hashtag and keyword), so these tests hold with the
real classifier as with the placeholder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Role
from app.channels import x
from app.channels.base import Delivered, Failed, Message, RetryLater
from app.channels.posts import InboundPost
from app.channels.sources import AccountRef
from app.channels.x import XChannel, XSource, posts_from_page
from app.core import clock
from app.geocoding.service import HttpGeocoder
from app.jurisdictions.models import Jurisdiction
from app.notify import service as notify
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.settings import Settings
from app.social import config as social_config
from app.social.config import Social, SocialAccount, Street
from app.social.locate import address_in
from app.social.polling import poll_accounts, process_posts
from app.social.service import Pipeline, receive, references_in
from tests.factories import CITY, bearer_headers, make_jurisdiction, make_service, make_user
from tests.fakes import x as fake
from tests.fakes.http import FakeServer, Reply, serving

CENTER = CITY.center  # (-2.5879, 51.4545)
VISMARKT = (-2.5901, 51.4551)
STATION_ROAD = (-2.5801, 51.4499)
AUTHOR = "1299000000000000011"
OTHER_AUTHOR = "1701234567890000003"
TOKENS = {
    "KERBSIDE_TEST_X_BEARER": fake.BEARER,
    "KERBSIDE_TEST_X_USER_TOKEN": fake.USER_TOKEN,
}


def pothole(text: str = "huge pothole on Vismarkt again", **kw: Any) -> dict[str, Any]:
    return fake.tweet(f"@{fake.CITY_HANDLE} #kuil {text}", hashtags=("kuil",), **kw)


@dataclass
class World:
    city: Jurisdiction
    settings: Settings
    pipeline: Pipeline
    xapi: FakeServer
    fakex: fake.FakeX


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def xapi() -> Iterator[tuple[FakeServer, fake.FakeX]]:
    state = fake.FakeX()
    with serving(state) as server:
        yield server, state


async def _city(db: AsyncSession, xapi_url: str, **social: Any) -> Jurisdiction:
    city = await make_jurisdiction(db, slug=f"social-{datetime.now(UTC).timestamp():.0f}")
    await make_service(
        db,
        city,
        "pothole",
        hashtags={"en": ["pothole"], "nl": ["kuil"]},
        keywords={"en": ["pothole"], "nl": ["kuil", "gat in de weg"]},
        duplicate_radius_m=30.0,
    )
    await make_service(db, city, "streetlight", hashtags={"en": ["streetlight"]})
    config = {
        "accounts": [
            SocialAccount(
                platform="x",
                handle=fake.CITY_HANDLE,
                id=fake.CITY_ID,
                base_url=xapi_url,
                credentials={
                    "bearer_token": "KERBSIDE_TEST_X_BEARER",
                    "user_token": "KERBSIDE_TEST_X_USER_TOKEN",
                },
            ),
            SocialAccount(
                platform="x", handle="CityNews", id="1458203741520000002", poll=False, reports=False
            ),
        ],
        "streets": [Street(name="Vismarkt", lon=VISMARKT[0], lat=VISMARKT[1])],
        **social,
    }
    await social_config.write(db, city.id, Social(**config))
    return city


@pytest.fixture
async def world(
    db: AsyncSession, settings: Settings, xapi: tuple[FakeServer, fake.FakeX], tokens: None
) -> World:
    server, state = xapi
    city = await _city(db, server.url)
    local = settings.model_copy(update={"x_api_base_url": server.url})
    return World(city, local, Pipeline(local), server, state)


def inbound(post: dict[str, Any], state: fake.FakeX | None = None) -> InboundPost:
    """A post as the X adapter reads it from a page (with its expansions)."""
    includes: dict[str, Any] = {}
    if state is not None:
        includes = {
            "users": list(state.users.values()),
            "places": list(state.places.values()),
        }
    page = posts_from_page({"data": [post], "includes": includes}, fake.CITY_ID)
    assert len(page.posts) == 1
    return page.posts[0]


async def at_commit(db: AsyncSession) -> None:
    """Run the deferred event stream now, as COMMIT would."""
    await db.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    await db.execute(text("SET CONSTRAINTS ALL DEFERRED"))


async def post_row(db: AsyncSession, post_id: str) -> Any:
    return (
        await db.execute(
            text(
                "SELECT p.*, t.reference, ST_X(p.location) AS lon, ST_Y(p.location) AS lat"
                " FROM social_post p LEFT JOIN ticket t ON t.id = p.ticket_id"
                " WHERE p.post_id = :id"
            ),
            {"id": post_id},
        )
    ).one()


async def outbox(db: AsyncSession) -> list[Any]:
    return list(
        (
            await db.execute(
                text(
                    "SELECT n.id, n.event_kind, n.reason, n.reply_to, n.body, n.ticket_id,"
                    " c.address FROM notification n JOIN contact c ON c.id = n.contact_id"
                    " ORDER BY n.id"
                )
            )
        ).all()
    )


async def tickets(db: AsyncSession, city: Jurisdiction) -> int:
    return int(
        (
            await db.execute(
                text("SELECT count(*) FROM ticket WHERE jurisdiction_id = :j"), {"j": city.id}
            )
        ).scalar_one()
    )


# -- the X adapter: reading pages and webhooks -------------------------------------------------


def test_a_page_reads_text_place_media_replies_and_reposts_in_both_spellings() -> None:
    state = fake.FakeX()
    state.places["p1"] = fake.place("p1", "Elm Quarter", (-2.59, 51.45, -2.585, 51.455), "poi")
    state.media["3_1"] = {"media_key": "3_1", "type": "photo", "url": "https://pbs/1.jpg"}
    original = fake.tweet(
        "@CityOfExample #pothole",
        coordinates=(-2.5879, 51.4545),
        place_id="p1",
        media_keys=("3_1",),
    )
    reply = fake.tweet("@CityOfExample still there", replied_to=original["id"])
    # The renamed schema (openapi v2.167) spells references ``referenced_posts``.
    repost = fake.tweet("RT @someone: #pothole")
    repost["referenced_posts"] = [{"type": "retweeted", "id": original["id"]}]
    long_post = fake.tweet("cut short…")
    long_post["note_tweet"] = {"text": "the whole long text " * 30}
    page = posts_from_page(
        {
            "data": [original, reply, repost, long_post, {"id": "1"}],
            "includes": {
                "users": [fake.user(AUTHOR, "wheels_jan")],
                "places": list(state.places.values()),
                "media": list(state.media.values()),
            },
            "meta": {"result_count": 5, "newest_id": original["id"], "next_token": "abc"},
        },
        fake.CITY_ID,
    )
    first, second, third, fourth = page.posts
    assert first.coordinates == (-2.5879, 51.4545)  # GeoJSON order: lon, lat
    assert first.place is not None
    assert first.place.bbox == (-2.59, 51.45, -2.585, 51.455)
    assert first.media_urls == ("https://pbs/1.jpg",)
    assert first.author_handle == "wheels_jan"
    assert second.in_reply_to_id == original["id"]
    assert not second.is_repost
    assert third.is_repost
    assert fourth.text.startswith("the whole long text")
    assert (page.skipped, page.next_token, page.newest_id) == (1, "abc", original["id"])


def test_the_legacy_account_activity_body_gives_lon_lat_from_coordinates_not_geo() -> None:
    body = {
        "for_user_id": fake.CITY_ID,
        "tweet_create_events": [
            {
                "created_at": "Mon Nov 03 08:14:22 +0000 2025",
                "id": 1985123456789000001,
                "id_str": "1985123456789000001",
                "text": "@CityOfExample Huge pothole #pothole",
                "in_reply_to_status_id_str": None,
                "user": {"id_str": AUTHOR, "screen_name": "wheels_jan"},
                "geo": {"type": "Point", "coordinates": [51.44083, 5.47135]},
                "coordinates": {"type": "Point", "coordinates": [5.47135, 51.44083]},
                "lang": "en",
            }
        ],
    }
    account, posts = x.posts_from_webhook(body)
    assert account == fake.CITY_ID
    assert posts[0].coordinates == (5.47135, 51.44083)
    assert posts[0].created_at == datetime(2025, 11, 3, 8, 14, 22, tzinfo=UTC)


def test_crc_and_signature_match_xs_published_example() -> None:
    # refs/channels.md §1.5, x_webhook_signing.json: the test secret and its CRC pair.
    assert x.crc_response(
        "test-consumer-secret-not-real", "9b4507b3-9040-4669-9ca3-6b94edb50553"
    ) == {"response_token": "sha256=fFFmooNN/BLU7YMXky1kVCweWBe+er3/cLhxazN86ME="}
    body = b'{"data":{"a":1}}'
    assert x.signature_valid(fake.CONSUMER_SECRET, body, fake.sign(body))
    assert not x.signature_valid(fake.CONSUMER_SECRET, body + b" ", fake.sign(body))
    assert not x.signature_valid(fake.CONSUMER_SECRET, body, None)


# -- polling: since_id, pages, 429, malformed pages ----------------------------------------


async def test_polling_follows_every_page_then_moves_since_id_and_asks_only_for_newer(
    world: World, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    world.fakex.page_size_cap = 40  # three pages for 100 mentions
    posted = [
        world.fakex.mention(fake.tweet(f"@CityOfExample thanks for the bins {n}"))
        for n in range(100)
    ]
    polled = await poll_accounts(sessionmaker, world.settings)
    assert (polled.posts, polled.stored, polled.errors) == (100, 100, [])
    asked = [r for r in world.xapi.received if "/mentions" in r.path]
    assert len(asked) == 3
    assert "pagination_token" in asked[1].path
    assert "since_id" not in asked[0].path
    cursor = (
        await db.execute(
            text("SELECT since_id FROM social_cursor WHERE account = :a"), {"a": fake.CITY_ID}
        )
    ).scalar_one()
    assert cursor == max(posted, key=lambda p: int(p["id"]))["id"]
    newer = world.fakex.mention(fake.tweet("@CityOfExample one more thing"))
    again = await poll_accounts(sessionmaker, world.settings)
    assert (again.posts, again.stored) == (1, 1)
    assert f"since_id={cursor}" in world.xapi.received[-1].path
    row = await post_row(db, newer["id"])
    assert row.raw["data"]["text"] == newer["text"]  # verbatim


async def test_a_429_stops_at_its_reset_keeps_since_id_and_loses_nothing(
    world: World, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    world.fakex.page_size_cap = 10
    for n in range(25):
        world.fakex.mention(fake.tweet(f"@CityOfExample hello {n}"))
    reset = int((clock.now() + timedelta(minutes=15)).timestamp())
    # The first page comes in; the second is refused.
    original = world.fakex._mentions

    calls = {"n": 0}

    def refuse_second(query: dict[str, str]) -> Reply:
        calls["n"] += 1
        return fake.too_many_requests(reset) if calls["n"] == 2 else original(query)

    world.fakex._mentions = refuse_second  # type: ignore[method-assign]
    polled = await poll_accounts(sessionmaker, world.settings)
    assert polled.stored == 10
    assert polled.errors
    cursor = (
        await db.execute(
            text("SELECT since_id, retry_at FROM social_cursor WHERE account = :a"),
            {"a": fake.CITY_ID},
        )
    ).one()
    assert cursor.since_id is None  # not every page came in
    assert cursor.retry_at == datetime.fromtimestamp(reset, UTC)
    # Until the reset, the account is not asked at all.
    before = len(world.xapi.received)
    skipped = await poll_accounts(sessionmaker, world.settings)
    assert skipped.accounts == 0
    assert len(world.xapi.received) == before
    # After it, everything comes in, and the ten already kept are not kept twice.
    await db.execute(text("UPDATE social_cursor SET retry_at = now() - interval '1 second'"))
    world.fakex._mentions = original  # type: ignore[method-assign]
    resumed = await poll_accounts(sessionmaker, world.settings)
    assert (resumed.posts, resumed.stored) == (25, 15)
    assert (await db.execute(text("SELECT count(*) FROM social_post"))).scalar_one() == 25


async def test_a_lasting_polling_fault_is_logged_once_and_its_end_too(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="kerbside.social")
    down = Reply(503, b'{"title": "Service Unavailable"}', {"Content-Type": "application/json"})
    for _ in range(3):  # three polls a minute apart, the platform down all along
        world.xapi.fail_next(down)
        assert (await poll_accounts(sessionmaker, world.settings)).errors
    world.fakex.mention(pothole(coordinates=CENTER))
    assert not (await poll_accounts(sessionmaker, world.settings)).errors

    said = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "kerbside.social" and "polling" in r.getMessage()
    ]
    assert said == [
        ("WARNING", "polling stopped early"),
        ("DEBUG", "polling stopped early"),
        ("DEBUG", "polling stopped early"),
        ("INFO", "polling works again"),
    ]


async def test_malformed_pages_and_partial_errors(
    world: World, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    kept = world.fakex.mention(pothole(coordinates=CENTER))
    world.xapi.fail_next(Reply(200, b'{"data": [{"id": ', {"Content-Type": "application/json"}))
    broken = await poll_accounts(sessionmaker, world.settings)
    assert broken.stored == 0
    assert "malformed" in broken.errors[0]
    assert (
        await db.execute(text("SELECT count(*) FROM social_cursor WHERE since_id IS NOT NULL"))
    ).scalar_one() == 0
    # A reply to a post X could not include (deleted, or its author protected) still counts.
    gone = fake.next_id()
    world.fakex.unavailable.add(gone)
    world.fakex.mention(fake.tweet("@CityOfExample #kuil pothole still there", replied_to=gone))
    fetched = await XSource(world.settings).fetch(
        AccountRef(
            "x", fake.CITY_HANDLE, fake.CITY_ID, world.xapi.url, {"bearer_token": fake.BEARER}
        ),
        None,
    )
    assert fetched.complete
    assert fetched.errors == 1
    assert len(fetched.posts) == 2
    # A deleted mention is simply gone from the timeline.
    world.fakex.delete(kept["id"])
    fetched = await XSource(world.settings).fetch(
        AccountRef(
            "x", fake.CITY_HANDLE, fake.CITY_ID, world.xapi.url, {"bearer_token": fake.BEARER}
        ),
        None,
    )
    assert fetched.posts
    assert kept["id"] not in [p.post_id for p in fetched.posts]
    # Wrong credentials: an error, no posts, nothing moved.
    refused = await XSource(world.settings).fetch(
        AccountRef("x", fake.CITY_HANDLE, fake.CITY_ID, world.xapi.url, {"bearer_token": "nope"}),
        None,
    )
    assert refused.error == "HTTP 401"
    assert not refused.posts


# -- store → classify → locate → file → acknowledge in the thread ----------------------------


async def test_a_located_post_becomes_a_ticket_and_is_answered_in_its_thread(
    world: World, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    post = world.fakex.mention(pothole(coordinates=CENTER), author="wheels_jan")
    counts = await receive(db, world.pipeline, [inbound(post, world.fakex)])
    assert counts.outcomes == {"ticket_created": 1}
    row = await post_row(db, post["id"])
    assert (row.status, row.link_rule, row.service_code, row.location_source) == (
        "ticket_created",
        "intake",
        "pothole",
        "coordinates",
    )
    assert (row.lon, row.lat) == pytest.approx(CENTER)
    assert row.answered_at is not None
    await at_commit(db)
    (ack,) = await outbox(db)
    assert (ack.event_kind, ack.reason, ack.address) == ("ticket_opened", "reporter", AUTHOR)
    # The outbox worker sends it through the X adapter, as a reply to the mention.
    channels = {"x": XChannel(world.settings)}
    attempt = await notify.deliver(sessionmaker, channels, world.settings, ack.id)
    assert attempt.status == "sent"
    (reply,) = world.fakex.replies
    assert reply["in_reply_to"] == post["id"]
    assert row.reference in reply["text"]
    assert reply["text"].startswith("@wheels_jan ")
    assert len(reply["text"]) <= 280
    # Later status updates go to the same thread.
    from app.auth.principal import Principal
    from app.tickets import workflow
    from app.tickets.models import TicketStatus

    staff = Principal(kind="user", role=Role.admin, label="test-staff")
    await workflow.change_status(db, row.ticket_id, TicketStatus.acknowledged, actor=staff)
    await at_commit(db)
    update = (await outbox(db))[-1]
    assert update.event_kind == "status_changed"
    assert (
        await notify.deliver(sessionmaker, channels, world.settings, update.id)
    ).status == "sent"
    assert world.fakex.replies[-1]["in_reply_to"] == post["id"]
    assert row.reference in world.fakex.replies[-1]["text"]
    assert "on our list" in world.fakex.replies[-1]["text"]


async def test_the_same_page_twice_creates_nothing_twice(world: World, db: AsyncSession) -> None:
    posts = [
        inbound(world.fakex.mention(pothole(coordinates=CENTER))),
        inbound(
            world.fakex.mention(
                fake.tweet("@CityOfExample #streetlight out", coordinates=STATION_ROAD)
            )
        ),
    ]
    first = await receive(db, world.pipeline, posts)
    again = await receive(db, world.pipeline, posts)
    assert (first.stored, again.stored) == (2, 0)
    assert await tickets(db, world.city) == 2
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 2


async def test_ignored_posts_say_why_and_are_closed(world: World, db: AsyncSession) -> None:
    own = fake.tweet("#kuil pothole on Vismarkt", author_id=fake.CITY_ID)
    sibling = fake.tweet("#kuil pothole on Vismarkt", author_id="1458203741520000002")
    repost = pothole(coordinates=CENTER, retweeted="1985123456789000001")
    spam = fake.tweet(
        "@CityOfExample free money https://a.example https://b.example https://c.example https://d.example"
    )
    blocked = pothole(coordinates=CENTER, author_id="666")
    await social_config.write(
        db,
        world.city.id,
        (await social_config.read(db, world.city.id)).model_copy(
            update={"blocked_authors": ["666"]}
        ),
    )
    world.pipeline = Pipeline(world.settings)
    counts = await receive(
        db, world.pipeline, [inbound(p) for p in (own, sibling, repost, spam, blocked)]
    )
    assert counts.outcomes == {"ignored": 5}
    reasons = [(await post_row(db, p["id"])).reason for p in (own, sibling, repost, spam, blocked)]
    assert reasons == [
        "own account",
        "another city account",
        "repost",
        "spam: links or mentions",
        "blocked author",
    ]
    for post in (own, sibling, repost, spam, blocked):
        assert (await post_row(db, post["id"])).closed_at is not None
    assert await tickets(db, world.city) == 0


async def test_huge_emoji_and_right_to_left_texts_are_kept_verbatim_and_filed(
    world: World, db: AsyncSession
) -> None:
    huge = pothole("pothole " + "very deep " * 3000, coordinates=CENTER)
    rtl = pothole("🕳️🚲 حفرة كبيرة في الطريق pothole ‏Vismarkt\x00", coordinates=STATION_ROAD)
    counts = await receive(db, world.pipeline, [inbound(huge), inbound(rtl)])
    assert counts.outcomes == {"ticket_created": 2}
    assert (await post_row(db, huge["id"])).text == huge["text"]
    kept = await post_row(db, rtl["id"])
    assert kept.text == rtl["text"].replace("\x00", "")
    descriptions = (
        (await db.execute(text("SELECT description FROM report ORDER BY id"))).scalars().all()
    )
    assert len(descriptions[0]) == 5000
    assert "حفرة كبيرة" in descriptions[1]
    assert "🕳️" in descriptions[1]


# -- locating ----------------------------------------------------------------------------------


async def test_each_location_source_in_order(world: World, db: AsyncSession) -> None:
    world.fakex.places["small"] = fake.place(
        "small", "Vismarkt Quarter", (-2.592, 51.454, -2.588, 51.456), "neighborhood"
    )
    world.fakex.places["city"] = fake.place(
        "city", "Example City", (-2.69, 51.39, -2.49, 51.51), "city"
    )
    # Three authors: one author's posts would meet rule 4 (their own recent ticket).
    by_place = pothole("big hole here", place_id="small", author_id="1299000000000000021")
    by_street = pothole("huge pothole on vismarkt again", author_id="1299000000000000022")
    too_big = pothole("big hole somewhere", place_id="city", author_id="1299000000000000023")
    posts = [inbound(world.fakex.mention(p), world.fakex) for p in (by_place, by_street, too_big)]
    counts = await receive(db, world.pipeline, posts)
    assert counts.outcomes == {"ticket_created": 2, "awaiting_location": 1}
    place_row = await post_row(db, by_place["id"])
    assert place_row.location_source == "place"
    assert (place_row.lon, place_row.lat) == pytest.approx((-2.590, 51.455))
    street_row = await post_row(db, by_street["id"])
    assert (street_row.location_source, (street_row.lon, street_row.lat)) == (
        "gazetteer",
        pytest.approx(VISMARKT),
    )
    assert (await post_row(db, too_big["id"])).status == "awaiting_location"
    address = (
        await db.execute(
            text("SELECT address FROM report WHERE id = :r"), {"r": street_row.report_id}
        )
    ).scalar_one()
    assert address == "Vismarkt"


def test_addresses_are_read_from_text() -> None:
    assert address_in("Graffiti on the underpass at Station Road 12, 4811 AB, by the racks") == (
        "Station Road 12, 4811 AB"
    )
    assert address_in("Huge pothole on Vismarkt 3a again") == "Vismarkt 3a"
    assert address_in("no address here at all") is None


async def test_an_address_is_found_by_the_http_geocoder(world: World, db: AsyncSession) -> None:
    asked: list[str] = []

    def nominatim(request: Any) -> Reply:
        asked.append(request.path)
        if "Station+Road+12" in request.path:
            lon, lat = STATION_ROAD
            return Reply.json(
                200,
                json.dumps([{"lat": str(lat), "lon": str(lon), "display_name": "Station Road 12"}]),
            )
        return Reply.json(200, "[]")

    with serving(nominatim) as geocoder:
        settings = world.settings.model_copy(update={"geocoder_url": geocoder.url})
        pipeline = Pipeline(settings, geocoder=HttpGeocoder(settings))
        post = pothole("pothole at Station Road 12, 4811 AB, right by the bike racks")
        counts = await receive(db, pipeline, [inbound(post)])
        assert pipeline.geocoder is not None
        await pipeline.geocoder.close()  # type: ignore[attr-defined]
    assert counts.outcomes == {"ticket_created": 1}
    row = await post_row(db, post["id"])
    assert row.location_source == "geocoder"
    assert (row.lon, row.lat) == pytest.approx(STATION_ROAD)
    assert asked
    assert asked[0].startswith("/search?")
    assert "bounded=1" in asked[0]


async def test_a_post_without_location_is_asked_where_and_resumed_by_the_reply(
    world: World, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = world.fakex.mention(pothole("massive pothole, my bike is broken"), author="wheels_jan")
    await receive(db, world.pipeline, [inbound(first, world.fakex)])
    waiting = await post_row(db, first["id"])
    assert waiting.status == "awaiting_location"
    assert waiting.ticket_id is None
    (question,) = await outbox(db)
    assert (question.event_kind, question.reason) == ("location_asked", "reply")
    assert question.reply_to["post"] == first["id"]
    assert "/report?" in question.body
    assert "service=pothole" in question.body
    assert "wheels_jan" not in question.body.split("?", 1)[1]  # no personal data in the link
    attempt = await notify.deliver(
        sessionmaker, {"x": XChannel(world.settings)}, world.settings, question.id
    )
    assert attempt.status == "sent"
    asked = world.fakex.replies[-1]
    # Running the pipeline again asks nothing twice.
    await receive(db, world.pipeline, [inbound(first)])
    assert len(await outbox(db)) == 1
    # The author answers our question in the thread, with a location.
    answer = world.fakex.mention(
        fake.tweet(
            "@CityOfExample it is at the corner here",
            replied_to=asked["id"],
            conversation_id=first["id"],
            coordinates=CENTER,
        ),
        author="wheels_jan",
    )
    counts = await receive(db, world.pipeline, [inbound(answer, world.fakex)])
    assert counts.outcomes == {"linked": 1}
    resumed = await post_row(db, first["id"])
    assert (resumed.status, resumed.location_source) == ("ticket_created", "coordinates")
    assert resumed.resumed_by_id == (await post_row(db, answer["id"])).id
    reply_row = await post_row(db, answer["id"])
    assert (reply_row.link_rule, reply_row.ticket_id) == ("resumed", resumed.ticket_id)
    description = (
        await db.execute(
            text("SELECT description FROM report WHERE id = :r"), {"r": resumed.report_id}
        )
    ).scalar_one()
    assert "my bike is broken" in description
    assert "corner here" in description
    # The acknowledgement answers the original mention (X's 2026 reply rule).
    await at_commit(db)
    ack = (await outbox(db))[-1]
    assert ack.event_kind == "ticket_opened"
    await notify.deliver(sessionmaker, {"x": XChannel(world.settings)}, world.settings, ack.id)
    assert world.fakex.replies[-1]["in_reply_to"] == first["id"]


# -- linking -----------------------------------------------------------------------------------


async def _filed(world: World, db: AsyncSession, **kw: Any) -> tuple[dict[str, Any], Any]:
    post = world.fakex.mention(pothole(coordinates=CENTER, **kw))
    await receive(db, world.pipeline, [inbound(post)])
    return post, await post_row(db, post["id"])


async def test_rule_1_a_reply_to_a_post_of_a_ticket_joins_it_as_a_comment(
    world: World, db: AsyncSession
) -> None:
    original, row = await _filed(world, db)
    follow_up = fake.tweet(
        "@CityOfExample still not fixed, a cyclist nearly fell",
        author_id=OTHER_AUTHOR,
        replied_to=original["id"],
        conversation_id=original["id"],
    )
    counts = await receive(db, world.pipeline, [inbound(follow_up)])
    assert counts.outcomes == {"linked": 1}
    linked = await post_row(db, follow_up["id"])
    assert (linked.link_rule, linked.ticket_id) == ("reply", row.ticket_id)
    event = (
        await db.execute(
            text(
                "SELECT kind, public, note FROM ticket_event WHERE ticket_id = :t"
                " ORDER BY id DESC LIMIT 1"
            ),
            {"t": row.ticket_id},
        )
    ).one()
    assert (event.kind, event.public) == ("inbound_message", False)
    assert "cyclist nearly fell" in event.note
    answer = (await outbox(db))[-1]
    assert (answer.event_kind, answer.address) == ("post_linked", OTHER_AUTHOR)
    assert row.reference in answer.body
    assert answer.reply_to["post"] == follow_up["id"]


async def test_rule_1_a_reply_to_the_citys_own_answer_joins_its_ticket(
    world: World, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    _, row = await _filed(world, db)
    await at_commit(db)
    (ack,) = await outbox(db)
    await notify.deliver(sessionmaker, {"x": XChannel(world.settings)}, world.settings, ack.id)
    city_reply = world.fakex.replies[-1]["id"]
    reply = fake.tweet(
        "@CityOfExample thanks! it got worse",
        author_id=OTHER_AUTHOR,
        replied_to=city_reply,
        conversation_id="elsewhere",
    )
    await receive(db, world.pipeline, [inbound(reply)])
    assert (
        (await post_row(db, reply["id"])).link_rule,
        (await post_row(db, reply["id"])).ticket_id,
    ) == ("reply", row.ticket_id)


async def test_rule_2_the_same_conversation_by_the_same_author(
    world: World, db: AsyncSession
) -> None:
    original, row = await _filed(world, db)
    later = fake.tweet(
        "@CityOfExample photo of it from today",
        conversation_id=original["id"],
        replied_to="1986999999999999999",
    )
    stranger = fake.tweet(
        "@CityOfExample #kuil and another pothole on Vismarkt",
        author_id=OTHER_AUTHOR,
        conversation_id=original["id"],
        replied_to="1986999999999999998",
        coordinates=STATION_ROAD,
    )
    await receive(db, world.pipeline, [inbound(later), inbound(stranger)])
    assert (await post_row(db, later["id"])).link_rule == "conversation"
    # Another author in the thread is no part of it: their own report.
    other = await post_row(db, stranger["id"])
    assert other.link_rule == "intake"
    assert other.ticket_id != row.ticket_id


async def test_rule_3_a_ticket_reference_in_the_text(world: World, db: AsyncSession) -> None:
    _, row = await _filed(world, db)
    compact = row.reference.replace("-", "")
    assert references_in(f"about #{compact} again") == [row.reference]
    mention = fake.tweet(f"@CityOfExample any news on {row.reference}?", author_id=OTHER_AUTHOR)
    hashtag = fake.tweet(f"@CityOfExample #{compact} still broken", author_id="42")
    await receive(db, world.pipeline, [inbound(mention), inbound(hashtag)])
    for post in (mention, hashtag):
        linked = await post_row(db, post["id"])
        assert (linked.link_rule, linked.ticket_id) == ("reference", row.ticket_id)


async def test_rule_4_a_post_about_a_pothole_reported_in_the_app_joins_that_ticket(
    world: World, db: AsyncSession
) -> None:
    from app.contacts.models import ContactKind
    from app.contacts.service import ContactSpec

    filed = await submit_report(
        db,
        world.pipeline.catalog,
        Submission(
            channel=Channel.app,
            submitter=Submitter(label="app"),
            service_code="pothole",
            place=Place(*CENTER, LocationSource.device),
            jurisdiction=world.city.slug,
            contacts=[ContactSpec(ContactKind.fcm, "device-token")],
        ),
    )
    near = fake.tweet("@CityOfExample #kuil huge pothole here", coordinates=(-2.58795, 51.45452))
    await receive(db, world.pipeline, [inbound(near)])
    joined = await post_row(db, near["id"])
    assert (joined.link_rule, joined.ticket_id) == ("intake", filed.ticket_id)
    # Its author hears of the ticket's progress in the post's thread.
    consent = (
        await db.execute(
            text(
                "SELECT k.evidence FROM contact_consent k JOIN contact c ON c.id = k.contact_id"
                " WHERE c.kind = 'x' AND c.address = :a AND k.ticket_id = :t"
            ),
            {"a": AUTHOR, "t": filed.ticket_id},
        )
    ).scalar_one()
    assert consent["reply_to"]["post"] == near["id"]
    await at_commit(db)
    assert [(n.event_kind, n.address) for n in await outbox(db)][-1] == ("report_attached", AUTHOR)


# -- webhooks ----------------------------------------------------------------------------------


@pytest.fixture
def hooked(world: World, app: Any) -> World:
    from pydantic import SecretStr

    app.state.settings = world.settings.model_copy(
        update={"x_consumer_secret": SecretStr(fake.CONSUMER_SECRET)}
    )
    return world


async def test_webhooks_take_signed_raw_bodies_only(
    hooked: World,
    client: httpx.AsyncClient,
    db: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    crc = await client.get("/v1/social/x/webhook", params={"crc_token": "abc"})
    assert crc.json() == x.crc_response(fake.CONSUMER_SECRET, "abc")
    post = pothole(coordinates=CENTER)
    body = fake.xaa_mention(post, fake.user(AUTHOR, "wheels_jan"))
    reserialised = json.dumps(json.loads(body), indent=1).encode()
    for sent, signature in (
        (reserialised, fake.sign(body)),  # the same JSON, other bytes
        (body, fake.sign(body, "a-forged-secret")),
        (body, None),
    ):
        headers = {"Content-Type": "application/json"}
        if signature:
            headers["x-twitter-webhooks-signature"] = signature
        refused = await client.post("/v1/social/x/webhook", content=sent, headers=headers)
        assert refused.status_code == 403, refused.text
    assert (await db.execute(text("SELECT count(*) FROM social_post"))).scalar_one() == 0
    signed = {"Content-Type": "application/json", "x-twitter-webhooks-signature": fake.sign(body)}
    for _ in range(2):  # X retries a delivery: kept once
        accepted = await client.post("/v1/social/x/webhook", content=body, headers=signed)
        assert accepted.status_code == 200, accepted.text
    assert (await post_row(db, post["id"])).status == "received"
    jobs = (
        (
            await db.execute(
                text("SELECT args FROM procrastinate_jobs WHERE task_name = 'process_social_posts'")
            )
        )
        .scalars()
        .all()
    )
    assert len(jobs) == 1
    # The job the delivery deferred runs the pipeline over what it kept.
    (ids,) = [args["ids"] for args in jobs]
    outcomes = await process_posts(sessionmaker, hooked.settings, ids)
    assert outcomes == {"ticket_created": 1}
    assert (await post_row(db, post["id"])).status == "ticket_created"
    broken = b'{"data": '
    bad = await client.post(
        "/v1/social/x/webhook",
        content=broken,
        headers={"x-twitter-webhooks-signature": fake.sign(broken)},
    )
    assert bad.status_code == 400


async def test_without_a_consumer_secret_the_webhook_is_absent(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/social/x/webhook", params={"crc_token": "a"})).status_code == 404


# -- replies: X's answers ----------------------------------------------------------------------


def _message(reply_to: dict[str, Any] | None, subject: str = "K-2026-000001 is fixed") -> Message:
    return Message(
        id=1,
        kind="x",
        address=AUTHOR,
        contact_data={},
        subject=subject,
        body=subject,
        link=None,
        unsubscribe_url="https://u",
        ticket_reference="K-2026-000001",
        event="fixed",
        data={"reply_to": reply_to} if reply_to else {},
    )


async def test_the_x_channel_handles_duplicates_rate_limits_and_missing_targets(
    world: World,
) -> None:
    channel = XChannel(world.settings)
    target = {
        "post": "1985123456789000001",
        "handle": "wheels_jan",
        "credentials": "KERBSIDE_TEST_X_USER_TOKEN",
    }
    first = await channel.deliver(_message(target))
    assert isinstance(first, Delivered)
    assert first.provider_id
    # The same words again: X's 403 for duplicate content means they are there already.
    assert await channel.deliver(_message(target)) == Delivered(None)
    world.xapi.fail_next(fake.too_many_requests(int(clock.now().timestamp()) + 60))
    limited = await channel.deliver(_message(target, "K-2026-000001 is closed"))
    assert isinstance(limited, RetryLater)
    assert 0 < (limited.after or 0) <= 60
    assert isinstance(await channel.deliver(_message(None)), Failed)
    missing = await channel.deliver(_message({**target, "credentials": "KERBSIDE_UNSET_X"}))
    assert isinstance(missing, RetryLater)
    await channel.close()


# -- the webcare inbox -------------------------------------------------------------------------


async def test_the_inbox_filters_assigns_answers_and_closes(
    world: World, db: AsyncSession, client: httpx.AsyncClient, settings: Settings
) -> None:
    staff = await make_user(db, role=Role.staff, jurisdiction=world.city)
    headers = await bearer_headers(settings, staff)
    unclear = fake.tweet("@CityOfExample why is the council so slow", lang="en")
    where = pothole("massive pothole, my bike is broken")
    filed = pothole(coordinates=CENTER)
    await receive(db, world.pipeline, [inbound(p) for p in (unclear, where, filed)])
    await db.execute(
        text("UPDATE social_post SET due_at = now() - interval '1 hour' WHERE post_id = :p"),
        {"p": unclear["id"]},
    )
    listed = await client.get("/v1/social/posts", headers=headers)
    assert listed.status_code == 200, listed.text
    items = {i["post_id"]: i for i in listed.json()["items"]}
    assert set(items) == {unclear["id"]}  # the others were answered
    assert items[unclear["id"]]["service_level"] == "overdue"
    assert items[unclear["id"]]["status"] == "needs_human"
    waiting = (
        await client.get("/v1/social/posts", headers=headers, params={"state": "awaiting_location"})
    ).json()["items"]
    assert [i["post_id"] for i in waiting] == [where["id"]]
    everything = (
        await client.get("/v1/social/posts", headers=headers, params={"state": "all", "limit": 2})
    ).json()
    assert len(everything["items"]) == 2
    assert everything["next_before"] is not None
    post_id = items[unclear["id"]]["id"]
    assigned = await client.post(
        f"/v1/social/posts/{post_id}/assign", headers=headers, json={"user_id": str(staff.id)}
    )
    assert assigned.json()["assigned_to"] == str(staff.id)
    answered = await client.post(
        f"/v1/social/posts/{post_id}/answer",
        headers=headers,
        json={"text": "We hear you. Tell us which street, please."},
    )
    assert answered.status_code == 202, answered.text
    row = (await outbox(db))[-1]
    assert (row.event_kind, row.reason, row.reply_to["post"]) == ("answer", "reply", unclear["id"])
    assert (await client.get("/v1/social/posts", headers=headers)).json()["items"] == []
    other = (
        await client.get("/v1/social/posts", headers=headers, params={"state": "awaiting_location"})
    ).json()["items"][0]
    closed = await client.post(
        f"/v1/social/posts/{other['id']}/close",
        headers=headers,
        json={"reason": "answered by phone"},
    )
    assert closed.json()["closed_at"] is not None
    assert closed.json()["service_level"] == "met"
    # Another city's staff see none of it.
    elsewhere = await make_jurisdiction(db)
    stranger = await make_user(db, role=Role.staff, jurisdiction=elsewhere)
    foreign = await bearer_headers(settings, stranger)
    assert (
        await client.post(
            f"/v1/social/posts/{post_id}/close", headers=foreign, json={"reason": "x"}
        )
    ).status_code == 404
    assert (
        await client.get(
            "/v1/social/posts", headers=foreign, params={"jurisdiction": world.city.slug}
        )
    ).status_code == 403


async def test_no_personal_data_of_authors_on_public_endpoints(
    world: World, db: AsyncSession, client: httpx.AsyncClient
) -> None:
    post = world.fakex.mention(pothole(coordinates=CENTER), author="wheels_jan")
    await receive(db, world.pipeline, [inbound(post, world.fakex)])
    row = await post_row(db, post["id"])
    public_id = (
        await db.execute(text("SELECT public_id FROM report WHERE id = :r"), {"r": row.report_id})
    ).scalar_one()
    for url in (
        f"/v1/tickets/{row.reference}",
        f"/v1/reports/{public_id}",
        f"/v1/tickets.geojson?jurisdiction={world.city.slug}",
    ):
        answer = await client.get(url)
        assert answer.status_code == 200, (url, answer.text)
        assert "wheels_jan" not in answer.text, url
        assert AUTHOR not in answer.text, url


# -- the city file ------------------------------------------------------------------------------


def test_the_city_file_names_credentials_never_holds_them() -> None:
    with pytest.raises(ValueError, match="pattern"):
        SocialAccount(platform="x", handle="a", credentials={"bearer_token": "AAAA-secret-value"})
    with pytest.raises(ValueError, match="once"):
        Social(
            accounts=[
                SocialAccount(platform="x", handle="a"),
                SocialAccount(platform="x", handle="A"),
            ]
        )


# -- the demo's own X --------------------------------------------------------------------------


async def test_the_demo_x_serves_mentions_that_become_tickets(
    db: AsyncSession,
    settings: Settings,
    app: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.social.demo import DEMO_ACCOUNT_ID

    monkeypatch.setenv("KERBSIDE_TEST_DEMO_BEARER", "anything")
    city = await make_jurisdiction(db, slug="demo-x")
    await make_service(db, city, "pothole", hashtags={"en": ["pothole"]})
    await make_service(db, city, "streetlight", hashtags={"en": ["streetlight"]})
    await make_service(db, city, "fly_tipping", hashtags={"en": ["flytipping"]})
    await social_config.write(
        db,
        city.id,
        Social(
            accounts=[
                SocialAccount(
                    platform="x",
                    handle="KerbsideDemo",
                    id=DEMO_ACCOUNT_ID,
                    base_url="http://testserver/demo/x",
                    credentials={"bearer_token": "KERBSIDE_TEST_DEMO_BEARER"},
                )
            ],
            streets=[Street(name="Harbour Road", lon=-2.6012, lat=51.4498)],
        ),
    )
    transport = httpx.ASGITransport(app=app)
    source = XSource(settings, httpx.AsyncClient(transport=transport))
    polled = await poll_accounts(sessionmaker, settings, sources={"x": source})
    assert polled.outcomes == {
        "ticket_created": 2,
        "awaiting_location": 1,
        "needs_human": 1,
        "linked": 1,
        "ignored": 1,
    }
    again = await poll_accounts(sessionmaker, settings, sources={"x": source})
    assert (again.posts, again.stored) == (0, 0)  # since_id: nothing twice
    await source.close()


async def test_what_cannot_be_filed_goes_to_a_person_with_the_reason(
    world: World, db: AsyncSession
) -> None:
    outside = pothole(coordinates=(4.8952, 52.3702))  # Amsterdam, far from this city
    to_news = fake.tweet("@CityNews #kuil pothole on Vismarkt", coordinates=CENTER)
    news = inbound(to_news)
    news = InboundPost(**{**{f: getattr(news, f) for f in news.__slots__}, "account": "CityNews"})
    stranger = InboundPost(
        **{**{f: getattr(news, f) for f in news.__slots__}, "account": "nobody", "post_id": "9"}
    )
    counts = await receive(db, world.pipeline, [inbound(outside), news, stranger])
    assert counts.outcomes == {"needs_human": 3}
    assert (await post_row(db, outside["id"])).reason.startswith("not filed: ")
    assert (await post_row(db, to_news["id"])).reason == "this account takes no reports"
    unknown = await post_row(db, "9")
    assert (unknown.reason, unknown.jurisdiction_id) == ("addressed to an unknown account", None)
    assert await tickets(db, world.city) == 0
