"""What every ``kerbside`` sub-command shares: the error that stops it, its database, progress.

``app.cli`` assembles the command and each domain adds its own sub-commands
(``app.auth.cli``, ``app.imports.cli``); they all import these pieces from here, never from
each other, so the command line has no import cycles.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO

from app.database_setup import DatabaseUnavailable, ResolvedDatabase, resolve_database
from app.embedded import EmbeddedDatabaseError
from app.settings import Settings, get_settings


class CommandError(RuntimeError):
    """A one-line reason to stop, printed without a traceback (``app.cli.main``: exit 2)."""


def open_database(settings: Settings) -> ResolvedDatabase:
    """The database a command works on: ``KERBSIDE_DATABASE_URL``, or the embedded cluster
    (started if need be). Close the result when done."""
    try:
        resolved = resolve_database(settings)
    except (EmbeddedDatabaseError, DatabaseUnavailable) as exc:
        raise CommandError(str(exc)) from exc
    # Children (uvicorn workers, alembic) read the same URL from the environment.
    os.environ["KERBSIDE_DATABASE_URL"] = resolved.url
    get_settings.cache_clear()
    return resolved


MIN_RATE_SECONDS = 1.0


class ProgressBar:
    """Rows done of the total, %, rows/s on stderr: redrawn on a terminal, a line every few
    seconds otherwise (logs, CI). ``label`` says what runs, e.g. ``import file.csv``."""

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else 5.0
        self._base: tuple[float, int] | None = None  # (time, rows done) at the first call
        self._shown_at = 0.0
        self._latest: tuple[int, int] | None = None
        self._shown: tuple[int, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        self._latest = (done, total)
        now = time.monotonic()
        if self._base is None:
            # Rows counted before the first call (a scan's rejections) were not done at a rate.
            self._base = (now, done)
        if now - self._shown_at >= self.every:
            self._shown_at = now
            self._draw(done, total, now)

    def finish(self) -> None:
        """Show the last state (if not shown yet) and end the line; safe to call twice."""
        if self._latest is not None and self._latest != self._shown:
            self._draw(*self._latest, time.monotonic())
        if self.tty and self._shown is not None:
            self.stream.write("\n")
            self.stream.flush()
        self._latest = self._shown = None

    def _draw(self, done: int, total: int, now: float) -> None:
        self._shown = (done, total)
        since, done_then = self._base or (now, done)
        elapsed = now - since
        # No rate until it means something: a second of work, and some rows done in it.
        rate = (done - done_then) / elapsed if elapsed >= MIN_RATE_SECONDS else 0.0
        share = done / total if total else 1.0
        speed = f"{rate:,.0f} rows/s" if rate > 0 else "-- rows/s"
        numbers = f"{done:,}/{total:,} rows {share:6.1%}  {speed}"
        if self.tty:
            width = 28
            filled = round(width * share)
            left = (total - done) / rate if rate > 0 else 0.0
            eta = f"  ETA {int(left // 60)}:{int(left % 60):02d}" if done < total and rate else ""
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r\x1b[K{self.label} [{bar}] {numbers}{eta}")
        else:
            self.stream.write(f"kerbside: {self.label}: {numbers}\n")
        self.stream.flush()
