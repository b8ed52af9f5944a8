"""HTTP for the historical import: ``POST /v1/imports`` (staff), small files only.

The import itself is ``app.imports.service.import_reports``; this module reads the upload,
picks the jurisdiction the caller acts for and answers with the summary. Larger files go
through the command line (``kerbside import``), which streams them.
"""

from __future__ import annotations

import io
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from app.auth.principal import Principal, StaffPrincipal, ensure_same_jurisdiction
from app.core.errors import Forbidden, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from app.db import SessionDep
from app.imports.mapping import parse_column_mapping, parse_service_map
from app.imports.schemas import ColumnMapping, Format, ImportOptions, ImportSummary
from app.imports.service import import_reports
from app.imports.sources import format_for
from app.jurisdictions.catalog import Catalog

log = logging.getLogger("kerbside.import")
router = APIRouter(prefix="/v1", tags=["imports"])

MAX_IMPORT_BYTES = 10 * 1024 * 1024
MAX_IMPORT_ROWS = 20_000
_MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file

_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/geo+json": "geojson",
    "application/json": "geojson",
}

# The document lists one media type per kind of body, so generated clients get one model
# each (openapi-python-client made two identical JSON models, and has no text/csv body). The
# route also takes a raw `text/csv` or `application/json` body; the description says so.
_IMPORT_BODY = {
    "required": True,
    "content": {
        "application/geo+json": {
            "schema": {"type": "object", "description": "A FeatureCollection of Points"}
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "A .csv or .geojson file",
                    }
                },
            }
        },
    },
}
_PROBLEM: dict[str, Any] = {"application/problem+json": {}}


@router.post(
    "/imports",
    response_model=ImportSummary,
    response_model_exclude_none=True,
    summary="Import historical reports from a legacy system (staff)",
    description=(
        "Files every row of a CSV (header row) or GeoJSON FeatureCollection through the same "
        "intake path as a citizen's report, oldest first and with its original time, so the "
        "reports cluster into tickets as they would have then. Rows already imported (same "
        "id, or for rows without one the same content) are skipped, so an upload can be "
        f"repeated safely. At most {MAX_IMPORT_BYTES // 2**20} MiB and {MAX_IMPORT_ROWS:,} "
        "rows; larger files: `kerbside import FILE --jurisdiction SLUG`. Columns, time zones "
        "and limits: docs/import.md. Bad rows are counted with their line and reason; the "
        "others are imported (committed every 500 rows). Send the file as multipart "
        "(`file`), or as the raw body: `application/geo+json` (or `application/json`), or "
        "`text/csv` (or `application/csv`)."
    ),
    openapi_extra={"requestBody": _IMPORT_BODY},
    responses={
        413: {"description": "File or row count over the limit", "content": _PROBLEM},
        415: {"description": "Not CSV or GeoJSON", "content": _PROBLEM},
        422: {"description": "Unreadable file or invalid options", "content": _PROBLEM},
    },
)
async def create_import(
    request: Request,
    session: SessionDep,
    staff: StaffPrincipal,
    jurisdiction: Annotated[
        str | None,
        Query(description="Jurisdiction slug: required for admins, else the caller's own"),
    ] = None,
    file_format: Annotated[
        Literal["csv", "geojson"] | None,
        Query(alias="format", description="Overrides the content type / file name"),
    ] = None,
    service_map: Annotated[
        str | None,
        Query(description="Legacy category → service code: 'Name=code,Other=code2' or JSON"),
    ] = None,
    column: Annotated[
        list[str] | None,
        Query(
            description="The file's column for one of our fields, FIELD=COLUMN (repeatable), "
            "e.g. service_code=sr_type; fields: " + ", ".join(ColumnMapping.model_fields)
        ),
    ] = None,
    statuses: Annotated[
        bool,
        Query(description="Import legacy statuses and closure times (false: tickets stay open)"),
    ] = True,
    timezone: Annotated[
        str | None,
        Query(description="IANA zone for times without a UTC offset; default the jurisdiction's"),
    ] = None,
    date_format: Annotated[
        str | None,
        Query(description="strptime format for times that are not ISO 8601, e.g. %m/%d/%y %H:%M"),
    ] = None,
    dry_run: Annotated[
        bool, Query(description="Import every row in one transaction, then roll it back")
    ] = False,
) -> Any:
    catalog: Catalog = request.app.state.catalog
    slug = await _target_jurisdiction(session, catalog, staff, jurisdiction)
    data, detected, name = await _read_upload(request)
    chosen = file_format or detected
    if chosen is None:
        raise UnsupportedMediaType(
            "Cannot tell whether the file is CSV or GeoJSON: send it as text/csv or "
            "application/geo+json, name it .csv or .geojson, or pass ?format="
        )
    options = ImportOptions(
        jurisdiction=slug,
        format=chosen,
        source_name=name,
        service_map=parse_service_map(service_map),
        columns=ColumnMapping(**parse_column_mapping(column)),
        statuses=statuses,
        timezone=timezone,
        date_format=date_format,
        dry_run=dry_run,
        max_rows=MAX_IMPORT_ROWS,
        max_geojson_bytes=MAX_IMPORT_BYTES,
        base_url=request.app.state.settings.public_base_url,
    )
    summary = await import_reports(session, catalog, io.BytesIO(data), options)
    log.info(
        "import finished",
        extra={"by": staff.label, **summary.model_dump(mode="json", exclude={"rejected"})},
    )
    return summary


async def _target_jurisdiction(
    session: AsyncSession, catalog: Catalog, staff: Principal, slug: str | None
) -> str:
    if slug is None:
        if staff.is_admin:
            raise InvalidInput(
                "Admins name the jurisdiction to import into: ?jurisdiction=slug",
                errors=[
                    {
                        "field": "jurisdiction",
                        "message": "required",
                        "type": "missing",
                        "in": "query",
                    }
                ],
            )
        if staff.jurisdiction_id is None:
            raise Forbidden("Your account acts for no jurisdiction")
        own = await catalog.find(session, lambda j: j.id == staff.jurisdiction_id)
        if own is None:
            raise Forbidden("Your account's jurisdiction no longer exists")
        return own.slug
    found = await catalog.by_slug(session, slug)
    if found is None:
        if not staff.is_admin:
            raise Forbidden("You may only act for your own jurisdiction")
        raise InvalidInput(
            f"No jurisdiction {slug!r}",
            errors=[{"field": "jurisdiction", "message": "unknown", "type": "value_error"}],
        )
    ensure_same_jurisdiction(staff, found.id)
    return found.slug


async def _read_upload(request: Request) -> tuple[bytes, Format | None, str]:
    """The file's bytes (capped), the format its content type or name says, and its name."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_IMPORT_BYTES + _MULTIPART_SLACK:
        raise _too_large()
    if content_type in _TYPES:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_IMPORT_BYTES:
                raise _too_large()
        if not body:
            raise InvalidInput("The request has no body; send the file")
        return bytes(body), _TYPES[content_type], "upload"
    if content_type != "multipart/form-data":
        raise UnsupportedMediaType(
            "Send the file as text/csv, application/geo+json (or application/json), or as "
            f"multipart/form-data with a part named 'file' (got {content_type or 'no type'})"
        )
    async with request.form(max_files=1, max_fields=10) as form:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise InvalidInput(
                "A multipart import needs a file part named 'file'",
                errors=[{"field": "file", "message": "missing", "type": "missing", "in": "body"}],
            )
        data = await part.read(MAX_IMPORT_BYTES + 1)
        if len(data) > MAX_IMPORT_BYTES:
            raise _too_large()
        part_type = (part.content_type or "").split(";")[0].strip().lower()
        name = part.filename or "upload"
        return data, _TYPES.get(part_type) or format_for(name), name


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Imports over HTTP are at most {MAX_IMPORT_BYTES // 2**20} MiB and "
        f"{MAX_IMPORT_ROWS:,} rows; import larger files with the command line: "
        "kerbside import FILE --jurisdiction SLUG"
    )
