"""The webcare inbox's wire format (staff only: it shows what authors posted and who they
are on the platform; nothing of it reaches a public endpoint)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

ServiceLevel = Literal["met", "ok", "due_soon", "overdue"]
InboxState = Literal[
    "unanswered",
    "awaiting_location",
    "needs_human",
    "sensitive",
    "suggest_merge",
    "could_not_answer",
    "closed",
    "all",
]


class SocialPostOut(BaseModel):
    id: int
    platform: str
    account: str
    post_id: str
    author_handle: str | None
    text: str
    posted_at: datetime
    received_at: datetime
    status: str = Field(
        description="ticket_created, linked, ignored, awaiting_location, communications, "
        "needs_human, in_dialogue, suggest_merge (or received while it is processed)"
    )
    reason: str | None = Field(description="Why ignored, or why a person must look")
    link_rule: str | None = Field(
        description="How it joined its ticket: reply, conversation, reference, intake, "
        "resumed, author, suggested, follow_up"
    )
    service_code: str | None
    confidence: float | None
    language: str | None
    sentiment: float | None
    sensitive: bool
    location_source: str | None
    ticket_reference: str | None
    assigned_to: uuid.UUID | None
    due_at: datetime | None
    answered_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None
    candidate_reference: str | None = Field(
        description="suggest_merge: the author's recent ticket this post may be about"
    )
    answer_failure: str | None = Field(
        description="Why the platform refused every way to answer (webcare answers by hand)"
    )
    service_level: ServiceLevel = Field(
        description="met: answered or closed; due_soon: within the city's warning time of its "
        "response deadline; overdue: past it"
    )


class SocialPostPage(BaseModel):
    items: list[SocialPostOut]
    next_before: int | None = Field(description="Pass as `before` for the next (older) page")


class PostAssignIn(BaseModel):
    user_id: uuid.UUID | None = Field(description="A staff member of the post's city; null: nobody")


class PostAnswerIn(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=280)] = Field(
        description="The answer, posted in the thread of the post (no personal data)"
    )


class PostAnswerOut(BaseModel):
    notification_id: int | None = Field(description="The outbox row that carries the answer")


class PostCloseIn(BaseModel):
    reason: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description="Why no answer is needed (thanks only, a troll, answered elsewhere)"
    )


class SuggestionIn(BaseModel):
    decision: Literal["link", "new"] = Field(
        description="link: the post joins the suggested ticket (answered in its thread); "
        "new: it goes on as a new report (asked where, or filed)"
    )
