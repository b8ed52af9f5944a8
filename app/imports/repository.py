"""The import's own SQL. Bound parameters only."""

from __future__ import annotations

from sqlalchemy import text

# Rows already filed by an earlier run (or earlier in this one), with their ticket's reference
# (a closure of theirs may still be due); served by the unique index
# uq_report_channel_external_id.
ALREADY_IMPORTED = text(
    "SELECT r.external_id, t.reference FROM report r JOIN ticket t ON t.id = r.ticket_id"
    " WHERE r.jurisdiction_id = :jurisdiction_id AND r.channel = 'import'"
    " AND r.external_id = ANY(CAST(:ids AS varchar[]))"
)
JURISDICTION_SETTINGS = text("SELECT timezone, history FROM jurisdiction WHERE id = :id")
