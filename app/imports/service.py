"""Historical import: a legacy system's reports (CSV or GeoJSON) through the one intake path.

read → check every row locally and note its time → order the rows by their own time →
per batch: skip ids already imported, file each row with ``submit_report`` in its own
savepoint (a bad row is rejected, the batch goes on) → commit the batch.

Rows are filed oldest first because the duplicate window is measured from each report's own
time: a 2020 report must meet the tickets opened by the reports before it, not the ones after.

This use case commits, every ``batch_size`` rows, unlike the services that only flush: a
crash loses at most one batch, a re-run skips what was committed, and no transaction holds
more than one batch's neighbourhood locks (a 20,000-row transaction would hold tens of
thousands of advisory locks, blocking citizens' reports and overflowing the lock table).

Reading files is ``app.imports.sources``, the legacy words ``app.imports.mapping``; the one
call of the intake is ``_submit``.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import KerbsideError, PayloadTooLarge
from app.core.jobs import REFRESH_MAP_GRID, defer
from app.imports import repository as sql
from app.imports.mapping import ImportRow, RowError, RowReader, legacy_status, option_error
from app.imports.schemas import ImportOptions, ImportSummary, RejectedRow, Rejections
from app.imports.sources import CsvSource, GeoJsonSource, Rejection
from app.jurisdictions.catalog import Catalog, JurisdictionInfo
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.tickets.models import TicketStatus
from app.tickets.workflow import record_legacy_status

Progress = Callable[[int, int], None]  # (rows done, rows in the file)

MAX_EXAMPLES = 20
MAX_LABEL = 100  # ticket_event.actor_label


@dataclass
class Tally:
    """What an import counted so far: the summary's numbers, kept as rows go by."""

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
    started = time.perf_counter()
    await catalog.jurisdictions(session, fresh=True)  # services added a moment ago count
    jurisdiction = await catalog.by_slug(session, options.jurisdiction)
    if jurisdiction is None:
        raise option_error("jurisdiction", f"No jurisdiction {options.jurisdiction!r}")
    zone_name = (
        options.timezone
        or (await session.execute(sql.JURISDICTION_TIMEZONE, {"id": jurisdiction.id})).scalar_one()
    )
    zone = _zone(zone_name)
    _check_service_map(options.service_map, jurisdiction)
    reader = RowReader(zone, options.date_format, options.service_map)
    source: CsvSource | GeoJsonSource = (
        CsvSource(stream, reader)
        if options.format == "csv"
        else GeoJsonSource(stream, reader, options.max_geojson_bytes)
    )
    tally = Tally(unit=source.unit)
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
                    sql.ALREADY_IMPORTED, {"jurisdiction_id": jurisdiction.id, "ids": ids}
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
    tally: Tally,
    options: ImportOptions,
) -> None:
    """One row through the intake path in its own savepoint: filed, skipped or rejected."""
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
        async with session.begin_nested():
            reference, joined = await _submit(
                session, catalog, submitter, jurisdiction, code, row, options
            )
            status_set = await _legacy_status(session, reference, row, tally, submitter.label)
    except RowError as exc:
        tally.reject(Rejection(row.position, exc.reason, exc.detail))
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
        tally.filed(row, joined=joined)
        if status_set:
            tally.statuses_set[status_set] += 1


async def _submit(
    session: AsyncSession,
    catalog: Catalog,
    submitter: Submitter,
    jurisdiction: JurisdictionInfo,
    code: str,
    row: ImportRow,
    options: ImportOptions,
) -> tuple[str, bool]:
    """The import's one call of the intake: the row as a report, filed with ``submit_report``.

    Returns the ticket's reference and whether the report joined an open ticket; a row the
    intake's checks refuse raises ``InvalidInput`` (reported as ``invalid_<field>``).
    """
    filed = await submit_report(
        session,
        catalog,
        Submission(
            channel=Channel.import_,
            submitter=submitter,
            service_code=code,
            place=Place(row.lon, row.lat, LocationSource.import_),
            jurisdiction=jurisdiction.slug,
            description=row.description,
            address=row.address,
            external_id=row.external_id,
            reported_at=row.reported_at,
        ),
    )
    return filed.reference, filed.joined


async def _legacy_status(
    session: AsyncSession, reference: str, row: ImportRow, tally: Tally, label: str
) -> str | None:
    """Give the row's ticket the legacy system's status, at its historical time."""
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
        raise option_error(
            "timezone", f"Unknown timezone {name!r}; use an IANA name like Europe/London"
        ) from None


def _check_service_map(service_map: Mapping[str, str], jurisdiction: JurisdictionInfo) -> None:
    """A typo in the map would reject thousands of rows one by one: refuse it up front."""
    wrong = sorted({c for c in service_map.values() if c not in jurisdiction.services})
    if wrong:
        raise option_error(
            "service_map",
            f"The service map names codes {jurisdiction.name} does not have: {', '.join(wrong)}; "
            f"valid codes: {', '.join(sorted(jurisdiction.services))}",
        )
