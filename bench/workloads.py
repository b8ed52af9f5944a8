"""The workloads: what is sent, to which server, on which dataset, and what it is measured against.

A workload is data: an HTTP workload names its server, method, the OpenAPI path it needs (it is
skipped as "not available" while the server lacks it), how to generate its URLs and bodies,
its connections and which duration class it belongs to. A pgbench workload names its script.
Probes (EXPLAIN, in-process photo processing) are functions. Later capabilities add entries to
``HTTP_WORKLOADS`` and ``RATIOS``.
"""

from __future__ import annotations

import math
import random
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import shapely
from shapely.geometry import box, mapping

from bench import intake
from bench.dataset import BENCH_STAFF_KEY
from geo.city import make_city
from geo.distance import degree_box, metres_per_degree
from geo.route import nearest_neighbour, plan_route

# Issue 3's and 6's targets, checked where the workload runs (never a CI failure).
INTAKE_TARGET = {"rps_min": 1000.0, "p99_ms_max": 50.0}
PHOTO_UPLOAD_TARGET = {"p99_ms_max": 150.0, "peak_rss_mb_max": 300.0}
PHOTO_PROCESS_TARGET = {"photos_per_s_min": 8.0}
PHOTO_MEMORY_TARGET = {"peak_rss_mb_max": 300.0}
EXPLAIN_TARGET = {"median_ms_max": 1.0}
# Issue 5: p50 <= 20 ms and >= 300 req/s. Throughput flat out (closed loop), and the p50 at
# the target's rate: 300 req/s offered on a fixed schedule (open loop). Flat out, the p50 is
# the queue the closed loop itself builds (connections / rps), not the latency at 300 req/s.
WORKORDERS_POLYGON_TARGET = {"rps_min": 300.0}
WORKORDERS_POLYGON_RATE = 300.0
WORKORDERS_POLYGON_LATENCY_TARGET = {"p50_ms_max": 20.0}
ROUTE_TARGET = {"median_ms_max": 100.0}
BBOX_FEATURES = 150  # a street-sized box, as issue 6 measures
TILE_ZOOM = 14
VIEWPORT_FEATURES = 2_500  # a z16 map view over a dense city, as issue 6 measures
VIEWPORT_LIMIT = 5_000  # one page holds the whole view
CLUSTER_ZOOMS = (11, 12, 13)  # low zooms: the whole city to a few districts
LOW_ZOOM_TILES = (10, 11, 12)
STREET_BBOX_TARGET = {"rps_min": 1200.0}
VIEWPORT_TARGET = {"rps_min": 120.0}
LOW_ZOOM_TARGET = {"p50_ms_max": 30.0}
EXPORT_MEMORY_TARGET = {"peak_rss_mb_max": 150.0}
# Issue 17: a status change reaches a local fake provider within 5 s (p99, idle worker); two
# workers deliver >= 500 messages/s; a broadcast to 100,000 people is queued within 10 s.
NOTIFY_LATENCY_TARGET = {"p99_ms_max": 5000.0}
NOTIFY_THROUGHPUT_TARGET = {"rps_min": 500.0}
BROADCAST_TARGET = {"queue_seconds_max": 10.0}


@dataclass
class Context:
    """What the generators may read: the dataset's database and its workload points."""

    url: str
    tickets: int
    points: list[tuple[float, float]]
    facts: dict[str, Any] = field(default_factory=dict)  # what generators found (bbox size, …)

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True)


Requests = tuple[list[str], list[bytes] | None]


@dataclass(frozen=True)
class HttpWorkload:
    name: str
    title: str
    server: str  # "kerbside" | "tipg"
    phase: str  # "intake": the write dataset (100k); "map": the read dataset (1M)
    method: str
    openapi_path: str | None  # skipped while the server's OpenAPI lacks it (None: no check)
    generate: Callable[[Context], Requests]
    duration: str  # "write" | "read" | "baseline": the mode says how long each is
    connections: int = 32
    headers: dict[str, str] = field(default_factory=dict)
    unique_header: str | None = None
    fresh_server: bool = False  # its own server process (a clean memory peak)
    timeout_s: float = 5.0  # an answer slower than this counts as a socket error (timeout)
    facts: tuple[str, ...] = ()  # what its generator found, copied into the results
    target: dict[str, float] | None = None
    available: Callable[[Any], str | None] | None = None  # extra check: reason when not
    rate: float | None = None  # requests/s offered on a fixed schedule (None: flat out)
    alongside: str | None = None  # "talk": the talk job runs beside the server (issue 21)


# -- generators --------------------------------------------------------------------------------


def _fixed(path: str) -> Callable[[Context], Requests]:
    return lambda _ctx: ([path], None)


# The last fifth of the points warms the server up; the measured run starts at the first.
WARMUP_SHARE = 0.2


def measured_points(ctx: Context) -> list[tuple[float, float]]:
    return ctx.points[: int(len(ctx.points) * (1 - WARMUP_SHARE))]


def warmup_points(ctx: Context) -> list[tuple[float, float]]:
    return ctx.points[int(len(ctx.points) * (1 - WARMUP_SHARE)) :]


def _intake_json(ctx: Context) -> Requests:
    return ["/v1/reports"], intake.json_bodies(measured_points(ctx))


def _open311_post(ctx: Context) -> Requests:
    """Points, services and texts as ``intake_json`` draws them, as an Open311 client posts
    them (urlencoded, with the bench's API key). It runs after ``intake_json`` on the same
    copy, so it takes the points from the other end: mostly places intake_json has not
    filed yet (``joined_share`` in both results says how many joined)."""
    points = list(reversed(measured_points(ctx)))
    return ["/open311/v2/requests.json"], intake.open311_bodies(points, BENCH_STAFF_KEY)


# Issue 19: a day of requests, as open-data clients pull them.
OPEN311_DAYS = 300


def request_days(ctx: Context, count: int = OPEN311_DAYS) -> list[tuple[str, str]]:
    """Whole UTC days within the dataset's span, drawn at random (the same for both
    servers); facts ``day_tickets_median`` (tickets first reported that day)."""
    cached = ctx.facts.get("_days")
    if cached is not None:
        return list(cached)
    with ctx.connect() as conn:
        first, last = conn.execute(
            "SELECT min(first_reported_at), max(first_reported_at) FROM ticket"
        ).fetchone() or (None, None)
        if first is None or last is None:
            return []
        start = datetime(first.year, first.month, first.day, tzinfo=UTC) + timedelta(days=1)
        span = max(1, (last - start).days)
        rng = random.Random(19)
        days = []
        for _ in range(count):
            day = start + timedelta(days=rng.randrange(span))
            days.append((day, day + timedelta(days=1)))
        counts = [
            conn.execute(
                "SELECT count(*) FROM ticket WHERE first_reported_at >= %s"
                " AND first_reported_at < %s",
                day,
            ).fetchone()[0]
            for day in days[:30]
        ]
    w3c = "%Y-%m-%dT%H:%M:%SZ"
    as_text = [(a.strftime(w3c), b.strftime(w3c)) for a, b in days]
    ctx.facts["_days"] = as_text
    ctx.facts["day_tickets_median"] = statistics.median(counts) if counts else 0
    return as_text


def _open311_requests_day(ctx: Context) -> Requests:
    # end_date is inclusive in Open311: a second before midnight keeps the days apart.
    return [
        f"/open311/v2/requests.json?start_date={a}&end_date={_second_before(b)}"
        for a, b in request_days(ctx)
    ], None


def _native_requests_day(ctx: Context) -> Requests:
    """The same days from the native open-data route: the whole city's bbox (required above
    10,000 tickets), a page of 1,000 features (the Open311 cap)."""
    bounds = _bbox_param(make_city().boundary.bounds)
    return [
        f"/v1/tickets.geojson?bbox={bounds}&created_since={a}&created_until={b}&limit=1000"
        for a, b in request_days(ctx)
    ], None


def _second_before(moment: str) -> str:
    parsed = datetime.strptime(moment, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (parsed - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


# Issue 21: the same intake, each point 85 m nearer the city's middle (past every duplicate
# radius of the demo city, and never out of its boundary), so the second run opens tickets as
# the first did instead of joining the first run's.
MOVE_M = 85.0


def _intake_json_moved(ctx: Context) -> Requests:
    points = measured_points(ctx)
    mid_lon = statistics.fmean(p[0] for p in points)
    mid_lat = statistics.fmean(p[1] for p in points)
    m_lon, m_lat = metres_per_degree(mid_lat)
    moved = []
    for lon, lat in points:
        east, north = (mid_lon - lon) * m_lon, (mid_lat - lat) * m_lat
        away = math.hypot(east, north)
        share = min(1.0, MOVE_M / away) if away else 0.0
        moved.append((lon + share * east / m_lon, lat + share * north / m_lat))
    return ["/v1/reports"], intake.json_bodies(moved)


def _references(ctx: Context) -> Requests:
    with ctx.connect() as conn:
        rows = conn.execute(
            "SELECT reference FROM ticket WHERE id IN (SELECT (random() *"
            " (SELECT max(id) FROM ticket))::bigint FROM generate_series(1, 5000))"
        ).fetchall()
    return [f"/v1/tickets/{r[0]}" for r in rows], None


def street_bboxes(ctx: Context, count: int = 2000) -> list[tuple[float, float, float, float]]:
    """Boxes around workload points, each sized to hold about 150 tickets.

    Density varies tenfold between hotspots and the rest, so one size for all boxes would
    give either empty boxes or thousands of features; a dashboard zoomed to street level
    over either sees on the order of 150. Each box is counted at a probe size and scaled by
    the square root of 150 / count (a box's count grows with its area at street scale).
    """
    return sized_bboxes(ctx, BBOX_FEATURES, count, probe=150.0, sides=(10.0, 600.0), name="bbox")


def sized_bboxes(
    ctx: Context,
    features: int,
    count: int,
    *,
    probe: float,
    sides: tuple[float, float],
    name: str,
) -> list[tuple[float, float, float, float]]:
    """Boxes around workload points sized to hold about ``features`` tickets each (facts
    ``<name>_side_m_median``, ``<name>_features_median``, ``<name>_features_mean``)."""
    cached = ctx.facts.get(f"_{name}es")
    if cached is not None:
        return list(cached)
    boxes = []
    with ctx.connect() as conn:
        for centre in ctx.points[:count]:
            found = _count_in(conn, _bbox(centre, probe))
            side = probe * math.sqrt(features / found) if found else sides[1]
            boxes.append(_bbox(centre, min(max(side, sides[0]), sides[1])))
        check = [_count_in(conn, b) for b in boxes[:300]]
    lengths = sorted(_side_m(b) for b in boxes)
    ctx.facts[f"_{name}es"] = boxes
    ctx.facts[f"{name}_side_m_median"] = round(lengths[len(lengths) // 2], 1) if lengths else 0
    ctx.facts[f"{name}_features_median"] = statistics.median(check) if check else 0
    ctx.facts[f"{name}_features_mean"] = round(statistics.mean(check), 1) if check else 0
    return boxes


def viewport_bboxes(ctx: Context, count: int = 500) -> list[tuple[float, float, float, float]]:
    """Boxes of about 2,500 tickets: a dashboard at zoom 16 over a dense part of the city."""
    return sized_bboxes(
        ctx, VIEWPORT_FEATURES, count, probe=500.0, sides=(100.0, 3000.0), name="viewport"
    )


def view_bboxes(
    ctx: Context, zoom: int, count: int = 200, width_px: int = 1280, height_px: int = 800
) -> list[tuple[float, float, float, float]]:
    """What a ``width_px`` by ``height_px`` map shows at ``zoom`` around workload points."""
    out = []
    for lon, lat in ctx.points[:count]:
        metres_per_px = 40_075_016.7 * math.cos(math.radians(lat)) / (256 * 2**zoom)
        m_lon, m_lat = metres_per_degree(lat)
        half_lon, half_lat = (
            width_px * metres_per_px / 2 / m_lon,
            height_px * metres_per_px / 2 / m_lat,
        )
        out.append(
            (
                round(lon - half_lon, 6),
                round(lat - half_lat, 6),
                round(lon + half_lon, 6),
                round(lat + half_lat, 6),
            )
        )
    return out


def _side_m(b: tuple[float, float, float, float]) -> float:
    m_lon, _ = metres_per_degree((b[1] + b[3]) / 2)
    return (b[2] - b[0]) * m_lon


def _bbox(centre: tuple[float, float], side_m: float) -> tuple[float, float, float, float]:
    m_lon, m_lat = metres_per_degree(centre[1])
    half_lon, half_lat = side_m / 2 / m_lon, side_m / 2 / m_lat
    return (
        round(centre[0] - half_lon, 6),
        round(centre[1] - half_lat, 6),
        round(centre[0] + half_lon, 6),
        round(centre[1] + half_lat, 6),
    )


def _count_in(conn: psycopg.Connection[Any], bbox: tuple[float, float, float, float]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM ticket WHERE location && ST_MakeEnvelope(%s, %s, %s, %s, 4326)",
        bbox,
    ).fetchone()
    return int(row[0]) if row else 0


def city_tiles(zoom: int = TILE_ZOOM) -> list[tuple[int, int, int]]:
    """Every WebMercatorQuad tile at ``zoom`` that overlaps the synthetic city."""
    city = make_city()
    minx, miny, maxx, maxy = city.boundary.bounds
    x0, y1 = _tile_xy(minx, miny, zoom)
    x1, y0 = _tile_xy(maxx, maxy, zoom)
    prepared = city.boundary
    shapely.prepare(prepared)
    out = []
    for x in range(x0, x1 + 1):
        for y in range(y0, y1 + 1):
            if prepared.intersects(box(*_tile_bounds(x, y, zoom))):
                out.append((zoom, x, y))
    return out


def _tile_xy(lon: float, lat: float, zoom: int) -> tuple[int, int]:
    n = 2**zoom
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def _tile_bounds(x: int, y: int, zoom: int) -> tuple[float, float, float, float]:
    n = 2**zoom

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0, lat(y)


def _bbox_param(b: tuple[float, float, float, float]) -> str:
    return ",".join(f"{v:.6f}" for v in b)


def _tipg_items(ctx: Context) -> Requests:
    return [
        f"/collections/public.ticket/items?bbox={_bbox_param(b)}&limit=1000"
        for b in street_bboxes(ctx)
    ], None


def _kerbside_items(ctx: Context) -> Requests:
    return [f"/v1/tickets.geojson?bbox={_bbox_param(b)}" for b in street_bboxes(ctx)], None


def _kerbside_viewport(ctx: Context) -> Requests:
    return [
        f"/v1/tickets.geojson?bbox={_bbox_param(b)}&limit={VIEWPORT_LIMIT}"
        for b in viewport_bboxes(ctx)
    ], None


def _tipg_viewport(ctx: Context) -> Requests:
    return [
        f"/collections/public.ticket/items?bbox={_bbox_param(b)}&limit={VIEWPORT_LIMIT}"
        for b in viewport_bboxes(ctx)
    ], None


def _kerbside_clusters(ctx: Context) -> Requests:
    return [
        f"/v1/tickets/clusters?bbox={_bbox_param(b)}&zoom={zoom}"
        for zoom in CLUSTER_ZOOMS
        for b in view_bboxes(ctx, zoom)
    ], None


def _kerbside_low_tiles(ctx: Context) -> Requests:
    tiles = [t for zoom in LOW_ZOOM_TILES for t in city_tiles(zoom)]
    ctx.facts["low_zoom_tiles"] = len(tiles)
    return [f"/v1/tiles/{z}/{x}/{y}.mvt" for z, x, y in tiles], None


def _tipg_tiles(ctx: Context) -> Requests:
    tiles = city_tiles()
    ctx.facts["tiles"] = len(tiles)
    return [
        f"/collections/public.ticket/tiles/WebMercatorQuad/{z}/{x}/{y}" for z, x, y in tiles
    ], None


def _kerbside_tiles(ctx: Context) -> Requests:
    tiles = city_tiles()
    ctx.facts["tiles"] = len(tiles)
    return [f"/v1/tiles/{z}/{x}/{y}.mvt" for z, x, y in tiles], None


# -- photo upload (multipart) ---------------------------------------------------------------------

_BOUNDARY = "kerbside-bench-" + uuid.uuid4().hex


def multipart_parts(operation: dict[str, Any]) -> tuple[str, str] | None:
    """(JSON part, photo part) names from the operation's multipart schema, if it has one."""
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("multipart/form-data", {}).get("schema", {})
    properties: dict[str, Any] = schema.get("properties", {})
    photo = next(
        (n for n, p in properties.items() if p.get("items", {}).get("format") == "binary"), None
    )
    report = next(
        (n for n, p in properties.items() if n != photo and p.get("type") == "string"), None
    )
    return (report, photo) if report and photo else None


def photo_upload_body(jpeg: bytes, parts: tuple[str, str], lon: float, lat: float) -> bytes:
    report_part, photo_part = parts
    report = orjson.dumps(
        {"service_code": "fly_tipping", "location": {"lon": lon, "lat": lat}, "description": "Sofa"}
    )
    return b"".join(
        [
            f"--{_BOUNDARY}\r\n".encode(),
            f'Content-Disposition: form-data; name="{report_part}"\r\n'.encode(),
            b"Content-Type: application/json\r\n\r\n",
            report,
            f"\r\n--{_BOUNDARY}\r\n".encode(),
            f'Content-Disposition: form-data; name="{photo_part}"; filename="p.jpg"\r\n'.encode(),
            b"Content-Type: image/jpeg\r\n\r\n",
            jpeg,
            f"\r\n--{_BOUNDARY}--\r\n".encode(),
        ]
    )


def _photo_upload(ctx: Context) -> Requests:
    parts = ctx.facts["multipart_parts"]
    jpeg = ctx.facts["photo_jpeg"]
    bodies = [photo_upload_body(jpeg, parts, lon, lat) for lon, lat in measured_points(ctx)[:8]]
    return ["/v1/reports"], bodies


def _multipart_available(server: Any) -> str | None:
    if multipart_parts(server.operation("/v1/reports", "post")) is None:
        return "POST /v1/reports takes no multipart/form-data with photos yet"
    return None


# -- work orders (issue 5) ------------------------------------------------------------------------


def _workorders_polygon(ctx: Context) -> Requests:
    """Every district of the synthetic city as a GeoJSON polygon body, in turn."""
    districts = make_city().districts
    ctx.facts["district_vertices_median"] = statistics.median(
        shapely.get_num_coordinates(d.geom) for d in districts
    )
    bodies = [orjson.dumps(mapping(d.geom)) for d in districts]
    return ["/v1/workorders/search"], bodies


_WORKORDERS_POLYGON = HttpWorkload(
    "workorders_polygon",
    "POST /v1/workorders/search (a district polygon, staff key, 50 a page, 8 connections)",
    "kerbside",
    "map",
    "POST",
    "/v1/workorders/search",
    _workorders_polygon,
    "read",
    # Flat out on 8 connections: how many the server answers (WORKORDERS_POLYGON_TARGET).
    connections=8,
    headers={"Content-Type": "application/json", "X-API-Key": BENCH_STAFF_KEY},
    facts=("district_vertices_median",),
    target=WORKORDERS_POLYGON_TARGET,
)

HTTP_WORKLOADS: tuple[HttpWorkload, ...] = (
    HttpWorkload(
        "healthz",
        "GET /healthz (HTTP stack baseline, no database)",
        "kerbside",
        "intake",
        "GET",
        "/healthz",
        _fixed("/healthz"),
        "baseline",
    ),
    HttpWorkload(
        "readyz",
        "GET /readyz (one database round trip)",
        "kerbside",
        "intake",
        "GET",
        "/readyz",
        _fixed("/readyz"),
        "baseline",
    ),
    HttpWorkload(
        "intake_json",
        "POST /v1/reports, JSON, duplicate check + event",
        "kerbside",
        "intake",
        "POST",
        "/v1/reports",
        _intake_json,
        "write",
        headers={"Content-Type": "application/json"},
        unique_header="Idempotency-Key",
        target=INTAKE_TARGET,
    ),
    HttpWorkload(
        "intake_with_spike_detection",
        "POST /v1/reports, JSON, while the talk job (spike detection) runs every 15 s",
        "kerbside",
        "intake",
        "POST",
        "/v1/reports",
        _intake_json_moved,
        "write",
        headers={"Content-Type": "application/json"},
        unique_header="Idempotency-Key",
        alongside="talk",
    ),
    HttpWorkload(
        "open311_post",
        "POST /open311/v2/requests.json, urlencoded with an API key (beside intake_json)",
        "kerbside",
        "intake",
        "POST",
        "/open311/v2/requests.json",
        _open311_post,
        "write",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        unique_header="Idempotency-Key",
    ),
    HttpWorkload(
        "photo_upload",
        "POST /v1/reports, multipart with one 12 MP JPEG, 8 connections",
        "kerbside",
        "intake",
        "POST",
        "/v1/reports",
        _photo_upload,
        "write",
        connections=8,
        headers={"Content-Type": f"multipart/form-data; boundary={_BOUNDARY}"},
        unique_header="Idempotency-Key",
        fresh_server=True,
        target=PHOTO_UPLOAD_TARGET,
        available=_multipart_available,
    ),
    HttpWorkload(
        "ticket_by_reference",
        "GET /v1/tickets/{reference}",
        "kerbside",
        "map",
        "GET",
        "/v1/tickets/{reference}",
        _references,
        "read",
    ),
    HttpWorkload(
        "kerbside_items_bbox",
        "GET /v1/tickets.geojson?bbox= (street-sized box, ~150 features)",
        "kerbside",
        "map",
        "GET",
        "/v1/tickets.geojson",
        _kerbside_items,
        "read",
        facts=("bbox_side_m_median", "bbox_features_median", "bbox_features_mean"),
        target=STREET_BBOX_TARGET,
    ),
    HttpWorkload(
        "open311_requests_day",
        "GET /open311/v2/requests.json for one day (at most 1,000 requests)",
        "kerbside",
        "map",
        "GET",
        "/open311/v2/requests.json",
        _open311_requests_day,
        "read",
        connections=8,
        facts=("day_tickets_median",),
    ),
    HttpWorkload(
        "native_requests_day",
        "GET /v1/tickets.geojson for the same day (city bbox, limit=1000)",
        "kerbside",
        "map",
        "GET",
        "/v1/tickets.geojson",
        _native_requests_day,
        "read",
        connections=8,
        facts=("day_tickets_median",),
    ),
    HttpWorkload(
        "kerbside_tile_z14",
        "GET /v1/tiles/14/{x}/{y}.mvt (every z14 tile of the city)",
        "kerbside",
        "map",
        "GET",
        "/v1/tiles/{z}/{x}/{y}.mvt",
        _kerbside_tiles,
        "read",
        # A z14 tile of 1M tickets holds thousands of points (megabytes): fewer
        # connections, or they queue past any sensible timeout.
        connections=8,
        timeout_s=15.0,
        facts=("tiles",),
    ),
    HttpWorkload(
        "kerbside_items_z16",
        "GET /v1/tickets.geojson?bbox=&limit=5000 (a z16 view, ~2,500 features)",
        "kerbside",
        "map",
        "GET",
        "/v1/tickets.geojson",
        _kerbside_viewport,
        "read",
        connections=8,
        timeout_s=15.0,
        facts=("viewport_side_m_median", "viewport_features_median", "viewport_features_mean"),
        target=VIEWPORT_TARGET,
    ),
    HttpWorkload(
        "kerbside_clusters_low_zoom",
        "GET /v1/tickets/clusters?bbox=&zoom= (1280x800 views at zoom 11-13)",
        "kerbside",
        "map",
        "GET",
        "/v1/tickets/clusters",
        _kerbside_clusters,
        "read",
        # Latency as a few dashboard users see it, not a queue of 32.
        connections=4,
        target=LOW_ZOOM_TARGET,
    ),
    HttpWorkload(
        "kerbside_tile_low_zoom",
        "GET /v1/tiles/{z}/{x}/{y}.mvt at zoom 10-12 (clusters; every tile of the city)",
        "kerbside",
        "map",
        "GET",
        "/v1/tiles/{z}/{x}/{y}.mvt",
        _kerbside_low_tiles,
        "read",
        connections=4,
        facts=("low_zoom_tiles",),
        target=LOW_ZOOM_TARGET,
    ),
    HttpWorkload(
        "tipg_items_bbox",
        "tipg GET /collections/public.ticket/items?bbox= (same boxes)",
        "tipg",
        "map",
        "GET",
        None,
        _tipg_items,
        "read",
        facts=("bbox_side_m_median", "bbox_features_median", "bbox_features_mean"),
    ),
    HttpWorkload(
        "tipg_tile_z14",
        "tipg GET /collections/public.ticket/tiles/WebMercatorQuad/14/{x}/{y} (same tiles)",
        "tipg",
        "map",
        "GET",
        None,
        _tipg_tiles,
        "read",
        # A z14 tile of 1M tickets holds thousands of points (megabytes): fewer
        # connections, or they queue past any sensible timeout.
        connections=8,
        timeout_s=15.0,
        facts=("tiles",),
    ),
    HttpWorkload(
        "tipg_items_z16",
        "tipg GET /collections/public.ticket/items?bbox=&limit=5000 (same z16 views)",
        "tipg",
        "map",
        "GET",
        None,
        _tipg_viewport,
        "read",
        connections=8,
        timeout_s=15.0,
        facts=("viewport_side_m_median", "viewport_features_median", "viewport_features_mean"),
    ),
    _WORKORDERS_POLYGON,
    # The same 8 clients as the flat-out run, each paced to its share of 300 req/s.
    replace(
        _WORKORDERS_POLYGON,
        name="workorders_polygon_at_300",
        title="POST /v1/workorders/search at 300 req/s offered (fixed schedule: the p50 at the "
        "target's rate)",
        target=WORKORDERS_POLYGON_LATENCY_TARGET,
        rate=WORKORDERS_POLYGON_RATE,
    ),
)

# (numerator, denominator, label): computed within one run.
RATIOS: tuple[tuple[str, str, str], ...] = (
    ("intake_json", "intake_sql_ceiling", "Kerbside ÷ database ceiling"),
    ("intake_with_spike_detection", "intake_json", "with spike detection ÷ without"),
    ("kerbside_items_bbox", "items_bbox_sql_ceiling", "Kerbside ÷ database ceiling"),
    ("kerbside_items_z16", "items_z16_sql_ceiling", "Kerbside ÷ database ceiling"),
    ("workorders_polygon", "workorders_polygon_sql_ceiling", "Kerbside ÷ database ceiling"),
    ("open311_post", "intake_json", "Open311 ÷ native"),
    ("open311_requests_day", "native_requests_day", "Open311 ÷ native"),
    ("kerbside_items_bbox", "tipg_items_bbox", "Kerbside ÷ tipg"),
    ("kerbside_tile_z14", "tipg_tile_z14", "Kerbside ÷ tipg"),
    ("kerbside_items_z16", "tipg_items_z16", "Kerbside ÷ tipg"),
    ("notify_throughput", "notify_ceiling", "Kerbside ÷ bare HTTP loop"),
)


# -- probes -------------------------------------------------------------------------------------


def explain_duplicate_lookup(ctx: Context, runs: int) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of the duplicate check at ``runs`` different points."""
    from sqlalchemy import create_engine, text

    from app.settings import to_sqlalchemy_url

    find = intake.statements().find
    engine = create_engine(to_sqlalchemy_url(ctx.url), connect_args={"prepare_threshold": None})
    now = datetime.now(UTC)
    execution, planning, indexes, rows, read_blocks = [], [], set(), 0, 0
    sample_plan = ""
    try:
        with engine.connect() as conn:
            services = {
                code: (sid, radius, window)
                for sid, code, radius, window in conn.execute(
                    text(
                        "SELECT s.id, s.code, s.duplicate_radius_m, s.duplicate_window"
                        " FROM service s JOIN jurisdiction j ON j.id = s.jurisdiction_id"
                        " WHERE j.slug = 'demo'"
                    )
                )
            }

            def params(i: int) -> dict[str, Any]:
                lon, lat = ctx.points[i % len(ctx.points)]
                sid, radius, window = services[intake.service_for(i)]
                minx, miny, maxx, maxy = degree_box(lon, lat, radius)
                return {
                    "service_id": sid,
                    "lon": lon,
                    "lat": lat,
                    "minx": minx,
                    "miny": miny,
                    "maxx": maxx,
                    "maxy": maxy,
                    "radius_m": radius,
                    "reported_at": now,
                    "window": window,
                    "reopen_within": timedelta(days=14),
                }

            explain = text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + find.text)
            for i in range(min(runs, 20)):  # warm the cache the way a running server has it
                conn.execute(explain, params(i))
            for i in range(runs):
                plan = conn.execute(explain, params(i)).scalar_one()[0]
                execution.append(float(plan["Execution Time"]))
                planning.append(float(plan["Planning Time"]))
                rows += int(plan["Plan"].get("Actual Rows", 0))
                read_blocks += int(plan["Plan"].get("Shared Read Blocks", 0))
                indexes.update(_index_names(plan["Plan"]))
            sample_plan = "\n".join(
                r[0]
                for r in conn.execute(
                    text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + find.text), params(runs // 2)
                )
            )
    finally:
        engine.dispose()
    execution.sort()
    return {
        "runs": runs,
        "execution_ms": {
            "median": round(statistics.median(execution), 4),
            "p95": round(execution[min(len(execution) - 1, int(0.95 * len(execution)))], 4),
            "max": round(execution[-1], 4),
        },
        "planning_ms_median": round(statistics.median(planning), 4),
        "indexes_used": sorted(indexes),
        "matches_found": rows,
        # Blocks read from outside shared_buffers (OS cache or disk): a cold-cache tail.
        "shared_read_blocks": read_blocks,
        "sample_plan": sample_plan,
    }


def _index_names(node: dict[str, Any]) -> set[str]:
    found = {node["Index Name"]} if "Index Name" in node else set()
    for child in node.get("Plans", []):
        found |= _index_names(child)
    return found


def route_probe(ctx: Context, runs: int) -> dict[str, Any]:
    """``geo.route.plan_route`` over the dataset's 50-stop crew day (bench/dataset.py), timed
    in process: the day route's own cost, without HTTP or the query."""
    with ctx.connect() as conn:
        stops = [
            (float(x), float(y))
            for x, y in conn.execute(
                "SELECT ST_X(location), ST_Y(location) FROM ticket WHERE work_status IS NOT NULL"
                " AND status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')"
                " ORDER BY id LIMIT 50"
            )
        ]
    if len(stops) < 50:  # an older dataset: 50 of the workload points instead
        stops = ctx.points[:50]
    rng = random.Random(50)
    timings, lengths = [], []
    for _ in range(runs):
        start = rng.choice(ctx.points)
        started = time.perf_counter()
        route = plan_route(start, stops)
        timings.append((time.perf_counter() - started) * 1000)
        lengths.append(route.total_m / nearest_neighbour(start, stops).total_m)
    timings.sort()
    return {
        "runs": runs,
        "stops": len(stops),
        "execution_ms": {
            "median": round(statistics.median(timings), 2),
            "p95": round(timings[min(len(timings) - 1, int(0.95 * len(timings)))], 2),
            "max": round(timings[-1], 2),
        },
        "length_vs_nearest_neighbour_median": round(statistics.median(lengths), 3),
    }
