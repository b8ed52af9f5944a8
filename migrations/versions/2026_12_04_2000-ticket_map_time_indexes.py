"""maps: ``ticket_map`` indexes on its created and updated times

The public open-data page (``/v1/tickets.geojson`` from the read model) with a whole-city box
and a day's window walked the primary key in id order and threw away what the window did
not hold: at 1M tickets 306 ms per page (142,000 rows read per worker for 1,001 kept), while
Open311 answered the same day from ``ticket``'s time index in a fraction. With these indexes
the planner reads the day's 2,500 rows and sorts the page: 7 ms (EXPLAIN ANALYZE on the
bench's 1M dataset). A small box still takes the GiST index; a half-year window still takes
the primary key (it finds 1,001 rows at once). ``updated_at`` serves the same for
dashboards polling ``updated_since`` across a city.

Revision ID: 0096
Revises: 0095
Create Date: 2026-12-04 20:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0096"
down_revision: str | None = "0095"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_ticket_map_first_reported_at", "ticket_map", ["first_reported_at"])
    op.create_index("ix_ticket_map_updated_at", "ticket_map", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_ticket_map_updated_at", table_name="ticket_map")
    op.drop_index("ix_ticket_map_first_reported_at", table_name="ticket_map")
