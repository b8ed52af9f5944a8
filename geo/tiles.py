"""Web Mercator tiles and grids: tile bounds, which tile holds a point, cluster grid cells.

Tiles follow the XYZ scheme of web maps (WebMercatorQuad, EPSG:3857, y grows southward).
A grid *level* ``k`` divides the world into ``2**k`` by ``2**k`` square cells, numbered like
tiles; a tile at zoom ``z`` holds ``2**d`` by ``2**d`` cells of level ``z + d``. Cells of one
level nest exactly in the cells of every coarser level (``cx >> 1`` is the parent), which is
what lets the database add up a fine grid into any coarser one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_378_137.0  # the sphere of EPSG:3857
HALF_WORLD_M = math.pi * EARTH_RADIUS_M  # 20,037,508.34 m
WORLD_M = 2 * HALF_WORLD_M
MAX_LAT = 85.05112877980659  # where Web Mercator's square world ends
MAX_ZOOM = 22
TILE_PX = 256


@dataclass(frozen=True, slots=True)
class Tile:
    z: int
    x: int
    y: int

    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        n = 2**self.z
        return (
            self.x / n * 360.0 - 180.0,
            _lat_of_row(self.y + 1, n),
            (self.x + 1) / n * 360.0 - 180.0,
            _lat_of_row(self.y, n),
        )

    def cells(self, level: int) -> tuple[int, int, int, int]:
        """(cx0, cy0, cx1, cy1), inclusive: the cells of grid ``level`` inside this tile."""
        if level < self.z:
            raise ValueError("a tile holds whole cells of finer levels only")
        d = level - self.z
        return self.x << d, self.y << d, ((self.x + 1) << d) - 1, ((self.y + 1) << d) - 1


def valid_tile(z: int, x: int, y: int) -> str | None:
    """Why (z, x, y) is not a tile of the XYZ scheme, or None when it is one."""
    if not 0 <= z <= MAX_ZOOM:
        return f"zoom must be between 0 and {MAX_ZOOM}"
    n = 2**z
    if not (0 <= x < n and 0 <= y < n):
        return f"x and y must be between 0 and {n - 1} at zoom {z}"
    return None


def _lat_of_row(row: float, n: int) -> float:
    return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))


def tile_of(lon: float, lat: float, z: int) -> Tile:
    """The tile at zoom ``z`` that holds (lon, lat)."""
    n = 2**z
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return Tile(z, min(max(x, 0), n - 1), min(max(y, 0), n - 1))


def mercator(lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) in degrees as EPSG:3857 metres."""
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    return (
        math.radians(lon) * EARTH_RADIUS_M,
        math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * EARTH_RADIUS_M,
    )


def cell_size_m(level: int) -> float:
    """The side of a grid cell of ``level``, in Web Mercator metres."""
    return WORLD_M / float(2**level)


def cell_range(bbox: tuple[float, float, float, float], level: int) -> tuple[int, int, int, int]:
    """(cx0, cy0, cx1, cy1), inclusive: the cells of ``level`` that a lon/lat box touches."""
    west, south, east, north = bbox
    x0, y0 = mercator(west, north)
    x1, y1 = mercator(east, south)
    size = cell_size_m(level)
    last = (1 << level) - 1

    def clamp(v: int) -> int:
        return min(max(v, 0), last)

    return (
        clamp(math.floor((x0 + HALF_WORLD_M) / size)),
        clamp(math.floor((HALF_WORLD_M - y0) / size)),
        clamp(math.floor((x1 + HALF_WORLD_M) / size)),
        clamp(math.floor((HALF_WORLD_M - y1) / size)),
    )


def cluster_level(zoom: int, cell_px: int = 64) -> int:
    """The grid level whose cells measure ``cell_px`` screen pixels at ``zoom``."""
    if cell_px <= 0 or cell_px & (cell_px - 1):
        raise ValueError("cell_px must be a power of two")
    if cell_px >= TILE_PX:
        return zoom
    return zoom + (TILE_PX // cell_px).bit_length() - 1
