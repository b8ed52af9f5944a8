"""OGC API - Features, Part 1 (Core + GeoJSON), over the public tickets collection.

So QGIS, ArcGIS, OpenLayers/Leaflet plugins and OWSLib can load tickets with no glue. The
items are the same database-built features as ``/v1/tickets.geojson``; the collection is
public (staff credentials add internal fields, as everywhere).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.auth.principal import CHECK_CREDENTIALS
from app.core.errors import NotFound
from app.db import ReadConnection, ReplicaDbDep
from app.maps import service
from app.maps.deps import OPTIONAL_AUTH, MapPrincipal
from app.maps.http import (
    GEOJSON,
    BBoxParam,
    bbox_of,
    invalid,
    layer_filters,
    limit_query,
    send,
)
from app.maps.queries import Filters
from app.maps.service import MapState
from app.settings import Settings

router = APIRouter(prefix="/v1/ogc", tags=["ogc-api-features"])

COLLECTION = "tickets"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = (
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
)
JSON = "application/json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.1"  # FastAPI writes 3.1
# OWSLib (0.35) and GDAL (3.6) look only for a 3.0 service-desc; the second link names the
# same document for them (they read it as plain JSON, which it is).
OPENAPI_FOR_3_0_CLIENTS = "application/vnd.oai.openapi+json;version=3.0"
MAX_OFFSET = 100_000
# Clients that read the document's `maximum` page by it; a plain request gets a useful page.
DEFAULT_LIMIT = 1_000


def _base(request: Request) -> str:
    settings: Settings = request.app.state.settings
    return settings.public_base_url + "/v1/ogc"


def _state(request: Request) -> MapState:
    state: MapState | None = getattr(request.app.state, "maps", None)
    if state is None:
        state = request.app.state.maps = MapState()
    return state


async def _json(request: Request, document: dict[str, Any]) -> Response:
    settings: Settings = request.app.state.settings
    return await send(
        request, orjson.dumps(document), JSON, max_age=settings.map_cache_max_age_seconds
    )


@router.get(
    "",
    summary="OGC API landing page",
    response_class=Response,
    dependencies=[CHECK_CREDENTIALS],
)
async def landing(request: Request) -> Response:
    base = _base(request)
    settings: Settings = request.app.state.settings
    return await _json(
        request,
        {
            "title": "Kerbside",
            "description": "Reported street problems (tickets) as OGC API - Features",
            "links": [
                {"rel": "self", "type": JSON, "title": "This document", "href": base},
                {
                    "rel": "service-desc",
                    "type": OPENAPI,
                    "title": "The API definition (OpenAPI 3.1)",
                    "href": settings.public_base_url + "/openapi.json",
                },
                {
                    "rel": "service-desc",
                    "type": OPENAPI_FOR_3_0_CLIENTS,
                    "title": "The same definition, for clients that ask for 3.0 (it is 3.1)",
                    "href": settings.public_base_url + "/openapi.json",
                },
                {
                    "rel": "service-doc",
                    "type": "text/html",
                    "title": "The API documentation",
                    "href": settings.public_base_url + "/docs",
                },
                {
                    "rel": "conformance",
                    "type": JSON,
                    "title": "Conformance classes",
                    "href": base + "/conformance",
                },
                {
                    "rel": "data",
                    "type": JSON,
                    "title": "Collections",
                    "href": base + "/collections",
                },
            ],
        },
    )


@router.get(
    "/conformance",
    summary="OGC API conformance classes",
    response_class=Response,
    dependencies=[CHECK_CREDENTIALS],
)
async def conformance(request: Request) -> Response:
    return await _json(request, {"conformsTo": list(CONFORMANCE)})


async def _collection(request: Request, db: ReadConnection) -> dict[str, Any]:
    base = _base(request)
    row = await service.one(
        db,
        "SELECT ST_XMin(e) AS x0, ST_YMin(e) AS y0, ST_XMax(e) AS x1, ST_YMax(e) AS y1,"
        " (SELECT min(first_reported_at) FROM ticket) AS first"
        " FROM (SELECT ST_Extent(boundary) AS e FROM jurisdiction) x",
        {},
    )
    bbox = [[row.x0, row.y0, row.x1, row.y1]] if row.x0 is not None else [[-180, -90, 180, 90]]
    first: datetime | None = row.first
    items = f"{base}/collections/{COLLECTION}/items"
    return {
        "id": COLLECTION,
        "title": "Tickets",
        "description": (
            "Street problems reported by the public, one feature per ticket (reports of the "
            "same problem merged). Public fields only; locations of sensitive services are "
            "generalised. Time is when the problem was first reported."
        ),
        "itemType": "feature",
        "crs": [CRS84],
        "storageCrs": CRS84,
        "extent": {
            "spatial": {"bbox": bbox, "crs": CRS84},
            "temporal": {
                "interval": [[_iso(first) if first else None, None]],
                "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian",
            },
        },
        "links": [
            {"rel": "self", "type": JSON, "href": f"{base}/collections/{COLLECTION}"},
            {"rel": "items", "type": GEOJSON, "title": "Tickets", "href": items},
        ],
    }


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@router.get(
    "/collections",
    summary="The feature collections",
    response_class=Response,
    dependencies=[CHECK_CREDENTIALS],
)
async def collections(request: Request, db: ReplicaDbDep) -> Response:
    base = _base(request)
    return await _json(
        request,
        {
            "links": [{"rel": "self", "type": JSON, "href": base + "/collections"}],
            "collections": [await _collection(request, db)],
        },
    )


def _only_tickets(collection_id: str) -> None:
    if collection_id != COLLECTION:
        raise NotFound(f"No collection {collection_id!r}; there is {COLLECTION!r}")


@router.get(
    "/collections/{collection_id}",
    summary="One feature collection",
    response_class=Response,
    dependencies=[CHECK_CREDENTIALS],
)
async def collection(collection_id: str, request: Request, db: ReplicaDbDep) -> Response:
    _only_tickets(collection_id)
    return await _json(request, await _collection(request, db))


def parse_datetime(value: str) -> tuple[datetime | None, datetime | None]:
    """An OGC ``datetime``: an instant, or a closed interval with ``..`` or empty open ends."""

    def moment(part: str) -> datetime | None:
        if part in ("", ".."):
            return None
        try:
            parsed = datetime.fromisoformat(part.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise invalid("datetime", f"not an RFC 3339 date-time: {part!r}") from None
        if parsed.tzinfo is None:
            raise invalid("datetime", "needs a time zone (e.g. 2026-11-24T00:00:00Z)")
        return parsed

    if "/" in value:
        start_text, _, end_text = value.partition("/")
        start, end = moment(start_text.strip()), moment(end_text.strip())
        if start is not None and end is not None and end < start:
            raise invalid("datetime", "the interval ends before it starts")
        return start, end
    instant = moment(value.strip())
    if instant is None:
        raise invalid("datetime", "an instant or an interval start/end")
    return instant, instant


@router.get(
    "/collections/{collection_id}/items",
    openapi_extra=OPTIONAL_AUTH,
    summary="Tickets of the collection (GeoJSON)",
    description=(
        "`bbox` (any size: a whole city pages through `limit` at a time), `datetime` (first "
        "reported: an instant or a closed interval, `..` for an open end), `limit` (default "
        "1,000; more than the maximum is served as the maximum), then follow the `next` link "
        "(or use `offset`). Also takes the filters of /v1/tickets.geojson: `service`, "
        "`status`, `area`, `jurisdiction`."
    ),
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
async def items(
    collection_id: str,
    request: Request,
    db: ReplicaDbDep,
    principal: MapPrincipal,
    filters: Annotated[Filters, Depends(layer_filters)],
    bbox: BBoxParam = None,
    datetime_: Annotated[str | None, Query(alias="datetime", max_length=100)] = None,
    limit: Annotated[int, limit_query("features per page")] = DEFAULT_LIMIT,
    offset: Annotated[int | None, Query(ge=0, le=MAX_OFFSET)] = None,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    _only_tickets(collection_id)
    settings: Settings = request.app.state.settings
    view = service.view_of(principal)
    filters.bbox = bbox_of(bbox, max_km2=None)  # bounded by the page, not the area
    if datetime_ is not None:
        filters.created_since, filters.created_until = parse_datetime(datetime_)
        filters.created_until_inclusive = True
    page_size = min(limit, settings.map_max_features)
    after: int | None = None
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 19:
            raise invalid("cursor", "not a cursor from a next link", "cursor")
        after = int(cursor)
    elif offset:
        # An offset becomes a keyset position: the id before the first wanted ticket.
        after = await _id_at_offset(db, request, filters, view, offset)
    page = await service.features_page(
        db,
        _state(request),
        view=view,
        filters=filters,
        properties=tuple(view.properties),
        limit=page_size,
        after=after,
        base_url=settings.public_base_url,
    )
    base = f"{_base(request)}/collections/{COLLECTION}/items"
    params = {k: v for k, v in request.query_params.items() if k not in ("cursor", "offset")}
    self_query = urlencode(dict(request.query_params))
    links = [
        {"rel": "self", "type": GEOJSON, "href": base + (f"?{self_query}" if self_query else "")},
        {"rel": "collection", "type": JSON, "href": f"{_base(request)}/collections/{COLLECTION}"},
    ]
    if page.next_after is not None:
        params["cursor"] = str(page.next_after)
        links.append({"rel": "next", "type": GEOJSON, "href": f"{base}?{urlencode(params)}"})
    body = service.feature_collection(page, links)
    return await send(request, body, GEOJSON, max_age=settings.map_cache_max_age_seconds)


async def _id_at_offset(
    db: ReadConnection, request: Request, filters: Filters, view: Any, offset: int
) -> int | None:
    page = await service.features_page(
        db,
        _state(request),
        view=view,
        filters=filters,
        properties=("reference",),
        limit=offset,
        after=None,
        base_url="",
    )
    if page.next_after is None:
        return 2**62  # past the end: an empty page
    return page.next_after


@router.get(
    "/collections/{collection_id}/items/{feature_id}",
    openapi_extra=OPTIONAL_AUTH,
    summary="One ticket as a GeoJSON Feature (id = its reference)",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
async def item(
    collection_id: str,
    feature_id: str,
    request: Request,
    db: ReplicaDbDep,
    principal: MapPrincipal,
) -> Response:
    _only_tickets(collection_id)
    settings: Settings = request.app.state.settings
    feature = await service.feature_by_reference(
        db,
        view=service.view_of(principal),
        reference=feature_id,
        base_url=settings.public_base_url,
    )
    if feature is None:
        raise NotFound(f"No ticket {feature_id}")
    base = f"{_base(request)}/collections/{COLLECTION}"
    links = orjson.dumps(
        [
            {"rel": "self", "type": GEOJSON, "href": f"{base}/items/{feature_id}"},
            {"rel": "collection", "type": JSON, "href": base},
        ]
    )
    body = feature[:-1] + b',"links":' + links + b"}"
    return await send(request, body, GEOJSON, max_age=settings.map_cache_max_age_seconds)
