"""What talk answers over HTTP (staff only: none of it is public)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class Centre(BaseModel):
    lon: float
    lat: float


class BroadcastDraft(BaseModel):
    """The body of ``POST /v1/broadcasts`` for this alert: add the words and send."""

    jurisdiction: str
    polygon: dict[str, Any] = Field(description="GeoJSON Polygon: the suggested broadcast area")
    area_description: str
    headline: str
    body: str


class AlertOut(BaseModel):
    id: int
    jurisdiction: str
    service: str | None = Field(description="The service's code; null: posts of no service")
    area: str | None = Field(description="The area's code at the alert's centre")
    area_name: str | None
    status: Literal["open", "closed"]
    signal_count: int
    report_count: int
    post_count: int
    expected: float = Field(description="Signals usual in one window at this place and hour")
    threshold: int = Field(description="Signals that made it a spike")
    radius_m: float
    centre: Centre
    polygon: dict[str, Any] = Field(description="GeoJSON Polygon: the members' hull + radius")
    opened_at: datetime
    last_signal_at: datetime
    closed_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    broadcast: BroadcastDraft


class AlertSignal(BaseModel):
    """A report or post behind an alert (no personal data: where, when, which ticket)."""

    id: int
    source: Literal["report", "post"]
    channel: str
    ticket: str | None = Field(description="The ticket's public reference")
    post_id: int | None
    at: datetime
    sentiment: float | None
    lon: float | None
    lat: float | None


class AlertDetail(AlertOut):
    signals: list[AlertSignal]
    tickets: list[str]


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_before: int | None = Field(description="Pass as `before` for the next (older) page")


class Trend(BaseModel):
    term: str = Field(description="A stem, a #hashtag, or a service code")
    today: int = Field(description="Mentions in the last 24 hours")
    per_day: float = Field(description="Mean mentions per day over the baseline days")
    lift: float = Field(description="(today + 1) / (per_day + 1)")
    series: list[int] = Field(description="Mentions per day, oldest first; the last is today")


class Trends(BaseModel):
    jurisdiction: str
    area: str | None
    kind: Literal["terms", "services"]
    baseline_days: int
    items: list[Trend]


class MoodBucket(BaseModel):
    bucket: datetime
    key: str | None = Field(description="The service, area or channel; null when not grouped")
    count: int
    mean: float = Field(description="Mean sentiment, -1 (angry) .. 1 (delighted)")
    negative: float = Field(description="Share below -0.05")
    positive: float = Field(description="Share above 0.05")


class Moods(BaseModel):
    jurisdiction: str
    by: Literal["none", "service", "area", "channel"]
    bucket_days: int
    items: list[MoodBucket]


class AnsweringBucket(BaseModel):
    """Posts to one city account that arrived in one bucket, and how fast they were answered."""

    bucket: datetime
    platform: str
    account: str = Field(description="The city's account the posts were addressed to")
    posts: int = Field(description="Posts that asked for an answer")
    answered: int
    on_time: int = Field(description="Answered within `within_hours` of arriving")
    pending: int = Field(description="Not answered and not due yet: outside the share")
    share: float | None = Field(
        description="on_time / (posts - pending); null when nothing was due yet"
    )
    median_minutes: float | None = Field(description="Median time to the first answer")


class Answering(BaseModel):
    jurisdiction: str
    within_hours: float = Field(description="The target: the city's response time by default")
    bucket_days: int
    share: float | None = Field(description="Over every bucket and account")
    items: list[AnsweringBucket]


class SatisfactionOut(BaseModel):
    ticket: str
    answer: Literal["yes", "no"]
    status: str = Field(description="The ticket's status after the answer")
