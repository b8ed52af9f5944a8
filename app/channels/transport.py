"""What every HTTP channel shares: its client (with the channel timeouts) and reading a
provider's ``Retry-After``.

Each adapter owns one ``httpx.AsyncClient`` for its life and closes it in ``close()``.
Clients ignore the environment's proxy variables (``trust_env=False``): a proxy would carry
webhook requests past the private-address guard, and the providers are reached directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from app.core import clock
from app.settings import Settings


def timeouts(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(
        settings.channels_read_timeout_seconds,
        connect=settings.channels_connect_timeout_seconds,
    )


def client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=timeouts(settings),
        trust_env=False,
        follow_redirects=False,  # a redirect could lead anywhere; providers do not redirect
        transport=transport,
        headers={"User-Agent": "Kerbside"},
    )


def retry_after(response: httpx.Response) -> float | None:
    """The provider's ``Retry-After`` in seconds (RFC 9110: seconds or an HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())


def json_object(response: httpx.Response) -> Mapping[str, Any]:
    """The answer's JSON object; empty when it is not one (a proxy's HTML error page)."""
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, Mapping) else {}


def describe(error: httpx.HTTPError) -> str:
    """A short reason for a transport failure, without the URL (webhook URLs may hold tokens)."""
    kind = type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        return f"timeout ({kind})"
    return f"network error ({kind})"


def now_unix() -> int:
    return int(clock.now().timestamp())


def as_utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
