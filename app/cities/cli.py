"""``kerbside city apply FILE`` / ``export SLUG`` / ``schema``: a city as a file.

Registered in ``app.cli.EXTRA_COMMANDS``. ``apply`` prints its plan (``+`` create, ``~``
update, ``-`` deactivate or delete) and the geometry checks on stderr as it goes, and a JSON
summary on stdout at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from app.core.cli import CommandError, open_database
from app.core.errors import KerbsideError
from app.settings import PROJECT_ROOT, get_settings

SCHEMA_PATH = PROJECT_ROOT / "docs" / "city-file.schema.json"


def add_city_commands(sub: Any) -> None:
    """Register ``kerbside city`` (see ``app.cli.EXTRA_COMMANDS``)."""
    city = sub.add_parser(
        "city",
        help="set a city up from a declarative file (apply), or write one (export)",
        description="A city file declares a jurisdiction, its boundary and areas, services, "
        "crews and response templates; see docs/city-file.md.",
    )
    commands = city.add_subparsers(dest="city_command", required=True, metavar="COMMAND")
    apply = commands.add_parser(
        "apply",
        help="validate, plan and apply a city file in one transaction",
        description="Validates everything first, prints the plan, then applies it all or "
        "nothing. Applying the same file again changes nothing.",
    )
    apply.add_argument("file", type=Path, help="a city file (YAML)")
    apply.add_argument(
        "--dry-run", action="store_true", help="validate and print the plan; change nothing"
    )
    apply.add_argument(
        "--reroute-open",
        action="store_true",
        help="when area geometry changed, move open tickets to the area they now lie in",
    )
    apply.set_defaults(run=cmd_apply)
    export = commands.add_parser("export", help="write a jurisdiction as a city file")
    export.add_argument("slug")
    export.add_argument("-o", "--output", type=Path, help="a file (default: standard output)")
    export.set_defaults(run=cmd_export)
    schema = commands.add_parser(
        "schema",
        help=f"write the city file's JSON Schema to {SCHEMA_PATH.relative_to(PROJECT_ROOT)}",
    )
    schema.add_argument("--check", action="store_true", help="fail if the file is out of date")
    schema.set_defaults(run=cmd_schema)


def _say(line: str) -> None:
    print(f"kerbside: {line}", file=sys.stderr, flush=True)


def cmd_apply(args: argparse.Namespace) -> None:
    path: Path = args.file
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}") from exc
    from app.cities import service

    try:
        city = service.load(source, name=str(path))
    except KerbsideError as exc:
        raise CommandError(_problems(exc)) from exc
    resolved = open_database(get_settings())
    try:
        outcome = asyncio.run(_apply(city, path.parent, args.dry_run, args.reroute_open))
    except KerbsideError as exc:
        raise CommandError(_problems(exc)) from exc
    finally:
        resolved.close()
    print(json.dumps(outcome, indent=2, ensure_ascii=False))


def _problems(exc: KerbsideError) -> str:
    lines = [exc.detail]
    errors = exc.errors or []
    if len(errors) > 1:
        lines += [f"  {e['field'] or '(file)'}: {e['message']}" for e in errors]
    return "\n".join(lines)


async def _apply(city: Any, base_dir: Path, dry_run: bool, reroute_open: bool) -> dict[str, Any]:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.cities import service
    from app.db import make_engine

    engine = make_engine(get_settings(), pool_size=1)
    started = time.perf_counter()
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            outcome = await service.apply(
                session,
                city,
                base_dir=base_dir,
                dry_run=dry_run,
                reroute_open=reroute_open,
                say=_say,
            )
            for change in outcome.changes:
                if change.action != "unchanged":
                    _say(f"  {change.line()}")
            for line in outcome.hygiene.lines():
                _say(f"  ! {line}")
            if outcome.open_tickets_to_reroute and not reroute_open:
                _say(
                    f"  ! {outcome.open_tickets_to_reroute} open tickets now lie in another"
                    " area; --reroute-open moves them"
                )
            if dry_run:
                await session.rollback()
        verb = "would change" if dry_run else "changed"
        changed = sum(c.action != "unchanged" for c in outcome.changes)
        _say(
            f"city {city.jurisdiction.slug}: {verb} {changed} of {len(outcome.changes)} objects"
            f" in {time.perf_counter() - started:.1f}s"
        )
        return {**outcome.as_dict(), "seconds": round(time.perf_counter() - started, 2)}
    finally:
        await engine.dispose()


def cmd_export(args: argparse.Namespace) -> None:
    resolved = open_database(get_settings())
    try:
        text = asyncio.run(_export(args.slug))
    except KerbsideError as exc:
        raise CommandError(exc.detail) from exc
    finally:
        resolved.close()
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        _say(f"wrote {args.output}")
    else:
        sys.stdout.write(text)


async def _export(slug: str) -> str:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.cities import service
    from app.db import make_engine

    engine = make_engine(get_settings(), pool_size=1)
    try:
        async with AsyncSession(engine) as session, session.begin():
            return service.dump(await service.export(session, slug))
    finally:
        await engine.dispose()


def schema_text() -> str:
    from app.cities.schema import json_schema

    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def cmd_schema(args: argparse.Namespace) -> None:
    wanted = schema_text()
    if args.check:
        if not SCHEMA_PATH.exists() or SCHEMA_PATH.read_text(encoding="utf-8") != wanted:
            raise CommandError(f"{SCHEMA_PATH} is out of date; run `kerbside city schema`")
        _say(f"{SCHEMA_PATH} matches the code")
        return
    SCHEMA_PATH.write_text(wanted, encoding="utf-8")
    _say(f"wrote {SCHEMA_PATH}")
