"""Alembic environment: async engine over psycopg 3, PostGIS-aware autogenerate."""

from __future__ import annotations

import asyncio
import logging.config

from alembic import context
from geoalchemy2 import alembic_helpers
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import app.models  # noqa: F401  (registers every table on the metadata)
from app.core.models import Base
from app.settings import get_settings, to_sqlalchemy_url

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata

# Tables and indexes that belong to extensions, not to us.
_FOREIGN_TABLES = {"spatial_ref_sys", "topology", "layer"}
# Tables that migrations own as SQL, with no ORM model: read models kept by triggers, the
# grid's build time, and the job queue's tables (procrastinate's schema, migration 0008).
_SQL_TABLES = {"ticket_map", "ticket_grid_refreshed"}
_SQL_TABLE_PREFIXES = ("procrastinate_",)


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    if type_ == "table" and (
        name in _FOREIGN_TABLES or name in _SQL_TABLES or name.startswith(_SQL_TABLE_PREFIXES)
    ):
        return False
    return bool(alembic_helpers.include_object(obj, name, type_, reflected, compare_to))


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    if not url:
        raise SystemExit("set KERBSIDE_DATABASE_URL, or run `kerbside migrate` for the embedded db")
    return to_sqlalchemy_url(url)


def _configure(connection: Connection | None = None, **kwargs: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        # Several processes may start at once (`kerbside serve` migrates at start): one
        # migrates, the others wait here, then find the schema at head and do nothing. The
        # lock is taken before Alembic reads the current revision, and held to the commit.
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('kerbside-migrate'))"))
        context.run_migrations()


async def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # handed in by tests or the CLI
        _run_sync(connection)
        return
    engine = create_async_engine(_url())
    async with engine.connect() as conn:
        await conn.run_sync(_run_sync)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
