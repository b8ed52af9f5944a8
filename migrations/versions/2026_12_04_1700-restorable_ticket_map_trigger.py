"""a ticket_map trigger that pg_restore can create: compare locations by their bytes

``ticket_map_update`` fired ``WHEN (... OLD.location IS DISTINCT FROM NEW.location ...)``.
PostgreSQL cannot write the operator of ``IS DISTINCT FROM`` with its schema, and pg_dump's
script runs with an empty ``search_path``, so restoring a dump stopped at this trigger
("operator is not unique: public.geometry = public.geometry"): every backup was
unrestorable. Comparing the locations' EWKB bytes needs no operator of PostGIS, and it is
what "changed" means here (a point moved by any amount). Found by the end-to-end backup
test (tests/test_backup_restore.py).

Revision ID: 0060
Revises: 0019
Create Date: 2026-12-04 17:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0060"
down_revision: str | None = "0040"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the map's read model is made of (migration 0005's TICKET_INPUTS, location aside).
_INPUTS = (
    "reference",
    "jurisdiction_id",
    "service_id",
    "area_id",
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


def _trigger(location_changed: str) -> str:
    changed = " OR ".join(
        [location_changed] + [f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _INPUTS]
    )
    return (
        "CREATE TRIGGER ticket_map_update AFTER UPDATE ON ticket "
        f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION ticket_map_sync()"
    )


def upgrade() -> None:
    op.execute("DROP TRIGGER ticket_map_update ON ticket")
    op.execute(_trigger("OLD.location::bytea IS DISTINCT FROM NEW.location::bytea"))


def downgrade() -> None:
    op.execute("DROP TRIGGER ticket_map_update ON ticket")
    op.execute(_trigger("OLD.location IS DISTINCT FROM NEW.location"))
