"""Where a post is about, in order: exact coordinates on the post; a place the platform
attached whose box is small enough (a city-sized place is no location); an address or street
named in the text, through a geocoder (an HTTP Nominatim/Photon-compatible service, and the
local gazetteer of the city file's street list, both in ``app.geocoding``); else nothing,
and we ask the author.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.channels.posts import InboundPost
from app.geocoding.service import Bbox, Gazetteer, Geocoded, Geocoder
from app.reports.models import LocationSource
from geo.distance import haversine_m


@dataclass(frozen=True)
class Located:
    lon: float
    lat: float
    source: LocationSource
    accuracy_m: float | None
    how: str  # coordinates | place | gazetteer | geocoder
    address: str | None = None  # the address or street the text named

    @classmethod
    def of(cls, found: Geocoded) -> Located:
        return cls(
            found.lon, found.lat, LocationSource.address, found.accuracy_m, found.how, found.address
        )


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
                return Located.of(found)
        # The gazetteer reads the whole text: a street is named without a house number.
        street = self.gazetteer.find(post.text)
        return Located.of(street) if street is not None else None
