"""How a legacy system's words map onto ours: column names, categories, statuses, values.

``resolve_columns`` finds our fields among a file's columns (CSV header or GeoJSON
properties), ``parse_service_map`` reads the operator's category → service code map,
``legacy_status`` reads a legacy status, and ``RowReader`` turns one row's values into an
``ImportRow`` (or says why it cannot, with a ``RowError``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from app.core.errors import InvalidInput
from geo.validation import check_lonlat

MAX_EXTERNAL_ID = 200  # report.external_id

# Our field → the column names (or GeoJSON property names) that hold it, first match wins.
# Names are compared case-insensitively, with spaces and hyphens read as underscores. Beyond the
# common names, those of the 311 exports most cities publish are understood where they are
# unambiguous: LA (MyLA311: srnumber, requesttype, createddate, closeddate), Socrata portals
# such as NYC (unique_key, complaint_type, descriptor, created_date, closed_date,
# incident_address) and Chicago (sr_number, sr_type, street_address), Boston (case_enquiry_id,
# open_dt, closed_dt, case_status), San Francisco and Open311 GeoReport v2 (service_name,
# requested_datetime, status_description, long). A name that could mean two things (`type`,
# `location`) is not guessed: map it with ``ColumnMapping``.
COLUMNS: dict[str, tuple[str, ...]] = {
    "service_code": (
        "service_code",
        "service",
        "category",
        "requesttype",
        "request_type",
        "complaint_type",
        "sr_type",
        "service_name",
    ),
    "lon": ("lon", "longitude", "lng", "long", "x"),
    "lat": ("lat", "latitude", "y"),
    "reported_at": (
        "reported_at",
        "created_at",
        "createddate",
        "requested_datetime",
        "date",
        "created_date",
        "open_dt",
    ),
    "description": ("description", "details", "text", "descriptor"),
    "address": ("address", "location_text", "street_address", "incident_address"),
    "external_id": (
        "external_id",
        "id",
        "service_request_id",
        "srnumber",
        "sr_number",
        "unique_key",
        "case_enquiry_id",
    ),
    "status": ("status", "request_status", "status_description", "case_status"),
    "closed_at": ("closed_at", "closeddate", "closed_date", "closed_datetime", "closed_dt"),
}

# A legacy status (lower-cased, first matching word wins) → what the ticket becomes. Statuses
# that mean "still open" (open, new, pending ...) leave the ticket open; a duplicate clusters
# into its original by itself. Anything else is counted as unknown and left open.
LEGACY_STATUSES: tuple[tuple[str, str | None], ...] = (
    ("not our", "not_our_responsibility"),
    ("referred", "not_our_responsibility"),
    ("transferred", "not_our_responsibility"),
    ("cancel", "rejected"),
    ("reject", "rejected"),
    ("invalid", "rejected"),
    ("void", "rejected"),
    ("duplicate", None),
    ("closed", "closed"),
    ("complete", "closed"),
    ("resolved", "closed"),
    ("fixed", "closed"),
    ("done", "closed"),
    ("progress", "in_progress"),
    ("started", "in_progress"),
    ("scheduled", "scheduled"),
    ("assigned", "acknowledged"),
    ("acknowledged", "acknowledged"),
    ("open", None),
    ("new", None),
    ("pending", None),
    ("submitted", None),
    ("received", None),
)


def legacy_status(raw: str) -> tuple[bool, str | None]:
    """(understood, status to set or None to leave open) for a legacy status text."""
    lowered = raw.casefold()
    for word, status in LEGACY_STATUSES:
        if word in lowered:
            return True, status
    return False, None


REQUIRED_COLUMNS = ("service_code", "lon", "lat", "reported_at")


class RowError(Exception):
    """Why one row cannot be imported: a short ``reason`` to count by, and a ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ImportRow:
    position: int  # CSV line or GeoJSON feature number
    category: str  # as in the file
    lon: float
    lat: float
    reported_at: datetime  # UTC
    naive: bool  # the file gave no UTC offset
    description: str | None
    address: str | None
    external_id: str
    status: str | None = None  # the legacy status text, as in the file
    closed_at: datetime | None = None  # UTC


def _column_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().casefold())


_ALIASES = {field: tuple(_column_key(a) for a in names) for field, names in COLUMNS.items()}


def resolve_columns(
    names: Sequence[str], given: Mapping[str, str] | None = None, *, statuses: bool = True
) -> dict[str, int]:
    """Our field → the index of the column holding it: the column ``given`` for it (the
    operator's mapping), else the first of its usual names the file has.

    Without ``statuses`` the status and closure columns are not read. Raises ``InvalidInput``
    when ``given`` names a column the file lacks, listing the columns it has.
    """
    keys = [_column_key(n) for n in names]
    given = dict(given or {})
    missing = {f: c for f, c in given.items() if _column_key(c) not in keys}
    if missing:
        wanted = ", ".join(f"{f}={c!r}" for f, c in missing.items())
        message = (
            f"The column mapping names columns the file does not have ({wanted}); "
            f"its columns are: {', '.join(names) or 'none'}"
        )
        raise InvalidInput(
            message,
            errors=[
                {"field": f"columns.{f}", "message": f"no column {c!r}", "type": "value_error"}
                for f, c in missing.items()
            ],
        )
    found = {f: keys.index(_column_key(c)) for f, c in given.items()}
    taken = set(found.values())
    for field_name, aliases in _ALIASES.items():
        if field_name in found:
            continue
        for alias in aliases:
            # A column the operator mapped to another field is not read twice.
            if alias in keys and keys.index(alias) not in taken:
                found[field_name] = keys.index(alias)
                break
    if not statuses:
        found.pop("status", None)
        found.pop("closed_at", None)
    return found


def parse_column_mapping(pairs: Sequence[str] | str | None) -> dict[str, str]:
    """``['service_code=sr_type', 'external_id=sr_number']`` (or one comma-separated string)
    → {our field: column}; refuses fields we do not have, naming the ones we do."""
    if pairs is None:
        return {}
    items = pairs.split(",") if isinstance(pairs, str) else list(pairs)
    mapping: dict[str, str] = {}
    for item in items:
        name, sep, column = item.partition("=")  # column names may hold '=', fields never
        name, column = name.strip(), column.strip()
        if not item.strip():
            continue
        if not sep or not name or not column:
            raise option_error("columns", f"column mapping {item.strip()!r} is not FIELD=COLUMN")
        if name not in COLUMNS:
            raise option_error(
                "columns",
                f"column mapping {item.strip()!r}: no field {name!r}; "
                f"the fields are: {', '.join(COLUMNS)}",
            )
        mapping[name] = column
    return mapping


def parse_service_map(spec: str | None) -> dict[str, str]:
    """``'Legacy name=code,Other=code2'`` or a JSON object → {legacy name: service code}."""
    if spec is None or not spec.strip():
        return {}
    spec = spec.strip()
    if spec.startswith("{"):
        try:
            data = orjson.loads(spec)
        except orjson.JSONDecodeError as exc:
            raise option_error("service_map", f"the service map is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise option_error(
                "service_map", 'the service map must be a JSON object of "name": "code" pairs'
            )
        return {k.strip(): v.strip() for k, v in data.items()}
    mapping = {}
    for pair in spec.split(","):
        name, sep, code = pair.rpartition("=")  # codes never hold '=', legacy names might
        if not sep or not name.strip() or not code.strip():
            raise option_error(
                "service_map",
                f"service map entry {pair.strip()!r} is not NAME=CODE "
                "(use a JSON object for names that contain commas)",
            )
        mapping[name.strip()] = code.strip()
    return mapping


class RowReader:
    """Turns one row's raw values into an ``ImportRow``, or says why it cannot."""

    def __init__(
        self, zone: ZoneInfo, date_format: str | None, service_map: Mapping[str, str]
    ) -> None:
        self.zone = zone
        self.date_format = date_format
        self._map = {_category_key(k): v for k, v in service_map.items()}

    def service_code(self, category: str) -> str:
        mapped = self._map.get(_category_key(category))
        return mapped if mapped is not None else category.strip().lower()

    def parse(
        self, values: Mapping[str, Any], position: int, point: Sequence[Any] | None = None
    ) -> ImportRow:
        category = _text(values.get("service_code"))
        if category is None:
            raise RowError("missing_service", "The row names no service (service_code/category)")
        if point is not None:
            lon, lat = _number(point[0], "lon"), _number(point[1], "lat")
        else:
            raw_lon, raw_lat = values.get("lon"), values.get("lat")
            if _text(raw_lon) is None or _text(raw_lat) is None:
                raise RowError("missing_coordinates", "The row has no longitude/latitude")
            lon, lat = _number(raw_lon, "lon"), _number(raw_lat, "lat")
        problems = check_lonlat(lon, lat)
        if problems:
            raise RowError("bad_coordinates", problems[0].message)
        raw_time = _text(values.get("reported_at"))
        if raw_time is None:
            raise RowError("missing_date", "The row has no time (reported_at/created_at/date)")
        reported_at, naive = self.parse_time(raw_time)
        description = _text(values.get("description"))
        address = _text(values.get("address"))
        external_id = _text(values.get("external_id"))
        if external_id is None:
            external_id = _row_hash(category, lon, lat, reported_at, description, address)
        elif len(external_id) > MAX_EXTERNAL_ID:
            raise RowError("bad_id", f"The id is longer than {MAX_EXTERNAL_ID} characters")
        raw_closed = _text(values.get("closed_at"))
        closed_at = self.parse_time(raw_closed)[0] if raw_closed else None
        if closed_at is not None and closed_at < reported_at:
            raise RowError("bad_date", f"Closed ({raw_closed}) before it was reported")
        return ImportRow(
            position=position,
            category=category,
            lon=lon,
            lat=lat,
            reported_at=reported_at,
            naive=naive,
            description=description,
            address=address,
            external_id=external_id,
            status=_text(values.get("status")),
            closed_at=closed_at,
        )

    def parse_time(self, raw: str) -> tuple[datetime, bool]:
        try:
            if self.date_format:
                # Naive unless the format has %z; the zone is applied below.
                value = datetime.strptime(raw, self.date_format)  # noqa: DTZ007
            else:
                value = datetime.fromisoformat(raw)
        except ValueError:
            hint = (
                f"does not match the date format {self.date_format!r}"
                if self.date_format
                else "is not an ISO 8601 time; for other layouts give the date format "
                "(e.g. %m/%d/%y %H:%M)"
            )
            raise RowError("bad_date", f"{raw!r} {hint}") from None
        naive = value.tzinfo is None
        if naive:
            value = value.replace(tzinfo=self.zone)
        return value.astimezone(UTC), naive


def _category_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a JSON id 123.0
    out = str(value).strip()
    return out or None


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise RowError("bad_coordinates", f"{name} {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError("bad_coordinates", f"{name} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise RowError("bad_coordinates", f"{name} must be a finite number")
    return number


def _row_hash(
    category: str,
    lon: float,
    lat: float,
    reported_at: datetime,
    description: str | None,
    address: str | None,
) -> str:
    """A stable id for a row that has none: the same row always gets the same id."""
    parts = (
        _category_key(category),
        f"{lon:.6f}",
        f"{lat:.6f}",
        reported_at.isoformat(),
        " ".join((description or "").split()),
        " ".join((address or "").split()),
    )
    return "sha256:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def option_error(field_name: str, message: str) -> InvalidInput:
    """An option (not a row) is wrong: the whole import is refused before anything is read."""
    return InvalidInput(
        message, errors=[{"field": field_name, "message": message, "type": "value_error"}]
    )
