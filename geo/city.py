"""A synthetic city: an irregular boundary cut into districts, and plausible report locations.

Used by the demo data, the tests and the benchmarks, so all three share one believable shape
(real potholes cluster along busy streets, so points mix a uniform spread with hotspots).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from geo.distance import offset_lonlat

DISTRICT_NAMES = (
    "Old Town",
    "Riverside",
    "Northfield",
    "Eastgate",
    "Southbank",
    "Westbury",
    "Hillcrest",
    "Harbourside",
    "Millbrook",
    "Greenway",
    "Kingsmead",
    "Ashton",
)


@dataclass(frozen=True)
class District:
    code: str
    name: str
    geom: MultiPolygon


@dataclass(frozen=True)
class City:
    center: tuple[float, float]  # lon, lat
    boundary: MultiPolygon
    districts: tuple[District, ...]

    def random_points(
        self,
        count: int,
        *,
        seed: int = 7,
        hotspot_share: float = 0.4,
        hotspots: int = 40,
        hotspot_sigma_m: float = 120.0,
    ) -> list[tuple[float, float]]:
        """``count`` (lon, lat) points inside the boundary: uniform plus Gaussian hotspots."""
        rng = random.Random(seed)
        minx, miny, maxx, maxy = self.boundary.bounds
        prepared = _Prepared(self.boundary)
        centres = [
            p
            for p in (_uniform(rng, minx, miny, maxx, maxy) for _ in range(hotspots * 4))
            if prepared.contains(p)
        ][:hotspots] or [self.center]
        out: list[tuple[float, float]] = []
        while len(out) < count:
            if rng.random() < hotspot_share:
                cx, cy = rng.choice(centres)
                p = offset_lonlat(
                    cx, cy, rng.gauss(0, hotspot_sigma_m), rng.gauss(0, hotspot_sigma_m)
                )
            else:
                p = _uniform(rng, minx, miny, maxx, maxy)
            if prepared.contains(p):
                out.append((round(p[0], 7), round(p[1], 7)))
        return out


class _Prepared:
    def __init__(self, geom: BaseGeometry) -> None:
        import shapely

        shapely.prepare(geom)
        self.geom = geom

    def contains(self, p: tuple[float, float]) -> bool:
        return bool(self.geom.contains(Point(p)))


def _uniform(
    rng: random.Random, minx: float, miny: float, maxx: float, maxy: float
) -> tuple[float, float]:
    return rng.uniform(minx, maxx), rng.uniform(miny, maxy)


def make_city(
    center: tuple[float, float] = (-2.5879, 51.4545),
    radius_m: float = 6000.0,
    districts: int = 8,
    seed: int = 42,
) -> City:
    """An irregular, roughly round city of ``radius_m`` around ``center`` (lon, lat).

    The boundary is a 48-sided polygon with a wobbly radius; districts are a central core
    plus ``districts - 1`` radial sectors around it, so they tile the boundary exactly.
    """
    if districts < 2 or districts > len(DISTRICT_NAMES):
        raise ValueError(f"districts must be between 2 and {len(DISTRICT_NAMES)}")
    rng = random.Random(seed)
    lon0, lat0 = center
    sides = 48
    ring = []
    for i in range(sides):
        angle = 2 * math.pi * i / sides
        r = radius_m * (0.85 + 0.3 * rng.random())
        ring.append(offset_lonlat(lon0, lat0, r * math.cos(angle), r * math.sin(angle)))
    boundary = Polygon(ring).buffer(0)
    core = Point(center).buffer(_metres_to_degrees(radius_m * 0.3, lat0), 32)
    core = _as_multi(core.intersection(boundary))
    parts: list[District] = [District("D01", DISTRICT_NAMES[0], core)]
    sectors = districts - 1
    far = radius_m * 3
    for i in range(sectors):
        a0 = 2 * math.pi * i / sectors + 0.3
        a1 = 2 * math.pi * (i + 1) / sectors + 0.3
        wedge = Polygon(
            [center]
            + [
                offset_lonlat(lon0, lat0, far * math.cos(a), far * math.sin(a))
                for a in (a0 + (a1 - a0) * k / 8 for k in range(9))
            ]
        )
        piece = wedge.intersection(boundary).difference(core)
        parts.append(District(f"D{i + 2:02d}", DISTRICT_NAMES[i + 1], _as_multi(piece)))
    return City(center=center, boundary=_as_multi(boundary), districts=tuple(parts))


def _metres_to_degrees(metres: float, lat: float) -> float:
    # Good enough for a buffer radius: the circle becomes a slight ellipse in metres.
    return metres / (111_320.0 * math.cos(math.radians(lat)))


def _as_multi(geom: BaseGeometry) -> MultiPolygon:
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]
    return MultiPolygon(polys)
