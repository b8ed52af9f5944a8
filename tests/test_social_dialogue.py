"""Conversational reporting in WhatsApp and Messenger: the dialogue asks for what is missing,
confirms, files through the one intake, and keeps its state in the database."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels.posts import InboundPost
from app.core import clock
from app.jurisdictions.catalog import Catalog
from app.media.processing import GpsFix
from app.media.service import AcceptedPhoto
from app.reports.intake import Place
from app.reports.models import LocationSource
from app.social import dialogue
from app.social.dialogue_models import Dialogue
from tests.factories import CITY, make_jurisdiction, make_service

CENTER = CITY.center
WA_ID = "31612345678"
NUMBER = "106540352242922"
FORM = "https://chatville.example/report"
_ids = count(1)


def settings(**changes: Any) -> dialogue.DialogueSettings:
    return dialogue.DialogueSettings(jurisdiction="chatville", form_url=FORM, **changes)


def wa(
    text: str = "",
    *,
    coordinates: tuple[float, float] | None = None,
    lang: str | None = None,
    post_id: str | None = None,
    platform: str = "whatsapp",
    author: str = WA_ID,
) -> InboundPost:
    return InboundPost(
        platform=platform,
        account=NUMBER,
        post_id=post_id or f"wamid.{next(_ids)}",
        author_id=author,
        text=text,
        created_at=clock.now(),
        raw={},
        is_private=True,
        lang=lang,
        coordinates=coordinates,
    )


def photo(gps: GpsFix | None = None) -> AcceptedPhoto:
    key = uuid.uuid4().hex
    return AcceptedPhoto(
        storage_key=f"p/{key}.jpg",
        thumbnail_key=f"t/{key}.jpg",
        original_key=f"o/{key}.jpg",
        content_type="image/jpeg",
        width=800,
        height=600,
        taken_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        gps=gps,
    )


async def make_city(session: AsyncSession) -> None:
    city = await make_jurisdiction(session, slug="chatville")
    names = {"en": "Pothole", "nl": "Kuil", "sv": "Potthål"}
    await make_service(session, city, "pothole", names=names)
    lamp = {"en": "Streetlight", "nl": "Straatlamp", "sv": "Gatlykta"}
    await make_service(session, city, "streetlight", names=lamp)


@pytest.fixture
async def city(db: AsyncSession) -> None:
    await make_city(db)


@pytest.mark.usefixtures("city")
async def test_a_chat_asks_for_each_missing_piece_confirms_and_files(db: AsyncSession) -> None:
    catalog, say = Catalog(), settings()
    turn = await dialogue.converse(db, catalog, wa("Er is een gat in de weg", lang="nl"), say)
    assert turn.reply == (
        "Dank je! Om wat voor probleem gaat het? Antwoord met een nummer:\n1. Kuil\n2. Straatlamp"
    )
    turn = await dialogue.converse(db, catalog, wa("1"), say)
    assert turn.reply is not None
    assert turn.reply.startswith("Waar is het precies? Deel je locatie")
    turn = await dialogue.converse(db, catalog, wa(coordinates=CENTER), say)
    assert turn.reply == "Heb je een foto? Stuur die nu, of antwoord 'nee'."
    turn = await dialogue.converse(db, catalog, wa("nee"), say)
    assert turn.state == "confirming"
    assert turn.reply == (
        "Klopt dit? Kuil, op de gedeelde locatie. Antwoord 'ja' om te melden of 'stop'."
    )
    turn = await dialogue.converse(db, catalog, wa("Ja!"), say, ticket_link=None)
    assert turn.state == "filed"
    assert turn.filed is not None
    assert turn.reply == f"Bedankt! Je melding staat geregistreerd als {turn.filed.reference}."
    assert re.fullmatch(r"[A-Z]+-\d{4}-\d{6}", turn.filed.reference)
    assert turn.filed.channel.value == "whatsapp"
    assert turn.filed.description == "Er is een gat in de weg"
    assert turn.filed.place.source == LocationSource.device
    assert [c.kind.value for c in turn.filed.contacts] == ["whatsapp"]
    assert turn.filed.contacts[0].address == WA_ID
    row = (
        await db.execute(
            text("SELECT channel, external_id FROM report WHERE id = :id"),
            {"id": turn.filed.report_id},
        )
    ).one()
    assert row.channel == "whatsapp"
    assert row.external_id == f"dialogue-{turn.dialogue_id}"
    # A message after filing starts a new conversation, not a second report.
    again = await dialogue.converse(db, catalog, wa("nog iets", lang="nl"), say)
    assert again.dialogue_id != turn.dialogue_id
    assert again.state == "collecting"


@pytest.mark.usefixtures("city")
async def test_a_first_message_with_everything_goes_straight_to_the_confirmation(
    db: AsyncSession,
) -> None:
    catalog = Catalog()
    first = wa("Streetlight out", coordinates=CENTER, lang="en", platform="messenger")
    turn = await dialogue.converse(
        db, catalog, first, settings(), service_code="streetlight", photos=[photo()]
    )
    assert turn.reply == (
        "Is this right? Streetlight, at the location you shared, with 1 photo(s)."
        " Answer 'yes' to report, or 'stop'."
    )
    done = await dialogue.converse(
        db, catalog, wa("yes", platform="messenger"), settings(), ticket_link=FORM + "/{reference}"
    )
    assert done.filed is not None
    assert done.filed.channel.value == "facebook"
    assert [c.kind.value for c in done.filed.contacts] == ["facebook"]
    assert len(done.filed.photos) == 1
    assert done.reply is not None
    assert done.reply.endswith(f"\n{FORM}/{done.filed.reference}")


@pytest.mark.usefixtures("city")
async def test_a_photo_with_gps_is_a_location_and_an_address_is_one_too(db: AsyncSession) -> None:
    catalog = Catalog()
    gps = GpsFix(lat=CENTER[1], lon=CENTER[0])
    turn = await dialogue.converse(
        db,
        catalog,
        wa("Potthål", lang="sv"),
        settings(),
        service_code="pothole",
        photos=[photo(gps)],
    )
    assert turn.reply is not None
    assert turn.reply.startswith("Stämmer det? Potthål, vid den delade platsen, med 1 bild(er).")
    done = await dialogue.converse(db, catalog, wa("ja"), settings())
    assert done.filed is not None
    assert done.filed.place.source == LocationSource.exif
    # An address the pipeline located is named in the confirmation.
    other = "46700000000"
    await dialogue.converse(db, catalog, wa("Lamp kapot", lang="en", author=other), settings())
    await dialogue.converse(db, catalog, wa("2", author=other), settings())
    located = Place(CENTER[0], CENTER[1], LocationSource.address)
    turn = await dialogue.converse(
        db, catalog, wa("Vismarkt 12", author=other), settings(ask_photo=False), place=located
    )
    assert turn.reply == (
        "Is this right? Streetlight, at Vismarkt 12. Answer 'yes' to report, or 'stop'."
    )


@pytest.mark.usefixtures("city")
async def test_a_chat_that_never_gives_a_location_ends_politely(db: AsyncSession) -> None:
    catalog, say = Catalog(), settings()
    turn = await dialogue.converse(
        db, catalog, wa("lamp stuk", lang="nl"), say, service_code="streetlight"
    )
    assert turn.reply is not None
    assert turn.reply.startswith("Waar is het precies?")
    for _ in range(2):
        turn = await dialogue.converse(db, catalog, wa("ergens"), say)
        assert turn.reply is not None
        assert turn.reply.startswith("Ik kon de plek nog niet vinden.")
    turn = await dialogue.converse(db, catalog, wa("weet ik niet"), say)
    assert turn.state == "abandoned"
    assert turn.reply == (
        "Zonder locatie kunnen we dit helaas niet oppakken, dus er is niets gemeld."
        f" Je kunt het ook melden via {FORM}."
    )
    row = await db.get(Dialogue, turn.dialogue_id)
    assert row is not None
    assert row.description is None  # nothing kept past the conversation
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 0


@pytest.mark.usefixtures("city")
async def test_stop_ends_the_chat_and_hands_back_its_photos(db: AsyncSession) -> None:
    catalog, say = Catalog(), settings()
    kept = photo()
    await dialogue.converse(db, catalog, wa("kuil", lang="sv"), say, photos=[kept])
    turn = await dialogue.converse(db, catalog, wa("Stopp"), say)
    assert turn.state == "stopped"
    assert turn.reply == (
        "Okej, inget har anmälts. Skicka gärna ett nytt meddelande om du vill anmäla något."
    )
    assert turn.discard == (kept,)
    # "stop" without a conversation: nothing to answer.
    assert (await dialogue.converse(db, catalog, wa("stop"), say)).reply is None


@pytest.mark.usefixtures("city")
async def test_a_redelivered_message_changes_nothing_and_is_not_answered(db: AsyncSession) -> None:
    catalog, say = Catalog(), settings()
    first = wa("Gat in de weg", lang="nl", post_id="wamid.same")
    turn = await dialogue.converse(db, catalog, first, say)
    assert turn.reply is not None
    again = await dialogue.converse(db, catalog, first, say)
    assert again.replayed
    assert again.reply is None
    assert again.dialogue_id == turn.dialogue_id
    row = await db.get(Dialogue, turn.dialogue_id)
    assert row is not None
    assert row.asked_times == 1
    assert row.description == "Gat in de weg"


@pytest.mark.usefixtures("city")
async def test_silent_chats_expire_with_a_closing_line(
    db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, say = Catalog(), settings(timeout=timedelta(hours=2))
    start = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    monkeypatch.setattr(clock, "now", lambda: start)
    turn = await dialogue.converse(db, catalog, wa("pothole", lang="en", author="111"), say)
    await dialogue.converse(db, catalog, wa("kuil", lang="nl", author="222"), say)
    later = start + timedelta(hours=3)
    monkeypatch.setattr(clock, "now", lambda: later)
    # One of them writes again: the old chat is closed, a new one starts.
    fresh = await dialogue.converse(db, catalog, wa("hello", lang="en", author="111"), say)
    assert fresh.dialogue_id != turn.dialogue_id
    assert fresh.state == "collecting"
    ended = await dialogue.expire(db, timedelta(hours=2))
    assert [(e.author_id, e.reply) for e in ended] == [
        ("222", "We hoorden niets meer, dus deze melding is gesloten zonder te registreren.")
    ]
    assert await dialogue.expire(db, timedelta(hours=2)) == []


async def test_a_chat_is_resumed_after_a_restart(
    committed_db: async_sessionmaker[AsyncSession],
) -> None:
    async with committed_db() as session:
        await make_city(session)
        await session.commit()
    say = settings()
    # One process takes the first two messages, then goes away.
    async with committed_db() as session:
        await dialogue.converse(session, Catalog(), wa("Lamp brandt niet", lang="nl"), say)
        await dialogue.converse(session, Catalog(), wa("2"), say)
        await session.commit()
    # Another, with nothing in memory, takes it up from the database.
    async with committed_db() as session:
        turn = await dialogue.converse(session, Catalog(), wa(coordinates=CENTER), say)
        assert turn.reply == "Heb je een foto? Stuur die nu, of antwoord 'nee'."
        await session.commit()
    async with committed_db() as session:
        await dialogue.converse(session, Catalog(), wa("nee"), say)
        done = await dialogue.converse(session, Catalog(), wa("ja"), say)
        await session.commit()
    assert done.filed is not None
    assert done.filed.service.code == "streetlight"
    assert done.filed.description == "Lamp brandt niet"
    async with committed_db() as session:
        rows = (await session.scalars(select(Dialogue))).all()
        assert [(r.state, r.reference) for r in rows] == [("filed", done.filed.reference)]


@pytest.mark.usefixtures("city")
async def test_answers_hold_nothing_personal(db: AsyncSession) -> None:
    catalog, say = Catalog(), settings()
    replies = [
        await dialogue.converse(db, catalog, wa("Ik ben Jan, 0612345678, kuil", lang="nl"), say),
        await dialogue.converse(db, catalog, wa("1"), say),
        await dialogue.converse(db, catalog, wa(coordinates=CENTER), say),
        await dialogue.converse(db, catalog, wa("nee"), say),
        await dialogue.converse(db, catalog, wa("ja"), say),
    ]
    for turn in replies:
        assert turn.reply is not None
        assert WA_ID not in turn.reply
        assert "Jan" not in turn.reply
        assert "0612345678" not in turn.reply


@pytest.mark.usefixtures("city")
async def test_a_confirmation_never_answered_ends_the_chat(db: AsyncSession) -> None:
    catalog, say = Catalog(), settings(max_asks=2)
    first = wa("Pothole", coordinates=CENTER, lang="en")
    turn = await dialogue.converse(
        db, catalog, first, say, service_code="pothole", photos=[photo()]
    )
    assert turn.state == "confirming"
    turn = await dialogue.converse(db, catalog, wa("hmm, maybe"), say)
    assert turn.state == "confirming"
    turn = await dialogue.converse(db, catalog, wa("what?"), say)
    assert turn.state == "abandoned"
    assert turn.reply == (
        f"This did not work out, so nothing was reported. You can also report it at {FORM}."
    )
    assert len(turn.discard) == 1


async def test_two_messages_at_once_share_one_conversation(
    committed_db: async_sessionmaker[AsyncSession],
) -> None:
    async with committed_db() as session:
        await make_city(session)
        await session.commit()
    say = settings()
    first = committed_db()
    second = committed_db()
    try:
        turn = await dialogue.converse(first, Catalog(), wa("Kuil", lang="nl"), say)
        # The second message's insert waits on the first's open transaction...
        racing = asyncio.create_task(
            dialogue.converse(second, Catalog(), wa(coordinates=CENTER), say)
        )
        await asyncio.sleep(0.3)
        assert not racing.done()
        await first.commit()
        # ...then finds the conversation the first made and adds to it.
        other = await racing
        await second.commit()
    finally:
        await first.close()
        await second.close()
    assert other.dialogue_id == turn.dialogue_id
    async with committed_db() as session:
        rows = (await session.scalars(select(Dialogue))).all()
        assert len(rows) == 1
        assert rows[0].lon is not None
        assert len(rows[0].post_ids) == 2
