"""Words of a post, the same way for the city's vocabulary and for the posts themselves.

Folding: Unicode NFKC, case folded, diacritics removed (``Straße`` → ``strasse``, ``gör`` →
``gor``), bidirectional and zero-width marks dropped (right-to-left text keeps its letters).
Emoji are not letters: tokens skip them, ``emoji()`` finds them for the sentiment.
Stemming is light suffix stripping per language, enough that ``kuilen`` meets ``kuil`` and
``gatorna`` meets ``gata``; it is not linguistics, and both sides are stemmed alike.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Bidi controls, zero-width (non-)joiners, word joiner, BOM: invisible, and they split words.
_INVISIBLE = dict.fromkeys(
    (0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF, *range(0x202A, 0x202F))
)
_INVISIBLE.update(dict.fromkeys(range(0x2066, 0x206A)))
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@\w+")
_HASHTAG = re.compile(r"(?<![\w#])#(\w+)")
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_EMOJI = re.compile(
    "[\U0001f300-\U0001faff\u2600-\u27bf\u2b50\u2b55\u203c\u2049\u2122\u2139\u2194-\u21aa]"
)
# What ends a clause between two words (a URL or mention removed leaves a space, not this).
_CLAUSE_END = re.compile(r"[.,:;!?\n\u2026]")
MAX_CHARS = 5_000  # a post longer than this is read up to here (a report is never an essay)


def fold(value: str) -> str:
    """Case-folded, without diacritics or invisible marks: what matching compares."""
    if value.isascii():
        return value[:MAX_CHARS].lower()
    value = unicodedata.normalize("NFKC", value[:MAX_CHARS]).translate(_INVISIBLE).casefold()
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    # Letters NFKD does not split: Scandinavian ø/æ, German ß (casefold made it "ss").
    return stripped.replace("ø", "o").replace("æ", "ae").replace("đ", "d").replace("ł", "l")


@dataclass(frozen=True, slots=True)
class Words:
    """A post read once: its folded words (no URLs, mentions or hashtag marks), its hashtags."""

    tokens: tuple[str, ...]
    hashtags: tuple[str, ...]
    emoji: tuple[str, ...]
    raw: str
    # Where each clause after the first begins (indexes into ``tokens``): a negation's reach
    # ends at the clause's punctuation (``app.social.sentiment``).
    clause_starts: tuple[int, ...] = ()


def read(text: str) -> Words:
    """Split ``text`` into folded words, hashtags (folded, without ``#``) and emoji."""
    clipped = text[:MAX_CHARS]
    emoji = tuple(_EMOJI.findall(clipped))
    cleaned = _MENTION.sub(" ", _URL.sub(" ", clipped))
    folded = fold(cleaned)
    hashtags = tuple(_HASHTAG.findall(folded))
    # A hashtag's word counts as a word of the text too ("#pothole on Main St").
    words = folded.replace("#", " ")
    tokens: list[str] = []
    starts: list[int] = []
    end = 0
    for match in _WORD.finditer(words):
        if tokens and _CLAUSE_END.search(words, end, match.start()):
            starts.append(len(tokens))
        tokens.append(match[0].replace("\u2019", "'"))
        end = match.end()
    return Words(
        tokens=tuple(tokens),
        hashtags=hashtags,
        emoji=emoji,
        raw=clipped,
        clause_starts=tuple(starts),
    )


# -- stemming ---------------------------------------------------------------------------------

_SUFFIXES: dict[str, tuple[str, ...]] = {
    # Longest first; a stem keeps at least three letters.
    "en": (
        "ational",
        "ations",
        "ation",
        "ments",
        "ingly",
        "ness",
        "ment",
        "ings",
        "ing",
        "ies",
        "ied",
        "ers",
        "est",
        "ed",
        "er",
        "ly",
        "'s",
        "s",
    ),
    "nl": (
        "heden",
        "ingen",
        "ische",
        "heid",
        "etje",
        "tjes",
        "lijk",
        "ende",
        "isch",
        "jes",
        "tje",
        "ing",
        "ste",
        "en",
        "de",
        "te",
        "je",
        "er",
        "es",
        "e",
        "s",
    ),
    "sv": (
        "heterna",
        "heten",
        "arnas",
        "ernas",
        "ornas",
        "arna",
        "erna",
        "orna",
        "ande",
        "ende",
        "aste",
        "ades",
        "are",
        "ast",
        "het",
        "ade",
        "ens",
        "ets",
        "an",
        "ar",
        "er",
        "or",
        "en",
        "et",
        "na",
        "as",
        "es",
        "at",
        "a",
        "e",
        "s",
    ),
}
_DOUBLE_END = re.compile(r"([bdfgklmnprst])\1$")
_DOUBLE_VOWEL = re.compile(r"([aeou])\1")
MIN_STEM = 3


@lru_cache(maxsize=2**16)  # words repeat: half of the classifier's time was stemming
def stem(word: str, language: str) -> str:
    """A light stem of a folded word: ``kuilen``/``kuil``, ``lights``/``light``."""
    suffixes = _SUFFIXES.get(language)
    if suffixes is None or len(word) <= MIN_STEM or not word.isalpha():
        return word
    if language == "en" and word.endswith(("ies", "ied")) and len(word) > MIN_STEM + 2:
        return word[:-3] + "i"
    for suffix in suffixes:
        if word.endswith(suffix) and len(word) - len(suffix) >= MIN_STEM:
            word = word[: -len(suffix)]
            break
    # "lekken" → "lekk" → "lek"; "hoppade" → "hopp" → "hop": one spelling per stem.
    if _DOUBLE_END.search(word) and len(word) > MIN_STEM + 1:
        word = word[:-1]
    if language == "en":
        # "pothole"/"potholes", "battery"/"batteries": one stem each.
        if word.endswith("i") or word.endswith("y"):
            word = word[:-1] + "i"
        elif word.endswith("e") and len(word) > MIN_STEM + 1:
            word = word[:-1]
    if language == "nl":
        # Dutch doubles a vowel in closed syllables only: "straat", "straten" → "strat".
        word = _DOUBLE_VOWEL.sub(r"\1", word)
    return word


def stems(tokens: tuple[str, ...] | list[str], language: str) -> list[str]:
    return [stem(t, language) for t in tokens]


STEM_LANGUAGES = tuple(_SUFFIXES)
