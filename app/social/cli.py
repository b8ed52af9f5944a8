"""``kerbside social classify --jurisdiction SLUG FILE``: the classifier on a file of texts.

Registered in ``app.cli.EXTRA_COMMANDS``. Reads one text per line, or one column of a CSV
(``--column NAME``, or its 1-based number with ``--no-header``), and prints one JSON line per
text as it goes (``is_report``, ``service_code``, ``confidence``, ``language``, ``sentiment``,
``sensitive``, ``reason``). Progress goes to stderr. Other ``social`` sub-commands join
``SOCIAL_COMMANDS``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from app.core.cli import CommandError, ProgressBar, open_database
from app.settings import get_settings

BATCH = 500


def add_social_commands(sub: Any) -> None:
    """Register ``kerbside social`` (see ``app.cli.EXTRA_COMMANDS``)."""
    social = sub.add_parser(
        "social",
        help="posts that tag the city: classify texts",
        description="Social intake tools; see docs/social.md.",
    )
    commands = social.add_subparsers(dest="social_command", required=True, metavar="COMMAND")
    for add in SOCIAL_COMMANDS:
        add(commands)


def add_classify_command(commands: Any) -> None:
    classify = commands.add_parser(
        "classify",
        help="classify texts as the social intake would: one JSON line per text",
        description="Reads texts (one per line, or one CSV column) and prints, per text, "
        "is_report, service_code, confidence, language, sentiment, sensitive and reason, with "
        "the jurisdiction's vocabulary and the model trained on its history.",
    )
    classify.add_argument("file", help="a text or CSV file; - for standard input")
    classify.add_argument("--jurisdiction", required=True, metavar="SLUG")
    classify.add_argument(
        "--column", help="the CSV column holding the text (a 1-based number with --no-header)"
    )
    classify.add_argument(
        "--no-header", action="store_true", help="the CSV has no header row (needs --column N)"
    )
    classify.set_defaults(run=cmd_classify)


SOCIAL_COMMANDS: list[Callable[[Any], None]] = [add_classify_command]


def texts(stream: IO[str], column: str | None, header: bool) -> Iterator[str]:
    """The texts of ``stream``: its lines, or one column of it read as CSV."""
    if column is None:
        for line in stream:
            yield line.rstrip("\r\n")
        return
    reader = csv.reader(stream)
    if header:
        names = next(reader, None)
        if names is None:
            return
        if column not in names:
            raise CommandError(f"no column {column!r}; the header has: {', '.join(names)}")
        index = names.index(column)
    else:
        if not column.isdigit() or int(column) < 1:
            raise CommandError("with --no-header, --column is the column's number (1, 2, …)")
        index = int(column) - 1
    for row in reader:
        yield row[index] if index < len(row) else ""


def cmd_classify(args: argparse.Namespace) -> None:
    if args.no_header and args.column is None:
        raise CommandError("--no-header needs --column N")
    stdin = args.file == "-"
    path = Path(args.file)
    if not stdin and not path.is_file():
        raise CommandError(f"{path}: no such file")
    resolved = open_database(get_settings())
    try:
        classifier = asyncio.run(_classifier(args.jurisdiction))
    finally:
        resolved.close()
    total = 0 if stdin else _count_lines(path)
    progress = ProgressBar(f"classify {path.name if not stdin else 'stdin'}")
    out = sys.stdout
    done = 0
    with (
        sys.stdin if stdin else path.open(encoding="utf-8", errors="replace", newline="")
    ) as stream:
        for text in texts(stream, args.column, header=not args.no_header):
            out.write(json.dumps(classifier.classify(text).as_dict(), ensure_ascii=False) + "\n")
            done += 1
            if done % BATCH == 0:
                out.flush()
                if total:
                    progress(done, max(total, done))
    out.flush()
    if total and done >= BATCH:
        progress(done, max(total, done))
        progress.finish()


def _count_lines(path: Path) -> int:
    with path.open("rb") as raw:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: raw.read(2**20), b""))


async def _classifier(slug: str) -> Any:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.db import make_engine
    from app.social.classify import classifier_for

    engine = make_engine(get_settings(), pool_size=1)
    try:
        async with AsyncSession(engine) as session:
            jurisdiction_id = (
                await session.execute(
                    text("SELECT id FROM jurisdiction WHERE slug = :slug"), {"slug": slug}
                )
            ).scalar_one_or_none()
            if jurisdiction_id is None:
                raise CommandError(f"no jurisdiction {slug!r}")
            return await classifier_for(session, jurisdiction_id)
    finally:
        await engine.dispose()
