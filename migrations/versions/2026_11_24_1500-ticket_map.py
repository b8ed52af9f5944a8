"""ticket_map: the public map's read model of each ticket, kept by triggers

Public map pages (``GET /v1/tickets.geojson`` with the default properties) are the busiest
read of a civic map. Building each feature per request (the snapped point, ``ST_AsGeoJSON``,
two ``to_char``, the service-level rule) and fetching each ticket's heap page (about one
random page per ticket: tickets arrive in time order, not place order) cost most of that
read. ``ticket_map`` holds per ticket what the page needs, already built:

- ``point``: the location as the public sees it (snapped to the service's grid when the
  service asks for it, ``service.public_location_snap_m``);
- ``head``: the GeoJSON Feature text up to and including ``"sla_state":``, i.e.
  ``{"type":"Feature","id":"<ref>","geometry":{...},"properties":{"reference":"<ref>",
  "service_code":"…","status":"…","created_at":"…Z","updated_at":"…Z","report_count":N,
  "sla_state":`` - the request adds the state and the closing braces;
- ``sla_state``, ``sla_warn_at``, ``sla_due_at``: the service-level state without the clock.
  With no ``sla_due_at`` the state is ``sla_state`` (constant, may be NULL); otherwise
  'breached' from ``sla_due_at``, 'warning' from ``sla_warn_at``, else 'ok';
- the filter columns: jurisdiction, service, area, status, created and updated times.

``ix_ticket_map_point`` is a GiST index on the point that INCLUDEs every column, so a page is
an index-only scan: the index keeps nearby tickets on nearby pages however they arrived,
which a heap cannot. (``point`` is listed again in INCLUDE: the geometry operator class
cannot return the key, and the planner needs it returnable for an index-only scan.)

``ticket_map_source`` (a view) is the one definition of a row; ``ticket_map_sync`` (AFTER
INSERT, and AFTER UPDATE when an input changed, on ticket) upserts a ticket's row from it,
and ``service_ticket_map`` (AFTER UPDATE OF code, public_location_snap_m, on service)
rewrites the rows of that service's tickets. The SQL is frozen: it is what
``feature_text(PUBLIC, MAP_PROPERTIES)`` and ``sla_state_sql`` in the application build today
(tests compare them on every kind of ticket). A change to either needs a new migration.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 15:00:00+00:00
"""

# ruff: noqa: S608  (statements join code constants; there are no values)
from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DISMISSED = "('duplicate', 'not_our_responsibility', 'rejected')"
DONE = "('fixed', 'closed')"

# Every ticket column the row depends on: an UPDATE that changes none of them skips the sync.
TICKET_INPUTS = (
    "reference",
    "jurisdiction_id",
    "service_id",
    "area_id",
    "location",
    "status",
    "report_count",
    "first_reported_at",
    "updated_at",
    "acknowledged_at",
    "acknowledge_due_at",
    "acknowledge_warn_at",
    "resolve_due_at",
    "resolve_warn_at",
    "fixed_at",
)
COLUMNS = (
    "jurisdiction_id",
    "service_id",
    "area_id",
    "status",
    "first_reported_at",
    "updated_at",
    "point",
    "head",
    "sla_state",
    "sla_warn_at",
    "sla_due_at",
)


def _ts(column: str) -> str:
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


def _text(sql: str) -> str:
    return f"coalesce('\"' || {sql} || '\"', 'null')"


POINT = """(CASE WHEN s.public_location_snap_m > 0
    THEN ST_SnapToGrid(t.location,
         s.public_location_snap_m / (111320.0 * cos(radians(round(ST_Y(t.location)::numeric)))),
         s.public_location_snap_m / 110574.0)
    ELSE t.location END)"""

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

# The clock-free parts of app.tickets.sla.sla_state_sql: which deadline is running (due, and
# its warning time), or the state when none is.
SLA_STATE = f"""(CASE WHEN t.status IN {DONE} THEN
        CASE WHEN t.resolve_due_at IS NULL OR t.fixed_at IS NULL THEN NULL
             WHEN t.fixed_at > t.resolve_due_at THEN 'breached' ELSE 'ok' END
    END)"""


def _running(column: str) -> str:
    return f"""(CASE WHEN t.status IN {DISMISSED} OR t.status IN {DONE} THEN NULL
        WHEN t.acknowledged_at IS NULL AND t.acknowledge_due_at IS NOT NULL
            THEN t.acknowledge_{column}
        ELSE t.resolve_{column} END)"""


SOURCE = f"""
CREATE VIEW ticket_map_source AS
SELECT t.id AS ticket_id, t.jurisdiction_id, t.service_id, t.area_id, t.status,
       t.first_reported_at, t.updated_at, {POINT} AS point, {HEAD} AS head,
       {SLA_STATE} AS sla_state, {_running("warn_at")} AS sla_warn_at,
       {_running("due_at")} AS sla_due_at
FROM ticket t JOIN service s ON s.id = t.service_id
"""

_UPSERT_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS)
TICKET_FUNCTION = f"""
CREATE FUNCTION ticket_map_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ticket_map SELECT * FROM ticket_map_source WHERE ticket_id = NEW.id
    ON CONFLICT (ticket_id) DO UPDATE SET {_UPSERT_SET};
    RETURN NULL;
END
$$
"""

_changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in TICKET_INPUTS)
TICKET_TRIGGERS = f"""
CREATE TRIGGER ticket_map_insert AFTER INSERT ON ticket
    FOR EACH ROW EXECUTE FUNCTION ticket_map_sync();
CREATE TRIGGER ticket_map_update AFTER UPDATE ON ticket
    FOR EACH ROW WHEN ({_changed}) EXECUTE FUNCTION ticket_map_sync();
"""

# Rare (an administrator changes a service) and set-based: one UPDATE of its tickets' rows.
_SET_FROM_SOURCE = ", ".join(f"{c} = src.{c}" for c in COLUMNS)
SERVICE_FUNCTION = f"""
CREATE FUNCTION service_ticket_map() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ticket_map m SET {_SET_FROM_SOURCE}
    FROM ticket_map_source src
    WHERE src.ticket_id = m.ticket_id AND src.service_id = NEW.id;
    RETURN NULL;
END
$$
"""

SERVICE_TRIGGER = """
CREATE TRIGGER service_ticket_map AFTER UPDATE OF code, public_location_snap_m ON service
    FOR EACH ROW WHEN (OLD.code IS DISTINCT FROM NEW.code
                       OR OLD.public_location_snap_m IS DISTINCT FROM NEW.public_location_snap_m)
    EXECUTE FUNCTION service_ticket_map();
"""

TABLE = """
CREATE TABLE ticket_map (
    ticket_id bigint NOT NULL,
    jurisdiction_id integer NOT NULL,
    service_id integer NOT NULL,
    area_id integer,
    status varchar(32) NOT NULL,
    first_reported_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    point geometry(Point, 4326) NOT NULL,
    head text NOT NULL,
    sla_state text,
    sla_warn_at timestamptz,
    sla_due_at timestamptz,
    CONSTRAINT pk_ticket_map PRIMARY KEY (ticket_id),
    CONSTRAINT fk_ticket_map_ticket_id_ticket FOREIGN KEY (ticket_id)
        REFERENCES ticket (id) ON DELETE CASCADE
) WITH (fillfactor = 90)
"""

INDEX = f"""
CREATE INDEX ix_ticket_map_point ON ticket_map USING gist (point)
    INCLUDE (point, ticket_id, {", ".join(c for c in COLUMNS if c != "point")})
"""


def upgrade() -> None:
    # No ticket may be written between the backfill and the triggers.
    op.execute("LOCK TABLE ticket, service IN SHARE ROW EXCLUSIVE MODE")
    op.execute(TABLE)
    op.execute(SOURCE)
    op.execute("INSERT INTO ticket_map SELECT * FROM ticket_map_source")
    op.execute(INDEX)
    op.execute(TICKET_FUNCTION)
    op.execute(TICKET_TRIGGERS)
    op.execute(SERVICE_FUNCTION)
    op.execute(SERVICE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS service_ticket_map ON service")
    op.execute("DROP FUNCTION IF EXISTS service_ticket_map()")
    op.execute("DROP TRIGGER IF EXISTS ticket_map_update ON ticket")
    op.execute("DROP TRIGGER IF EXISTS ticket_map_insert ON ticket")
    op.execute("DROP FUNCTION IF EXISTS ticket_map_sync()")
    op.execute("DROP VIEW IF EXISTS ticket_map_source")
    op.execute("DROP TABLE IF EXISTS ticket_map")
