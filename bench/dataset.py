"""Synthetic datasets: N tickets of the demo city, each with its report and its timeline line.

The demo jurisdiction (districts, services, users) comes from ``app.seed.demo.seed_demo``; the
tickets are bulk-loaded: numbers are generated in Python and ``COPY``-ed into a temporary table,
then three ``INSERT … SELECT`` statements build ``ticket``, ``report`` and ``ticket_event`` rows
of the real shape (reference ``K-YYYY-NNNNNN``, area by point-in-polygon, due times from the
service). Plain secondary indexes are dropped during the load and rebuilt from their own
definitions, so the schema afterwards is exactly the migrated one. 1M tickets load in about
two minutes.

The same run also stores ``bench_point``: fresh points from the same city and hotspots as the
tickets, for the write workloads (HTTP and pgbench read the same points).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import io
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import shapely

from app.seed.demo import DEMO_SLUG, seed_demo
from app.seed.history import SAMPLE_TEXT
from bench.progress import percent, say
from geo.city import make_city

# Bump when the generated rows change shape, so cached bench clusters are rebuilt.
# 5: the cluster grid built; 4: shared_buffers sized to memory; 3: staff API key, work orders
GENERATOR_VERSION = 5
SEED = 2026
WORKLOAD_POINTS = 100_000
DAY = 86_400.0
YEAR = 365 * DAY
SECONDARY_TABLES = ("ticket", "report", "ticket_event", "ticket_map")
_CHUNK = 50_000


@dataclass(frozen=True)
class LoadedDataset:
    tickets: int
    open_tickets: int
    workload_points: int
    seconds: dict[str, float]


def build(url: str, tickets: int, *, workload_points: int = WORKLOAD_POINTS) -> LoadedDataset:
    """Fill the migrated, empty database at ``url`` with the demo city and ``tickets`` tickets."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    _seed_jurisdiction(url)
    timings["jurisdiction"] = time.monotonic() - started

    mark = time.monotonic()
    city = make_city()
    say(f"generating {tickets + workload_points:,} points of the synthetic city")
    # One call, so the workload points share the tickets' hotspots (and some reports join).
    points = city.random_points(tickets + workload_points, seed=SEED)
    timings["points"] = time.monotonic() - mark

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET synchronous_commit = off")
        jurisdiction_id, prefix = _jurisdiction(conn)
        services = conn.execute(
            "SELECT id, code FROM service WHERE jurisdiction_id = %s ORDER BY id",
            (jurisdiction_id,),
        ).fetchall()
        areas = conn.execute(
            "SELECT id, code FROM area WHERE jurisdiction_id = %s AND kind = 'district'",
            (jurisdiction_id,),
        ).fetchall()
        area_ids = _area_ids(city, {code: i for i, code in areas}, points[:tickets])
        first_id = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM ticket").fetchone()[0])

        mark = time.monotonic()
        indexes = secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute("SET session_replication_role = replica")  # rows are consistent by making
        _stage(conn, points[:tickets], area_ids, services, first_id)
        _insert(conn, jurisdiction_id, prefix)
        conn.execute("SET session_replication_role = DEFAULT")
        # The replica role skipped ticket_map's triggers too: its rows in one statement.
        say("building ticket_map rows (the public map's read model)")
        conn.execute(
            "INSERT INTO ticket_map SELECT * FROM ticket_map_source WHERE ticket_id >= %s",
            (first_id,),
        )
        timings["rows"] = time.monotonic() - mark

        mark = time.monotonic()
        for done, (name, definition) in enumerate(indexes, start=1):
            percent(f"rebuilding indexes ({name})", done - 1, len(indexes))
            conn.execute(definition)
        percent("rebuilding indexes", len(indexes), len(indexes))
        timings["indexes"] = time.monotonic() - mark

        _store_workload_points(conn, points[tickets:])
        _work_orders(conn, jurisdiction_id)
        # The worker's refresh_map_grid job, once: low-zoom clusters and tiles read the grid,
        # and no request rebuilds it.
        say("building the cluster grid")
        conn.execute("REFRESH MATERIALIZED VIEW ticket_grid")
        conn.execute(
            "INSERT INTO ticket_grid_refreshed (at) VALUES (statement_timestamp())"
            " ON CONFLICT (one) DO UPDATE SET at = excluded.at"
        )
        mark = time.monotonic()
        say("VACUUM ANALYZE")
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
        timings["vacuum"] = time.monotonic() - mark
        open_count = conn.execute(
            "SELECT count(*) FROM ticket WHERE status IN "
            "('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')"
        ).fetchone()[0]
    timings["total"] = time.monotonic() - started
    return LoadedDataset(
        tickets=tickets,
        open_tickets=int(open_count),
        workload_points=len(points) - tickets,
        seconds={k: round(v, 2) for k, v in timings.items()},
    )


def _seed_jurisdiction(url: str) -> None:
    """The demo jurisdiction, its districts, services, crews and users, with no sample rows."""
    accepted = inspect.signature(seed_demo).parameters
    # The sample count's name has changed before (tickets -> reports); either means "none".
    none = {name: 0 for name in ("reports", "tickets") if name in accepted}
    asyncio.run(seed_demo(url, progress=False, **none))


def secondary_indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(name, CREATE INDEX …) of the loaded tables' plain indexes that back no constraint."""
    rows = conn.execute(
        """
        SELECT c.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relname = ANY(%s) AND t.relnamespace = 'public'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
          -- Partial and expression indexes stay: re-created from pg_get_indexdef, their
          -- predicate would read differently from the migration's (same meaning, other text).
          AND i.indpred IS NULL AND i.indexprs IS NULL
        ORDER BY c.relname
        """,
        (list(SECONDARY_TABLES),),
    ).fetchall()
    return [(str(name), str(definition)) for name, definition in rows]


def _jurisdiction(conn: psycopg.Connection[Any]) -> tuple[int, str]:
    row = conn.execute(
        "SELECT id, reference_prefix FROM jurisdiction WHERE slug = %s", (DEMO_SLUG,)
    ).fetchone()
    if row is None:
        raise RuntimeError("the demo jurisdiction is missing after seeding")
    return int(row[0]), str(row[1])


def _area_ids(
    city: Any, ids: dict[str, int], points: list[tuple[float, float]]
) -> list[int | None]:
    if not points:
        return []
    xs = np.fromiter((p[0] for p in points), dtype=float, count=len(points))
    ys = np.fromiter((p[1] for p in points), dtype=float, count=len(points))
    out: list[int | None] = [None] * len(points)
    for district in city.districts:
        inside = shapely.contains_xy(district.geom, xs, ys)
        area_id = ids.get(district.code)
        for index in np.flatnonzero(inside):
            if out[index] is None:
                out[index] = area_id
    return out


def _status(rng: random.Random, age: float) -> tuple[str, float | None, float | None, float | None]:
    """A plausible status for a ticket ``age`` seconds old, and when it moved (hours/days)."""
    r = rng.random()
    ack = rng.uniform(2, 40) * 3600
    if age < 3 * DAY:
        return ("open", None, None, None) if r < 0.7 else ("acknowledged", ack, None, None)
    if age < 30 * DAY:
        if r < 0.15:
            return ("open", None, None, None)
        if r < 0.40:
            return ("acknowledged", ack, None, None)
        if r < 0.50:
            return ("scheduled", ack, None, None)
        if r < 0.60:
            return ("in_progress", ack, None, None)
        fixed = ack + rng.uniform(1, 8) * DAY
        return ("fixed", ack, fixed, None) if r < 0.95 else ("closed", ack, fixed, fixed + DAY)
    if r < 0.03:
        return ("open", None, None, None)
    if r < 0.06:
        return ("acknowledged", ack, None, None)
    if r < 0.07:
        return ("scheduled", ack, None, None)
    if r < 0.08:
        return ("in_progress", ack, None, None)
    fixed = ack + rng.uniform(1, 20) * DAY
    if r < 0.09:
        return ("reopened", ack, fixed, None)
    if r < 0.59:
        return ("fixed", ack, fixed, None)
    if r < 0.94:
        return ("closed", ack, fixed, fixed + rng.uniform(1, 10) * DAY)
    other = ("duplicate", "not_our_responsibility", "rejected")[int(r * 1000) % 3]
    return (other, ack, None, ack + DAY)


def _stage(
    conn: psycopg.Connection[Any],
    points: list[tuple[float, float]],
    area_ids: list[int | None],
    services: list[tuple[int, str]],
    first_id: int,
) -> None:
    conn.execute(
        """
        CREATE TEMP TABLE bench_load (
            id bigint, lon float8, lat float8, service_id int, area_id int, status text,
            age_s float8, ack_s float8, fixed_s float8, closed_s float8, priority int2,
            description text
        )
        """
    )
    rng = random.Random(SEED)
    total = len(points)

    def cell(value: float | None) -> str:
        return "\\N" if value is None else f"{value:.0f}"

    with conn.cursor().copy("COPY bench_load FROM STDIN") as copy:
        buffer = io.StringIO()
        for n, ((lon, lat), area_id) in enumerate(zip(points, area_ids, strict=True)):
            service_id, code = services[rng.randrange(len(services))]
            # A year of reports, more of them recent (a city that got the app last spring).
            age = YEAR * rng.random() ** 1.3
            status, ack, fixed, closed = _status(rng, age)
            # Nothing happens after now: squeeze a young ticket's history into its age.
            ack = None if ack is None else min(ack, age * 0.5)
            fixed = None if fixed is None else min(fixed, age * 0.9)
            closed = None if closed is None else min(closed, age * 0.95)
            texts = SAMPLE_TEXT.get(code, ["Problem reported"])
            area = "\\N" if area_id is None else str(area_id)
            buffer.write(
                f"{first_id + n}\t{lon}\t{lat}\t{service_id}\t{area}\t{status}\t{age:.0f}\t"
                f"{cell(ack)}\t{cell(fixed)}\t{cell(closed)}\t{rng.choice((2, 3, 3, 3, 4))}\t"
                f"{texts[n % len(texts)]}\n"
            )
            if (n + 1) % _CHUNK == 0 or n + 1 == total:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
                percent("generating tickets", n + 1, total)


def _insert(conn: psycopg.Connection[Any], jurisdiction_id: int, prefix: str) -> None:
    say("building ticket rows")
    conn.execute(
        """
        INSERT INTO ticket (
            id, reference, jurisdiction_id, service_id, area_id, location, description, status,
            priority, report_count, first_reported_at, last_reported_at, acknowledge_due_at,
            resolve_due_at, acknowledged_at, fixed_at, closed_at, created_at, updated_at)
        SELECT b.id,
               %(prefix)s || '-' || to_char(b.reported_at AT TIME ZONE 'UTC', 'YYYY') || '-'
                   || lpad(b.id::text, greatest(6, length(b.id::text)), '0'),
               %(jurisdiction_id)s, b.service_id, b.area_id,
               ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326), b.description, b.status,
               b.priority, 1, b.reported_at, b.reported_at,
               b.reported_at + s.acknowledge_within, b.reported_at + s.resolve_within,
               b.acknowledged_at, b.fixed_at, b.closed_at, b.reported_at,
               greatest(b.reported_at, b.acknowledged_at, b.fixed_at, b.closed_at)
        FROM (
            SELECT l.*, now() - make_interval(secs => l.age_s) AS reported_at,
                   now() - make_interval(secs => l.age_s - l.ack_s) AS acknowledged_at,
                   now() - make_interval(secs => l.age_s - l.fixed_s) AS fixed_at,
                   now() - make_interval(secs => l.age_s - l.closed_s) AS closed_at
            FROM bench_load l
        ) b
        JOIN service s ON s.id = b.service_id
        ORDER BY b.id
        """,
        {"prefix": prefix, "jurisdiction_id": jurisdiction_id},
    )
    say("building report rows")
    conn.execute(
        """
        INSERT INTO report (
            id, ticket_id, jurisdiction_id, service_id, channel, location, location_source,
            description, reported_at, received_at)
        SELECT t.id, t.id, t.jurisdiction_id, t.service_id,
               (ARRAY['app', 'app', 'app', 'app', 'app', 'app', 'app', 'app', 'app', 'app',
                      'app', 'app', 'app', 'app', 'app', 'app', 'web', 'web', 'web', 'phone']
               )[t.id % 20 + 1],
               t.location, 'device', t.description, t.first_reported_at, t.first_reported_at
        FROM ticket t JOIN bench_load l ON l.id = t.id
        ORDER BY t.id
        """
    )
    say("building ticket_event rows")
    conn.execute(
        """
        INSERT INTO ticket_event (ticket_id, kind, public, actor_label, report_id, data,
                                  created_at)
        SELECT r.ticket_id, 'ticket_opened', true, 'bench-load', r.id,
               jsonb_build_object('channel', r.channel), r.reported_at
        FROM report r JOIN bench_load l ON l.id = r.id
        ORDER BY r.id
        """
    )
    for table in ("ticket", "report"):
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"  # noqa: S608 (our names)
            f" (SELECT coalesce(max(id), 1) FROM {table}))"
        )
    conn.execute("DROP TABLE bench_load")


def _store_workload_points(
    conn: psycopg.Connection[Any], points: list[tuple[float, float]]
) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS bench_point (id int PRIMARY KEY, lon float8, lat float8)"
    )
    conn.execute("TRUNCATE bench_point")
    with conn.cursor().copy("COPY bench_point FROM STDIN") as copy:
        for n, (lon, lat) in enumerate(points, start=1):
            copy.write_row((n, lon, lat))


def workload_points(conn: psycopg.Connection[Any]) -> list[tuple[float, float]]:
    """The dataset's fresh points (never used by a loaded ticket), in a fixed order."""
    rows = conn.execute("SELECT lon, lat FROM bench_point ORDER BY id").fetchall()
    return [(float(lon), float(lat)) for lon, lat in rows]


# -- work orders (issue 5): a staff key for the HTTP workloads, and one crew's day of work -----

# Fixed, so the workloads can send it; the bench clusters are local, throwaway and trust-only.
BENCH_STAFF_KEY = "ks_benchstaff0_kerbside-bench-staff-key-not-a-secret"
ROUTE_CREW = "North crew"
ROUTE_STOPS = 50


def _work_orders(conn: psycopg.Connection[Any], jurisdiction_id: int) -> None:
    """A staff API key of the demo city, and 50 open tickets assigned to the North crew."""
    prefix = BENCH_STAFF_KEY.split("_")[1]
    conn.execute(
        "INSERT INTO api_key (jurisdiction_id, name, prefix, key_hash, role)"
        " VALUES (%s, 'bench staff', %s, %s, 'staff') ON CONFLICT (prefix) DO NOTHING",
        (jurisdiction_id, prefix, hashlib.sha256(BENCH_STAFF_KEY.encode()).hexdigest()),
    )
    conn.execute(
        """
        WITH crew AS (SELECT id FROM crew WHERE jurisdiction_id = %(j)s AND name = %(crew)s),
        picked AS (
            SELECT t.id FROM ticket t
            WHERE t.jurisdiction_id = %(j)s
              AND t.status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')
              AND t.area_id IN (SELECT area_id FROM crew_area WHERE crew_id = (TABLE crew))
            ORDER BY t.id LIMIT %(stops)s)
        UPDATE ticket SET crew_id = (TABLE crew), work_status = 'assigned', assigned_at = now()
        WHERE id IN (TABLE picked)
        """,
        {"j": jurisdiction_id, "crew": ROUTE_CREW, "stops": ROUTE_STOPS},
    )
