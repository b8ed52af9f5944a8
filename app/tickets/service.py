"""Ticket use cases for citizens: support ("me too") and follow."""

from __future__ import annotations

import uuid

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, InvalidInput
from app.reports import repository as report_sql
from app.reports.models import ContactKind
from app.tickets.models import OPEN_STATUSES, EventKind, SubscriptionReason
from app.tickets.queries import ticket_row
from app.tickets.schemas import SupportIn, SupportOut

_EXISTING = text(
    "SELECT id, reason FROM subscription WHERE ticket_id = :t"
    " AND ((CAST(:user_id AS uuid) IS NOT NULL AND user_id = :user_id)"
    "   OR (CAST(:contact_id AS bigint) IS NOT NULL AND contact_id = :contact_id))"
    " AND ended_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE"
)


async def support_or_follow(
    session: AsyncSession,
    reference: str,
    who: SupportIn,
    *,
    user_id: uuid.UUID | None,
    actor_label: str,
    support: bool,
) -> SupportOut:
    """Add the person as a supporter (counted) or follower of the ticket, once."""
    ticket = await ticket_row(session, reference)
    if support and ticket.status not in OPEN_STATUSES:
        raise Conflict(
            f"{ticket.reference} is {ticket.status.replace('_', ' ')}; if the problem is back,"
            " report it again"
        )
    contact_id = None
    if user_id is None:
        kind, address = (
            (ContactKind.email, who.email.lower())
            if who.email
            else (ContactKind.fcm, who.push_token)
            if who.push_token
            else (None, None)
        )
        if kind is None or address is None:
            raise InvalidInput(
                "Sign in, or give an email or push_token so we can tell you of progress",
                errors=[{"field": "email", "message": "missing", "type": "missing"}],
            )
        contact_id = (
            await session.execute(
                report_sql.UPSERT_CONTACT,
                {"kind": kind.value, "address": address, "display_name": None, "user_id": None},
            )
        ).scalar_one()
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
        event_kind = EventKind.supporter_added if support else EventKind.follower_added
        await session.execute(
            text(
                "INSERT INTO ticket_event"
                " (ticket_id, kind, public, actor_user_id, actor_label, data)"
                " VALUES (:t, :kind, :public, :user_id, :label, CAST(:data AS jsonb))"
            ),
            {
                "t": ticket.id,
                "kind": event_kind.value,
                "public": support,
                "user_id": user_id,
                "label": actor_label,
                "data": orjson.dumps({"count": count} if support else {}).decode(),
            },
        )
    return SupportOut(
        reference=ticket.reference, supporter_count=count, subscribed=True, already=already
    )
