"""The computed priority signal: how urgent a ticket looks, and why.

Points, each capped so no single factor dominates:

- hazard: the service's hazard level (1-5) x 10;
- reports: 6 x ln(reports), at most 20 (2 reports: 4, 5: 10, 30: 20);
- supporters: 5 x sqrt(supporters), at most 15;
- age: one point per two days since first reported, at most 15;
- overdue: 10 once the resolve deadline has passed.

The score maps to a priority from 1 (most urgent) to 5 through ``THRESHOLDS``. Staff may set
a priority by hand (``priority_manual``); otherwise the service-level sweep keeps
``ticket.priority`` in step with the signal, and a new ticket starts from its hazard alone.
The formula lives here once, as SQL, so the sweep, the explanation and the tests agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import check_in
from app.tickets.models import OPEN_STATUSES

# (minimum score, priority), most urgent first; below the last: priority 5.
THRESHOLDS: tuple[tuple[int, int], ...] = ((60, 1), (45, 2), (30, 3), (18, 4))


def priority_for(score: float) -> int:
    for minimum, priority in THRESHOLDS:
        if score >= minimum:
            return priority
    return 5


def _factors_sql(t: str, s: str, now: str) -> dict[str, str]:
    return {
        "hazard": f"({s}.hazard_level * 10)",
        "reports": f"least(20, round(6 * ln(greatest({t}.report_count, 1))))",
        "supporters": f"least(15, round(5 * sqrt({t}.supporter_count)))",
        "age": f"least(15, floor(extract(epoch FROM {now} - {t}.first_reported_at) / 172800))",
        "overdue": f"(CASE WHEN {t}.resolve_due_at < {now} THEN 10 ELSE 0 END)",
    }


def score_sql(t: str = "t", s: str = "s", now: str = "now()") -> str:
    """The score as an SQL expression over ticket ``t`` and its service ``s``."""
    return "(" + " + ".join(_factors_sql(t, s, now).values()) + ")"


def priority_sql(score: str) -> str:
    cases = " ".join(f"WHEN {score} >= {m} THEN {p}" for m, p in THRESHOLDS)
    return f"(CASE {cases} ELSE 5 END)"


_EXPLAIN = text(
    "SELECT "  # noqa: S608 (formats code constants only, never input)
    + ", ".join(
        f"CAST({sql} AS int) AS {name}"
        for name, sql in _factors_sql("t", "s", "CAST(:now AS timestamptz)").items()
    )
    + ", t.priority, t.priority_manual"
    " FROM ticket t JOIN service s ON s.id = t.service_id WHERE t.id = :id"
)

# The sweep: bring every open ticket without a manual priority in step with its signal.
# Only rows whose priority changes are written.
REFRESH = text(
    f"""
    WITH scored AS (
        SELECT t.id, {priority_sql(score_sql("t", "s", "CAST(:now AS timestamptz)"))} AS wanted
        FROM ticket t JOIN service s ON s.id = t.service_id
        WHERE {check_in("t.status", OPEN_STATUSES)} AND NOT t.priority_manual
    )
    UPDATE ticket SET priority = scored.wanted
    FROM scored
    WHERE ticket.id = scored.id AND ticket.priority <> scored.wanted
    """  # noqa: S608 (formats code constants only, never input)
)


@dataclass(frozen=True)
class Signal:
    score: int
    suggested: int
    factors: dict[str, int]
    priority: int
    manual: bool


async def explain(session: AsyncSession, ticket_id: int, now: Any) -> Signal:
    row = (await session.execute(_EXPLAIN, {"id": ticket_id, "now": now})).one()
    factors = {name: int(getattr(row, name)) for name in _factors_sql("t", "s", "now()")}
    score = sum(factors.values())
    return Signal(score, priority_for(score), factors, row.priority, row.priority_manual)


async def refresh(session: AsyncSession, now: Any) -> int:
    """Re-rank open tickets whose priority is not set by hand; returns how many changed."""
    result = await session.execute(REFRESH, {"now": now})
    return int(getattr(result, "rowcount", 0) or 0)
