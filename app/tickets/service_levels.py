"""The service-level sweep: record warnings and breaches once, escalate breaches to staff.

Run by ``kerbside worker`` every minute (job ``service_levels``). Each open ticket carries
``sla_next_at``, the earliest warning or deadline not yet recorded, under a partial index,
so a sweep reads only the tickets whose moment has come, however many tickets are open.

For each such ticket, once per phase (acknowledge, resolve) and level:

- warning (80 % of the time gone): an internal ``sla_warning`` event;
- breached: an internal ``sla_breached`` event, and escalation: the priority goes up one
  step (unless staff set it by hand) and the jurisdiction's staff get one e-mail per sweep
  listing the tickets that breached (a ``send_mail`` job, sent after the sweep commits).

``sla_flags`` remembers what was recorded, so a ticket is never warned twice; a reopened
ticket clears its resolve flags and is watched again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import clock
from app.core.jobs import SEND_MAIL, defer
from app.core.models import check_in
from app.tickets.models import OPEN_STATUSES, SlaFlag

log = logging.getLogger("kerbside.service_levels")

_HIT = f"""
    (CASE WHEN t.acknowledged_at IS NULL AND t.acknowledge_warn_at <= :now
          THEN {SlaFlag.acknowledge_warning} ELSE 0 END
     | CASE WHEN t.acknowledged_at IS NULL AND t.acknowledge_due_at <= :now
            THEN {SlaFlag.acknowledge_warning | SlaFlag.acknowledge_breached} ELSE 0 END
     | CASE WHEN t.resolve_warn_at <= :now THEN {SlaFlag.resolve_warning} ELSE 0 END
     | CASE WHEN t.resolve_due_at <= :now
            THEN {SlaFlag.resolve_warning | SlaFlag.resolve_breached} ELSE 0 END)
"""


def _next_sql(flags: str) -> str:
    """The earliest moment still to record, given the flags after this sweep."""
    return f"""least(
        CASE WHEN t.acknowledged_at IS NULL AND {flags} & {SlaFlag.acknowledge_warning} = 0
             THEN t.acknowledge_warn_at END,
        CASE WHEN t.acknowledged_at IS NULL AND {flags} & {SlaFlag.acknowledge_breached} = 0
             THEN t.acknowledge_due_at END,
        CASE WHEN {flags} & {SlaFlag.resolve_warning} = 0 THEN t.resolve_warn_at END,
        CASE WHEN {flags} & {SlaFlag.resolve_breached} = 0 THEN t.resolve_due_at END)"""


# One statement per batch: claim due tickets (SKIP LOCKED: staff editing a ticket never wait
# for the sweep), set flags, the next moment to look and the escalated priority, and write
# one event per newly reached level (a breach implies its warning: only the breach is told).
SWEEP = text(
    f"""
    WITH due AS (
        SELECT t.id, t.sla_flags AS old, {_HIT} AS hit
        FROM ticket t
        WHERE {check_in("t.status", OPEN_STATUSES)} AND t.sla_next_at <= :now
        ORDER BY t.sla_next_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ),
    changed AS (
        UPDATE ticket t SET
            sla_flags = due.old | due.hit,
            sla_next_at = {_next_sql("(due.old | due.hit)")},
            priority = CASE
                WHEN (due.hit & ~due.old)
                     & {SlaFlag.acknowledge_breached | SlaFlag.resolve_breached} <> 0
                     AND NOT t.priority_manual
                THEN greatest(1, t.priority - 1) ELSE t.priority END
        FROM due
        WHERE t.id = due.id
        RETURNING t.id, t.reference, t.jurisdiction_id, t.priority, t.acknowledge_due_at,
                  t.resolve_due_at, due.hit & ~due.old AS new
    ),
    levels AS (
        SELECT changed.*, level.bit, level.phase, level.kind, level.due_at
        FROM changed
        CROSS JOIN LATERAL (VALUES
            ({SlaFlag.acknowledge_warning}, 'acknowledge', 'sla_warning',
             changed.acknowledge_due_at),
            ({SlaFlag.acknowledge_breached}, 'acknowledge', 'sla_breached',
             changed.acknowledge_due_at),
            ({SlaFlag.resolve_warning}, 'resolve', 'sla_warning', changed.resolve_due_at),
            ({SlaFlag.resolve_breached}, 'resolve', 'sla_breached', changed.resolve_due_at)
        ) AS level(bit, phase, kind, due_at)
        WHERE changed.new & level.bit <> 0
          -- a warning reached together with its breach is not told separately
          AND NOT (level.kind = 'sla_warning' AND changed.new & (level.bit * 2) <> 0)
    ),
    events AS (
        INSERT INTO ticket_event (ticket_id, kind, public, actor_label, data, created_at)
        SELECT id, kind, false, 'system',
               jsonb_build_object('phase', phase, 'due_at', due_at, 'priority', priority),
               :now
        FROM levels
    )
    SELECT id, reference, jurisdiction_id, phase, kind, due_at, priority FROM levels
    """  # noqa: S608 (formats code constants only, never input)
)

_STAFF_EMAILS = text(
    "SELECT email FROM app_user WHERE jurisdiction_id = :j AND role = 'staff' AND is_active"
    " ORDER BY email"
)


@dataclass
class SweepResult:
    warnings: int = 0
    breaches: int = 0
    escalated: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))


async def sweep(
    session: AsyncSession, *, now: datetime | None = None, batch: int = 5000
) -> SweepResult:
    """Record every warning and breach due by ``now`` (in batches); nothing twice."""
    now = now or clock.now()
    result = SweepResult()
    while True:
        rows = (await session.execute(SWEEP, {"now": now, "batch": batch})).all()
        for row in rows:
            if row.kind == "sla_breached":
                result.breaches += 1
                result.escalated[row.jurisdiction_id].append(
                    f"{row.reference}: {row.phase} deadline {row.due_at:%Y-%m-%d %H:%M} UTC"
                    f" passed (priority now {row.priority})"
                )
            else:
                result.warnings += 1
        if len(rows) == 0 or len({r.id for r in rows}) < batch:
            return result


async def escalate(session: AsyncSession, result: SweepResult) -> int:
    """Queue one e-mail to each of a jurisdiction's staff listing the tickets that breached.

    The mails are jobs deferred in the sweep's transaction: the worker sends them after the
    commit (retrying while the mail server is away), so a sweep rolled back sends nothing
    and the next sweep, which records the same breaches, does not mail them twice.
    Returns how many mails were queued.
    """
    queued = 0
    for jurisdiction_id, lines in result.escalated.items():
        emails = (await session.execute(_STAFF_EMAILS, {"j": jurisdiction_id})).scalars().all()
        body = (
            f"{len(lines)} ticket(s) passed a service-level deadline:\n\n"
            + "\n".join(f"- {line}" for line in lines[:500])
            + ("\n- ..." if len(lines) > 500 else "")
        )
        for email in emails:
            mail = {
                "to": email,
                "subject": f"Kerbside: {len(lines)} overdue ticket(s)",
                "body": body,
            }
            await defer(session, SEND_MAIL, mail, queue="mail")
            queued += 1
    return queued


async def service_level_job(session: AsyncSession) -> int:
    """The periodic job: sweep, then queue staff mail. Returns how many events were recorded."""
    result = await sweep(session)
    if result.escalated:
        await escalate(session, result)
    return result.warnings + result.breaches
