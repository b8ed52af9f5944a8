"""The inbound seam every social platform plugs into: fetch what was addressed to a city
account since a cursor, as ``InboundPost``s (``app.channels.posts``).

A platform module (``x.py``; Mastodon, Bluesky, Facebook next) offers a ``MentionSource``:
``fetch(account, since)`` reads every page since ``since`` and says where the next run
starts (``cursor``, only when every page came in), and until when the platform's rate limit
holds (``retry_at``). Platforms that push (webhooks) parse their bodies into the same
``InboundPost``s in their own module. ``app.social`` keeps each post once and runs the
pipeline; answers go out through the platform's outbound ``Channel`` (``base.py``), which
replies in the thread of the post a message's ``data["reply_to"]`` names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from app.channels.posts import InboundPost


@dataclass(frozen=True)
class AccountRef:
    """A city account as a source needs it; ``secrets`` already read from the environment."""

    platform: str
    handle: str
    id: str | None
    base_url: str | None
    secrets: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.id or self.handle


@dataclass
class Fetched:
    """What one run over an account's mentions brought."""

    posts: list[InboundPost] = field(default_factory=list)  # newest first
    cursor: str | None = None  # where the next run starts, when ``complete``
    complete: bool = False
    retry_at: datetime | None = None  # rate limited until
    error: str | None = None
    pages: int = 0
    skipped: int = 0  # items without what every post has
    errors: int = 0  # the platform's partial errors (deleted or protected posts)


class MentionSource(Protocol):
    platform: str

    async def fetch(self, account: AccountRef, since: str | None) -> Fetched: ...

    async def close(self) -> None: ...
