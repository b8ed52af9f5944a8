"""map indexes and the ticket grid

Indexes for the map and open-data filters (first reported, last updated), and the
``ticket_grid`` materialized view: ticket counts per Web Mercator grid cell at levels 0-16,
per jurisdiction, service, status and area (plus rows for all statuses and areas together),
summed over public (snapped) locations. Low-zoom
clusters and tiles add it up instead of scanning every ticket. ``ticket_grid_refreshed``
holds when it was last refreshed (see app/maps/grid.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 13:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The finest level is 16 (cells of 611 m at the equator, ~380 m at 51°N); the 3857 formulas
# are written out so no per-row ST_Transform is needed. Public points of sensitive services
# are snapped first (the same expression as app/maps/queries.py PUBLIC_POINT).
TICKET_GRID = """
CREATE MATERIALIZED VIEW ticket_grid AS
WITH public_point AS (
    SELECT t.jurisdiction_id, t.service_id, t.status, coalesce(t.area_id, 0) AS area_id,
           CASE WHEN s.public_location_snap_m > 0
                THEN ST_SnapToGrid(t.location,
                     s.public_location_snap_m
                         / (111320.0 * cos(radians(round(ST_Y(t.location)::numeric)))),
                     s.public_location_snap_m / 110574.0)
                ELSE t.location END AS p
    FROM ticket t JOIN service s ON s.id = t.service_id
), merc AS (
    SELECT jurisdiction_id, service_id, status, area_id,
           radians(ST_X(p)) * 6378137.0 AS x,
           ln(tan(pi() / 4 + radians(greatest(least(ST_Y(p), 85.0511), -85.0511)) / 2))
               * 6378137.0 AS y
    FROM public_point
), base AS (
    SELECT jurisdiction_id, service_id, status, area_id,
           least(floor((x + 20037508.342789244) / 611.49622628141)::int, 65535) AS cx,
           least(floor((20037508.342789244 - y) / 611.49622628141)::int, 65535) AS cy,
           count(*)::int AS n, sum(x) AS sx, sum(y) AS sy
    FROM merc
    GROUP BY 1, 2, 3, 4, 5, 6
), fine AS (
    SELECT jurisdiction_id, service_id, status, area_id, cx, cy, n, sx, sy FROM base
    UNION ALL
    -- Every status and area together (status '', area -1): what an unfiltered map reads,
    -- several times fewer rows than the detail.
    SELECT jurisdiction_id, service_id, '', -1, cx, cy, sum(n)::int, sum(sx), sum(sy)
    FROM base GROUP BY jurisdiction_id, service_id, cx, cy
)
SELECT 16 AS level, cx, cy, jurisdiction_id, service_id, status, area_id, n, sx, sy FROM fine
UNION ALL
SELECT l.level, f.cx >> (16 - l.level), f.cy >> (16 - l.level), f.jurisdiction_id,
       f.service_id, f.status, f.area_id, sum(f.n)::int, sum(f.sx), sum(f.sy)
FROM fine f CROSS JOIN generate_series(0, 15) AS l(level)
GROUP BY 1, 2, 3, 4, 5, 6, 7
"""


def upgrade() -> None:
    op.create_index("ix_ticket_first_reported_at", "ticket", ["first_reported_at"], unique=False)
    op.create_index("ix_ticket_updated_at", "ticket", ["updated_at"], unique=False)
    op.execute(TICKET_GRID)
    # Unique (REFRESH ... CONCURRENTLY needs it), led by what every grid query filters on.
    op.execute(
        "CREATE UNIQUE INDEX uq_ticket_grid_cell ON ticket_grid"
        " (level, cx, cy, jurisdiction_id, service_id, status, area_id)"
    )
    op.execute("CREATE MATERIALIZED VIEW ticket_grid_refreshed AS SELECT now() AS at")


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW ticket_grid_refreshed")
    op.execute("DROP MATERIALIZED VIEW ticket_grid")
    op.drop_index("ix_ticket_updated_at", table_name="ticket")
    op.drop_index("ix_ticket_first_reported_at", table_name="ticket")
