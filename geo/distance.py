"""Distances and offsets on the WGS84 ellipsoid, in metres.

For the short distances of street problems (metres to a few kilometres) a local tangent plane
is accurate to well under a metre; exact geodesics are left to PostGIS ``geography``.
"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
_M_PER_DEG_LAT = 111_132.954


def metres_per_degree(lat: float) -> tuple[float, float]:
    """Metres per degree of (longitude, latitude) at latitude ``lat``."""
    phi = math.radians(lat)
    m_lat = _M_PER_DEG_LAT - 559.822 * math.cos(2 * phi) + 1.175 * math.cos(4 * phi)
    m_lon = 111_412.84 * math.cos(phi) - 93.5 * math.cos(3 * phi) + 0.118 * math.cos(5 * phi)
    return m_lon, m_lat


def offset_lonlat(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m`` east and ``north_m`` north of (lon, lat)."""
    m_lon, m_lat = metres_per_degree(lat)
    return lon + east_m / m_lon, lat + north_m / m_lat


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres on the mean sphere (error < 0.5 %)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def degree_box(lon: float, lat: float, radius_m: float) -> tuple[float, float, float, float]:
    """A (minx, miny, maxx, maxy) box in degrees that surely contains the circle of ``radius_m``.

    Used as an index-friendly prefilter (``geom && box``) before an exact geodesic test.
    """
    m_lon, m_lat = metres_per_degree(lat)
    pad = 1.01  # the ellipsoid's curvature over a few km
    dlon = radius_m * pad / max(m_lon, 1e-9)
    dlat = radius_m * pad / m_lat
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


def near_params(lon: float, lat: float, radius_m: float) -> dict[str, float]:
    """Bound parameters for an indexed "within ``radius_m`` of (lon, lat)" query.

    ``minx..maxy`` feed ``ST_MakeEnvelope`` (the index prefilter); ``lon``, ``lat`` and
    ``radius_m`` feed the exact geodesic ``ST_DWithin``.
    """
    minx, miny, maxx, maxy = degree_box(lon, lat, radius_m)
    return {
        "lon": lon,
        "lat": lat,
        "radius_m": radius_m,
        "minx": minx,
        "miny": miny,
        "maxx": maxx,
        "maxy": maxy,
    }
