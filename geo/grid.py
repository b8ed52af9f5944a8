"""Grid cells for locking a neighbourhood, so concurrent reports of one spot serialise.

Two reports whose points lie within ``radius_m`` of each other must not both open a ticket.
Each report locks every cell its search box touches; the box of one report contains the other
report's point, so both lock that point's cell and the second waits for the first to commit.
"""

from __future__ import annotations

import math

from geo.distance import degree_box, metres_per_degree

_INT32 = 2**31


def cell_size_degrees(radius_m: float, max_abs_lat: float) -> float:
    """A square cell (in degrees) at least as wide as a search box anywhere up to ``max_abs_lat``.

    With cells this big a search box touches at most 2 by 2 cells, so a report takes ≤ 4 locks.
    """
    m_lon, _ = metres_per_degree(min(abs(max_abs_lat), 89.0))
    return max(2.02 * max(radius_m, 1.0) / max(m_lon, 1.0), 1e-6)


def lock_keys(lon: float, lat: float, radius_m: float, cell_deg: float) -> list[int]:
    """Sorted 32-bit keys of the cells that the search box around (lon, lat) touches."""
    minx, miny, maxx, maxy = degree_box(lon, lat, radius_m)
    keys = set()
    for ix in range(math.floor(minx / cell_deg), math.floor(maxx / cell_deg) + 1):
        for iy in range(math.floor(miny / cell_deg), math.floor(maxy / cell_deg) + 1):
            keys.add(_cell_key(ix, iy))
    return sorted(keys)


def _cell_key(ix: int, iy: int) -> int:
    # Spatial hash into PostgreSQL's int4; a collision only means an extra (harmless) wait.
    h = ((ix * 73_856_093) ^ (iy * 19_349_663)) & 0xFFFFFFFF
    return h - 2**32 if h >= _INT32 else h
