"""What one text says as talk: its language, its mood and the terms trends count.

Pure: the classifier's own pieces (``app.social``: folding, language, sentiment, stems), so a
report's description and a post are read alike, offline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from app.social import language as languages
from app.social import sentiment
from app.social.text import STEM_LANGUAGES, read, stem

MIN_TERM = 3  # letters: shorter words are noise in a trend ("ok", "nr")
MAX_TERMS = 40  # per text: a long text does not outweigh many short ones
# Words every report uses whatever it is about: never a trend.
_REPORT_WORDS = """
    again already broken fix fixed hello help here mijn melding near please problem report
    reported still street there today weer kapot graag hallo hej tack snalla gata straat
    fortfarande trasig
"""
REPORT_WORDS = frozenset(_REPORT_WORDS.split())


@dataclass(frozen=True, slots=True)
class Reading:
    language: str  # "en" | "nl" | "sv" | ... | "und"
    sentiment: float | None  # -1..1; None when the text has no words at all
    terms: tuple[str, ...]  # stems without stop words, then "#hashtags"


@cache
def _vocabulary() -> Mapping[str, frozenset[str]]:
    return {language: sentiment.vocabulary(language) for language in sentiment.LEXICONS}


@cache
def _stop(language: str) -> frozenset[str]:
    words = set(REPORT_WORDS)
    for other in ("en", "nl", "sv") if language == languages.UNDETERMINED else (language,):
        words |= languages.stop_words(other)
    return frozenset(words)


def read_text(text: str | None, prefer: Iterable[str] = ()) -> Reading:
    """Language, sentiment and trend terms of ``text`` (a description or a post)."""
    if not text or not text.strip():
        return Reading(languages.UNDETERMINED, None, ())
    words = read(text)
    language = languages.detect(words.tokens, words.raw, tuple(prefer), _vocabulary())
    mood = sentiment.score(words.tokens, words.emoji, words.raw, language, words.clause_starts)
    stop = _stop(language)
    stems_of = language if language in STEM_LANGUAGES else None
    seen: dict[str, None] = {}
    for token in words.tokens:
        if len(token) < MIN_TERM or not token.isalpha() or token in stop:
            continue
        term = stem(token, stems_of) if stems_of else token
        if term not in stop:
            seen[term] = None
    for tag in words.hashtags:
        seen[f"#{tag}"] = None
    terms = tuple(seen)[:MAX_TERMS]
    return Reading(language, round(mood, 3), terms)
