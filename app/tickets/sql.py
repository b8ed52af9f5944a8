"""What other domains use of tickets in their own SQL: the public reference.

The text is part of hot statements (the intake's find-and-file CTE embeds it): change it
knowingly, bench/ replays them.
"""

from __future__ import annotations


def reference_sql(id_expr: str, at_expr: str) -> str:
    """A ticket's public reference, ``K-2026-000123``: prefix, year of first report, id."""
    return (
        f":prefix || '-' || to_char(CAST({at_expr} AS timestamptz) AT TIME ZONE 'UTC', 'YYYY')"
        f" || '-' || lpad({id_expr}::text, greatest(6, length({id_expr}::text)), '0')"
    )
