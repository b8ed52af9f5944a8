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
