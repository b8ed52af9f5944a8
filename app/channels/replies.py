"""What the social and messaging adapters share on the way out: the text of an answer, and
the messaging window (how long after a person's last message a platform lets us write freely).

The pipeline puts what an answer needs into the outbox row's ``data`` (``Message.data``):
each adapter's ``reply_data(post)`` gives the keys for an answer to that post, and
``last_inbound_at`` (ISO-8601) says when the person last wrote to the account, for the
messaging window. ``contact_data`` may carry the same keys (a contact made from a post);
``data`` wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from app.channels.base import Message
from app.channels.polling import parse_time
from app.core import clock

WINDOW = timedelta(hours=24)
# Events that answer the person's own message (the acknowledgement of their report, an
# agent's answer, the dialogue's next question), as opposed to a later status update.
ANSWERS = frozenset({"ticket_opened", "report_attached", "acknowledged", "answer", "dialogue"})


def value(message: Message, key: str) -> Any:
    """``key`` from the message's data, else from its contact's data."""
    found = message.data.get(key)
    return found if found is not None else message.contact_data.get(key)


def last_inbound_at(message: Message) -> datetime | None:
    return parse_time(value(message, "last_inbound_at"))


def within(message: Message, window: timedelta = WINDOW, *, now: datetime | None = None) -> bool:
    """Whether the person wrote to us less than ``window`` ago (unknown: no)."""
    last = last_inbound_at(message)
    return last is not None and (now or clock.now()) - last < window


def reply_text(message: Message, limit: int, *, prefix: str = "") -> str:
    """``prefix`` (a mention), the body, and the ticket's link when the body lacks it, cut to
    ``limit`` characters without cutting the prefix or the link.

    Only what the notification already holds is written: the adapters add nothing about the
    person (no name, no number), so an answer carries no personal data the caller did not put
    in it.
    """
    body = message.body.strip()
    link = message.link if message.link and message.link not in body else None
    tail = f"\n{link}" if link else ""
    room = limit - len(prefix) - len(tail)
    if room < 1:
        return (prefix + body)[:limit]
    if len(body) > room:
        body = body[: max(0, room - 1)].rstrip() + "…"
    return prefix + body + tail


def jsonable(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy fit for an outbox row's JSON ``data`` (times as ISO text)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in mapping.items()}
