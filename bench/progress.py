"""What the harness is doing, on stderr, so a ten-minute run is never silent."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_started = time.monotonic()


def say(message: str) -> None:
    elapsed = time.monotonic() - _started
    print(f"bench [{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


def percent(label: str, done: int, total: int) -> None:
    """A progress line rewritten in place (a newline once done)."""
    share = 100.0 * done / total if total else 100.0
    end = "\n" if done >= total else ""
    print(f"\rbench          {label}: {share:5.1f}% ({done:,}/{total:,})", end=end, file=sys.stderr)
    sys.stderr.flush()


@contextmanager
def countdown(label: str, seconds: float) -> Iterator[None]:
    """Show ``label`` with a per-second % of a timed step (a load test) until the block ends."""
    stop = threading.Event()

    def tick() -> None:
        start = time.monotonic()
        while not stop.wait(1.0):
            done = min(time.monotonic() - start, seconds)
            print(
                f"\rbench          {label}: {100 * done / seconds:5.1f}% of {seconds:g}s",
                end="",
                file=sys.stderr,
                flush=True,
            )

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        print(f"\rbench          {label}: done{' ' * 24}", file=sys.stderr, flush=True)
