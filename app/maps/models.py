"""Indexes the map and open-data queries need on the ticket table (migration 0003).

They live here, beside the queries that use them, rather than in the ticket model. The
``ticket_grid`` materialized view of the same migration is not a table: Alembic leaves it alone.
"""

from __future__ import annotations

from sqlalchemy import Index

from app.tickets.models import Ticket

# created_since/until, OGC datetime, the weekly trend of /v1/stats.
ix_ticket_first_reported_at = Index("ix_ticket_first_reported_at", Ticket.first_reported_at)
# updated_since/until (dashboards polling for changes across jurisdictions).
ix_ticket_updated_at = Index("ix_ticket_updated_at", Ticket.updated_at)
