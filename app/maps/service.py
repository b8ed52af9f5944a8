"""Maps and open data: run the statements of ``queries`` and shape their bytes into answers.

Nothing here builds a Python object per ticket: the database returns GeoJSON text, tiles or
rows of CSV, and these functions only add the envelope (links, counts) around them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any

import orjson
from psycopg.rows import namedtuple_row, tuple_row

from app.auth.models import Role
from app.auth.principal import Principal
from app.db import HotStatement, ReadConnection, prepare_flag
from app.maps import queries
from app.maps.queries import PUBLIC, Filters, View
from geo.bbox import BBox
from geo.tiles import Tile, cell_range, cell_size_m

log = logging.getLogger("kerbside.maps")

GRID_FINEST_LEVEL = 16  # ticket_grid's finest level (migration 0003)
TILE_CLUSTER_DEPTH = 3  # a low-zoom tile holds 8 by 8 cluster cells (32 px each)
_SNAP_TTL = 30.0


def view_of(principal: Principal | None) -> View:
    """Staff see their own jurisdiction with every field; admins all; everyone else the public."""
    if principal is None or not principal.at_least(Role.staff):
        return PUBLIC
    if principal.is_admin:
        return View(staff=True, jurisdiction_id=None)
    if principal.jurisdiction_id is None:
        return PUBLIC  # staff of no jurisdiction: nothing internal to show
    return View(staff=True, jurisdiction_id=principal.jurisdiction_id)


_statements: dict[str, HotStatement] = {}


def statement(sql: str) -> HotStatement:
    """The prepared-statement wrapper of ``sql`` (statements come from a bounded set)."""
    found = _statements.get(sql)
    if found is None:
        found = _statements[sql] = HotStatement(sql)
    return found


async def one(db: ReadConnection, sql: str, params: dict[str, Any], *, plan: bool = True) -> Any:
    """The first row of ``sql`` (prepared on this connection), or None.

    Results come in binary: tiles and ``convert_to``-ed GeoJSON arrive as the bytes to send,
    with no hex decoding on the way; text is decoded straight from UTF-8. ``plan=False``:
    never prepared, so PostgreSQL plans it for these values every time (see
    ``features_page``).
    """
    prepare = prepare_flag(db) if plan else False
    async with db.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(statement(sql).sql, params, prepare=prepare, binary=True)
        return await cursor.fetchone()


async def all_rows(db: ReadConnection, sql: str, params: dict[str, Any]) -> list[Any]:
    async with db.cursor() as cursor:
        await cursor.execute(statement(sql).sql, params, prepare=prepare_flag(db))
        return await cursor.fetchall()


# -- shared, briefly cached facts --------------------------------------------------------------


@dataclass
class MapState:
    """Per-process memory of the map endpoints (on ``app.state.maps``)."""

    snap_m: float = 0.0
    snap_loaded_at: float = -1e18
    grid_built: bool = False
    stats: dict[tuple[Any, ...], tuple[float, bytes]] | None = None


async def public_snap_pad(db: ReadConnection, state: MapState) -> float:
    """The largest public snapping grid of any service (m): how far a public point may lie
    from its ticket, hence how much to widen a bbox's index prefilter."""
    now = time.monotonic()
    if now - state.snap_loaded_at > _SNAP_TTL:
        row = await one(db, queries.MAX_PUBLIC_SNAP_SQL, {})
        state.snap_m = float(row[0]) if row else 0.0
        state.snap_loaded_at = now
    return state.snap_m


async def grid_built(db: ReadConnection, state: MapState) -> bool:
    """Whether ``ticket_grid`` has been built since the schema was made.

    Until the first build (``refresh_grid``: the seed, an import's job, the worker's
    periodic job) the grid may miss every ticket, so answers from it must not be cached.
    Once built it stays built: the answer is remembered in the process.
    """
    if not state.grid_built:
        state.grid_built = await one(db, queries.GRID_BUILT_SQL, {}) is not None
    return state.grid_built


async def refresh_grid(db: ReadConnection) -> None:
    """Recompute the low-zoom cluster grid from the tickets (about a second at 1M tickets).

    Requests read the previous grid meanwhile (``CONCURRENTLY``). Run by the periodic
    ``refresh_map_grid`` job, the seed and after imports, never by a request.
    """
    await db.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY ticket_grid")
    await db.execute(
        "INSERT INTO ticket_grid_refreshed (at) VALUES (statement_timestamp())"
        " ON CONFLICT (one) DO UPDATE SET at = excluded.at"
    )


# -- features ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    features: bytes  # comma-joined Feature objects
    returned: int
    next_after: int | None


async def features_page(
    db: ReadConnection,
    state: MapState,
    *,
    view: View,
    filters: Filters,
    properties: tuple[str, ...],
    limit: int,
    after: int | None,
    base_url: str,
) -> Page:
    from_map = queries.serves_from_map(view, properties)
    if from_map:
        pad = 0.0  # the read model filters on the public point itself
    else:
        pad = 0.0 if view.staff or filters.bbox is None else await public_snap_pad(db, state)
    key = filters.key()

    def page_sql(ordered: bool) -> str:
        if from_map:
            return queries.map_page_sql(key, after is not None, ordered)
        return queries.features_page_sql(view, properties, key, pad > 0, after is not None, ordered)

    params = queries.filter_params(filters, view, pad)
    params["limit"] = limit
    if after is not None:
        params["after"] = after
    if "url" in properties:
        params["base_url"] = base_url
    # A first page that holds the whole answer (most map views) is read in index order:
    # sorting a z16 view's rows by id cost a fifth of its time (measured). Only when there
    # are more rows than the page holds is it read again in id order, where paging starts.
    # A time window is planned for its values each time. Prepared, PostgreSQL switches to a
    # generic plan after five runs, which cannot tell a day from a year: at 1M tickets a
    # city-wide day then walked the whole point index (3.5 s instead of 0.08 s, measured;
    # migration 0096 has the time indexes the custom plan uses).
    plan = not filters.has_time_window()
    row = await one(db, page_sql(ordered=after is not None), params, plan=plan)
    if after is None and int(row.n) > limit:
        row = await one(db, page_sql(ordered=True), params, plan=plan)
    read = int(row.n)
    features = row.features.encode() if row.features else b""
    if read <= limit:
        return Page(features, read, None)
    # Drop the extra feature (the last). Inside a feature this text cannot occur: quotes in
    # JSON strings are escaped.
    features = features[: features.rfind(b',{"type":"Feature","id":')]
    return Page(features, limit, int(row.max_id) - 1)


def feature_collection(page: Page, links: list[dict[str, str]]) -> bytes:
    return b"".join(
        (
            b'{"type":"FeatureCollection","features":[',
            page.features,
            b'],"numberReturned":',
            str(page.returned).encode(),
            b',"links":',
            orjson.dumps(links),
            b"}",
        )
    )


async def feature_by_reference(
    db: ReadConnection, *, view: View, reference: str, base_url: str
) -> bytes | None:
    properties = tuple(view.properties)
    params: dict[str, Any] = {"reference": reference.upper(), "base_url": base_url}
    if view.staff and view.jurisdiction_id is not None:
        params["scope_jurisdiction_id"] = view.jurisdiction_id
    row = await one(db, queries.feature_by_reference_sql(view, properties), params)
    if row is None and view.staff:
        # Another jurisdiction's ticket: staff see it as the public does.
        return await feature_by_reference(db, view=PUBLIC, reference=reference, base_url=base_url)
    return None if row is None else str(row.feature).encode()


# -- clusters and tiles -------------------------------------------------------------------------


async def _cells_source(
    db: ReadConnection,
    state: MapState,
    *,
    view: View,
    filters: Filters,
    level: int,
    cells: tuple[int, int, int, int],
) -> tuple[str, dict[str, Any], bool]:
    """SQL and parameters of per (cell, service) counts at ``level`` over ``cells``, and
    whether the answer may be cached (not while it comes from a grid never built)."""
    cx0, cy0, cx1, cy1 = cells
    if level <= GRID_FINEST_LEVEL:
        built = await grid_built(db, state)
        scoped = view.staff and view.jurisdiction_id is not None
        params = queries.filter_params(
            Filters(
                services=filters.services,
                statuses=filters.statuses,
                areas=filters.areas,
                jurisdiction=filters.jurisdiction,
            ),
            view,
            0.0,
        )
        params.update(level=level, cx0=cx0, cy0=cy0, cx1=cx1, cy1=cy1)
        return queries.grid_cells_sql(filters.key(), scoped), params, built
    pad = 0.0 if view.staff else await public_snap_pad(db, state)
    params = queries.filter_params(filters, view, pad)
    params.update(level=level, cell_m=cell_size_m(level))
    return queries.live_cells_sql(view, filters.key(), pad > 0), params, True


async def clusters(
    db: ReadConnection,
    state: MapState,
    *,
    view: View,
    filters: Filters,
    level: int,
) -> tuple[bytes, int, int, bool]:
    """(features, clusters, tickets, cacheable): clusters of grid ``level`` cells inside the
    bbox, and whether the answer may be cached (see ``grid_built``)."""
    assert filters.bbox is not None
    cells = cell_range(filters.bbox.as_tuple(), level)
    source, params, cacheable = await _cells_source(
        db, state, view=view, filters=filters, level=level, cells=cells
    )
    row = await one(db, queries.clusters_geojson_sql(source), params)
    return bytes(row.features or b""), int(row.n), int(row.tickets), cacheable


async def tile(
    db: ReadConnection,
    state: MapState,
    *,
    view: View,
    filters: Filters,
    tile: Tile,
    points_min_zoom: int,
    max_points: int,
) -> tuple[bytes, bool]:
    """The MVT of ``tile`` (ticket points from ``points_min_zoom`` on, clusters below), and
    whether it may be cached (see ``grid_built``)."""
    params: dict[str, Any]
    cacheable = True
    if tile.z >= points_min_zoom:
        # The tile's box plus its 64/4096 buffer, so symbols at the edge are drawn whole.
        west, south, east, north = tile.bounds_lonlat()
        bx, by = (east - west) / 64, (north - south) / 64
        bounded = replace(filters, bbox=BBox(west - bx, south - by, east + bx, north + by))
        pad = 0.0 if view.staff else await public_snap_pad(db, state)
        params = queries.filter_params(bounded, view, pad)
        params.update(z=tile.z, x=tile.x, y=tile.y, max_points=max_points)
        row = await one(db, queries.tile_points_sql(view, bounded.key(), pad > 0), params)
    else:
        level = min(tile.z + TILE_CLUSTER_DEPTH, GRID_FINEST_LEVEL)
        source, params, cacheable = await _cells_source(
            db, state, view=view, filters=filters, level=level, cells=tile.cells(level)
        )
        params.update(z=tile.z, x=tile.x, y=tile.y)
        row = await one(db, queries.clusters_mvt_sql(source), params)
    body = bytes(row[0]) if row is not None and row[0] is not None else b""
    return body, cacheable


async def areas_geojson(db: ReadConnection, jurisdiction: str | None) -> bytes:
    row = await one(db, queries.AREAS_SQL, {"jurisdiction": jurisdiction})
    return b"".join(
        (b'{"type":"FeatureCollection","features":[', (row.features or "").encode(), b"]}")
    )


# -- stats --------------------------------------------------------------------------------------


def _rate(met: int, measured: int) -> float | None:
    return round(100.0 * met / measured, 1) if measured else None


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


async def stats(
    db: ReadConnection,
    state: MapState,
    *,
    filters: Filters,
    weeks: int,
    cache_s: float,
) -> bytes:
    """The transparency figures as JSON bytes, cached in the process for ``cache_s``."""
    params = queries.filter_params(filters, PUBLIC, 0)
    key = (filters.key(), orjson.dumps(params, option=orjson.OPT_SORT_KEYS), weeks)
    cache = state.stats if state.stats is not None else {}
    state.stats = cache
    hit = cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < cache_s:
        return hit[1]
    rows = await all_rows(db, queries.stats_sql(filters.key()), params)
    trend = await all_rows(db, queries.weekly_sql(filters.key()), {**params, "weeks": weeks})
    body = orjson.dumps(_stats_document(rows, trend, weeks))
    if len(cache) > 256:
        cache.clear()
    cache[key] = (now, body)
    return body


def _stats_document(rows: list[Any], trend: list[Any], weeks: int) -> dict[str, Any]:
    # Row columns: g_service, g_status, g_area, service, status, area, area_name, n,
    # ack_median_s, fix_median_s, ack_measured, ack_met, fix_measured, fix_met.
    total: dict[str, Any] = {"tickets": 0}
    by_service: list[dict[str, Any]] = []
    by_status: dict[str, int] = {}
    by_area: list[dict[str, Any]] = []

    def figures(r: Any) -> dict[str, Any]:
        return {
            "tickets": int(r[7]),
            "median_seconds_to_acknowledge": _seconds(r[8]),
            "median_seconds_to_fix": _seconds(r[9]),
            "acknowledged_in_time_percent": _rate(int(r[11]), int(r[10])),
            "fixed_in_time_percent": _rate(int(r[13]), int(r[12])),
            "service_level_measured": {"acknowledge": int(r[10]), "fix": int(r[12])},
        }

    for r in rows:
        g_service, g_status, g_area = int(r[0]), int(r[1]), int(r[2])
        if g_service and g_status and g_area:
            total = figures(r)
        elif not g_service:
            by_service.append({"service_code": r[3], **figures(r)})
        elif not g_status:
            by_status[str(r[4])] = int(r[7])
        elif not g_area:
            by_area.append({"area_code": r[5], "area_name": r[6], "tickets": int(r[7])})
    by_service.sort(key=lambda x: str(x["service_code"]))
    by_area.sort(key=lambda x: (x["area_code"] is None, str(x["area_code"])))
    return {
        **total,
        "by_service": by_service,
        "by_status": dict(sorted(by_status.items())),
        "by_area": by_area,
        "weekly": [{"week": w[0], "opened": int(w[1]), "fixed": int(w[2])} for w in trend],
        "weeks": weeks,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# -- export -------------------------------------------------------------------------------------


async def export_lines(
    snapshot: Callable[[], AbstractAsyncContextManager[ReadConnection]],
    *,
    filters: Filters,
    fmt: str,
    base_url: str,
    batch_rows: int,
) -> AsyncIterator[bytes]:
    """Every matching public ticket as CSV rows or GeoJSON features, ``batch_rows`` at a time.

    A server-side cursor inside a transaction of its own (``snapshot``: the request's
    session has ended when a streamed body is sent; ``app.db.replica_snapshot``), so memory
    stays flat whatever the number of tickets.
    """
    params = queries.filter_params(filters, PUBLIC, 0)
    params["base_url"] = base_url
    sql = statement(queries.export_sql(filters.key(), fmt)).sql
    async with (
        snapshot() as driver,
        driver.cursor(name="kerbside_export", row_factory=tuple_row) as cursor,
    ):
        cursor.itersize = batch_rows
        await cursor.execute(sql, params)
        first = True
        while rows := await cursor.fetchmany(batch_rows):
            lines = [r[0] for r in rows]
            if fmt == "csv":
                yield "".join(lines).encode()
            else:
                chunk = ",\n".join(lines)
                yield (chunk if first else ",\n" + chunk).encode()
            first = False
