"""The admin API (``/v1/admin``): jurisdictions, their areas (GeoJSON in and out) and
services, and the whole city as a city file, with the city file's validation and messages.

Admins read and write every jurisdiction. Staff read their own (403 on another's, and on
every write); crew and citizens get 403, anonymous callers 401. Every GET of one object
sends an ``ETag``; every PUT and DELETE of an existing object needs ``If-Match`` (428
without, 412 when stale; ``*`` overwrites whatever is there). See docs/city-file.md.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, BackgroundTasks, Header, Path, Query, Request, Response

from app.auth.principal import AdminPrincipal, Principal, StaffPrincipal, ensure_same_jurisdiction
from app.cities import admin
from app.cities.admin import (
    AreaFeature,
    JurisdictionDocument,
    JurisdictionSaved,
    JurisdictionSummary,
)
from app.cities.schema import CityFile, Service
from app.cities.service import dump, export
from app.core.errors import InvalidInput, NotAcceptable, NotFound, UnsupportedMediaType
from app.db import SessionDep

router = APIRouter(prefix="/v1/admin", tags=["admin"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_READ: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in", **_PROBLEM},
    403: {"description": "Not staff or admin, or staff of another jurisdiction", **_PROBLEM},
    404: {"description": "No such jurisdiction (or object in it)", **_PROBLEM},
}
_WRITE: dict[int | str, dict[str, Any]] = {
    **_READ,
    403: {"description": "Not an admin", **_PROBLEM},
    412: {"description": "If-Match names an older version: read again", **_PROBLEM},
    422: {
        "description": "Invalid, with each error's path (`errors[].field`); for a city file"
        " also an area it leaves out that holds tickets",
        **_PROBLEM,
    },
    428: {"description": "The object exists and If-Match was not sent", **_PROBLEM},
}
_ETAG = {"ETag": {"description": "The version, for If-Match", "schema": {"type": "string"}}}

Slug = Annotated[str, Path(description="The jurisdiction's slug (Open311 jurisdiction_id)")]
Kind = Annotated[str, Path(pattern=r"^[a-z_]{1,32}$", description="district, ward, …")]
AreaCode = Annotated[str, Path(min_length=1, max_length=64)]
ServiceCode = Annotated[str, Path(pattern=r"^[a-z0-9_.-]{1,64}$")]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="The ETag of your last read; required to change an existing object",
    ),
]
DryRun = Annotated[bool, Query(description="Plan only: change nothing")]
RerouteOpen = Annotated[
    bool, Query(description="Give open tickets the area their point now lies in")
]


def _changed(request: Request, background: BackgroundTasks) -> None:
    """The intake's jurisdiction catalog must see a write: now, and once more after the
    commit (a request between the two would otherwise cache the old state again)."""
    catalog = request.app.state.catalog
    catalog.invalidate()
    background.add_task(catalog.invalidate)


async def _readable(session: SessionDep, principal: Principal, slug: str) -> admin.Found:
    found = await admin.find(session, slug)
    ensure_same_jurisdiction(principal, found.id)
    return found


# -- jurisdictions -------------------------------------------------------------------------


@router.get(
    "/jurisdictions",
    response_model=list[JurisdictionSummary],
    summary="Jurisdictions (staff: their own)",
    responses={401: _READ[401], 403: _READ[403]},
)
async def list_jurisdictions(session: SessionDep, staff: StaffPrincipal) -> Any:
    return await admin.list_jurisdictions(
        session, None if staff.is_admin else (staff.jurisdiction_id or -1)
    )


@router.post(
    "/jurisdictions",
    status_code=201,
    response_model=JurisdictionSaved,
    summary="Create a jurisdiction from its section of the city file and its boundary",
    responses={
        **{k: v for k, v in _WRITE.items() if k not in (404, 412, 428)},
        201: {"description": "Created", "headers": _ETAG},
        409: {"description": "The slug is taken", **_PROBLEM},
    },
)
async def create_jurisdiction(
    body: JurisdictionDocument,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    session: SessionDep,
    _admin: AdminPrincipal,
) -> Any:
    saved = await admin.save_jurisdiction(session, body, create=True)
    _changed(request, background)
    response.headers["ETag"] = admin.document_etag(
        JurisdictionDocument.model_validate(saved.model_dump(include={"jurisdiction", "boundary"}))
    )
    response.headers["Location"] = f"/v1/admin/jurisdictions/{saved.jurisdiction.slug}"
    return saved


@router.get(
    "/jurisdictions/{slug}",
    response_model=JurisdictionDocument,
    summary="A jurisdiction's section of the city file and its boundary",
    responses={**_READ, 200: {"description": "The document", "headers": _ETAG}},
)
async def get_jurisdiction(
    slug: Slug, response: Response, session: SessionDep, staff: StaffPrincipal
) -> Any:
    await _readable(session, staff, slug)
    document = await admin.read_jurisdiction(session, slug)
    assert document is not None
    response.headers["ETag"] = admin.document_etag(document)
    return document


@router.put(
    "/jurisdictions/{slug}",
    response_model=JurisdictionSaved,
    summary="Replace a jurisdiction's section and boundary (If-Match)",
    responses={**_WRITE, 200: {"description": "Saved", "headers": _ETAG}},
)
async def put_jurisdiction(
    slug: Slug,
    body: JurisdictionDocument,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    session: SessionDep,
    _admin: AdminPrincipal,
    if_match: IfMatch = None,
) -> Any:
    if body.jurisdiction.slug != slug:
        raise InvalidInput(
            f"jurisdiction.slug: must be {slug!r}, the jurisdiction of the URL (slugs do not"
            " change)",
            errors=[
                {
                    "field": "jurisdiction.slug",
                    "message": f"must be {slug!r}",
                    "type": "value_error",
                    "in": "body",
                }
            ],
        )
    saved = await admin.save_jurisdiction(session, body, create=False, if_match=if_match)
    _changed(request, background)
    response.headers["ETag"] = admin.document_etag(
        JurisdictionDocument.model_validate(saved.model_dump(include={"jurisdiction", "boundary"}))
    )
    return saved


# -- the whole city --------------------------------------------------------------------------

_YAML = "application/yaml"
_JSON = "application/json"


def _wants_json(accept: str | None) -> bool:
    """Content negotiation between the city file's two forms; YAML unless JSON is preferred."""
    if not accept:
        return False
    offers: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        offers[media.lower()] = q

    def score(media: str) -> float:
        major = media.split("/")[0]
        aliases = [media, "text/yaml", "application/x-yaml"] if media == _YAML else [media]
        found = [offers[m] for m in aliases if m in offers]
        if found:
            return max(found)
        return offers.get(f"{major}/*", offers.get("*/*", 0.0))

    yaml_q, json_q = score(_YAML), score(_JSON)
    if yaml_q <= 0 and json_q <= 0:
        raise NotAcceptable("The city file is served as application/yaml or application/json")
    return json_q > yaml_q


@router.get(
    "/jurisdictions/{slug}/city",
    response_model=CityFile,
    summary="The whole city as a city file (YAML, or JSON by Accept)",
    description="What `kerbside city export SLUG` writes; PUT it back to apply it.",
    responses={
        **_READ,
        200: {
            "description": "The city file",
            "headers": _ETAG,
            # The same document in YAML (clients that read YAML get the same object).
            "content": {_YAML: {"schema": {"$ref": "#/components/schemas/CityFile"}}},
        },
        406: {"description": "Accept allows neither YAML nor JSON", **_PROBLEM},
    },
)
async def get_city(
    slug: Slug,
    session: SessionDep,
    staff: StaffPrincipal,
    # Content negotiation; OpenAPI ignores an Accept parameter, so none is declared.
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    await _readable(session, staff, slug)
    as_json = _wants_json(accept)
    city = await export(session, slug)
    headers = {"ETag": admin.city_etag(city), "Vary": "Accept"}
    if as_json:
        data = {"kerbside": city.kerbside, **city.model_dump(mode="json", exclude_defaults=True)}
        return Response(orjson.dumps(data), media_type=_JSON, headers=headers)
    return Response(dump(city).encode(), media_type=_YAML, headers=headers)


# Documented as JSON (what OpenAPI clients generate code for); YAML is the same document.
_CITY_BODY = {
    "required": True,
    "description": "A city file (docs/city-file.md) as JSON, or as YAML with Content-Type"
    " application/yaml",
    "content": {_JSON: {"schema": {"$ref": "#/components/schemas/CityFile"}}},
}


@router.put(
    "/jurisdictions/{slug}/city",
    summary="Apply a whole city file (YAML or JSON), as `kerbside city apply` does",
    description=(
        "Validates everything, plans, and applies in one transaction, or nothing. Creates the"
        " jurisdiction when it does not exist (201; no If-Match). `dry_run=true` returns the"
        " plan and changes nothing (If-Match is then optional, and checked when sent)."
    ),
    openapi_extra={"requestBody": _CITY_BODY},
    responses={
        **_WRITE,
        200: {"description": "The plan, applied (or not, for a dry run)", "headers": _ETAG},
        201: {"description": "The jurisdiction was created", "headers": _ETAG},
        415: {"description": "Not YAML or JSON", **_PROBLEM},
    },
)
async def put_city(
    slug: Slug,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    session: SessionDep,
    _admin: AdminPrincipal,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
    reroute_open: RerouteOpen = False,
) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in (_YAML, _JSON, "text/yaml", "application/x-yaml"):
        raise UnsupportedMediaType(f"Send the city file as {_YAML} or {_JSON}")
    put = await admin.put_city(
        session,
        slug,
        await request.body(),
        if_match=if_match,
        dry_run=dry_run,
        reroute_open=reroute_open,
    )
    if not dry_run:
        _changed(request, background)
    if put.etag:
        response.headers["ETag"] = put.etag
    if put.created:
        response.status_code = 201
        response.headers["Location"] = f"/v1/admin/jurisdictions/{slug}"
    return put.outcome.as_dict()


# -- areas ---------------------------------------------------------------------------------

_GEOJSON = "application/geo+json"


@router.get(
    "/jurisdictions/{slug}/areas",
    summary="A jurisdiction's areas as a GeoJSON FeatureCollection (RFC 7946)",
    response_class=Response,
    responses={**_READ, 200: {"content": {_GEOJSON: {"schema": {"type": "object"}}}}},
)
async def list_areas(slug: Slug, session: SessionDep, staff: StaffPrincipal) -> Response:
    found = await _readable(session, staff, slug)
    return Response(await admin.areas_geojson(session, found.id), media_type=_GEOJSON)


@router.get(
    "/jurisdictions/{slug}/areas/{kind}/{code}",
    summary="One area as a GeoJSON Feature",
    response_class=Response,
    responses={
        **_READ,
        200: {"content": {_GEOJSON: {"schema": {"type": "object"}}}, "headers": _ETAG},
    },
)
async def get_area(
    slug: Slug, kind: Kind, code: AreaCode, session: SessionDep, staff: StaffPrincipal
) -> Response:
    found = await _readable(session, staff, slug)
    feature = await admin.read_area(session, found.id, kind, code)
    if feature is None:
        raise NotFound(f"No {kind} {code!r} in {slug!r}")
    return Response(
        orjson.dumps(feature), media_type=_GEOJSON, headers={"ETag": admin.etag_of(feature)}
    )


@router.put(
    "/jurisdictions/{slug}/areas/{kind}/{code}",
    summary="Create or replace one area from a GeoJSON Feature",
    description=(
        "Reprojected from `crs` (or the GeoJSON's own `crs` member), repaired where"
        " ST_MakeValid repairs safely, refused otherwise, as the city file's areas are. The"
        " answer is the stored Feature with the foreign members `changes`, `hygiene`"
        " (repairs, parts outside the boundary, overlaps, gaps), `open_tickets_to_reroute`"
        " and `rerouted`."
    ),
    response_class=Response,
    responses={
        **_WRITE,
        200: {"content": {_GEOJSON: {"schema": {"type": "object"}}}, "headers": _ETAG},
        201: {"content": {_GEOJSON: {"schema": {"type": "object"}}}, "headers": _ETAG},
    },
)
async def put_area(
    slug: Slug,
    kind: Kind,
    code: AreaCode,
    body: AreaFeature,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    _admin: AdminPrincipal,
    if_match: IfMatch = None,
    crs: Annotated[
        str | None, Query(pattern=r"^EPSG:[0-9]{4,6}$", description="e.g. EPSG:28992")
    ] = None,
    reroute_open: RerouteOpen = False,
) -> Response:
    found = await admin.find(session, slug)
    put = await admin.put_area(
        session, found, kind, code, body, crs=crs, if_match=if_match, reroute_open=reroute_open
    )
    _changed(request, background)
    etag = admin.etag_of(put.feature)
    answer = {
        **put.feature,
        "changes": put.changes,
        "hygiene": put.hygiene,
        "open_tickets_to_reroute": put.open_tickets_to_reroute,
        "rerouted": put.rerouted,
    }
    headers = {"ETag": etag}
    if put.created:
        headers["Location"] = f"/v1/admin/jurisdictions/{slug}/areas/{kind}/{code}"
    return Response(
        orjson.dumps(answer),
        status_code=201 if put.created else 200,
        media_type=_GEOJSON,
        headers=headers,
    )


@router.delete(
    "/jurisdictions/{slug}/areas/{kind}/{code}",
    status_code=204,
    summary="Delete an area that holds no tickets (If-Match)",
    responses={
        **{k: v for k, v in _WRITE.items() if k != 422},
        409: {"description": "Tickets lie in it, or crews name it", **_PROBLEM},
    },
)
async def delete_area(
    slug: Slug,
    kind: Kind,
    code: AreaCode,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    _admin: AdminPrincipal,
    if_match: IfMatch = None,
) -> Response:
    found = await admin.find(session, slug)
    await admin.delete_area(session, found, kind, code, if_match=if_match)
    _changed(request, background)
    return Response(status_code=204)


# -- services ------------------------------------------------------------------------------


@router.get(
    "/jurisdictions/{slug}/services",
    response_model=list[Service],
    summary="Every service of a jurisdiction, inactive ones too, as the city file has them",
    responses=_READ,
)
async def list_services(slug: Slug, session: SessionDep, staff: StaffPrincipal) -> Any:
    found = await _readable(session, staff, slug)
    return await admin.list_services(session, found.id)


@router.get(
    "/jurisdictions/{slug}/services/{code}",
    response_model=Service,
    summary="One service",
    responses={**_READ, 200: {"description": "The service", "headers": _ETAG}},
)
async def get_service(
    slug: Slug, code: ServiceCode, response: Response, session: SessionDep, staff: StaffPrincipal
) -> Any:
    found = await _readable(session, staff, slug)
    service = await admin.read_service(session, found, code)
    response.headers["ETag"] = admin.service_etag(service)
    return service


@router.post(
    "/jurisdictions/{slug}/services",
    status_code=201,
    response_model=Service,
    summary="Add a service",
    responses={
        **{k: v for k, v in _WRITE.items() if k not in (412, 428)},
        201: {"description": "Created", "headers": _ETAG},
        409: {"description": "A service with this code exists (perhaps inactive)", **_PROBLEM},
    },
)
async def create_service(
    slug: Slug,
    body: Service,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    session: SessionDep,
    _admin: AdminPrincipal,
) -> Any:
    found = await admin.find(session, slug)
    service = await admin.create_service(session, found, body)
    _changed(request, background)
    response.headers["ETag"] = admin.service_etag(service)
    response.headers["Location"] = f"/v1/admin/jurisdictions/{slug}/services/{service.code}"
    return service


@router.put(
    "/jurisdictions/{slug}/services/{code}",
    response_model=Service,
    summary="Replace a service (If-Match); `active: true` brings a deactivated one back",
    responses={**_WRITE, 200: {"description": "Saved", "headers": _ETAG}},
)
async def put_service(
    slug: Slug,
    code: ServiceCode,
    body: Service,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    session: SessionDep,
    _admin: AdminPrincipal,
    if_match: IfMatch = None,
) -> Any:
    found = await admin.find(session, slug)
    service = await admin.update_service(session, found, code, body, if_match)
    _changed(request, background)
    response.headers["ETag"] = admin.service_etag(service)
    return service


@router.delete(
    "/jurisdictions/{slug}/services/{code}",
    status_code=204,
    summary="Deactivate a service (never deleted: tickets name it) (If-Match)",
    responses={k: v for k, v in _WRITE.items() if k != 422},
)
async def deactivate_service(
    slug: Slug,
    code: ServiceCode,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    _admin: AdminPrincipal,
    if_match: IfMatch = None,
) -> Response:
    found = await admin.find(session, slug)
    await admin.deactivate_service(session, found, code, if_match)
    _changed(request, background)
    return Response(status_code=204)
