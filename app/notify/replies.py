"""Answers in a social thread, through the outbox: the words are written when the answer is
queued (a question for the location, a note that a post joined a ticket, a webcare agent's
free text), and the channel replies to the post ``reply_to`` names.

Queued in the caller's transaction with its delivery job, like every outbox row; one
acknowledgement and one question per post however often the pipeline runs (a unique index).
A page of posts queues its answers together (``Answers``): one multi-row insert and one
delivery job for the page, in the page's savepoint, in the order the posts were processed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.jobs import DELIVER_NOTIFICATIONS, defer
from app.notify.models import Reason

# Kinds of answer; the first two are queued at most once per post.
POST_LINKED = "post_linked"
LOCATION_ASKED = "location_asked"
ANSWER = "answer"
LINKED = "linked"  # a Messenger conversation linked for notices (app/linking): confirmed

_QUEUE = text(
    """
    INSERT INTO notification (contact_id, ticket_id, event_kind, channel, reason, subject, body,
                              social_post_id, reply_to)
    SELECT c.id, :ticket_id, :kind, c.kind, :reason, :text, :text, :post_id,
           CAST(:reply_to AS jsonb)
    FROM contact c WHERE c.id = :contact_id
    ON CONFLICT (social_post_id, event_kind)
        WHERE social_post_id IS NOT NULL AND event_kind IN ('post_linked', 'location_asked')
        DO NOTHING
    RETURNING id
    """
)


# A page's answers in one statement. The ids follow the page's order (ORDER BY the rows'
# ordinality), so one person's answers about one ticket go out in the order they were made.
_QUEUE_MANY = text(
    """
    INSERT INTO notification (contact_id, ticket_id, event_kind, channel, reason, subject, body,
                              social_post_id, reply_to)
    SELECT c.id, v.ticket_id, v.kind, c.kind, :reason, v.words, v.words, v.post_id, v.reply_to
    FROM unnest(CAST(:contact_ids AS bigint[]), CAST(:ticket_ids AS bigint[]),
                CAST(:kinds AS text[]), CAST(:words AS text[]), CAST(:post_ids AS bigint[]),
                CAST(:reply_tos AS jsonb[]))
         WITH ORDINALITY AS v(contact_id, ticket_id, kind, words, post_id, reply_to, n)
    JOIN contact c ON c.id = v.contact_id
    ORDER BY v.n
    ON CONFLICT (social_post_id, event_kind)
        WHERE social_post_id IS NOT NULL AND event_kind IN ('post_linked', 'location_asked')
        DO NOTHING
    RETURNING id
    """
)


@dataclass
class Answers:
    """The answers a page of posts makes, written together by ``flush`` before the page's
    savepoint ends (so a page undone takes its answers with it: ``clear``)."""

    rows: dict[str, list[Any]] = field(
        default_factory=lambda: {
            k: [] for k in ("contact_ids", "ticket_ids", "kinds", "words", "post_ids", "reply_tos")
        }
    )

    def add(
        self,
        *,
        contact_id: int,
        post_id: int | None,
        kind: str,
        words: str,
        reply_to: Mapping[str, Any],
        ticket_id: int | None,
    ) -> None:
        r = self.rows
        r["contact_ids"].append(contact_id)
        r["ticket_ids"].append(ticket_id)
        r["kinds"].append(kind)
        r["words"].append(words)
        r["post_ids"].append(post_id)
        r["reply_tos"].append(orjson.dumps(dict(reply_to)).decode())

    def clear(self) -> None:
        for values in self.rows.values():
            values.clear()

    async def flush(self, session: AsyncSession) -> int:
        """Queue the answers gathered so far (one statement) and one delivery job for them;
        says how many were queued (a post's second question or note is not)."""
        if not self.rows["kinds"]:
            return 0
        queued = len(
            (await session.execute(_QUEUE_MANY, {**self.rows, "reason": Reason.reply.value})).all()
        )
        self.clear()
        if queued:
            # One job for the page: it delivers batch after batch until nothing is due.
            await defer(session, DELIVER_NOTIFICATIONS, queue="notify")
        return queued


async def queue_reply(
    session: AsyncSession,
    *,
    contact_id: int,
    post_id: int | None,
    kind: str,
    words: str,
    reply_to: Mapping[str, Any],
    ticket_id: int | None = None,
    page: Answers | None = None,
) -> int | None:
    """Queue one answer in the thread of social post ``post_id`` (None: a conversation, not a
    post); its id, or None when this post already has this kind of answer, or when it joins
    ``page`` (queued when the page is flushed)."""
    if page is not None:
        page.add(
            contact_id=contact_id,
            post_id=post_id,
            kind=kind,
            words=words,
            reply_to=reply_to,
            ticket_id=ticket_id,
        )
        return None
    queued = (
        await session.execute(
            _QUEUE,
            {
                "contact_id": contact_id,
                "ticket_id": ticket_id,
                "kind": kind,
                "reason": Reason.reply.value,
                "text": words,
                "post_id": post_id,
                "reply_to": orjson.dumps(dict(reply_to)).decode(),
            },
        )
    ).scalar_one_or_none()
    if queued is None:
        return None
    # One delivery job per change, as the event stream defers it; the claim keeps one
    # person's messages in order.
    await defer(session, DELIVER_NOTIFICATIONS, queue="notify")
    return int(queued)


# The platform refused every way to answer these posts: they go back to the webcare inbox
# (unanswered, with the reason), in the transaction that records the failed delivery.
_COULD_NOT_ANSWER = text(
    """
    UPDATE social_post p SET answered_at = NULL, answer_failed_at = now(),
                             answer_failure = v.reason
    FROM unnest(CAST(:platforms AS varchar[]), CAST(:posts AS varchar[]),
                CAST(:reasons AS text[])) AS v(platform, post_id, reason)
    WHERE p.platform = v.platform AND p.post_id = v.post_id AND p.closed_at IS NULL
    """
)


async def could_not_answer(session: AsyncSession, refused: Sequence[tuple[str, str, str]]) -> None:
    """Mark social posts (platform, post id, why) as ones we could not answer."""
    platforms, posts, reasons = zip(*refused, strict=True)
    await session.execute(
        _COULD_NOT_ANSWER,
        {"platforms": list(platforms), "posts": list(posts), "reasons": list(reasons)},
    )


# Webcare's own answer to a post we could not answer reached its author (in the thread, on
# their first post, or as a direct message): the post leaves the could-not-answer state.
_ANSWERED = text(
    """
    UPDATE social_post p SET answered_at = coalesce(p.answered_at, now()),
                             answer_failed_at = NULL, answer_failure = NULL
    FROM unnest(CAST(:platforms AS varchar[]), CAST(:posts AS varchar[])) AS v(platform, post_id)
    WHERE p.platform = v.platform AND p.post_id = v.post_id AND p.answer_failed_at IS NOT NULL
    """
)


async def answered(session: AsyncSession, delivered: Sequence[tuple[str, str]]) -> None:
    """Webcare's answers to these social posts (platform, post id) were delivered."""
    platforms, posts = zip(*delivered, strict=True)
    await session.execute(_ANSWERED, {"platforms": list(platforms), "posts": list(posts)})
