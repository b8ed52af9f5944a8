"""Public-works crews and the areas (territories) they cover."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, CreatedAt

crew_area = Table(
    "crew_area",
    Base.metadata,
    Column("crew_id", ForeignKey("crew.id", ondelete="CASCADE"), primary_key=True),
    Column("area_id", ForeignKey("area.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Crew(CreatedAt, Base):
    __tablename__ = "crew"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(
        ForeignKey("jurisdiction.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))

    __table_args__ = (UniqueConstraint("jurisdiction_id", "name"),)


class AssignmentRule(CreatedAt, Base):
    """New tickets of ``service`` (or any) in ``area`` (or anywhere) go to ``crew``.

    The most specific rule wins: area and service, then area, then service, then neither.
    """

    __tablename__ = "assignment_rule"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(
        ForeignKey("jurisdiction.id", ondelete="CASCADE"), index=True
    )
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="CASCADE"))
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id", ondelete="CASCADE"))
    crew_id: Mapped[int] = mapped_column(ForeignKey("crew.id", ondelete="CASCADE"), index=True)

    __table_args__ = (
        Index(
            "uq_assignment_rule_scope",
            "jurisdiction_id",
            "area_id",
            "service_id",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )
