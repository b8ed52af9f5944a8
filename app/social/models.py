"""Social posts kept verbatim with what became of them, the city's social settings, and where
each account's polling stands."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy import (
    text as sql,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, check_in


class PostStatus(StrEnum):
    """What the pipeline did with a post (its outcome)."""

    received = "received"  # stored, not processed yet
    ticket_created = "ticket_created"  # filed through the intake (a new ticket or joined one)
    linked = "linked"  # added to an existing ticket's timeline (``link_rule`` says how)
    ignored = "ignored"  # own account, repost, another city account, blocked, spam (``reason``)
    awaiting_location = "awaiting_location"  # we asked where; resumed by the author's reply
    communications = "communications"  # political or sensitive: the communications queue
    needs_human = "needs_human"  # not a report we could read, or filing failed: webcare
    in_dialogue = "in_dialogue"  # a chat message the reporting dialogue answered
    # The author's recent ticket may be what this post is about: webcare links or files it.
    suggest_merge = "suggest_merge"


class PhotosState(StrEnum):
    pending = "pending"
    fetched = "fetched"  # every photo that could be had is the report's (some may have failed)
    failed = "failed"


class LinkRule(StrEnum):
    """How a post was linked to its ticket (the rules in order, docs/social.md)."""

    reply = "reply"  # a reply to a post already linked to the ticket (or the city's reply)
    conversation = "conversation"  # the same conversation by the same author
    reference = "reference"  # a ticket reference in the text
    intake = "intake"  # the intake's duplicate rules (a new ticket, or joined one)
    resumed = "resumed"  # the author's answer to our question where the problem is
    author = "author"  # the same author's recent ticket, same service and nearby
    suggested = "suggested"  # webcare confirmed the suggested ticket
    follow_up = "follow_up"  # a new ticket after the old one's reopen window (names it)


class SocialPost(Base):
    """One post, comment or message addressed to a city account, as received, and its outcome.

    Unique by (platform, post id): an overlapping poll, a webhook retry or a replay stores
    nothing twice. Authors' ids and handles are what they posted publicly; never shown on a
    public endpoint.
    """

    __tablename__ = "social_post"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    post_id: Mapped[str] = mapped_column(String(200))
    account: Mapped[str] = mapped_column(String(200))  # the city account it was addressed to
    jurisdiction_id: Mapped[int | None] = mapped_column(
        ForeignKey("jurisdiction.id", ondelete="CASCADE")
    )
    author_id: Mapped[str] = mapped_column(String(200))
    author_handle: Mapped[str | None] = mapped_column(String(200))
    conversation_id: Mapped[str | None] = mapped_column(String(200))
    in_reply_to_id: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    # What the platform said beside the text: place, media, repost, private, language hint.
    hints: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql("'{}'"))
    raw: Mapped[dict[str, Any]] = mapped_column(JSONB)  # the payload verbatim
    posted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    status: Mapped[str] = mapped_column(String(24), server_default=PostStatus.received.value)
    reason: Mapped[str | None] = mapped_column(Text)  # why ignored, or why a human must look
    link_rule: Mapped[str | None] = mapped_column(String(16))
    # The classifier's view.
    service_code: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    language: Mapped[str | None] = mapped_column(String(16))
    sentiment: Mapped[float | None] = mapped_column(Float)
    sensitive: Mapped[bool] = mapped_column(Boolean, server_default=sql("false"))
    # Where, and how we know.
    location: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=4326, spatial_index=False), nullable=True
    )
    location_source: Mapped[str | None] = mapped_column(String(16))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", ondelete="SET NULL"))
    report_id: Mapped[int | None] = mapped_column(ForeignKey("report.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))
    # The author's answer that gave an awaiting post its location.
    resumed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("social_post.id", ondelete="SET NULL")
    )
    # Rule 4: the author's recent ticket this post may be about (status suggest_merge).
    candidate_ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("ticket.id", ondelete="SET NULL")
    )
    # The platform refused every way we had to answer (the outbox row says why): webcare.
    answer_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answer_failure: Mapped[str | None] = mapped_column(Text)
    # Webcare: who handles it, by when an answer is due, and how it ended.
    assigned_to: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("app_user.id", ondelete="SET NULL")
    )
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    close_reason: Mapped[str | None] = mapped_column(Text)
    # The post's photos, fetched into its report after it was filed (``app.social.photos``):
    # pending (a job fetches them), fetched, or failed (why, for staff).
    photos_state: Mapped[str | None] = mapped_column(String(16))
    photos_failure: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("platform", "post_id"),
        CheckConstraint(
            "photos_state IS NULL OR " + check_in("photos_state", tuple(PhotosState)),
            name="photos_state_known",
        ),
        CheckConstraint(check_in("status", tuple(PostStatus)), name="status_known"),
        CheckConstraint(
            "link_rule IS NULL OR " + check_in("link_rule", tuple(LinkRule)), name="link_rule_known"
        ),
        # Rule 2: the same conversation by the same author.
        Index(
            "ix_social_post_conversation",
            "platform",
            "conversation_id",
            "author_id",
            postgresql_where=sql("ticket_id IS NOT NULL"),
        ),
        # Resuming: the author's posts that wait for a location.
        Index(
            "ix_social_post_awaiting",
            "platform",
            "author_id",
            postgresql_where=sql("status = 'awaiting_location'"),
        ),
        # The webcare inbox: open posts of a jurisdiction, newest first.
        Index(
            "ix_social_post_inbox",
            "jurisdiction_id",
            "id",
            postgresql_where=sql("answered_at IS NULL AND closed_at IS NULL"),
        ),
        Index("ix_social_post_ticket_id", "ticket_id"),
        # Rule 4: the same author's posts that became (or joined) tickets.
        Index(
            "ix_social_post_author_ticket",
            "platform",
            "author_id",
            "id",
            postgresql_where=sql("ticket_id IS NOT NULL"),
        ),
        # A ticket deleted sets its suggestions to NULL: found by index.
        Index("ix_social_post_candidate_ticket_id", "candidate_ticket_id"),
        # A chat's newest message, where a dialogue's closing line goes.
        Index(
            "ix_social_post_in_dialogue",
            "platform",
            "author_id",
            postgresql_where=sql("status = 'in_dialogue'"),
        ),
    )


class SocialSettings(Base):
    """A jurisdiction's ``social`` section of the city file (accounts, streets, service level)."""

    __tablename__ = "social_settings"

    jurisdiction_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("jurisdiction.id", ondelete="CASCADE"), primary_key=True
    )
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql("'{}'"))


class SocialCursor(Base):
    """Where polling one account stands: the newest post seen, and a rate limit's reset."""

    __tablename__ = "social_cursor"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    account: Mapped[str] = mapped_column(String(200), primary_key=True)
    since_id: Mapped[str | None] = mapped_column(String(200))
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    polled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
