"""What a city's file tells the classifier: per service its names, keywords and hashtags per
language; the city's sensitive terms; and where its own history of reports is.

Read in SQL by table name (``service``, ``jurisdiction``, ``report``, ``ticket``) like the
other domains' facts: ``app.social`` sits beside the readers of tickets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

DEFAULT_REPORT_THRESHOLD = 0.5
HISTORY_LIMIT = 50_000  # the latest descriptions train the model; older ones add little


@dataclass(frozen=True, slots=True)
class ServiceWords:
    code: str
    names: Mapping[str, str] = field(default_factory=dict)
    keywords: Mapping[str, list[str]] = field(default_factory=dict)
    hashtags: Mapping[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The city file's words for the classifier (``services[].keywords``,
    ``services[].hashtags``, ``classify``)."""

    services: tuple[ServiceWords, ...] = ()
    languages: tuple[str, ...] = ("en",)
    sensitive: Mapping[str, list[str]] = field(default_factory=dict)
    builtin_sensitive: bool = True
    report_threshold: float = DEFAULT_REPORT_THRESHOLD
    identity: str = ""  # which jurisdiction row (its creation time): ids can be reused

    def fingerprint(self) -> str:
        """Changes whenever anything the classifier reads from the file changes."""
        data = {
            "services": [
                [s.code, dict(s.names), dict(s.keywords), dict(s.hashtags)] for s in self.services
            ],
            "languages": list(self.languages),
            "sensitive": dict(self.sensitive),
            "builtin": self.builtin_sensitive,
            "threshold": self.report_threshold,
            "identity": self.identity,
        }
        encoded = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]


def vocabulary_of(
    services: list[Any],
    languages: list[str],
    settings: Mapping[str, Any] | None,
    identity: str = "",
) -> Vocabulary:
    """A vocabulary from ``service`` rows (or objects with the same fields) and the
    jurisdiction's ``classify`` settings."""
    settings = settings or {}
    return Vocabulary(
        services=tuple(
            ServiceWords(
                code=s.code,
                names=dict(s.names or {}),
                keywords={k: list(v) for k, v in (s.keywords or {}).items()},
                hashtags={k: list(v) for k, v in (s.hashtags or {}).items()},
            )
            for s in sorted(services, key=lambda s: s.code)
        ),
        languages=tuple(languages or ["en"]),
        sensitive={k: list(v) for k, v in (settings.get("sensitive") or {}).items()},
        builtin_sensitive=bool(settings.get("builtin_sensitive", True)),
        report_threshold=float(settings.get("report_threshold", DEFAULT_REPORT_THRESHOLD)),
        identity=identity,
    )


async def load_vocabulary(session: AsyncSession, jurisdiction_id: int) -> Vocabulary | None:
    """The jurisdiction's vocabulary (active services only); None when it does not exist."""
    row = (
        await session.execute(
            text("SELECT languages, classify, created_at FROM jurisdiction WHERE id = :j"),
            {"j": jurisdiction_id},
        )
    ).first()
    if row is None:
        return None
    services = (
        await session.execute(
            text(
                "SELECT code, names, keywords, hashtags FROM service"
                " WHERE jurisdiction_id = :j AND active ORDER BY code"
            ),
            {"j": jurisdiction_id},
        )
    ).all()
    return vocabulary_of(
        list(services), list(row.languages), row.classify, row.created_at.isoformat()
    )


async def history_fingerprint(session: AsyncSession, jurisdiction_id: int) -> str:
    """Changes when reports with a description are added, or a ticket changes service."""
    row = (
        await session.execute(
            text(
                "SELECT count(*) AS n, coalesce(max(r.id), 0) AS last,"
                " coalesce(sum(t.service_id), 0) AS services"
                " FROM report r JOIN ticket t ON t.id = r.ticket_id"
                " WHERE r.jurisdiction_id = :j AND r.description IS NOT NULL"
            ),
            {"j": jurisdiction_id},
        )
    ).one()
    return f"{row.n}:{row.last}:{row.services}"


async def history(
    session: AsyncSession, jurisdiction_id: int, limit: int = HISTORY_LIMIT
) -> list[tuple[str, str]]:
    """The latest report descriptions and the service of their ticket (staff's correction
    of a report's category is the label), active services only."""
    rows = await session.execute(
        text(
            "SELECT r.description, s.code FROM report r"
            " JOIN ticket t ON t.id = r.ticket_id JOIN service s ON s.id = t.service_id"
            " WHERE r.jurisdiction_id = :j AND r.description IS NOT NULL AND s.active"
            " AND length(r.description) >= 3"
            " ORDER BY r.id DESC LIMIT :limit"
        ),
        {"j": jurisdiction_id, "limit": limit},
    )
    return [(row.description, row.code) for row in rows]
