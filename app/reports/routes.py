"""HTTP for reports: submit (JSON or multipart with photos), read one, "my reports"."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.auth.models import Role
from app.auth.principal import CurrentPrincipal, OptionalPrincipal, Principal
from app.core import idempotency
from app.core.errors import BadRequest, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from app.core.ratelimit import client_ip, rate_limit
from app.db import SessionDep
from app.media.service import PhotoPipeline, StoredPhoto
from app.reports import queries
from app.reports.models import Channel
from app.reports.schemas import ReportAccepted, ReportIn, ReportOut
from app.reports.service import Submitter, submit_report

router = APIRouter(prefix="/v1", tags=["reports"])

_REPORT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ReportIn"}},
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
        200: {
            "description": "A replay of an earlier identical request (Idempotent-Replayed: true)"
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
    try:
        report = ReportIn.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None

    submitter = submitter_for(principal)
    key = idempotency_key or (f"client-id:{report.client_id}" if report.client_id else None)
    who = submitter.idempotency_principal
    claim = None
    if key:  # the fingerprint (a canonical re-encoding of the body) only matters with a key
        fingerprint = idempotency.request_fingerprint(
            orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS), *uploads
        )
        claim = idempotency.Claim(who, key, fingerprint)
    # Before processing photos (the expensive part), answer a plain retry at once.
    if (
        claim
        and uploads
        and (early := await idempotency.peek(session, who, claim.key, claim.request_hash))
    ):
        return _replayed(early)

    stored: list[StoredPhoto] = []
    if uploads:
        stored = await pipeline.store(await pipeline.process(uploads))
    try:
        accepted, report_id = await submit_report(
            session,
            request.app.state.catalog,
            submitter,
            report,
            channel=Channel.app,
            base_url=settings.public_base_url,
            photos=stored,
            claim=claim,
        )
        body = accepted.model_dump_json().encode()
        if claim:
            await idempotency.finish(session, who, claim.key, 201, body, report_id)
    except idempotency.AlreadyClaimed:
        await pipeline.discard(stored)
        assert claim is not None
        return _replayed(await idempotency.replay(session, who, claim.key, claim.request_hash))
    except BaseException:
        await pipeline.discard(stored)
        raise
    return Response(
        body,
        status_code=201,
        media_type="application/json",
        headers={"Location": f"{settings.public_base_url}/v1/reports/{accepted.report.id}"},
    )


def _replayed(replay: idempotency.Replay) -> Response:
    return Response(
        replay.body,
        status_code=replay.status_code,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


async def _read_body(
    request: Request, max_photos: int, max_photo_bytes: int
) -> tuple[bytes, list[bytes]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/json", ""):
        raw = await request.body()
        if not raw:
            raise BadRequest("The request has no body; send the report as JSON")
        return raw, []
    if content_type != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Send application/json, or multipart/form-data with photos (got {content_type})"
        )
    async with request.form(max_files=max_photos + 1, max_fields=10) as form:
        report_part = form.get("report")
        if report_part is None:
            raise _missing_part()
        if isinstance(report_part, UploadFile):
            raw = await report_part.read()
        else:
            raw = report_part.encode()
        files = form.getlist("photos")
        if len(files) > max_photos:
            raise InvalidInput(
                f"At most {max_photos} photos per report",
                errors=[
                    {"field": "photos", "message": f"at most {max_photos}", "type": "too_many"}
                ],
            )
        uploads = [
            await _read_photo(index, item, max_photo_bytes) for index, item in enumerate(files)
        ]
    return raw, uploads


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
)
async def my_reports(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: int = 50,
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
