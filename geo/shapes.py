"""Search shapes from the outside world (points, boxes, GeoJSON polygons), checked and measured.

Each check returns the problems a person can act on (``field``, ``message``, ``type``) and,
when there are none, the parsed shape. Areas are in square metres on a local tangent plane
at the shape's latitude: plenty for city-sized limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from geo.distance import metres_per_degree
from geo.validation import check_lonlat

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class ShapeProblem:
    field: str
    message: str
    type: str = "value_error"


def parse_lonlat(text: str, field: str) -> tuple[tuple[float, float] | None, list[ShapeProblem]]:
    """``"lon,lat"`` as a checked (lon, lat) pair."""
    numbers = _numbers(text)
    if numbers is None or len(numbers) != 2:
        return None, [ShapeProblem(field, "expected lon,lat (two numbers, longitude first)")]
    lon, lat = numbers
    problems = [ShapeProblem(field, p.message) for p in check_lonlat(lon, lat)]
    return (None, problems) if problems else ((lon, lat), [])


def parse_bbox(
    text: str, field: str, *, max_area_m2: float
) -> tuple[BBox | None, list[ShapeProblem]]:
    """``"minx,miny,maxx,maxy"`` (lon/lat) as a checked box no larger than ``max_area_m2``."""
    numbers = _numbers(text)
    if numbers is None or len(numbers) != 4:
        return None, [ShapeProblem(field, "expected minx,miny,maxx,maxy (four numbers)")]
    minx, miny, maxx, maxy = numbers
    problems = [
        ShapeProblem(field, p.message)
        for corner in ((minx, miny), (maxx, maxy))
        for p in check_lonlat(*corner)
        if p.message.startswith(("lon must", "lat must"))
    ]
    if problems:
        return None, problems
    if minx >= maxx or miny >= maxy:
        return None, [ShapeProblem(field, "min must be below max on both axes (minx < maxx)")]
    area = bbox_area_m2((minx, miny, maxx, maxy))
    if area > max_area_m2:
        return None, [_too_large(field, area, max_area_m2)]
    return (minx, miny, maxx, maxy), []


def bbox_area_m2(bbox: BBox) -> float:
    minx, miny, maxx, maxy = bbox
    m_lon, m_lat = metres_per_degree((miny + maxy) / 2)
    return (maxx - minx) * m_lon * (maxy - miny) * m_lat


def geometry_area_m2(geom: BaseGeometry) -> float:
    """Approximate area (m²): degrees² scaled at the geometry's mid latitude."""
    miny, maxy = geom.bounds[1], geom.bounds[3]
    m_lon, m_lat = metres_per_degree((miny + maxy) / 2)
    return float(geom.area) * m_lon * m_lat


def check_polygon(
    geojson: Mapping[str, Any], field: str, *, max_vertices: int, max_area_m2: float
) -> tuple[Polygon | MultiPolygon | None, list[ShapeProblem]]:
    """A GeoJSON Polygon or MultiPolygon (RFC 7946: lon, lat) as a valid, bounded shape."""
    kind = geojson.get("type")
    if kind not in ("Polygon", "MultiPolygon"):
        return None, [ShapeProblem(field, "expected a GeoJSON Polygon or MultiPolygon", "type")]
    problem = _ring_problem(geojson, field)
    if problem is not None:
        return None, [problem]
    try:
        geom = shape(geojson)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        return None, [ShapeProblem(field, f"not a readable {kind}: {exc}")]
    vertices = int(shapely.get_num_coordinates(geom))
    if vertices > max_vertices:
        return None, [
            ShapeProblem(
                field, f"{vertices} vertices; at most {max_vertices} (simplify it)", "too_many"
            )
        ]
    if geom.is_empty:
        return None, [ShapeProblem(field, "the polygon is empty")]
    minx, miny, maxx, maxy = geom.bounds
    if not (minx >= -180 and maxx <= 180 and miny >= -90 and maxy <= 90):
        return None, [ShapeProblem(field, "coordinates must be lon (-180..180), lat (-90..90)")]
    if not all(math.isfinite(v) for v in geom.bounds):
        return None, [ShapeProblem(field, "coordinates must be finite numbers")]
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        return None, [ShapeProblem(field, f"invalid polygon: {reason}", "invalid_geometry")]
    area = geometry_area_m2(geom)
    if area > max_area_m2:
        return None, [_too_large(field, area, max_area_m2)]
    assert isinstance(geom, Polygon | MultiPolygon)
    return geom, []


def _ring_problem(geojson: Mapping[str, Any], field: str) -> ShapeProblem | None:
    """What RFC 7946 requires of every ring that shapely would let through: finite numbers
    (shapely takes NaN, and later steps fail on it), at least 4 positions, and the last
    position equal to the first (shapely closes an open ring silently)."""
    coordinates = geojson.get("coordinates")
    polygons = [coordinates] if geojson.get("type") == "Polygon" else coordinates
    if not isinstance(polygons, list):
        return None  # shapely's own reading reports it
    for polygon in polygons:
        for ring in polygon if isinstance(polygon, list) else ():
            if not isinstance(ring, list):
                continue
            for position in ring:
                numbers = position if isinstance(position, list | tuple) else ()
                if not all(isinstance(v, int | float) and math.isfinite(v) for v in numbers):
                    return ShapeProblem(field, "coordinates must be finite numbers")
            if len(ring) < 4:
                return ShapeProblem(
                    field, "a ring needs at least 4 positions (RFC 7946)", "invalid_geometry"
                )
            if list(ring[0]) != list(ring[-1]):
                return ShapeProblem(
                    field,
                    "a ring must be closed: its last position equal to its first",
                    "invalid_geometry",
                )
    return None


def _too_large(field: str, area: float, limit: float) -> ShapeProblem:
    return ShapeProblem(
        field,
        f"covers {area / 1e6:,.1f} km²; at most {limit / 1e6:,.1f} km² (narrow the search)",
        "too_large",
    )


def _numbers(text: str) -> list[float] | None:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None
