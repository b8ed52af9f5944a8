"""Tickets on the wire. Public shapes carry no personal data."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, EmailStr, Field, StrictBool

from app.core.models import Int4Id
from app.media.schemas import PhotoRef
from app.tickets.models import TicketStatus


class TicketArea(BaseModel):
    code: str
    name: str


class TicketSummary(BaseModel):
    reference: str = Field(examples=["K-2026-000123"])
    status: str
    service_code: str
    service_name: str
    location: dict[str, float] = Field(description="{lon, lat}")
    area: TicketArea | None = None
    description: str | None = None
    report_count: int
    supporter_count: int
    first_reported_at: datetime
    last_reported_at: datetime
    acknowledge_due_at: datetime | None = None
    resolve_due_at: datetime | None = None
    sla_state: str | None = Field(
        default=None,
        description="ok, warning (80 % of the time to the current deadline gone) or breached;"
        " null when no service level applies",
    )
    expected_by: datetime | None = Field(
        default=None, description="When the city expects to have fixed it (open tickets)"
    )
    priority: int = Field(description="1 (most urgent) to 5")
    merged_into: str | None = Field(
        default=None, description="For a duplicate: the reference of the ticket it joined"
    )
    url: str


def summary_fields(
    row: Any, base_url: str, *, service_code: str, service_name: str
) -> dict[str, Any]:
    """A ``TicketSummary``'s fields from a row with the ticket's columns (``lon``, ``lat``,
    ``area_code``, ``area_name`` and the counts and times, as the ticket queries name them)."""
    return {
        "reference": row.reference,
        "status": row.status,
        "service_code": service_code,
        "service_name": service_name,
        "location": {"lon": row.lon, "lat": row.lat},
        "area": TicketArea(code=row.area_code, name=row.area_name) if row.area_code else None,
        "description": row.description,
        "report_count": row.report_count,
        "supporter_count": row.supporter_count,
        "first_reported_at": row.first_reported_at,
        "last_reported_at": row.last_reported_at,
        "acknowledge_due_at": row.acknowledge_due_at,
        "resolve_due_at": row.resolve_due_at,
        "sla_state": row.sla_state,
        "expected_by": row.expected_by,
        "priority": row.priority,
        "merged_into": row.merged_into,
        "url": f"{base_url}/v1/tickets/{row.reference}",
    }


class NearbyTicket(TicketSummary):
    distance_m: float


class PublicReport(BaseModel):
    id: uuid.UUID
    channel: str
    description: str | None = None
    reported_at: datetime
    photos: list[PhotoRef] = Field(default_factory=list)


class TimelineEntry(BaseModel):
    id: int
    kind: str
    at: datetime
    note: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class TicketDetail(TicketSummary):
    reports: list[PublicReport]
    completion_photos: list[PhotoRef] = Field(
        default_factory=list, description="After-photos the crew took when it finished"
    )
    update_photos: list[PhotoRef] = Field(
        default_factory=list,
        description="Photos citizens sent with later updates (FixMyStreet's pushed updates,"
        " through Open311), oldest first",
    )
    timeline: list[TimelineEntry]


class StaffTimelineEntry(TimelineEntry):
    public: bool
    actor: str | None = Field(default=None, description='"user:<id>", "api-key:<id>", "system"')


class PrioritySignal(BaseModel):
    score: int
    suggested: int = Field(description="The priority the score maps to")
    factors: dict[str, int] = Field(description="Points per factor: hazard, reports, ...")
    manual: bool = Field(description="True when staff set the priority by hand")


class StaffTicketDetail(TicketDetail):
    """What staff (own jurisdiction) and crews (own territory) see: internal lines too."""

    timeline: list[StaffTimelineEntry]  # type: ignore[assignment]
    crew_id: int | None = None
    crew: str | None = None
    work_status: str | None = None
    assigned_at: datetime | None = None
    scheduled_for: datetime | None = None
    acknowledged_at: datetime | None = None
    fixed_at: datetime | None = None
    closed_at: datetime | None = None
    reopened_count: int = 0
    information: Literal["requested", "answered"] | None = Field(
        default=None,
        description="Needs more information: requested (staff asked, the reporters have not "
        "answered since) or answered (a reporter answered: back with staff)",
    )
    priority_signal: PrioritySignal
    allowed_transitions: list[str] = Field(
        description="The statuses you may move this ticket to now"
    )


class StatusChangeIn(BaseModel):
    status: TicketStatus
    note: str | None = Field(
        default=None,
        max_length=4000,
        description="Public note to reporters; when absent, the response template is used",
    )
    internal_note: str | None = Field(default=None, max_length=4000)
    use_template: StrictBool = True


class ReopenIn(BaseModel):
    reason: str = Field(min_length=3, max_length=4000, description="Why it is not fixed")


class AssignIn(BaseModel):
    crew_id: Int4Id | None = Field(description="The crew; null takes the ticket back")
    note: str | None = Field(default=None, max_length=4000)


class PriorityIn(BaseModel):
    priority: int | None = Field(
        ge=1, le=5, description="1 (most urgent) to 5; null: follow the computed signal"
    )
    reason: str | None = Field(default=None, max_length=1000)


class CommentIn(BaseModel):
    note: str = Field(min_length=1, max_length=4000)
    public: StrictBool = False


class InformationRequestIn(BaseModel):
    question: str = Field(
        min_length=1,
        max_length=2000,
        description="What the reporters are asked; public, and sent to each of them",
    )


class InformationIn(BaseModel):
    answer: str = Field(
        min_length=1,
        max_length=4000,
        description="The reporter's answer; on the internal timeline only (staff and crews)",
    )


class MergeIn(BaseModel):
    into: str = Field(description="Reference of the ticket this one duplicates")
    note: str | None = Field(default=None, max_length=4000)


class MergeOut(BaseModel):
    reference: str
    merged_into: str
    reports_moved: int
    photos_moved: int
    subscribers_moved: int


class SplitIn(BaseModel):
    report_id: uuid.UUID = Field(description="The report to move into a new ticket")
    note: str | None = Field(default=None, max_length=4000)


class SplitOut(BaseModel):
    reference: str
    new_reference: str


class ResponseTemplateIn(BaseModel):
    service_code: str | None = Field(default=None, description="Null: every service")
    status: TicketStatus
    language: str = Field(min_length=2, max_length=16, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")
    body: str = Field(
        min_length=1,
        max_length=4000,
        examples=["{reference}: your {service} report is fixed. Thank you!"],
    )


class ResponseTemplateOut(ResponseTemplateIn):
    id: int
    updated_at: datetime


class SupportIn(BaseModel):
    """Support ("me too") or follow a ticket without reporting it again.

    Signed-in people need send nothing; others give a way to be told of progress.
    """

    email: EmailStr | None = None
    push_token: str | None = Field(default=None, min_length=10, max_length=4096)


class SupportOut(BaseModel):
    reference: str
    supporter_count: int
    subscribed: bool = Field(
        description=(
            "Recorded. An address given without an account hears nothing but one message that"
            " asks to confirm it, until it is confirmed"
        )
    )
    already: bool = Field(description="True when this person already supported/followed it")


PublicReport.model_rebuild()
