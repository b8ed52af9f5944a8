"""The import's own SQL. Bound parameters only."""

from __future__ import annotations

from sqlalchemy import text

# Rows already filed by an earlier run (or earlier in this one), with their ticket's reference
# (a closure of theirs may still be due); served by the unique index
# uq_report_channel_external_id.
ALREADY_IMPORTED = text(
    "SELECT r.external_id, t.reference FROM report r JOIN ticket t ON t.id = r.ticket_id"
    " WHERE r.jurisdiction_id = :jurisdiction_id AND r.channel = 'import'"
    " AND r.external_id = ANY(CAST(:ids AS varchar[]))"
)
JURISDICTION_TIMEZONE = text("SELECT timezone FROM jurisdiction WHERE id = :id")

# A dry run files every row in one transaction and rolls it back, so the intake's neighbourhood
# locks would pile up until the end: one per grid cell touched, tens of thousands for a city's
# file, past the lock table that every session of the server shares (max_locks_per_transaction;
# "out of shared memory" for everyone). A dry run commits nothing, so it needs no serialising
# with live reports: for its own transaction only, pg_advisory_xact_lock(int4, int4) resolves
# to a no-op in a schema of its own, put before pg_catalog on the search path. Created inside
# the transaction, the schema and the setting go with its rollback.
DRY_RUN_WITHOUT_LOCKS = text(
    """
    DO $$
    DECLARE shim text := 'kerbside_dry_run_' || pg_backend_pid();
    BEGIN
        EXECUTE format('CREATE SCHEMA %I', shim);
        EXECUTE format('CREATE FUNCTION %I.pg_advisory_xact_lock(int4, int4) RETURNS void'
                       ' LANGUAGE plpgsql AS $f$BEGIN END$f$', shim);
        PERFORM set_config('search_path',
                           format('%I, pg_catalog, ', shim) || current_setting('search_path'),
                           true);
    END $$
    """
)
