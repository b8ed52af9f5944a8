"""Sentiment of a post in -1..1, from the lexicons in ``app.social.lexicons``.

VADER's method, for English, Dutch and Swedish: each lexicon word (or two-word phrase) adds
its valence; a negator within the three words before flips and damps it, an intensifier
right before scales it, both only within the word's clause (a negation reaches the next
punctuation mark, as in Pang, Lee and Vaithyanathan 2002: in "ingenting händer. Värdelöst!"
nothing negates "värdelöst"); after "but" ("maar", "men") words weigh more than before it;
emoji count; exclamation marks amplify. The sum is squashed into -1..1 as VADER does
(x / sqrt(x² + 15)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.social.lexicons import EMOJI, INTENSIFIERS, NEGATORS, SENTIMENT
from app.social.text import fold, stem

NEGATION = -0.74
BUT_WORDS = frozenset({"but", "maar", "men", "however", "echter", "dock"})
ALPHA = 15.0


@dataclass(frozen=True, slots=True)
class _Lexicon:
    words: dict[str, float]  # folded word or stem → valence
    phrases: dict[tuple[str, str], float]
    negators: frozenset[str]
    intensifiers: dict[str, float]


def _build(language: str) -> _Lexicon:
    words: dict[str, float] = {}
    phrases: dict[tuple[str, str], float] = {}
    for entry, valence in SENTIMENT[language].items():
        parts = fold(entry).split()
        if len(parts) == 2:
            phrases[(parts[0], parts[1])] = valence
        elif len(parts) == 1:
            words[parts[0]] = valence
            words.setdefault(stem(parts[0], language), valence)
    return _Lexicon(
        words,
        phrases,
        frozenset(fold(n) for n in NEGATORS[language]),
        {fold(k): v for k, v in INTENSIFIERS[language].items()},
    )


LEXICONS: dict[str, _Lexicon] = {language: _build(language) for language in SENTIMENT}


def vocabulary(language: str) -> frozenset[str]:
    """The lexicon's words (for language detection)."""
    lexicon = LEXICONS[language]
    return frozenset(lexicon.words) | frozenset(w for pair in lexicon.phrases for w in pair)


def _raw_score(
    tokens: Sequence[str], language: str, clause_starts: Sequence[int] = ()
) -> tuple[float, int]:
    lexicon = LEXICONS[language]
    total, hits = 0.0, 0
    weight = 1.0
    clause = 0  # where the current word's clause begins
    starts = iter(clause_starts)
    upcoming = next(starts, None)
    i = 0
    while i < len(tokens):
        while upcoming is not None and upcoming <= i:
            clause, upcoming = upcoming, next(starts, None)
        token = tokens[i]
        if token in BUT_WORDS:
            total *= 0.5  # what came before "but" counts half
            weight = 1.5
            i += 1
            continue
        span = 1
        valence = None
        if i + 1 < len(tokens):
            valence = lexicon.phrases.get((token, tokens[i + 1]))
            span = 2 if valence is not None else 1
        if valence is None:
            valence = lexicon.words.get(token)
            if valence is None:
                valence = lexicon.words.get(stem(token, language))
        if valence is not None:
            hits += 1
            before = tokens[max(clause, i - 3) : i]
            if i > clause and tokens[i - 1] in lexicon.intensifiers:
                boost = lexicon.intensifiers[tokens[i - 1]]
                valence += math.copysign(boost, valence) if valence else 0.0
            if any(b in lexicon.negators for b in before):
                valence *= NEGATION
            total += valence * weight
        i += span
    return total, hits


def score(
    tokens: Sequence[str],
    emoji: Sequence[str],
    raw: str,
    language: str,
    clause_starts: Sequence[int] = (),
) -> float:
    """Sentiment of a post in -1 (angry) .. 1 (delighted); 0 when nothing in it says.
    ``clause_starts``: where each clause after the first begins (``Words.clause_starts``)."""
    languages = [language] if language in LEXICONS else list(LEXICONS)
    # Undetermined language: the lexicon that recognises most words.
    best_total, best_hits = 0.0, 0
    for candidate in languages:
        total, hits = _raw_score(tokens, candidate, clause_starts)
        if hits > best_hits:
            best_total, best_hits = total, hits
    total = best_total
    for mark in emoji:
        total += EMOJI.get(mark, 0.0)
    if total:
        bangs = min(raw.count("!"), 4)
        total += math.copysign(0.292 * bangs, total)
    return max(-1.0, min(1.0, total / math.sqrt(total * total + ALPHA)))
