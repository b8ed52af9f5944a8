"""Geometry hygiene for a city file: read GeoJSON, reproject to WGS84, repair what is safe to
repair, refuse the rest, and measure how areas sit in the boundary and against each other.

PostGIS does the geometry work (``ST_Transform`` with its PROJ database, ``ST_MakeValid``),
so the same rules hold for the file, the admin API and the database's own checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.cities.schema import AreaSet, GeometrySource

# Coordinates are snapped to this grid (degrees, ≈1 mm) once in WGS84, so that a geometry
# written back by the export and read again is the same to the bit: apply → export → apply
# changes nothing.
GRID_DEG = 1e-8
# A repair that changes an area by more than this share is not "safe": refuse it.
REPAIR_TOLERANCE = 0.01
# Overlaps, gaps and parts outside the boundary smaller than this (m²) are noise of digitising.
SLIVER_M2 = 1.0

_URN_EPSG = re.compile(r"EPSG:{1,2}(\d{4,6})$")


class GeometryProblem(ValueError):
    """A geometry that cannot be used, with where it came from (``path``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Shape:
    """One usable geometry: WGS84 MultiPolygon as EWKT, and what was done to it."""

    path: str  # where in the file: "boundary", "areas[0].features[3] (code N1)"
    ewkt: str
    repaired: str | None = None  # why it was invalid, when ST_MakeValid fixed it
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AreaShape:
    kind: str
    code: str
    name: str
    shape: Shape


@dataclass
class Hygiene:
    """What the checks found: repairs made and areas that overlap, leave gaps or stick out."""

    repaired: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            *(f"repaired {r}" for r in self.repaired),
            *(f"outside the boundary: {o}" for o in self.outside),
            *(f"overlap: {o}" for o in self.overlaps),
            *(f"gap: {g}" for g in self.gaps),
        ]


def read_geojson(source: GeometrySource, base_dir: Path | None, path: str) -> dict[str, Any]:
    """The source's GeoJSON: inline, or the file relative to ``base_dir``."""
    if source.geojson is not None:
        return source.geojson
    assert source.file is not None
    file = Path(source.file)
    if not file.is_absolute() and base_dir is not None:
        file = base_dir / file
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GeometryProblem(f"{path}.file", f"cannot read {file}: {exc.strerror}") from None
    except ValueError as exc:
        raise GeometryProblem(f"{path}.file", f"{file} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GeometryProblem(f"{path}.file", f"{file} holds no GeoJSON object")
    return data


def srid_of(source: GeometrySource, geojson: dict[str, Any], path: str) -> int:
    """The declared CRS; an old-style GeoJSON ``crs`` member (QGIS writes one) is honoured
    when the file declares none, and must agree with it when it does."""
    declared = int(source.crs.split(":")[1])
    named = (geojson.get("crs") or {}).get("properties", {}).get("name")
    if not named:
        return declared
    found = _URN_EPSG.search(str(named))
    if found is None:
        if "CRS84" in str(named):
            return 4326 if declared == 4326 else _conflict(path, declared, str(named))
        raise GeometryProblem(f"{path}.crs", f"the GeoJSON names an unknown CRS {named!r}")
    embedded = int(found.group(1))
    if "crs" not in source.model_fields_set:
        return embedded
    if embedded != declared:
        _conflict(path, declared, str(named))
    return declared


def _conflict(path: str, declared: int, named: str) -> int:
    raise GeometryProblem(
        f"{path}.crs", f"declared EPSG:{declared} but the GeoJSON itself says {named}"
    )


def features(geojson: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any], Any]]:
    """(path, properties, geometry) of each feature; a bare geometry is one feature."""
    kind = geojson.get("type")
    if kind == "FeatureCollection":
        items = geojson.get("features")
        if not isinstance(items, list) or not items:
            raise GeometryProblem(path, "the FeatureCollection has no features")
        out = []
        for i, feature in enumerate(items):
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                raise GeometryProblem(f"{path}.features[{i}]", "not a GeoJSON Feature")
            out.append(
                (f"{path}.features[{i}]", feature.get("properties") or {}, feature.get("geometry"))
            )
        return out
    if kind == "Feature":
        return [(path, geojson.get("properties") or {}, geojson.get("geometry"))]
    if kind in ("Polygon", "MultiPolygon"):
        return [(path, {}, geojson)]
    raise GeometryProblem(
        path, f"expected a Polygon, MultiPolygon, Feature or FeatureCollection, not {kind!r}"
    )


_CLEAN = text(
    """
    WITH given AS (
        SELECT ST_SetSRID(ST_GeomFromGeoJSON(:geojson), CAST(:srid AS int)) AS g
    ),
    checked AS (
        SELECT g, ST_IsValid(g) AS valid, ST_IsValidReason(g) AS reason,
               ST_Transform(ST_CollectionExtract(ST_MakeValid(g), 3), 4326) AS fixed,
               ST_Transform(g, 4326) AS plain
        FROM given
    ),
    out AS (
        SELECT valid, reason,
               ST_Multi(ST_Normalize(ST_SnapToGrid(
                   CASE WHEN valid THEN plain ELSE fixed END, CAST(:grid AS float8)))) AS g,
               ST_Area(plain::geography) AS area_before, ST_Area(fixed::geography) AS area_after
        FROM checked
    )
    SELECT valid, reason, ST_IsEmpty(g) AS empty, ST_IsValid(g) AS valid_after,
           area_before, area_after, ST_AsEWKT(g, 9) AS ewkt,
           ST_XMin(g) AS x0, ST_YMin(g) AS y0, ST_XMax(g) AS x1, ST_YMax(g) AS y1
    FROM out
    """
)

_SRID_KNOWN = text("SELECT EXISTS (SELECT 1 FROM spatial_ref_sys WHERE srid = :srid)")


async def clean(
    session: AsyncSession, geometry: Any, srid: int, path: str, properties: dict[str, Any]
) -> Shape:
    """One polygon geometry in ``srid`` as a valid WGS84 MultiPolygon, or a clear refusal."""
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        got = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        raise GeometryProblem(path, f"expected a Polygon or MultiPolygon, not {got!r}")
    if not (await session.execute(_SRID_KNOWN, {"srid": srid})).scalar_one():
        raise GeometryProblem(path, f"unknown CRS EPSG:{srid}")
    try:
        async with session.begin_nested():
            row = (
                await session.execute(
                    _CLEAN, {"geojson": json.dumps(geometry), "srid": srid, "grid": GRID_DEG}
                )
            ).one()
    except Exception as exc:  # PostGIS refuses malformed coordinates, rings of < 4 points, …
        reason = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise GeometryProblem(path, f"not a usable polygon: {reason}") from None
    if row.empty or not row.valid_after:
        raise GeometryProblem(path, f"cannot be repaired ({row.reason})")
    if not (-180 <= row.x0 <= row.x1 <= 180 and -90 <= row.y0 <= row.y1 <= 90):
        raise GeometryProblem(
            path, f"lies outside the world in EPSG:{srid}: is the declared CRS right?"
        )
    repaired = None
    if not row.valid:
        before = row.area_before or 0.0
        change = abs(row.area_after - before) / before if before else 1.0
        if change > REPAIR_TOLERANCE:
            raise GeometryProblem(
                path,
                f"invalid ({row.reason}); repairing it would change its area by "
                f"{change:.0%}: fix it in the source",
            )
        repaired = f"{path}: {row.reason} (area changed by {change:.2%})"
    return Shape(path, row.ewkt, repaired, properties)


async def boundary_shape(
    session: AsyncSession, source: GeometrySource, base_dir: Path | None
) -> Shape:
    geojson = read_geojson(source, base_dir, "boundary")
    srid = srid_of(source, geojson, "boundary")
    found = features(geojson, "boundary")
    if len(found) == 1:
        path, props, geometry = found[0]
        return await clean(session, geometry, srid, path, props)
    parts = [await clean(session, g, srid, p, props) for p, props, g in found]
    merged = (
        await session.execute(
            text(
                "SELECT ST_AsEWKT(ST_Multi(ST_Normalize(ST_SnapToGrid(ST_Union(CAST(g AS"
                " geometry)), CAST(:grid AS float8)))), 9) FROM unnest(CAST(:parts AS text[]))"
                " AS g"
            ),
            {"parts": [p.ewkt for p in parts], "grid": GRID_DEG},
        )
    ).scalar_one()
    repaired = "; ".join(p.repaired for p in parts if p.repaired) or None
    return Shape("boundary", merged, repaired)


async def area_shapes(
    session: AsyncSession, sets: Sequence[AreaSet], base_dir: Path | None
) -> list[AreaShape]:
    """Every area of every set, with its code and name from the declared properties."""
    out: list[AreaShape] = []
    seen: dict[tuple[str, str], str] = {}
    for i, area_set in enumerate(sets):
        path = f"areas[{i}]"
        geojson = read_geojson(area_set, base_dir, path)
        srid = srid_of(area_set, geojson, path)
        for feature_path, props, geometry in features(geojson, path):
            code = props.get(area_set.code_property)
            if code is None or str(code).strip() == "":
                raise GeometryProblem(
                    feature_path, f"has no {area_set.code_property!r} property (the area code)"
                )
            code = str(code).strip()
            name_value = props.get(area_set.name_property) if area_set.name_property else None
            name = str(name_value).strip() if name_value not in (None, "") else code
            where = f"{feature_path} (code {code})"
            if len(code) > 64 or len(name) > 200:
                raise GeometryProblem(where, "code is at most 64 and name 200 characters")
            if (area_set.kind, code) in seen:
                raise GeometryProblem(
                    where, f"{area_set.kind} code {code!r} also at {seen[(area_set.kind, code)]}"
                )
            seen[(area_set.kind, code)] = feature_path
            shape = await clean(session, geometry, srid, where, props)
            out.append(AreaShape(area_set.kind, code, name, shape))
    return out


_OUTSIDE = text(
    """
    SELECT a.code,
           ST_Area(ST_Difference(CAST(a.g AS geometry), CAST(:boundary AS geometry))::geography)
               AS m2
    FROM unnest(CAST(:codes AS text[]), CAST(:geoms AS text[])) AS a(code, g)
    """
)
_OVERLAPS = text(
    """
    WITH a AS (
        SELECT code, CAST(g AS geometry) AS g
        FROM unnest(CAST(:codes AS text[]), CAST(:geoms AS text[])) AS x(code, g)
    )
    SELECT x.code AS a, y.code AS b, ST_Area(ST_Intersection(x.g, y.g)::geography) AS m2
    FROM a x JOIN a y ON x.code < y.code AND ST_Intersects(x.g, y.g)
    """
)
_GAPS = text(
    """
    SELECT ST_Area(ST_Difference(CAST(:boundary AS geometry),
                                 ST_Union(CAST(g AS geometry)))::geography) AS m2,
           ST_NumGeometries(ST_Difference(CAST(:boundary AS geometry),
                                          ST_Union(CAST(g AS geometry)))) AS pieces
    FROM unnest(CAST(:geoms AS text[])) AS g
    """
)


async def check_layout(
    session: AsyncSession, boundary: Shape, areas: Sequence[AreaShape]
) -> Hygiene:
    """Repairs made, and per kind of area: parts outside the boundary, overlaps and gaps."""
    hygiene = Hygiene()
    hygiene.repaired = [s.repaired for s in [boundary, *(a.shape for a in areas)] if s.repaired]
    kinds = sorted({a.kind for a in areas})
    for kind in kinds:
        mine = [a for a in areas if a.kind == kind]
        params = {
            "codes": [a.code for a in mine],
            "geoms": [a.shape.ewkt for a in mine],
            "boundary": boundary.ewkt,
        }
        for row in await session.execute(_OUTSIDE, params):
            if row.m2 > SLIVER_M2:
                hygiene.outside.append(f"{kind} {row.code}: {_size(row.m2)}")
        for row in await session.execute(_OVERLAPS, params):
            if row.m2 > SLIVER_M2:
                hygiene.overlaps.append(f"{kind} {row.a} and {row.b}: {_size(row.m2)}")
        gap = (await session.execute(_GAPS, params)).one()
        if gap.m2 is not None and gap.m2 > SLIVER_M2:
            hygiene.gaps.append(
                f"{kind}s leave {_size(gap.m2)} of the boundary uncovered"
                f" ({gap.pieces} piece{'s' if gap.pieces != 1 else ''})"
            )
    return hygiene


def _size(m2: float) -> str:
    return f"{m2 / 1e6:,.3f} km²" if m2 >= 1e5 else f"{m2:,.0f} m²"
