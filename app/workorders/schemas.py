"""Work orders on the wire.

The list, the single read and the lifecycle answers are built as JSON by the database
(``app.workorders.repository``); these models document that shape in OpenAPI, and the tests
check the bytes against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field

Position = Annotated[list[float], Field(min_length=2, max_length=3)]


class Sort(StrEnum):
    priority = "priority"  # priority (1 first), then resolve due time, then id
    due = "due"  # resolve due time (soonest first, none last), then id
    distance = "distance"  # from `near`, nearest first, then id


class Step(StrEnum):
    """A step of the work order's lifecycle, as it appears in URLs."""

    accept = "accept"
    en_route = "en-route"
    on_site = "on-site"
    done = "done"
    unable = "unable"


class WorkOrderArea(BaseModel):
    id: int
    code: str
    name: str


class WorkOrderCrew(BaseModel):
    id: int
    name: str


class LonLat(BaseModel):
    lon: float
    lat: float


class WorkOrder(BaseModel):
    """A ticket as a crew works it."""

    reference: str = Field(examples=["K-2026-000123"])
    url: str
    ticket_url: str
    status: str = Field(description="The ticket's status")
    work_status: str | None = Field(
        description="assigned, accepted, en_route, on_site, done, unable; null: no crew holds it"
    )
    priority: int = Field(ge=1, le=5, description="1 is the most urgent")
    service_code: str
    service_name: str
    location: LonLat
    area: WorkOrderArea | None
    crew: WorkOrderCrew | None
    description: str | None
    address: str | None
    report_count: int
    supporter_count: int
    first_reported_at: datetime
    last_reported_at: datetime
    acknowledge_due_at: datetime | None
    resolve_due_at: datetime | None
    assigned_at: datetime | None
    scheduled_for: datetime | None
    sla_state: Literal["ok", "warning", "breached"] | None = Field(
        description="Against the current deadline: warning after 80 % of the time, breached after"
    )
    distance_m: float | None = Field(
        default=None, description="From `near` (metres, geodesic), when `near` is given"
    )


class WorkOrderPage(BaseModel):
    items: list[WorkOrder]
    count: int = Field(description="Items on this page")
    sort: Sort
    next: str | None = Field(description="The next page (same filters), or null at the end")


class PolygonIn(BaseModel):
    """A GeoJSON Polygon (RFC 7946: longitude, latitude)."""

    type: Literal["Polygon"]
    coordinates: list[list[Position]]


class MultiPolygonIn(BaseModel):
    """A GeoJSON MultiPolygon (RFC 7946: longitude, latitude)."""

    type: Literal["MultiPolygon"]
    coordinates: list[list[list[Position]]]


SearchArea = Annotated[PolygonIn | MultiPolygonIn, Field(discriminator="type")]


class AcceptIn(BaseModel):
    note: str | None = Field(default=None, max_length=2000, description="Internal note")
    scheduled_for: datetime | None = Field(
        default=None, description="When the crew plans to do the work"
    )


class ProgressIn(BaseModel):
    note: str | None = Field(default=None, max_length=2000, description="Internal note")


class DoneIn(BaseModel):
    note: str = Field(
        min_length=1,
        max_length=2000,
        description="What was done: the public note that tells every reporter",
    )
    internal_note: str | None = Field(default=None, max_length=2000)


class UnableIn(BaseModel):
    reason: str = Field(
        min_length=1, max_length=2000, description="Why the crew cannot do it (internal)"
    )


class RouteStop(BaseModel):
    sequence: int = Field(description="1 is visited first")
    leg_m: float = Field(description="From the previous stop (or the start)")
    cumulative_m: float
    work_order: WorkOrder


class DayRoute(BaseModel):
    crew_id: int
    start: LonLat
    return_to_start: bool
    method: str = Field(description='"exact" (small routes) or "2-opt+or-opt"')
    total_m: float
    legs_m: list[float] = Field(description="Every leg in order (the way back last, if asked)")
    truncated: bool = Field(description="More open work orders than the route takes")
    stops: list[RouteStop]


@dataclass(frozen=True)
class Scope:
    """Whose work orders: one jurisdiction (None: all, admins) and one crew's territory."""

    jurisdiction_id: int | None
    crew_id: int | None


@dataclass(frozen=True)
class Search:
    """A checked work-order search (every value bounded)."""

    statuses: tuple[str, ...] = ()
    work_statuses: tuple[str, ...] = ()  # "none": no crew holds it
    area_ids: tuple[int, ...] = ()
    service_codes: tuple[str, ...] = ()
    priorities: tuple[int, ...] = ()
    sla_states: tuple[str, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    polygon_wkb: bytes | None = None
    near: tuple[float, float] | None = None
    radius_m: float | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    sort: Sort = Sort.priority
    limit: int = 50
    after: tuple[object, ...] | None = None  # the cursor's sort key, decoded
