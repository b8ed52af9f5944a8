"""The import's own SQL. Bound parameters only."""

from __future__ import annotations

from sqlalchemy import text

# Rows already filed by an earlier run (or earlier in this one); served by the unique index
# uq_report_channel_external_id.
ALREADY_IMPORTED = text(
    "SELECT external_id FROM report"
    " WHERE jurisdiction_id = :jurisdiction_id AND channel = 'import'"
    " AND external_id = ANY(CAST(:ids AS varchar[]))"
)
JURISDICTION_TIMEZONE = text("SELECT timezone FROM jurisdiction WHERE id = :id")
