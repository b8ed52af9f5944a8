"""The district-polygon work-order search's SQL as a pgbench script: the database ceiling of
``workorders_polygon``.

One transaction is what one request runs: the staff API key's lookup (``app.auth.api_keys``)
and the search itself (``app.workorders.repository.search_statement``) for the bench staff's
jurisdiction, the first page, sorted by priority. pgbench reads each district's polygon from a
small table, the same polygons the HTTP run posts. It runs with ``-M extended`` (each search
planned with its own polygon, as the application's unprepared searches are) and with parallel
query and JIT off, as on the application's connections (``app.db.make_engine``). pgbench
reads the rows as text where the application reads them in binary, which costs the
database a little more here than there.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import psycopg
import shapely

from app.auth.api_keys import FIND_API_KEY
from app.workorders.repository import search_statement
from app.workorders.schemas import Scope, Search
from bench.dataset import BENCH_STAFF_KEY
from geo.city import make_city

TABLE = "bench_polygon"
CONNECTION_OPTIONS = "-c jit=off -c max_parallel_workers_per_gather=0"
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class WorkOrdersSqlMissing(RuntimeError):
    """The search changed shape in a way this script does not know how to bind."""


def store_polygons(conn: psycopg.Connection[Any]) -> int:
    """The synthetic city's districts as WKB in ``bench_polygon``; how many."""
    districts = make_city().districts
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.execute(f"CREATE UNLOGGED TABLE {TABLE} (i int PRIMARY KEY, wkb bytea NOT NULL)")
    for i, district in enumerate(districts):
        wkb = shapely.to_wkb(shapely.force_2d(district.geom))
        conn.execute(f"INSERT INTO {TABLE} (i, wkb) VALUES (%s, %s)", (i, wkb))  # noqa: S608
    return len(districts)


def drop_polygons(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")


def staff_jurisdiction(conn: psycopg.Connection[Any]) -> int:
    prefix = BENCH_STAFF_KEY.split("_")[1]
    row = conn.execute("SELECT jurisdiction_id FROM api_key WHERE prefix = %s", (prefix,))
    found = row.fetchone()
    if found is None:
        raise WorkOrdersSqlMissing("the dataset has no bench staff key")
    return int(found[0])


def pgbench_script(polygons: int, jurisdiction_id: int) -> str:
    """One request's statements per transaction, at a random district."""
    sql, params = search_statement(
        Scope(jurisdiction_id, None),
        Search(polygon_wkb=b"bound per transaction"),
        now=datetime.now(UTC),
    )
    literal = {
        "jurisdiction_id": str(int(params["jurisdiction_id"])),
        "limit": str(int(params["limit"])),
    }
    sql = _BIND.sub(lambda m: literal.get(m.group(1), m.group(0)), sql)
    sql = sql.replace(":polygon", ":wkb")
    unknown = set(_BIND.findall(sql)) - {"wkb", "now"}
    if unknown:
        raise WorkOrdersSqlMissing(f"the search binds {sorted(unknown)}, which the script lacks")
    prefix = BENCH_STAFF_KEY.split("_")[1]
    lookup = FIND_API_KEY.text.replace(":prefix", f"'{prefix}'")
    return (
        f"\\set i random(0, {polygons - 1})\n"
        f"SELECT wkb, now() AS now FROM {TABLE} WHERE i = :i \\gset\n"
        f"{lookup};\n"
        f"{' '.join(line.strip() for line in sql.splitlines())};\n"
    )
