"""HTTP for maps and open data: GeoJSON, clusters, vector tiles, stats, exports, the dashboard.

See docs/maps.md. Every answer is built by the database and passed through as bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from pydantic import AwareDatetime

from app.auth.principal import CHECK_CREDENTIALS, Principal
from app.core.errors import NotFound
from app.core.query import QueryModel, query_openapi, query_parser
from app.db import ReadConnection, ReplicaDbDep, replica_db, replica_snapshot
from app.maps import service
from app.maps.deps import (
    OPTIONAL_AUTH,
    MapPrincipal,
    map_principal,
)
from app.maps.http import (
    GEOJSON,
    MVT,
    AreaParam,
    BBoxParam,
    BBoxRequired,
    BBoxTooLarge,
    JurisdictionParam,
    ServiceParam,
    SinceParam,
    StatusParam,
    UntilParam,
    accepts_gzip,
    bbox_of,
    gzip_stream,
    invalid,
    layer_filters,
    limit_query,
    send,
    split_list,
    time_filters,
)
from app.maps.ogc import router as ogc_router
from app.maps.queries import CSV_COLUMNS, MAP_PROPERTIES, Filters, View
from app.maps.service import MapState
from app.settings import Settings
from geo.tiles import MAX_ZOOM, Tile, cell_range, cluster_level, valid_tile

log = logging.getLogger("kerbside.maps")

router = APIRouter(tags=["maps"])

STATIC_DIR = Path(__file__).parent / "static"
# The dashboard's files, by the name they are served under (nothing else is served).
STATIC_FILES = {
    "dashboard.js": ("dashboard.js", "text/javascript"),
    "dashboard.css": ("dashboard.css", "text/css"),
    "talk.js": ("talk.js", "text/javascript"),  # the talk panel (app/talk's staff API)
    "maplibre-gl.js": ("vendor/maplibre-gl.js", "text/javascript"),
    "maplibre-gl.css": ("vendor/maplibre-gl.css", "text/css"),
    "maplibre-gl.LICENSE.txt": ("vendor/maplibre-gl.LICENSE.txt", "text/plain"),
}
MAX_CLUSTER_CELLS = 65_536


def _map_state(request: Request) -> MapState:
    state: MapState | None = getattr(request.app.state, "maps", None)
    if state is None:
        state = request.app.state.maps = MapState()
    return state


async def map_state(request: Request) -> MapState:
    return _map_state(request)


MapStateDep = Annotated[MapState, Depends(map_state)]
LayerFilters = Annotated[Filters, Depends(layer_filters)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _url(request: Request, **replace: Any) -> str:
    """This request's URL on the public base, with some query parameters replaced."""
    base = f"{_settings(request).public_base_url}{request.scope['path']}"
    if not replace:  # as sent (parsing and re-encoding the query is a tenth of a page's time)
        query_string = request.scope["query_string"].decode("latin-1")
        return f"{base}?{query_string}" if query_string else base
    params = dict(request.query_params)
    params.update({k: str(v) for k, v in replace.items() if v is not None})
    query = urlencode(params)
    return f"{base}?{query}" if query else base


async def _require_bbox(db: ReadConnection, threshold: int) -> None:
    row = await service.one(
        db,
        "SELECT count(*) AS n FROM (SELECT 1 FROM ticket LIMIT CAST(:n AS int) + 1) x",
        {"n": threshold},
    )
    if int(row.n) > threshold:
        raise BBoxRequired(
            f"There are more than {threshold:,} tickets: send a bbox (or use the bulk export"
            " at /v1/export/tickets.geojson for everything)",
            errors=[{"field": "bbox", "message": "required", "type": "missing", "in": "query"}],
        )


def _properties(value: str | None, view: View) -> tuple[str, ...]:
    allowed = view.properties
    if value is None:
        return view.map_properties
    if value.strip() == "all":
        return tuple(allowed)
    chosen = split_list(value, "properties")
    unknown = [p for p in chosen if p not in allowed]
    if unknown:
        raise invalid(
            "properties",
            f"unknown or not public: {', '.join(unknown)}; valid: {', '.join(allowed)}",
            "unknown_property",
        )
    return tuple(dict.fromkeys(chosen))


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise invalid("cursor", "not a cursor from a next link", "cursor")
    return int(value)


class TicketsQuery(QueryModel):
    """The query string of /v1/tickets.geojson, validated in one step (app.core.query)."""

    bbox: BBoxParam = None
    created_since: SinceParam = None
    created_until: UntilParam = None
    updated_since: SinceParam = None
    updated_until: UntilParam = None
    has_photo: Annotated[
        bool | None, Query(description="only tickets with (or without) a photo")
    ] = None
    properties: Annotated[
        str | None,
        Query(
            description="property names to include, comma-separated, or `all` (default: "
            + ", ".join(MAP_PROPERTIES)
            + "; staff also priority, work_status, crew_id)",
            max_length=2000,
        ),
    ] = None
    limit: Annotated[
        int, limit_query("features per page (default: KERBSIDE_MAP_DEFAULT_FEATURES)")
    ] = Settings.model_fields["map_default_features"].default
    cursor: Annotated[
        str | None, Query(description="from a `next` link", pattern=r"^[0-9]{1,19}$")
    ] = None
    service: ServiceParam = None
    status: StatusParam = None
    area: AreaParam = None
    jurisdiction: JurisdictionParam = None


@router.get(
    "/v1/tickets.geojson",
    openapi_extra={**OPTIONAL_AUTH, **query_openapi(TicketsQuery)},
    response_class=Response,
    summary="Tickets as a GeoJSON FeatureCollection (filters, keyset pages)",
    description=(
        "RFC 7946 GeoJSON built by the database. Filters combine with AND. `bbox` (any size) "
        "is required when there are more tickets than `KERBSIDE_MAP_BBOX_OPTIONAL_BELOW`. "
        "Pages of at most `limit` features are in a stable order; follow the `next` link "
        "until there is none. Staff (bearer token or API key) see their "
        "jurisdiction's internal fields and exact locations; the public sees locations of "
        "sensitive services snapped to the service's grid. ETag / If-None-Match, gzip."
    ),
    responses={
        200: {"content": {GEOJSON: {}}, "description": "A FeatureCollection"},
        304: {"description": "Not modified"},
        400: {"content": {"application/problem+json": {}}, "description": "bbox problems"},
    },
)
async def tickets_geojson(request: Request) -> Response:
    # The busiest route resolves its own inputs: FastAPI's dependency solving cost a quarter
    # of its Python time (measured in-process). openapi_extra declares them all the same.
    query = _tickets_query(request)
    principal = await map_principal(request)
    async with replica_db(request) as db:
        return await _tickets_page(request, db, principal, query)


_tickets_query = query_parser(TicketsQuery)


async def _tickets_page(
    request: Request, db: ReadConnection, principal: Principal | None, query: TicketsQuery
) -> Response:
    settings = _settings(request)
    view = service.view_of(principal)
    filters = await layer_filters(query.service, query.status, query.area, query.jurisdiction)
    # Any bbox (a whole city in QGIS or GDAL): the page size bounds the answer.
    filters.bbox = bbox_of(query.bbox, max_km2=None)
    filters.has_photo = query.has_photo
    time_filters(
        filters, query.created_since, query.created_until, query.updated_since, query.updated_until
    )
    chosen = _properties(query.properties, view)
    limit = query.limit if "limit" in query.model_fields_set else settings.map_default_features
    page_size = min(limit, settings.map_max_features)
    after = _cursor(query.cursor)
    if filters.bbox is None:
        await _require_bbox(db, settings.map_bbox_optional_below)
    page = await service.features_page(
        db,
        _map_state(request),
        view=view,
        filters=filters,
        properties=chosen,
        limit=page_size,
        after=after,
        base_url=settings.public_base_url,
    )
    links = [{"rel": "self", "type": GEOJSON, "href": _url(request)}]
    if page.next_after is not None:
        links.append(
            {"rel": "next", "type": GEOJSON, "href": _url(request, cursor=page.next_after)}
        )
    return await send(
        request,
        service.feature_collection(page, links),
        GEOJSON,
        max_age=settings.map_cache_max_age_seconds,
    )


@router.get(
    "/v1/tickets/clusters",
    openapi_extra=OPTIONAL_AUTH,
    response_class=Response,
    summary="Ticket clusters for a map view: counts per grid cell, per service",
    description=(
        "Tickets in `bbox` grouped into cells of about 64 screen pixels at `zoom` (a Web "
        "Mercator grid), each a Point at the mean position of its tickets with `count` and "
        "`services` ({code: count}). Up to zoom 14 the counts come from a grid the database "
        "keeps (refreshed every `KERBSIDE_MAP_GRID_MAX_AGE_SECONDS`), so a city of a million "
        "tickets answers in milliseconds; from zoom 15 they are counted live, and the bbox "
        "may then cover at most `KERBSIDE_MAP_MAX_BBOX_KM2`."
    ),
    responses={200: {"content": {GEOJSON: {}}}, 304: {"description": "Not modified"}},
)
async def tickets_clusters(
    request: Request,
    db: ReplicaDbDep,
    principal: MapPrincipal,
    state: MapStateDep,
    filters: LayerFilters,
    bbox: Annotated[str, Query(description="minLon,minLat,maxLon,maxLat", max_length=200)],
    zoom: Annotated[int, Query(ge=0, le=MAX_ZOOM, description="the map's zoom level")],
) -> Response:
    settings = _settings(request)
    level = cluster_level(zoom)
    live = level > service.GRID_FINEST_LEVEL
    max_km2 = settings.map_max_bbox_km2 if live else settings.map_max_cluster_bbox_km2
    filters.bbox = bbox_of(bbox, max_km2=max_km2)
    assert filters.bbox is not None
    cx0, cy0, cx1, cy1 = cell_range(filters.bbox.as_tuple(), level)
    if (cx1 - cx0 + 1) * (cy1 - cy0 + 1) > MAX_CLUSTER_CELLS:
        raise BBoxTooLarge(
            f"This bbox holds more than {MAX_CLUSTER_CELLS:,} cells at zoom {zoom}: "
            "send the map's own view and zoom",
        )
    features, count, tickets, cacheable = await service.clusters(
        db, state, view=service.view_of(principal), filters=filters, level=level
    )
    body = b"".join(
        (
            b'{"type":"FeatureCollection","features":[',
            features,
            b'],"numberReturned":',
            str(count).encode(),
            b',"tickets":',
            str(tickets).encode(),
            b',"zoom":',
            str(zoom).encode(),
            b"}",
        )
    )
    return await send(
        request, body, GEOJSON, max_age=settings.map_cache_max_age_seconds, cacheable=cacheable
    )


@router.get(
    "/v1/tiles/{z}/{x}/{y}.mvt",
    openapi_extra=OPTIONAL_AUTH,
    response_class=Response,
    summary="A Mapbox vector tile of tickets (points from zoom 14, clusters below)",
    description=(
        "Layer `tickets` (reference, service_code, status, sla_state; staff also priority, "
        "work_status, crew_id) from `KERBSIDE_MAP_TILE_POINTS_MIN_ZOOM`, at most "
        "`KERBSIDE_MAP_TILE_MAX_POINTS` a tile; below it, layer `clusters` (count, "
        "top_service, services as JSON text). See /v1/tiles.json."
    ),
    responses={200: {"content": {MVT: {}}}, 304: {"description": "Not modified"}},
)
async def vector_tile(
    request: Request,
    db: ReplicaDbDep,
    principal: MapPrincipal,
    state: MapStateDep,
    filters: LayerFilters,
    z: Annotated[int, PathParam(ge=0, le=MAX_ZOOM)],
    x: Annotated[int, PathParam(ge=0)],
    y: Annotated[int, PathParam(ge=0)],
) -> Response:
    problem = valid_tile(z, x, y)
    if problem:
        raise invalid("tile", problem, "tile")
    settings = _settings(request)
    body, cacheable = await service.tile(
        db,
        state,
        view=service.view_of(principal),
        filters=filters,
        tile=Tile(z, x, y),
        points_min_zoom=settings.map_tile_points_min_zoom,
        max_points=settings.map_tile_max_points,
    )
    return await send(
        request, body, MVT, max_age=settings.map_cache_max_age_seconds, cacheable=cacheable
    )


@router.get(
    "/v1/tiles.json",
    dependencies=[CHECK_CREDENTIALS],
    summary="TileJSON 3.0 for the ticket tiles",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
async def tilejson(
    request: Request,
    db: ReplicaDbDep,
    filters: LayerFilters,
    jurisdiction: JurisdictionParam = None,
) -> Response:
    settings = _settings(request)
    extent = await service.one(
        db,
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT"
        " ST_Extent(boundary) AS e FROM jurisdiction"
        " WHERE CAST(:slug AS text) IS NULL OR slug = :slug) x",
        {"slug": jurisdiction},
    )
    bounds = list(extent)
    query = urlencode(dict(request.query_params))
    points = settings.map_tile_points_min_zoom
    document: dict[str, Any] = {
        "tilejson": "3.0.0",
        "name": "Kerbside tickets",
        "description": "Reported street problems: clusters at low zoom, tickets from zoom "
        f"{points}",
        "attribution": "Kerbside",
        "scheme": "xyz",
        "tiles": [
            f"{settings.public_base_url}/v1/tiles/{{z}}/{{x}}/{{y}}.mvt"
            + (f"?{query}" if query else "")
        ],
        "minzoom": 0,
        "maxzoom": max(points, 16),
        "vector_layers": [
            {
                "id": "clusters",
                "description": "Tickets per grid cell",
                "minzoom": 0,
                "maxzoom": max(points - 1, 0),
                "fields": {
                    "count": "Number",
                    "top_service": "String",
                    "services": "String",
                },
            },
            {
                "id": "tickets",
                "description": "One point per ticket",
                "minzoom": points,
                "maxzoom": max(points, 16),
                "fields": {
                    "reference": "String",
                    "service_code": "String",
                    "status": "String",
                    "sla_state": "String",
                },
            },
        ],
    }
    if bounds[0] is not None:
        document["bounds"] = bounds
        document["center"] = [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, 12]
    return await send(
        request,
        orjson.dumps(document),
        "application/json",
        max_age=settings.map_cache_max_age_seconds,
    )


@router.get(
    "/v1/areas.geojson",
    dependencies=[CHECK_CREDENTIALS],
    response_class=Response,
    summary="Areas (districts) as GeoJSON outlines, simplified to about 10 m",
    responses={200: {"content": {GEOJSON: {}}}},
)
async def areas_geojson(
    request: Request, db: ReplicaDbDep, jurisdiction: JurisdictionParam = None
) -> Response:
    body = await service.areas_geojson(db, jurisdiction)
    return await send(request, body, GEOJSON, max_age=_settings(request).map_cache_max_age_seconds)


@router.get(
    "/v1/stats",
    dependencies=[CHECK_CREDENTIALS],
    response_class=Response,
    summary="Transparency figures: counts, medians, service levels, weekly trend",
    description=(
        "Tickets by service, status and area; median time from the first report to "
        "acknowledgement and to the fix; the share acknowledged and fixed within the "
        "service's levels (among tickets whose deadline has passed or that were handled; "
        "duplicates and rejections are left out); tickets opened and fixed per week "
        "(Monday, UTC). Cached for `KERBSIDE_MAP_STATS_CACHE_SECONDS`."
    ),
    responses={200: {"content": {"application/json": {}}}},
)
async def stats(
    request: Request,
    db: ReplicaDbDep,
    state: MapStateDep,
    service_code: Annotated[ServiceParam, Query(alias="service")] = None,
    area: AreaParam = None,
    jurisdiction: JurisdictionParam = None,
    created_since: SinceParam = None,
    created_until: UntilParam = None,
    weeks: Annotated[int, Query(ge=1, le=104, description="weeks of trend")] = 12,
) -> Response:
    settings = _settings(request)
    filters = Filters(
        services=split_list(service_code, "service"),
        areas=split_list(area, "area"),
        jurisdiction=jurisdiction,
    )
    time_filters(filters, created_since, created_until, None, None)
    body = await service.stats(
        db, state, filters=filters, weeks=weeks, cache_s=settings.map_stats_cache_seconds
    )
    return await send(request, body, "application/json", max_age=settings.map_cache_max_age_seconds)


async def _export(
    request: Request,
    filters: Filters,
    fmt: str,
    created_since: AwareDatetime | None,
    created_until: AwareDatetime | None,
    updated_since: AwareDatetime | None,
    updated_until: AwareDatetime | None,
) -> StreamingResponse:
    settings = _settings(request)
    time_filters(filters, created_since, created_until, updated_since, updated_until)
    lines = service.export_lines(
        lambda: replica_snapshot(request),
        filters=filters,
        fmt=fmt,
        base_url=settings.public_base_url,
        batch_rows=settings.map_export_batch_rows,
    )
    # The statement runs (and its first rows arrive) before the answer starts: a database
    # that is down or refuses the filters is a problem answer, not a 200 that breaks off
    # after its header row.
    first = await anext(lines, None)

    async def body() -> Any:
        if fmt == "csv":
            yield (",".join(CSV_COLUMNS) + "\r\n").encode()
        else:
            yield b'{"type":"FeatureCollection","features":[\n'
        try:
            if first is not None:
                yield first
            async for chunk in lines:
                yield chunk
        except Exception:
            # Too late for a status. Re-raised, the server cuts the connection without the
            # chunked body's last chunk, so clients see an incomplete download rather than
            # a file that looks complete; the log says which export broke and why.
            log.exception("export broke off mid-stream", extra={"format": fmt})
            raise
        if fmt != "csv":
            yield b"\n]}\n"

    media = "text/csv; charset=utf-8" if fmt == "csv" else GEOJSON
    headers = {
        "Content-Disposition": f'attachment; filename="tickets.{fmt}"',
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
    }
    stream = body()
    if accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        stream = gzip_stream(stream)
    return StreamingResponse(stream, media_type=media, headers=headers)


_EXPORT_DESCRIPTION = (
    "Every public ticket matching the filters (none: all of them), streamed in id order "
    "from a server-side cursor, so memory stays flat at any size. Public fields and "
    "snapped locations only, whoever asks."
)


@router.get(
    "/v1/export/tickets.csv",
    dependencies=[CHECK_CREDENTIALS],
    response_class=StreamingResponse,
    summary="Bulk export: all public tickets as CSV",
    description=_EXPORT_DESCRIPTION,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_csv(
    request: Request,
    filters: LayerFilters,
    created_since: SinceParam = None,
    created_until: UntilParam = None,
    updated_since: SinceParam = None,
    updated_until: UntilParam = None,
) -> StreamingResponse:
    return await _export(
        request, filters, "csv", created_since, created_until, updated_since, updated_until
    )


@router.get(
    "/v1/export/tickets.geojson",
    dependencies=[CHECK_CREDENTIALS],
    response_class=StreamingResponse,
    summary="Bulk export: all public tickets as one GeoJSON FeatureCollection",
    description=_EXPORT_DESCRIPTION,
    responses={200: {"content": {GEOJSON: {}}}},
)
async def export_geojson(
    request: Request,
    filters: LayerFilters,
    created_since: SinceParam = None,
    created_until: UntilParam = None,
    updated_since: SinceParam = None,
    updated_until: UntilParam = None,
) -> StreamingResponse:
    return await _export(
        request, filters, "geojson", created_since, created_until, updated_since, updated_until
    )


# -- the demo dashboard -------------------------------------------------------------------------


@router.get("/maps", include_in_schema=False, response_class=HTMLResponse)
async def dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html")


@router.get("/maps/config.json", include_in_schema=False)
async def dashboard_config(request: Request) -> Response:
    """What the dashboard page reads before drawing: the deployment's basemap style."""
    settings = _settings(request)
    return Response(
        orjson.dumps({"basemap_style_url": settings.map_basemap_style_url}),
        media_type="application/json",
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/maps/static/{name}", include_in_schema=False)
async def dashboard_file(name: str) -> FileResponse:
    found = STATIC_FILES.get(name)
    if found is None:
        raise NotFound(f"No file {name}")
    path, media = found
    return FileResponse(
        STATIC_DIR / path, media_type=media, headers={"Cache-Control": "public, max-age=3600"}
    )


# After the map routes: the busiest of them (/v1/tickets.geojson) is matched first.
router.include_router(ogc_router)
