"""The social intake pipeline, once for every platform: a platform's adapter hands over
``InboundPost``s (``app.channels.posts``); each is kept verbatim once, then

    ignore? (own or another city account, repost, blocked author, spam)
    → the author's answer to our question where? (resume the post that waits)
    → link: a reply to a post of a ticket → a post in the same conversation by the same
      author → a ticket reference in the text
    → classify (communications queue for sensitive posts; webcare for what is no report)
    → locate (coordinates, a small place, an address or street, else ask in the thread)
    → file through the one intake (``submit_report``: its duplicate rules join a ticket
      reported in the app as well)
    → answer in the thread, through the outbox.

Each post ends with its outcome on its row (``PostStatus``). Every step runs in the caller's
transaction: a page in one savepoint, and when a post of it fails, the page again with a
savepoint per post, so one that cannot be filed becomes a webcare case and the others go on.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.auth.principal import Principal
from app.channels import bluesky, facebook, mastodon, whatsapp
from app.channels.posts import InboundPost, PlaceHint
from app.channels.replies import WINDOW
from app.contacts import service as contacts
from app.contacts.models import ConsentMethod, ContactKind, Purpose
from app.contacts.service import Consent, ContactSpec
from app.core import clock
from app.core.errors import KerbsideError
from app.db import DATABASE_ERRORS, driver_error
from app.geocoding.service import Gazetteer, Geocoder, Street
from app.jurisdictions.catalog import Catalog
from app.media.service import AcceptedPhoto, PhotoPipeline
from app.notify import replies
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.settings import Settings
from app.social import config as social_config
from app.social import dialogue
from app.social import photos as post_photos
from app.social import repository as sql
from app.social.classify import Classifier, classifier_for
from app.social.config import AccountOf
from app.social.dialogue import DialogueSettings
from app.social.dialogue_models import OPEN as OPEN_DIALOGUE
from app.social.locate import Located, Locator
from app.social.models import LinkRule, PostStatus
from app.tickets.events import add_event
from app.tickets.models import DONE_STATUSES, EventKind, TicketStatus
from app.tickets.workflow import change_status

log = logging.getLogger("kerbside.social")

CHANNEL_OF: Mapping[str, Channel] = {
    "x": Channel.x,
    "facebook": Channel.facebook,
    "messenger": Channel.facebook,
    "whatsapp": Channel.whatsapp,
    "mastodon": Channel.mastodon,
    "bluesky": Channel.bluesky,
}
CONTACT_OF: Mapping[str, ContactKind] = {
    "x": ContactKind.x,
    "facebook": ContactKind.facebook,
    "messenger": ContactKind.facebook,
    "whatsapp": ContactKind.whatsapp,
    "mastodon": ContactKind.mastodon,
    "bluesky": ContactKind.bluesky,
}
DIALOGUE = "dialogue"  # the event of a dialogue's question (an answer: inside the window)
MAX_STORED_TEXT = 100_000  # the raw payload keeps the rest
MAX_DESCRIPTION = 5000  # the intake's limit
BACKDATE_LIMIT = timedelta(days=7)  # the intake takes a citizen's time this far back
# K-2026-000123, or as a hashtag #K2026000123.
_REFERENCE = re.compile(r"(?<![A-Za-z0-9])#?([A-Z]{1,8})-?(\d{4})-?(\d{6,})(?!\d)")
_URL = re.compile(r"https?://\S+")
_MENTION = re.compile(r"(?<!\w)@\w+")

_WORDS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "ask": "Thanks for letting us know. Where exactly is it? Reply with the street and house "
        "number, or share a location, or use our form: {url}",
        "linked": "Thanks, we have added this to {reference}. We will keep you posted here.",
    },
    "nl": {
        "ask": "Bedankt voor uw melding. Waar is het precies? Antwoord met straat en huisnummer, "
        "deel een locatie, of gebruik ons formulier: {url}",
        "linked": "Bedankt, we hebben dit toegevoegd aan {reference}. U hoort hier van ons.",
    },
    "sv": {
        "ask": "Tack för att du hör av dig. Var exakt är det? Svara med gata och nummer, dela en "
        "plats, eller använd vårt formulär: {url}",
        "linked": "Tack, vi har lagt till detta i {reference}. Vi hör av oss här.",
    },
}


@dataclass
class Counts:
    """What one batch came to, by outcome (``stored`` counts new posts)."""

    received: int = 0
    stored: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage

    def add(self, status: str) -> None:
        self.outcomes[status] = self.outcomes.get(status, 0) + 1

    def took(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + (now - since)
        return now


@dataclass
class Pipeline:
    """What processing needs beyond the session, made once per worker run or request."""

    settings: Settings
    catalog: Catalog = field(default_factory=Catalog)
    geocoder: Geocoder | None = None
    photos: PhotoPipeline | None = None  # a chat's photos (made when first needed)
    # Photos of chats that ended without a report: the caller deletes them after the commit.
    discard: list[AcceptedPhoto] = field(default_factory=list)
    _accounts: list[AccountOf] | None = None
    _classifiers: dict[int, Classifier] = field(default_factory=dict)
    _locators: dict[int, Locator] = field(default_factory=dict)
    _languages: dict[int, str] = field(default_factory=dict)
    # While a page is processed: the authors (platform, id) who may have an open ticket from
    # a post (found once for the page, grown as its posts are filed); rule 4 asks the
    # database only about them. None: ask about everyone.
    authors_with_tickets: set[tuple[str, str]] | None = None
    # While a page is processed in one savepoint: its answers (a note that a post joined a
    # ticket, a question where), queued together before the savepoint ends. None: each
    # answer is queued as it is made (a post on its own, a page run post by post).
    answers: replies.Answers | None = None

    async def close(self) -> None:
        """Delete the photos of ended chats (call after the commit)."""
        if self.discard and self.photos is not None:
            await self.photos.discard(self.discard)
        self.discard.clear()

    async def accounts(self, session: AsyncSession) -> list[AccountOf]:
        if self._accounts is None:
            self._accounts = await social_config.accounts(session)
        return self._accounts

    async def classifier(self, session: AsyncSession, jurisdiction_id: int) -> Classifier:
        if jurisdiction_id not in self._classifiers:
            self._classifiers[jurisdiction_id] = await classifier_for(session, jurisdiction_id)
        return self._classifiers[jurisdiction_id]

    async def language(self, session: AsyncSession, jurisdiction_id: int) -> str:
        """The jurisdiction's first language, for a chat whose own language is unknown (a
        shared location says nothing); English when it has no texts in it."""
        if jurisdiction_id not in self._languages:
            found = (
                await session.execute(sql.FIRST_LANGUAGE, {"id": jurisdiction_id})
            ).scalar_one_or_none()
            self._languages[jurisdiction_id] = str(found) if found in _WORDS else "en"
        return self._languages[jurisdiction_id]

    async def locator(self, session: AsyncSession, of: AccountOf) -> Locator:
        if of.jurisdiction_id not in self._locators:
            found = await self.catalog.by_slug(session, of.jurisdiction)
            bbox = found.boundary.bounds if found is not None else (-180.0, -90.0, 180.0, 90.0)
            self._locators[of.jurisdiction_id] = Locator(
                bbox=tuple(bbox),
                place_max_m=of.social.place_max_m,
                gazetteer=Gazetteer([Street(s.name, s.lon, s.lat) for s in of.social.streets]),
                geocoder=self.geocoder,
            )
        return self._locators[of.jurisdiction_id]


# -- keeping posts -----------------------------------------------------------------------------


def _clean(value: str) -> str:
    return value.replace("\x00", "")  # PostgreSQL text holds no NUL


def _json(value: Any) -> str:
    # JSONB holds no \u0000 either; the payload is otherwise kept as it came.
    return orjson.dumps(value).decode().replace("\\u0000", "")


def _hints(post: InboundPost) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    if post.coordinates is not None:
        hints["coordinates"] = list(post.coordinates)
    if post.place is not None:
        hints["place"] = {"name": post.place.name, "bbox": post.place.bbox}
    if post.media_urls:
        hints["media"] = list(post.media_urls)
    if post.is_repost:
        hints["repost"] = True
    if post.is_private:
        hints["private"] = True
    if post.lang:
        hints["lang"] = post.lang
    return hints


def _stored(post: InboundPost, of: AccountOf | None) -> dict[str, Any]:
    """The row that keeps ``post`` verbatim."""
    return {
        "platform": post.platform,
        "post_id": post.post_id[:200],
        "account": post.account[:200],
        "jurisdiction_id": of.jurisdiction_id if of else None,
        "author_id": _clean(post.author_id)[:200],
        "author_handle": _clean(post.author_handle)[:200] if post.author_handle else None,
        "conversation_id": post.conversation_id,
        "in_reply_to_id": post.in_reply_to_id,
        "text": _clean(post.text)[:MAX_STORED_TEXT],
        "hints": _json(_hints(post)),
        "raw": _json(dict(post.raw)),
        "posted_at": post.created_at,
        "respond_within": (of.social.respond_within_hours if of else 24.0) * 3600,
    }


async def store(session: AsyncSession, post: InboundPost, of: AccountOf | None) -> int | None:
    """Keep ``post`` verbatim; its row id, or None when it was kept before."""
    found = await session.execute(sql.STORE, _stored(post, of))
    row_id = found.scalar_one_or_none()
    return int(row_id) if row_id is not None else None


def post_of(row: Any) -> InboundPost:
    hints = row.hints or {}
    place = hints.get("place")
    bbox = place.get("bbox") if place else None
    return InboundPost(
        platform=row.platform,
        account=row.account,
        post_id=row.post_id,
        author_id=row.author_id,
        text=row.text,
        created_at=row.posted_at,
        raw=row.raw,
        author_handle=row.author_handle,
        conversation_id=row.conversation_id,
        in_reply_to_id=row.in_reply_to_id,
        is_repost=bool(hints.get("repost")),
        is_private=bool(hints.get("private")),
        lang=hints.get("lang"),
        coordinates=tuple(hints["coordinates"]) if hints.get("coordinates") else None,
        place=PlaceHint(place["name"], tuple(bbox) if bbox else None) if place else None,
        media_urls=tuple(hints.get("media", ())),
    )


async def store_many(
    session: AsyncSession, posts: Sequence[InboundPost], known: list[AccountOf]
) -> dict[tuple[str, str], int]:
    """Keep a page of posts in one statement; the row ids of the new ones, by (platform,
    post id) (a post kept before, or twice in the page, is kept once)."""
    columns: dict[str, list[Any]] = {
        k: []
        for k in (
            "platform",
            "post_id",
            "account",
            "jurisdiction_id",
            "author_id",
            "author_handle",
            "conversation_id",
            "in_reply_to_id",
            "text",
            "hints",
            "raw",
            "posted_at",
            "respond_within",
        )
    }
    seen: set[tuple[str, str]] = set()
    for post in posts:
        key = (post.platform, post.post_id[:200])
        if key in seen:
            continue
        seen.add(key)
        of = social_config.find(known, post.platform, post.account)
        for name, value in _stored(post, of).items():
            columns[name].append(value)
    if not seen:
        return {}
    rows = await session.execute(sql.STORE_MANY, columns)
    return {(str(r.platform), str(r.post_id)): int(r.id) for r in rows}


async def receive(
    session: AsyncSession, pipeline: Pipeline, posts: Sequence[InboundPost]
) -> Counts:
    """Keep a page of posts (one statement) and run the pipeline over the new ones, in the
    caller's transaction (one savepoint for the page; one per post when a post of it fails).
    Everything a post leads to (its outcome, its ticket, its answer's outbox row) is written
    in that transaction: a crash before the commit keeps nothing of the page, and the next
    poll reads it again."""
    counts = Counts(received=len(posts))
    known = await pipeline.accounts(session)
    started = time.perf_counter()
    kept = await store_many(session, posts, known)
    counts.took("store", started)
    # Just inserted in this transaction: nobody else can be processing them.
    fresh = [
        (row_id, post)
        for post in posts
        if (row_id := kept.pop((post.platform, post.post_id[:200]), None)) is not None
    ]
    counts.stored = len(fresh)
    if not fresh:
        return counts
    pipeline.authors_with_tickets = {
        (r.platform, r.author_id)
        for r in await session.execute(
            sql.AUTHORS_WITH_TICKETS,
            {
                "platforms": [p.platform for _, p in fresh],
                "authors": [_clean(p.author_id)[:200] for _, p in fresh],
            },
        )
    }
    try:
        return await _receive_fresh(session, pipeline, fresh, counts)
    finally:
        pipeline.authors_with_tickets = None


async def _receive_fresh(
    session: AsyncSession,
    pipeline: Pipeline,
    fresh: Sequence[tuple[int, InboundPost]],
    counts: Counts,
) -> Counts:
    if not any(p.is_private and p.platform in MESSAGING for _, p in fresh):
        # The page in one savepoint: a post that cannot be processed is rare, and a savepoint
        # per post costs two round trips each. When one fails, the page is undone and run
        # again with a savepoint per post (the failing one becomes a webcare case).
        # Its answers are queued together at the end (one statement, one delivery job), in
        # the savepoint: a page undone keeps none of them.
        attempt = Counts(seconds=counts.seconds)
        pipeline.answers = replies.Answers()
        try:
            async with session.begin_nested():
                for row_id, post in fresh:
                    status = await _process_found(session, pipeline, row_id, post, attempt)
                    attempt.add(_filed_by(pipeline, post, status))
                started = time.perf_counter()
                await pipeline.answers.flush(session)
                attempt.took("acknowledge", started)
        except (KerbsideError, *DATABASE_ERRORS):
            log.info("a post of the page failed: the page again, post by post")
        else:
            counts.outcomes = attempt.outcomes
            return counts
        finally:
            pipeline.answers = None
    for row_id, post in fresh:
        counts.add(_filed_by(pipeline, post, await _run(session, pipeline, row_id, post, counts)))
    return counts


def _filed_by(pipeline: Pipeline, post: InboundPost, status: str) -> str:
    """Note that the post's author has a ticket now (rule 4 asks about their next posts)."""
    known = pipeline.authors_with_tickets
    if known is not None and status in (PostStatus.ticket_created, PostStatus.linked):
        known.add((post.platform, _clean(post.author_id)[:200]))
    return status


async def process(
    session: AsyncSession, pipeline: Pipeline, row_id: int, counts: Counts | None = None
) -> str:
    """Run the pipeline over one stored post; says its outcome."""
    counts = counts or Counts()
    row = (await session.execute(sql.CLAIM, {"id": row_id})).first()
    if row is None:
        return "taken"  # processed already, or by another worker right now
    return await _run(session, pipeline, row_id, post_of(row), counts)


async def _process_found(
    session: AsyncSession, pipeline: Pipeline, row_id: int, post: InboundPost, counts: Counts
) -> str:
    of = social_config.find(await pipeline.accounts(session), post.platform, post.account)
    return await _process(session, pipeline, row_id, post, of, counts)


async def _run(
    session: AsyncSession, pipeline: Pipeline, row_id: int, post: InboundPost, counts: Counts
) -> str:
    """One post in a savepoint of its own: one the intake refuses, or that fails in the
    database, becomes a webcare case and the others go on."""
    of = social_config.find(await pipeline.accounts(session), post.platform, post.account)
    try:
        async with session.begin_nested():
            return await _process(session, pipeline, row_id, post, of, counts)
    except KerbsideError as problem:  # the intake refused it (outside the city, a limit)
        await _outcome(session, row_id, PostStatus.needs_human, reason=f"not filed: {problem}")
        return PostStatus.needs_human.value
    except DATABASE_ERRORS as error:  # one bad post must not hold up the ones after it
        log.exception("a social post could not be processed", extra={"post": row_id})
        reason = f"not processed: {type(driver_error(error)).__name__}"
        await _outcome(session, row_id, PostStatus.needs_human, reason=reason)
        return PostStatus.needs_human.value


async def _process(
    session: AsyncSession,
    pipeline: Pipeline,
    row_id: int,
    post: InboundPost,
    of: AccountOf | None,
    counts: Counts,
) -> str:
    started = time.perf_counter()
    if of is None:
        await _outcome(
            session, row_id, PostStatus.needs_human, reason="addressed to an unknown account"
        )
        return PostStatus.needs_human.value
    why = _ignored(post, of, await pipeline.accounts(session))
    if why is not None:
        await _outcome(session, row_id, PostStatus.ignored, reason=why, closed=True)
        return PostStatus.ignored.value
    if post.is_private and post.platform in MESSAGING and of.account.dialogue:
        if not of.account.reports:
            await _outcome(
                session, row_id, PostStatus.needs_human, reason="this account takes no reports"
            )
            return PostStatus.needs_human.value
        return await _converse(session, pipeline, row_id, post, of, counts)
    resumed = await _resume(session, pipeline, row_id, post, of, counts)
    if resumed is not None:
        return resumed
    linked = await _linked_ticket(session, post, of)
    started = counts.took("link", started)
    if linked is not None:
        ticket_id, rule = linked
        ticket = await sql.LINKED.one(session, {"id": ticket_id})
        if ticket.status in DONE_STATUSES:
            return await _on_done_ticket(session, pipeline, row_id, post, of, ticket, rule, counts)
        await _link(session, pipeline, row_id, post, of, ticket, rule)
        counts.took("acknowledge", started)
        return PostStatus.linked.value
    return await _classify_and_file(session, pipeline, row_id, post, of, counts)


async def _classify_and_file(
    session: AsyncSession,
    pipeline: Pipeline,
    row_id: int,
    post: InboundPost,
    of: AccountOf,
    counts: Counts,
    *,
    suggest: bool = True,
) -> str:
    """What a post no rule linked becomes: the communications queue, a webcare case, a
    suggestion to join the author's recent ticket (rule 4), a question where, or a report
    (``suggest=False``: webcare decided it is a new one)."""
    started = time.perf_counter()
    verdict = (await pipeline.classifier(session, of.jurisdiction_id)).classify(post.text)
    started = counts.took("classify", started)
    language = _language(post, verdict.language)
    facts: dict[str, Any] = {
        "service_code": verdict.service_code,
        "confidence": verdict.confidence,
        "language": verdict.language,
        "sentiment": verdict.sentiment,
        "sensitive": verdict.sensitive,
    }
    if verdict.sensitive:
        await _outcome(session, row_id, PostStatus.communications, reason=verdict.reason, **facts)
        return PostStatus.communications.value
    if not of.account.reports:
        await _outcome(
            session, row_id, PostStatus.needs_human, reason="this account takes no reports", **facts
        )
        return PostStatus.needs_human.value
    if not verdict.is_report or verdict.service_code is None:
        await _outcome(
            session,
            row_id,
            PostStatus.needs_human,
            reason=verdict.reason or "not a report",
            **facts,
        )
        return PostStatus.needs_human.value
    located = await (await pipeline.locator(session, of)).locate(post)
    started = counts.took("locate", started)
    author = (post.platform, _clean(post.author_id)[:200])
    known = pipeline.authors_with_tickets
    if suggest and (known is None or author in known):
        candidate = await _author_ticket(session, row_id, post, of, verdict.service_code, located)
        started = counts.took("link", started)
        if candidate is not None and candidate.attach:
            await _link(
                session,
                pipeline,
                row_id,
                post,
                of,
                _Ticket(candidate.ticket_id, candidate.reference),
                LinkRule.author,
                **facts,
            )
            counts.took("acknowledge", started)
            return PostStatus.linked.value
        if candidate is not None:
            await _outcome(
                session,
                row_id,
                PostStatus.suggest_merge,
                reason=candidate.why,
                candidate_ticket_id=candidate.ticket_id,
                lon=located.lon if located else None,
                lat=located.lat if located else None,
                location_source=located.how if located else None,
                **facts,
            )
            return PostStatus.suggest_merge.value
    if located is None:
        await _ask_where(session, pipeline, row_id, post, of, verdict.service_code, language, facts)
        counts.took("acknowledge", started)
        return PostStatus.awaiting_location.value
    await _file(session, pipeline, row_id, post, of, verdict.service_code, located, language, facts)
    counts.took("file", started)
    return PostStatus.ticket_created.value


def _ignored(post: InboundPost, of: AccountOf, known: list[AccountOf]) -> str | None:
    author = {post.author_id.lower(), (post.author_handle or "").lower()} - {""}
    own = {of.account.handle.lower(), (of.account.id or "").lower()} - {""}
    if author & own:
        return "own account"
    for other in known:
        if other.account.platform == post.platform and author & (
            {other.account.handle.lower(), (other.account.id or "").lower()} - {""}
        ):
            return "another city account"
    if post.is_repost:
        return "repost"
    if author & {b.lower().lstrip("@") for b in of.social.blocked_authors}:
        return "blocked author"
    words = _MENTION.sub("", _URL.sub("", post.text)).strip()
    if not words and not post.coordinates and not post.media_urls:
        return "spam: no text"
    if len(_URL.findall(post.text)) >= 4 or len(_MENTION.findall(post.text)) >= 8:
        return "spam: links or mentions"
    return None


def _language(post: InboundPost, detected: str) -> str:
    for candidate in (post.lang, detected):
        if candidate in _WORDS:
            return str(candidate)
    return "en"


# Each platform's keys for an answer to a post (``app.channels.threads`` sends them).
REPLY_DATA: Mapping[str, Callable[[InboundPost], dict[str, Any]]] = {
    "facebook": facebook.reply_data,
    "messenger": facebook.reply_data,
    "whatsapp": whatsapp.reply_data,
    "mastodon": mastodon.reply_data,
    "bluesky": bluesky.reply_data,
}
MESSAGING = frozenset({"messenger", "whatsapp"})  # a 24-hour window; the dialogue


def reply_target(post: InboundPost, of: AccountOf, *, mention: str | None = None) -> dict[str, Any]:
    """Where answers about this post go: its thread, by the account it was addressed to.

    Kept per ticket (the consent's evidence), so a person who wrote on two platforms, or to
    two accounts, hears about each ticket where they reported it. Secrets by their variable's
    name only. On X, ``mention`` is the author's original mention (where X's 2026 rule lets
    the city answer when it refuses an answer to a later post), and ``author`` with ``dm``
    the last resort: a direct message, when the account sends them.
    """
    target: dict[str, Any] = {
        "platform": post.platform,
        "account": of.account.handle,
        "post": post.post_id,
    }
    if mention and mention != post.post_id:
        target["mention"] = mention
    if post.platform == "x":
        target["author"] = post.author_id
        if of.account.direct_messages:
            target["dm"] = True
    if post.author_handle:
        target["handle"] = post.author_handle
    token = of.account.credentials.get("user_token")
    if token:
        target["credentials"] = token  # the variable's name, never its value
    if of.account.base_url:
        target["base_url"] = of.account.base_url
    keys = REPLY_DATA.get(post.platform)
    if keys is not None:
        # The messaging window moves with every message: it is the contact's (_contact_spec),
        # not this post's.
        target.update(
            {k: v for k, v in keys(post).items() if v is not None and k != "last_inbound_at"}
        )
        target["env"] = dict(of.account.credentials)
        for option in ("update_tag", "update_template"):
            if getattr(of.account, option):
                target[option] = getattr(of.account, option)
        if of.account.human_agent:
            target["human_agent"] = True
        if of.account.template_languages:
            target["template_languages"] = dict(of.account.template_languages)
    return target


def _contact_spec(post: InboundPost) -> ContactSpec:
    data: dict[str, Any] = {"handle": post.author_handle} if post.author_handle else {}
    if post.platform in MESSAGING:
        # The messaging window: merged into the contact's data on every message.
        data["last_inbound_at"] = post.created_at.isoformat()
    return ContactSpec(CONTACT_OF.get(post.platform, ContactKind.x), post.author_id, data=data)


# -- the reporting dialogue (WhatsApp, Messenger) ----------------------------------------------


async def _chat_photos(
    pipeline: Pipeline, row_id: int, post: InboundPost, of: AccountOf
) -> list[AcceptedPhoto]:
    """A chat message's photos (a WhatsApp media id, a Messenger attachment's URL), fetched
    now into the photo pipeline. One that cannot be fetched or is no photo is left out (the
    dialogue asks for one anyway)."""
    if not post.media_urls:
        return []
    if pipeline.photos is None:
        pipeline.photos = PhotoPipeline(pipeline.settings)
    accepted, left_out = await post_photos.chat_photos(
        pipeline.photos, pipeline.settings, post.media_urls, of
    )
    if left_out:
        log.info("a chat photo was left out", extra={"post": row_id, "why": "; ".join(left_out)})
    return accepted


async def _converse(
    session: AsyncSession,
    pipeline: Pipeline,
    row_id: int,
    post: InboundPost,
    of: AccountOf,
    counts: Counts,
) -> str:
    """One message of a chat: the dialogue takes what the pipeline made of it and answers
    with its next question; "yes" files the report. The intake's acknowledgement (with the
    reference, like every channel's) is the one confirmation: the dialogue's own is not sent."""
    started = time.perf_counter()
    verdict = (await pipeline.classifier(session, of.jurisdiction_id)).classify(post.text)
    started = counts.took("classify", started)
    facts: dict[str, Any] = {
        "language": verdict.language,
        "sentiment": verdict.sentiment,
        "sensitive": verdict.sensitive,
    }
    if verdict.sensitive:
        await _outcome(session, row_id, PostStatus.communications, reason=verdict.reason, **facts)
        return PostStatus.communications.value
    place: Place | None = None
    if post.coordinates is None and post.text.strip():
        located = await (await pipeline.locator(session, of)).locate(post)
        if located is not None:
            place = Place(located.lon, located.lat, located.source, located.accuracy_m)
    counts.took("locate", started)
    photos = await _chat_photos(pipeline, row_id, post, of)
    target = reply_target(post, of)
    turn = await dialogue.converse(
        session,
        pipeline.catalog,
        post,
        DialogueSettings(
            jurisdiction=of.jurisdiction,
            language=await pipeline.language(session, of.jurisdiction_id),
            form_url=of.social.report_form_url or f"{pipeline.settings.public_base_url}/report",
            reply_to=target,
        ),
        service_code=verdict.service_code if verdict.is_report else None,
        place=place,
        photos=photos,
        language=verdict.language if verdict.language in _WORDS else None,
    )
    pipeline.discard.extend(turn.discard)
    contact = await contacts.remember(session, _contact_spec(post))  # the window moves on
    if turn.filed is not None:
        # The acknowledgement is queued by the event stream at COMMIT, to this message.
        await _outcome(
            session,
            row_id,
            PostStatus.ticket_created,
            link_rule=LinkRule.intake.value,
            ticket_id=turn.filed.ticket_id,
            report_id=turn.filed.report_id,
            contact_id=turn.filed.contacts[0].id if turn.filed.contacts else contact.id,
            answered=True,
            **facts,
        )
        counts.took("file", started)
        return PostStatus.ticket_created.value
    if turn.reply:
        await replies.queue_reply(
            session,
            contact_id=contact.id,
            post_id=row_id,
            kind=DIALOGUE,
            words=turn.reply,
            reply_to=target,
        )
    await _outcome(
        session,
        row_id,
        PostStatus.in_dialogue,
        reason=f"dialogue: {turn.state}",
        contact_id=contact.id,
        answered=turn.reply is not None,
        closed=turn.state not in OPEN_DIALOGUE,
        **facts,
    )
    counts.took("acknowledge", started)
    return PostStatus.in_dialogue.value


async def end_silent_dialogues(
    session: AsyncSession, settings: Settings, silent_for: timedelta
) -> tuple[int, list[AcceptedPhoto]]:
    """Close the chats silent for ``silent_for`` (the periodic job): each closing line goes out
    while the messaging window is open (after it a free message would be refused). Says how
    many were closed, and the photos to delete after the commit."""
    ended = await dialogue.expire(session, silent_for)
    known = await social_config.accounts(session)
    discard: list[AcceptedPhoto] = []
    for chat in ended:
        discard.extend(chat.discard)
        if clock.now() - chat.last_inbound_at >= WINDOW:
            continue
        last = (
            await session.execute(
                sql.LAST_PRIVATE_POST,
                {"platform": chat.platform, "account": chat.account, "author_id": chat.author_id},
            )
        ).first()
        of = social_config.find(known, chat.platform, chat.account)
        if last is None or of is None or last.contact_id is None:
            continue
        await replies.queue_reply(
            session,
            contact_id=last.contact_id,
            post_id=last.id,
            kind=DIALOGUE,
            words=chat.reply,
            reply_to=reply_target(post_of(last), of),
        )
    return len(ended), discard


# -- linking -----------------------------------------------------------------------------------


def references_in(text: str) -> list[str]:
    """Ticket references the text names: ``K-2026-000123`` or ``#K2026000123``."""
    return [f"{p}-{y}-{n}" for p, y, n in _REFERENCE.findall(text)]


async def _linked_ticket(
    session: AsyncSession, post: InboundPost, of: AccountOf
) -> tuple[int, LinkRule] | None:
    """The first linking rule that finds a ticket: reply, conversation, reference."""
    params = {"platform": post.platform, "jurisdiction_id": of.jurisdiction_id}
    if post.in_reply_to_id:
        found = await sql.REPLIED_TICKET.one(
            session, {**params, "in_reply_to": post.in_reply_to_id}
        )
        if found is not None:
            return int(found.ticket_id), LinkRule.reply
    if post.conversation_id and post.conversation_id != post.post_id:
        found = await sql.CONVERSATION_TICKET.one(
            session,
            {**params, "conversation_id": post.conversation_id, "author_id": post.author_id},
        )
        if found is not None:
            return int(found.ticket_id), LinkRule.conversation
    references = references_in(post.text)
    if references:
        found = await sql.REFERENCED_TICKET.one(session, {**params, "references": references})
        if found is not None:
            return int(found.ticket_id), LinkRule.reference
    return None


async def _follow(session: AsyncSession, post: InboundPost, of: AccountOf, ticket_id: int) -> int:
    """The author hears about the ticket in this post's thread from now on (a contact, the
    consent their post gives, a subscription); returns the contact's id."""
    contact = await contacts.remember(
        session,
        _contact_spec(post),
        consent=Consent(
            Purpose.ticket_updates,
            ConsentMethod.social_post,
            ticket_id=ticket_id,
            evidence={
                "channel": post.platform,
                "post": post.post_id,
                "reply_to": reply_target(post, of),
            },
        ),
    )
    await sql.SUBSCRIBE.one(session, {"ticket_id": ticket_id, "contact_id": contact.id})
    return contact.id


@dataclass(frozen=True)
class _Ticket:
    """What linking needs of a ticket (a row of ``sql.LINKED`` has it too)."""

    id: int
    reference: str


async def _link(
    session: AsyncSession,
    pipeline: Pipeline,
    row_id: int,
    post: InboundPost,
    of: AccountOf,
    ticket: Any,
    rule: LinkRule,
    *,
    reopened: bool = False,
    reason: str | None = None,
    **facts: Any,
) -> None:
    """Add the post to the ticket's timeline (internal: the post is the author's own words,
    and subscribers are not told of it), and answer in its thread (``reopened``: the
    ticket's status notice, which the author now follows, is the answer). ``ticket``: its
    ``id`` and ``reference``."""
    ticket_id = int(ticket.id)
    await add_event(
        session,
        ticket_id,
        EventKind.inbound_message,
        at=clock.now(),
        public=False,
        actor_label=f"social:{post.platform}",
        note=_clean(post.text)[:MAX_DESCRIPTION],
        data={"platform": post.platform, "post": post.post_id, "rule": rule.value}
        | ({"reopened": True} if reopened else {}),
    )
    contact_id = await _follow(session, post, of, ticket_id)
    if not reopened:
        words = _WORDS[_language(post, "und")]["linked"].format(reference=ticket.reference)
        await replies.queue_reply(
            session,
            contact_id=contact_id,
            post_id=row_id,
            kind=replies.POST_LINKED,
            words=words,
            reply_to=await _reply_to(session, post, of, ticket_id),
            ticket_id=ticket_id,
            page=pipeline.answers,
        )
    await _outcome(
        session,
        row_id,
        PostStatus.linked,
        reason=reason,
        link_rule=rule.value,
        ticket_id=ticket_id,
        contact_id=contact_id,
        answered=True,
        **facts,
    )


async def _reply_to(
    session: AsyncSession, post: InboundPost, of: AccountOf, ticket_id: int
) -> dict[str, Any]:
    """Where to answer a post on a ticket: the post, and the author's first post on the ticket
    (their original mention) to fall back on when the platform refuses the first."""
    first = await sql.FIRST_MENTION.one(
        session, {"platform": post.platform, "author_id": post.author_id, "ticket_id": ticket_id}
    )
    return reply_target(post, of, mention=str(first.post_id) if first is not None else None)


# -- rule 4: the same author's recent ticket ----------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """The author's recent ticket this post may be about."""

    ticket_id: int
    reference: str
    attach: bool  # the same service and near it: linked without asking
    why: str


async def _author_ticket(
    session: AsyncSession,
    row_id: int,
    post: InboundPost,
    of: AccountOf,
    service_code: str | None,
    located: Located | None,
) -> Candidate | None:
    """Rule 4 of the reference (refs/channels.md 5.2): the same author, an open ticket updated
    within ``suggest_merge_within_hours``, from another conversation. When both are located,
    the distance decides (within ``suggest_merge_within_m``: the same service links it, another
    asks webcare); when the post has no place, the same service asks webcare. None: no
    candidate, the post goes on as a new one."""
    found = await sql.AUTHOR_TICKET.one(
        session,
        {
            "platform": post.platform,
            "author_id": post.author_id,
            "id": row_id,
            "conversation_id": post.conversation_id,
            "jurisdiction_id": of.jurisdiction_id,
            "within": of.social.suggest_merge_within_hours * 3600,
            "service_code": service_code,
            "lon": located.lon if located else None,
            "lat": located.lat if located else None,
        },
    )
    if found is None:
        return None
    same_service = service_code is not None and found.service_code == service_code
    if found.distance_m is not None:
        if found.distance_m > of.social.suggest_merge_within_m:
            return None
        near = f"{found.distance_m:.0f} m from the author's {found.reference}"
        if same_service:
            return Candidate(found.id, found.reference, True, near)
        return Candidate(found.id, found.reference, False, f"{near} (another service)")
    if same_service:
        return Candidate(
            found.id,
            found.reference,
            False,
            f"the same author's {found.reference} ({found.service_code}), no place to compare",
        )
    return None


# -- the reopen policy -------------------------------------------------------------------------


def _reopen_asked(verdict: Any) -> bool:
    """A post on a fixed ticket asks to reopen it unless it reads as thanks: a report, or a
    negative one (a "thank you, fixed!" must not reopen the ticket it thanks for)."""
    return bool(verdict.is_report) or (verdict.sentiment is not None and verdict.sentiment < 0)


async def _on_done_ticket(
    session: AsyncSession,
    pipeline: Pipeline,
    row_id: int,
    post: InboundPost,
    of: AccountOf,
    ticket: Any,
    rule: LinkRule,
    counts: Counts,
) -> str:
    """A post linked to a fixed or closed ticket (refs/channels.md 5.2, rule 6): within the
    city's ``reopen_within_hours`` of the fix it reopens the ticket (a status change: its
    reporters and followers are told); later it opens a follow-up ticket that names the old
    one. A thank-you is only added to the timeline."""
    started = time.perf_counter()
    verdict = (await pipeline.classifier(session, of.jurisdiction_id)).classify(post.text)
    facts: dict[str, Any] = {
        "service_code": verdict.service_code,
        "confidence": verdict.confidence,
        "language": verdict.language,
        "sentiment": verdict.sentiment,
        "sensitive": verdict.sensitive,
    }
    if not _reopen_asked(verdict) or verdict.sensitive:
        await _link(session, pipeline, row_id, post, of, ticket, rule, **facts)
        counts.took("acknowledge", started)
        return PostStatus.linked.value
    now = clock.now()
    window = timedelta(hours=of.social.reopen_within_hours)
    if ticket.done_at is not None and now - ticket.done_at < window:
        # The workflow's own move, by the city's system on the author's word.
        system = Principal(
            kind="api_key",
            role=Role.staff,
            label=f"system:social:{post.platform}",
            name="Social post",
            jurisdiction_id=ticket.jurisdiction_id,
        )
        await change_status(
            session,
            ticket.id,
            TicketStatus.reopened,
            actor=system,
            now=now,
            note=None,
        )
        await _link(
            session,
            pipeline,
            row_id,
            post,
            of,
            ticket,
            rule,
            reopened=True,
            reason=f"reopened {ticket.reference}",
            **facts,
        )
        counts.took("acknowledge", started)
        return PostStatus.linked.value
    # After the window: a follow-up ticket, at the place the post gives or the old ticket's.
    located = await (await pipeline.locator(session, of)).locate(post)
    if located is None:
        located = Located(
            ticket.lon,
            ticket.lat,
            LocationSource.post,
            None,
            "follow_up",
            address=ticket.address,
        )
    service_code = verdict.service_code if verdict.is_report else None
    await _file(
        session,
        pipeline,
        row_id,
        post,
        of,
        service_code or ticket.service_code,
        located,
        _language(post, verdict.language),
        facts,
        follow_up_of=ticket,
    )
    counts.took("file", started)
    return PostStatus.ticket_created.value


# -- webcare decides a suggestion -------------------------------------------------------------


async def decide_suggestion(session: AsyncSession, pipeline: Pipeline, row: Any, link: bool) -> str:
    """Webcare's answer to rule 4: ``link`` joins the post to the suggested ticket (as a
    linked post: timeline, follower, answer in the thread); otherwise it goes on as a new
    post (asked where, or filed). The row is locked and still ``suggest_merge``."""
    known = await pipeline.accounts(session)
    of = social_config.find(known, row.platform, row.account)
    post = post_of(row)
    if of is None:
        await _outcome(
            session, row.id, PostStatus.needs_human, reason="addressed to an unknown account"
        )
        return PostStatus.needs_human.value
    counts = Counts()
    if link and row.candidate_ticket_id is not None:
        # The ticket as it stands now (merged away: the one it was merged into).
        ticket = await sql.LINKED.one(session, {"id": row.candidate_ticket_id})
        if ticket is not None:
            if ticket.status in DONE_STATUSES:
                return await _on_done_ticket(
                    session, pipeline, row.id, post, of, ticket, LinkRule.suggested, counts
                )
            await _link(session, pipeline, row.id, post, of, ticket, LinkRule.suggested)
            return PostStatus.linked.value
    return await _run_new(session, pipeline, row.id, post, of, counts)


async def _run_new(
    session: AsyncSession,
    pipeline: Pipeline,
    row_id: int,
    post: InboundPost,
    of: AccountOf,
    counts: Counts,
) -> str:
    try:
        async with session.begin_nested():
            return await _classify_and_file(
                session, pipeline, row_id, post, of, counts, suggest=False
            )
    except KerbsideError as problem:
        await _outcome(session, row_id, PostStatus.needs_human, reason=f"not filed: {problem}")
        return PostStatus.needs_human.value


# -- asking where, and resuming ----------------------------------------------------------------


def form_url(settings: Settings, of: AccountOf, post: InboundPost, service_code: str) -> str:
    """The report form, filled in with what the post said (no personal data)."""
    base = of.social.report_form_url or f"{settings.public_base_url}/report"
    query = urlencode(
        {
            "jurisdiction": of.jurisdiction,
            "service": service_code,
            "description": _URL.sub("", _MENTION.sub("", post.text)).strip()[:200],
            "source": f"{post.platform}:{post.post_id}",
        }
    )
    return f"{base}?{query}"


async def _ask_where(
    session: AsyncSession,
    pipeline: Pipeline,
    row_id: int,
    post: InboundPost,
    of: AccountOf,
    service_code: str,
    language: str,
    facts: Mapping[str, Any],
) -> None:
    contact = await contacts.remember(session, _contact_spec(post))
    words = _WORDS[language]["ask"].format(url=form_url(pipeline.settings, of, post, service_code))
    await replies.queue_reply(
        session,
        contact_id=contact.id,
        post_id=row_id,
        kind=replies.LOCATION_ASKED,
        words=words,
        reply_to=reply_target(post, of),
        page=pipeline.answers,
    )
    await _outcome(
        session,
        row_id,
        PostStatus.awaiting_location,
        contact_id=contact.id,
        answered=True,
        **facts,
    )


async def _resume(
    session: AsyncSession,
    pipeline: Pipeline,
    row_id: int,
    post: InboundPost,
    of: AccountOf,
    counts: Counts,
) -> str | None:
    """The author answers our question where: file the waiting post at the place this one
    gives. None when this post answers no waiting post."""
    if not post.in_reply_to_id:  # an answer to our question is a reply in the thread
        return None
    waiting = await sql.AWAITING.one(
        session,
        {
            "platform": post.platform,
            "author_id": post.author_id,
            "id": row_id,
            "in_reply_to": post.in_reply_to_id,
            "conversation_id": post.conversation_id,
        },
    )
    if waiting is None:
        return None
    waiting_id = waiting.id
    started = time.perf_counter()
    located = await (await pipeline.locator(session, of)).locate(post)
    counts.took("locate", started)
    if located is None:
        await _outcome(
            session,
            row_id,
            PostStatus.needs_human,
            reason="answered our question where without a place we could read",
        )
        return PostStatus.needs_human.value
    waiting_row = (
        await session.execute(
            sql.WAITING,
            {"id": waiting_id},
        )
    ).one()
    waiting = post_of(waiting_row)
    facts = {"language": waiting_row.language}
    await _file(
        session,
        pipeline,
        waiting_id,
        waiting,
        of,
        waiting_row.service_code,
        located,
        _language(waiting, waiting_row.language or "und"),
        facts,
        extra_text=post.text,
        extra_media=post.media_urls,  # the answer's photo: fetched with the waiting post's
        resumed_by=row_id,
    )
    filed = (await session.execute(sql.TICKET_OF, {"id": waiting_id})).one()
    await _outcome(
        session,
        row_id,
        PostStatus.linked,
        link_rule=LinkRule.resumed.value,
        ticket_id=filed.ticket_id,
        contact_id=filed.contact_id,
        answered=True,
    )
    return PostStatus.linked.value


# -- filing ------------------------------------------------------------------------------------


def _reported_at(post: InboundPost) -> datetime | None:
    """The post's time, when the intake takes it from a citizen (the last 7 days)."""
    now = clock.now()
    if now - BACKDATE_LIMIT < post.created_at <= now:
        return post.created_at
    return None


async def _file(
    session: AsyncSession,
    pipeline: Pipeline,
    row_id: int,
    post: InboundPost,
    of: AccountOf,
    service_code: str,
    located: Located,
    language: str,
    facts: Mapping[str, Any],
    *,
    extra_text: str | None = None,
    extra_media: Sequence[str] = (),
    resumed_by: int | None = None,
    follow_up_of: Any = None,
) -> None:
    description = _clean(post.text if extra_text is None else f"{post.text}\n\n{extra_text}")
    target = reply_target(post, of)
    filed = await submit_report(
        session,
        pipeline.catalog,
        Submission(
            channel=CHANNEL_OF.get(post.platform, Channel.x),
            submitter=Submitter(label=f"social:{post.platform}", identified=True),
            service_code=service_code,
            place=Place(located.lon, located.lat, located.source, located.accuracy_m),
            jurisdiction=of.jurisdiction,
            description=description[:MAX_DESCRIPTION],
            address=located.address[:500] if located.address else None,
            contacts=[_contact_spec(post)],
            updates=True,
            external_id=f"{post.platform}:{post.post_id}"[:200],
            reported_at=_reported_at(post),
            locale=language,
            consent_evidence={"post": post.post_id, "reply_to": target},
            # A follow-up is a new ticket: the old one stays as its reopen window left it.
            reopen=follow_up_of is None,
        ),
    )
    if post.media_urls or extra_media:  # fetched into the report after the commit, by a job
        await post_photos.ask_for(session, row_id)
    if follow_up_of is not None and filed.ticket_id != follow_up_of.id:
        now = clock.now()
        await add_event(
            session,
            filed.ticket_id,
            EventKind.comment,
            at=now,
            public=True,
            actor_label=f"social:{post.platform}",
            note=f"Follow-up of {follow_up_of.reference}",
            data={"follow_up_of": follow_up_of.reference},
        )
        await add_event(
            session,
            follow_up_of.id,
            EventKind.comment,
            at=now,
            public=False,
            actor_label=f"social:{post.platform}",
            note=f"Reported again after the reopen window: {filed.reference}",
            data={"follow_up": filed.reference},
        )
    # The acknowledgement (ticket opened, or joined) is queued by the event stream at COMMIT
    # for the author's contact, with this post as where to answer.
    await _outcome(
        session,
        row_id,
        PostStatus.ticket_created,
        reason=f"follow-up of {follow_up_of.reference}" if follow_up_of is not None else None,
        link_rule=(LinkRule.follow_up if follow_up_of is not None else LinkRule.intake).value,
        ticket_id=filed.ticket_id,
        report_id=filed.report_id,
        contact_id=filed.contacts[0].id if filed.contacts else None,
        lon=located.lon,
        lat=located.lat,
        location_source=located.how,
        resumed_by_id=resumed_by,
        answered=True,
        **facts,
    )


async def _outcome(
    session: AsyncSession,
    row_id: int,
    status: PostStatus,
    *,
    reason: str | None = None,
    link_rule: str | None = None,
    service_code: str | None = None,
    confidence: float | None = None,
    language: str | None = None,
    sentiment: float | None = None,
    sensitive: bool = False,
    lon: float | None = None,
    lat: float | None = None,
    location_source: str | None = None,
    ticket_id: int | None = None,
    report_id: int | None = None,
    contact_id: int | None = None,
    resumed_by_id: int | None = None,
    candidate_ticket_id: int | None = None,
    answered: bool = False,
    closed: bool = False,
) -> None:
    await sql.OUTCOME.one(
        session,
        {
            "id": row_id,
            "status": status.value,
            "reason": reason,
            "link_rule": link_rule,
            "service_code": service_code,
            "confidence": confidence,
            "language": language,
            "sentiment": sentiment,
            "sensitive": sensitive,
            "lon": lon,
            "lat": lat,
            "location_source": location_source,
            "ticket_id": ticket_id,
            "report_id": report_id,
            "contact_id": contact_id,
            "resumed_by_id": resumed_by_id,
            "candidate_ticket_id": candidate_ticket_id,
            "answered": answered,
            "closed": closed,
        },
    )
