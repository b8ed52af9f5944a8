"""Is a post a report, and of which service? A MINIMAL placeholder with the classifier's
interface: a service's hashtag (from the city file) names it, else one of its keywords; no
language detection and no sentiment. The real classifier (languages, sentiment, the
communications queue's rules, a model trained on the city's history) replaces this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class Classification:
    is_report: bool
    service_code: str | None
    confidence: float  # 0..1
    language: str  # "en" | "nl" | "sv" | ... | "und"
    sentiment: float  # -1..1
    sensitive: bool  # political / non-administrative: communications queue, never a ticket
    reason: str | None  # why not a report, or why sensitive


_HASHTAG = re.compile(r"#(\w+)", re.UNICODE)


class Classifier:
    def __init__(self, hashtags: dict[str, str], keywords: list[tuple[str, str]]) -> None:
        self._hashtags = hashtags  # lower-cased tag → service code
        self._keywords = keywords  # (lower-cased keyword, service code), longest first

    def classify(self, text: str) -> Classification:
        lowered = text.lower()
        for tag in _HASHTAG.findall(lowered):
            code = self._hashtags.get(tag)
            if code is not None:
                return Classification(True, code, 0.9, "und", 0.0, False, None)
        for keyword, code in self._keywords:
            if keyword in lowered:
                return Classification(True, code, 0.6, "und", 0.0, False, None)
        return Classification(False, None, 0.0, "und", 0.0, False, "no service named")


_SERVICES = text(
    "SELECT code, keywords, hashtags FROM service WHERE jurisdiction_id = :j AND active"
    " ORDER BY code"
)


async def classifier_for(session: AsyncSession, jurisdiction_id: int) -> Classifier:
    hashtags: dict[str, str] = {}
    keywords: list[tuple[str, str]] = []
    for row in await session.execute(_SERVICES, {"j": jurisdiction_id}):
        for tags in (row.hashtags or {}).values():
            for tag in tags:
                hashtags.setdefault(tag.lower().lstrip("#"), row.code)
        for words in (row.keywords or {}).values():
            keywords.extend((word.lower(), row.code) for word in words)
    keywords.sort(key=lambda pair: -len(pair[0]))
    return Classifier(hashtags, keywords)
