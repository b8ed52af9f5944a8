"""HTTP for Open311 GeoReport v2 under ``/open311/v2/``: each resource as ``.json``, ``.xml``
and without an extension (XML, or JSON when the Accept header names JSON only).

Routes read their own parameters (query string and form body, as clients send them; see
``params``), so FastAPI validates nothing and every error is Open311's (``errors``). The
OpenAPI operations declare the same parameters, documents and statuses. See docs/open311.md.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.auth.api_keys import authenticate_api_key
from app.auth.principal import Principal
from app.contacts.messages import queue_verifications
from app.core import clock, idempotency
from app.core.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from app.core.ratelimit import client_ip, rate_limit
from app.db import ReadConnection, SessionDep, read_db
from app.geocoding import repository as geocoding
from app.geocoding.service import Gazetteer
from app.media.service import AcceptedUploads, PhotoPipeline, ensure_photo_backlog_below
from app.open311 import media, queries, schemas, service
from app.open311.formats import JSON_TYPE, XML_TYPE, Format, format_of, render, respond
from app.open311.params import FLAG_VALUES, MAX_LENGTH, Params, form_params, invalid, query_params
from app.open311.service import JurisdictionRow
from app.reports.intake import Filed
from app.reports.service import explain, submit_report
from app.settings import Settings
from geo.distance import near_params

router = APIRouter(tags=["open311"])

BASE = "/open311/v2"
# When the interface last changed (discovery's changeset: clients compare it as text).
CHANGESET = "2026-12-04T00:00:00Z"
MAX_IDEMPOTENCY_KEY = 255  # idempotency_record.key
# The jurisdictions' slugs and names change rarely (a city file applied): kept this long.
JURISDICTIONS_TTL_SECONDS = 30.0
MAX_PAGE_SIZE = 10_000  # KERBSIDE_OPEN311_MAX_REQUESTS's own bound


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _format(request: Request) -> Format:
    return format_of(request.url.path, request.headers.get("accept"))


async def _jurisdictions(request: Request, db: ReadConnection) -> list[JurisdictionRow]:
    state = request.app.state
    cached: tuple[float, list[JurisdictionRow]] | None = getattr(
        state, "open311_jurisdictions", None
    )
    if cached is not None and time.monotonic() - cached[0] < JURISDICTIONS_TTL_SECONDS:
        return cached[1]
    found = [JurisdictionRow(r.id, r.slug, r.name) for r in await queries.jurisdictions(db)]
    state.open311_jurisdictions = (time.monotonic(), found)
    return found


async def _jurisdiction(
    request: Request, db: ReadConnection, params: Params, *, required: bool
) -> JurisdictionRow | None:
    given = params.get("jurisdiction_id")
    known = await _jurisdictions(request, db)
    if given is not None and all(j.slug != given for j in known):
        request.app.state.open311_jurisdictions = None  # a new city: look again once
        known = await _jurisdictions(request, db)
    return service.jurisdiction_of(
        known,
        given,
        required=required,
        ignore_unknown=_settings(request).open311_ignore_unknown_jurisdiction,
    )


async def _gazetteer(request: Request, session: AsyncSession, jurisdiction_id: int) -> Gazetteer:
    """The city's street gazetteer, kept as long as the jurisdictions (a city file applied
    changes it; compiling a long street list for every address-only request would not do)."""
    state = request.app.state
    cached: dict[int, tuple[float, Gazetteer]] = getattr(state, "open311_gazetteers", None) or {}
    found = cached.get(jurisdiction_id)
    if found is not None and time.monotonic() - found[0] < JURISDICTIONS_TTL_SECONDS:
        return found[1]
    gazetteer = Gazetteer(await geocoding.streets(session, jurisdiction_id))
    state.open311_gazetteers = cached | {jurisdiction_id: (time.monotonic(), gazetteer)}
    return gazetteer


# -- discovery ----------------------------------------------------------------------------------


async def discovery(request: Request) -> Response:
    settings = _settings(request)
    base = settings.public_base_url
    return respond(
        _format(request),
        "discovery",
        {
            "changeset": CHANGESET,
            "contact": settings.open311_contact
            or f"See the API documentation at {base}/docs (Open311 under {BASE})",
            "key_service": settings.open311_key_service
            or "API keys are issued by the city's staff (POST /v1/api-keys, or"
            " `kerbside api-keys create`)",
            "endpoints": [
                {
                    "specification": service.SPECIFICATION,
                    "url": f"{base}{BASE}",
                    "changeset": CHANGESET,
                    "type": "production",
                    "formats": ["text/xml", "application/json"],
                }
            ],
        },
    )


# -- services -----------------------------------------------------------------------------------


async def services(request: Request) -> Response:
    params = query_params(request)
    async with read_db(request) as db:
        jurisdiction = await _jurisdiction(request, db, params, required=True)
        assert jurisdiction is not None
        rows = await queries.services(db, jurisdiction.id)
    language = service.language_of(params)
    return respond(_format(request), "services", [service.service_item(r, language) for r in rows])


async def service_definition(request: Request) -> Response:
    params = query_params(request)
    code = request.path_params["service_code"]
    async with read_db(request) as db:
        jurisdiction = await _jurisdiction(request, db, params, required=True)
        assert jurisdiction is not None
        rows = await queries.services(db, jurisdiction.id)
    found = next((r for r in rows if r.code == code), None)
    if found is None:
        raise NotFound(f"service_code {code!r} not found in {jurisdiction.slug}")
    return respond(
        _format(request),
        "service_definition",
        {"service_code": found.code, "attributes": service.attribute_items(found.attributes)},
    )


# -- GET requests -------------------------------------------------------------------------------


def _filters(params: Params, settings: Settings) -> queries.RequestFilters:
    filters = queries.RequestFilters()
    ids = params.listed("service_request_id")
    if len(ids) > settings.open311_max_requests:
        raise invalid("service_request_id", f"at most {settings.open311_max_requests} ids")
    filters.service_codes = params.listed("service_code")
    statuses = {s.lower() for s in params.listed("status")}
    if statuses - {"open", "closed"}:
        raise invalid("status", "open, closed, or both comma-separated")
    if len(statuses) == 1:
        filters.open = statuses == {"open"}
    filters.updated_after = params.time_of("updated_after")
    filters.updated_before = params.time_of("updated_before")
    start, end = params.time_of("start_date"), params.time_of("end_date")
    if filters.updated_after is None and filters.updated_before is None:
        start, end = service.window(start, end, now=clock.now(), days=settings.open311_default_days)
    filters.start, filters.end = start, end
    lat, lon = params.number("lat"), params.number("long")
    if (lat is None) != (lon is None):
        raise invalid("lat/long", "send both lat and long")
    # Read whether or not lat/long came (schemathesis: radius=null without them, 200).
    radius = params.number("radius")
    if radius is not None and not 0 < radius <= service.MAX_RADIUS_M:
        raise invalid("radius", f"metres, more than 0 and at most {service.MAX_RADIUS_M:g}")
    if lat is not None and lon is not None:
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise invalid("lat/long", "latitude within ±90, longitude within ±180")
        filters.near = near_params(lon, lat, radius or service.DEFAULT_RADIUS_M)
    filters.bbox = service.bbox_of(params.get("bbox"))
    if ids:
        # The ids override every other filter, once those are read: invalid input is
        # refused even where it would not count (schemathesis: start_date=-2.7e+16 beside
        # service_request_id was answered 200).
        return queries.RequestFilters(references=[i.upper() for i in ids])
    return filters


async def get_requests(request: Request) -> Response:
    params = query_params(request)
    settings = _settings(request)
    cap = settings.open311_max_requests
    filters = _filters(params, settings)
    # More than the cap is served as the cap (a setting: the document cannot say it), as
    # OGC API - Features serves a large ``limit``; beyond the setting's own bound, refused.
    page_size = min(params.integer("page_size", minimum=1, maximum=MAX_PAGE_SIZE) or cap, cap)
    page = params.integer("page", minimum=1, maximum=1_000_000) or 1
    extended = params.flag("extensions")
    async with read_db(request) as db:
        jurisdiction = await _jurisdiction(request, db, params, required=False)
        filters.jurisdiction_id = jurisdiction.id if jurisdiction else None
        rows = await queries.requests(
            db,
            filters,
            extended=extended,
            language=service.language_of(params),
            limit=page_size,
            offset=(page - 1) * page_size,
        )
    base = settings.public_base_url
    return respond(
        _format(request),
        "service_requests",
        [service.request_item(r, base, extended=extended) for r in rows],
    )


async def get_request(request: Request) -> Response:
    params = query_params(request)
    reference = request.path_params["service_request_id"]
    extended = params.flag("extensions")
    filters = queries.RequestFilters(references=[reference.upper()])
    async with read_db(request) as db:
        jurisdiction = await _jurisdiction(request, db, params, required=False)
        filters.jurisdiction_id = jurisdiction.id if jurisdiction else None
        rows = await queries.requests(
            db,
            filters,
            extended=extended,
            language=service.language_of(params),
            limit=1,
            offset=0,
        )
    if not rows:
        raise NotFound(f"service_request_id {reference!r} not found")
    base = _settings(request).public_base_url
    return respond(
        _format(request),
        "service_requests",
        [service.request_item(rows[0], base, extended=extended)],
    )


async def get_token(request: Request) -> Response:
    params = query_params(request)
    token = request.path_params["token"]
    try:
        uuid.UUID(token)
    except ValueError:
        raise NotFound(f"token {token!r} not found") from None
    async with read_db(request) as db:
        jurisdiction = await _jurisdiction(request, db, params, required=False)
        row = await queries.request_of_token(db, token)
    if row is None or (jurisdiction is not None and row.jurisdiction_id != jurisdiction.id):
        raise NotFound(f"token {token!r} not found")
    return respond(
        _format(request),
        "service_requests",
        [{"service_request_id": row.reference, "token": token}],
    )


async def get_updates(request: Request) -> Response:
    """FixMyStreet's pull of status changes (it polls the last two hours)."""
    params = query_params(request)
    settings = _settings(request)
    end = params.time_of("end_date") or clock.now()
    start = params.time_of("start_date")
    if start is None:
        start = end - timedelta(days=1)
    if end < start:
        raise invalid("end_date", "end_date is before start_date")
    async with read_db(request) as db:
        jurisdiction = await _jurisdiction(request, db, params, required=False)
        rows = await queries.updates(
            db,
            start=start,
            end=end,
            jurisdiction_id=jurisdiction.id if jurisdiction else None,
            limit=settings.open311_max_requests,
        )
    return respond(
        _format(request), "service_request_updates", [service.update_item(r) for r in rows]
    )


# -- POST requests ------------------------------------------------------------------------------


def _posted(filed: Filed, extended: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "service_request_id": filed.reference,
        "service_notice": explain(filed),
        "account_id": None,
    }
    if extended:
        item["extended_attributes"] = {
            "detailed_status": filed.ticket.status,
            "joined_existing": filed.joined,
            "reopened": filed.reopened,
            "token": str(filed.report_public_id),
        }
    return item


async def _client(request: Request, params: Params, verb: str) -> tuple[Principal, JurisdictionRow]:
    """The API key's principal and the jurisdiction it acts in: its own, which a
    ``jurisdiction_id`` may name but not change (403)."""
    key = params.get("api_key") or request.headers.get("x-api-key")
    if key is None:
        raise Forbidden(f"api_key is required to {verb} a service request")
    async with read_db(request) as db:
        principal = Principal.of_api_key(await authenticate_api_key(db, key))
        jurisdiction = await _jurisdiction(request, db, params, required=False)
        known = await _jurisdictions(request, db)
    own = next((j for j in known if j.id == principal.jurisdiction_id), None)
    if params.get("jurisdiction_id") is None or jurisdiction is None:
        jurisdiction = own
    if jurisdiction is None or own is None or jurisdiction.id != own.id:
        raise Forbidden(
            f"This api_key can {verb} requests in its own jurisdiction only"
            + (f" ({own.slug})" if own else "")
        )
    return principal, jurisdiction


async def post_request(request: Request, session: SessionDep) -> Response:
    fmt = _format(request)
    settings = _settings(request)
    params = await form_params(
        request,
        max_files=settings.max_photos_per_report,
        max_file_bytes=settings.max_photo_bytes,
    )
    principal, jurisdiction = await _client(request, params, "create")
    code = params.get("service_code")
    if code is None:
        raise BadRequest("service_code is required")
    catalog = request.app.state.catalog
    info = await catalog.by_slug(session, jurisdiction.slug)
    if info is None:
        raise NotFound(f"jurisdiction_id {jurisdiction.slug!r} not found")
    info, found = await catalog.service(session, info, code)
    if found is None:
        raise NotFound(f"service_code {code!r} not found in {jurisdiction.slug}")

    place = await service.place_of(
        params,
        info,
        geocoder=request.app.state.geocoder,
        gazetteer=lambda: _gazetteer(request, session, info.id),
        has_photos=bool(params.files),
    )
    for part in params.files:
        if part.size > settings.max_photo_bytes:
            raise PayloadTooLarge(
                f"media {part.filename!r} is larger than"
                f" {settings.max_photo_bytes // (1024 * 1024)} MiB"
            )
    uploads = [part.data for part in params.files]
    # Uploaded files win over links (the v2.1 draft); links are fetched after filing.
    links = [] if uploads else media.urls_of(params, limit=settings.max_photos_per_report)
    extended = params.flag("extensions")
    # A retry of a forwarded report replays the first answer: the client's Idempotency-Key,
    # or FixMyStreet's own id of the report when it sends one.
    forwarded = params.attributes().get("fixmystreet_id")
    idempotency_key = request.headers.get("idempotency-key") or (
        f"fixmystreet-id:{forwarded[-1]}" if forwarded else None
    )
    if idempotency_key is not None and len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise invalid("Idempotency-Key", f"at most {MAX_IDEMPOTENCY_KEY} characters")
    canonical = orjson.dumps(
        {"format": fmt.value, "params": {k: v for k, v in params.values.items() if k != "api_key"}},
        option=orjson.OPT_SORT_KEYS,
    )
    claim = await idempotency.claim_for(principal.label, idempotency_key, canonical, uploads)
    if claim and uploads:
        early = await idempotency.peek(session, claim.principal, claim.key, claim.request_hash)
        if early is not None:
            return idempotency.replayed(early, fmt.media_type)
    pipeline: PhotoPipeline = request.app.state.photos
    photos: AcceptedUploads | None = None
    if uploads:
        await ensure_photo_backlog_below(session, settings.photo_max_pending)
        photos = await pipeline.accept(uploads)

    async def file(claim: idempotency.Claim | None) -> idempotency.Answer:
        submission = service.submission_of(
            params,
            service.submitter_of(principal),
            jurisdiction=info.slug,
            service_code=code,
            definitions=found.attributes,
            photos=photos.photos if photos else (),
            place=place,
        )
        filed = await submit_report(session, catalog, submission, claim=claim)
        if photos:
            await photos.written()  # before the commit: a pending row always has its original
        if links:
            await media.ask_for(session, filed.report_id, links)
        await queue_verifications(session, settings, filed.verifications, filed.reference)
        body = render(fmt, "service_requests", [_posted(filed, extended)])
        return idempotency.Answer(200, body, filed.report_id)

    try:
        outcome = await idempotency.once(session, claim, file)
    except BaseException:
        if photos:
            await photos.discard()
        raise
    if isinstance(outcome, idempotency.Replay):
        if photos:
            await photos.discard()
        return idempotency.replayed(outcome, fmt.media_type)
    return Response(outcome.body, status_code=200, headers={"content-type": fmt.media_type})


# -- POST servicerequestupdates ------------------------------------------------------------------


async def post_update(request: Request, session: SessionDep) -> Response:
    """FixMyStreet pushes a citizen's update on a request it forwarded: an internal comment
    on the ticket, once per ``update_id``; a citizen's CLOSED is noted, not obeyed."""
    fmt = _format(request)
    settings = _settings(request)
    # Uploads are read (bounded) and not kept (FixMyStreet sends links): the photos its
    # media_url links name are fetched onto the ticket after the commit, by a job.
    params = await form_params(
        request,
        max_files=settings.max_photos_per_report,
        max_file_bytes=settings.max_photo_bytes,
    )
    principal, _ = await _client(request, params, "update")
    links = media.urls_of(params, limit=settings.max_photos_per_report)
    update = service.citizen_update_of(params, links)
    event_id = await service.record_update(session, principal, update)
    return respond(
        fmt, "service_request_updates", [{"update_id": str(event_id), "account_id": None}]
    )


# -- the route table ----------------------------------------------------------------------------

_JURISDICTION = {
    "name": "jurisdiction_id",
    "in": "query",
    "required": False,
    "description": "The city's slug; needed only when this server serves several (unknown:"
    " 404, or the only city with KERBSIDE_OPEN311_IGNORE_UNKNOWN_JURISDICTION)",
    "schema": {"type": "string", "maxLength": MAX_LENGTH["jurisdiction_id"]},
}
_API_KEY_GET = {
    "name": "api_key",
    "in": "query",
    "required": False,
    "description": "Accepted and ignored on reads (FixMyStreet sends one)",
    "schema": {"type": "string", "maxLength": MAX_LENGTH["api_key"]},
}
_LOCALE = {
    "name": "locale",
    "in": "query",
    "required": False,
    "description": "Language of service names (en, es, en_GB, ...)",
    "schema": {"type": "string", "maxLength": MAX_LENGTH["locale"]},
}
_EXTENSIONS = {
    "name": "extensions",
    "in": "query",
    "required": False,
    "description": "`true`: add `extended_attributes` (Kerbside's detailed status, photos, the"
    " ticket a duplicate joined)",
    # Empty is a parameter not sent (Open311), so it is among the values.
    "schema": {"type": "string", "enum": [*FLAG_VALUES, ""]},
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


# The writes' key (POST requests and servicerequestupdates): in the query or the form body.
_API_KEY_POST = _query(
    "api_key",
    "Required, here or in the body",
    {"type": "string", "maxLength": MAX_LENGTH["api_key"]},
)


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 100},
    }


# Any ISO 8601 date or date-time is read (``formats.parse_datetime``); the document says
# RFC 3339 date-time, the form clients send and every one of which is read.
# Empty is a parameter not sent (Open311).
_TIME = {
    "anyOf": [
        {"type": "string", "format": "date-time", "maxLength": MAX_LENGTH["end_date"]},
        {"type": "string", "maxLength": 0},
    ]
}
_REQUESTS_PARAMETERS = [
    _JURISDICTION,
    _query(
        "service_request_id",
        "Comma-separated ids (ticket references); overrides every other filter",
        {"type": "string", "maxLength": MAX_LENGTH["service_request_id"]},
    ),
    _query(
        "service_code",
        "Comma-separated service codes",
        {"type": "string", "maxLength": MAX_LENGTH["service_code"]},
    ),
    _query(
        "start_date",
        "Requested at or after (default: the last KERBSIDE_OPEN311_DEFAULT_DAYS days)",
        _TIME,
    ),
    _query("end_date", "Requested at or before", _TIME),
    _query(
        "status",
        "open, closed, or both comma-separated",
        {"type": "string", "maxLength": MAX_LENGTH["status"]},
    ),
    _query("updated_after", "Updated at or after", _TIME),
    _query("updated_before", "Updated at or before", _TIME),
    _query(
        "lat",
        "With long: around this point (WGS84)",
        {"type": "number", "minimum": -90, "maximum": 90},
    ),
    _query(
        "long",
        "With lat: around this point (WGS84)",
        {"type": "number", "minimum": -180, "maximum": 180},
    ),
    _query(
        "radius",
        "Metres around lat/long (default 1000)",
        {"type": "number", "exclusiveMinimum": 0, "maximum": service.MAX_RADIUS_M},
    ),
    _query("bbox", "long1,lat1,long2,lat2", {"type": "string", "maxLength": MAX_LENGTH["bbox"]}),
    _query(
        "page",
        "1-based page of page_size rows",
        {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    ),
    _query(
        "page_size",
        "Rows a page (default: KERBSIDE_OPEN311_MAX_REQUESTS; more is served as that many)",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
    ),
    _EXTENSIONS,
    _LOCALE,
    _API_KEY_GET,
]
_POST_FIELDS: dict[str, Any] = {
    "type": "object",
    "required": ["service_code"],
    "properties": {
        "api_key": {"type": "string", "description": "Required (body or query string)"},
        "jurisdiction_id": {"type": "string"},
        "service_code": {"type": "string"},
        "lat": {"type": "number"},
        "long": {"type": "number"},
        "address_string": {
            "type": "string",
            "description": "Without lat/long: placed by the geocoder or the city's streets",
        },
        "address_id": {"type": "string"},
        "description": {"type": "string", "maxLength": 4000},
        "title": {"type": "string"},
        "email": {"type": "string"},
        "phone": {"type": "string"},
        "first_name": {"type": "string"},
        "last_name": {"type": "string"},
        "device_id": {"type": "string"},
        "account_id": {"type": "string"},
        "media_url": {
            "type": "string",
            "maxLength": 2000,
            "description": "A link to a photo (repeatable); fetched after filing, from public"
            " addresses only. Ignored when files are uploaded",
        },
        "email_alerts_requested": {"type": "string", "enum": ["TRUE", "FALSE"]},
        "locale": {"type": "string"},
    },
    "additionalProperties": {
        "type": "string",
        "description": "attribute[CODE] (and attribute[CODE][] for multivaluelist)",
    },
}
_POST_BODY = {
    "required": False,
    "content": {
        "application/x-www-form-urlencoded": {"schema": _POST_FIELDS},
        "multipart/form-data": {
            "schema": {
                **_POST_FIELDS,
                "properties": {
                    **_POST_FIELDS["properties"],
                    "media": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        # The deployment's KERBSIDE_MAX_PHOTOS_PER_REPORT (the default here),
                        # counted over media, media[] and photo1..n together.
                        "maxItems": Settings.model_fields["max_photos_per_report"].default,
                        "description": "Photos (JPEG, PNG, WebP); also media[], photo1..n;"
                        " at most KERBSIDE_MAX_PHOTOS_PER_REPORT files in all",
                    },
                },
            }
        },
    },
}

_UPDATE_FIELDS: dict[str, Any] = {
    "type": "object",
    "required": ["service_request_id", "update_id", "status", "updated_datetime"],
    "properties": {
        "api_key": {"type": "string", "description": "Required (body or query string)"},
        "jurisdiction_id": {"type": "string"},
        "service_request_id": {"type": "string", "maxLength": 100},
        "update_id": {
            "type": "string",
            "maxLength": service.MAX_UPDATE_ID,
            "description": "FixMyStreet's id of the update: a retry with it is answered again",
        },
        "status": {
            "type": "string",
            "enum": sorted(service.UPDATE_STATUSES),
            "description": "What the citizen says (any case); noted, never applied",
        },
        "updated_datetime": {"type": "string", "format": "date-time"},
        "description": {
            "type": "string",
            "maxLength": service.MAX_DESCRIPTION,
            "description": "Required unless media_url is sent",
        },
        "media_url": {"type": "string", "maxLength": media.MAX_URL},
        "email": {"type": "string", "description": "Accepted, not kept"},
        "first_name": {"type": "string", "description": "Accepted, not kept"},
        "last_name": {"type": "string", "description": "Accepted, not kept"},
    },
    "additionalProperties": {"type": "string"},
}
_UPDATE_BODY = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {"schema": _UPDATE_FIELDS},
        "multipart/form-data": {"schema": _UPDATE_FIELDS},
    },
}

_STATUS_TEXT = {
    400: "Invalid or missing parameter (jurisdiction_id, service_code, location, attribute,"
    " description...), in Open311's error document",
    403: "api_key missing, invalid, or for another jurisdiction",
    404: "Jurisdiction, service, request or token not found",
    409: "A request with this Idempotency-Key is still being processed",
    413: "Body or media file too large",
    415: "Body neither urlencoded nor multipart",
    429: "Too many requests",
    503: "Database unreachable; retry after Retry-After seconds",
}


def _content(fmt: Format | None, schema: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if fmt in (Format.json, None):
        content[JSON_TYPE.split(";")[0]] = {"schema": schema}
    if fmt in (Format.xml, None):
        content[XML_TYPE.split(";")[0]] = {"schema": {"type": "string"}}
    return content


def _responses(
    fmt: Format | None, ok: dict[str, Any], description: str, statuses: tuple[int, ...]
) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": description, "content": _content(fmt, ok)}
    }
    for status in statuses:
        responses[status] = {
            "description": _STATUS_TEXT[status],
            "content": _content(fmt, schemas.ERRORS_REF),
        }
    return responses


Handler = Callable[..., Awaitable[Response]]


def _add(
    path: str,
    handler: Handler,
    *,
    method: str = "GET",
    name: str,
    summary: str,
    ok: dict[str, Any],
    description: str,
    parameters: list[dict[str, Any]],
    statuses: tuple[int, ...],
    extra: dict[str, Any] | None = None,
    dependencies: list[Any] | None = None,
) -> None:
    # The extensions first: the extensionless route's {id} would also match "id.json".
    for fmt, suffix in ((Format.json, ".json"), (Format.xml, ".xml"), (None, "")):
        router.add_api_route(
            f"{BASE}/{path}{suffix}",
            handler,
            methods=[method],
            name=f"open311_{name}_{fmt.value if fmt else 'default'}",
            summary=f"{summary} ({fmt.value.upper() if fmt else 'XML, or JSON by Accept'})",
            response_class=Response,
            responses=_responses(fmt, ok, description, statuses),
            openapi_extra={"parameters": parameters, **(extra or {})},
            dependencies=dependencies,
        )


_add(
    "discovery",
    discovery,
    name="discovery",
    summary="Open311 service discovery",
    ok=schemas.DISCOVERY_REF,
    description="Where this Open311 endpoint is and what it speaks",
    parameters=[],
    statuses=(503,),
)
router.add_api_route(
    BASE,
    discovery,
    methods=["GET"],
    name="open311_base",
    summary="Open311 service discovery at the base URL (XML, or JSON by Accept)",
    response_class=Response,
    responses=_responses(None, schemas.DISCOVERY_REF, "Discovery", (503,)),
)
_add(
    "services",
    services,
    name="services",
    summary="Open311 service list",
    ok=schemas.SERVICES_REF,
    description="The city's services (report categories)",
    parameters=[_JURISDICTION, _LOCALE, _API_KEY_GET],
    statuses=(400, 404, 503),
)
_add(
    "services/{service_code}",
    service_definition,
    name="service_definition",
    summary="Open311 service definition",
    ok=schemas.SERVICE_DEFINITION_REF,
    description="The service's attributes (questions), every datatype",
    parameters=[_path("service_code", "A service_code"), _JURISDICTION, _API_KEY_GET],
    statuses=(400, 404, 503),
)
_add(
    "requests",
    get_requests,
    name="requests",
    summary="Open311 service requests",
    ok=schemas.REQUESTS_REF,
    description="Tickets, newest first: the last 90 days by default, at most"
    " KERBSIDE_OPEN311_MAX_REQUESTS a page; public fields only",
    parameters=_REQUESTS_PARAMETERS,
    statuses=(400, 404, 503),
)
_add(
    "requests",
    post_request,
    method="POST",
    name="create_request",
    summary="Open311 create a service request",
    ok=schemas.POST_ANSWER_REF,
    description="Filed through the intake: the ticket it opened or joined (one-element list)",
    parameters=[
        _API_KEY_POST,
        _JURISDICTION,
        _EXTENSIONS,
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "A retry with the same key replays the first answer",
            "schema": {"type": "string", "maxLength": 255},
        },
    ],
    statuses=(400, 403, 404, 409, 413, 415, 429, 503),
    extra={"requestBody": _POST_BODY},
    dependencies=[
        Depends(rate_limit("reports", lambda s: s.rate_limit_reports_per_minute, client_ip))
    ],
)
_add(
    "servicerequestupdates",
    post_update,
    method="POST",
    name="post_update",
    summary="FixMyStreet push a citizen's update on a service request",
    ok=schemas.UPDATE_ANSWER_REF,
    description="Kept as an internal comment on the ticket (once per update_id; a retry"
    " answers the same update_id); the ticket's status is not changed. Photos named by"
    " media_url are fetched onto the ticket after the answer (public addresses only, through"
    " the upload checks)",
    parameters=[
        _API_KEY_POST,
        _JURISDICTION,
    ],
    statuses=(400, 403, 404, 413, 415, 429, 503),
    extra={"requestBody": _UPDATE_BODY},
    dependencies=[
        Depends(rate_limit("open311_updates", lambda s: s.rate_limit_reports_per_minute, client_ip))
    ],
)
_add(
    "requests/{service_request_id}",
    get_request,
    name="request",
    summary="Open311 one service request",
    ok=schemas.REQUESTS_REF,
    description="The request as a one-element list",
    parameters=[
        _path("service_request_id", "A ticket reference (K-2026-000123)"),
        _JURISDICTION,
        _EXTENSIONS,
        _LOCALE,
        _API_KEY_GET,
    ],
    statuses=(400, 404, 503),
)
_add(
    "tokens/{token}",
    get_token,
    name="token",
    summary="Open311 service request of a token",
    ok=schemas.TOKEN_ANSWER_REF,
    description="The request a token (a filed report) belongs to, as a one-element list",
    parameters=[_path("token", "A token from a POST's extensions"), _JURISDICTION, _API_KEY_GET],
    statuses=(400, 404, 503),
)
_add(
    "servicerequestupdates",
    get_updates,
    name="updates",
    summary="FixMyStreet service request updates",
    ok=schemas.UPDATES_REF,
    description="Public status changes in a window (default: the last day), oldest first",
    parameters=[
        _JURISDICTION,
        _query("start_date", "Changed at or after (default: a day before end_date)", _TIME),
        _query("end_date", "Changed at or before (default: now)", _TIME),
        _API_KEY_GET,
    ],
    statuses=(400, 404, 503),
)
