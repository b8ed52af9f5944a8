"""HTTP for work orders: search (JSON or GeoJSON, keyset pages), one work order, the crew's
lifecycle steps, and the day route. See docs/workorders.md."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.auth.principal import CrewPrincipal, Principal
from app.core.bodies import JsonBody
from app.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from app.core.models import Int4Id, IsoDatetime
from app.core.query import QueryModel, query_of, query_openapi
from app.db import ReadConnection, ReadDbDep, ReadSessionDep, SessionDep
from app.media.service import PhotoPipeline, StoredPhoto
from app.settings import Settings
from app.tickets.sla import SlaState
from app.workorders import service
from app.workorders.schemas import (
    AcceptIn,
    DayRoute,
    DoneIn,
    MultiPolygonIn,
    PolygonIn,
    ProgressIn,
    Scope,
    SearchArea,
    Sort,
    Step,
    UnableIn,
    WorkOrder,
    WorkOrderPage,
)
from geo.shapes import parse_lonlat

router = APIRouter(prefix="/v1/workorders", tags=["work orders"])

JSON = "application/json"
GEOJSON = "application/geo+json"
Format = Literal["json", "geojson"]

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in", "content": {"application/problem+json": {}}},
    403: {"description": "Not crew or staff; a crew account in no crew; another crew's"},
    400: {"description": "A `cursor` that is not one of a page's `next` links"},
    404: {"description": "No such crew (the `crew` filter), or no such work order"},
    422: {"description": "A filter out of bounds", "content": {"application/problem+json": {}}},
}
_PAGE_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {GEOJSON: {"schema": {"type": "object"}}}}
}


def _dumps(document: Any) -> bytes:
    # Times are UTC (the connections' time zone): RFC 3339 with Z, as the pydantic schemas
    # of the other routes write them.
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _geojson(request: Request, format: Format | None) -> bool:
    if format is not None:
        return format == "geojson"
    return GEOJSON in request.headers.get("accept", "")


class SearchQuery(QueryModel):
    """The query string of a work-order search (GET and POST), validated in one step
    (app.core.query). Every list filter takes repeated parameters or commas:
    status=open&status=scheduled, or status=open,scheduled."""

    status: Annotated[
        list[str] | None, Query(description="Ticket statuses (open ones; default all open)")
    ] = None
    work_status: Annotated[
        list[str] | None,
        Query(description="assigned, accepted, en_route, on_site, unable, or none (no crew)"),
    ] = None
    area: Annotated[list[str] | None, Query(description="Area ids (see GET /v1/areas)")] = None
    service_code: Annotated[
        list[str] | None, Query(alias="service", description="Service codes")
    ] = None
    priority: Annotated[
        list[str] | None,
        Query(
            description="Priorities, 1 to 5",
            json_schema_extra={"items": {"type": "string", "enum": ["1", "2", "3", "4", "5"]}},
        ),
    ] = None
    sla_state: Annotated[
        list[str] | None,
        Query(
            description="ok, warning, breached",
            json_schema_extra={"items": {"type": "string", "enum": [s.value for s in SlaState]}},
        ),
    ] = None
    bbox: Annotated[
        str | None, Query(description="minx,miny,maxx,maxy (lon/lat); edges included")
    ] = None
    near: Annotated[str | None, Query(description="lon,lat: the crew's position")] = None
    radius_m: Annotated[
        float | None,
        Query(
            gt=0,
            description="With near: within this many metres; at most"
            " KERBSIDE_WORKORDERS_MAX_RADIUS_M",
            json_schema_extra={"maximum": Settings.model_fields["workorders_max_radius_m"].default},
        ),
    ] = None
    due_before: Annotated[IsoDatetime | None, Query(description="Resolve due before")] = None
    due_after: Annotated[IsoDatetime | None, Query(description="Resolve due at or after")] = None
    sort: Sort = Sort.priority
    limit: Annotated[int | None, Query(ge=1, description="Page size")] = None
    cursor: Annotated[str | None, Query(description="From the previous page's `next`")] = None
    crew: Annotated[int | None, Query(description="Staff: one crew's territory")] = None
    jurisdiction_id: Annotated[Int4Id | None, Query(description="Admins: one jurisdiction")] = None
    format: Format | None = None

    def search_input(self) -> service.SearchInput:
        return service.SearchInput(
            status=self.status or (),
            work_status=self.work_status or (),
            area=self.area or (),
            service=self.service_code or (),
            priority=self.priority or (),
            sla_state=self.sla_state or (),
            bbox=self.bbox,
            near=self.near,
            radius_m=self.radius_m,
            due_before=self.due_before,
            due_after=self.due_after,
            sort=self.sort,
            limit=self.limit,
            cursor=self.cursor,
        )


SearchQueryDep = Annotated[SearchQuery, Depends(query_of(SearchQuery))]


async def _search(
    request: Request,
    db: ReadConnection,
    principal: Principal,
    given: service.SearchInput,
    *,
    crew: int | None,
    jurisdiction_id: int | None,
    geojson: bool,
) -> Response:
    settings = _settings(request)
    scope = await service.scope_for(db, principal, crew_id=crew, jurisdiction_id=jurisdiction_id)
    search = service.check_search(given, settings, scope)
    # The search is one statement (two by distance): a read-pool connection, no session.
    page = await service.search_work_orders(
        db, scope, search, base_url=settings.public_base_url, geojson=geojson
    )
    next_url = None
    if page.next_cursor is not None:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        query.append(("cursor", page.next_cursor))
        next_url = f"{settings.public_base_url}{request.url.path}?{urlencode(query)}"
    document: dict[str, Any]
    if geojson:
        document = {
            "type": "FeatureCollection",
            "numberReturned": len(page.items),
            "features": page.items,
            "links": [{"rel": "next", "href": next_url, "type": GEOJSON}] if next_url else [],
        }
    else:
        document = {
            "items": page.items,
            "count": len(page.items),
            "sort": search.sort.value,
            "next": next_url,
        }
    headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else None
    return Response(_dumps(document), media_type=GEOJSON if geojson else JSON, headers=headers)


_SEARCH_DESCRIPTION = (
    "Open tickets as work orders. A crew member sees their crew's territory (tickets assigned "
    "to the crew or in one of its areas); staff their jurisdiction (`crew=` narrows to a crew's "
    "territory); admins everything (`jurisdiction_id=` narrows). Sorted by priority (then "
    "resolve due time, then id), by due time, or by distance from `near`. Keyset pages: follow "
    "`next` (also in the `Link` header). GeoJSON with `format=geojson` or "
    "`Accept: application/geo+json`. Every filter is bounded; see docs/workorders.md."
)


@router.get(
    "",
    response_model=WorkOrderPage,
    summary="Work orders: your territory by default, filtered, sorted, paged",
    description=_SEARCH_DESCRIPTION,
    responses={**_PROBLEMS, **_PAGE_CONTENT},
    openapi_extra=query_openapi(SearchQuery),
)
async def list_work_orders(
    request: Request,
    db: ReadDbDep,
    principal: CrewPrincipal,
    query: SearchQueryDep,
) -> Response:
    return await _search(
        request,
        db,
        principal,
        query.search_input(),
        crew=query.crew,
        jurisdiction_id=query.jurisdiction_id,
        geojson=_geojson(request, query.format),
    )


# Read by the route itself: pydantic-core parses and validates the polygon in one pass, a
# third of what FastAPI's json.loads and then validation of the parsed tree cost.
_SEARCH_AREA: JsonBody[PolygonIn | MultiPolygonIn] = JsonBody("SearchArea", SearchArea)


@router.post(
    "/search",
    response_model=WorkOrderPage,
    summary="Work orders inside a polygon (GeoJSON Polygon or MultiPolygon body)",
    description=_SEARCH_DESCRIPTION
    + " The body is the polygon; every other filter is a query parameter, as for GET. To get "
    "the next page, POST the same body to `next`.",
    responses={
        **_PROBLEMS,
        **_PAGE_CONTENT,
        415: {
            "description": "The body is not JSON",
            "content": {"application/problem+json": {}},
        },
    },
    openapi_extra={**query_openapi(SearchQuery), "requestBody": _SEARCH_AREA.openapi()},
)
async def search_work_orders(
    request: Request,
    db: ReadDbDep,
    principal: CrewPrincipal,
    query: SearchQueryDep,
) -> Response:
    polygon = await _SEARCH_AREA.read(request)
    given = replace(query.search_input(), polygon=polygon.model_dump())
    return await _search(
        request,
        db,
        principal,
        given,
        crew=query.crew,
        jurisdiction_id=query.jurisdiction_id,
        geojson=_geojson(request, query.format),
    )


@router.get(
    "/route",
    response_model=DayRoute,
    summary="The day route: the order to visit the crew's open work orders from a start point",
    description=(
        "The crew's assigned, unfinished work orders (assigned, accepted, en route, on site), "
        "the most urgent first up to the route's size limit, ordered to keep the way short: "
        "exact for up to 8 stops, nearest neighbour improved by 2-opt and Or-opt beyond, on "
        "great-circle distances. The route ends at the last stop unless `return_to_start`. "
        "`format=geojson`: a FeatureCollection of the route's LineString and the stops."
    ),
    responses={**_PROBLEMS, **_PAGE_CONTENT},
)
async def day_route(
    request: Request,
    session: ReadSessionDep,
    principal: CrewPrincipal,
    start: Annotated[str, Query(description="lon,lat where the crew sets off")],
    crew: Annotated[int | None, Query(description="Staff and admins: whose route")] = None,
    return_to_start: bool = False,
    format: Format | None = None,
) -> Response:
    settings = _settings(request)
    point, problems = parse_lonlat(start, "start")
    if point is None:
        raise InvalidInput(
            problems[0].message,
            errors=[
                {"field": p.field, "message": p.message, "type": p.type, "in": "query"}
                for p in problems
            ],
        )
    crew_id = await service.route_crew(session, principal, crew)
    planned = await service.day_route(
        session,
        crew_id,
        point,
        max_stops=settings.workorders_route_max_stops,
        return_to_start=return_to_start,
        base_url=settings.public_base_url,
    )
    if _geojson(request, format):
        return Response(_dumps(_route_geojson(planned)), media_type=GEOJSON)
    return Response(_dumps(_route_json(planned)), media_type=JSON)


def _route_json(planned: service.PlannedRoute) -> dict[str, Any]:
    plan = planned.plan
    stops, cumulative = [], 0.0
    for sequence, (index, leg) in enumerate(zip(plan.order, plan.legs_m, strict=False), 1):
        cumulative += leg
        stops.append(
            {
                "sequence": sequence,
                "leg_m": round(leg, 1),
                "cumulative_m": round(cumulative, 1),
                "work_order": planned.work_orders[index],
            }
        )
    return {
        "crew_id": planned.crew_id,
        "start": {"lon": planned.start[0], "lat": planned.start[1]},
        "return_to_start": planned.return_to_start,
        "method": plan.method,
        "total_m": round(plan.total_m, 1),
        "legs_m": [round(leg, 1) for leg in plan.legs_m],
        "truncated": planned.truncated,
        "stops": stops,
    }


def _route_geojson(planned: service.PlannedRoute) -> dict[str, Any]:
    summary = _route_json(planned)
    line = [list(planned.start), *(list(planned.points[i]) for i in planned.plan.order)]
    if planned.return_to_start and planned.points:
        line.append(list(planned.start))
    route_feature = {
        "type": "Feature",
        "id": "route",
        "geometry": {"type": "LineString", "coordinates": line},
        "properties": {k: v for k, v in summary.items() if k != "stops"},
    }
    stop_features = [
        {
            "type": "Feature",
            "id": stop["work_order"]["reference"],
            "geometry": {"type": "Point", "coordinates": list(planned.points[index])},
            "properties": {
                "sequence": stop["sequence"],
                "leg_m": stop["leg_m"],
                "cumulative_m": stop["cumulative_m"],
                "work_order": stop["work_order"],
            },
        }
        for stop, index in zip(summary["stops"], planned.plan.order, strict=True)
    ]
    return {"type": "FeatureCollection", "features": [route_feature, *stop_features]}


@router.get(
    "/{reference}",
    response_model=WorkOrder,
    summary="One work order (any status) within your reach",
    responses={
        **_PROBLEMS,
        200: {"content": {GEOJSON: {"schema": {"type": "object"}}}},
        404: {"description": "No such work order within your reach"},
    },
)
async def get_work_order(
    reference: str,
    request: Request,
    session: ReadSessionDep,
    principal: CrewPrincipal,
    format: Format | None = None,
) -> Response:
    scope = await service.scope_for(session, principal)
    geojson = _geojson(request, format)
    document = await service.get_work_order(
        session,
        scope,
        reference,
        base_url=_settings(request).public_base_url,
        geojson=geojson,
    )
    return Response(_dumps(document), media_type=GEOJSON if geojson else JSON)


# -- the lifecycle ---------------------------------------------------------------------------------

_STEP_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_PROBLEMS,
    403: {"description": "Another crew holds this work order (or not crew/staff)"},
    404: {"description": "No such work order within your reach"},
    409: {"description": "Out of order (see `allowed`), or the ticket is no longer open"},
}


async def _stepped(request: Request, session: SessionDep, reference: str) -> Response:
    # The step has checked the caller's reach already: read the result back whole.
    document = await service.get_work_order(
        session,
        Scope(None, None),
        reference,
        base_url=_settings(request).public_base_url,
    )
    return Response(_dumps(document), media_type=JSON)


@router.post(
    "/{reference}/accept",
    response_model=WorkOrder,
    summary="Accept an assigned work order (assigned → accepted; ticket → scheduled)",
    responses=_STEP_RESPONSES,
)
async def accept(
    reference: str,
    request: Request,
    session: SessionDep,
    principal: CrewPrincipal,
    body: Annotated[AcceptIn | None, Body()] = None,
) -> Response:
    body = body or AcceptIn()
    await service.advance(
        session,
        reference,
        Step.accept,
        actor=principal,
        note=body.note,
        scheduled_for=body.scheduled_for,
    )
    return await _stepped(request, session, reference)


@router.post(
    "/{reference}/en-route",
    response_model=WorkOrder,
    summary="On the way (accepted → en_route; ticket → in_progress)",
    responses=_STEP_RESPONSES,
)
async def en_route(
    reference: str,
    request: Request,
    session: SessionDep,
    principal: CrewPrincipal,
    body: Annotated[ProgressIn | None, Body()] = None,
) -> Response:
    await service.advance(
        session, reference, Step.en_route, actor=principal, note=(body or ProgressIn()).note
    )
    return await _stepped(request, session, reference)


@router.post(
    "/{reference}/on-site",
    response_model=WorkOrder,
    summary="Arrived (en_route → on_site)",
    responses=_STEP_RESPONSES,
)
async def on_site(
    reference: str,
    request: Request,
    session: SessionDep,
    principal: CrewPrincipal,
    body: Annotated[ProgressIn | None, Body()] = None,
) -> Response:
    await service.advance(
        session, reference, Step.on_site, actor=principal, note=(body or ProgressIn()).note
    )
    return await _stepped(request, session, reference)


_DONE_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": DoneIn.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["note"],
                "properties": {
                    # The same fields as the JSON body, with the same bounds.
                    "note": DoneIn.model_json_schema()["properties"]["note"],
                    "internal_note": {"type": "string", "maxLength": 2000},
                    "photos": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "maxItems": Settings.model_fields["max_completion_photos"].default,
                        "description": "After-photos: JPEG, PNG or WebP, stored without metadata",
                    },
                },
            }
        },
    },
}


@router.post(
    "/{reference}/done",
    response_model=WorkOrder,
    summary="Finished (on_site → done; ticket → fixed, the note told to every reporter)",
    description=(
        "JSON `{note, internal_note?}`, or multipart/form-data with the same fields and "
        "`photos` (after-photos). Services with `completion_photo_required` refuse to finish "
        "without at least one photo (422)."
    ),
    openapi_extra={"requestBody": _DONE_BODY},
    responses={
        **_STEP_RESPONSES,
        413: {"description": "A photo too large", "content": {"application/problem+json": {}}},
        415: {"description": "Not JSON or multipart, or a photo of an unsupported type"},
    },
)
async def done(
    reference: str, request: Request, session: SessionDep, principal: CrewPrincipal
) -> Response:
    settings = _settings(request)
    pipeline: PhotoPipeline = request.app.state.photos
    body, uploads = await _read_done(request, settings)
    stored: list[StoredPhoto] = []
    if uploads:
        stored = await pipeline.store(await pipeline.process(uploads))
    try:
        await service.advance(
            session,
            reference,
            Step.done,
            actor=principal,
            note=body.internal_note,
            public_note=body.note,
            photos=stored,
        )
        return await _stepped(request, session, reference)
    except BaseException:
        await pipeline.discard(stored)
        raise


async def _read_done(request: Request, settings: Settings) -> tuple[DoneIn, list[bytes]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    uploads: list[bytes] = []
    raw: Any = None
    if content_type in ("application/json", ""):
        try:
            raw = orjson.loads(await request.body() or b"null")
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(
                f"The body is not JSON: {exc}",
                errors=[{"field": "body", "message": "not JSON", "type": "json_invalid"}],
            ) from None
    elif content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        limit = settings.max_completion_photos
        try:
            form = await request.form(max_files=limit + 1, max_fields=10)
        except StarletteHTTPException as exc:  # the parser's 400: too many files or fields
            raise InvalidInput(
                f"The form is not valid: {exc.detail}",
                errors=[{"field": "photos", "message": str(exc.detail), "type": "too_many"}],
            ) from None
        try:
            raw = {k: v for k in ("note", "internal_note") if isinstance(v := form.get(k), str)}
            files = form.getlist("photos")
            if len(files) > limit:
                raise InvalidInput(
                    f"At most {limit} photos",
                    errors=[{"field": "photos", "message": f"at most {limit}", "type": "too_many"}],
                )
            for index, item in enumerate(files):
                uploads.append(await _read_photo(index, item, settings.max_photo_bytes))
        finally:
            await form.close()
    else:
        raise UnsupportedMediaType(
            "Send application/json, or a form (multipart/form-data with photos)"
            f" (got {content_type})"
        )
    try:
        return DoneIn.model_validate(raw), uploads
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


async def _read_photo(index: int, item: UploadFile | str, max_bytes: int) -> bytes:
    if not isinstance(item, UploadFile):
        raise InvalidInput(
            "photos must be files",
            errors=[{"field": f"photos[{index}]", "message": "not a file", "type": "type_error"}],
        )
    data = await item.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"Photo {index + 1} is larger than {max_bytes // (1024 * 1024)} MiB",
            errors=[
                {"field": f"photos[{index}]", "message": "too large", "type": "too_large_bytes"}
            ],
        )
    return data


@router.post(
    "/{reference}/unable",
    response_model=WorkOrder,
    summary="The crew cannot do it (reason required); staff reassign or follow up",
    responses=_STEP_RESPONSES,
)
async def unable(
    reference: str,
    body: UnableIn,
    request: Request,
    session: SessionDep,
    principal: CrewPrincipal,
) -> Response:
    await service.advance(session, reference, Step.unable, actor=principal, note=body.reason)
    return await _stepped(request, session, reference)
