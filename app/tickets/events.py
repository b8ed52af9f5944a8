"""The ticket's timeline: the one Python writer of ``ticket_event`` rows.

Other domains (work orders) append to a ticket's timeline through ``add_event``; the
intake's statement and the workflow's bulk statements write their events in SQL.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.db import HotStatement
from app.tickets.models import EventKind

_INSERT_EVENT = HotStatement(
    """
    INSERT INTO ticket_event (ticket_id, kind, public, actor_user_id, actor_label, report_id,
                              note, data, created_at)
    VALUES (:ticket_id, :kind, :public, :actor_user_id, :actor_label, :report_id, :note,
            CAST(:data AS jsonb), :at)
    RETURNING id
    """
)


async def add_event(
    session: AsyncSession,
    ticket_id: int,
    kind: EventKind,
    *,
    at: Any,
    public: bool = True,
    actor: Principal | None = None,
    actor_label: str | None = None,
    actor_user_id: uuid.UUID | None = None,
    report_id: int | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """Append one line to the ticket's timeline; returns its id.

    ``actor`` is who did it; without one, ``actor_label`` (and ``actor_user_id``, for a
    signed-in person acting as a citizen) say who.
    """
    row = await _INSERT_EVENT.one(
        session,
        {
            "ticket_id": ticket_id,
            "kind": kind.value,
            "public": public,
            "actor_user_id": actor.user_id if actor else actor_user_id,
            "actor_label": actor.label if actor else actor_label,
            "report_id": report_id,
            "note": note,
            "data": orjson.dumps(data or {}).decode(),
            "at": at,
        },
    )
    return int(row.id)
