"""Historical import: a legacy system's reports (CSV or GeoJSON) through the one intake path.

read → check every row locally and note its time → order the rows by their own time →
per batch: skip ids already imported, file each row with ``submit_report`` in its own
savepoint (a bad row is rejected, the batch goes on) → commit the batch.

Rows are filed oldest first because the duplicate window is measured from each report's own
time: a 2020 report must meet the tickets opened by the reports before it, not the ones after.

CSV is streamed twice and never held whole: the first pass keeps 24 bytes per good row (its
time, byte offset and line number, in ``array``s), the second seeks to each row in time order.
A million rows take about 24 MB, plus about 70 MB while sorting (skipped when the file is in
time order already). GeoJSON is loaded whole, so its size is capped.

This use case commits, every ``batch_size`` rows, unlike the services that only flush: a
crash loses at most one batch, a re-run skips what was committed, and no transaction holds
more than one batch's neighbourhood locks (a 20,000-row transaction would hold tens of
thousands of advisory locks, blocking citizens' reports and overflowing the lock table).

The command ``kerbside import`` is at the end of this module. The intake modules (geoalchemy2,
shapely, Pillow) are imported inside the functions that file rows, so the other ``kerbside``
commands do not pay for them.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import heapq
import math
import re
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError

from app.core.errors import InvalidInput, KerbsideError, PayloadTooLarge
from app.jobs.queue import REFRESH_MAP_GRID, defer
from geo.validation import check_lonlat

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.jurisdictions.catalog import Catalog, JurisdictionInfo
    from app.reports.service import Submitter

Format = Literal["csv", "geojson"]
Progress = Callable[[int, int], None]  # (rows done, rows in the file)

DEFAULT_BATCH_SIZE = 500
MAX_GEOJSON_BYTES = 256 * 1024 * 1024
MAX_EXAMPLES = 20
MAX_EXTERNAL_ID = 200  # report.external_id
MAX_LABEL = 100  # ticket_event.actor_label

# Our field → the column names (or GeoJSON property names) that hold it, first match wins.
# Names are compared case-insensitively, with spaces and hyphens read as underscores. Beyond the
# common names, those of the LA (MyLA311) and NYC (Socrata) 311 exports are understood.
COLUMNS: dict[str, tuple[str, ...]] = {
    "service_code": (
        "service_code",
        "service",
        "category",
        "requesttype",
        "request_type",
        "complaint_type",
    ),
    "lon": ("lon", "longitude", "lng", "x"),
    "lat": ("lat", "latitude", "y"),
    "reported_at": (
        "reported_at",
        "created_at",
        "createddate",
        "requested_datetime",
        "date",
        "created_date",
    ),
    "description": ("description", "details", "text"),
    "address": ("address", "location_text"),
    "external_id": ("external_id", "id", "service_request_id", "srnumber", "unique_key"),
    "status": ("status", "request_status"),
    "closed_at": ("closed_at", "closeddate", "closed_date", "closed_datetime"),
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

# Rows already filed by an earlier run (or earlier in this one); served by the unique index
# uq_report_channel_external_id.
ALREADY_IMPORTED = text(
    "SELECT external_id FROM report"
    " WHERE jurisdiction_id = :jurisdiction_id AND channel = 'import'"
    " AND external_id = ANY(CAST(:ids AS varchar[]))"
)
JURISDICTION_TIMEZONE = text("SELECT timezone FROM jurisdiction WHERE id = :id")

_BOM = b"\xef\xbb\xbf"


class ImportFileError(InvalidInput):
    """The file as a whole cannot be read (not CSV/GeoJSON, columns missing, not UTF-8)."""

    slug, title = "unreadable-file", "Unreadable import file"


class RowError(Exception):
    """Why one row cannot be imported: a short ``reason`` to count by, and a ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# -- the summary --------------------------------------------------------------------------------


class RejectedRow(BaseModel):
    line: int | None = Field(
        default=None, description="CSV: the line the row starts on (1: header)"
    )
    feature: int | None = Field(default=None, description="GeoJSON: the feature's number, from 1")
    reason: str
    detail: str


class Rejections(BaseModel):
    total: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict)
    examples: list[RejectedRow] = Field(
        default_factory=list,
        description="The first rows rejected (by position), and the first of every reason",
    )
    unknown_services: dict[str, int] = Field(
        default_factory=dict,
        description="Categories that matched no service, with their row counts (the most "
        "frequent 20): candidates for the service map",
    )


class ImportSummary(BaseModel):
    source: str
    format: Format
    jurisdiction: str
    dry_run: bool
    timezone: str = Field(description="The zone applied to times written without a UTC offset")
    naive_times: int = Field(
        description="Rows filed whose time had no UTC offset (so were read in `timezone`)"
    )
    rows_read: int
    tickets_opened: int
    reports_joined: int = Field(description="Reports that joined an open ticket")
    skipped_already_imported: int
    rejected: Rejections
    statuses_set: dict[str, int] = Field(
        default_factory=dict,
        description="Tickets given a legacy status (closed, rejected, ...), by status",
    )
    unknown_statuses: dict[str, int] = Field(
        default_factory=dict,
        description="Legacy statuses not understood (their tickets stay open), with counts",
    )
    reported_from: datetime | None = Field(default=None, description="The oldest row filed")
    reported_to: datetime | None = Field(default=None, description="The newest row filed")
    elapsed_seconds: float
    rows_per_second: float


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


@dataclass(frozen=True, slots=True)
class Rejection:
    position: int
    reason: str
    detail: str


@dataclass
class _Tally:
    unit: Literal["line", "feature"]
    rows_read: int = 0
    opened: int = 0
    joined: int = 0
    skipped: int = 0
    naive: int = 0
    first: datetime | None = None
    last: datetime | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    unknown_services: Counter[str] = field(default_factory=Counter)
    statuses_set: Counter[str] = field(default_factory=Counter)
    unknown_statuses: Counter[str] = field(default_factory=Counter)
    _earliest: list[tuple[int, str, str]] = field(default_factory=list)  # max-heap by position
    _first_of_reason: dict[str, tuple[int, str, str]] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.opened + self.joined + self.skipped + self.rejected

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())

    def reject(self, rejection: Rejection, category: str | None = None) -> None:
        position, reason = rejection.position, rejection.reason
        self.reasons[reason] += 1
        # Bounded: a column of free text must not grow this without end.
        if (
            category is not None
            and reason == "unknown_service"
            and (category in self.unknown_services or len(self.unknown_services) < 1000)
        ):
            self.unknown_services[category] += 1
        item = (-position, reason, rejection.detail)
        if len(self._earliest) < MAX_EXAMPLES:
            heapq.heappush(self._earliest, item)
        elif position < -self._earliest[0][0]:
            heapq.heapreplace(self._earliest, item)
        best = self._first_of_reason.get(reason)
        if best is None or position < best[0]:
            self._first_of_reason[reason] = (position, reason, rejection.detail)

    def filed(self, row: ImportRow, *, joined: bool) -> None:
        if joined:
            self.joined += 1
        else:
            self.opened += 1
        self.naive += row.naive
        self.first = row.reported_at if self.first is None else min(self.first, row.reported_at)
        self.last = row.reported_at if self.last is None else max(self.last, row.reported_at)

    def rejections(self) -> Rejections:
        chosen = {-p: (r, d) for p, r, d in self._earliest}
        for position, reason, detail in self._first_of_reason.values():
            chosen.setdefault(position, (reason, detail))
        examples = [
            RejectedRow(line=position, reason=reason, detail=detail)
            if self.unit == "line"
            else RejectedRow(feature=position, reason=reason, detail=detail)
            for position, (reason, detail) in sorted(chosen.items())
        ]
        return Rejections(
            total=self.rejected,
            by_reason=dict(self.reasons.most_common()),
            examples=examples,
            unknown_services=dict(self.unknown_services.most_common(20)),
        )


# -- reading rows -------------------------------------------------------------------------------


def _column_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().casefold())


_ALIASES = {field: tuple(_column_key(a) for a in names) for field, names in COLUMNS.items()}


def resolve_columns(names: Sequence[str]) -> dict[str, int]:
    """Our field → the index of the column holding it (aliases in priority order)."""
    keys = [_column_key(n) for n in names]
    found: dict[str, int] = {}
    for field_name, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in keys:
                found[field_name] = keys.index(alias)
                break
    return found


def format_for(filename: str) -> Format | None:
    """The format a file name suggests: ``.csv`` or ``.geojson``/``.json``."""
    suffix = Path(filename).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".geojson", ".json"):
        return "geojson"
    return None


def parse_service_map(spec: str | None) -> dict[str, str]:
    """``'Legacy name=code,Other=code2'`` or a JSON object → {legacy name: service code}."""
    if spec is None or not spec.strip():
        return {}
    spec = spec.strip()
    if spec.startswith("{"):
        try:
            data = orjson.loads(spec)
        except orjson.JSONDecodeError as exc:
            raise _option_error("service_map", f"the service map is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise _option_error(
                "service_map", 'the service map must be a JSON object of "name": "code" pairs'
            )
        return {k.strip(): v.strip() for k, v in data.items()}
    mapping = {}
    for pair in spec.split(","):
        name, sep, code = pair.rpartition("=")  # codes never hold '=', legacy names might
        if not sep or not name.strip() or not code.strip():
            raise _option_error(
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


class _Lines:
    """Decoded lines of a binary file, knowing the byte offset and number of the next one."""

    def __init__(self, stream: IO[bytes], offset: int, line: int) -> None:
        self.stream = stream
        self.offset = offset
        self.line = line  # lines handed out so far

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self.stream.readline()
        if not raw:
            raise StopIteration
        self.offset += len(raw)
        self.line += 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ImportFileError(
                f"Line {self.line} is not UTF-8 text; save the file as UTF-8 and try again"
            ) from None


class CsvSource:
    """A CSV file with a header row, read twice: scan, then the good rows in time order."""

    unit: Literal["line"] = "line"

    def __init__(self, stream: IO[bytes], reader: RowReader) -> None:
        self.stream = stream
        self.reader = reader
        self._columns: dict[str, int] = {}
        self._delimiter = ","
        self._times = array("d")
        self._offsets = array("q")
        self._lines = array("q")

    def scan(self, tally: _Tally) -> None:
        start = len(_BOM) if self.stream.read(len(_BOM)) == _BOM else 0
        self.stream.seek(start)
        first = self.stream.readline()
        if not first.strip():
            raise ImportFileError("The file is empty; a CSV import needs a header row")
        self._delimiter = _delimiter(first)
        self.stream.seek(start)
        lines = _Lines(self.stream, start, 0)
        records = csv.reader(lines, delimiter=self._delimiter)
        header = next(records)
        self._columns = resolve_columns(header)
        missing = [f for f in REQUIRED_COLUMNS if f not in self._columns]
        if missing:
            wanted = "; ".join(f"{f}: {'|'.join(COLUMNS[f])}" for f in missing)
            raise ImportFileError(
                f"The header lacks required columns ({wanted}); it has: {', '.join(header)}",
                errors=[
                    {"field": f, "message": "no such column", "type": "missing"} for f in missing
                ],
            )
        while True:
            offset, line = lines.offset, lines.line + 1
            try:
                record = next(records)
            except StopIteration:
                break
            except csv.Error as exc:
                tally.rows_read += 1
                tally.reject(Rejection(line, "bad_csv", str(exc)))
                continue
            if not any(value.strip() for value in record):
                continue
            tally.rows_read += 1
            try:
                row = self._row(record, line)
            except RowError as exc:
                tally.reject(Rejection(line, exc.reason, exc.detail))
                continue
            self._times.append(row.reported_at.timestamp())
            self._offsets.append(offset)
            self._lines.append(line)

    def rows(self) -> Iterator[ImportRow | Rejection]:
        times = self._times
        in_order = all(times[i] <= times[i + 1] for i in range(len(times) - 1))
        # Stable: rows of the same second keep their order in the file.
        order: Sequence[int] = (
            range(len(times)) if in_order else sorted(range(len(times)), key=times.__getitem__)
        )
        lines = _Lines(self.stream, -1, 0)
        records = csv.reader(lines, delimiter=self._delimiter)
        for index in order:
            offset, line = self._offsets[index], self._lines[index]
            if lines.offset != offset:
                self.stream.seek(offset)
                lines = _Lines(self.stream, offset, line - 1)
                records = csv.reader(lines, delimiter=self._delimiter)
            try:
                yield self._row(next(records), line)
            except RowError as exc:  # the file changed under us
                yield Rejection(line, exc.reason, exc.detail)

    def _row(self, record: list[str], line: int) -> ImportRow:
        values = {f: record[i] for f, i in self._columns.items() if i < len(record)}
        return self.reader.parse(values, line)


def _delimiter(header: bytes) -> str:
    """Comma, unless the header line holds more semicolons, tabs or pipes (European exports)."""
    counts = {d: header.count(d.encode()) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


class GeoJsonSource:
    """A FeatureCollection of Point features; loaded whole (capped), sorted in memory."""

    unit: Literal["feature"] = "feature"

    def __init__(self, stream: IO[bytes], reader: RowReader, max_bytes: int) -> None:
        self.stream = stream
        self.reader = reader
        self.max_bytes = max_bytes
        self._rows: list[ImportRow] = []

    def scan(self, tally: _Tally) -> None:
        data = self.stream.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(
                f"GeoJSON files are read whole, so at most {self.max_bytes // 2**20} MiB; "
                "split the file or convert it to CSV"
            )
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ImportFileError(f"The file is not valid JSON: {exc}") from None
        features = document.get("features") if isinstance(document, dict) else None
        if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
            raise ImportFileError("The file is not a GeoJSON FeatureCollection")
        if not isinstance(features, list):
            raise ImportFileError("The FeatureCollection has no 'features' list")
        for number, feature in enumerate(features, start=1):
            tally.rows_read += 1
            try:
                self._rows.append(self._row(feature, number))
            except RowError as exc:
                tally.reject(Rejection(number, exc.reason, exc.detail))
        self._rows.sort(key=lambda r: (r.reported_at, r.position))

    def rows(self) -> Iterator[ImportRow | Rejection]:
        rows, self._rows = self._rows, []
        yield from rows

    def _row(self, feature: Any, number: int) -> ImportRow:
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise RowError("not_a_feature", "Not a GeoJSON Feature")
        properties = feature.get("properties") or {}
        if not isinstance(properties, dict):
            raise RowError("not_a_feature", "The feature's properties are not an object")
        columns = resolve_columns(list(properties))
        names = list(properties)
        values = {f: properties[names[i]] for f, i in columns.items()}
        if "external_id" not in values and feature.get("id") is not None:
            values["external_id"] = feature["id"]
        geometry = feature.get("geometry")
        point: Sequence[Any] | None = None
        if geometry is not None:
            if not isinstance(geometry, dict) or geometry.get("type") != "Point":
                kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry)
                raise RowError("not_a_point", f"The geometry is a {kind}, not a Point")
            coordinates = geometry.get("coordinates")
            if not isinstance(coordinates, list) or len(coordinates) < 2:
                raise RowError("bad_coordinates", "A Point needs [longitude, latitude]")
            point = coordinates
        return self.reader.parse(values, number, point)


# -- filing rows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportOptions:
    jurisdiction: str  # slug
    format: Format
    source_name: str  # the file's name, for the timeline ("import:<name>")
    service_map: Mapping[str, str] = field(default_factory=dict)
    timezone: str | None = None  # for times without an offset; None: the jurisdiction's
    date_format: str | None = None  # strptime format; None: ISO 8601
    dry_run: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    max_rows: int | None = None  # refuse larger files (the HTTP endpoint)
    max_geojson_bytes: int = MAX_GEOJSON_BYTES
    base_url: str = ""


async def import_reports(
    session: AsyncSession,
    catalog: Catalog,
    stream: IO[bytes],
    options: ImportOptions,
    *,
    progress: Progress | None = None,
) -> ImportSummary:
    """File every row of ``stream`` through ``submit_report``, oldest first; commits per batch.

    Raises ``KerbsideError`` before anything is written when the jurisdiction, an option or
    the file as a whole is wrong; a bad row is only counted (with its line and reason).
    """
    from app.reports.service import Submitter

    started = time.perf_counter()
    await catalog.jurisdictions(session, fresh=True)  # services added a moment ago count
    jurisdiction = await catalog.by_slug(session, options.jurisdiction)
    if jurisdiction is None:
        raise _option_error("jurisdiction", f"No jurisdiction {options.jurisdiction!r}")
    zone_name = (
        options.timezone
        or (await session.execute(JURISDICTION_TIMEZONE, {"id": jurisdiction.id})).scalar_one()
    )
    zone = _zone(zone_name)
    _check_service_map(options.service_map, jurisdiction)
    reader = RowReader(zone, options.date_format, options.service_map)
    source: CsvSource | GeoJsonSource = (
        CsvSource(stream, reader)
        if options.format == "csv"
        else GeoJsonSource(stream, reader, options.max_geojson_bytes)
    )
    tally = _Tally(unit=source.unit)
    await asyncio.to_thread(source.scan, tally)  # CPU-bound; keep the event loop free
    if options.max_rows is not None and tally.rows_read > options.max_rows:
        raise PayloadTooLarge(
            f"The file has {tally.rows_read:,} rows; one request imports at most "
            f"{options.max_rows:,}. Import larger files with the command line: "
            f"kerbside import FILE --jurisdiction {jurisdiction.slug}",
            rows=tally.rows_read,
            max_rows=options.max_rows,
        )
    if progress is not None:
        progress(tally.done, tally.rows_read)

    submitter = Submitter(
        label=f"import:{options.source_name}"[:MAX_LABEL], trusted=True, identified=True
    )
    for batch in _batches(source.rows(), max(1, options.batch_size)):
        ids = [item.external_id for item in batch if isinstance(item, ImportRow)]
        seen = set(
            (
                await session.execute(
                    ALREADY_IMPORTED, {"jurisdiction_id": jurisdiction.id, "ids": ids}
                )
            ).scalars()
        )
        for item in batch:
            if isinstance(item, Rejection):
                tally.reject(item)
            elif item.external_id in seen:
                tally.skipped += 1
            else:
                await _file(session, catalog, submitter, jurisdiction, reader, item, tally, options)
                seen.add(item.external_id)  # a repeated id later in the batch is skipped
            if progress is not None:
                progress(tally.done, tally.rows_read)
        if options.dry_run:
            await session.rollback()
        else:
            # The low-zoom map grid is rebuilt after the batch commits (one job waits at most).
            grid = REFRESH_MAP_GRID
            await defer(session, grid, lock=grid, queueing_lock=grid)
            await session.commit()

    elapsed = time.perf_counter() - started
    return ImportSummary(
        source=options.source_name,
        format=options.format,
        jurisdiction=jurisdiction.slug,
        dry_run=options.dry_run,
        timezone=zone_name,
        naive_times=tally.naive,
        rows_read=tally.rows_read,
        tickets_opened=tally.opened,
        reports_joined=tally.joined,
        skipped_already_imported=tally.skipped,
        rejected=tally.rejections(),
        statuses_set=dict(tally.statuses_set.most_common()),
        unknown_statuses=dict(tally.unknown_statuses.most_common(20)),
        reported_from=tally.first,
        reported_to=tally.last,
        elapsed_seconds=round(elapsed, 3),
        rows_per_second=round(tally.rows_read / elapsed, 1) if elapsed > 0 else 0.0,
    )


async def _file(
    session: AsyncSession,
    catalog: Catalog,
    submitter: Submitter,
    jurisdiction: JurisdictionInfo,
    reader: RowReader,
    row: ImportRow,
    tally: _Tally,
    options: ImportOptions,
) -> None:
    """One row through the intake path in its own savepoint: filed, skipped or rejected."""
    from app.reports.models import Channel
    from app.reports.schemas import Location, ReportIn
    from app.reports.service import submit_report

    code = reader.service_code(row.category)
    if code not in jurisdiction.services:
        # The service would say the same, after reloading the catalog on every miss.
        detail = (
            f"Unknown service {row.category!r} in {jurisdiction.name}; map it to one of: "
            f"{', '.join(sorted(jurisdiction.services))}"
        )
        tally.reject(Rejection(row.position, "unknown_service", detail), row.category)
        return
    try:
        report = ReportIn(
            service_code=code,
            jurisdiction=jurisdiction.slug,
            location=Location(lon=row.lon, lat=row.lat),
            address=row.address,
            description=row.description,
            client_id=row.external_id,
            reported_at=row.reported_at,
        )
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = str(error["loc"][0]) if error["loc"] else "row"
        tally.reject(Rejection(row.position, f"invalid_{where}", f"{where}: {error['msg']}"))
        return
    try:
        async with session.begin_nested():
            accepted, _ = await submit_report(
                session,
                catalog,
                submitter,
                report,
                channel=Channel.import_,
                base_url=options.base_url,
            )
            status_set = await _legacy_status(
                session, accepted.ticket.reference, row, tally, submitter.label
            )
    except KerbsideError as exc:
        tally.reject(Rejection(row.position, _reason(exc), exc.detail))
    except IntegrityError as exc:
        if "uq_report_channel_external_id" in str(exc.orig):
            tally.skipped += 1  # filed meanwhile by a concurrent import of the same file
        else:
            tally.reject(Rejection(row.position, "database_refused", str(exc.orig)))
    except DataError as exc:
        tally.reject(Rejection(row.position, "database_refused", str(exc.orig)))
    else:
        tally.filed(row, joined=accepted.joined_existing)
        if status_set:
            tally.statuses_set[status_set] += 1


async def _legacy_status(
    session: AsyncSession, reference: str, row: ImportRow, tally: _Tally, label: str
) -> str | None:
    """Give the row's ticket the legacy system's status, at its historical time."""
    from app.tickets.models import TicketStatus
    from app.tickets.workflow import record_legacy_status

    if row.status is None:
        return None
    understood, status = legacy_status(row.status)
    if not understood:
        tally.unknown_statuses[row.status] += 1
        return None
    if status is None:
        return None
    at = row.closed_at or row.reported_at
    done = await record_legacy_status(
        session, reference, TicketStatus(status), at=at, legacy=row.status, actor_label=label
    )
    return status if done else None


def _reason(exc: KerbsideError) -> str:
    first = exc.errors[0] if exc.errors else {}
    kind = str(first.get("type", ""))
    if kind in ("outside_jurisdiction", "unknown_service"):
        return kind
    where = str(first.get("field", "")).split(".")[0]
    return f"invalid_{where}" if where else exc.slug.replace("-", "_")


def _batches(
    items: Iterator[ImportRow | Rejection], size: int
) -> Iterator[list[ImportRow | Rejection]]:
    batch: list[ImportRow | Rejection] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _option_error(
            "timezone", f"Unknown timezone {name!r}; use an IANA name like Europe/London"
        ) from None


def _check_service_map(service_map: Mapping[str, str], jurisdiction: JurisdictionInfo) -> None:
    """A typo in the map would reject thousands of rows one by one: refuse it up front."""
    wrong = sorted({c for c in service_map.values() if c not in jurisdiction.services})
    if wrong:
        raise _option_error(
            "service_map",
            f"The service map names codes {jurisdiction.name} does not have: {', '.join(wrong)}; "
            f"valid codes: {', '.join(sorted(jurisdiction.services))}",
        )


def _option_error(field_name: str, message: str) -> InvalidInput:
    return InvalidInput(
        message, errors=[{"field": field_name, "message": message, "type": "value_error"}]
    )


# -- the command: kerbside import ---------------------------------------------------------------


def add_import_command(sub: Any) -> None:
    """Register ``kerbside import`` (see ``app.cli.EXTRA_COMMANDS``)."""
    command = sub.add_parser(
        "import",
        help="import historical reports (CSV or GeoJSON) through the intake path",
        description="Files a legacy system's reports oldest first, with their original times, "
        "so they cluster into tickets as if they had been reported then. Re-running the same "
        "file imports nothing twice. Prints a JSON summary; see docs/import.md.",
    )
    command.add_argument("file", type=Path, help="a .csv (header row) or .geojson file")
    command.add_argument("--jurisdiction", metavar="SLUG", required=True)
    command.add_argument(
        "--format", choices=["csv", "geojson"], help="default: from the file's extension"
    )
    command.add_argument(
        "--service-map",
        metavar="MAP",
        help="legacy category → service code: 'Name=code,Other=code2', a JSON object, "
        "or @file.json",
    )
    command.add_argument(
        "--timezone",
        metavar="ZONE",
        help="IANA zone for times without a UTC offset (default: the jurisdiction's)",
    )
    command.add_argument(
        "--date-format",
        metavar="FORMAT",
        help="strptime format for times that are not ISO 8601, e.g. '%%m/%%d/%%y %%H:%%M'",
    )
    command.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per transaction (default {DEFAULT_BATCH_SIZE})",
    )
    command.add_argument(
        "--dry-run", action="store_true", help="check and cluster every row, then roll back"
    )
    command.set_defaults(run=cmd_import)


def cmd_import(args: argparse.Namespace) -> None:
    from app.cli import CommandError, _database
    from app.settings import get_settings

    path: Path = args.file
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    file_format = args.format or format_for(path.name)
    if file_format is None:
        raise CommandError(f"{path}: cannot tell the format from the name; pass --format")
    spec = args.service_map
    if spec and (spec.startswith("@") or (spec.endswith(".json") and Path(spec).is_file())):
        map_path = Path(spec.removeprefix("@"))
        try:
            spec = map_path.read_text()
        except OSError as exc:
            raise CommandError(f"{map_path}: {exc.strerror}") from exc
    try:
        service_map = parse_service_map(spec)
    except KerbsideError as exc:
        raise CommandError(exc.detail) from exc
    options = ImportOptions(
        jurisdiction=args.jurisdiction,
        format=file_format,
        source_name=path.name,
        service_map=service_map,
        timezone=args.timezone,
        date_format=args.date_format,
        dry_run=args.dry_run,
        batch_size=args.batch_size,
    )
    resolved = _database(get_settings())
    bar = ProgressBar(path.name)
    try:
        summary = asyncio.run(_run_import(path, options, bar))
    except KerbsideError as exc:
        raise CommandError(exc.detail) from exc
    except KeyboardInterrupt:
        bar.finish()
        print(
            "kerbside: import interrupted; the batches committed so far are kept, "
            "run the same command again to import the rest",
            file=sys.stderr,
        )
        raise
    finally:
        resolved.close()
    bar.finish()
    print(summary.model_dump_json(indent=2, exclude_none=True))
    if summary.rows_read == 0:
        print(f"kerbside: {path} holds no rows", file=sys.stderr)
        raise SystemExit(1)


async def _run_import(path: Path, options: ImportOptions, progress: Progress) -> ImportSummary:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.db import make_engine
    from app.jurisdictions.catalog import Catalog
    from app.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings, pool_size=1, parallel_query=True)
    try:
        async with AsyncSession(engine, expire_on_commit=False, autoflush=False) as session:
            with path.open("rb") as stream:
                return await import_reports(
                    session,
                    Catalog(),
                    stream,
                    replace(options, base_url=settings.public_base_url),
                    progress=progress,
                )
    finally:
        await engine.dispose()


class ProgressBar:
    """Rows done of the total, %, rows/s on stderr: redrawn on a terminal, a line every few
    seconds otherwise (logs, CI)."""

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else 5.0
        self.started = time.monotonic()
        self._shown_at = 0.0
        self._latest: tuple[int, int] | None = None
        self._shown: tuple[int, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        self._latest = (done, total)
        now = time.monotonic()
        if now - self._shown_at >= self.every:
            self._shown_at = now
            self._draw(done, total, now)

    def finish(self) -> None:
        """Show the last state (if not shown yet) and end the line; safe to call twice."""
        if self._latest is not None and self._latest != self._shown:
            self._draw(*self._latest, time.monotonic())
        if self.tty and self._shown is not None:
            self.stream.write("\n")
            self.stream.flush()
        self._latest = self._shown = None

    def _draw(self, done: int, total: int, now: float) -> None:
        self._shown = (done, total)
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        share = done / total if total else 1.0
        numbers = f"{done:,}/{total:,} rows {share:6.1%}  {rate:,.0f} rows/s"
        if self.tty:
            width = 28
            filled = round(width * share)
            left = (total - done) / rate if rate > 0 else 0.0
            eta = f"  ETA {int(left // 60)}:{int(left % 60):02d}" if done < total else ""
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r\x1b[Kimport {self.label} [{bar}] {numbers}{eta}")
        else:
            self.stream.write(f"kerbside: import {self.label}: {numbers}\n")
        self.stream.flush()
