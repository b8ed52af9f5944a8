"""HTTP for reports: submit (JSON or multipart with photos), read one, "my reports"."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from starlette.types import Receive, Scope, Send

from app.auth.models import Role
from app.auth.principal import CurrentPrincipal, OptionalPrincipal, Principal
from app.contacts.messages import queue_verifications
from app.core import idempotency
from app.core.bodies import JsonBody
from app.core.contract import problems
from app.core.errors import BadRequest, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from app.core.multipart import Part, read_parts
from app.core.ratelimit import client_ip, rate_limit
from app.db import SessionDep
from app.media.service import AcceptedUploads, PhotoPipeline, ensure_photo_backlog_below
from app.reports import queries, wire
from app.reports.intake import Submitter
from app.reports.schemas import ReportAccepted, ReportIn, ReportOut
from app.reports.service import submit_report

router = APIRouter(prefix="/v1", tags=["reports"])

_REPORT: JsonBody[ReportIn] = JsonBody("ReportIn", ReportIn)
_REPORT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": _REPORT.schema_ref()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["report"],
                "properties": {
                    "report": {
                        "type": "string",
                        "description": "The report as JSON (the ReportIn schema)",
                        "contentMediaType": "application/json",
                    },
                    "photos": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "JPEG, PNG or WebP (EXIF GPS locates the report)",
                    },
                },
            },
            "encoding": {"report": {"contentType": "application/json"}},
        },
    },
}


def submitter_for(principal: Principal | None) -> Submitter:
    if principal is None:
        return Submitter()
    return Submitter(
        user_id=principal.user_id,
        label=principal.label,
        trusted=principal.at_least(Role.staff),
        identified=True,
        jurisdiction_id=None if principal.is_admin else principal.jurisdiction_id,
        bound=principal.kind == "api_key",
    )


@router.post(
    "/reports",
    status_code=201,
    response_model=ReportAccepted,
    summary="Report a problem (JSON, or multipart with photos)",
    description=(
        "Files a report and clusters it: the nearest open ticket of the same service within the "
        "service's radius and time window takes it, otherwise a new ticket is opened. The answer "
        "says which, and why. Send an `Idempotency-Key` (or `client_id`) so that a retry on a "
        "flaky network replays the first answer instead of filing twice."
    ),
    openapi_extra={"requestBody": _REPORT_BODY},
    responses={
        201: {
            "description": "Filed; or a replay of the first answer to an earlier request with "
            "the same idempotency key and body (header `Idempotent-Replayed: true`)",
            "headers": {
                "Location": {"description": "The report", "schema": {"type": "string"}},
                "Idempotent-Replayed": {
                    "description": "`true` on a replay",
                    "schema": {"type": "string"},
                },
            },
        },
        413: {
            "description": "Body or photo too large",
            "content": {"application/problem+json": {}},
        },
        415: {
            "description": "Unsupported content or photo type",
            "content": {"application/problem+json": {}},
        },
        422: {"description": "Invalid report", "content": {"application/problem+json": {}}},
        429: {"description": "Too many reports", "content": {"application/problem+json": {}}},
    },
    dependencies=[
        Depends(rate_limit("reports", lambda s: s.rate_limit_reports_per_minute, client_ip))
    ],
)
async def create_report(
    request: Request,
    session: SessionDep,
    principal: OptionalPrincipal,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> Response:
    settings = request.app.state.settings
    pipeline: PhotoPipeline = request.app.state.photos
    raw, uploads = await _read_body(
        request, settings.max_photos_per_report, settings.max_photo_bytes
    )
    received = time.perf_counter()
    report = _REPORT.parse(raw)

    submitter = submitter_for(principal)
    key = idempotency_key or (f"client-id:{report.client_id}" if report.client_id else None)
    who = submitter.idempotency_principal
    # The fingerprint (a canonical re-encoding of the body) only matters with a key.
    canonical = orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS) if key else b""
    claim = await idempotency.claim_for(who, key, canonical, uploads)
    # Before storing photos, answer a plain retry at once.
    if (
        claim
        and uploads
        and (early := await idempotency.peek(session, who, claim.key, claim.request_hash))
    ):
        return idempotency.replayed(early)

    # Photos are only checked here (nothing is decoded), and their originals are written to
    # private storage while the report is filed; their rows are pending, each row defers its
    # job (a trigger), and the worker makes the stored files once the report has committed.
    photos: AcceptedUploads | None = None
    if uploads:
        await ensure_photo_backlog_below(session, settings.photo_max_pending)
        photos = await pipeline.accept(uploads)
    location = ""

    async def file(claim: idempotency.Claim | None) -> idempotency.Answer:
        filed = await submit_report(
            session,
            request.app.state.catalog,
            wire.submission_of(report, submitter, photos=photos.photos if photos else ()),
            claim=claim,
        )
        nonlocal location
        location = f"{settings.public_base_url}/v1/reports/{filed.report_public_id}"
        answer = wire.accepted(filed, settings.public_base_url)
        if photos:
            await photos.written()  # before the commit: a pending row always has its original
        await queue_verifications(session, settings, filed.verifications, filed.reference)
        return idempotency.Answer(201, answer.model_dump_json().encode(), filed.report_id)

    try:
        outcome = await idempotency.once(session, claim, file)
    except BaseException:
        if photos:
            await photos.discard()
        raise
    if isinstance(outcome, idempotency.Replay):
        if photos:
            await photos.discard()
        return idempotency.replayed(outcome)
    if not photos:
        return Response(
            outcome.body,
            status_code=201,
            media_type="application/json",
            headers={"Location": location},
        )
    return _AcceptedWithPhotos(
        outcome.body,
        status_code=201,
        media_type="application/json",
        headers={"Location": location},
        received=received,
    )


class _AcceptedWithPhotos(Response):
    """Says how long accepting took once the upload had arrived (``Server-Timing: accept``).

    Sent after the commit, so the figure covers the checks, storing the originals, filing the
    report and committing; not the upload's transfer, which depends on the client's network.
    """

    def __init__(self, *args: Any, received: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._received = received

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        took = (time.perf_counter() - self._received) * 1000
        self.raw_headers.append((b"server-timing", f"accept;dur={took:.1f}".encode()))
        await super().__call__(scope, receive, send)


async def _read_body(
    request: Request, max_photos: int, max_photo_bytes: int
) -> tuple[bytes, list[bytes]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/json", ""):
        raw = await request.body()
        if not raw:
            # As FastAPI answers a missing body elsewhere: invalid input, not a bad request.
            raise InvalidInput(
                "The request has no body; send the report as JSON",
                errors=[{"field": "body", "message": "required", "type": "missing"}],
            )
        return raw, []
    if content_type != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Send application/json, or multipart/form-data with photos (got {content_type})"
        )
    # Photos are kept in memory (see app.core.multipart): they are read whole anyway.
    parts = await read_parts(
        request, max_files=max_photos + 1, max_fields=10, max_file_bytes=max_photo_bytes
    )
    report_part = next((part for part in parts if part.name == "report"), None)
    if report_part is None:
        raise _missing_part()
    files = [part for part in parts if part.name == "photos"]
    if len(files) > max_photos:
        raise InvalidInput(
            f"At most {max_photos} photos per report",
            errors=[{"field": "photos", "message": f"at most {max_photos}", "type": "too_many"}],
        )
    return report_part.data, [
        _photo(index, part, max_photo_bytes) for index, part in enumerate(files)
    ]


def _photo(index: int, part: Part, max_bytes: int) -> bytes:
    if not part.is_file:
        raise InvalidInput(
            "photos must be files",
            errors=[{"field": f"photos[{index}]", "message": "not a file", "type": "type_error"}],
        )
    if part.size > max_bytes:
        raise PayloadTooLarge(
            f"Photo {index + 1} is larger than {max_bytes // (1024 * 1024)} MiB",
            errors=[
                {"field": f"photos[{index}]", "message": "too large", "type": "too_large_bytes"}
            ],
        )
    return part.data


def _missing_part() -> InvalidInput:
    return InvalidInput(
        "A multipart report needs a part named 'report' holding the report as JSON",
        errors=[{"field": "report", "message": "missing", "type": "missing", "in": "body"}],
    )


@router.get(
    "/reports/{report_id}",
    response_model=ReportOut,
    response_model_exclude_none=True,
    summary="One report; contact details only for its reporter and staff",
)
async def get_report(
    report_id: uuid.UUID, request: Request, session: SessionDep, principal: OptionalPrincipal
) -> Any:
    return await queries.report_by_id(
        session, report_id, viewer=principal, base_url=request.app.state.settings.public_base_url
    )


@router.get(
    "/me/reports",
    response_model=list[ReportOut],
    response_model_exclude_none=True,
    summary="The signed-in person's reports, newest first",
    responses=problems((400, "An API key has no reports of its own")),
)
async def my_reports(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: uuid.UUID | None = None,
) -> Any:
    if principal.user_id is None:
        raise BadRequest("Only people who sign in have reports of their own; API keys have none")
    return await queries.reports_of_user(
        session,
        principal.user_id,
        base_url=request.app.state.settings.public_base_url,
        limit=max(1, min(limit, 200)),
        before=before,
    )
