# ruff: noqa: F811 (the fixtures imported from test_social are the tests' parameters)
"""Social intake, the rules after linking (issue 18, refs/channels.md 5.2 rules 4 and 6, and
refs/channels-2026.md 1): a post by an author whose ticket is recent is suggested to webcare
(or linked when service and place agree), a post on a fixed ticket reopens it within the
city's window or opens a follow-up after it, and an answer X refuses falls back to the
author's original mention, then a direct message, then the webcare inbox. Against the fake
X speaking the real payloads and error bodies, a real PostGIS and the real outbox.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from app.auth.models import Role
from app.auth.principal import Principal
from app.channels.base import Delivered, Failed, Message
from app.channels.x import XChannel
from app.notify import service as notify
from app.settings import Settings, to_sqlalchemy_url
from app.social import config as social_config
from app.social.polling import poll_accounts
from app.social.service import receive
from app.tickets import workflow
from app.tickets.models import TicketStatus
from tests.factories import bearer_headers, make_user
from tests.fakes import x as fake
from tests.fakes.http import FakeServer, Reply, serving
from tests.test_social import (  # noqa: F401 (fixtures)
    AUTHOR,
    CENTER,
    OTHER_AUTHOR,
    STATION_ROAD,
    World,
    _city,
    at_commit,
    inbound,
    outbox,
    post_row,
    pothole,
    tokens,
    world,
    xapi,
)

STAFF = Principal(kind="user", role=Role.admin, label="test-staff")
# About 40 m and about 2 km from CENTER (-2.5879, 51.4545).
NEAR = (-2.5874, 51.4547)
FAR = (-2.5600, 51.4545)


async def _settings(db: AsyncSession, world: World, **update: Any) -> None:
    social = await social_config.read(db, world.city.id)
    await social_config.write(db, world.city.id, social.model_copy(update=update))
    world.pipeline._accounts = None  # read the city file again


async def _file(world: World, db: AsyncSession, **kw: Any) -> Any:
    post = world.fakex.mention(pothole(coordinates=CENTER, **kw), author="wheels_jan")
    await receive(db, world.pipeline, [inbound(post, world.fakex)])
    return post, await post_row(db, post["id"])


# -- rule 4: the same author's recent ticket ---------------------------------------------------


async def test_rule_4_the_authors_recent_ticket_is_suggested_or_linked_by_place_and_service(
    world: World, db: AsyncSession
) -> None:
    _, first = await _file(world, db)
    assert first.status == "ticket_created"
    # Another conversation, no place, the same service: webcare is asked (no answer yet).
    unplaced = world.fakex.mention(pothole("that pothole again, deeper now"))
    # Near it, the same service: linked without asking.
    near = world.fakex.mention(pothole("pothole, photo from the other side", coordinates=NEAR))
    # Near it, another service: asked.
    lamp = world.fakex.mention(fake.tweet("@CityOfExample #streetlight out", coordinates=NEAR))
    # Far from it: another problem, filed.
    far = world.fakex.mention(pothole("another pothole across town", coordinates=FAR))
    counts = await receive(db, world.pipeline, [inbound(p) for p in (unplaced, near, lamp, far)])
    assert counts.outcomes == {"suggest_merge": 2, "linked": 1, "ticket_created": 1}
    suggested = await post_row(db, unplaced["id"])
    assert (suggested.status, suggested.candidate_ticket_id) == ("suggest_merge", first.ticket_id)
    assert suggested.ticket_id is None
    assert suggested.answered_at is None
    assert first.reference in suggested.reason
    attached = await post_row(db, near["id"])
    assert (attached.link_rule, attached.ticket_id) == ("author", first.ticket_id)
    other = await post_row(db, lamp["id"])
    assert (other.status, other.candidate_ticket_id) == ("suggest_merge", first.ticket_id)
    assert "another service" in other.reason
    assert (other.lon, other.lat) == (NEAR[0], NEAR[1])  # kept for filing it as new
    elsewhere = await post_row(db, far["id"])
    assert (elsewhere.status, elsewhere.link_rule) == ("ticket_created", "intake")
    assert elsewhere.ticket_id != first.ticket_id
    # Nothing was said to the author about the two suggestions.
    answered = {r.reply_to["post"] for r in await outbox(db) if r.reply_to}
    assert not answered & {unplaced["id"], lamp["id"]}


async def test_rule_4_only_within_the_citys_window_and_never_in_the_same_conversation(
    world: World, db: AsyncSession
) -> None:
    original, first = await _file(world, db)
    await db.execute(
        text("UPDATE ticket SET updated_at = now() - interval '3 days' WHERE id = :t"),
        {"t": first.ticket_id},
    )
    old = world.fakex.mention(pothole("that pothole again"))
    await receive(db, world.pipeline, [inbound(old)])
    assert (await post_row(db, old["id"])).status == "awaiting_location"  # 48 h by default
    await _settings(db, world, suggest_merge_within_hours=96)
    wider = world.fakex.mention(pothole("and again that pothole"))
    await receive(db, world.pipeline, [inbound(wider)])
    assert (await post_row(db, wider["id"])).status == "suggest_merge"
    # The same conversation is rule 2's (linked), not a suggestion.
    same = world.fakex.mention(
        pothole("still there", conversation_id=original["id"], replied_to="1986999999999999990")
    )
    await receive(db, world.pipeline, [inbound(same)])
    assert (await post_row(db, same["id"])).link_rule == "conversation"


async def test_webcare_links_a_suggestion_or_files_it_as_new(
    world: World, db: AsyncSession, client: httpx.AsyncClient, settings: Settings
) -> None:
    staff = await make_user(db, role=Role.staff, jurisdiction=world.city)
    headers = await bearer_headers(settings, staff)
    _, first = await _file(world, db)
    unplaced = world.fakex.mention(pothole("that pothole again, deeper now"))
    lamp = world.fakex.mention(fake.tweet("@CityOfExample #streetlight out", coordinates=NEAR))
    await receive(db, world.pipeline, [inbound(unplaced), inbound(lamp)])
    listed = await client.get(
        "/v1/social/posts", headers=headers, params={"state": "suggest_merge"}
    )
    assert listed.status_code == 200, listed.text
    items = {i["post_id"]: i for i in listed.json()["items"]}
    assert set(items) == {unplaced["id"], lamp["id"]}
    assert items[unplaced["id"]]["candidate_reference"] == first.reference
    # Confirmed: linked to that ticket, and answered in the thread.
    linked = await client.post(
        f"/v1/social/posts/{items[unplaced['id']]['id']}/suggestion",
        headers=headers,
        json={"decision": "link"},
    )
    assert linked.status_code == 200, linked.text
    assert (linked.json()["status"], linked.json()["link_rule"]) == ("linked", "suggested")
    assert linked.json()["ticket_reference"] == first.reference
    assert linked.json()["candidate_reference"] is None
    answer = (await outbox(db))[-1]
    assert (answer.event_kind, answer.reply_to["post"]) == ("post_linked", unplaced["id"])
    # Decided once only.
    again = await client.post(
        f"/v1/social/posts/{items[unplaced['id']]['id']}/suggestion",
        headers=headers,
        json={"decision": "new"},
    )
    assert again.status_code == 409
    # Rejected: filed as a new report, where the post said.
    new = await client.post(
        f"/v1/social/posts/{items[lamp['id']]['id']}/suggestion",
        headers=headers,
        json={"decision": "new"},
    )
    assert new.status_code == 200, new.text
    assert (new.json()["status"], new.json()["link_rule"]) == ("ticket_created", "intake")
    assert new.json()["ticket_reference"] not in (None, first.reference)
    # Both decided: no suggestion is left.
    assert (
        await client.get("/v1/social/posts", headers=headers, params={"state": "suggest_merge"})
    ).json()["items"] == []


# -- the reopen policy -------------------------------------------------------------------------


async def _fixed(db: AsyncSession, ticket_id: int, hours_ago: float = 0) -> None:
    await workflow.change_status(db, ticket_id, TicketStatus.fixed, actor=STAFF)
    await db.execute(
        text("UPDATE ticket SET fixed_at = now() - make_interval(secs => :s) WHERE id = :t"),
        {"s": hours_ago * 3600, "t": ticket_id},
    )


async def _status(db: AsyncSession, ticket_id: int) -> str:
    found = await db.execute(text("SELECT status FROM ticket WHERE id = :t"), {"t": ticket_id})
    return str(found.scalar_one())


async def test_a_report_on_a_ticket_fixed_within_72_hours_reopens_it_and_tells_its_reporters(
    world: World, db: AsyncSession
) -> None:
    original, first = await _file(world, db)
    await _fixed(db, first.ticket_id, hours_ago=10)
    await at_commit(db)
    before = len(await outbox(db))
    # A thank-you in the thread only joins the timeline.
    thanks = fake.tweet(
        "@CityOfExample thank you, great work, fixed!",
        author_id=OTHER_AUTHOR,
        replied_to=original["id"],
        conversation_id=original["id"],
    )
    await receive(db, world.pipeline, [inbound(thanks)])
    assert (await post_row(db, thanks["id"])).link_rule == "reply"
    assert await _status(db, first.ticket_id) == "fixed"
    # "It is back": reopened, with a status change its reporter hears of in their thread.
    back = fake.tweet(
        "@CityOfExample #kuil the pothole is back, even worse than before",
        replied_to=original["id"],
        conversation_id=original["id"],
    )
    counts = await receive(db, world.pipeline, [inbound(back)])
    assert counts.outcomes == {"linked": 1}
    row = await post_row(db, back["id"])
    assert (row.link_rule, row.ticket_id) == ("reply", first.ticket_id)
    assert row.reason == f"reopened {first.reference}"
    assert await _status(db, first.ticket_id) == "reopened"
    await at_commit(db)
    notices = [r for r in (await outbox(db))[before:] if r.event_kind == "status_changed"]
    # Its reporter and the author who thanked (a follower since) hear of it.
    assert sorted(n.address for n in notices) == sorted([AUTHOR, OTHER_AUTHOR])
    assert notices[0].ticket_id == first.ticket_id


async def test_after_the_window_a_report_opens_a_follow_up_that_names_the_old_ticket(
    world: World, db: AsyncSession
) -> None:
    original, first = await _file(world, db)
    await _fixed(db, first.ticket_id, hours_ago=80)
    back = fake.tweet(
        "@CityOfExample #kuil the pothole is back",
        author_id=OTHER_AUTHOR,
        replied_to=original["id"],
        conversation_id=original["id"],
    )
    counts = await receive(db, world.pipeline, [inbound(back)])
    assert counts.outcomes == {"ticket_created": 1}
    row = await post_row(db, back["id"])
    assert (row.link_rule, row.reason) == ("follow_up", f"follow-up of {first.reference}")
    assert row.ticket_id != first.ticket_id
    assert await _status(db, first.ticket_id) == "fixed"
    line = (
        await db.execute(
            text("SELECT public, note FROM ticket_event WHERE ticket_id = :t AND kind = 'comment'"),
            {"t": row.ticket_id},
        )
    ).one()
    assert (line.public, line.note) == (True, f"Follow-up of {first.reference}")
    # A city that keeps the window open longer reopens instead.
    await _settings(db, world, reopen_within_hours=24 * 7)
    again = fake.tweet(
        "@CityOfExample #kuil pothole still back",
        author_id="1299000000000000077",
        replied_to=original["id"],
        conversation_id=original["id"],
    )
    await receive(db, world.pipeline, [inbound(again)])
    assert (await post_row(db, again["id"])).ticket_id == first.ticket_id
    assert await _status(db, first.ticket_id) == "reopened"


# -- answers X refuses -------------------------------------------------------------------------


def _message(target: dict[str, Any], words: str = "K-2026-000001 is on our list") -> Message:
    return Message(
        id=1,
        kind="x",
        address=AUTHOR,
        contact_data={},
        subject=words,
        body=words,
        link=None,
        unsubscribe_url="",
        ticket_reference="K-2026-000001",
        event="acknowledged",
        data={"reply_to": target},
    )


async def test_a_refused_reply_goes_to_the_original_mention_then_a_direct_message(
    world: World,
) -> None:
    original = world.fakex.mention(pothole(coordinates=CENTER))
    # A later post of the author that does not mention the city: X refuses the answer.
    later = world.fakex.mention(
        fake.tweet("and it got deeper", replied_to=original["id"], mentions_city=False)
    )
    target = {
        "post": later["id"],
        "mention": original["id"],
        "author": AUTHOR,
        "handle": "wheels_jan",
        "credentials": "KERBSIDE_TEST_X_USER_TOKEN",
    }
    channel = XChannel(world.settings)
    try:
        delivered = await channel.deliver(_message(target))
        assert isinstance(delivered, Delivered)
        assert world.fakex.replies[-1]["in_reply_to"] == original["id"]
        # The author limited replies on a post that did not mention the city either.
        closed = world.fakex.mention(
            fake.tweet("pothole", mentions_city=False, reply_settings="mentionedUsers")
        )
        lone = {**target, "post": closed["id"], "mention": None}
        refused = await channel.deliver(_message(lone, "K-2026-000001 is scheduled"))
        assert isinstance(refused, Failed)
        assert refused.refused
        assert "not allowed" in refused.reason
        assert "no direct message" in refused.reason
        # The account sends direct messages: the answer goes there.
        dm = await channel.deliver(_message({**lone, "dm": True}, "K-2026-000001 is fixed"))
        assert isinstance(dm, Delivered)
        assert world.fakex.dms[-1]["to"] == AUTHOR
        assert dm.provider_id == world.fakex.dms[-1]["id"]
        # Unless the person accepts none from the city.
        world.fakex.dm_closed.add(AUTHOR)
        none = await channel.deliver(_message({**lone, "dm": True}, "K-2026-000001 is closed"))
        assert isinstance(none, Failed)
        assert none.refused
        assert "You cannot send messages to this user." in none.reason
    finally:
        await channel.close()


async def test_a_post_we_could_not_answer_returns_to_the_webcare_inbox(
    world: World,
    db: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    settings: Settings,
) -> None:
    staff = await make_user(db, role=Role.staff, jurisdiction=world.city)
    headers = await bearer_headers(settings, staff)
    # A report the city may not answer (it came in without a mention, replies limited).
    post = world.fakex.mention(
        pothole(coordinates=CENTER, mentions_city=False, reply_settings="following")
    )
    await receive(db, world.pipeline, [inbound(post)])
    await at_commit(db)
    (ack,) = await outbox(db)
    attempt = await notify.deliver(sessionmaker, {"x": XChannel(world.settings)}, settings, ack.id)
    assert attempt.status == "failed"
    error = (
        await db.execute(text("SELECT last_error FROM notification WHERE id = :n"), {"n": ack.id})
    ).scalar_one()
    assert error.startswith("could not answer: X refused the reply to")
    row = await post_row(db, post["id"])
    assert row.answered_at is None
    assert row.answer_failure == error
    listed = (
        await client.get("/v1/social/posts", headers=headers, params={"state": "could_not_answer"})
    ).json()["items"]
    assert [i["post_id"] for i in listed] == [post["id"]]
    assert listed[0]["answer_failure"] == error
    assert listed[0]["service_level"] != "met"
    # A linked post by the reporter, without a mention, is answered on their first post.
    later = world.fakex.mention(
        fake.tweet("#kuil any news? it is worse", replied_to=post["id"], conversation_id=post["id"])
    )
    await receive(db, world.pipeline, [inbound(later)])
    linked = [r for r in await outbox(db) if r.event_kind == "post_linked"]
    assert linked[-1].reply_to["post"] == later["id"]
    assert linked[-1].reply_to["mention"] == post["id"]


async def test_webcare_answering_a_post_we_could_not_answer_clears_it_once_delivered(
    world: World,
    db: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    settings: Settings,
) -> None:
    staff = await make_user(db, role=Role.staff, jurisdiction=world.city)
    headers = await bearer_headers(settings, staff)
    channels = {"x": XChannel(world.settings)}
    post = world.fakex.mention(
        pothole(coordinates=CENTER, mentions_city=False, reply_settings="following")
    )
    await receive(db, world.pipeline, [inbound(post)])
    await at_commit(db)
    (ack,) = await outbox(db)
    assert (await notify.deliver(sessionmaker, channels, settings, ack.id)).status == "failed"
    row = await post_row(db, post["id"])

    async def inbox(state: str) -> list[str]:
        found = await client.get("/v1/social/posts", headers=headers, params={"state": state})
        assert found.status_code == 200
        return [i["post_id"] for i in found.json()["items"]]

    async def answer(words: str) -> int:
        sent = await client.post(
            f"/v1/social/posts/{row.id}/answer", headers=headers, json={"text": words}
        )
        assert sent.status_code == 202, sent.text
        return int(sent.json()["notification_id"])

    # X refuses webcare's answer in the thread too: still a post we could not answer.
    first = await answer("Thanks, we are on it")
    assert (await notify.deliver(sessionmaker, channels, settings, first)).status == "failed"
    assert await inbox("could_not_answer") == [post["id"]]
    # The account may send direct messages now: the answer reaches the author that way.
    await _settings(
        db,
        world,
        accounts=[
            a.model_copy(update={"direct_messages": True})
            for a in (await social_config.read(db, world.city.id)).accounts
        ],
    )
    second = await answer("Thanks, we are on it (by message)")
    assert await inbox("could_not_answer") == [post["id"]]  # not until it is delivered
    assert (await notify.deliver(sessionmaker, channels, settings, second)).status == "sent"
    assert world.fakex.dms[-1]["to"] == AUTHOR
    assert await inbox("could_not_answer") == []
    cleared = await post_row(db, post["id"])
    assert cleared.answered_at is not None
    assert (cleared.answer_failed_at, cleared.answer_failure) == (None, None)
    assert post["id"] not in await inbox("unanswered")


# -- a page's answers together -----------------------------------------------------------------


async def _delivery_jobs(db: AsyncSession) -> int:
    found = await db.execute(
        text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'deliver_notifications'")
    )
    return int(found.scalar_one())


async def _answers(db: AsyncSession) -> list[str]:
    """The posts answered in their thread (a note or a question), in the outbox's order."""
    return [
        r.reply_to["post"]
        for r in await outbox(db)
        if r.event_kind in ("post_linked", "location_asked")
    ]


async def test_a_pages_answers_are_queued_together_in_order_each_once(
    world: World, db: AsyncSession
) -> None:
    original, _ = await _file(world, db)
    jobs = await _delivery_jobs(db)
    page = [
        fake.tweet("@CityOfExample still there", author_id="501", replied_to=original["id"]),
        world.fakex.mention(pothole("pothole, somewhere", author_id="502")),
        fake.tweet("@CityOfExample worse now", author_id="503", replied_to=original["id"]),
    ]
    counts = await receive(db, world.pipeline, [inbound(p) for p in page])
    assert counts.outcomes == {"linked": 2, "awaiting_location": 1}
    assert await _answers(db) == [p["id"] for p in page]
    assert await _delivery_jobs(db) == jobs + 1  # one delivery job for the page
    # The same page again: nothing is answered twice, no job is deferred.
    again = await receive(db, world.pipeline, [inbound(p) for p in page])
    assert again.stored == 0
    assert await _answers(db) == [p["id"] for p in page]
    assert await _delivery_jobs(db) == jobs + 1
    # A post of the page the intake refuses (outside the city): the page is undone with the
    # answers it gathered, and run post by post; each post is answered once.
    second = [
        world.fakex.mention(pothole("pothole, no idea where", author_id="504")),
        pothole(coordinates=(4.8952, 52.3702), author_id="505"),
        fake.tweet("@CityOfExample any news?", author_id="506", replied_to=original["id"]),
    ]
    counts = await receive(db, world.pipeline, [inbound(p) for p in second])
    assert counts.outcomes == {"awaiting_location": 1, "needs_human": 1, "linked": 1}
    assert await _answers(db) == [p["id"] for p in page] + [second[0]["id"], second[2]["id"]]


# -- a crash mid-page --------------------------------------------------------------------------


async def test_a_crash_mid_page_keeps_nothing_of_it_and_the_next_poll_does_each_post_once(
    committed_db: async_sessionmaker[AsyncSession],
    database_url: str,
    settings: Settings,
    xapi: tuple[FakeServer, fake.FakeX],
    tokens: None,
) -> None:
    server, state = xapi
    async with committed_db() as session, session.begin():
        city = await _city(session, server.url)
    # The geocoder holds the address post (the middle of the page) until the worker is gone.
    entered, release = threading.Event(), threading.Event()

    def geocoder(request: Any) -> Reply:
        if not release.is_set():
            entered.set()
            release.wait(10)
        lon, lat = STATION_ROAD
        found = [{"lat": str(lat), "lon": str(lon), "display_name": "Station Road 12"}]
        return Reply.json(200, json.dumps(found))

    filed = []
    for n in range(10):
        author = str(1299000000000001000 + n)
        filed.append(state.mention(pothole(coordinates=_spread(n), author_id=author)))
        if n % 2:
            state.mention(pothole(f"no idea where, sorry {n}", author_id=str(2 * 10**18 + n)))
    state.mention(pothole("pothole at Station Road 12, 4811 AB", author_id="1299000000000002000"))
    for n, post in enumerate(filed[:6]):
        state.mention(
            fake.tweet(
                f"@CityOfExample still there {n}",
                author_id=str(3 * 10**18 + n),
                replied_to=post["id"],
            )
        )
    state.mention(fake.tweet("@CityOfExample thanks for the concert"))
    state.mention(fake.tweet("RT @someone: #kuil", retweeted=filed[0]["id"]))
    total = len(state.mentions)
    crash_engine = create_async_engine(
        to_sqlalchemy_url(database_url),
        poolclass=NullPool,
        connect_args={"application_name": "kerbside-social-crash"},
    )
    try:
        with serving(geocoder) as geo:
            local = settings.model_copy(
                update={"x_api_base_url": server.url, "geocoder_url": geo.url}
            )
            worker = asyncio.create_task(
                poll_accounts(async_sessionmaker(crash_engine, expire_on_commit=False), local)
            )
            assert await asyncio.to_thread(entered.wait, 10)
            # The worker dies mid-page: its connection is gone, its transaction with it.
            with psycopg.connect(database_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'kerbside-social-crash'"
                )
            release.set()
            # The connection is gone: SQLAlchemy's error, or psycopg's from a hot statement.
            with pytest.raises((SQLAlchemyError, psycopg.OperationalError)):
                await worker
            async with committed_db() as session:
                assert await _counts(session) == (0, 0, 0, 0)
            # The next run reads the page again and does each post once.
            polled = await poll_accounts(committed_db, local)
            assert (polled.posts, polled.stored, polled.errors) == (total, total, [])
            assert polled.outcomes == {
                "ticket_created": 11,
                "linked": 6,
                "awaiting_location": 5,
                "needs_human": 1,
                "ignored": 1,
            }
            async with committed_db() as session:
                kept = await _counts(session)
                assert kept == (total, 11, 11 + 6 + 5, 0)
                answers = (
                    await session.execute(
                        text(
                            "SELECT event_kind, count(*) FROM notification"
                            " GROUP BY event_kind ORDER BY event_kind"
                        )
                    )
                ).all()
                assert [tuple(a) for a in answers] == [
                    ("location_asked", 5),
                    ("post_linked", 6),
                    ("ticket_opened", 11),
                ]
                # Nothing is processed twice when the page comes again.
                await session.execute(text("UPDATE social_cursor SET since_id = NULL"))
                await session.commit()
            again = await poll_accounts(committed_db, local)
            assert (again.posts, again.stored) == (total, 0)
            async with committed_db() as session:
                assert await _counts(session) == kept
    finally:
        await crash_engine.dispose()
        async with committed_db() as session, session.begin():
            await session.execute(text("DELETE FROM social_cursor"))
        assert city.id


def _spread(n: int) -> tuple[float, float]:
    """Points about 200 m apart around the centre: ten tickets, none joins another."""
    return (round(CENTER[0] + 0.003 * (n % 5), 6), round(CENTER[1] + 0.002 * (n // 5), 6))


async def _counts(session: AsyncSession) -> tuple[int, int, int, int]:
    """Posts kept, reports filed, outbox rows, posts still to be processed."""
    found = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM social_post), (SELECT count(*) FROM report),"
                " (SELECT count(*) FROM notification),"
                " (SELECT count(*) FROM social_post WHERE status = 'received')"
            )
        )
    ).one()
    return (found[0], found[1], found[2], found[3])
