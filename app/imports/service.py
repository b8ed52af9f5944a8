"""Historical import: a legacy system's reports (CSV or GeoJSON) through the one intake path.

read → check every row locally and note its time → order the rows by their own time →
per batch: skip ids already imported, file each row with ``submit_report`` in its own
savepoint (a bad row is rejected, the batch goes on) → commit the batch.

Rows are filed oldest first because the duplicate window is measured from each report's own
time: a 2020 report must meet the tickets opened by the reports before it, not the ones after.
Legacy statuses are replayed in the same time order (``Replay``): a row's closure waits until
the replay passes its closure time, so every row meets the tickets as they stood at its time.

A dry run is the same import in one transaction, rolled back at the end, so it opens, joins
and closes exactly what the import would. It takes no neighbourhood locks (the intake's
``serialise=False``): it commits nothing, so it needs no serialising, and a transaction of
that many rows would overflow the server's lock table.

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
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import KerbsideError, PayloadTooLarge
from app.core.jobs import REFRESH_MAP_GRID, defer
from app.db import DATABASE_ERRORS, driver_error
from app.imports import repository as sql
from app.imports.mapping import ImportRow, RowError, RowReader, legacy_status, option_error
from app.imports.schemas import (
    ClusteringEffects,
    ColumnMapping,
    ImportOptions,
    ImportSummary,
    RejectedRow,
    Rejections,
)
from app.imports.sources import CsvSource, GeoJsonSource, Rejection
from app.jurisdictions.catalog import Catalog, JurisdictionInfo
from app.reports.intake import Filed, Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.tickets.models import TicketStatus
from app.tickets.workflow import record_legacy_status

Progress = Callable[[int, int], None]  # (rows done, rows in the file)

MAX_EXAMPLES = 20
MAX_LABEL = 100  # ticket_event.actor_label

# Statuses after which a ticket takes no more reports (except through a reopen window).
CLOSING = frozenset(
    {TicketStatus.closed, TicketStatus.rejected, TicketStatus.not_our_responsibility}
)


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
    closures_applied: int = 0
    closures_superseded: int = 0
    closures_found_closed: int = 0
    joined_before_closure: int = 0
    reopened: int = 0
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

    def rejections(self, valid_codes: list[str]) -> Rejections:
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
            valid_service_codes=valid_codes if self.reasons["unknown_service"] else None,
        )

    def clustering(self, statuses_imported: bool) -> ClusteringEffects:
        return ClusteringEffects(
            statuses_imported=statuses_imported,
            closures_applied=self.closures_applied,
            closures_superseded=self.closures_superseded,
            closures_found_closed=self.closures_found_closed,
            reports_joined_before_closure=self.joined_before_closure,
            tickets_reopened=self.reopened,
        )


@dataclass(order=True)
class _Pending:
    """A legacy status waiting for the replay to reach its time."""

    at: datetime
    seq: int
    reference: str = field(compare=False)
    status: TicketStatus = field(compare=False)
    legacy: str = field(compare=False)
    live: bool = field(default=True, compare=False)  # False: a later closure replaced it


class Replay:
    """The legacy statuses, applied in time order as the import's rows pass their times.

    Each status waits in a heap keyed by its time (the closure time, else the row's own time)
    and is applied just before the first row reported after it, so a row reported before a
    closure still finds its ticket open, and one reported after finds it closed. A ticket
    holds at most one waiting closure: the latest of its reports' closures wins (the ticket
    is done when the last of the legacy cases it gathers was done), the others are counted
    as superseded. The heap lives across batches; ``finish`` applies what is left.
    """

    def __init__(self, session: AsyncSession, tally: Tally, actor_label: str) -> None:
        self.session = session
        self.tally = tally
        self.actor_label = actor_label
        self._heap: list[_Pending] = []
        self._closing: dict[str, _Pending] = {}  # ticket reference → its waiting closure
        self._seq = 0

    def add(self, reference: str, row: ImportRow, *, closing_only: bool = False) -> None:
        """Queue the legacy status of ``row``, whose report is on ticket ``reference``."""
        if row.status is None:
            return
        understood, status = legacy_status(row.status)
        if not understood:
            if not closing_only:
                self.tally.unknown_statuses[row.status] += 1
            return
        if status is None:
            return
        wanted = TicketStatus(status)
        if closing_only and wanted not in CLOSING:
            return
        self._seq += 1
        pending = _Pending(
            row.closed_at or row.reported_at, self._seq, reference, wanted, row.status
        )
        if wanted in CLOSING:
            waiting = self._closing.get(reference)
            if waiting is not None:
                self.tally.closures_superseded += 1
                if waiting.at > pending.at:
                    return  # the ticket closes later, with the other report's closure
                waiting.live = False
            self._closing[reference] = pending
        heapq.heappush(self._heap, pending)

    async def until(self, when: datetime) -> None:
        """Apply every status due before ``when`` (a row's time), oldest first."""
        while self._heap and self._heap[0].at < when:
            await self._apply(heapq.heappop(self._heap))

    async def finish(self) -> None:
        """Apply what is still waiting: the closures after the last row's time."""
        while self._heap:
            await self._apply(heapq.heappop(self._heap))

    async def _apply(self, pending: _Pending) -> None:
        if not pending.live:
            return
        closing = pending.status in CLOSING
        if closing:
            del self._closing[pending.reference]
        report_count = await record_legacy_status(
            self.session,
            pending.reference,
            pending.status,
            at=pending.at,
            legacy=pending.legacy,
            actor_label=self.actor_label,
        )
        if report_count is not None:
            self.tally.statuses_set[pending.status.value] += 1
        if not closing:
            return
        if report_count is None:
            self.tally.closures_found_closed += 1
        else:
            self.tally.closures_applied += 1
            self.tally.joined_before_closure += report_count - 1


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
    stored = (await session.execute(sql.JURISDICTION_SETTINGS, {"id": jurisdiction.id})).one()
    options = with_city_defaults(options, stored.history or {})
    zone_name = options.timezone or stored.timezone
    zone = _zone(zone_name)
    _check_service_map(options.service_map, jurisdiction)
    reader = RowReader(zone, options.date_format, options.service_map)
    given = options.columns.given()
    source: CsvSource | GeoJsonSource = (
        CsvSource(stream, reader, given, statuses=options.statuses)
        if options.format == "csv"
        else GeoJsonSource(
            stream, reader, options.max_geojson_bytes, given, statuses=options.statuses
        )
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
    replay = Replay(session, tally, submitter.label)
    try:
        for batch in _batches(source.rows(), max(1, options.batch_size)):
            ids = [item.external_id for item in batch if isinstance(item, ImportRow)]
            seen = dict(
                (
                    await session.execute(
                        sql.ALREADY_IMPORTED, {"jurisdiction_id": jurisdiction.id, "ids": ids}
                    )
                )
                .tuples()
                .all()
            )
            for item in batch:
                if isinstance(item, Rejection):
                    tally.reject(item)
                    continue
                await replay.until(item.reported_at)
                reference = seen.get(item.external_id)
                if reference is not None:
                    tally.skipped += 1
                    # Its closure may not have come due before an earlier run stopped.
                    replay.add(reference, item, closing_only=True)
                elif item.external_id in seen:
                    tally.skipped += 1  # a repeated id whose first row was rejected
                else:
                    filed = await _file(
                        session, catalog, submitter, jurisdiction, reader, item, tally, options
                    )
                    seen[item.external_id] = filed
                    if filed is not None:
                        replay.add(filed, item)
                if progress is not None:
                    progress(tally.done, tally.rows_read)
            if not options.dry_run:
                await session.commit()
        await replay.finish()
    finally:
        if options.dry_run:
            # Rolled back once, at the end: the dry run saw every row it filed, as the import
            # will (see docs/import.md for the locks this holds meanwhile).
            await session.rollback()
    if not options.dry_run:
        # The low-zoom map grid is rebuilt once the import has committed (the periodic job
        # refreshes it every minute meanwhile; one waiting job at most).
        grid = REFRESH_MAP_GRID
        await defer(session, grid, lock=grid, queueing_lock=grid)
        await session.commit()

    elapsed = time.perf_counter() - started
    filed_rows = tally.opened + tally.joined
    return ImportSummary(
        source=options.source_name,
        format=options.format,
        columns=source.columns,
        unused_columns=source.unused_columns,
        jurisdiction=jurisdiction.slug,
        dry_run=options.dry_run,
        timezone=zone_name,
        naive_times=tally.naive,
        rows_read=tally.rows_read,
        tickets_opened=tally.opened,
        reports_joined=tally.joined,
        skipped_already_imported=tally.skipped,
        rejected=tally.rejections(sorted(jurisdiction.services)),
        statuses_set=dict(tally.statuses_set.most_common()),
        unknown_statuses=dict(tally.unknown_statuses.most_common(20)),
        clustering=tally.clustering("status" in source.columns),
        reported_from=tally.first,
        reported_to=tally.last,
        elapsed_seconds=round(elapsed, 3),
        rows_read_per_second=round(tally.rows_read / elapsed, 1) if elapsed > 0 else 0.0,
        rows_filed_per_second=round(filed_rows / elapsed, 1) if elapsed > 0 else 0.0,
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
) -> str | None:
    """One row through the intake path in its own savepoint: its ticket's reference when
    filed, None when rejected (or skipped)."""
    code = reader.service_code(row.category)
    if code not in jurisdiction.services:
        # The service would say the same, after reloading the catalog on every miss. The
        # valid codes are said once, in the summary.
        detail = (
            f"Unknown service {row.category!r} in {jurisdiction.name}; map it to one of "
            "the codes in rejected.valid_service_codes"
        )
        tally.reject(Rejection(row.position, "unknown_service", detail), row.category)
        return None
    try:
        async with session.begin_nested():
            filed = await _submit(
                session, catalog, submitter, jurisdiction, code, row, dry_run=options.dry_run
            )
    except RowError as exc:
        tally.reject(Rejection(row.position, exc.reason, exc.detail))
    except KerbsideError as exc:
        tally.reject(Rejection(row.position, _reason(exc), exc.detail))
    except DATABASE_ERRORS as exc:
        cause = driver_error(exc)
        if not isinstance(cause, psycopg.IntegrityError | psycopg.DataError):
            raise
        if "uq_report_channel_external_id" in str(cause):
            tally.skipped += 1  # filed meanwhile by a concurrent import of the same file
        else:
            tally.reject(Rejection(row.position, "database_refused", str(cause)))
    else:
        tally.filed(row, joined=filed.joined)
        tally.reopened += filed.reopened
        return filed.reference
    return None


async def _submit(
    session: AsyncSession,
    catalog: Catalog,
    submitter: Submitter,
    jurisdiction: JurisdictionInfo,
    code: str,
    row: ImportRow,
    *,
    dry_run: bool,
) -> Filed:
    """The import's one call of the intake: the row as a report, filed with ``submit_report``.

    Imported rows never reopen a ticket: the legacy system opened a new case after it closed
    one. A dry run takes no neighbourhood locks: it is one transaction, rolled back, and that
    many rows' locks would overflow the server's lock table. A row the intake's checks refuse
    raises ``InvalidInput`` (reported as ``invalid_<field>``).
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
            reopen=False,
            serialise=not dry_run,
        ),
    )
    return filed


def with_city_defaults(options: ImportOptions, history: Mapping[str, Any]) -> ImportOptions:
    """The options, completed by the city's own import settings (the city file's
    ``history``): what the caller gave wins, field by field."""
    if not history:
        return options
    columns = {**history.get("columns", {}), **options.columns.given()}
    service_map = {**history.get("categories", {}), **options.service_map}
    return replace(
        options,
        columns=ColumnMapping(**columns),
        service_map=service_map,
        date_format=options.date_format or history.get("date_format"),
        statuses=options.statuses and history.get("statuses", True),
    )


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
