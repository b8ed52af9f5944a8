"""The historical import's input (``ImportOptions``) and its answer (``ImportSummary``).

Light on purpose: the command line reads its defaults here without loading the intake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Format = Literal["csv", "geojson"]

_COLUMN = "The file's column (or GeoJSON property) that holds "


class ColumnMapping(BaseModel):
    """Which column of a legacy file holds which of our fields, where the names differ from
    the ones recognised out of the box (see ``app.imports.mapping.COLUMNS``).

    Given on the command line (``--column field=COLUMN``), over HTTP (``?column=field=COLUMN``)
    and, later, in a city file. Names are matched without regard to case; a field left out is
    looked for under its usual names.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_code: str | None = Field(default=None, description=_COLUMN + "the category")
    lon: str | None = Field(default=None, description=_COLUMN + "the longitude (WGS84)")
    lat: str | None = Field(default=None, description=_COLUMN + "the latitude (WGS84)")
    reported_at: str | None = Field(default=None, description=_COLUMN + "the report's time")
    description: str | None = Field(default=None, description=_COLUMN + "the description")
    address: str | None = Field(default=None, description=_COLUMN + "the address text")
    external_id: str | None = Field(default=None, description=_COLUMN + "the legacy id")
    status: str | None = Field(default=None, description=_COLUMN + "the legacy status")
    closed_at: str | None = Field(default=None, description=_COLUMN + "the closure time")

    def given(self) -> dict[str, str]:
        """Our field → the column named for it, for the fields named."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


DEFAULT_BATCH_SIZE = 500
MAX_GEOJSON_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ImportOptions:
    jurisdiction: str  # slug
    format: Format
    source_name: str  # the file's name, for the timeline ("import:<name>")
    service_map: Mapping[str, str] = field(default_factory=dict)
    columns: ColumnMapping = field(default_factory=ColumnMapping)
    statuses: bool = True  # give tickets the legacy status (and closure time) of their rows
    timezone: str | None = None  # for times without an offset; None: the jurisdiction's
    date_format: str | None = None  # strptime format; None: ISO 8601
    dry_run: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    max_rows: int | None = None  # refuse larger files (the HTTP endpoint)
    max_geojson_bytes: int = MAX_GEOJSON_BYTES
    base_url: str = ""


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
    valid_service_codes: list[str] | None = Field(
        default=None,
        description="The jurisdiction's service codes, said once when a row named none of them",
    )


class ClusteringEffects(BaseModel):
    """What importing the legacy statuses did to clustering (see docs/import.md)."""

    statuses_imported: bool = Field(
        description="False with --no-status / statuses=false, or when no status column was found"
    )
    closures_applied: int = Field(
        default=0,
        description="Tickets closed (closed, rejected, not our responsibility) by a legacy "
        "closure, each when the replay reached its closure time",
    )
    closures_superseded: int = Field(
        default=0,
        description="Closures not applied because a later closure of another report on the "
        "same ticket was still to come (the ticket closed at the later one)",
    )
    closures_found_closed: int = Field(
        default=0,
        description="Closures not applied because their ticket was closed already (by an "
        "earlier run of the same file) or its status was changed since (by staff)",
    )
    reports_joined_before_closure: int = Field(
        default=0,
        description="Reports that joined a ticket before a legacy closure closed it",
    )
    tickets_reopened: int = Field(
        default=0,
        description="Tickets reopened by an imported row (imports do not reopen: see docs)",
    )


class ImportSummary(BaseModel):
    source: str
    format: Format
    columns: dict[str, str] = Field(
        default_factory=dict, description="Our field → the file's column that was read for it"
    )
    unused_columns: list[str] = Field(
        default_factory=list, description="The file's columns that were not read"
    )
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
    clustering: ClusteringEffects
    reported_from: datetime | None = Field(default=None, description="The oldest row filed")
    reported_to: datetime | None = Field(default=None, description="The newest row filed")
    elapsed_seconds: float
    rows_read_per_second: float = Field(
        description="Rows read (filed, skipped or rejected) per second"
    )
    rows_filed_per_second: float = Field(
        description="Rows filed through the intake (tickets opened + reports joined) per second"
    )
