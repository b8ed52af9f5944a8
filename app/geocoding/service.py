"""Geocoders: one protocol, an HTTP implementation and the city's street gazetteer."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from app.settings import Settings

Bbox = tuple[float, float, float, float]  # west, south, east, north


@dataclass(frozen=True)
class Geocoded:
    """A point found for an address text."""

    lon: float
    lat: float
    accuracy_m: float
    how: Literal["geocoder", "gazetteer"]
    address: str  # the text that was looked up, or the street the gazetteer matched


class Geocoder(Protocol):
    """Finds one place for an address text, within ``bbox``."""

    async def geocode(self, query: str, bbox: Bbox) -> Geocoded | None: ...


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

    def __len__(self) -> int:
        return len(self._streets)

    def find(self, text: str) -> Geocoded | None:
        folded = _fold(text)
        for pattern, street in self._streets:
            if pattern.search(folded):
                return Geocoded(street.lon, street.lat, 100.0, "gazetteer", street.name)
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

    async def geocode(self, query: str, bbox: Bbox) -> Geocoded | None:
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
            return None  # a geocoder that is away finds nothing; the caller falls back
        point = _point(answer)
        if point is None:
            return None
        lon, lat = point
        if not (west <= lon <= east and south <= lat <= north):
            return None
        return Geocoded(lon, lat, 50.0, "geocoder", query)


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


async def geocode_address(
    address: str, bbox: Bbox, *, geocoder: Geocoder | None, gazetteer: Gazetteer
) -> Geocoded | None:
    """An address text placed by the geocoder (when one is configured), else by the street
    gazetteer; None when neither knows it."""
    if geocoder is not None:
        found = await geocoder.geocode(address, bbox)
        if found is not None:
            return found
    return gazetteer.find(address)
