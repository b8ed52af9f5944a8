"""kerbside_sla_state(): the service-level rule as one SQL function, and ticket_map reads it

Until now the rule that says ``ok`` / ``warning`` / ``breached`` (or nothing) for a ticket at a
given moment was written four times: in Python, in ``app.tickets.sla.sla_state_sql``, in the
``ticket_map_source`` view of migration 0005 and in the map's read of ``ticket_map``. This
migration makes it one definition, in the database:

- ``kerbside_sla_state(status, acknowledged_at, acknowledge_warn_at, acknowledge_due_at,
  resolve_warn_at, resolve_due_at, fixed_at, at)``: the rule. Every SQL statement that shows
  a state calls it (``sla_state_sql`` renders the call).

It is built from three parts, so that ``ticket_map`` can keep storing what does not depend on
the clock and decide the rest at read time (the design of migration 0005):

- ``kerbside_sla_outcome(status, resolve_due_at, fixed_at)``: the state that no clock changes,
  a fixed or closed ticket's outcome (NULL for every other ticket);
- ``kerbside_sla_running(status, acknowledged_at, acknowledge_due_at, acknowledge_value,
  resolve_value)``: of one time per phase, the one of the phase whose deadline is running (the
  acknowledge phase until the ticket is acknowledged, if it has an acknowledge deadline; then
  the resolve phase; none once the ticket is done or dismissed). Called once for the warning
  times and once for the deadlines;
- ``kerbside_sla_clock(outcome, warn_at, due_at, at)``: the state at ``at``: ``breached``
  from the running deadline, ``warning`` from its warning time, else ``ok``; the outcome
  when no deadline runs.

``kerbside_sla_state`` is ``kerbside_sla_clock(kerbside_sla_outcome(…), kerbside_sla_running(…
warn …), kerbside_sla_running(… due …), at)``; ``ticket_map_source`` stores the three inner
values (``sla_state``, ``sla_warn_at``, ``sla_due_at``) and the map reads
``kerbside_sla_clock(m.sla_state, m.sla_warn_at, m.sla_due_at, now())``. The two cannot
disagree: they are the same functions.

Each function is ``LANGUAGE sql`` with a single ``SELECT`` of one expression, ``IMMUTABLE``
(the clock is the ``at`` argument, never ``now()`` inside) and not ``STRICT`` (NULLs are
meaningful inputs): PostgreSQL inlines such functions into the calling statement when it plans
it, so plans and index use are those of the expressions written out. ``kerbside_sla_clock``
tests the deadline in a simple ``CASE`` so that each argument is used once, which lets the
planner inline it whatever the argument expressions are. ``at`` must not be NULL.

The values ``ticket_map`` stores do not change (the view computes what it computed before), so
no row is rewritten. The statuses are frozen here as in 0005; a new status needs a migration
(``tests/test_sla_rule.py`` compares the function with the Python mirror over every status).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 14:10:00+00:00
"""

# ruff: noqa: S608  (statements join code constants; there are no values)
from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DISMISSED = "('duplicate', 'not_our_responsibility', 'rejected')"
DONE = "('fixed', 'closed')"
ENDED = "('duplicate', 'not_our_responsibility', 'rejected', 'fixed', 'closed')"

_PURE = "LANGUAGE sql IMMUTABLE PARALLEL SAFE"

OUTCOME = f"""
CREATE FUNCTION kerbside_sla_outcome(status text, resolve_due_at timestamptz,
                                     fixed_at timestamptz)
RETURNS text {_PURE} AS $$
SELECT CASE WHEN status IN {DONE} THEN
    CASE WHEN resolve_due_at IS NULL OR fixed_at IS NULL THEN NULL
         WHEN fixed_at > resolve_due_at THEN 'breached' ELSE 'ok' END
END
$$
"""

RUNNING = f"""
CREATE FUNCTION kerbside_sla_running(status text, acknowledged_at timestamptz,
                                     acknowledge_due_at timestamptz,
                                     acknowledge_value timestamptz, resolve_value timestamptz)
RETURNS timestamptz {_PURE} AS $$
SELECT CASE WHEN status IN {ENDED} THEN NULL
            WHEN acknowledged_at IS NULL AND acknowledge_due_at IS NOT NULL
                THEN acknowledge_value
            ELSE resolve_value END
$$
"""

# `at >= due_at` is NULL exactly when no deadline runs (at is never NULL): then the outcome.
CLOCK = f"""
CREATE FUNCTION kerbside_sla_clock(outcome text, warn_at timestamptz, due_at timestamptz,
                                   at timestamptz)
RETURNS text {_PURE} AS $$
SELECT CASE at >= due_at
    WHEN true THEN 'breached'
    WHEN false THEN CASE WHEN at >= warn_at THEN 'warning' ELSE 'ok' END
    ELSE outcome END
$$
"""

STATE = f"""
CREATE FUNCTION kerbside_sla_state(status text, acknowledged_at timestamptz,
                                   acknowledge_warn_at timestamptz,
                                   acknowledge_due_at timestamptz,
                                   resolve_warn_at timestamptz, resolve_due_at timestamptz,
                                   fixed_at timestamptz, at timestamptz)
RETURNS text {_PURE} AS $$
SELECT kerbside_sla_clock(
    kerbside_sla_outcome(status, resolve_due_at, fixed_at),
    kerbside_sla_running(status, acknowledged_at, acknowledge_due_at,
                         acknowledge_warn_at, resolve_warn_at),
    kerbside_sla_running(status, acknowledged_at, acknowledge_due_at,
                         acknowledge_due_at, resolve_due_at),
    at)
$$
"""

# Migration 0005's view, column for column; only the service-level columns change.
POINT = """(CASE WHEN s.public_location_snap_m > 0
    THEN ST_SnapToGrid(t.location,
         s.public_location_snap_m / (111320.0 * cos(radians(round(ST_Y(t.location)::numeric)))),
         s.public_location_snap_m / 110574.0)
    ELSE t.location END)"""


def _ts(column: str) -> str:
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


def _text(sql: str) -> str:
    return f"coalesce('\"' || {sql} || '\"', 'null')"


HEAD = (
    '\'{"type":"Feature","id":"\' || t.reference'
    f' || \'","geometry":\' || ST_AsGeoJSON({POINT}, 6)'
    f" || ',\"properties\":' || '{{\"reference\":' || {_text('t.reference')}"
    f" || ',\"service_code\":' || {_text('s.code')}"
    f" || ',\"status\":' || {_text('t.status')}"
    f" || ',\"created_at\":' || {_text(_ts('t.first_reported_at'))}"
    f" || ',\"updated_at\":' || {_text(_ts('t.updated_at'))}"
    " || ',\"report_count\":' || coalesce((t.report_count)::text, 'null')"
    " || ',\"sla_state\":'"
)


def _source(sla_state: str, sla_warn_at: str, sla_due_at: str) -> str:
    return f"""
CREATE OR REPLACE VIEW ticket_map_source AS
SELECT t.id AS ticket_id, t.jurisdiction_id, t.service_id, t.area_id, t.status,
       t.first_reported_at, t.updated_at, {POINT} AS point, {HEAD} AS head,
       {sla_state} AS sla_state, {sla_warn_at} AS sla_warn_at, {sla_due_at} AS sla_due_at
FROM ticket t JOIN service s ON s.id = t.service_id
"""


def _running(column: str) -> str:
    return (
        "kerbside_sla_running(t.status, t.acknowledged_at, t.acknowledge_due_at,"
        f" t.acknowledge_{column}, t.resolve_{column})"
    )


SOURCE = _source(
    "kerbside_sla_outcome(t.status, t.resolve_due_at, t.fixed_at)",
    _running("warn_at"),
    _running("due_at"),
)


# -- downgrade: migration 0005's expressions, frozen ---------------------------------------------

_OLD_SLA_STATE = f"""(CASE WHEN t.status IN {DONE} THEN
        CASE WHEN t.resolve_due_at IS NULL OR t.fixed_at IS NULL THEN NULL
             WHEN t.fixed_at > t.resolve_due_at THEN 'breached' ELSE 'ok' END
    END)"""


def _old_running(column: str) -> str:
    return f"""(CASE WHEN t.status IN {DISMISSED} OR t.status IN {DONE} THEN NULL
        WHEN t.acknowledged_at IS NULL AND t.acknowledge_due_at IS NOT NULL
            THEN t.acknowledge_{column}
        ELSE t.resolve_{column} END)"""


OLD_SOURCE = _source(_OLD_SLA_STATE, _old_running("warn_at"), _old_running("due_at"))

FUNCTIONS = (
    "kerbside_sla_state(text, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz,"
    " timestamptz, timestamptz)",
    "kerbside_sla_clock(text, timestamptz, timestamptz, timestamptz)",
    "kerbside_sla_running(text, timestamptz, timestamptz, timestamptz, timestamptz)",
    "kerbside_sla_outcome(text, timestamptz, timestamptz)",
)


def upgrade() -> None:
    op.execute(OUTCOME)
    op.execute(RUNNING)
    op.execute(CLOCK)
    op.execute(STATE)
    # The triggers' function (ticket_map_sync) and the service trigger read this view: they
    # now derive the stored service-level columns with the rule's own parts.
    op.execute(SOURCE)


def downgrade() -> None:
    op.execute(OLD_SOURCE)
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
