"""What the auth routes read and write: users (for fastapi-users) and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi_users import schemas
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from app.auth.models import Role
from app.core.models import Int4Id

# What a person may set on their own account; everything else is the city's to decide.
_SELF_SERVICE_FIELDS = {"email", "password", "full_name", "locale"}
# What an admin may set on anyone's account (``is_superuser`` follows ``role``).
_ADMIN_FIELDS = _SELF_SERVICE_FIELDS | {
    "is_active",
    "is_verified",
    "role",
    "jurisdiction_id",
    "crew_id",
}

# Columns that cannot be NULL: an explicit ``null`` for one of them means "leave it".
_NOT_NULL = {"email", "password", "locale", "role", "is_active", "is_verified"}

Locale = Annotated[
    str, StringConstraints(max_length=16, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]+)*$")
]
ScopeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9:._-]{0,31}$")]


def _changes(model: BaseModel, fields: set[str]) -> dict[str, Any]:
    data = model.model_dump(exclude_unset=True, include=fields)
    return {k: v for k, v in data.items() if v is not None or k not in _NOT_NULL}


class UserRead(schemas.BaseUser[uuid.UUID]):
    full_name: str | None = None
    role: Role
    jurisdiction_id: int | None = None
    crew_id: int | None = None
    locale: str
    created_at: datetime


class UserCreate(schemas.BaseUserCreate):
    """Sign-up. Role, verification and staff links are never taken from the client."""

    full_name: str | None = Field(default=None, max_length=200)
    locale: Locale | None = None
    # Inherited from fastapi-users; ignored here and hidden from the API description.
    is_active: SkipJsonSchema[bool | None] = True
    is_superuser: SkipJsonSchema[bool | None] = False
    is_verified: SkipJsonSchema[bool | None] = False

    def create_update_dict(self) -> dict[str, Any]:
        return _changes(self, _SELF_SERVICE_FIELDS)

    def create_update_dict_superuser(self) -> dict[str, Any]:
        return self.create_update_dict()


class UserUpdate(schemas.BaseUserUpdate):
    """``PATCH /v1/users/me`` takes email, password, name and locale; an admin's
    ``PATCH /v1/users/{id}`` may also set role, jurisdiction, crew, active and verified."""

    full_name: str | None = Field(default=None, max_length=200)
    locale: Locale | None = None
    role: Role | None = None
    jurisdiction_id: Int4Id | None = None
    crew_id: Int4Id | None = None
    # Booleans, not "yes" or 0 (fastapi-users declares them lax).
    is_active: StrictBool | None = None
    is_verified: StrictBool | None = None
    is_superuser: SkipJsonSchema[bool | None] = None

    def create_update_dict(self) -> dict[str, Any]:
        return _changes(self, _SELF_SERVICE_FIELDS)

    def create_update_dict_superuser(self) -> dict[str, Any]:
        data = _changes(self, _ADMIN_FIELDS)
        if "role" in data:
            data["is_superuser"] = data["role"] == Role.admin
        return data


# -- API keys ----------------------------------------------------------------------------------


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["Open311 app"])
    role: Role = Field(
        default=Role.citizen,
        description="citizen, crew or staff, and never above the creator's own role",
    )
    scopes: list[ScopeName] = Field(default_factory=list, max_length=20)
    expires_at: AwareDatetime | None = None
    jurisdiction_id: Int4Id | None = Field(
        default=None, description="Required for admins; staff keys are for their own jurisdiction"
    )


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    jurisdiction_id: int
    name: str
    prefix: str = Field(description="The public start of the key, to tell keys apart")
    role: Role
    scopes: list[str]
    created_at: datetime
    created_by_id: uuid.UUID | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret key. It is shown only in this response.")
