"""Map pages' SQL as pgbench scripts: the database ceilings of the bbox and z16 workloads.

The statement is the application's own (``app.maps.queries.features_page_sql`` for the public
view and the default properties, as ``GET /v1/tickets.geojson?bbox=`` runs it), bound to the
values the route would bind: the box, the box widened by the largest public snapping grid, the
page size. pgbench reads each box from a small table, one primary-key lookup per
transaction, walking the same boxes as the HTTP run (street boxes or z16 views).

One textual change: pgbench takes every ``:name`` in the script for a variable, also inside a
string literal, so the ``HH24:MI:SS`` of the time format is spelled with ``chr(58)`` for its
colons. ``to_char`` gets the same format string and does the same work.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from app.maps import queries
from app.maps.queries import MAP_PROPERTIES, PUBLIC, Filters
from geo.bbox import BBox

TABLE = "bench_box"
_BOX_COLUMNS = ("x0", "y0", "x1", "y1", "px0", "py0", "px1", "py1")
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_TIME_FORMAT_COLONS = ("HH24:MI:SS", "HH24' || chr(58) || 'MI' || chr(58) || 'SS")


class MapsSqlMissing(RuntimeError):
    """The page statement changed shape in a way this script does not know how to bind."""


def public_pad_m(conn: psycopg.Connection[Any]) -> float:
    """How far the route widens a public bbox for its index prefilter (the largest grid)."""
    row = conn.execute(queries.MAX_PUBLIC_SNAP_SQL).fetchone()
    return float(row[0]) if row else 0.0


def store_boxes(
    conn: psycopg.Connection[Any], boxes: list[tuple[float, float, float, float]], pad_m: float
) -> None:
    """Write ``boxes`` (and their padded prefilter boxes) to ``bench_box`` (dropped first)."""
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    columns = ", ".join(f"{name} float8 NOT NULL" for name in _BOX_COLUMNS)
    conn.execute(f"CREATE UNLOGGED TABLE {TABLE} (i int PRIMARY KEY, {columns})")
    with conn.cursor().copy(f"COPY {TABLE} (i, {', '.join(_BOX_COLUMNS)}) FROM STDIN") as copy:
        for i, (west, south, east, north) in enumerate(boxes):
            box = BBox(west, south, east, north)
            padded = box.expanded(pad_m)
            copy.write_row((i, box.west, box.south, box.east, box.north, *padded.as_tuple()))
    conn.execute(f"ANALYZE {TABLE}")


def drop_boxes(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")


def page_sql(*, pad: bool) -> str:
    """The route's statement for a public bbox page with the default properties."""
    key = Filters(bbox=BBox(0.0, 0.0, 0.0, 0.0)).key()
    return queries.features_page_sql(PUBLIC, MAP_PROPERTIES, key, pad, False)


def pgbench_script(boxes: int, *, pad: bool) -> str:
    """One page per transaction, at a random box; run with ``-D limit=<page size>``."""
    old, new = _TIME_FORMAT_COLONS
    sql = page_sql(pad=pad).replace(old, new)
    unknown = set(_BIND.findall(sql)) - set(_BOX_COLUMNS) - {"limit"}
    if unknown:
        raise MapsSqlMissing(f"the bbox page binds {sorted(unknown)}, which the script lacks")
    if ";" in sql:
        raise MapsSqlMissing("the bbox page holds a ';', which pgbench cannot take")
    lookup = f"SELECT {', '.join(_BOX_COLUMNS)} FROM {TABLE} WHERE i = :i \\gset"  # noqa: S608
    one_line = " ".join(line.strip() for line in sql.splitlines())
    return f"\\set i random(0, {boxes - 1})\n{lookup}\n{one_line};\n"
