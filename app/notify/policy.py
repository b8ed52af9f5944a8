"""When a message may go out: the city's quiet hours (in its own time zone) and its hourly
limit per contact, for every channel or per contact kind (the city file's ``notifications``).
Broadcasts are urgent and wait for neither."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def until_quiet_hours_end(quiet: Mapping[str, str], zone: str, now: datetime) -> float | None:
    """Seconds until the quiet hours end, when ``now`` falls inside them; else None."""
    local = now.astimezone(ZoneInfo(zone))
    start, end = _clock(quiet["start"]), _clock(quiet["end"])
    at = local.time()
    inside = start <= at < end if start < end else (at >= start or at < end)
    if not inside:
        return None
    ends = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if ends <= local:
        ends += timedelta(days=1)
    return (ends - local).total_seconds()


def wait_for(
    policy: Mapping[str, Any],
    kind: str,
    zone: str,
    now: datetime,
    *,
    sent_last_hour: int,
    oldest_in_hour: datetime | None,
) -> float | None:
    """Seconds a non-urgent message to a contact of ``kind`` must wait; None: it may go."""
    channel = policy.get("channels", {}).get(kind, {})
    quiet = channel.get("quiet_hours") or policy.get("quiet_hours")
    limit = channel.get("max_per_contact_per_hour") or policy.get("max_per_contact_per_hour")
    waits = []
    if quiet:
        left = until_quiet_hours_end(quiet, zone, now)
        if left is not None:
            waits.append(left)
    if limit and sent_last_hour >= limit and oldest_in_hour is not None:
        waits.append(max((oldest_in_hour + timedelta(hours=1) - now).total_seconds(), 1.0))
    return max(waits) if waits else None
