"""The current time, in one place, so tests can move it (service levels, reopen windows).

A backfill moves it too: the demo seed replays three months of a city through the real
intake and workflow, and code that asks the clock (a "me too", a consent) must see the
moment being replayed, not the moment the seed runs. ``set_to`` does that for one task and
what it awaits (a context variable), never for the rest of the process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_replayed: ContextVar[datetime | None] = ContextVar("kerbside_clock_replayed", default=None)


def now() -> datetime:
    """Timezone-aware UTC now. Tests monkeypatch this function."""
    return _replayed.get() or datetime.now(UTC)


@contextmanager
def set_to(at: datetime) -> Iterator[None]:
    """Inside the block, ``now()`` answers ``at`` (timezone-aware) in this task only."""
    if at.tzinfo is None:
        raise ValueError("the clock is set to timezone-aware times only")
    token = _replayed.set(at)
    try:
        yield
    finally:
        _replayed.reset(token)
