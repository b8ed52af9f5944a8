"""Facebook, WhatsApp, Mastodon and Bluesky through the social pipeline (issue 20), end to end:
the city file's accounts, Meta's signed webhooks and the polling job bring posts in; the
pipeline files them (a chat through the reporting dialogue); the outbox answers in the thread
through the registry's channel, at local fakes speaking the platforms' payloads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels.threads import ThreadChannel
from app.core import clock
from app.jurisdictions.models import Jurisdiction
from app.notify import service as notify
from app.settings import Settings
from app.social import config as social_config
from app.social.config import Social, SocialAccount, Street
from app.social.polling import end_silent_dialogues, poll_accounts, process_posts
from tests.factories import CITY, make_jurisdiction, make_service
from tests.fakes import bluesky as fake_bsky
from tests.fakes import facebook as fake_fb
from tests.fakes import mastodon as fake_masto
from tests.fakes import whatsapp as fake_wa
from tests.fakes.http import FakeServer, serving

LON, LAT = CITY.center  # (-2.5879, 51.4545)
VISMARKT = (-2.5901, 51.4551)
ENV = {
    "KERBSIDE_TEST_FB_TOKEN": fake_fb.PAGE_TOKEN,
    "KERBSIDE_TEST_FB_SECRET": fake_fb.APP_SECRET,
    "KERBSIDE_TEST_FB_VERIFY": fake_fb.VERIFY_TOKEN,
    "KERBSIDE_TEST_WA_TOKEN": fake_wa.TOKEN,
    "KERBSIDE_TEST_WA_SECRET": fake_wa.APP_SECRET,
    "KERBSIDE_TEST_WA_VERIFY": fake_wa.VERIFY_TOKEN,
    "KERBSIDE_TEST_MASTODON_TOKEN": fake_masto.TOKEN,
    "KERBSIDE_TEST_BSKY_PASSWORD": fake_bsky.APP_PASSWORD,
}
PSID = "6543210987654321"


def wa_sign(body: bytes) -> str:
    """WhatsApp signs as Facebook does (X-Hub-Signature-256), with its app's secret."""
    return fake_fb.sign(body, fake_wa.APP_SECRET)


WA_ID = "31612345678"


@dataclass
class Fakes:
    graph: fake_fb.FakeGraph
    cloud: fake_wa.FakeCloudAPI
    masto: fake_masto.FakeMastodon
    pds: fake_bsky.FakePDS
    servers: dict[str, FakeServer]


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    now = clock.now()
    state = Fakes(
        fake_fb.FakeGraph(now=now),
        fake_wa.FakeCloudAPI(now=now),
        fake_masto.FakeMastodon(now=now),
        fake_bsky.FakePDS(now=now),
        {},
    )
    with (
        serving(state.graph) as graph,
        serving(state.cloud) as cloud,
        serving(state.masto) as masto,
        serving(state.pds) as pds,
    ):
        state.cloud.url, state.masto.url = cloud.url, masto.url
        state.servers = {"graph": graph, "cloud": cloud, "masto": masto, "pds": pds}
        yield state


@pytest.fixture
async def city(db: AsyncSession, fakes: Fakes) -> Jurisdiction:
    city = await make_jurisdiction(db, slug="wired")
    await make_service(
        db,
        city,
        "pothole",
        names={"en": "Pothole", "nl": "Gat in de weg"},
        hashtags={"en": ["pothole"], "nl": ["kuil"]},
        keywords={"en": ["pothole"], "nl": ["kuil", "gat in de weg"]},
    )
    await make_service(db, city, "streetlight", names={"en": "Streetlight", "nl": "Straatlantaarn"})
    servers = fakes.servers
    accounts = [
        SocialAccount(
            platform="facebook",
            handle="gemeente",
            id=fake_fb.PAGE_ID,
            base_url=f"{servers['graph'].url}/v24.0",
            credentials={
                "access_token": "KERBSIDE_TEST_FB_TOKEN",
                "app_secret": "KERBSIDE_TEST_FB_SECRET",
                "verify_token": "KERBSIDE_TEST_FB_VERIFY",
            },
            poll=False,
        ),
        SocialAccount(
            platform="whatsapp",
            handle="gemeente-whatsapp",
            id=fake_wa.PHONE_NUMBER_ID,
            base_url=f"{servers['cloud'].url}/v24.0",
            credentials={
                "access_token": "KERBSIDE_TEST_WA_TOKEN",
                "app_secret": "KERBSIDE_TEST_WA_SECRET",
                "verify_token": "KERBSIDE_TEST_WA_VERIFY",
            },
            update_template="ticket_update",
            template_languages={"nl": "nl_NL"},
            poll=False,
        ),
        SocialAccount(
            platform="mastodon",
            handle="gemeente",
            base_url=servers["masto"].url,
            credentials={"access_token": "KERBSIDE_TEST_MASTODON_TOKEN"},
        ),
        SocialAccount(
            platform="bluesky",
            handle=fake_bsky.HANDLE,
            base_url=servers["pds"].url,
            credentials={"app_password": "KERBSIDE_TEST_BSKY_PASSWORD"},
        ),
    ]
    social = Social(
        accounts=accounts, streets=[Street(name="Vismarkt", lon=VISMARKT[0], lat=VISMARKT[1])]
    )
    await social_config.write(db, city.id, social)
    return city


async def rows(db: AsyncSession, platform: str) -> list[Any]:
    found = await db.execute(
        text(
            "SELECT p.*, t.reference FROM social_post p LEFT JOIN ticket t ON t.id = p.ticket_id"
            " WHERE p.platform = :p ORDER BY p.id"
        ),
        {"p": platform},
    )
    return list(found.all())


async def outbox(db: AsyncSession, kind: str) -> list[Any]:
    await db.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # the event stream, as at COMMIT
    await db.execute(text("SET CONSTRAINTS ALL DEFERRED"))
    found = await db.execute(
        text(
            "SELECT n.id, n.event_kind, n.reason, n.reply_to, n.body, n.status, c.address"
            " FROM notification n JOIN contact c ON c.id = n.contact_id"
            " WHERE c.kind = :kind ORDER BY n.id"
        ),
        {"kind": kind},
    )
    return list(found.all())


async def send(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, kind: str, row_id: int
) -> str:
    channel = ThreadChannel(kind, settings)
    try:
        attempt = await notify.deliver(sessionmaker, {kind: channel}, settings, row_id)
    finally:
        await channel.close()
    return str(attempt.status)


async def deliver_webhook(
    client: httpx.AsyncClient, platform: str, body: bytes, signature: str | None
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return await client.post(f"/v1/social/{platform}/webhook", content=body, headers=headers)


async def deferred_ids(db: AsyncSession) -> list[list[int]]:
    jobs = await db.execute(
        text(
            "SELECT args FROM procrastinate_jobs WHERE task_name = 'process_social_posts'"
            " ORDER BY id"
        )
    )
    return [args["ids"] for args in jobs.scalars().all()]


# -- Mastodon: polled, filed, answered in the thread -------------------------------------------


async def test_a_mastodon_mention_becomes_a_ticket_answered_in_its_thread(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    status = fakes.masto.mention(
        "pat@remote.example",
        "<p>@gemeente #kuil diep gat in de weg op de Vismarkt</p>",
        visibility="public",
    )
    polled = await poll_accounts(sessionmaker, settings)
    assert polled.outcomes == {"ticket_created": 1}, polled.errors
    (row,) = await rows(db, "mastodon")
    assert (row.status, row.service_code, row.location_source) == (
        "ticket_created",
        "pothole",
        "gazetteer",
    )
    (ack,) = await outbox(db, "mastodon")
    assert ack.event_kind == "ticket_opened"
    # The reply target is kept per ticket with the secret's *name* only.
    assert ack.reply_to is None  # the consent's evidence carries it, not the row
    evidence = (
        await db.execute(
            text("SELECT evidence FROM contact_consent WHERE ticket_id = :t"), {"t": row.ticket_id}
        )
    ).scalar_one()
    assert evidence["reply_to"]["env"] == {"access_token": "KERBSIDE_TEST_MASTODON_TOKEN"}
    assert fake_masto.TOKEN not in json.dumps(evidence)
    assert await send(sessionmaker, settings, "mastodon", ack.id) == "sent"
    (reply,) = fakes.masto.posted
    assert reply["in_reply_to_id"] == status["id"]
    assert reply["visibility"] == "unlisted"  # a public thread's answer stays off timelines
    assert reply["status"].startswith("@pat@remote.example ")
    assert row.reference in reply["status"]
    (request,) = fakes.servers["masto"].to("/api/v1/statuses")
    assert request.headers["idempotency-key"] == f"kerbside-outbox-{ack.id}"
    # The next poll starts after what was read: nothing twice.
    again = await poll_accounts(sessionmaker, settings)
    assert (again.posts, again.stored) == (0, 0)


# -- Facebook: a signed comment delivery, a comment reply --------------------------------------


async def test_a_facebook_comment_through_the_signed_webhook_is_answered_with_a_comment(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    check = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}
    ok = await client.get(
        "/v1/social/facebook/webhook", params={**check, "hub.verify_token": fake_fb.VERIFY_TOKEN}
    )
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = await client.get(
        "/v1/social/facebook/webhook", params={**check, "hub.verify_token": "guess"}
    )
    assert wrong.status_code == 403
    comment = f"{fake_fb.PAGE_ID}_1234_5678"
    fakes.graph.comments.add(comment)
    value = fake_fb.comment_value(
        f"{fake_fb.PAGE_ID}_1234",
        comment,
        "7000000001",
        "#kuil diep gat in de weg op de Vismarkt",
        created_time=int(clock.now().timestamp()),
    )
    body = fake_fb.feed_delivery(value)
    for _ in range(2):  # Meta retries a delivery: kept once, processed once
        accepted = await deliver_webhook(client, "facebook", body, fake_fb.sign(body))
        assert accepted.status_code == 200, accepted.text
    assert len(await rows(db, "facebook")) == 1
    (ids,) = await deferred_ids(db)
    assert await process_posts(sessionmaker, settings, ids) == {"ticket_created": 1}
    (row,) = await rows(db, "facebook")
    (ack,) = await outbox(db, "facebook")
    assert await send(sessionmaker, settings, "facebook", ack.id) == "sent"
    ((answered, words),) = fakes.graph.comment_replies
    assert answered == comment
    assert row.reference in words
    assert "Pat" not in words  # the author's name is not copied into an answer


async def test_forged_and_reserialised_meta_deliveries_are_refused(
    city: Jurisdiction, db: AsyncSession, client: httpx.AsyncClient
) -> None:
    body = fake_wa.delivery(fake_wa.text_message("wamid.FORGED", "#kuil gat"))
    reserialised = json.dumps(json.loads(body), indent=1).encode()
    for platform, sent, signature in (
        ("whatsapp", body, fake_fb.sign(body, "a-forged-secret")),
        ("whatsapp", reserialised, wa_sign(body)),
        ("whatsapp", body, None),
        ("facebook", body, fake_fb.sign(body, fake_wa.APP_SECRET)),  # another app's secret
    ):
        refused = await deliver_webhook(client, platform, sent, signature)
        assert refused.status_code == 401, refused.text
    assert (await db.execute(text("SELECT count(*) FROM social_post"))).scalar_one() == 0
    signed_junk = b"[1, 2]"
    junk = await deliver_webhook(client, "whatsapp", signed_junk, wa_sign(signed_junk))
    assert junk.status_code == 400


# -- WhatsApp: a chat that lacks a location, the dialogue, the window --------------------------


async def test_a_whatsapp_chat_is_asked_for_the_place_filed_and_updated_by_template(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    fakes.cloud.last_message[WA_ID] = clock.now()
    at = int(clock.now().timestamp())
    answered: list[str] = []

    async def say(*messages: dict[str, Any]) -> dict[str, int]:
        body = fake_wa.delivery(*messages, wa_id=WA_ID)
        accepted = await deliver_webhook(client, "whatsapp", body, wa_sign(body))
        assert accepted.status_code == 200, accepted.text
        outcomes = await process_posts(sessionmaker, settings, (await deferred_ids(db))[-1])
        sent = fakes.cloud.sent
        for row in await outbox(db, "whatsapp"):
            if row.status == "pending":
                assert await send(sessionmaker, settings, "whatsapp", row.id) == "sent"
                answered.append(sent[-1]["text"]["body"])
        return outcomes

    first = fake_wa.text_message("wamid.1", "#kuil er zit een gat in de weg", at=at)
    assert await say(first) == {"in_dialogue": 1}
    assert "locatie" in answered[-1].lower()  # Dutch, and it asks where
    assert fakes.cloud.sent[-1]["context"] == {"message_id": "wamid.1"}
    # The same delivery again: nothing twice (no post, no job, no answer).
    again = fake_wa.delivery(first, wa_id=WA_ID)
    assert (await deliver_webhook(client, "whatsapp", again, wa_sign(again))).status_code == 200
    assert len(await deferred_ids(db)) == 1
    assert len(answered) == 1
    assert await say(fake_wa.location_message("wamid.2", LAT, LON, at=at + 60)) == {
        "in_dialogue": 1
    }
    assert "foto" in answered[-1].lower()
    assert await say(fake_wa.text_message("wamid.3", "nee", at=at + 120)) == {"in_dialogue": 1}
    assert "klopt dit" in answered[-1].lower()
    assert await say(fake_wa.text_message("wamid.4", "ja", at=at + 180)) == {"ticket_created": 1}
    filed = (await rows(db, "whatsapp"))[-1]
    # One confirmation: the intake's acknowledgement, with the reference, inside the window.
    assert len(answered) == 4
    assert filed.reference in answered[-1]
    assert fakes.cloud.sent[-1]["type"] == "text"
    assert (await outbox(db, "whatsapp"))[-1].event_kind == "ticket_opened"
    # A day later the window has closed: a status update goes out as the approved template.
    later = clock.now() - timedelta(hours=25)
    fakes.cloud.last_message[WA_ID] = later
    await db.execute(
        text(
            "UPDATE contact SET data = data || jsonb_build_object('last_inbound_at',"
            " CAST(:t AS text)) WHERE kind = 'whatsapp' AND address = :a"
        ),
        {"t": later.isoformat(), "a": WA_ID},
    )
    from app.auth.models import Role
    from app.auth.principal import Principal
    from app.tickets import workflow
    from app.tickets.models import TicketStatus

    staff = Principal(kind="user", role=Role.admin, label="test-staff")
    await workflow.change_status(db, filed.ticket_id, TicketStatus.acknowledged, actor=staff)
    update = (await outbox(db, "whatsapp"))[-1]
    assert update.event_kind == "status_changed"
    assert await send(sessionmaker, settings, "whatsapp", update.id) == "sent"
    template = fakes.cloud.sent[-1]
    assert template["type"] == "template"
    assert template["template"]["name"] == "ticket_update"
    assert template["template"]["language"] == {"code": "nl_NL"}
    parameters = template["template"]["components"][0]["parameters"]
    assert parameters[0] == {"type": "text", "text": filed.reference}
    assert WA_ID not in json.dumps(template["template"])


async def test_a_whatsapp_photo_is_fetched_by_id_into_the_photo_pipeline_and_filed(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    from tests.images import jpeg

    fakes.cloud.media["4490709327384033"] = (jpeg((320, 240), lon=LON, lat=LAT), "image/jpeg")
    at = int(clock.now().timestamp())
    photo = fake_wa.image_message(
        "wamid.P1", "4490709327384033", caption="#kuil gat in de weg", at=at
    )
    for message in (photo, fake_wa.text_message("wamid.P2", "ja", at=at + 60)):
        body = fake_wa.delivery(message, wa_id=WA_ID)
        assert (await deliver_webhook(client, "whatsapp", body, wa_sign(body))).status_code == 200
        await process_posts(sessionmaker, settings, (await deferred_ids(db))[-1])
    _, filed = await rows(db, "whatsapp")
    # The photo's GPS placed it and it was the photo: the dialogue only asked to confirm.
    question = (await outbox(db, "whatsapp"))[0]
    assert "1 foto" in question.body, question.body
    assert filed.status == "ticket_created"
    photos = await db.execute(
        text("SELECT count(*) FROM photo WHERE ticket_id = :t"), {"t": filed.ticket_id}
    )
    assert photos.scalar_one() == 1
    (lookup,) = fakes.servers["cloud"].to("/v24.0/4490709327384033")
    assert lookup.headers["authorization"] == f"Bearer {fake_wa.TOKEN}"


async def test_whatsapp_receipts_mark_the_outbox_rows_once(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from app.auth.models import Role
    from app.auth.principal import Principal
    from app.tickets import workflow
    from app.tickets.models import TicketStatus
    from tests.images import jpeg

    fakes.cloud.last_message[WA_ID] = clock.now()
    fakes.cloud.media["4490709327384099"] = (jpeg((320, 240), lon=LON, lat=LAT), "image/jpeg")
    at = int(clock.now().timestamp())
    photo = fake_wa.image_message("wamid.R1", "4490709327384099", caption="#kuil gat", at=at)
    for message in (photo, fake_wa.text_message("wamid.R2", "ja", at=at + 60)):
        body = fake_wa.delivery(message, wa_id=WA_ID)
        assert (await deliver_webhook(client, "whatsapp", body, wa_sign(body))).status_code == 200
        await process_posts(sessionmaker, settings, (await deferred_ids(db))[-1])
    filed = (await rows(db, "whatsapp"))[-1]
    assert filed.status == "ticket_created"
    ack = (await outbox(db, "whatsapp"))[-1]
    assert ack.event_kind == "ticket_opened"
    assert await send(sessionmaker, settings, "whatsapp", ack.id) == "sent"
    wamid = await provider_id(db, ack.id)

    async def receipts(*statuses: dict[str, Any]) -> None:
        body = fake_wa.receipts_delivery(*statuses)
        answer = await deliver_webhook(client, "whatsapp", body, wa_sign(body))
        assert answer.status_code == 200, answer.text

    async def receipt_lines() -> list[dict[str, Any]]:
        found = await db.execute(
            text(
                "SELECT kind, public, data FROM ticket_event WHERE ticket_id = :t"
                " AND data ? 'receipt' ORDER BY id"
            ),
            {"t": filed.ticket_id},
        )
        return [{"kind": r.kind, "public": r.public, **r.data} for r in found]

    await receipts(fake_wa.receipt(wamid, "sent", at=at + 61))
    await receipts(fake_wa.receipt(wamid, "delivered", at=at + 62))
    await receipts(fake_wa.receipt(wamid, "read", at=at + 90))
    for _ in range(2):  # Meta redelivers: nothing changes twice
        await receipts(
            fake_wa.receipt(wamid, "delivered", at=at + 62),
            fake_wa.receipt(wamid, "read", at=at + 90),
        )
    marks = (
        await db.execute(
            text("SELECT status, delivered_at, read_at FROM notification WHERE id = :id"),
            {"id": ack.id},
        )
    ).one()
    assert marks.status == "sent"
    assert int(marks.delivered_at.timestamp()) == at + 62
    assert int(marks.read_at.timestamp()) == at + 90
    lines = await receipt_lines()
    assert [(line["kind"], line["receipt"]) for line in lines] == [
        ("notification_sent", "delivered"),
        ("notification_sent", "read"),
    ]
    assert not any(line["public"] for line in lines)
    assert all(line["notification"] == ack.id for line in lines)

    # A status update sent as free text (our clock said the window was open), then refused
    # by the platform with 131047: it goes again, as the approved template.
    staff = Principal(kind="user", role=Role.admin, label="test-staff")
    await workflow.change_status(db, filed.ticket_id, TicketStatus.acknowledged, actor=staff)
    update = (await outbox(db, "whatsapp"))[-1]
    assert await send(sessionmaker, settings, "whatsapp", update.id) == "sent"
    assert fakes.cloud.sent[-1]["type"] == "text"
    refused = await provider_id(db, update.id)
    closed = fake_wa.receipt(refused, "failed", at=at + 300, code=131047)
    await receipts(closed)
    again = (await outbox(db, "whatsapp"))[-1]
    assert (again.id, again.status) == (update.id, "retrying")
    assert await send(sessionmaker, settings, "whatsapp", update.id) == "sent"
    template = fakes.cloud.sent[-1]
    assert template["type"] == "template"
    assert template["template"]["components"][0]["parameters"][0]["text"] == filed.reference
    await receipts(closed)  # the old message's receipt again: the row is not touched
    assert (await outbox(db, "whatsapp"))[-1].status == "sent"
    failed_lines = [line for line in await receipt_lines() if line["receipt"] == "failed"]
    assert len(failed_lines) == 1
    assert failed_lines[0]["codes"] == [131047]

    # Undeliverable (131026): the row fails and the number is not written to again.
    await receipts(
        fake_wa.receipt(await provider_id(db, update.id), "failed", at=at + 400, code=131026)
    )
    (dead,) = (
        await db.execute(
            text(
                "SELECT n.status, c.disabled_at IS NOT NULL AS disabled FROM notification n"
                " JOIN contact c ON c.id = n.contact_id WHERE n.id = :id"
            ),
            {"id": update.id},
        )
    ).all()
    assert (dead.status, dead.disabled) == ("failed", True)

    # A receipt for a message nobody here sent: ignored, and logged without its id.
    caplog.set_level("INFO", logger="kerbside.notify")
    await receipts(
        fake_wa.receipt("wamid.NOT-OURS-31699999999", "delivered", recipient="31699999999")
    )
    logged = [r for r in caplog.records if r.name == "kerbside.notify"]
    assert logged
    assert all("31699999999" not in json.dumps(vars(r), default=str) for r in logged)


async def provider_id(db: AsyncSession, notification_id: int) -> str:
    found = await db.execute(
        text("SELECT provider_id FROM notification WHERE id = :id"), {"id": notification_id}
    )
    return str(found.scalar_one())


async def test_a_silent_chat_is_closed_politely_inside_the_window(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    at = int(clock.now().timestamp())
    body = fake_wa.delivery(fake_wa.text_message("wamid.9", "#kuil gat", at=at), wa_id=WA_ID)
    assert (await deliver_webhook(client, "whatsapp", body, wa_sign(body))).status_code == 200
    assert await process_posts(sessionmaker, settings, (await deferred_ids(db))[-1]) == {
        "in_dialogue": 1
    }
    await db.execute(text("UPDATE social_dialogue SET updated_at = now() - interval '3 hours'"))
    assert await end_silent_dialogues(sessionmaker, settings) == 1
    closing = (await outbox(db, "whatsapp"))[-1]
    assert closing.event_kind == "dialogue"
    assert "gesloten" in closing.body
    assert await end_silent_dialogues(sessionmaker, settings) == 0


# -- Bluesky: polled, filed, answered with the strong refs -------------------------------------


async def test_a_bluesky_mention_is_answered_with_root_and_parent_refs(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    root = fakes.pds.add_post("did:plc:kim", "kim.bsky.social", f"@{fake_bsky.HANDLE} hallo")
    note = fakes.pds.add_post(
        "did:plc:pat",
        "pat.bsky.social",
        f"@{fake_bsky.HANDLE} #kuil gat in de weg hier geo:{LAT},{LON}",
        reason="reply",
        reply_to=root["uri"],
    )
    polled = await poll_accounts(sessionmaker, settings)
    assert polled.outcomes == {"ticket_created": 1, "needs_human": 1}, polled.errors
    row = (await rows(db, "bluesky"))[-1]
    assert (row.status, row.location_source) == ("ticket_created", "coordinates")
    (ack,) = await outbox(db, "bluesky")
    assert await send(sessionmaker, settings, "bluesky", ack.id) == "sent"
    (record,) = fakes.pds.created
    assert record["reply"] == {
        "root": {"uri": root["uri"], "cid": root["cid"]},
        "parent": {"uri": note["uri"], "cid": note["cid"]},
    }
    assert record["text"].startswith("@pat.bsky.social ")
    assert row.reference in record["text"]
    mention = record["facets"][0]
    assert mention["features"][0]["did"] == "did:plc:pat"
    # The session is kept between polls (logins are rate limited): no second login.
    logins = fakes.servers["pds"].to("/xrpc/com.atproto.server.createSession")
    assert logins
    await poll_accounts(sessionmaker, settings)
    assert fakes.servers["pds"].to("/xrpc/com.atproto.server.createSession") == logins


# -- the demo: Mastodon served by the API, Meta's deliveries replayed --------------------------


async def test_the_demo_turns_mastodon_and_facebook_posts_into_tickets(
    db: AsyncSession,
    settings: Settings,
    app: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.channels.pollers import MastodonSource
    from app.social import demo

    for name in ("KERBSIDE_TEST_DEMO_TOKEN", "KERBSIDE_TEST_DEMO_SECRET"):
        monkeypatch.setenv(name, "anything")
    city = await make_jurisdiction(db, slug="demo-wired")
    for code in ("pothole", "streetlight", "flytipping"):
        await make_service(db, city, code, hashtags={"en": [code]})
    meta = {"access_token": "KERBSIDE_TEST_DEMO_TOKEN", "app_secret": "KERBSIDE_TEST_DEMO_SECRET"}
    social = Social(
        accounts=[
            SocialAccount(
                platform="mastodon",
                handle="KerbsideDemo",
                base_url="http://testserver/demo/mastodon",
                credentials={"access_token": "KERBSIDE_TEST_DEMO_TOKEN"},
            ),
            SocialAccount(
                platform="facebook",
                handle="KerbsideDemo",
                id=demo.DEMO_PAGE_ID,
                poll=False,
                credentials=meta,
            ),
            SocialAccount(
                platform="whatsapp",
                handle="KerbsideDemo",
                id=demo.DEMO_PHONE_NUMBER_ID,
                poll=False,
                credentials=meta,
            ),
        ],
        streets=[
            Street(name="Market Street", lon=-2.5851, lat=51.4603),
            Street(name="Station Road", lon=-2.5702, lat=51.4431),
        ],
    )
    await social_config.write(db, city.id, social)
    source = MastodonSource(settings, httpx.AsyncClient(transport=httpx.ASGITransport(app=app)))
    polled = await poll_accounts(sessionmaker, settings, sources={"mastodon": source})
    assert polled.outcomes == {"ticket_created": 1, "awaiting_location": 1}, polled.errors
    assert await demo.replay_meta(db) == 3
    assert await demo.replay_meta(db) == 0  # a replay keeps nothing twice
    (ids,) = await deferred_ids(db)
    outcomes = await process_posts(sessionmaker, settings, ids)
    assert outcomes == {"ticket_created": 1, "in_dialogue": 2}
    assert [r.status for r in await rows(db, "facebook")] == ["ticket_created"]
    # A shared location says nothing of a language: the city's own (English) is asked in.
    (question,) = await outbox(db, "whatsapp")
    assert question.body.startswith("Thank you! What is the problem?")
    # Answers to the demo's accounts go to the sink, never to a platform.
    answers = await outbox(db, "mastodon")
    assert sorted(a.event_kind for a in answers) == ["location_asked", "ticket_opened"]
    for answer in answers:
        assert await send(sessionmaker, settings, "mastodon", answer.id) == "sent"
    from app.channels import sink

    assert any(r["kind"] == "mastodon" for r in sink.read(settings.channels_sink_file))
    await source.close()
