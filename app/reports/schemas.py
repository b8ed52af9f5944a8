"""What a report looks like on the wire, in and out."""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from app.media.schemas import PhotoRef
from app.tickets.schemas import TicketSummary

PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lon: float = Field(ge=-180, le=180, description="WGS84 longitude")
    lat: float = Field(ge=-90, le=90, description="WGS84 latitude")
    accuracy_m: float | None = Field(
        default=None, ge=0, le=10_000, description="The device's horizontal accuracy, metres"
    )

    @field_validator("lon", "lat", "accuracy_m")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class ContactIn(BaseModel):
    """How to reach the reporter. Never shown publicly; staff and the reporter see it."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=200)] | None = None
    email: EmailStr | None = None
    phone: Annotated[str, Field(max_length=16)] | None = Field(
        default=None, description="E.164, e.g. +447700900123"
    )
    push_token: Annotated[str, Field(min_length=10, max_length=4096)] | None = Field(
        default=None, description="A Firebase Cloud Messaging registration token"
    )
    updates: StrictBool = Field(
        default=False, description="Consent to be told of this ticket's progress on these channels"
    )

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is not None:
            compact = re.sub(r"[\s().-]", "", value)
            if not PHONE.match(compact):
                raise ValueError("phone must be in international E.164 form, e.g. +447700900123")
            return compact
        return value


class ReportIn(BaseModel):
    """A new report. Send ``location``, or a photo whose EXIF carries GPS."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "service_code": "pothole",
                    "location": {"lon": -2.5879, "lat": 51.4545, "accuracy_m": 8},
                    "description": "Deep pothole in the cycle lane outside number 12",
                    "contact": {"email": "sam@example.org", "updates": True},
                }
            ]
        },
    )

    service_code: Annotated[str, Field(min_length=1, max_length=64)]
    jurisdiction: Annotated[str, Field(max_length=100)] | None = Field(
        default=None, description="Jurisdiction slug; found from the location when omitted"
    )
    location: Location | None = None
    address: Annotated[str, Field(max_length=500)] | None = None
    description: Annotated[str, Field(max_length=5000)] | None = None
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Answers to the service's questions"
    )
    contact: ContactIn | None = None
    client_id: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="The app's own id for this report; a retry with it never files twice",
    )
    reported_at: datetime | None = Field(
        default=None,
        description="When the problem was seen (offline apps): in the past 7 days",
    )
    locale: Annotated[str, Field(max_length=16)] | None = None

    @field_validator("description", "address")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return value or None

    @field_validator("attributes")
    @classmethod
    def _small_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 50:
            raise ValueError("at most 50 attributes")
        for key, item in value.items():
            if len(key) > 64:
                raise ValueError("attribute names are at most 64 characters")
            if isinstance(item, str) and len(item) > 2000:
                raise ValueError(f"attribute {key} is longer than 2000 characters")
            if isinstance(item, (dict, list)) and len(str(item)) > 4000:
                raise ValueError(f"attribute {key} is too large")
        return value

    @field_validator("reported_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("reported_at needs a timezone (e.g. 2026-11-24T09:30:00Z)")
        return value

    @model_validator(mode="after")
    def _contact_has_a_channel(self) -> ReportIn:
        c = self.contact
        if c is not None and not (c.email or c.phone or c.push_token) and c.updates:
            raise ValueError("contact.updates needs an email, phone or push_token to send them to")
        return self


class LocationOut(BaseModel):
    lon: float
    lat: float
    accuracy_m: float | None = None


class Match(BaseModel):
    """Why a report joined an existing ticket."""

    distance_m: float = Field(description="Distance from the ticket's location, metres")
    age_seconds: float = Field(
        description="Time since the ticket was last reported (negative: before)"
    )
    radius_m: float
    window_seconds: float


class ContactOut(BaseModel):
    kind: str
    address: str
    display_name: str | None = None


class ReportOut(BaseModel):
    id: uuid.UUID
    service_code: str
    channel: str
    location: LocationOut
    location_source: str
    address: str | None = None
    description: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    reported_at: datetime
    received_at: datetime
    photos: list[PhotoRef] = Field(default_factory=list)
    ticket_reference: str
    # Only for the reporter and staff:
    contacts: list[ContactOut] | None = None
    reporter_name: str | None = None


class ReportAccepted(BaseModel):
    report: ReportOut
    ticket: TicketSummary
    joined_existing: bool
    reopened: bool = Field(
        default=False,
        description="True when the report joined a recently fixed ticket and reopened it",
    )
    match: Match | None = None
    explanation: str = Field(description="Why the report joined that ticket or opened a new one")
