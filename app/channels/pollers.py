"""Mastodon and Bluesky as ``MentionSource``s: the polling job's view of their clients.

The clients (``mastodon.py``, ``bluesky.py``) read an account's mentions from a cursor and
hand back ``Polled``; the job wants ``Fetched`` (newest first, a cursor to keep, a time to
wait until). The account's secrets come from the environment variables the city file names.

Bluesky logins are rate limited (createSession: 30 in 5 minutes, 300 a day), so the session of
each account is kept in this process between polls and refreshed by its refresh token; a
restarted worker logs in once. Tokens are never written to the database or a log.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from app.channels.bluesky import IMAGE_URL, BlueskyAccount, BlueskyClient, Session, blob_url
from app.channels.bluesky import SERVICE_URL as BLUESKY_URL
from app.channels.mastodon import MastodonAccount, MastodonClient
from app.channels.polling import Polled
from app.channels.sources import AccountRef, Fetched
from app.core import clock
from app.settings import Settings

# (PDS URL, identifier) → the session of the last poll, for this process.
_SESSIONS: dict[tuple[str, str], Session] = {}


def fetched_of(polled: Polled) -> Fetched:
    """A client's poll as the job's ``Fetched``: the clients give posts oldest first, and their
    cursor is safe to keep once the posts are (it only covers what was read)."""
    return Fetched(
        posts=list(reversed(polled.posts)),
        cursor=polled.cursor,
        complete=polled.cursor is not None,
        retry_at=clock.now() + timedelta(seconds=polled.wait_seconds)
        if polled.wait_seconds
        else None,
        error=polled.error,
        pages=1,
    )


class MastodonSource:
    platform = "mastodon"

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.http = http  # shared by every fetch when given (closed by ``close``)

    async def fetch(self, account: AccountRef, since: str | None) -> Fetched:
        token = account.secrets.get("access_token")
        if not account.base_url:
            return Fetched(error="a Mastodon account needs its server's URL (base_url)")
        if not token:
            return Fetched(error="the account's access_token is not set in the environment")
        client = MastodonClient(
            MastodonAccount(base_url=account.base_url, access_token=token, handle=account.handle),
            self.settings,
            http=self.http,
        )
        try:
            return fetched_of(await client.mentions(since))
        finally:
            if self.http is None:
                await client.close()

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()


class BlueskySource:
    platform = "bluesky"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def fetch(self, account: AccountRef, since: str | None) -> Fetched:
        password = account.secrets.get("app_password")
        if not password:
            return Fetched(error="the account's app_password is not set in the environment")
        base = account.base_url or BLUESKY_URL
        key = (base, account.handle)
        client = BlueskyClient(
            BlueskyAccount(
                identifier=account.handle,
                app_password=password,
                base_url=base,
                # Images from the CDN, or from the configured PDS when it is not Bluesky's.
                image_url=IMAGE_URL if base.rstrip("/") == BLUESKY_URL else blob_url(base),
            ),
            self.settings,
            session=_SESSIONS.get(key),
        )
        try:
            return fetched_of(await client.mentions(since))
        finally:
            if client.session is not None:
                _SESSIONS[key] = client.session
            await client.close()

    async def close(self) -> None:
        return None
