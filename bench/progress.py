"""What the harness is doing, on stderr, so a ten-minute run is never silent."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_started = time.monotonic()
# On a terminal, progress lines rewrite themselves in place; into a log (CI, `> file`), a
# line each tenth of the way (each 10 s of a timed step) keeps the log readable.
_TTY = sys.stderr.isatty()
_STEP = 10.0
_shown: dict[str, float] = {}


def say(message: str) -> None:
    elapsed = time.monotonic() - _started
    print(f"bench [{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


def percent(label: str, done: int, total: int) -> None:
    """A progress line rewritten in place (a newline once done)."""
    share = 100.0 * done / total if total else 100.0
    line = f"bench          {label}: {share:5.1f}% ({done:,}/{total:,})"
    if _TTY:
        end = "\n" if done >= total else ""
        print(f"\r{line}", end=end, file=sys.stderr, flush=True)
        return
    step = share // _STEP
    if done >= total or step > _shown.get(label, -1.0):
        _shown[label] = step
        print(line, file=sys.stderr, flush=True)
    if done >= total:
        _shown.pop(label, None)


@contextmanager
def countdown(label: str, seconds: float) -> Iterator[None]:
    """Show ``label`` with a per-second % of a timed step (a load test) until the block ends."""
    stop = threading.Event()

    def tick() -> None:
        start = time.monotonic()
        while not stop.wait(1.0 if _TTY else _STEP):
            done = min(time.monotonic() - start, seconds)
            line = f"bench          {label}: {100 * done / seconds:5.1f}% of {seconds:g}s"
            if _TTY:
                print(f"\r{line}", end="", file=sys.stderr, flush=True)
            else:
                print(line, file=sys.stderr, flush=True)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        line = f"bench          {label}: done"
        print(f"\r{line}{' ' * 24}" if _TTY else line, file=sys.stderr, flush=True)
