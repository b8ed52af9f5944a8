"""Service levels: deadlines (optionally in business time) and a ticket's ``sla_state``.

A service promises to acknowledge a ticket within ``acknowledge_within`` and to resolve it
within ``resolve_within``. Each ticket stores both deadlines and, beside each, the moment 80 %
of the time has gone (``*_warn_at``), so every read can say ``ok`` / ``warning`` /
``breached`` with two comparisons.

The state follows the ticket's current phase: before acknowledgement it is measured against
the acknowledge deadline, then against the resolve deadline; a fixed or closed ticket keeps
the outcome (fixed in time or not); tickets dismissed as duplicate, rejected or not our
responsibility have no state.

The rule lives in the database, as the SQL function ``kerbside_sla_state(…, at)`` (migration
0007, with the parts ``ticket_map`` stores); every statement that shows a state calls it
through ``sla_state_sql``. ``sla_state_of`` is its one Python mirror, for values that are
not read from the database; ``tests/test_sla_rule.py`` holds the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from app.core.models import check_in
from app.jurisdictions.calendar import BusinessCalendar
from app.tickets.models import DISMISSED_STATUSES, DONE_STATUSES, OPEN_STATUSES

WARNING_SHARE = 0.8


class SlaState(StrEnum):
    ok = "ok"
    warning = "warning"
    breached = "breached"


@dataclass(frozen=True)
class Deadline:
    warn_at: datetime
    due_at: datetime


def deadline(
    start: datetime, within: timedelta | None, calendar: BusinessCalendar | None = None
) -> Deadline | None:
    """When ``within`` from ``start`` runs out, and when 80 % of it has (business time if given)."""
    if within is None:
        return None
    if calendar is None:
        return Deadline(start + within * WARNING_SHARE, start + within)
    return Deadline(calendar.add(start, within * WARNING_SHARE), calendar.add(start, within))


def calendar_of(row: Any) -> BusinessCalendar | None:
    """The business calendar for a row with the service's ``counts_business_hours`` and the
    jurisdiction's ``timezone``, ``working_hours`` and ``holidays``; None for clock time."""
    if not row.counts_business_hours:
        return None
    return BusinessCalendar.parse(row.timezone, row.working_hours, row.holidays)


def sla_state(ticket: Any, now: datetime) -> SlaState | None:
    """The state of ``ticket`` (any object with the ticket's columns) at ``now``."""
    return sla_state_of(
        now,
        ticket.status,
        acknowledged_at=ticket.acknowledged_at,
        acknowledge_due_at=ticket.acknowledge_due_at,
        acknowledge_warn_at=ticket.acknowledge_warn_at,
        resolve_due_at=ticket.resolve_due_at,
        resolve_warn_at=ticket.resolve_warn_at,
        fixed_at=ticket.fixed_at,
    )


def sla_state_of(
    now: datetime,
    status: str,
    *,
    acknowledged_at: datetime | None,
    acknowledge_due_at: datetime | None,
    acknowledge_warn_at: datetime | None,
    resolve_due_at: datetime | None,
    resolve_warn_at: datetime | None,
    fixed_at: datetime | None,
) -> SlaState | None:
    """The rule in Python, on the columns it reads: the mirror of the SQL function
    ``kerbside_sla_state`` for values that are not read from the database."""
    if status in DISMISSED_STATUSES:
        return None
    if status in DONE_STATUSES:
        if resolve_due_at is None or fixed_at is None:
            return None
        return SlaState.breached if fixed_at > resolve_due_at else SlaState.ok
    if acknowledged_at is None and acknowledge_due_at is not None:
        return _against(now, acknowledge_warn_at, acknowledge_due_at)
    if resolve_due_at is None:
        return None
    return _against(now, resolve_warn_at, resolve_due_at)


def _against(now: datetime, warn_at: datetime | None, due_at: datetime) -> SlaState:
    if now >= due_at:
        return SlaState.breached
    if warn_at is not None and now >= warn_at:
        return SlaState.warning
    return SlaState.ok


# The rule's inputs, in the order of kerbside_sla_state's arguments (before ``at``).
SLA_COLUMNS = (
    "status",
    "acknowledged_at",
    "acknowledge_warn_at",
    "acknowledge_due_at",
    "resolve_warn_at",
    "resolve_due_at",
    "fixed_at",
)


def sla_state_sql(alias: str = "t", now: str = "now()") -> str:
    """The state of ticket ``alias`` at ``now``: a call of the SQL function
    ``kerbside_sla_state``, which the planner inlines into the statement.

    ``now`` is SQL text too: ``now()`` by default, or a bound parameter such as
    ``CAST(:now AS timestamptz)`` for a controllable clock. Never pass input here.
    """
    columns = ", ".join(f"{alias}.{column}" for column in SLA_COLUMNS)
    return f"kerbside_sla_state({columns}, {now})"


def expected_by_sql(alias: str = "t") -> str:
    """The public "expected by": the scheduled visit, else the resolve deadline (open only)."""
    return (
        f"(CASE WHEN {check_in(f'{alias}.status', OPEN_STATUSES)}"
        f" THEN coalesce({alias}.scheduled_for, {alias}.resolve_due_at) END)"
    )
