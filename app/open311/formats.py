"""Open311's two wire formats, JSON and XML, by the "Spark convention": the JSON is the XML
without its root element, every container of repeated elements is a JSON array (one member
or none included), and XML leaves out elements whose value is null (validators fail on an
empty ``<expected_datetime/>``). Datetimes go out as ``YYYY-MM-DDTHH:MM:SSZ``, the only form
every client read accepts; any ISO 8601 comes in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any
from xml.sax.saxutils import escape

import orjson
from starlette.responses import Response

JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "text/xml; charset=utf-8"
XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'

# The child element of each container (JSON arrays are these in XML).
CHILDREN: Mapping[str, str] = {
    "services": "service",
    "service_requests": "request",
    "service_request_updates": "request_update",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
    "media_urls": "media_url",
    "groups": "group",
}
# Characters XML 1.0 cannot carry at all (a description may hold them); dropped on the way out.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class Format(StrEnum):
    json = "json"
    xml = "xml"

    @property
    def media_type(self) -> str:
        return JSON_TYPE if self is Format.json else XML_TYPE


def format_of(path: str, accept: str | None = None) -> Format:
    """The format a request asks for: by its extension; without one, XML (the spec's
    mandatory format) unless the client's Accept names JSON and not XML."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if last.endswith(".json"):
        return Format.json
    if last.endswith(".xml"):
        return Format.xml
    accept = (accept or "").lower()
    if "json" in accept and "xml" not in accept:
        return Format.json
    return Format.xml


def timestamp(value: datetime | None) -> str | None:
    """A time as ``2026-11-24T09:30:00Z`` (UTC, whole seconds)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(raw: str) -> datetime:
    """Any ISO 8601 date or date-time: fractions, ``Z`` or an offset, a date alone (midnight
    UTC), and an offset whose ``+`` arrived as a space from an unencoded query string. A time
    without a zone is taken as UTC. ValueError otherwise."""
    value = raw.strip()
    if len(value) > 40:
        raise ValueError("too long")
    if len(value) > 19 and value[-6] == " " and value[-3] == ":":
        value = value[:-6] + "+" + value[-5:]
    if len(value) == 10:
        return _within(datetime.combine(date.fromisoformat(value), time(), UTC))
    parsed = datetime.fromisoformat(value)
    return _within(parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC))


# The earliest and latest times read. Earlier or later means the same to every filter (no
# ticket is that old or that new) and leaves a margin for the window's arithmetic: year 1
# less a day, or 9999-12-31 at -23:59 in UTC, overflowed into a 500 (schemathesis).
_EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
_LATEST = datetime(9998, 12, 31, tzinfo=UTC)


def _within(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        return _EARLIEST if value.year < 5000 else _LATEST
    return min(max(utc, _EARLIEST), _LATEST)


# -- rendering ----------------------------------------------------------------------------------


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return timestamp(value) or ""
    return escape(_NOT_XML.sub("", str(value)))


def _xml_element(name: str, value: Any, out: list[str]) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        out.append(f"<{name}>")
        for key, item in value.items():
            _xml_element(key, item, out)
        out.append(f"</{name}>")
    elif isinstance(value, list | tuple):
        child = CHILDREN.get(name, "item")
        out.append(f"<{name}>")
        for item in value:
            _xml_element(child, item, out)
        out.append(f"</{name}>")
    else:
        out.append(f"<{name}>{_xml_text(value)}</{name}>")


def to_xml(root: str, content: Mapping[str, Any] | Sequence[Any]) -> bytes:
    """``content`` (an object, or the members of the root container) as an XML document."""
    out: list[str] = []
    _xml_element(root, content, out)
    return XML_DECLARATION + "".join(out).encode()


def _json_default(value: Any) -> Any:
    raise TypeError(f"not JSON: {type(value).__name__}")


def to_json(content: Mapping[str, Any] | Sequence[Any]) -> bytes:
    return orjson.dumps(content, default=_json_default)


def render(fmt: Format, root: str, content: Mapping[str, Any] | Sequence[Any]) -> bytes:
    return to_json(content) if fmt is Format.json else to_xml(root, content)


def respond(
    fmt: Format,
    root: str,
    content: Mapping[str, Any] | Sequence[Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        render(fmt, root, content),
        status_code=status_code,
        headers=dict(headers or {}) | {"content-type": fmt.media_type},
    )


def error_body(fmt: Format, errors: Iterable[tuple[int, str]]) -> bytes:
    """The spec's error document: ``[{"code", "description"}]`` or ``<errors><error>``."""
    return render(
        fmt, "errors", [{"code": code, "description": description} for code, description in errors]
    )


def error_response(
    fmt: Format,
    status_code: int,
    errors: Iterable[tuple[int, str]],
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(fmt, errors),
        status_code=status_code,
        headers=dict(headers or {}) | {"content-type": fmt.media_type},
    )
