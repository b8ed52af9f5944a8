"""People who sign in (citizens, crew members, staff, admins) and API keys for machine clients."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID
from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, CreatedAt, check_in


class Role(StrEnum):
    citizen = "citizen"
    crew = "crew"
    staff = "staff"
    admin = "admin"


ROLE_RANK = {Role.citizen: 0, Role.crew: 1, Role.staff: 2, Role.admin: 3}


class User(SQLAlchemyBaseUserTableUUID, CreatedAt, Base):
    __tablename__ = "app_user"  # "user" is reserved in PostgreSQL

    full_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), server_default=Role.citizen.value)
    # Staff and crew act for one jurisdiction; citizens and admins may have none.
    jurisdiction_id: Mapped[int | None] = mapped_column(
        ForeignKey("jurisdiction.id", ondelete="SET NULL"), index=True
    )
    crew_id: Mapped[int | None] = mapped_column(
        ForeignKey("crew.id", ondelete="SET NULL"), index=True
    )
    locale: Mapped[str] = mapped_column(String(16), server_default="en")

    __table_args__ = (CheckConstraint(check_in("role", tuple(Role)), name="role_known"),)


class ApiKey(CreatedAt, Base):
    """A key for a machine client (Open311 app, importer, integration), stored as a hash only.

    The secret is shown once, at creation. ``prefix`` (the first characters, not secret) finds
    the row; the SHA-256 of the whole key proves it. Keys are high-entropy random strings, so a
    fast hash is the right tool (unlike passwords).
    """

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(
        ForeignKey("jurisdiction.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), server_default=Role.citizen.value)
    scopes: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)), server_default=text("'{}'::varchar[]")
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("app_user.id", ondelete="SET NULL")
    )
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint(check_in("role", tuple(Role)), name="role_known"),)
