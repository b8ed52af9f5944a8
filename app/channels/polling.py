"""What a poll of a social platform returns, and reading its rate-limit answers.

A poll never raises for the platform's answer (as a channel's ``deliver`` does not): it hands
back the posts it got, the cursor to pass next time, and, when the platform said to wait
(429, or the remaining budget at zero), how long. The caller stores the cursor only after it
has stored the posts, so a crash in between re-reads them (the pipeline dedupes on post id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from app.channels import transport
from app.channels.posts import InboundPost
from app.core import clock


@dataclass(frozen=True)
class Polled:
    posts: tuple[InboundPost, ...]
    cursor: str | None  # where the next poll starts; unchanged when nothing new came
    wait_seconds: float | None = None  # do not poll this account again before
    error: str | None = None  # why the poll stopped early (never holds a token)


def seconds_until(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - clock.now()).total_seconds())


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 time (``Z`` or an offset, as platforms write them), or epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        # Graph API writes offsets without a colon ("+0000"); 3.11's fromisoformat wants one.
        if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
            try:
                moment = datetime.fromisoformat(text[:-2] + ":" + text[-2:])
            except ValueError:
                return None
        else:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def wait_from(response: httpx.Response, reset_header: str) -> float | None:
    """How long the platform asks us to wait: ``Retry-After``, else its reset header."""
    after = transport.retry_after(response)
    if after is not None:
        return after
    reset = parse_time(response.headers.get(reset_header))
    return seconds_until(reset) if reset is not None else None
