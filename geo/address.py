"""Street addresses as comparable keys, for the ``same_address`` duplicate rule.

A call centre types (or a geocoder returns) one place in many spellings: ``16815 W Vanowen
Street, 91406``, ``16815 WEST VANOWEN ST.``, ``16815 w. vanowen st apt 4``. The duplicate rule
compares two keys made from the text alone:

- the **address key**: house number, directional, street name and type, unit and everything
  after the first comma (city, state, postcode) dropped: ``16815 W VANOWEN ST``. An
  intersection (``A AT B``, ``A & B``, ``A and B``, ``A / B``) keys as its two streets in
  alphabetical order joined by `` & ``, so ``B AT A`` is the same place;
- the **street key**: the street alone, without house number or directional: ``VANOWEN ST``.
  For an intersection it is the address key itself (an intersection lies on two streets; we
  do not guess which one the report is about).

Normalisation, in order: upper case; cut at the first comma; ``#``/``APT``/``UNIT``/``STE``/
``SUITE``/``FL``/``RM``/``BLDG`` and what follows dropped; a trailing 5-digit (or ZIP+4)
postcode dropped; ``.`` and ``'`` removed, other punctuation a space; whitespace collapsed;
then each word through one table: street types to their USPS abbreviation (STREET → ST,
AVENUE/AV → AVE, BOULEVARD → BLVD, …), directionals to one or two letters (WEST → W,
NORTHEAST → NE), ordinal words to numbers (FIRST → 1ST … TENTH → 10TH), SAINT → ST. The table
is applied to every word, so both sides of a comparison are treated alike even where a word is
ambiguous (``ST`` for street and saint). A text with no letters keys as nothing.

Changing these rules changes stored keys: a migration must recompute ``ticket.address_key``
and ``ticket.street_key`` (see migration 0010).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_WORDS: dict[str, str] = {
    # Street types (USPS Publication 28 abbreviations, the common ones).
    "STREET": "ST",
    "STR": "ST",
    "AVENUE": "AVE",
    "AV": "AVE",
    "AVN": "AVE",
    "BOULEVARD": "BLVD",
    "BOUL": "BLVD",
    "ROAD": "RD",
    "DRIVE": "DR",
    "PLACE": "PL",
    "LANE": "LN",
    "COURT": "CT",
    "TERRACE": "TER",
    "PARKWAY": "PKWY",
    "HIGHWAY": "HWY",
    "CIRCLE": "CIR",
    "SQUARE": "SQ",
    "TRAIL": "TRL",
    "ALLEY": "ALY",
    "EXPRESSWAY": "EXPY",
    "FREEWAY": "FWY",
    "CRESCENT": "CRES",
    # Directionals.
    "NORTH": "N",
    "SOUTH": "S",
    "EAST": "E",
    "WEST": "W",
    "NORTHEAST": "NE",
    "NORTHWEST": "NW",
    "SOUTHEAST": "SE",
    "SOUTHWEST": "SW",
    # Ordinal street names.
    "FIRST": "1ST",
    "SECOND": "2ND",
    "THIRD": "3RD",
    "FOURTH": "4TH",
    "FIFTH": "5TH",
    "SIXTH": "6TH",
    "SEVENTH": "7TH",
    "EIGHTH": "8TH",
    "NINTH": "9TH",
    "TENTH": "10TH",
    "SAINT": "ST",
}
_DIRECTIONALS = frozenset({"N", "S", "E", "W", "NE", "NW", "SE", "SW"})
_UNIT = re.compile(r"(?:\s#|\s(?:APT|APARTMENT|UNIT|STE|SUITE|FL|FLOOR|RM|ROOM|BLDG)\b).*$")
_POSTCODE = re.compile(r"\s\d{5}(?:-\d{4})?$")
_INTERSECTION = re.compile(r"\s(?:AT|AND|&|/)\s")
_HOUSE_NUMBER = re.compile(r"^\d+[A-Z]?(?:-\d+[A-Z]?)?$")
_FRACTION = re.compile(r"^\d+/\d+$")


@dataclass(frozen=True)
class AddressKey:
    """What the ``same_address`` rule compares: the whole address and its street."""

    address: str
    street: str


def address_key(text: str | None) -> AddressKey | None:
    """The comparable keys of an address text, or None when it names no street."""
    if not text:
        return None
    line = text.upper().split(",", 1)[0]
    # `&`, `/` and `#` are words here; every other punctuation mark separates words.
    line = re.sub(r"[.']", "", line)
    line = re.sub(r"([&#])|(?<!\d)/|/(?!\d)", lambda m: f" {m.group(0)} ", line)
    line = re.sub(r"[^A-Z0-9&/#-]+", " ", line)
    line = " " + " ".join(line.split())
    line = _UNIT.sub("", line)
    line = _POSTCODE.sub("", line).strip()
    found = (_street(p) for p in _INTERSECTION.split(f" {line} ") if p.strip())
    parts = [p for p in found if p is not None]
    if not parts:
        return None
    if len(parts) > 1:
        names = sorted({" ".join(words) for _, words in parts})
        key = " & ".join(names)
        return AddressKey(key, key)
    number, words = parts[0]
    street = " ".join([w for w in words if w not in _DIRECTIONALS] or words)
    return AddressKey(" ".join([number, *words] if number else words), street)


def _street(part: str) -> tuple[str | None, list[str]] | None:
    """(house number, normalised words) of one street part, or None without letters."""
    words = [_WORDS.get(w, w) for w in part.split() if w not in ("-", "#")]
    number = None
    if len(words) > 1 and _HOUSE_NUMBER.match(words[0]):
        number, words = words[0], words[1:]
        if len(words) > 1 and _FRACTION.match(words[0]):  # 12 1/2 MAIN ST
            number, words = f"{number} {words[0]}", words[1:]
    if not any(c.isalpha() for w in words for c in w):
        return None
    return number, words


def lock_key(street: str) -> int:
    """A signed 32-bit advisory-lock key for a street key (collisions only cost a wait)."""
    h = zlib.crc32(b"street:" + street.encode())
    return h - 2**32 if h >= 2**31 else h
