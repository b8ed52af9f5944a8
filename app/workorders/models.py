"""Indexes the work-order queries need on the ticket table (migration 0002).

They live here, beside the queries that use them (``app.workorders.repository``), rather than
in the ticket model. Both cover open tickets only, like ``ix_ticket_open_priority_due`` which
serves the default priority order.
"""

from __future__ import annotations

from sqlalchemy import Index, text

from app.core.models import check_in
from app.tickets.models import OPEN_STATUSES, Ticket

_OPEN = check_in("status", OPEN_STATUSES)

# sort=due: open tickets by resolve due time.
ix_ticket_open_due = Index(
    "ix_ticket_open_due", Ticket.resolve_due_at, Ticket.id, postgresql_where=text(_OPEN)
)
# work_status=assigned/accepted/.../unable (staff following up crews), in priority order: only
# the tickets a crew holds, a small share of the open ones.
ix_ticket_open_held = Index(
    "ix_ticket_open_held",
    Ticket.priority,
    Ticket.resolve_due_at,
    Ticket.id,
    postgresql_where=text(_OPEN + " AND work_status IS NOT NULL"),
)
