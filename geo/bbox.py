"""Bounding boxes from the outside world (``bbox=minLon,minLat,maxLon,maxLat``) and their size."""

from __future__ import annotations

import math
from dataclasses import dataclass

from geo.distance import EARTH_RADIUS_M


class BBoxError(ValueError):
    """A bbox that cannot be used; the message says why, for a person to act on."""


@dataclass(frozen=True, slots=True)
class BBox:
    west: float
    south: float
    east: float
    north: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        return self.west, self.south, self.east, self.north

    def area_km2(self) -> float:
        """The box's area on the sphere, in square kilometres."""
        return bbox_area_km2(self.as_tuple())

    def expanded(self, metres: float) -> BBox:
        """The box grown by ``metres`` on every side (generously, at its widest latitude)."""
        if metres <= 0:
            return self
        widest = max(abs(self.south), abs(self.north))
        dlat = metres / 110_574.0
        dlon = metres / (111_320.0 * max(math.cos(math.radians(min(widest, 89.0))), 0.01))
        return BBox(
            max(self.west - dlon, -180.0),
            max(self.south - dlat, -90.0),
            min(self.east + dlon, 180.0),
            min(self.north + dlat, 90.0),
        )


def parse_bbox(text: str) -> BBox:
    """``minLon,minLat,maxLon,maxLat`` (WGS84, RFC 7946 order) as a ``BBox``.

    Six numbers (with heights, as OGC API allows) keep the horizontal ones. Boxes across the
    antimeridian (west > east) are refused: send two boxes instead.
    """
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (4, 6):
        raise BBoxError("bbox needs 4 numbers: minLon,minLat,maxLon,maxLat")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise BBoxError("bbox must be 4 comma-separated numbers") from None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    west, south, east, north = numbers
    if not all(math.isfinite(v) for v in numbers):
        raise BBoxError("bbox numbers must be finite")
    if not (-180.0 <= west <= 180.0 and -180.0 <= east <= 180.0):
        raise BBoxError("bbox longitudes must be between -180 and 180")
    if not (-90.0 <= south <= 90.0 and -90.0 <= north <= 90.0):
        raise BBoxError(
            "bbox latitudes must be between -90 and 90 (the order is minLon,minLat,maxLon,maxLat)"
        )
    if west > east:
        raise BBoxError("bbox minLon is east of maxLon (boxes across the antimeridian: send two)")
    if south > north:
        raise BBoxError("bbox minLat is north of maxLat")
    return BBox(west, south, east, north)


def bbox_area_km2(bbox: tuple[float, float, float, float]) -> float:
    """Area of a lon/lat box on the mean sphere, in km² (R² · Δλ · |sin φ₂ - sin φ₁|)."""
    west, south, east, north = bbox
    dlon = math.radians(east - west)
    band = abs(math.sin(math.radians(north)) - math.sin(math.radians(south)))
    return (EARTH_RADIUS_M / 1000.0) ** 2 * dlon * band
