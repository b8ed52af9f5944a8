"""The historical import's input (``ImportOptions``) and its answer (``ImportSummary``).

Light on purpose: the command line reads its defaults here without loading the intake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Format = Literal["csv", "geojson"]

DEFAULT_BATCH_SIZE = 500
MAX_GEOJSON_BYTES = 256 * 1024 * 1024


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
