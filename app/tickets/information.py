"""Needs more information: staff ask a ticket's reporters a question; a reporter answers.

The question is a public timeline line (``information_requested``, the question its note): the
event stream sends it to the ticket's reporters and supporters in the transaction that asks
(``app.notify``), each message with its own link to answer. The ticket then waits for them
(``information_requested_at``). An answer comes from a reporter or supporter signed in, or
from anyone holding the link of a message that asked (the link is signed per message, so
reporters without an account answer too). It is an internal line (``information_given``: an
answer may carry personal details, so it is not published) and puts the ticket back with
staff (``information_answered_at``).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.auth.principal import Principal
from app.core import clock
from app.core.errors import Conflict, Forbidden, NotFound
from app.settings import Settings
from app.tickets.events import add_event
from app.tickets.models import OPEN_STATUSES, EventKind
from app.tickets.workflow import ensure_may_act, locked_ticket

State = Literal["requested", "answered"]


def state_of(ticket: Any) -> State | None:
    """Where a ticket waits: for its reporters (``requested``) or, answered, for staff."""
    asked, answered = ticket.information_requested_at, ticket.information_answered_at
    if asked is None:
        return None
    return "answered" if answered is not None and answered >= asked else "requested"


def answer_signature(settings: Settings, notification_id: int) -> str:
    """The signature of the answer link in the message ``notification_id`` (its own key
    purpose: an unsubscribe link does not answer, nor the other way round)."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"answer:{notification_id}".encode(), hashlib.sha256).hexdigest()[:32]


async def ask(
    session: AsyncSession,
    ticket_id: int,
    question: str,
    *,
    actor: Principal,
    now: datetime | None = None,
) -> int:
    """Staff ask the reporters; returns the timeline line's id."""
    now = now or clock.now()
    ticket = await locked_ticket(session, ticket_id)
    if not actor.at_least(Role.staff):
        raise Forbidden("Only staff ask reporters for more information")
    await ensure_may_act(session, actor, ticket)
    if ticket.status not in OPEN_STATUSES:
        raise Conflict(
            f"{ticket.reference} is {ticket.status.replace('_', ' ')}: reopen it to ask",
            ticket_status=ticket.status,
        )
    await session.execute(
        text("UPDATE ticket SET information_requested_at = :now, updated_at = :now WHERE id = :id"),
        {"now": now, "id": ticket.id},
    )
    return await add_event(
        session, ticket.id, EventKind.information_requested, at=now, actor=actor, note=question
    )


_REPORTER_OR_SUPPORTER = text(
    """
    SELECT EXISTS (SELECT 1 FROM report WHERE ticket_id = :t AND reporter_id = :user_id)
        OR EXISTS (SELECT 1 FROM subscription WHERE ticket_id = :t AND user_id = :user_id
                   AND reason IN ('reporter', 'supporter'))
    """
)
# The message whose link answers: one that carried a question of this ticket.
_ASKED_BY = text(
    "SELECT n.contact_id, e.note AS question FROM notification n"
    " JOIN ticket_event e ON e.id = n.event_id"
    " WHERE n.id = :id AND n.ticket_id = :t AND n.event_kind = 'information_requested'"
)


async def question_of_link(
    session: AsyncSession, settings: Settings, ticket_id: int, notification_id: int, sig: str
) -> str:
    """The question the answer link's message carried (public, like its timeline line);
    NotFound for a link that is not one."""
    row = (await session.execute(_ASKED_BY, {"id": notification_id, "t": ticket_id})).first()
    if row is None or not hmac.compare_digest(answer_signature(settings, notification_id), sig):
        raise NotFound("No such answer link")
    return str(row.question or "")


async def answer(
    session: AsyncSession,
    ticket_id: int,
    text_: str,
    *,
    actor: Principal | None,
    settings: Settings,
    notification_id: int | None = None,
    sig: str | None = None,
    now: datetime | None = None,
) -> int:
    """A reporter's answer, by their account or by the signed link of the message that
    asked; returns the timeline line's id. 403 for anyone else, 409 when nothing was asked."""
    now = now or clock.now()
    ticket = await locked_ticket(session, ticket_id)
    via: dict[str, Any]
    if notification_id is not None and sig is not None:
        await question_of_link(session, settings, ticket.id, notification_id, sig)
        via = {"via": "link", "notification": notification_id}
        label, user_id = "reporter (link)", None
    elif actor is not None and actor.user_id is not None:
        mine = (
            await session.execute(
                _REPORTER_OR_SUPPORTER, {"t": ticket.id, "user_id": actor.user_id}
            )
        ).scalar_one()
        if not mine:
            raise Forbidden(f"Only the reporters and supporters of {ticket.reference} answer")
        via = {"via": "account"}
        label, user_id = "reporter", actor.user_id
    else:
        raise Forbidden("Sign in as a reporter of the ticket, or use the link in the message")
    if ticket.information_requested_at is None:
        raise Conflict(f"Nobody asked for more information about {ticket.reference}")
    await session.execute(
        text("UPDATE ticket SET information_answered_at = :now, updated_at = :now WHERE id = :id"),
        {"now": now, "id": ticket.id},
    )
    return await add_event(
        session,
        ticket.id,
        EventKind.information_given,
        at=now,
        public=False,
        actor_label=label,
        actor_user_id=user_id,
        note=text_,
        data=via,
    )
