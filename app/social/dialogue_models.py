"""The state of a reporting conversation in a messaging app (``app.social.dialogue``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, check_in


class DialogueState(StrEnum):
    collecting = "collecting"  # asking for what is missing
    confirming = "confirming"  # everything is there: waiting for "yes"
    filed = "filed"  # the report is in
    stopped = "stopped"  # the person said stop (or no)
    expired = "expired"  # no answer within the timeout
    abandoned = "abandoned"  # asked too often without an answer we could use


OPEN = (DialogueState.collecting.value, DialogueState.confirming.value)


class Dialogue(Base):
    """One conversation with one person on one city account, until it files or ends.

    It holds personal data (the person's platform id, what they wrote, their location) for as
    long as the conversation is open; it is never shown on a public endpoint.
    """

    __tablename__ = "social_dialogue"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))  # whatsapp | messenger
    account: Mapped[str] = mapped_column(Text)  # the city's number id or page id
    author_id: Mapped[str] = mapped_column(Text)  # the person's wa_id or page-scoped id
    jurisdiction: Mapped[str] = mapped_column(Text)  # slug
    state: Mapped[str] = mapped_column(String(16), server_default=DialogueState.collecting.value)
    language: Mapped[str] = mapped_column(String(8))
    service_code: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    location_source: Mapped[str | None] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(Text)
    # Photos accepted by the photo pipeline (their originals kept privately), as JSON objects.
    photos: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    photo_declined: Mapped[bool] = mapped_column(server_default=text("false"))
    asked: Mapped[str | None] = mapped_column(String(16))  # what the last answer asked for
    asked_times: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    options: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    # Every inbound message this conversation took, so a redelivery changes nothing.
    post_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    report_id: Mapped[int | None] = mapped_column(ForeignKey("report.id", ondelete="SET NULL"))
    reference: Mapped[str | None] = mapped_column(Text)
    last_inbound_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(check_in("state", tuple(s.value for s in DialogueState)), name="state"),
        # One open conversation per person and account: two messages at once meet here.
        Index(
            "ux_social_dialogue_open",
            "platform",
            "account",
            "author_id",
            unique=True,
            postgresql_where=text(check_in("state", OPEN)),
        ),
        Index("ix_social_dialogue_person", "platform", "account", "author_id"),
        # The timeout sweep reads the open ones by age.
        Index(
            "ix_social_dialogue_open_age",
            "updated_at",
            postgresql_where=text(check_in("state", OPEN)),
        ),
    )
