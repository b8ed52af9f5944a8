"""Declarative base with a naming convention, so constraint names are stable across migrations."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from annotated_types import Interval
from pydantic import BeforeValidator
from sqlalchemy import BigInteger, DateTime, Float, Integer, MetaData, Text, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The largest value of an ``integer`` (int4) column. An id past it can name nothing; declared
# in the schema (``maximum``), it is a 422 before any statement, where the database would
# fail to bind it.
INT4_MAX = 2**31 - 1

INT8_MAX = 2**63 - 1

# The id of a row whose key is an ``integer`` column, in a path, query or body.
Int4Id = Annotated[int, Interval(ge=1, le=INT4_MAX)]

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def iso_only(value: object) -> object:
    # pydantic would read "-262" or "1e9" as seconds since 1970; the document says date-time.
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date-time (2026-11-24T08:00:00Z)")
    return value


# A date-time as the document says it: ISO 8601 text, not a number of seconds.
IsoDatetime = Annotated[datetime, BeforeValidator(iso_only)]
# The id of a row whose key is a ``bigint`` column (contacts, reports, tickets, events).
Int8Id = Annotated[int, Interval(ge=1, le=INT8_MAX)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CreatedAt:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class RateLimitHit(Base):
    """Accepted hits of one client under one limit in one minute (``app.core.ratelimit``,
    with ``KERBSIDE_RATE_LIMIT_STORE=postgres``). The table is UNLOGGED (migration 0017)."""

    __tablename__ = "rate_limit_hit"
    __table_args__ = {"prefixes": ["UNLOGGED"]}

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    window_no: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    # The previous minute's weighted hits when this row was last written (read by the
    # statement's conflict branch, which can see only the row and the proposed one).
    carried: Mapped[float] = mapped_column(Float, server_default=text("0"))


def check_in(column: str, values: tuple[str, ...]) -> str:
    """SQL text for ``column IN (...)`` over fixed, code-defined values (never user input)."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"
