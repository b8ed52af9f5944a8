"""An Open311 request's parameters as real clients send them.

- From the query string and the form body together, the body winning: the PyPI ``open311``
  client puts ``api_key`` and ``jurisdiction_id`` in the query of its POST, and the rest in
  the body.
- urlencoded (with or without a charset) or multipart, whose file parts (``media``,
  ``media[]``, ``photo1``.., ``file_*``) are the photos.
- A parameter sent empty is a parameter not sent (the spec says so of optional ones).
- ``attribute[CODE]``, ``attribute[CODE][]`` and repeated keys all give CODE's values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl

from starlette.requests import Request

from app.core.errors import BadRequest, InvalidInput, UnsupportedMediaType
from app.core.multipart import Part, read_parts
from app.open311.formats import parse_datetime

_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]{1,100})\](?:\[\])?$")
_FILE_NAMES = re.compile(r"^(media(\[\])?|photo\d*|file_.*|photos(\[\])?)$")
MAX_FIELDS = 200
# What a yes-or-no parameter (``extensions``) may say; anything else is refused, not taken
# for "no" (schemathesis: ``extensions=x`` was answered 200 against the documented enum).
FLAG_VALUES = ("true", "false", "all", "1", "0", "yes", "no")
# The longest value of each query parameter the reads take; the OpenAPI operations declare
# these (routes.py reads them here), and a longer value is refused, never cut or ignored. A
# GET's request line must also fit the HTTP server's (about 64 KB, percent-encoded: up to 12
# bytes a character): ``service_request_id`` holds about 140 references, not the 20,000
# characters it once documented (uvicorn refused such a request line with a text/plain 400).
MAX_LENGTH = {
    "jurisdiction_id": 100,
    "api_key": 200,
    "locale": 16,
    "service_request_id": 2000,
    "service_code": 1000,
    "status": 20,
    "start_date": 40,
    "end_date": 40,
    "updated_after": 40,
    "updated_before": 40,
    "bbox": 200,
}


@dataclass
class Params:
    values: dict[str, list[str]] = field(default_factory=dict)
    files: list[Part] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """The last non-empty value of ``name``, or None."""
        found = [v for v in self.values.get(name, ()) if v.strip()]
        return found[-1].strip() if found else None

    def all(self, name: str) -> list[str]:
        return [v for v in self.values.get(name, ()) if v.strip()]

    def listed(self, name: str) -> list[str]:
        """A comma-separated parameter (also repeated) as its items."""
        items: list[str] = []
        for value in self.all(name):
            items.extend(part.strip() for part in value.split(",") if part.strip())
        return list(dict.fromkeys(items))

    def attributes(self) -> dict[str, list[str]]:
        """``attribute[CODE]`` and ``attribute[CODE][]`` values by CODE, empty ones dropped."""
        found: dict[str, list[str]] = {}
        for key, values in self.values.items():
            match = _ATTRIBUTE.match(key)
            if match:
                kept = [v for v in values if v.strip()]
                found.setdefault(match.group(1), []).extend(kept)
        return found

    def time_of(self, name: str) -> datetime | None:
        raw = self.get(name)
        if raw is None:
            return None
        try:
            return parse_datetime(raw)
        except ValueError:
            raise invalid(
                name, f"not an ISO 8601 date or date-time (e.g. 2026-11-24T09:30:00Z): {raw!r}"
            ) from None

    def number(self, name: str) -> float | None:
        raw = self.get(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise invalid(name, f"not a number: {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise invalid(name, "not a finite number")
        return value

    def integer(self, name: str, *, minimum: int, maximum: int) -> int | None:
        raw = self.get(name)
        if raw is None:
            return None
        if not raw.isdigit() or len(raw) > 9:
            raise invalid(name, f"not a whole number: {raw!r}")
        value = int(raw)
        if not minimum <= value <= maximum:
            raise invalid(name, f"must be between {minimum} and {maximum}")
        return value

    def flag(self, name: str) -> bool:
        """A yes-or-no parameter: one of ``FLAG_VALUES`` (any case), or refused."""
        value = (self.get(name) or "false").lower()
        if value not in FLAG_VALUES:
            raise invalid(name, "true or false")
        return value in ("true", "1", "yes", "all")


def invalid(name: str, message: str) -> InvalidInput:
    return InvalidInput(
        f"{name}: {message}", errors=[{"field": name, "message": message, "type": "value_error"}]
    )


def _merged(*sources: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Each source's keys replace the earlier sources' (the body wins over the query)."""
    merged: dict[str, list[str]] = {}
    for source in sources:
        these: dict[str, list[str]] = {}
        for key, value in source:
            these.setdefault(key, []).append(value)
        merged.update(these)
    if sum(len(v) for v in merged.values()) > MAX_FIELDS:
        raise BadRequest(f"At most {MAX_FIELDS} parameters")
    return merged


def query_params(request: Request) -> Params:
    params = Params(_merged(_pairs(request.scope["query_string"])))
    for name, limit in MAX_LENGTH.items():
        if any(len(value) > limit for value in params.values.get(name, ())):
            raise invalid(name, f"at most {limit} characters")
    return params


def _pairs(raw: bytes) -> list[tuple[str, str]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("Parameters must be UTF-8") from None
    return parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS * 2)


async def form_params(request: Request, *, max_files: int, max_file_bytes: int) -> Params:
    """The query string and the body (urlencoded or multipart) of a POST."""
    query = _pairs(request.scope["query_string"])
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("", "application/x-www-form-urlencoded"):
        return Params(_merged(query, _pairs(await request.body())))
    if content_type != "multipart/form-data":
        raise UnsupportedMediaType(
            "Send application/x-www-form-urlencoded, or multipart/form-data with media files"
            f" (got {content_type})"
        )
    parts = await read_parts(
        request,
        max_files=max_files,
        max_fields=MAX_FIELDS,
        max_file_bytes=max_file_bytes,
        max_field_bytes=64 * 1024,
    )
    fields: list[tuple[str, str]] = []
    files: list[Part] = []
    for part in parts:
        if part.is_file:
            if _FILE_NAMES.match(part.name) and part.size:
                files.append(part)
            continue
        try:
            fields.append((part.name, part.data.decode("utf-8")))
        except UnicodeDecodeError:
            raise BadRequest(f"The part {part.name!r} is not UTF-8") from None
    return Params(_merged(query, fields), files)
