"""What map answers share on the wire: filters from the query string, ETags with 304, gzip."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BeforeValidator
from starlette.concurrency import run_in_threadpool

from app.core.contract import comma_separated
from app.core.errors import BadRequest, InvalidInput
from app.core.models import iso_only as _iso_only
from app.maps.queries import Filters
from app.settings import Settings
from app.tickets.models import TicketStatus
from geo.bbox import BBox, BBoxError, parse_bbox

GEOJSON = "application/geo+json"
MVT = "application/vnd.mapbox-vector-tile"
_MIN_GZIP_BYTES = 1024
_THREAD_GZIP_BYTES = 256 * 1024  # compress bigger bodies off the event loop
_STATUSES = frozenset(TicketStatus)


class BBoxTooLarge(BadRequest):
    slug, title = "bbox-too-large", "Bounding box too large"


class BBoxRequired(BadRequest):
    slug, title = "bbox-required", "Bounding box required"


def invalid(field: str, message: str, kind: str = "value_error") -> InvalidInput:
    return InvalidInput(
        f"{field}: {message}",
        errors=[{"field": field, "message": message, "type": kind, "in": "query"}],
    )


def split_list(value: str | None, field: str) -> list[str]:
    if value is None:
        return []
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise invalid(field, "must not be empty")
    if len(items) > 50:
        raise invalid(field, "at most 50 values")
    return items


def bbox_of(value: str | None, *, max_km2: float | None, field: str = "bbox") -> BBox | None:
    """The parsed bbox; ``max_km2`` None: any size (the answer is then bounded by its page)."""
    if value is None:
        return None
    try:
        bbox = parse_bbox(value)
    except BBoxError as exc:
        raise invalid(field, str(exc), "bbox") from None
    if max_km2 is None:
        return bbox
    area = bbox.area_km2()
    if area > max_km2:
        raise BBoxTooLarge(
            f"The bbox covers {area:,.1f} km²; at most {max_km2:,.1f} km² is served here. Zoom "
            "in, or use the vector tiles or /v1/tickets.geojson (paged) for wide views",
            errors=[
                {
                    "field": field,
                    "message": f"at most {max_km2:g} km²",
                    "type": "bbox_too_large",
                    "in": "query",
                }
            ],
            max_km2=max_km2,
            area_km2=round(area, 3),
        )
    return bbox


def statuses_of(value: str | None) -> list[str]:
    statuses = split_list(value, "status")
    unknown = sorted(set(statuses) - _STATUSES)
    if unknown:
        raise invalid(
            "status",
            f"unknown status {', '.join(unknown)}; valid: {', '.join(sorted(_STATUSES))}",
            "unknown_status",
        )
    return statuses


BBoxParam = Annotated[
    str | None,
    Query(
        description="minLon,minLat,maxLon,maxLat (WGS84); edges included",
        examples=["-2.60,51.45,-2.58,51.46"],
        max_length=200,
    ),
]
# A list holds at least one value: "" or "," is refused (split_list).
_SOME_VALUE = r"[^\s,]"
ServiceParam = Annotated[
    str | None,
    Query(description="service codes, comma-separated", max_length=2000, pattern=_SOME_VALUE),
]
StatusParam = Annotated[
    str | None,
    Query(
        description="ticket statuses, comma-separated",
        max_length=2000,
        json_schema_extra=comma_separated({"type": "string", "enum": sorted(_STATUSES)}),
    ),
]
AreaParam = Annotated[
    str | None,
    Query(
        description="area (district) codes, comma-separated", max_length=2000, pattern=_SOME_VALUE
    ),
]
JurisdictionParam = Annotated[str | None, Query(description="jurisdiction slug", max_length=100)]


def limit_query(description: str) -> Any:
    """``limit``'s Query with its maximum in the OpenAPI document, where GDAL and QGIS read
    their page size. The maximum is the default of ``KERBSIDE_MAP_MAX_FEATURES``; a larger
    value is served as the maximum, not refused (OGC API - Features 7.15.3)."""
    maximum = Settings.model_fields["map_max_features"].default
    return Query(
        ge=1,
        description=f"{description}; at most KERBSIDE_MAP_MAX_FEATURES ({maximum:,} by default)",
        json_schema_extra={"maximum": maximum},
    )


SinceParam = Annotated[
    Annotated[AwareDatetime, BeforeValidator(_iso_only)] | None,
    Query(description="included (ISO 8601 with zone)"),
]
UntilParam = Annotated[
    Annotated[AwareDatetime, BeforeValidator(_iso_only)] | None,
    Query(description="excluded (ISO 8601 with zone)"),
]


async def layer_filters(
    service: ServiceParam = None,
    status: StatusParam = None,
    area: AreaParam = None,
    jurisdiction: JurisdictionParam = None,
) -> Filters:
    """The filters every map layer takes (clusters and tiles add no time filters)."""
    return Filters(
        services=split_list(service, "service"),
        statuses=statuses_of(status),
        areas=split_list(area, "area"),
        jurisdiction=jurisdiction,
    )


def time_filters(
    filters: Filters,
    created_since: AwareDatetime | None,
    created_until: AwareDatetime | None,
    updated_since: AwareDatetime | None,
    updated_until: AwareDatetime | None,
) -> Filters:
    for name, since, until in (
        ("created", created_since, created_until),
        ("updated", updated_since, updated_until),
    ):
        if since is not None and until is not None and until <= since:
            raise invalid(f"{name}_until", f"must be after {name}_since")
    filters.created_since, filters.created_until = created_since, created_until
    filters.updated_since, filters.updated_until = updated_since, updated_until
    return filters


# -- responses ----------------------------------------------------------------------------------


def etag_of(body: bytes) -> str:
    # Weak: the same entity may travel gzip-encoded or not. SHA-256 runs on the CPU's SHA
    # instructions here: twice as fast as BLAKE2b on a z16 page (0.5 against 0.95 ms per MB).
    return 'W/"' + hashlib.sha256(body).hexdigest()[:24] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


def accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().removeprefix("q=")
            try:
                return not params or float(q) > 0
            except ValueError:
                return False
    return False


def _gzip(body: bytes) -> bytes:
    compressor = zlib.compressobj(5, zlib.DEFLATED, 31)  # 31: gzip container, no file time
    return compressor.compress(body) + compressor.flush()


def cache_control(request: Request, max_age: int) -> str:
    """Public answers may be cached by anyone; answers for credentials only by the caller."""
    if "authorization" in request.headers or "x-api-key" in request.headers:
        return "private, no-cache"
    return f"public, max-age={max_age}"


async def send(
    request: Request,
    body: bytes,
    media_type: str,
    *,
    max_age: int,
    compress: bool = True,
    cacheable: bool = True,
) -> Response:
    """``body`` with an ETag (304 when the client has it), gzip-encoded when welcome.

    Not ``cacheable``: ``no-store`` and no ETag, for an answer that is known to be
    provisional (clusters before the grid was first built).
    """
    headers = {"Vary": "Accept-Encoding, Authorization, X-API-Key"}
    if cacheable:
        etag = etag_of(body)
        headers["ETag"] = etag
        headers["Cache-Control"] = cache_control(request, max_age)
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
    else:
        headers["Cache-Control"] = "no-store"
    if compress and len(body) >= _MIN_GZIP_BYTES and accepts_gzip(request):
        body = (
            await run_in_threadpool(_gzip, body)
            if len(body) > _THREAD_GZIP_BYTES
            else (_gzip(body))
        )
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=media_type, headers=headers)


async def gzip_stream(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    compressor = zlib.compressobj(5, zlib.DEFLATED, 31)
    async for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()
