"""Crews, territories and assignment rules on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field, StrictBool, field_validator

from app.core.models import Int4Id

MAX_AREAS_PER_CREW = 500


class AreaRef(BaseModel):
    id: int
    code: str
    name: str


class CrewIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    area_ids: list[Int4Id] = Field(
        default_factory=list,
        max_length=MAX_AREAS_PER_CREW,
        description="The areas the crew covers (its territory)",
    )
    jurisdiction_id: Int4Id | None = Field(
        default=None, description="Admins must name it; staff create crews of their own only"
    )

    @field_validator("name")
    @classmethod
    def _trim(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class CrewPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    active: StrictBool | None = None

    @field_validator("name")
    @classmethod
    def _trim(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class TerritoryIn(BaseModel):
    area_ids: list[Int4Id] = Field(max_length=MAX_AREAS_PER_CREW)


class CrewOut(BaseModel):
    id: int
    jurisdiction_id: int
    name: str
    active: bool
    areas: list[AreaRef] = Field(description="The crew's territory")
    members: int = Field(description="Active accounts in the crew")
    created_at: datetime


class MemberOut(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str | None = None
    role: str
    is_active: bool


class AreaOut(BaseModel):
    id: int
    jurisdiction_id: int
    kind: str
    code: str
    name: str
    crew_ids: list[int] = Field(description="Crews whose territory includes this area")


class RuleIn(BaseModel):
    """New tickets of ``service_id`` (null: any) in ``area_id`` (null: anywhere) go to
    ``crew_id``. The most specific rule wins."""

    area_id: Int4Id | None = None
    service_id: Int4Id | None = None
    crew_id: Int4Id
    jurisdiction_id: Int4Id | None = Field(default=None, description="Admins must name it")


class RulePatch(BaseModel):
    """Only the fields sent change; send ``null`` to widen a rule to any area or service."""

    area_id: Int4Id | None = None
    service_id: Int4Id | None = None
    crew_id: Int4Id | None = None


class ServiceRef(BaseModel):
    id: int
    code: str


class CrewRef(BaseModel):
    id: int
    name: str
    active: bool


class RuleOut(BaseModel):
    id: int
    jurisdiction_id: int
    area: AreaRef | None = Field(description="null: any area")
    service: ServiceRef | None = Field(description="null: any service")
    crew: CrewRef
    created_at: datetime
