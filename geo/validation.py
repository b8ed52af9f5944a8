"""Checks on coordinates from the outside world, with reasons a person can act on."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CoordinateProblem:
    field: str
    message: str


def check_lonlat(lon: float, lat: float) -> list[CoordinateProblem]:
    """Problems with a WGS84 (longitude, latitude) pair; empty when it is usable."""
    problems: list[CoordinateProblem] = []
    for name, value, limit in (("lon", lon, 180.0), ("lat", lat, 90.0)):
        if not math.isfinite(value):
            problems.append(CoordinateProblem(name, f"{name} must be a finite number"))
        elif not -limit <= value <= limit:
            problems.append(
                CoordinateProblem(name, f"{name} must be between -{limit:g} and {limit:g}")
            )
    if not problems and lon == 0.0 and lat == 0.0:
        problems.append(
            CoordinateProblem("lon", "0, 0 is not a street location (the device sent no fix?)")
        )
    return problems


def swapped(lon: float, lat: float) -> tuple[float, float] | None:
    """(lat, lon) read as (lon, lat), when that swap is a valid pair; else None."""
    if -90.0 <= lon <= 90.0 and -180.0 <= lat <= 180.0 and lon != lat:
        return lat, lon
    return None
