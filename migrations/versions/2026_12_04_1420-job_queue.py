"""job queue: procrastinate's schema, photos deferred by a trigger, the grid's first build

One job system (``app/jobs``) replaces the worker's polling loop, the photo pipeline's own
queue and the request-started grid refresh:

- procrastinate's tables and functions, from ``migrations/sql/procrastinate-3.10.0.sql``: the
  text of procrastinate 3.10.0's ``schema.sql``, vendored so this revision builds the same
  database whatever version is installed later. A procrastinate upgrade adds a revision that
  runs the new version's files from ``procrastinate/sql/migrations`` (vendored the same way);
  ``tests/test_jobs.py`` fails while the installed package has migrations newer than ours;
- ``photo_defer_processing``: inserting a pending photo defers its ``process_photo`` job in
  the same transaction (so no caller can forget it, and a rolled-back report leaves no job);
  the job row replaces the photo's lease, so ``photo.lease_until`` goes. ``attempts`` stays:
  it counts the tries that started, across retries, stalled-job recovery and sweeps;
- ``ticket_grid_refreshed`` becomes a table whose single row says when the grid was last
  built: no row, never built (maps answer ``no-store`` until then). The job and the seed fill
  it; the materialized view it replaces was "refreshed" at migration time, so a fresh
  database claimed an empty grid as current.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 14:20:00+00:00
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROCRASTINATE_SCHEMA = Path(__file__).parents[1] / "sql" / "procrastinate-3.10.0.sql"

# The task name and queue are app.jobs.tasks.process_photo's (a test pins them). The lock
# keeps two jobs of one photo from running at once; the queueing lock, from waiting twice.
PHOTO_TRIGGER = """
CREATE FUNCTION photo_defer_processing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM procrastinate_defer_jobs_v1(ARRAY[ROW(
        'photos', 'process_photo', 0,
        'photo:' || NEW.public_id, 'photo:' || NEW.public_id,
        jsonb_build_object('public_id', CAST(NEW.public_id AS text)), NULL
    )::procrastinate_job_to_defer_v1]);
    RETURN NULL;
END;
$$;
CREATE TRIGGER photo_defer_processing AFTER INSERT ON photo
    FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION photo_defer_processing();
"""


def upgrade() -> None:
    # The driver's own execute: the file is plain SQL (no bound parameters, "%" is literal).
    op.get_bind().exec_driver_sql(PROCRASTINATE_SCHEMA.read_text().replace("%", "%%"))
    op.execute(PHOTO_TRIGGER)
    op.drop_column("photo", "lease_until")
    op.execute("DROP MATERIALIZED VIEW ticket_grid_refreshed")
    op.execute(
        "CREATE TABLE ticket_grid_refreshed ("
        " one boolean PRIMARY KEY DEFAULT true CONSTRAINT ck_ticket_grid_refreshed_one"
        " CHECK (one), at timestamptz NOT NULL)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE ticket_grid_refreshed")
    op.execute("CREATE MATERIALIZED VIEW ticket_grid_refreshed AS SELECT now() AS at")
    op.add_column("photo", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.execute("DROP TRIGGER photo_defer_processing ON photo")
    op.execute("DROP FUNCTION photo_defer_processing()")
    # Everything procrastinate's schema made is named procrastinate_*.
    op.execute(
        """
        DO $$
        DECLARE name text;
        BEGIN
            FOR name IN SELECT tablename FROM pg_tables
                        WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate%'
            LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', name);
            END LOOP;
            FOR name IN SELECT p.oid::regprocedure::text FROM pg_proc p
                        JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate%'
            LOOP
                EXECUTE 'DROP FUNCTION ' || name || ' CASCADE';
            END LOOP;
            FOR name IN SELECT t.typname FROM pg_type t
                        JOIN pg_namespace n ON n.oid = t.typnamespace
                        WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate%'
                          AND t.typtype IN ('e', 'c')
            LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', name);
            END LOOP;
        END;
        $$
        """
    )
