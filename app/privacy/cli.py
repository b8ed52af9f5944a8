"""``kerbside privacy anonymise``: the retention job by hand, with progress.

Registered in ``app.cli.EXTRA_COMMANDS``. Does what the daily job ``drop_expired_personal_data``
does (``app.privacy.service``) and prints the counts as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from typing import Any

from app.core import clock
from app.core.cli import ProgressBar, open_database
from app.privacy.service import Dropped, drop_expired_personal_data
from app.settings import get_settings


def add_privacy_commands(sub: Any) -> None:
    """Register ``kerbside privacy`` (see ``app.cli.EXTRA_COMMANDS``)."""
    privacy = sub.add_parser("privacy", help="personal data retention (docs/privacy.md)")
    commands = privacy.add_subparsers(dest="privacy_command", required=True)
    anonymise = commands.add_parser(
        "anonymise",
        help="drop contacts, reporter names and consent evidence from tickets closed longer "
        "ago than the retention period",
        description="Runs the daily retention job now. Tickets closed more than "
        "KERBSIDE_PRIVACY_CONTACT_RETENTION_DAYS days ago (or the city file's "
        "privacy.contact_retention_days) lose what ties them to people; the tickets, reports "
        "and public timelines stay. Running it again drops nothing twice.",
    )
    anonymise.add_argument(
        "--batch-size", type=int, help="tickets per transaction (KERBSIDE_PRIVACY_BATCH_SIZE)"
    )
    anonymise.set_defaults(run=cmd_anonymise)


def cmd_anonymise(args: argparse.Namespace) -> None:
    resolved = open_database(get_settings())
    bar = ProgressBar("anonymise closed tickets")
    try:
        dropped = asyncio.run(_run(args.batch_size, bar))
    finally:
        resolved.close()
        bar.finish()
    print(json.dumps(asdict(dropped), indent=2))


async def _run(batch_size: int | None, bar: ProgressBar) -> Dropped:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.db import make_engine

    settings = get_settings()
    engine = make_engine(settings, pool_size=1)
    try:
        return await drop_expired_personal_data(
            async_sessionmaker(engine, expire_on_commit=False, autoflush=False),
            now=clock.now(),
            default_days=settings.privacy_contact_retention_days,
            batch=batch_size or settings.privacy_batch_size,
            progress=bar,
        )
    finally:
        await engine.dispose()
