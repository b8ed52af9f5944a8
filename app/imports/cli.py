"""``kerbside import FILE --jurisdiction SLUG``: a legacy system's reports from the command line.

Registered in ``app.cli.EXTRA_COMMANDS``. The file is streamed (see ``app.imports.sources``),
so files of millions of rows import here; ``POST /v1/imports`` takes small ones. The intake
(geoalchemy2, shapely, Pillow) is loaded only when the command runs, so the other
``kerbside`` commands do not pay for it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.cli import CommandError, ProgressBar, open_database
from app.core.errors import KerbsideError
from app.imports.mapping import parse_column_mapping, parse_service_map
from app.imports.schemas import DEFAULT_BATCH_SIZE, ColumnMapping, ImportOptions, ImportSummary
from app.imports.sources import format_for
from app.settings import get_settings


def add_import_command(sub: Any) -> None:
    """Register ``kerbside import`` (see ``app.cli.EXTRA_COMMANDS``)."""
    command = sub.add_parser(
        "import",
        help="import historical reports (CSV or GeoJSON) through the intake path",
        description="Files a legacy system's reports oldest first, with their original times, "
        "so they cluster into tickets as if they had been reported then. Re-running the same "
        "file imports nothing twice. Prints a JSON summary; see docs/import.md.",
    )
    command.add_argument("file", type=Path, help="a .csv (header row) or .geojson file")
    command.add_argument("--jurisdiction", metavar="SLUG", required=True)
    command.add_argument(
        "--format", choices=["csv", "geojson"], help="default: from the file's extension"
    )
    command.add_argument(
        "--service-map",
        metavar="MAP",
        help="legacy category → service code: 'Name=code,Other=code2', a JSON object, "
        "or @file.json",
    )
    command.add_argument(
        "--column",
        action="append",
        metavar="FIELD=COLUMN",
        help="the file's column for one of our fields, e.g. service_code=sr_type (repeatable; "
        "fields: service_code, lon, lat, reported_at, description, address, external_id, "
        "status, closed_at)",
    )
    command.add_argument(
        "--no-status",
        dest="statuses",
        action="store_false",
        help="do not import legacy statuses and closure times (every ticket stays open)",
    )
    command.add_argument(
        "--timezone",
        metavar="ZONE",
        help="IANA zone for times without a UTC offset (default: the jurisdiction's)",
    )
    command.add_argument(
        "--date-format",
        metavar="FORMAT",
        help="strptime format for times that are not ISO 8601, e.g. '%%m/%%d/%%y %%H:%%M'",
    )
    command.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per transaction (default {DEFAULT_BATCH_SIZE})",
    )
    command.add_argument(
        "--dry-run",
        action="store_true",
        help="import every row in one transaction, then roll it back",
    )
    command.set_defaults(run=cmd_import)


def cmd_import(args: argparse.Namespace) -> None:
    path: Path = args.file
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    file_format = args.format or format_for(path.name)
    if file_format is None:
        raise CommandError(f"{path}: cannot tell the format from the name; pass --format")
    spec = args.service_map
    if spec and (spec.startswith("@") or (spec.endswith(".json") and Path(spec).is_file())):
        map_path = Path(spec.removeprefix("@"))
        try:
            spec = map_path.read_text()
        except OSError as exc:
            raise CommandError(f"{map_path}: {exc.strerror}") from exc
    try:
        service_map = parse_service_map(spec)
        columns = ColumnMapping(**parse_column_mapping(args.column))
    except KerbsideError as exc:
        raise CommandError(exc.detail) from exc
    options = ImportOptions(
        jurisdiction=args.jurisdiction,
        format=file_format,
        source_name=path.name,
        service_map=service_map,
        columns=columns,
        statuses=args.statuses,
        timezone=args.timezone,
        date_format=args.date_format,
        dry_run=args.dry_run,
        batch_size=args.batch_size,
    )
    resolved = open_database(get_settings())
    bar = ProgressBar(f"import {path.name}")
    try:
        summary = asyncio.run(_run_import(path, options, bar))
    except KerbsideError as exc:
        raise CommandError(exc.detail) from exc
    except KeyboardInterrupt:
        bar.finish()
        print(
            "kerbside: import interrupted; the batches committed so far are kept, "
            "run the same command again to import the rest",
            file=sys.stderr,
        )
        raise
    finally:
        resolved.close()
    bar.finish()
    print(summary.model_dump_json(indent=2, exclude_none=True))
    if summary.rows_read == 0:
        print(f"kerbside: {path} holds no rows", file=sys.stderr)
        raise SystemExit(1)


async def _run_import(path: Path, options: ImportOptions, progress: ProgressBar) -> ImportSummary:
    # The intake loads here, not when `kerbside` starts (see the module's docstring).
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.db import make_engine
    from app.imports.service import import_reports
    from app.jurisdictions.catalog import Catalog

    settings = get_settings()
    engine = make_engine(settings, pool_size=1, parallel_query=True)
    try:
        async with AsyncSession(engine, expire_on_commit=False, autoflush=False) as session:
            with path.open("rb") as stream:
                return await import_reports(
                    session,
                    Catalog(),
                    stream,
                    replace(options, base_url=settings.public_base_url),
                    progress=progress,
                )
    finally:
        await engine.dispose()
