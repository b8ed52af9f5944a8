"""Reading a legacy file: CSV (streamed twice, never held whole) or a GeoJSON FeatureCollection.

Each source first ``scan``s the whole file, counting the rows it reads and rejecting the ones
it cannot read (into a ``Tally``), then hands out the good ``rows`` oldest first.

CSV is streamed twice and never held whole: the first pass keeps 24 bytes per good row (its
time, byte offset and line number, in ``array``s), the second seeks to each row in time order.
A million rows take about 24 MB, plus about 70 MB while sorting (skipped when the file is in
time order already). GeoJSON is loaded whole, so its size is capped.
"""

from __future__ import annotations

import csv
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import orjson

from app.core.errors import InvalidInput, PayloadTooLarge
from app.imports.mapping import (
    COLUMNS,
    REQUIRED_COLUMNS,
    ImportRow,
    RowError,
    RowReader,
    resolve_columns,
)
from app.imports.schemas import Format

_BOM = b"\xef\xbb\xbf"


class ImportFileError(InvalidInput):
    """The file as a whole cannot be read (not CSV/GeoJSON, columns missing, not UTF-8)."""

    slug, title = "unreadable-file", "Unreadable import file"


@dataclass(frozen=True, slots=True)
class Rejection:
    position: int
    reason: str
    detail: str


class Tally(Protocol):
    """What a scan counts: every row it reads, and why it rejects the ones it cannot read."""

    rows_read: int

    def reject(self, rejection: Rejection) -> None: ...


def format_for(filename: str) -> Format | None:
    """The format a file name suggests: ``.csv`` or ``.geojson``/``.json``."""
    suffix = Path(filename).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".geojson", ".json"):
        return "geojson"
    return None


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

    def __init__(
        self,
        stream: IO[bytes],
        reader: RowReader,
        given: Mapping[str, str] | None = None,
        *,
        statuses: bool = True,
    ) -> None:
        self.stream = stream
        self.reader = reader
        self.given = given or {}
        self.statuses = statuses
        self.columns: dict[str, str] = {}  # our field → the column read for it
        self.unused_columns: list[str] = []
        self._columns: dict[str, int] = {}
        self._delimiter = ","
        self._times = array("d")
        self._offsets = array("q")
        self._lines = array("q")

    def scan(self, tally: Tally) -> None:
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
        self._columns = resolve_columns(header, self.given, statuses=self.statuses)
        missing = [f for f in REQUIRED_COLUMNS if f not in self._columns]
        if missing:
            wanted = "; ".join(f"{f}: {'|'.join(COLUMNS[f])}" for f in missing)
            raise ImportFileError(
                f"The header lacks required columns ({wanted}); it has: {', '.join(header)}. "
                "Name the column that holds a field with a column mapping "
                "(--column FIELD=COLUMN, ?column=FIELD=COLUMN)",
                errors=[
                    {"field": f, "message": "no such column", "type": "missing"} for f in missing
                ],
            )
        self.columns, self.unused_columns = _used(header, self._columns)
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


def _used(names: Sequence[str], found: Mapping[str, int]) -> tuple[dict[str, str], list[str]]:
    """(our field → the column read for it, the columns not read), for the summary."""
    read = {field: names[index] for field, index in found.items()}
    taken = set(found.values())
    return read, [name for index, name in enumerate(names) if index not in taken]


def _delimiter(header: bytes) -> str:
    """Comma, unless the header line holds more semicolons, tabs or pipes (European exports)."""
    counts = {d: header.count(d.encode()) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


class GeoJsonSource:
    """A FeatureCollection of Point features; loaded whole (capped), sorted in memory."""

    unit: Literal["feature"] = "feature"

    def __init__(
        self,
        stream: IO[bytes],
        reader: RowReader,
        max_bytes: int,
        given: Mapping[str, str] | None = None,
        *,
        statuses: bool = True,
    ) -> None:
        self.stream = stream
        self.reader = reader
        self.max_bytes = max_bytes
        self.given = given or {}
        self.statuses = statuses
        self.columns: dict[str, str] = {}  # our field → the property read for it
        self.unused_columns: list[str] = []
        self._names: dict[str, str] = {}
        self._rows: list[ImportRow] = []

    def scan(self, tally: Tally) -> None:
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
        # Properties vary by feature: map the names any feature has, once.
        seen: dict[str, None] = {}
        for feature in features:
            properties = feature.get("properties") if isinstance(feature, dict) else None
            if isinstance(properties, dict):
                seen.update(dict.fromkeys(properties))
        names = list(seen)
        self.columns, self.unused_columns = _used(
            names, resolve_columns(names, self.given, statuses=self.statuses)
        )
        self._names = self.columns
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
        values = {f: properties.get(name) for f, name in self._names.items()}
        if values.get("external_id") is None and feature.get("id") is not None:
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
