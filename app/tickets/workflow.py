"""The ticket workflow: status transitions per role, assignment, priority, comments, reopen.

Statuses move along ``TRANSITIONS``; who may make a move depends on the role:

- staff and admin (their jurisdiction): every move in the table;
- crew (tickets of their territory, or assigned to their crew): the working moves only,
  ``CREW_TARGETS`` (acknowledge, schedule, start, fix);
- a reporter of the ticket: reopen a fixed or closed ticket within the service's
  ``reopen_within`` of the fix.

``duplicate`` is reached only by merging (``app.tickets.service.merge``). Every change is a
timeline event carrying actor and time; a public note, given or rendered from the response
templates, goes with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.auth.principal import Principal, ensure_same_jurisdiction
from app.core import clock
from app.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.core.models import check_in
from app.crews.sql import ticket_in_territory
from app.tickets import repository as sql
from app.tickets import templates
from app.tickets.events import add_event
from app.tickets.models import (
    DONE_STATUSES,
    OPEN_STATUSES,
    EventKind,
    SlaFlag,
    TicketStatus,
    WorkStatus,
)
from app.tickets.priority import explain as explain_priority
from app.tickets.sla import calendar_of, deadline

S = TicketStatus
_DISMISS = frozenset({S.not_our_responsibility, S.rejected})
_WORK = frozenset({S.acknowledged, S.scheduled, S.in_progress, S.fixed})

TRANSITIONS: dict[str, frozenset[str]] = {
    S.open: _WORK | _DISMISS,
    S.reopened: _WORK | _DISMISS,
    S.acknowledged: (_WORK - {S.acknowledged}) | _DISMISS,
    S.scheduled: frozenset({S.acknowledged, S.in_progress, S.fixed}) | _DISMISS,
    S.in_progress: frozenset({S.scheduled, S.fixed}) | _DISMISS,
    S.fixed: frozenset({S.closed, S.reopened}),
    S.closed: frozenset({S.reopened}),
    S.not_our_responsibility: frozenset({S.reopened}),
    S.rejected: frozenset({S.reopened}),
    S.duplicate: frozenset(),
}
CREW_TARGETS = frozenset({S.acknowledged, S.scheduled, S.in_progress, S.fixed})


async def locked_ticket(session: AsyncSession, ticket_id: int) -> Any:
    row = (await session.execute(sql.LOCK_TICKET, {"id": ticket_id})).first()
    if row is None:
        raise NotFound(f"No ticket {ticket_id}")
    return row


async def ticket_id(session: AsyncSession, reference: str) -> int:
    found = (
        await session.execute(sql.TICKET_ID_BY_REFERENCE, {"ref": reference.upper()})
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No ticket {reference}")
    return int(found)


async def in_crew_territory(session: AsyncSession, actor: Principal, ticket: Any) -> bool:
    """A crew's territory: its areas, plus whatever is assigned to it."""
    if actor.crew_id is None:
        return False
    return await ticket_in_territory(session, ticket.id, actor.crew_id)


async def ensure_may_act(session: AsyncSession, actor: Principal, ticket: Any) -> None:
    """Staff act in their jurisdiction, crews in their territory (tickets are public, so a
    403 gives nothing away)."""
    if actor.is_admin:
        return
    ensure_same_jurisdiction(actor, ticket.jurisdiction_id)
    if actor.role == Role.crew and not await in_crew_territory(session, actor, ticket):
        raise Forbidden(f"{ticket.reference} is outside your crew's territory")


async def allowed_targets(
    session: AsyncSession, actor: Principal, ticket: Any, now: datetime
) -> list[str]:
    """The statuses ``actor`` may move ``ticket`` to now (for the UI and for checks)."""
    moves = TRANSITIONS[ticket.status]
    if actor.at_least(Role.staff):
        if actor.is_admin or actor.jurisdiction_id == ticket.jurisdiction_id:
            return sorted(moves)
        return []
    if actor.role == Role.crew and actor.jurisdiction_id == ticket.jurisdiction_id:
        if await in_crew_territory(session, actor, ticket):
            return sorted(moves & CREW_TARGETS)
        return []
    if (
        S.reopened in moves
        and ticket.status in DONE_STATUSES
        and actor.user_id is not None
        and _within_reopen_window(ticket, now)
        and (
            await session.execute(sql.IS_REPORTER, {"t": ticket.id, "user_id": actor.user_id})
        ).scalar_one()
    ):
        return [S.reopened]
    return []


def _within_reopen_window(ticket: Any, now: datetime) -> bool:
    return ticket.fixed_at is not None and now <= ticket.fixed_at + ticket.reopen_within


async def change_status(
    session: AsyncSession,
    ticket_id: int,
    to: TicketStatus,
    *,
    actor: Principal,
    note: str | None = None,
    internal_note: str | None = None,
    use_template: bool = True,
    now: datetime | None = None,
) -> None:
    """Move the ticket to ``to`` if ``actor`` may; writes the event (and any internal note).

    Raises ``Forbidden`` when the role may not make this move, ``Conflict`` when no role
    could (the move is not in the workflow from the current status).
    """
    now = now or clock.now()
    ticket = await locked_ticket(session, ticket_id)
    if actor.at_least(Role.crew):
        await ensure_may_act(session, actor, ticket)
    if to == ticket.status:
        raise Conflict(f"{ticket.reference} is already {to.replace('_', ' ')}")
    if to == S.duplicate:
        raise Conflict("A ticket becomes a duplicate by merging it into another one")
    if to not in TRANSITIONS[ticket.status]:
        raise Conflict(
            f"{ticket.reference} is {ticket.status.replace('_', ' ')}: it can move to "
            + (", ".join(sorted(TRANSITIONS[ticket.status])) or "nothing (final)"),
            allowed=sorted(TRANSITIONS[ticket.status]),
        )
    allowed = await allowed_targets(session, actor, ticket, now)
    if to not in allowed:
        raise Forbidden(_why_not(actor, ticket, to, now))

    changes = _status_changes(ticket, to, now)
    await session.execute(
        text(
            "UPDATE ticket SET "  # noqa: S608 (column names from code, values bound)
            + ", ".join(f"{column} = :{column}" for column in changes)
            + ", updated_at = :now WHERE id = :id"
        ),
        {**changes, "now": now, "id": ticket.id},
    )
    template_id: int | None = None
    notes: dict[str, str] = {}
    if note is None and use_template:
        fresh = await locked_ticket(session, ticket.id)  # due dates as changed above
        template_id, notes = await templates.rendered_notes(session, fresh, to)
        note = templates.main_note(ticket.languages, notes)
    data: dict[str, Any] = {"from": ticket.status, "to": to.value}
    if template_id is not None:
        data["template_id"] = template_id
        data["notes"] = notes
    await add_event(
        session,
        ticket.id,
        EventKind.status_changed,
        at=now,
        actor=actor,
        note=note,
        data=data,
    )
    if internal_note:
        await comment(session, ticket.id, internal_note, public=False, actor=actor, now=now)


def _status_changes(ticket: Any, to: TicketStatus, now: datetime) -> dict[str, Any]:
    changes: dict[str, Any] = {"status": to.value}
    if to in _WORK and ticket.acknowledged_at is None:
        changes["acknowledged_at"] = now
    if to == S.fixed:
        changes["fixed_at"] = now
    if to in (S.closed, *_DISMISS):
        changes["closed_at"] = now
    if to == S.reopened:
        # A fresh resolve deadline from now; the acknowledgement stands.
        resolve = deadline(now, ticket.resolve_within, calendar_of(ticket))
        changes.update(
            fixed_at=None,
            closed_at=None,
            reopened_count=ticket.reopened_count + 1,
            resolve_due_at=resolve.due_at if resolve else None,
            resolve_warn_at=resolve.warn_at if resolve else None,
            sla_flags=ticket.sla_flags & ~(SlaFlag.resolve_warning | SlaFlag.resolve_breached),
            sla_next_at=resolve.warn_at if resolve else None,
            work_status=WorkStatus.assigned.value if ticket.crew_id else None,
        )
    return changes


def _why_not(actor: Principal, ticket: Any, to: TicketStatus, now: datetime) -> str:
    if actor.role == Role.crew:
        return f"Crews may move tickets to {', '.join(sorted(CREW_TARGETS))} only"
    if actor.at_least(Role.staff):
        return "Staff act on their own jurisdiction's tickets only"
    if to != S.reopened:
        return "Citizens may only reopen a ticket they reported"
    if ticket.fixed_at is not None and not _within_reopen_window(ticket, now):
        days = ticket.reopen_within.days
        return f"{ticket.reference} was fixed more than {days} days ago; report it again"
    return "Only a reporter of this ticket may reopen it"


async def assign(
    session: AsyncSession,
    ticket_id: int,
    crew_id: int | None,
    *,
    actor: Principal,
    note: str | None = None,
    now: datetime | None = None,
) -> None:
    """Give the ticket to ``crew_id`` (``None``: take it back). Staff only."""
    now = now or clock.now()
    ticket = await locked_ticket(session, ticket_id)
    if not actor.at_least(Role.staff):
        raise Forbidden("Only staff assign tickets to crews")
    await ensure_may_act(session, actor, ticket)
    if ticket.status not in OPEN_STATUSES:
        raise Conflict(f"{ticket.reference} is {ticket.status.replace('_', ' ')}; reopen it first")
    crew_name = None
    if crew_id is not None:
        crew = (
            await session.execute(
                text("SELECT name, jurisdiction_id, active FROM crew WHERE id = :id"),
                {"id": crew_id},
            )
        ).first()
        if crew is None or crew.jurisdiction_id != ticket.jurisdiction_id:
            raise InvalidInput(
                f"No crew {crew_id} in this jurisdiction",
                errors=[{"field": "crew_id", "message": "unknown crew", "type": "unknown_crew"}],
            )
        if not crew.active:
            raise Conflict(f"{crew.name} is not active")
        crew_name = crew.name
    if crew_id == ticket.crew_id and ticket.work_status != WorkStatus.unable:
        # (After "unable", giving it to the same crew again is a fresh assignment.)
        raise Conflict(f"{ticket.reference} is already with {crew_name or 'no crew'}")
    await session.execute(
        text(
            "UPDATE ticket SET crew_id = :crew_id, work_status = :work_status,"
            " assigned_at = :assigned_at, updated_at = :now WHERE id = :id"
        ),
        {
            "crew_id": crew_id,
            "work_status": WorkStatus.assigned.value if crew_id else None,
            "assigned_at": now if crew_id else None,
            "now": now,
            "id": ticket.id,
        },
    )
    await add_event(
        session,
        ticket.id,
        EventKind.assigned,
        at=now,
        public=False,
        actor=actor,
        note=note,
        data={"crew_id": crew_id, "crew": crew_name, "previous_crew_id": ticket.crew_id},
    )


async def set_priority(
    session: AsyncSession,
    ticket_id: int,
    priority: int | None,
    *,
    actor: Principal,
    reason: str | None = None,
    now: datetime | None = None,
) -> None:
    """Set the priority by hand (1-5), or ``None`` to follow the computed signal again."""
    now = now or clock.now()
    ticket = await locked_ticket(session, ticket_id)
    if not actor.at_least(Role.staff):
        raise Forbidden("Only staff set priorities")
    await ensure_may_act(session, actor, ticket)
    if priority is None:
        priority = (await explain_priority(session, ticket.id, now)).suggested
        manual = False
    else:
        manual = True
    await session.execute(
        text(
            "UPDATE ticket SET priority = :p, priority_manual = :manual, updated_at = :now"
            " WHERE id = :id"
        ),
        {"p": priority, "manual": manual, "now": now, "id": ticket.id},
    )
    await add_event(
        session,
        ticket.id,
        EventKind.priority_changed,
        at=now,
        public=False,
        actor=actor,
        note=reason,
        data={"from": ticket.priority, "to": priority, "manual": manual},
    )


async def comment(
    session: AsyncSession,
    ticket_id: int,
    note: str,
    *,
    public: bool,
    actor: Principal,
    now: datetime | None = None,
) -> int:
    """A note on the timeline: public (everyone sees it) or internal (staff and crews)."""
    now = now or clock.now()
    ticket = await locked_ticket(session, ticket_id)
    if not actor.at_least(Role.crew):
        raise Forbidden("Only staff and crews comment on tickets")
    await ensure_may_act(session, actor, ticket)
    return await add_event(
        session,
        ticket.id,
        EventKind.comment,
        at=now,
        public=public,
        actor=actor,
        note=note,
    )


# Verified closure: a fix nobody disputed within the reopen window is closed by the worker.
_CLOSE_UNDISPUTED = text(
    """
    WITH closed AS (
        UPDATE ticket t SET status = 'closed', closed_at = :now, updated_at = :now
        FROM service s
        WHERE s.id = t.service_id AND t.status = 'fixed'
          AND t.fixed_at + s.reopen_within < :now
        RETURNING t.id
    )
    INSERT INTO ticket_event (ticket_id, kind, public, actor_label, note, data, created_at)
    SELECT id, 'status_changed', true, 'system',
           'Closed: nobody reported the problem back after the fix',
           '{"from": "fixed", "to": "closed"}'::jsonb, :now
    FROM closed
    """
)


async def close_undisputed_fixes(session: AsyncSession, now: datetime | None = None) -> int:
    """Close fixed tickets whose reopen window has passed; returns how many."""
    result = await session.execute(_CLOSE_UNDISPUTED, {"now": now or clock.now()})
    return int(getattr(result, "rowcount", 0) or 0)


# A legacy system's status, set at its historical time by the import (a trusted source: no
# role check). Only an open ticket takes it; a closed one a later row reopened stays reopened.
_LEGACY_STATUS = text(
    f"""
    WITH wanted AS (SELECT CAST(:status AS text) AS status, CAST(:at AS timestamptz) AS at),
    changed AS (
        UPDATE ticket t SET
            status = wanted.status,
            acknowledged_at = CASE WHEN wanted.status IN ('acknowledged', 'scheduled',
                                                          'in_progress', 'closed')
                                   THEN coalesce(t.acknowledged_at, wanted.at)
                                   ELSE t.acknowledged_at END,
            fixed_at = CASE WHEN wanted.status = 'closed' THEN wanted.at END,
            closed_at = CASE WHEN wanted.status IN ('closed', 'rejected',
                                                    'not_our_responsibility')
                             THEN wanted.at END,
            updated_at = greatest(t.updated_at, wanted.at)
        FROM wanted
        WHERE t.reference = :reference AND {check_in("t.status", OPEN_STATUSES)}
          AND t.status <> wanted.status
          -- Never back in time: a status change since (staff, a live reopen) stands.
          AND NOT EXISTS (SELECT 1 FROM ticket_event e WHERE e.ticket_id = t.id
                          AND e.kind = 'status_changed' AND e.created_at > wanted.at)
        RETURNING t.id, t.report_count, (SELECT status FROM ticket WHERE id = t.id) AS previous
    )
    INSERT INTO ticket_event (ticket_id, kind, public, actor_label, data, created_at)
    SELECT changed.id, 'status_changed', true, :actor_label,
           jsonb_build_object('from', changed.previous, 'to', wanted.status,
                              'legacy_status', CAST(:legacy AS text)),
           wanted.at
    FROM changed, wanted
    RETURNING (SELECT report_count FROM changed) AS report_count
    """  # noqa: S608 (formats code constants only, never input)
)


async def record_legacy_status(
    session: AsyncSession,
    reference: str,
    status: TicketStatus,
    *,
    at: datetime,
    legacy: str,
    actor_label: str | None,
) -> int | None:
    """Set an imported ticket's status as the legacy system had it: the ticket's report count
    when it changed, None when it was not open (or had that status already)."""
    done = await session.execute(
        _LEGACY_STATUS,
        {
            "reference": reference,
            "status": status.value,
            "at": at,
            "legacy": legacy,
            "actor_label": actor_label,
        },
    )
    row = done.first()
    return None if row is None else int(row.report_count)
