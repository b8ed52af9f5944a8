"""Ticket use cases: support ("me too") and follow (citizens); merge and split (staff)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.auth.principal import Principal
from app.contacts import service as contacts
from app.contacts.models import ConsentMethod, ContactKind, Purpose
from app.contacts.service import Consent, ContactSpec, Verification
from app.core import clock
from app.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.tickets import events
from app.tickets import repository as tickets_sql
from app.tickets.models import OPEN_STATUSES, EventKind, SubscriptionReason, TicketStatus
from app.tickets.queries import ticket_row
from app.tickets.schemas import MergeOut, SplitOut, SupportIn, SupportOut
from app.tickets.sla import calendar_of, deadline
from app.tickets.workflow import ensure_may_act, locked_ticket

# Ended rows too: one row per person per ticket (unique), so a subscription that a merge or
# split ended is taken up again rather than inserted twice.
_EXISTING = text(
    "SELECT id, reason, ended_at FROM subscription WHERE ticket_id = :t"
    " AND ((CAST(:user_id AS uuid) IS NOT NULL AND user_id = :user_id)"
    "   OR (CAST(:contact_id AS bigint) IS NOT NULL AND contact_id = :contact_id))"
    " ORDER BY ended_at IS NOT NULL, id LIMIT 1 FOR UPDATE"
)


async def support_or_follow(
    session: AsyncSession,
    reference: str,
    who: SupportIn,
    *,
    user_id: uuid.UUID | None,
    actor_label: str,
    support: bool,
) -> tuple[SupportOut, Verification | None]:
    """Add the person as a supporter (counted) or follower of the ticket, once.

    Without an account, the person gives an address; until they confirm it (the verification
    message, returned here to send after the commit) it hears nothing else from us.
    """
    ticket = await ticket_row(session, reference)
    if support and ticket.status not in OPEN_STATUSES:
        raise Conflict(
            f"{ticket.reference} is {ticket.status.replace('_', ' ')}; if the problem is back,"
            " report it again"
        )
    contact = None
    if user_id is None:
        if who.email:
            spec = ContactSpec(ContactKind.email, who.email)
        elif who.push_token:
            spec = ContactSpec(ContactKind.fcm, who.push_token)
        else:
            raise InvalidInput(
                "Sign in, or give an email or push_token so we can tell you of progress",
                errors=[{"field": "email", "message": "missing", "type": "missing"}],
            )
        contact = await contacts.remember(session, spec)
    contact_id = contact.id if contact else None
    # Lock the ticket row: concurrent "me too" taps must not double-count.
    await session.execute(text("SELECT 1 FROM ticket WHERE id = :t FOR UPDATE"), {"t": ticket.id})
    existing = (
        await session.execute(
            _EXISTING, {"t": ticket.id, "user_id": user_id, "contact_id": contact_id}
        )
    ).first()
    wanted = SubscriptionReason.supporter if support else SubscriptionReason.follower
    counted = False
    already = True
    if existing is None:
        await session.execute(
            text(
                "INSERT INTO subscription (ticket_id, user_id, contact_id, reason)"
                " VALUES (:t, :user_id, :contact_id, :reason)"
            ),
            {"t": ticket.id, "user_id": user_id, "contact_id": contact_id, "reason": wanted.value},
        )
        counted, already = support, False
    elif existing.ended_at is not None:
        await session.execute(
            text("UPDATE subscription SET reason = :reason, ended_at = NULL WHERE id = :id"),
            {"id": existing.id, "reason": wanted.value},
        )
        counted, already = support, False
    elif support and existing.reason == SubscriptionReason.follower:
        await session.execute(
            text("UPDATE subscription SET reason = 'supporter' WHERE id = :id"), {"id": existing.id}
        )
        counted, already = True, False
    count = ticket.supporter_count
    if counted:
        count = (
            await session.execute(
                text(
                    "UPDATE ticket SET supporter_count = supporter_count + 1, updated_at = now()"
                    " WHERE id = :t RETURNING supporter_count"
                ),
                {"t": ticket.id},
            )
        ).scalar_one()
    if not already:
        await events.add_event(
            session,
            ticket.id,
            EventKind.supporter_added if support else EventKind.follower_added,
            at=clock.now(),
            public=support,
            actor_label=actor_label,
            actor_user_id=user_id,
            data={"count": count} if support else {},
        )
    verification = None
    if contact is not None:
        await contacts.give_consent(
            session,
            contact.id,
            Consent(
                Purpose.ticket_updates,
                ConsentMethod.support_form if support else ConsentMethod.follow_form,
                ticket_id=ticket.id,
            ),
        )
        verification = await contacts.begin_verification(session, contact)
    out = SupportOut(
        reference=ticket.reference, supporter_count=count, subscribed=True, already=already
    )
    return out, verification


# -- merge and split (staff) -------------------------------------------------------------------

_MERGE_SUBSCRIPTIONS = text(
    """
    WITH moved AS (
        INSERT INTO subscription (ticket_id, user_id, contact_id, reason, created_at)
        SELECT :into, user_id, contact_id, reason, created_at FROM subscription
        WHERE ticket_id = :from AND ended_at IS NULL
        ON CONFLICT DO NOTHING
        RETURNING reason
    ),
    ended AS (
        UPDATE subscription SET ended_at = :now
        WHERE ticket_id = :from AND ended_at IS NULL
        RETURNING id
    )
    SELECT count(*) FILTER (WHERE reason = 'supporter') AS new_supporters,
           count(*) AS moved, (SELECT count(*) FROM ended) AS ended
    FROM moved
    """
)


async def merge(
    session: AsyncSession,
    duplicate_id: int,
    into_id: int,
    *,
    actor: Principal,
    note: str | None = None,
    now: datetime | None = None,
) -> MergeOut:
    """Merge ticket ``duplicate_id`` into ``into_id``: its reports, photos, subscribers and
    counts move; it becomes ``duplicate`` pointing at the other; its followers follow the
    other from now on. Both timelines record it."""
    now = now or clock.now()
    if duplicate_id == into_id:
        raise Conflict("A ticket cannot be merged into itself")
    # Lock both in id order: two merges of the same pair in opposite directions cannot deadlock.
    first, second = sorted((duplicate_id, into_id))
    locked = {
        first: await locked_ticket(session, first),
        second: await locked_ticket(session, second),
    }
    dup, into = locked[duplicate_id], locked[into_id]
    if not actor.at_least(Role.staff):
        raise Forbidden("Only staff merge tickets")
    await ensure_may_act(session, actor, dup)
    await ensure_may_act(session, actor, into)
    if dup.jurisdiction_id != into.jurisdiction_id:
        raise Conflict("Tickets of different jurisdictions cannot be merged")
    for t in (dup, into):
        if t.status == TicketStatus.duplicate:
            raise Conflict(f"{t.reference} is already merged into another ticket")
    reports = (
        await session.execute(
            text("UPDATE report SET ticket_id = :into WHERE ticket_id = :from RETURNING id"),
            {"into": into.id, "from": dup.id},
        )
    ).all()
    photos = (
        await session.execute(
            text("UPDATE photo SET ticket_id = :into WHERE ticket_id = :from RETURNING id"),
            {"into": into.id, "from": dup.id},
        )
    ).all()
    subs = (
        await session.execute(_MERGE_SUBSCRIPTIONS, {"into": into.id, "from": dup.id, "now": now})
    ).one()
    await contacts.carry_consents(session, dup.id, into.id)
    await session.execute(
        text(
            """
            UPDATE ticket SET
                report_count = report_count + :reports,
                supporter_count = supporter_count + :supporters,
                first_reported_at = least(first_reported_at, :first),
                last_reported_at = greatest(last_reported_at, :last),
                priority = least(priority, :priority),
                updated_at = :now
            WHERE id = :id
            """
        ),
        {
            "reports": len(reports),
            "supporters": subs.new_supporters,
            "first": dup.first_reported_at,
            "last": dup.last_reported_at,
            "priority": dup.priority,
            "now": now,
            "id": into.id,
        },
    )
    await session.execute(
        text(
            """
            UPDATE ticket SET status = 'duplicate', merged_into_id = :into, closed_at = :now,
                report_count = 0, supporter_count = 0, crew_id = NULL, work_status = NULL,
                updated_at = :now
            WHERE id = :id
            """
        ),
        {"into": into.id, "now": now, "id": dup.id},
    )
    await events.add_event(
        session,
        into.id,
        EventKind.merged,
        note=note,
        data={
            "from": dup.reference,
            "count": len(reports),
            "photos": len(photos),
            "subscribers": subs.moved,
        },
        at=now,
        actor=actor,
    )
    await events.add_event(
        session,
        dup.id,
        EventKind.merged,
        note=note or f"Merged into {into.reference}: the same problem",
        data={"into": into.reference, "from": dup.status, "to": TicketStatus.duplicate.value},
        at=now,
        actor=actor,
    )
    return MergeOut(
        reference=dup.reference,
        merged_into=into.reference,
        reports_moved=len(reports),
        photos_moved=len(photos),
        subscribers_moved=subs.moved,
    )


async def split(
    session: AsyncSession,
    ticket_id: int,
    report_public_id: uuid.UUID,
    *,
    actor: Principal,
    note: str | None = None,
    now: datetime | None = None,
) -> SplitOut:
    """Move one report out of the ticket into a new ticket of its own (a different problem
    that was clustered in by mistake). Its reporters follow the new ticket."""
    now = now or clock.now()
    ticket = await locked_ticket(session, ticket_id)
    if not actor.at_least(Role.staff):
        raise Forbidden("Only staff split tickets")
    await ensure_may_act(session, actor, ticket)
    report = (
        await session.execute(
            text(
                "SELECT id, service_id, reporter_id, reported_at FROM report"
                " WHERE public_id = :pid AND ticket_id = :t FOR UPDATE"
            ),
            {"pid": report_public_id, "t": ticket.id},
        )
    ).first()
    if report is None:
        raise NotFound(f"No report {report_public_id} on {ticket.reference}")
    if ticket.report_count <= 1:
        raise Conflict(f"{report_public_id} is the only report of {ticket.reference}")
    new = (
        await session.execute(
            tickets_sql.OPEN_TICKET_FOR_REPORT,
            {"report_id": report.id, "prefix": ticket.reference_prefix, "now": now},
        )
    ).one()
    # Due dates of the new ticket from its report's time, as intake would have set them.
    ack = deadline(report.reported_at, ticket.acknowledge_within, calendar_of(ticket))
    res = deadline(report.reported_at, ticket.resolve_within, calendar_of(ticket))
    await session.execute(
        text(
            "UPDATE ticket SET acknowledge_due_at = :ad, acknowledge_warn_at = :aw,"
            " resolve_due_at = :rd, resolve_warn_at = :rw,"
            " sla_next_at = least(CAST(:aw AS timestamptz), CAST(:rw AS timestamptz))"
            " WHERE id = :id"
        ),
        {
            "ad": ack.due_at if ack else None,
            "aw": ack.warn_at if ack else None,
            "rd": res.due_at if res else None,
            "rw": res.warn_at if res else None,
            "id": new.id,
        },
    )
    moved = (
        await session.execute(
            tickets_sql.MOVE_REPORT,
            {"report_id": report.id, "to": new.id, "from": ticket.id, "now": now},
        )
    ).one()
    await contacts.carry_consents(session, ticket.id, new.id, report_id=report.id)
    await events.add_event(
        session,
        ticket.id,
        EventKind.split_off,
        report_id=report.id,
        note=note,
        data={"to": new.reference, "count": 1},
        at=now,
        actor=actor,
    )
    await events.add_event(
        session,
        new.id,
        EventKind.split_off,
        report_id=report.id,
        note=note or f"Split off {ticket.reference}: a different problem",
        data={"from": ticket.reference, "count": 1, "photos": moved.photos},
        at=now,
        actor=actor,
    )
    return SplitOut(reference=ticket.reference, new_reference=new.reference)
