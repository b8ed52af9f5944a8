"""Report intake: the JSON bodies wrk posts, and the same transaction's SQL as a pgbench script.

The pgbench script is generated from the statements the application runs
(``app.reports.repository`` and ``app.core.idempotency``), so the ceiling follows the code:

    BEGIN → claim the idempotency key + lock the neighbourhood (one statement)
    → file the report: nearest open ticket, attach or open, report, timeline event,
      subscription (one statement) → store the answer for replays → COMMIT

When those statements change shape, ``pgbench_script`` changes with them (or stops with
``IntakeSqlMissing``, and the run records the ceiling as failed, never a stale figure).

Both runs draw their points in the same order from ``bench_point`` (fresh points of the same
city and hotspots as the loaded tickets), with the same service per point. pgbench reads each
point's precomputed inputs (lock keys, search box: what the Python service computes) from a
small table, one primary-key lookup per transaction before ``BEGIN``; values the HTTP requests
leave empty (address, accuracy, contact, …) are NULL literals in the script.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
import psycopg

from app.seed.history import SAMPLE_TEXT
from app.tickets.priority import priority_for
from geo.distance import degree_box
from geo.grid import cell_size_degrees, lock_keys

SERVICE_CODES = ("pothole", "fly_tipping", "streetlight")
PRINCIPAL = "anonymous"  # what the API records for anonymous clients
# SQLAlchemy's own bind-parameter syntax (sqlalchemy.sql.compiler.BIND_PARAMS).
_BIND = re.compile(r"(?<![:\w\x5c]):(\w+)(?!:)")


class IntakeSqlMissing(RuntimeError):
    """The application does not expose the intake statements the ceiling replays."""


def service_for(index: int) -> str:
    """The service of the ``index``-th (0-based) workload point, in HTTP and pgbench alike."""
    return SERVICE_CODES[index % len(SERVICE_CODES)]


def description_for(index: int) -> str:
    texts = SAMPLE_TEXT[service_for(index)]
    return texts[(index // len(SERVICE_CODES)) % len(texts)]


def json_bodies(points: list[tuple[float, float]]) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "service_code": service_for(i),
                "location": {"lon": lon, "lat": lat},
                "description": description_for(i),
            }
        )
        for i, (lon, lat) in enumerate(points)
    ]


def open311_bodies(points: list[tuple[float, float]], api_key: str) -> list[bytes]:
    """The same reports as ``json_bodies``, as an Open311 client posts them (urlencoded)."""
    return [
        urlencode(
            {
                "api_key": api_key,
                "service_code": service_for(i),
                "lat": repr(lat),
                "long": repr(lon),
                "description": description_for(i),
            }
        ).encode()
        for i, (lon, lat) in enumerate(points)
    ]


@dataclass(frozen=True)
class Statements:
    lock: Any  # claims the idempotency key and locks the neighbourhood
    find: Any  # the duplicate check alone (EXPLAIN workload)
    file_report: Any  # find + attach-or-open + report + event, one statement
    finish: Any


def statements() -> Statements:
    """The intake statements, from the application's modules."""
    try:
        from app.core import idempotency
        from app.reports import repository
    except ImportError as exc:  # pragma: no cover - the app always has them once intake exists
        raise IntakeSqlMissing(f"intake modules not importable: {exc}") from exc
    names = {
        "lock": (repository, "LOCK_NEIGHBOURHOOD"),
        "find": (repository, "FIND_DUPLICATE"),
        "file_report": (repository, "FILE_REPORT"),
        "finish": (idempotency, "FINISH"),
    }
    found: dict[str, Any] = {}
    missing = []
    for key, (module, name) in names.items():
        value = getattr(module, name, None)
        if value is None or not hasattr(value, "text"):
            missing.append(f"{module.__name__}.{name}")
        found[key] = value
    if missing:
        raise IntakeSqlMissing("intake SQL constants not found: " + ", ".join(missing))
    return Statements(**found)


def _pgbench_sql(statement: Any, values: dict[str, str | None]) -> str:
    """The statement's SQL with each bind parameter a pgbench variable, or NULL."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise IntakeSqlMissing(f"the pgbench script has no value for :{name}")
        variable = values[name]
        return "NULL" if variable is None else f":{variable}"

    sql = _BIND.sub(substitute, str(statement.text)).strip()
    if ";" in sql:
        raise IntakeSqlMissing("an intake statement holds a ';', which pgbench cannot take")
    return "\n".join(line.rstrip() for line in sql.splitlines() if line.strip())


# Parameters every statement shares: bound to the variables the first query sets.
_COMMON: dict[str, str | None] = {
    name: name
    for name in (
        "service_id",
        "lon",
        "lat",
        "minx",
        "miny",
        "maxx",
        "maxy",
        "radius_m",
        "window",
        "keys",
        "jurisdiction_id",
        "prefix",
        "description",
        "reported_at",
        "acknowledge_due_at",
        "acknowledge_warn_at",
        "resolve_due_at",
        "resolve_warn_at",
        "priority",
        "reopen_within",
        "channel",
        "location_source",
        "attributes",
        "notify",
        "actor_label",
        "principal",
        "key",
        "request_hash",
        "keep",
        "body",
        "status",
    )
}
# What an anonymous JSON report without contact leaves empty.
_NULLS: dict[str, str | None] = dict.fromkeys(
    (
        "accuracy_m",
        "address",
        "address_key",
        "street_key",
        "reporter_id",
        "reporter_name",
        "locale",
        "external_id",
        "received_at",
    ),
    None,
)


def pgbench_script(points: int, clients: int) -> str:
    """The intake transaction for ``pgbench -M prepared -D n=0``."""
    sql = statements()
    common = {**_COMMON, **_NULLS}
    filed = {**common, "photos": "photos"}
    finish = {**common, "report_id": "r_report_id"}
    return "\n".join(
        [
            "-- Generated by bench/intake.py from app.reports.repository and",
            "-- app.core.idempotency: the intake transaction of POST /v1/reports.",
            f"\\set k (:n * {clients} + :client_id) % {points} + 1",
            "\\set n :n + 1",
            "\\set key random(1, 9000000000000000000)",
            "SELECT i.*, now() AS reported_at, now() + i.acknowledge_within AS acknowledge_due_at,",
            "       now() + i.acknowledge_within * 0.8 AS acknowledge_warn_at,",
            "       now() + i.resolve_within AS resolve_due_at,",
            "       now() + i.resolve_within * 0.8 AS resolve_warn_at",
            "FROM bench_intake_input i WHERE i.id = :k",
            "\\gset",
            "BEGIN;",
            _pgbench_sql(sql.lock, common) + ";",
            _pgbench_sql(sql.file_report, filed),
            "\\gset r_",
            _pgbench_sql(sql.finish, finish) + ";",
            "COMMIT;",
            "",
        ]
    )


def store_inputs(conn: psycopg.Connection[Any], points: list[tuple[float, float]]) -> None:
    """``bench_intake_input``: per point, what the service computes before its SQL."""
    jurisdiction = conn.execute(
        "SELECT id, reference_prefix,"
        " greatest(abs(ST_YMin(boundary)), abs(ST_YMax(boundary))) FROM jurisdiction"
        " WHERE slug = 'demo'"
    ).fetchone()
    if jurisdiction is None:
        raise RuntimeError("the demo jurisdiction is missing")
    jurisdiction_id, prefix, max_abs_lat = jurisdiction
    services = {
        code: (sid, float(radius), window, ack, resolve, priority_for(hazard * 10), reopen)
        for sid, code, radius, window, ack, resolve, hazard, reopen in conn.execute(
            "SELECT id, code, duplicate_radius_m, duplicate_window, acknowledge_within,"
            " resolve_within, hazard_level, reopen_within FROM service"
            " WHERE jurisdiction_id = %s",
            (jurisdiction_id,),
        )
    }
    conn.execute("DROP TABLE IF EXISTS bench_intake_input")
    conn.execute(
        """
        CREATE TABLE bench_intake_input (
            id int PRIMARY KEY, service_id int, lon float8, lat float8, minx float8,
            miny float8, maxx float8, maxy float8, radius_m float8, "window" interval,
            keys int4[], jurisdiction_id int, prefix text, description text,
            acknowledge_within interval, resolve_within interval, channel text,
            location_source text, attributes text, notify bool, actor_label text,
            principal text, request_hash text, keep interval, body bytea, status int,
            photos int, priority int, reopen_within interval
        )
        """
    )
    body = b'{"report": {}, "ticket": {}, "joined_existing": false}'.ljust(1500, b" ")
    with conn.cursor().copy("COPY bench_intake_input FROM STDIN") as copy:
        for i, (lon, lat) in enumerate(points):
            sid, radius, window, ack, resolve, priority, reopen = services[service_for(i)]
            cell = cell_size_degrees(radius, float(max_abs_lat))
            copy.write_row(
                (
                    i + 1,
                    sid,
                    lon,
                    lat,
                    *degree_box(lon, lat, radius),
                    radius,
                    window,
                    lock_keys(lon, lat, radius, cell),
                    jurisdiction_id,
                    prefix,
                    description_for(i),
                    ack,
                    resolve,
                    "app",
                    "device",
                    "{}",
                    False,
                    PRINCIPAL,
                    PRINCIPAL,
                    hashlib.sha256(str(i).encode()).hexdigest(),
                    "48 hours",
                    body,
                    201,
                    0,
                    priority,
                    reopen,
                )
            )
    conn.execute("ANALYZE bench_intake_input")


def report_counts(conn: psycopg.Connection[Any], after_id: int) -> dict[str, Any]:
    """Reports filed after ``after_id``: how many, how many joined an existing ticket."""
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE joined_existing) FROM report WHERE id > %s",
        (after_id,),
    ).fetchone()
    assert row is not None
    reports, joined = int(row[0]), int(row[1])
    share = round(joined / reports, 3) if reports else None
    return {"reports": reports, "joined": joined, "joined_share": share}


def photo_counts(conn: psycopg.Connection[Any], after_id: int) -> dict[str, Any]:
    """Photos of reports filed after ``after_id``, by status, when the measured run ended.

    Uploads are accepted before they are processed, so ``photos_pending`` is the backlog the
    run left behind, and ``photos_ready`` what was processed while it ran.
    """
    rows = conn.execute(
        "SELECT p.status, count(*) FROM photo p JOIN report r ON r.id = p.report_id"
        " WHERE r.id > %s GROUP BY p.status",
        (after_id,),
    ).fetchall()
    by_status = {str(status): int(n) for status, n in rows}
    return {f"photos_{s}": by_status.get(s, 0) for s in ("pending", "ready", "failed")}


def photo_drain(conn: psycopg.Connection[Any], after_id: int, seconds: float) -> dict[str, Any]:
    """How fast the server processes the photos a run left pending, with no other load.

    Watches for up to ``seconds`` (or until none is pending) and returns the photos finished
    (ready or failed) per second over that time.
    """
    query = (
        "SELECT count(*) FILTER (WHERE p.status = 'pending'), count(*) FROM photo p"
        " JOIN report r ON r.id = p.report_id WHERE r.id > %s"
    )

    def pending() -> int:
        row = conn.execute(query, (after_id,)).fetchone()
        assert row is not None
        return int(row[0])

    start, began = pending(), time.monotonic()
    left = start
    while left and time.monotonic() - began < seconds:
        time.sleep(0.5)
        left = pending()
    elapsed = time.monotonic() - began
    done = start - left
    return {
        "drain_seconds": round(elapsed, 1),
        "drain_photos": done,
        "drain_photos_per_s": round(done / elapsed, 2) if elapsed else None,
    }


def last_report_id(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) FROM report").fetchone()
    assert row is not None
    return int(row[0])
