"""Map pages' SQL as pgbench scripts: the database ceilings of the bbox and z16 workloads.

The statement is the application's own (``app.maps.queries.map_page_sql``, what
``GET /v1/tickets.geojson?bbox=`` runs for the public view and the default properties: an
index-only scan of the ``ticket_map`` read model), bound to the values the route would bind:
the box and the page size. pgbench reads each box from a small table, one primary-key lookup
per transaction, walking the same boxes as the HTTP run (street boxes or z16 views).

pgbench takes every ``:name`` in a script for a variable, also inside a string literal; the
script refuses a statement whose binds it does not know.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from app.maps import queries
from app.maps.queries import Filters
from geo.bbox import BBox

TABLE = "bench_box"
_BOX_COLUMNS = ("x0", "y0", "x1", "y1")
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class MapsSqlMissing(RuntimeError):
    """The page statement changed shape in a way this script does not know how to bind."""


def store_boxes(
    conn: psycopg.Connection[Any], boxes: list[tuple[float, float, float, float]]
) -> None:
    """Write ``boxes`` to ``bench_box`` (dropped first)."""
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    columns = ", ".join(f"{name} float8 NOT NULL" for name in _BOX_COLUMNS)
    conn.execute(f"CREATE UNLOGGED TABLE {TABLE} (i int PRIMARY KEY, {columns})")
    with conn.cursor().copy(f"COPY {TABLE} (i, {', '.join(_BOX_COLUMNS)}) FROM STDIN") as copy:
        for i, (west, south, east, north) in enumerate(boxes):
            copy.write_row((i, west, south, east, north))
    conn.execute(f"ANALYZE {TABLE}")


def drop_boxes(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")


def page_sql() -> str:
    """The route's statement for the first public bbox page with the default properties
    (read in index order: the whole answer whenever it fits the page, as in these runs)."""
    key = Filters(bbox=BBox(0.0, 0.0, 0.0, 0.0)).key()
    return queries.map_page_sql(key, after=False, ordered=False)


def pgbench_script(boxes: int) -> str:
    """One page per transaction, at a random box; run with ``-D limit=<page size>``."""
    sql = page_sql()
    unknown = set(_BIND.findall(sql)) - set(_BOX_COLUMNS) - {"limit"}
    if unknown:
        raise MapsSqlMissing(f"the bbox page binds {sorted(unknown)}, which the script lacks")
    if ";" in sql:
        raise MapsSqlMissing("the bbox page holds a ';', which pgbench cannot take")
    lookup = f"SELECT {', '.join(_BOX_COLUMNS)} FROM {TABLE} WHERE i = :i \\gset"  # noqa: S608
    one_line = " ".join(line.strip() for line in sql.splitlines())
    return f"\\set i random(0, {boxes - 1})\n{lookup}\n{one_line};\n"
