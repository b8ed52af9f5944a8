"""Tickets on the wire. Public shapes carry no personal data."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, EmailStr, Field


class AreaRef(BaseModel):
    code: str
    name: str


class TicketSummary(BaseModel):
    reference: str = Field(examples=["K-2026-000123"])
    status: str
    service_code: str
    service_name: str
    location: dict[str, float] = Field(description="{lon, lat}")
    area: AreaRef | None = None
    description: str | None = None
    report_count: int
    supporter_count: int
    first_reported_at: datetime
    last_reported_at: datetime
    acknowledge_due_at: datetime | None = None
    resolve_due_at: datetime | None = None
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
        "area": AreaRef(code=row.area_code, name=row.area_name) if row.area_code else None,
        "description": row.description,
        "report_count": row.report_count,
        "supporter_count": row.supporter_count,
        "first_reported_at": row.first_reported_at,
        "last_reported_at": row.last_reported_at,
        "acknowledge_due_at": row.acknowledge_due_at,
        "resolve_due_at": row.resolve_due_at,
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


class PhotoRef(BaseModel):
    id: uuid.UUID
    url: str
    thumbnail_url: str
    width: int
    height: int


class TimelineEntry(BaseModel):
    id: int
    kind: str
    at: datetime
    note: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class TicketDetail(TicketSummary):
    reports: list[PublicReport]
    timeline: list[TimelineEntry]


class SupportIn(BaseModel):
    """Support ("me too") or follow a ticket without reporting it again.

    Signed-in people need send nothing; others give a way to be told of progress.
    """

    email: EmailStr | None = None
    push_token: str | None = Field(default=None, min_length=10, max_length=4096)


class SupportOut(BaseModel):
    reference: str
    supporter_count: int
    subscribed: bool
    already: bool = Field(description="True when this person already supported/followed it")


PublicReport.model_rebuild()
