"""What a social platform hands the pipeline: one post or message, platform-neutral."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class PlaceHint:
    """A place the platform attached to a post (name and bounding box, lon/lat)."""

    name: str
    bbox: tuple[float, float, float, float] | None = None  # west, south, east, north


@dataclass(frozen=True, slots=True)
class InboundPost:
    """One post, comment or direct message addressed to a city account, as received."""

    platform: str  # "x" | "facebook" | "messenger" | "whatsapp" | "mastodon" | "bluesky"
    account: str  # the city account (its handle or id) the post was addressed to
    post_id: str  # unique per platform
    author_id: str
    text: str
    created_at: datetime
    raw: Mapping[str, Any]  # the payload verbatim, as the platform sent it
    author_handle: str | None = None
    conversation_id: str | None = None  # thread root where the platform has one
    in_reply_to_id: str | None = None
    is_repost: bool = False
    is_private: bool = False  # a direct/messaging message rather than a public post
    lang: str | None = None
    coordinates: tuple[float, float] | None = None  # lon, lat
    place: PlaceHint | None = None
    media_urls: tuple[str, ...] = field(default_factory=tuple)
