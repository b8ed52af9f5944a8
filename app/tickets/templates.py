"""Response templates: the public note that goes with a status change, per service and language.

Staff write them once per (service or every service, status, language) with placeholders:
``{reference}``, ``{service}``, ``{status}``, ``{expected_date}``, ``{area}``,
``{jurisdiction}``. A status change without a note of its own uses the service's template,
else the jurisdiction-wide one; the event keeps the text in every language the jurisdiction
speaks, so each reporter can be answered in theirs.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

PLACEHOLDERS = frozenset(
    {"reference", "service", "status", "expected_date", "area", "jurisdiction"}
)

_FIND = text(
    """
    SELECT DISTINCT ON (language) id, language, body
    FROM response_template
    WHERE jurisdiction_id = :jurisdiction_id AND status = :status
      AND (service_id = :service_id OR service_id IS NULL)
    ORDER BY language, service_id NULLS LAST
    """
)


def unknown_placeholders(body: str) -> list[str]:
    """Placeholders in ``body`` that rendering would not fill (also malformed braces)."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(body) if name is not None]
    except ValueError as exc:
        return [f"malformed: {exc}"]
    return sorted({n for n in names if n not in PLACEHOLDERS})


def render(body: str, values: Mapping[str, str]) -> str:
    return body.format_map({k: values.get(k, "") for k in PLACEHOLDERS})


def placeholder_values(ticket: Any, status: str, language: str) -> dict[str, str]:
    """The values for one ticket (a row of ``repository.LOCK_TICKET``) after a change."""
    names: dict[str, str] = ticket.service_names or {}
    expected = ticket.scheduled_for or ticket.resolve_due_at
    return {
        "reference": ticket.reference,
        "service": names.get(language) or names.get("en") or ticket.service_code,
        "status": status.replace("_", " "),
        "expected_date": _local_date(expected, ticket.timezone),
        "area": ticket.area_name or "",
        "jurisdiction": ticket.jurisdiction_name,
    }


async def rendered_notes(
    session: AsyncSession, ticket: Any, status: str, *, values_for: Any = placeholder_values
) -> tuple[int | None, dict[str, str]]:
    """The template used (its id in the main language) and its text in every language."""
    rows = (
        await session.execute(
            _FIND,
            {
                "jurisdiction_id": ticket.jurisdiction_id,
                "service_id": ticket.service_id,
                "status": status,
            },
        )
    ).all()
    notes = {r.language: render(r.body, values_for(ticket, status, r.language)) for r in rows}
    main = _main_language(ticket.languages, notes)
    template_id = next((r.id for r in rows if r.language == main), None)
    return template_id, notes


def main_note(languages: list[str] | None, notes: Mapping[str, str]) -> str | None:
    main = _main_language(languages, notes)
    return notes.get(main) if main else None


def _main_language(languages: list[str] | None, notes: Mapping[str, str]) -> str | None:
    for language in [*(languages or []), "en"]:
        if language in notes:
            return language
    return next(iter(sorted(notes)), None)


def _local_date(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(timezone)).date().isoformat()
