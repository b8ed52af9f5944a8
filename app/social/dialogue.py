"""Conversational reporting in messaging apps (WhatsApp, Messenger): a short dialogue that asks
for what a report lacks, confirms, and files it through the one intake.

A message in a chat rarely carries everything at once. ``converse`` takes each inbound message
of a person (an ``InboundPost`` with ``is_private``), with what the pipeline already made of it
(the service it classified, the place it located, the photos it accepted), and answers with
the next question:

1. the category, when no service is known (a numbered list of the city's services; a number
   or a service's name is an answer);
2. the location, when there is none (a shared location, or an address the pipeline locates;
   a photo with GPS in its EXIF counts);
3. a photo, unless the person already sent one or says no;
4. a confirmation ("yes" files the report through ``submit_report``; "no" ends it).

"stop" (in Dutch, Swedish or English) ends the conversation at any point. Asking the same thing
``max_asks`` times without an answer ends it politely, pointing to the web form. A
conversation with no message for ``timeout`` is closed by ``expire`` (a periodic job), which
gives the closing line to send. State lives in ``social_dialogue``, never in memory: any
process picks a conversation up where another left it. Each inbound message id is kept, so a
redelivered message changes nothing and is not answered twice.

The answers are in Dutch, Swedish or English (the post's language, else the account's), and
say nothing about the person beyond what they said themselves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.channels.posts import InboundPost
from app.contacts.models import ContactKind
from app.contacts.service import ContactSpec
from app.core import clock
from app.core.errors import KerbsideError
from app.core.models import check_in
from app.jurisdictions.catalog import Catalog, ServiceInfo
from app.media.processing import GpsFix
from app.media.service import AcceptedPhoto
from app.reports.intake import Filed, Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.social.dialogue_models import OPEN, Dialogue, DialogueState

LANGUAGES = ("nl", "sv", "en")
MAX_OPTIONS = 12
DESCRIPTION_LIMIT = 2000

_WORDS = {
    "stop": {"stop", "stopp", "stoppa", "avbryt", "cancel", "annuleer", "annuleren", "quit"},
    "yes": {"ja", "j", "yes", "y", "ok", "oké", "okej", "okay", "klopt", "japp", "jo", "correct"},
    "no": {"nee", "neen", "nej", "no", "n", "nope"},
    "no_photo": {
        "nee",
        "nej",
        "no",
        "n",
        "geen",
        "ingen",
        "skip",
        "geen foto",
        "ingen bild",
        "no photo",
        "niet",
        "inte",
    },
}

TEXTS: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "ask_category": (
            "Dank je! Om wat voor probleem gaat het? Antwoord met een nummer:\n{options}"
        ),
        "ask_category_again": "Dat herkende ik niet. Antwoord met een nummer:\n{options}",
        "ask_location": "Waar is het precies? Deel je locatie (📎 → Locatie) of typ het adres.",
        "ask_location_again": (
            "Ik kon de plek nog niet vinden. Deel je locatie of typ straat en huisnummer."
        ),
        "ask_photo": "Heb je een foto? Stuur die nu, of antwoord 'nee'.",
        "confirm": "Klopt dit? {service}, {where}{photos}. Antwoord 'ja' om te melden of 'stop'.",
        "where_shared": "op de gedeelde locatie",
        "where_address": "bij {address}",
        "photos": ", met {count} foto('s)",
        "filed": "Bedankt! Je melding staat geregistreerd als {reference}.",
        "stopped": (
            "Oké, er is niets gemeld. Stuur gerust een nieuw bericht als je iets wilt melden."
        ),
        "no_location": "Zonder locatie kunnen we dit helaas niet oppakken, dus er is niets gemeld.",
        "not_understood": "Het lukt zo helaas niet, dus er is niets gemeld.",
        "expired": "We hoorden niets meer, dus deze melding is gesloten zonder te registreren.",
        "failed": "Het registreren is niet gelukt, dus er is niets gemeld.",
        "form": " Je kunt het ook melden via {form}.",
    },
    "sv": {
        "ask_category": "Tack! Vad gäller det? Svara med en siffra:\n{options}",
        "ask_category_again": "Det känner jag inte igen. Svara med en siffra:\n{options}",
        "ask_location": "Var är det? Dela din plats (📎 → Plats) eller skriv adressen.",
        "ask_location_again": (
            "Jag hittar inte platsen än. Dela din plats eller skriv gata och nummer."
        ),
        "ask_photo": "Har du en bild? Skicka den nu, eller svara 'nej'.",
        "confirm": (
            "Stämmer det? {service}, {where}{photos}. Svara 'ja' för att anmäla eller 'stopp'."
        ),
        "where_shared": "vid den delade platsen",
        "where_address": "vid {address}",
        "photos": ", med {count} bild(er)",
        "filed": "Tack! Din felanmälan är registrerad som {reference}.",
        "stopped": (
            "Okej, inget har anmälts. Skicka gärna ett nytt meddelande om du vill anmäla något."
        ),
        "no_location": "Utan plats kan vi tyvärr inte ta hand om detta, så inget har anmälts.",
        "not_understood": "Det gick tyvärr inte den här vägen, så inget har anmälts.",
        "expired": "Vi hörde inget mer, så anmälan är stängd utan att registreras.",
        "failed": "Det gick inte att registrera, så inget har anmälts.",
        "form": " Du kan också anmäla via {form}.",
    },
    "en": {
        "ask_category": "Thank you! What is the problem? Answer with a number:\n{options}",
        "ask_category_again": "I did not recognise that. Answer with a number:\n{options}",
        "ask_location": (
            "Where is it exactly? Share your location (📎 → Location) or type the address."
        ),
        "ask_location_again": (
            "I could not find the place yet. Share your location or type the street and number."
        ),
        "ask_photo": "Do you have a photo? Send it now, or answer 'no'.",
        "confirm": "Is this right? {service}, {where}{photos}. Answer 'yes' to report, or 'stop'.",
        "where_shared": "at the location you shared",
        "where_address": "at {address}",
        "photos": ", with {count} photo(s)",
        "filed": "Thank you! Your report is registered as {reference}.",
        "stopped": (
            "All right, nothing was reported. Send a new message any time to report something."
        ),
        "no_location": "Without a location we cannot take this up, so nothing was reported.",
        "not_understood": "This did not work out, so nothing was reported.",
        "expired": "We did not hear back, so this report was closed without registering it.",
        "failed": "Registering this did not work, so nothing was reported.",
        "form": " You can also report it at {form}.",
    },
}


@dataclass(frozen=True)
class DialogueSettings:
    """How the conversations of one city account go (from the city file, by the caller)."""

    jurisdiction: str  # slug
    language: str = "nl"  # when the post's language is none of nl/sv/en
    timeout: timedelta = timedelta(hours=2)
    max_asks: int = 3  # asking the same thing this often without an answer ends the chat
    ask_photo: bool = True
    form_url: str | None = None  # the web form, for a chat that ends without a report
    # Where the ticket's news goes (the consent's evidence, as for a post filed directly):
    # the pipeline's ``reply_target`` of the message that confirmed.
    reply_to: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Turn:
    """What one inbound message did: the answer to send (None: send nothing), and the rest."""

    reply: str | None
    state: str
    dialogue_id: int | None
    filed: Filed | None = None
    replayed: bool = False  # the message was already taken: nothing changed
    # Photos of a conversation that ended without a report: the caller discards their originals.
    discard: tuple[AcceptedPhoto, ...] = ()
    language: str = "en"


@dataclass(frozen=True)
class Ended:
    """A conversation closed by ``expire``: the closing line for its person."""

    platform: str
    account: str
    author_id: str
    reply: str
    language: str
    last_inbound_at: datetime
    discard: tuple[AcceptedPhoto, ...] = field(default=())


def normalised(text: str) -> str:
    return re.sub(r"[\s.!?,'\"]+", " ", text.casefold()).strip()


def language_of(post: InboundPost, hint: str | None, default: str) -> str:
    for candidate in (hint, post.lang):
        if candidate and candidate[:2].lower() in LANGUAGES:
            return candidate[:2].lower()
    return default if default in LANGUAGES else "en"


def _say(language: str, key: str, **values: Any) -> str:
    return TEXTS[language][key].format(**values)


def _photo_json(photo: AcceptedPhoto) -> dict[str, Any]:
    return {
        "storage_key": photo.storage_key,
        "thumbnail_key": photo.thumbnail_key,
        "original_key": photo.original_key,
        "content_type": photo.content_type,
        "width": photo.width,
        "height": photo.height,
        "taken_at": photo.taken_at.isoformat() if photo.taken_at else None,
        "gps": None
        if photo.gps is None
        else {
            "lat": photo.gps.lat,
            "lon": photo.gps.lon,
            "accuracy_m": photo.gps.accuracy_m,
            "altitude_m": photo.gps.altitude_m,
        },
    }


def _photo(data: Mapping[str, Any]) -> AcceptedPhoto:
    gps = data.get("gps")
    return AcceptedPhoto(
        storage_key=data["storage_key"],
        thumbnail_key=data["thumbnail_key"],
        original_key=data["original_key"],
        content_type=data["content_type"],
        width=int(data["width"]),
        height=int(data["height"]),
        taken_at=datetime.fromisoformat(data["taken_at"]) if data.get("taken_at") else None,
        gps=GpsFix(**gps) if isinstance(gps, Mapping) else None,
    )


def photos_of(dialogue: Dialogue) -> tuple[AcceptedPhoto, ...]:
    return tuple(_photo(p) for p in dialogue.photos)


async def converse(
    session: AsyncSession,
    catalog: Catalog,
    post: InboundPost,
    settings: DialogueSettings,
    *,
    service_code: str | None = None,
    place: Place | None = None,
    photos: Sequence[AcceptedPhoto] = (),
    language: str | None = None,
    ticket_link: str | None = None,
) -> Turn:
    """Take one message of a conversation and say what to answer.

    ``service_code``, ``place`` and ``photos`` are what the pipeline made of this message (its
    classifier, its locator, the photo pipeline); ``post.coordinates`` (a shared location) is a
    place too. The caller commits the session, and sends ``reply`` through the outbox.
    """
    turn = await _converse(
        session, catalog, post, settings, service_code, place, photos, language, ticket_link
    )
    await session.flush()  # the next message, in this session or another, reads it
    return turn


async def _converse(
    session: AsyncSession,
    catalog: Catalog,
    post: InboundPost,
    settings: DialogueSettings,
    service_code: str | None,
    place: Place | None,
    photos: Sequence[AcceptedPhoto],
    language: str | None,
    ticket_link: str | None,
) -> Turn:
    now = clock.now()
    replay = await session.scalar(
        select(Dialogue.id).where(
            Dialogue.platform == post.platform,
            Dialogue.account == post.account,
            Dialogue.author_id == post.author_id,
            Dialogue.post_ids.contains([post.post_id]),
        )
    )
    if replay is not None:
        return Turn(None, "replayed", replay, replayed=True)

    discard: tuple[AcceptedPhoto, ...] = ()
    dialogue = await _open(session, post)
    if dialogue is not None and now - dialogue.updated_at > settings.timeout:
        discard = _end(dialogue, DialogueState.expired, now)
        dialogue = None

    words = normalised(post.text)
    if words in _WORDS["stop"]:
        if dialogue is None:
            return Turn(None, "none", None, discard=discard)
        dialogue.post_ids = [*dialogue.post_ids, post.post_id]
        gone = discard + _end(dialogue, DialogueState.stopped, now)
        return _turn(dialogue, _say(dialogue.language, "stopped"), discard=gone)

    if dialogue is None:
        dialogue = await _start(session, post, settings, language, now)
    dialogue.post_ids = [*dialogue.post_ids, post.post_id]
    dialogue.last_inbound_at = max(dialogue.last_inbound_at, post.created_at)
    dialogue.updated_at = now
    jurisdiction = await catalog.by_slug(session, settings.jurisdiction)
    services = dict(jurisdiction.services) if jurisdiction is not None else {}

    if dialogue.state == DialogueState.confirming.value:
        if words in _WORDS["yes"]:
            return await _file(session, catalog, dialogue, post, settings, ticket_link, now)
        if words in _WORDS["no"]:
            return _turn(
                dialogue,
                _say(dialogue.language, "stopped"),
                discard=discard + _end(dialogue, DialogueState.stopped, now),
            )
        dialogue.state = DialogueState.collecting.value  # something else: take it in, ask again

    _take(dialogue, post, words, services, service_code, place, photos)
    return _next_question(dialogue, services, settings, now, discard)


async def _open(session: AsyncSession, post: InboundPost) -> Dialogue | None:
    found: Dialogue | None = await session.scalar(
        select(Dialogue)
        .where(
            Dialogue.platform == post.platform,
            Dialogue.account == post.account,
            Dialogue.author_id == post.author_id,
            Dialogue.state.in_(OPEN),
        )
        .with_for_update()
    )
    return found


async def _start(
    session: AsyncSession,
    post: InboundPost,
    settings: DialogueSettings,
    language: str | None,
    now: datetime,
) -> Dialogue:
    await session.flush()  # an expired conversation of theirs is closed first
    # Two messages of one person at once: the partial unique index lets one insert win; the
    # other waits on it and then takes the row it made.
    await session.execute(
        insert(Dialogue)
        .values(
            platform=post.platform,
            account=post.account,
            author_id=post.author_id,
            jurisdiction=settings.jurisdiction,
            language=language_of(post, language, settings.language),
            last_inbound_at=post.created_at,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=["platform", "account", "author_id"],
            index_where=text(check_in("state", OPEN)),
        )
    )
    dialogue = await _open(session, post)
    assert dialogue is not None
    return dialogue


def _take(
    dialogue: Dialogue,
    post: InboundPost,
    words: str,
    services: Mapping[str, ServiceInfo],
    service_code: str | None,
    place: Place | None,
    photos: Sequence[AcceptedPhoto],
) -> None:
    """Keep what this message adds: a service, a place, photos, words."""
    answered = False
    if dialogue.service_code is None:
        chosen = _chosen_service(dialogue, words, services)
        if chosen is not None:
            dialogue.service_code, answered = chosen, dialogue.asked == "category"
        elif service_code in services:
            dialogue.service_code = service_code
    if post.coordinates is not None:
        dialogue.lon, dialogue.lat = post.coordinates
        dialogue.location_source = LocationSource.device.value  # a pin the person shared
        dialogue.address = post.place.name if post.place else dialogue.address
        answered = answered or dialogue.asked == "location"
    elif place is not None:
        dialogue.lon, dialogue.lat = place.lon, place.lat
        dialogue.location_source = place.source.value
        if place.source == LocationSource.address and post.text.strip():
            dialogue.address = post.text.strip()[:200]
        answered = answered or dialogue.asked == "location"
    if photos:
        dialogue.photos = [*dialogue.photos, *(_photo_json(p) for p in photos)]
    elif dialogue.asked == "photo" and words in _WORDS["no_photo"]:
        dialogue.photo_declined = answered = True
    text = post.text.strip()
    if text and not answered and not _is_short_answer(words) and dialogue.asked != "location":
        joined = f"{dialogue.description}\n{text}" if dialogue.description else text
        dialogue.description = joined[:DESCRIPTION_LIMIT]


def _is_short_answer(words: str) -> bool:
    return words.isdigit() or any(words in group for group in _WORDS.values())


def _chosen_service(
    dialogue: Dialogue, words: str, services: Mapping[str, ServiceInfo]
) -> str | None:
    if words.isdigit() and dialogue.options:
        index = int(words) - 1
        if 0 <= index < len(dialogue.options) and dialogue.options[index] in services:
            return dialogue.options[index]
        return None
    if dialogue.asked != "category" or not words:
        return None
    for code, service in services.items():
        names = {normalised(n) for n in service.names.values()} | {code.casefold()}
        if words in names:
            return code
    return None


def _has_place(dialogue: Dialogue) -> bool:
    return dialogue.lon is not None or any(p.get("gps") for p in dialogue.photos)


def _next_question(
    dialogue: Dialogue,
    services: Mapping[str, ServiceInfo],
    settings: DialogueSettings,
    now: datetime,
    discard: tuple[AcceptedPhoto, ...],
) -> Turn:
    language = dialogue.language
    if dialogue.service_code is None:
        if not services:
            return _give_up(dialogue, "not_understood", settings, now, discard)
        ordered = sorted(services.values(), key=lambda s: s.name(language).casefold())
        dialogue.options = [s.code for s in ordered[:MAX_OPTIONS]]
        options = "\n".join(
            f"{n}. {s.name(language)}" for n, s in enumerate(ordered[:MAX_OPTIONS], 1)
        )
        return _ask(dialogue, "category", settings, now, discard, options=options)
    if not _has_place(dialogue):
        return _ask(dialogue, "location", settings, now, discard)
    if settings.ask_photo and not dialogue.photos and not dialogue.photo_declined:
        if dialogue.asked != "photo":
            return _ask(dialogue, "photo", settings, now, discard)
        dialogue.photo_declined = True  # asked once: a photo is welcome, never required
    dialogue.asked_times = dialogue.asked_times + 1 if dialogue.asked == "confirm" else 1
    dialogue.asked = "confirm"
    if dialogue.asked_times > settings.max_asks:
        return _give_up(dialogue, "not_understood", settings, now, discard)
    dialogue.state = DialogueState.confirming.value
    service = services.get(dialogue.service_code)
    where = (
        _say(language, "where_address", address=dialogue.address)
        if dialogue.address
        else _say(language, "where_shared")
    )
    count = len(dialogue.photos)
    reply = _say(
        language,
        "confirm",
        service=service.name(language) if service else dialogue.service_code,
        where=where,
        photos=_say(language, "photos", count=count) if count else "",
    )
    return _turn(dialogue, reply, discard=discard)


def _ask(
    dialogue: Dialogue,
    what: str,
    settings: DialogueSettings,
    now: datetime,
    discard: tuple[AcceptedPhoto, ...],
    **values: str,
) -> Turn:
    again = dialogue.asked == what
    dialogue.asked_times = dialogue.asked_times + 1 if again else 1
    dialogue.asked = what
    if dialogue.asked_times > settings.max_asks:
        reason = "no_location" if what == "location" else "not_understood"
        return _give_up(dialogue, reason, settings, now, discard)
    key = f"ask_{what}_again" if again and f"ask_{what}_again" in TEXTS["en"] else f"ask_{what}"
    return _turn(dialogue, _say(dialogue.language, key, **values), discard=discard)


def _give_up(
    dialogue: Dialogue,
    reason: str,
    settings: DialogueSettings,
    now: datetime,
    discard: tuple[AcceptedPhoto, ...],
) -> Turn:
    text = _say(dialogue.language, reason)
    if settings.form_url:
        text += _say(dialogue.language, "form", form=settings.form_url)
    gone = discard + _end(dialogue, DialogueState.abandoned, now)
    return _turn(dialogue, text, discard=gone)


def _end(dialogue: Dialogue, state: DialogueState, now: datetime) -> tuple[AcceptedPhoto, ...]:
    """Close the conversation; its photos (never filed) are the caller's to discard."""
    photos = photos_of(dialogue) if state != DialogueState.filed else ()
    dialogue.state = state.value
    dialogue.updated_at = now
    dialogue.photos = []
    # What the person told us is not kept past the conversation that needed it.
    if state != DialogueState.filed:
        dialogue.description = dialogue.address = None
        dialogue.lon = dialogue.lat = None
    return photos


def _turn(dialogue: Dialogue, reply: str, *, discard: tuple[AcceptedPhoto, ...] = ()) -> Turn:
    return Turn(reply, dialogue.state, dialogue.id, discard=discard, language=dialogue.language)


_CHANNELS = {"whatsapp": (Channel.whatsapp, ContactKind.whatsapp)}


async def _file(
    session: AsyncSession,
    catalog: Catalog,
    dialogue: Dialogue,
    post: InboundPost,
    settings: DialogueSettings,
    ticket_link: str | None,
    now: datetime,
) -> Turn:
    channel, kind = _CHANNELS.get(dialogue.platform, (Channel.facebook, ContactKind.facebook))
    assert dialogue.service_code is not None
    place = (
        Place(dialogue.lon, dialogue.lat, LocationSource(dialogue.location_source or "device"))
        if dialogue.lon is not None and dialogue.lat is not None
        else None  # a photo's GPS: the intake reads it
    )
    contact = ContactSpec(
        kind,
        dialogue.author_id,
        data={
            "account": dialogue.account,
            "platform": dialogue.platform,
            "locale": dialogue.language,
            "last_inbound_at": dialogue.last_inbound_at.isoformat(),
        },
    )
    submission = Submission(
        channel=channel,
        submitter=Submitter(label=dialogue.platform, identified=True),
        service_code=dialogue.service_code,
        place=place,
        jurisdiction=settings.jurisdiction,
        description=dialogue.description,
        address=dialogue.address,
        contacts=[contact],
        updates=True,
        external_id=f"dialogue-{dialogue.id}",
        locale=dialogue.language,
        media=photos_of(dialogue),
        consent_evidence={"post": post.post_id, "reply_to": dict(settings.reply_to)}
        if settings.reply_to
        else {},
    )
    try:
        async with session.begin_nested():
            filed = await submit_report(session, catalog, submission, now=now)
    except KerbsideError:
        # Outside the city, a description the service requires, ...: say so and point to the
        # form, where the person sees every field.
        return _give_up(dialogue, "failed", settings, now, ())
    dialogue.report_id, dialogue.reference = filed.report_id, filed.reference
    _end(dialogue, DialogueState.filed, now)
    reply = _say(dialogue.language, "filed", reference=filed.reference)
    if ticket_link:
        reply += f"\n{ticket_link.format(reference=filed.reference)}"
    return Turn(reply, dialogue.state, dialogue.id, filed=filed, language=dialogue.language)


async def expire(session: AsyncSession, silent_for: timedelta, *, limit: int = 500) -> list[Ended]:
    """Close the open conversations silent for ``silent_for``; each gives its closing line.

    For a periodic job; the caller commits, then sends each ``reply`` (when the messaging window,
    from ``last_inbound_at``, is still open) and discards each ``discard``.
    """
    now = clock.now()
    stale = (
        await session.scalars(
            select(Dialogue)
            .where(Dialogue.state.in_(OPEN), Dialogue.updated_at < now - silent_for)
            .order_by(Dialogue.updated_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    ended = []
    for dialogue in stale:
        photos = _end(dialogue, DialogueState.expired, now)
        ended.append(
            Ended(
                platform=dialogue.platform,
                account=dialogue.account,
                author_id=dialogue.author_id,
                reply=_say(dialogue.language, "expired"),
                language=dialogue.language,
                last_inbound_at=dialogue.last_inbound_at,
                discard=photos,
            )
        )
    await session.flush()
    return ended
