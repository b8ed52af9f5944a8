"""Where a post is about, in order: exact coordinates on the post; a place the platform
attached whose box is small enough (a city-sized place is no location); an address or street
named in the text, through a geocoder (an HTTP Nominatim/Photon-compatible service, and the
local gazetteer of the city file's street list); else nothing, and we ask the author.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from app.channels.posts import InboundPost
from app.reports.models import LocationSource
from app.settings import Settings
from geo.distance import haversine_m


@dataclass(frozen=True)
class Located:
    lon: float
    lat: float
    source: LocationSource
    accuracy_m: float | None
    how: str  # coordinates | place | gazetteer | geocoder
    address: str | None = None  # the address or street the text named


Bbox = tuple[float, float, float, float]  # west, south, east, north


class Geocoder(Protocol):
    """Finds one place for an address text, within ``bbox``."""

    async def geocode(self, query: str, bbox: Bbox) -> Located | None: ...


# "Station Road 12", "Vismarkt 3a", "Elm Street outside no. 3" (not: "no. 3"), and a
# Dutch postcode "4811 AB". Capitalised words, then a house number.
_ADDRESS = re.compile(
    r"\b((?:[A-Z][\w'\u2019.-]*\s){0,3}[A-Z][\w'\u2019.-]*(?:straat|weg|laan|plein|markt|gracht|kade|"
    r"singel|dijk|gatan|vägen|torget)?\s+\d{1,4}[a-zA-Z]?)(?:\s*,\s*(\d{4}\s?[A-Z]{2}))?"
)
_POSTCODE = re.compile(r"\b\d{4}\s?[A-Z]{2}\b")
_NOT_STREET = {"The", "A", "An", "On", "At", "In", "Near", "Still", "Huge", "No", "Day", "Week"}


def address_in(text: str) -> str | None:
    """The first address-like phrase of ``text`` (street and house number, maybe a
    postcode), for a geocoder; None when there is none."""
    for found in _ADDRESS.finditer(text):
        words = found.group(1).split()
        while words and words[0] in _NOT_STREET:
            words = words[1:]
        if len(words) >= 2:
            phrase = " ".join(words)
            return f"{phrase}, {found.group(2)}" if found.group(2) else phrase
    found_postcode = _POSTCODE.search(text)
    return found_postcode.group(0) if found_postcode else None


def _fold(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(frozen=True)
class Street:
    name: str
    lon: float
    lat: float


class Gazetteer:
    """The city file's street list: the longest street name the text contains."""

    def __init__(self, streets: Sequence[Street]) -> None:
        self._streets = sorted(
            ((re.compile(r"(?<!\w)" + re.escape(_fold(s.name)) + r"(?!\w)"), s) for s in streets),
            key=lambda pair: -len(pair[1].name),
        )

    def find(self, text: str) -> Located | None:
        folded = _fold(text)
        for pattern, street in self._streets:
            if pattern.search(folded):
                return Located(
                    street.lon, street.lat, LocationSource.address, 100.0, "gazetteer", street.name
                )
        return None


class HttpGeocoder:
    """A Nominatim (``/search?format=jsonv2``) or Photon (``/api``) compatible geocoder at a
    configurable URL; which one is read from the answer. Bounded to the jurisdiction's box."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        assert settings.geocoder_url is not None
        self.url = settings.geocoder_url.rstrip("/")
        self.client = client or httpx.AsyncClient(
            timeout=settings.geocoder_timeout_seconds,
            trust_env=False,
            headers={"User-Agent": "Kerbside"},
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def geocode(self, query: str, bbox: Bbox) -> Located | None:
        west, south, east, north = bbox
        photon = self.url.endswith("/api")
        params: dict[str, Any] = (
            {"q": query, "limit": 1, "bbox": f"{west},{south},{east},{north}"}
            if photon
            else {
                "q": query,
                "format": "jsonv2",
                "limit": 1,
                "viewbox": f"{west},{north},{east},{south}",
                "bounded": 1,
            }
        )
        try:
            response = await self.client.get(
                self.url if photon else f"{self.url}/search", params=params
            )
            if response.status_code != 200:
                return None
            answer = response.json()
        except (httpx.HTTPError, ValueError):
            return None  # a geocoder that is away locates nothing; we ask the author
        point = _point(answer)
        if point is None:
            return None
        lon, lat = point
        if not (west <= lon <= east and south <= lat <= north):
            return None
        return Located(lon, lat, LocationSource.address, 50.0, "geocoder", query)


def _point(answer: Any) -> tuple[float, float] | None:
    try:
        if isinstance(answer, list) and answer:  # Nominatim
            return float(answer[0]["lon"]), float(answer[0]["lat"])
        if isinstance(answer, dict) and answer.get("features"):  # Photon (GeoJSON)
            lon, lat = answer["features"][0]["geometry"]["coordinates"][:2]
            return float(lon), float(lat)
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None


def place_radius_m(bbox: Bbox) -> float:
    """Half the diagonal of a place's box: how far its centre may be from the problem."""
    west, south, east, north = bbox
    return haversine_m(west, south, east, north) / 2


@dataclass(frozen=True)
class Locator:
    """The location sources of one jurisdiction, in order."""

    bbox: Bbox  # the jurisdiction's
    place_max_m: float
    gazetteer: Gazetteer
    geocoder: Geocoder | None

    async def locate(self, post: InboundPost) -> Located | None:
        if post.coordinates is not None:
            lon, lat = post.coordinates
            return Located(lon, lat, LocationSource.post, 30.0, "coordinates")
        if post.place is not None and post.place.bbox is not None:
            radius = place_radius_m(post.place.bbox)
            if radius * 2 <= self.place_max_m:
                west, south, east, north = post.place.bbox
                return Located(
                    (west + east) / 2,
                    (south + north) / 2,
                    LocationSource.post,
                    round(radius, 1),
                    "place",
                    post.place.name or None,
                )
        address = address_in(post.text)
        if address is not None and self.geocoder is not None:
            found = await self.geocoder.geocode(address, self.bbox)
            if found is not None:
                return found
        return self.gazetteer.find(post.text)
