"""Answers in a social thread, through the outbox: the words are written when the answer is
queued (a question for the location, a note that a post joined a ticket, a webcare agent's
free text), and the channel replies to the post ``reply_to`` names.

Queued in the caller's transaction with its delivery job, like every outbox row; one
acknowledgement and one question per post however often the pipeline runs (a unique index).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


async def queue_reply(
    session: AsyncSession,
    *,
    contact_id: int,
    post_id: int | None,
    kind: str,
    words: str,
    reply_to: Mapping[str, Any],
    ticket_id: int | None = None,
) -> int | None:
    """Queue one answer in the thread of social post ``post_id`` (None: a conversation, not a
    post); its id, or None when this post already has this kind of answer."""
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
