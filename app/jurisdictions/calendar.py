"""A jurisdiction's working hours and closed dates, for deadlines counted in business time.

Read from the jurisdiction's ``timezone``, ``business_hours`` and ``holidays``; the service
levels (``app.tickets.sla``) count their deadlines with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours per weekday in the jurisdiction's local time, and closed dates."""

    tz: ZoneInfo
    hours: tuple[tuple[tuple[time, time], ...], ...]  # index 0 = Monday
    holidays: frozenset[date] = frozenset()

    @classmethod
    def parse(
        cls, timezone: str, hours: Mapping[str, Sequence[Sequence[str]]], holidays: Sequence[date]
    ) -> BusinessCalendar:
        """From the jurisdiction's ``business_hours`` JSON ({"mon": [["08:00", "18:00"]]})."""
        days: list[tuple[tuple[time, time], ...]] = []
        for name in _DAYS:
            spans = []
            for start, end in hours.get(name, ()):
                a, b = time.fromisoformat(start), time.fromisoformat(end)
                if b <= a:
                    raise ValueError(f"business_hours {name}: {start}-{end} ends before it starts")
                spans.append((a, b))
            days.append(tuple(sorted(spans)))
        if not any(days):
            raise ValueError("business_hours: no working time in the week")
        return cls(ZoneInfo(timezone), tuple(days), frozenset(holidays))

    def add(self, start: datetime, span: timedelta) -> datetime:
        """``start`` plus ``span`` of working time (UTC in, UTC out)."""
        left = span
        local = start.astimezone(self.tz)
        day = local.date()
        for _ in range(3660):  # ten years of days: a closed calendar cannot loop forever
            if day not in self.holidays:
                for a, b in self.hours[day.weekday()]:
                    open_at = datetime.combine(day, a, self.tz)
                    close_at = datetime.combine(day, b, self.tz)
                    begin = max(open_at, local)
                    if begin >= close_at:
                        continue
                    available = close_at - begin
                    if left <= available:
                        return (begin + left).astimezone(UTC)
                    left -= available
            day += timedelta(days=1)
            local = datetime.combine(day, time.min, self.tz)
        raise ValueError("business_hours: deadline more than ten years away")
