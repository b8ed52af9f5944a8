"""The current time, in one place, so tests can move it (service levels, reopen windows)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """Timezone-aware UTC now. Tests monkeypatch this function."""
    return datetime.now(UTC)
