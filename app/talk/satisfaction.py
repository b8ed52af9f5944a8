"""Satisfaction after a fix: the fix message carries a signed "was it fixed?" link (one per
message, signed like its unsubscribe link); "no" reopens the ticket through the workflow
while its reopen window lasts, "yes" confirms. Either answer is a line on the timeline; the
first answer per message counts."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.auth.principal import Principal
from app.core import clock
from app.core.errors import NotFound
from app.notify.service import satisfaction_signature
from app.settings import Settings
from app.tickets.events import add_event
from app.tickets.models import EventKind, TicketStatus
from app.tickets.workflow import change_status, locked_ticket

Answer = Literal["yes", "no"]

_OF = text(
    "SELECT n.id, n.ticket_id, t.reference FROM notification n JOIN ticket t ON t.id = n.ticket_id"
    " WHERE n.id = :id AND n.event_kind = 'status_changed'"
)
_ANSWERED = text(
    "SELECT data->>'satisfaction' FROM ticket_event WHERE ticket_id = :t"
    " AND kind = 'inbound_message' AND data ? 'satisfaction'"
    " AND (data->>'notification')::bigint = :n LIMIT 1"
)
NOTES = {
    "yes": "A reporter confirmed it is fixed.",
    "no": "A reporter says it is not fixed.",
}


@dataclass(frozen=True)
class Answered:
    reference: str
    answer: Answer
    status: str
    reopened: bool


async def check(session: AsyncSession, settings: Settings, notification_id: int, sig: str) -> str:
    """The ticket reference behind a valid link; 404 for anything else."""
    row = (await session.execute(_OF, {"id": notification_id})).first()
    wanted = satisfaction_signature(settings, notification_id)
    if row is None or not hmac.compare_digest(wanted, sig):
        raise NotFound("No such link")
    return str(row.reference)


async def answer(
    session: AsyncSession, settings: Settings, notification_id: int, sig: str, given: Answer
) -> Answered:
    """Record the reporter's answer; "no" reopens a fixed or closed ticket within its reopen
    window (as the workflow's system actor). A second answer to one message changes nothing."""
    await check(session, settings, notification_id, sig)
    row = (await session.execute(_OF, {"id": notification_id})).one()
    ticket = await locked_ticket(session, row.ticket_id)
    before = (
        await session.execute(_ANSWERED, {"t": ticket.id, "n": notification_id})
    ).scalar_one_or_none()
    if before is not None:
        return Answered(ticket.reference, before, ticket.status, False)
    now = clock.now()
    reopened = False
    window_open = ticket.fixed_at is not None and now <= ticket.fixed_at + ticket.reopen_within
    if given == "no" and ticket.status in (TicketStatus.fixed, TicketStatus.closed) and window_open:
        # The workflow's own move, by the city's system on the reporter's word.
        system = Principal(
            kind="api_key",
            role=Role.staff,
            label="system:satisfaction",
            name="Was it fixed?",
            jurisdiction_id=ticket.jurisdiction_id,
        )
        await change_status(session, ticket.id, TicketStatus.reopened, actor=system, now=now)
        reopened = True
    await add_event(
        session,
        ticket.id,
        EventKind.inbound_message,
        at=now,
        public=True,
        actor_label="reporter",
        note=NOTES[given],
        data={"satisfaction": given, "notification": notification_id, "reopened": reopened},
    )
    status = (await locked_ticket(session, ticket.id)).status
    return Answered(ticket.reference, given, str(status), reopened)
