"""Bluesky (AT Protocol): the city account's mentions and replies in, threaded replies out.

Session: ``com.atproto.server.createSession`` with the account's app password gives an access
JWT (short-lived) and a refresh JWT. Logins are rate limited (30 per 5 minutes, 300 a day), so
the client keeps its session (``BlueskyClient.session``; the caller may persist it and hand it
back) and renews it with ``refreshSession`` when the access JWT's ``exp`` is near or the server
answers ``ExpiredToken``; only when the refresh JWT is dead too does it log in again.

In (``BlueskyClient.mentions``): ``app.bsky.notification.listNotifications`` with
``reasons=mention&reasons=reply``, newest first, paged with ``cursor``. Our cursor is our own
high-water mark, ``<indexedAt>|<uri>`` of the newest notification read; a poll reads pages until
it reaches it. The first poll of an account reads only the newest page. A 429 (``RateLimit-Reset``
in epoch seconds) stops the poll with what was read. Posts have no geo field: coordinates come
only from a map link (``geo:``, OpenStreetMap ``#map=z/lat/lon``, Google Maps ``@lat,lon``) in
the text or a link facet. Images are URLs on the image CDN, their alt text added to the text.

Out (``BlueskyChannel``, contact kind ``bluesky``): ``com.atproto.repo.createRecord`` of an
``app.bsky.feed.post`` with ``reply.root``/``reply.parent`` strong refs (uri and cid: root is
the parent's root when the parent is itself a reply), a mention facet for the author and link
facets, their offsets in UTF-8 bytes. Bluesky takes no idempotency key, so the record key
is ours: a TID derived from the outbox row's id (``record_key``). A retry of the same row
writes to the same key; the PDS refuses a second record there (today a 500, a named error
once atproto#4728 lands), and ``getRecord`` at that key showing our reply to the same parent
means the first try went through: delivered, once.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.channels import replies, transport
from app.channels.base import Delivered, Failed, Message, Outcome, RetryLater
from app.channels.polling import Polled, parse_time, wait_from
from app.channels.posts import InboundPost
from app.core import clock
from app.settings import Settings

SERVICE_URL = "https://bsky.social"
IMAGE_URL = "https://cdn.bsky.app/img/feed_fullsize/plain/{did}/{cid}@jpeg"
# A blob read from the PDS itself (a PDS serves the blobs of the repositories it hosts).
BLOB_URL = "{base}/xrpc/com.atproto.sync.getBlob?did={{did}}&cid={{cid}}"
PAGE_SIZE = 50
MAX_PAGES = 20
POST_LIMIT = 300  # graphemes; code points are never fewer, so counting them is safe
REFRESH_MARGIN = timedelta(seconds=60)
POST_COLLECTION = "app.bsky.feed.post"
# TIDs: 53 bits of microseconds since the epoch and 10 bits of clock id, in base32-sortable.
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
# Our record keys count outbox row ids from here (2025-01-01T00:00:00Z, in microseconds): a
# valid TID for each row, never one a client makes from today's clock.
_TID_BASE_US = 1_735_689_600_000_000
_TID_CLOCK_ID = 0
_URL = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]]")
_MAP_LINKS = (
    re.compile(r"geo:(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)"),  # lat,lon
    re.compile(r"#map=\d+/(-?\d+(?:\.\d+)?)/(-?\d+(?:\.\d+)?)"),  # OpenStreetMap: lat/lon
    re.compile(r"google\.[a-z.]+/maps/[^\s]*@(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)"),
)


@dataclass(frozen=True)
class BlueskyAccount:
    identifier: str  # the handle (or DID) to log in with
    app_password: str = field(repr=False)
    base_url: str = SERVICE_URL  # the account's PDS (or the entryway)
    image_url: str = IMAGE_URL  # where a post's images are read: the CDN, or ``blob_url``


def blob_url(base_url: str) -> str:
    """The ``image_url`` template that reads images with ``com.atproto.sync.getBlob``."""
    return BLOB_URL.format(base=base_url.rstrip("/"))


@dataclass(frozen=True)
class Session:
    did: str
    handle: str
    access_jwt: str = field(repr=False)
    refresh_jwt: str = field(repr=False)

    @property
    def access_expires_at(self) -> datetime | None:
        return jwt_expiry(self.access_jwt)


class SessionFailed(Exception):
    def __init__(self, reason: str, *, retry: bool, wait: float | None = None) -> None:
        super().__init__(reason)
        self.retry = retry
        self.wait = wait


def jwt_expiry(token: str) -> datetime | None:
    """The ``exp`` of a JWT's payload (not verified: the server checks it; we only plan)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(float(claims["exp"]), UTC)
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def record_key(notification_id: int) -> str:
    """The record key (a TID, as ``app.bsky.feed.post`` requires) of the answer that outbox
    row ``notification_id`` sends: the same for every try of that row."""
    if not 0 < notification_id < 2**52:
        raise ValueError("an outbox row id")
    value = ((_TID_BASE_US + notification_id) << 10) | _TID_CLOCK_ID
    chars = []
    for _ in range(13):
        chars.append(_TID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


# -- in ----------------------------------------------------------------------------------------


def map_coordinates(text: str) -> tuple[float, float] | None:
    """(lon, lat) from a map link in ``text``, if one is there and in range."""
    for pattern in _MAP_LINKS:
        match = pattern.search(text)
        if match:
            lat, lon = float(match.group(1)), float(match.group(2))
            if -90 <= lat <= 90 and -180 <= lon <= 180:
                return lon, lat
    return None


def to_post(
    notification: Mapping[str, Any], account: BlueskyAccount, own: str
) -> InboundPost | None:
    if notification.get("reason") not in {"mention", "reply"}:
        return None
    record = _map(notification.get("record"))
    author = _map(notification.get("author"))
    uri, did = notification.get("uri"), author.get("did")
    if not uri or not did or record.get("$type", "app.bsky.feed.post") != "app.bsky.feed.post":
        return None
    text = str(record.get("text") or "")
    links = [
        str(feature.get("uri"))
        for facet in _list(record.get("facets"))
        for feature in _list(facet.get("features"))
        if feature.get("$type") == "app.bsky.richtext.facet#link" and feature.get("uri")
    ]
    media, alts = _images(record.get("embed"), str(did), account.image_url)
    reply = _map(record.get("reply"))
    root = _map(reply.get("root")).get("uri")
    parent = _map(reply.get("parent")).get("uri")
    langs = record.get("langs")
    full_text = "\n".join([text, *alts]) if alts else text
    return InboundPost(
        platform="bluesky",
        account=own,
        post_id=str(uri),
        author_id=str(did),
        text=full_text,
        created_at=parse_time(record.get("createdAt"))
        or parse_time(notification.get("indexedAt"))
        or clock.now(),
        raw=notification,
        author_handle=str(author.get("handle")) if author.get("handle") else None,
        conversation_id=str(root or uri),
        in_reply_to_id=str(parent) if parent else None,
        lang=str(langs[0]) if isinstance(langs, list) and langs else None,
        coordinates=map_coordinates(" ".join([text, *links])),
        media_urls=media,
    )


def _images(embed: Any, did: str, template: str) -> tuple[tuple[str, ...], list[str]]:
    embed = _map(embed)
    if embed.get("$type") == "app.bsky.embed.recordWithMedia":
        embed = _map(embed.get("media"))
    if embed.get("$type") != "app.bsky.embed.images":
        return (), []
    urls, alts = [], []
    for image in _list(embed.get("images")):
        ref = _map(_map(image.get("image")).get("ref")).get("$link")
        if ref:
            urls.append(template.format(did=did, cid=ref))
        if image.get("alt"):
            alts.append(str(image["alt"]))
    return tuple(urls), alts


def _mark(notification: Mapping[str, Any]) -> tuple[datetime, str]:
    when = parse_time(notification.get("indexedAt")) or datetime.min.replace(tzinfo=UTC)
    return when, str(notification.get("uri", ""))


def _parse_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor or "|" not in cursor:
        return None
    when, _, uri = cursor.partition("|")
    moment = parse_time(when)
    return (moment, uri) if moment else None


def reply_data(post: InboundPost) -> dict[str, Any]:
    """What the outbox row's ``data`` needs to answer ``post``: the strong refs and the author."""
    record = _map(post.raw.get("record"))
    parent = {"uri": post.post_id, "cid": str(post.raw.get("cid", ""))}
    root = _map(_map(record.get("reply")).get("root"))
    return {
        "account": post.account,
        "platform": "bluesky",
        "parent": parent,
        "root": {"uri": str(root["uri"]), "cid": str(root["cid"])}
        if root.get("uri") and root.get("cid")
        else parent,
        "mention_handle": post.author_handle,
        "mention_did": post.author_id,
        "language": post.lang,
    }


# -- the client --------------------------------------------------------------------------------


class BlueskyClient:
    def __init__(
        self,
        account: BlueskyAccount,
        settings: Settings,
        *,
        session: Session | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.account = account
        self.session = session
        self._client = http or transport.client(settings)

    @property
    def name(self) -> str:
        return self.session.handle if self.session else self.account.identifier

    async def _login(self) -> Session:
        response = await self._post_raw(
            "com.atproto.server.createSession",
            {"identifier": self.account.identifier, "password": self.account.app_password},
            token=None,
        )
        return self._session_from(response, "createSession")

    async def _refresh(self, session: Session) -> Session:
        response = await self._post_raw(
            "com.atproto.server.refreshSession", None, token=session.refresh_jwt
        )
        if response.status_code in {400, 401}:
            return await self._login()  # the refresh JWT expired or was revoked
        return self._session_from(response, "refreshSession")

    def _session_from(self, response: httpx.Response, what: str) -> Session:
        status = response.status_code
        if status == 429:
            raise SessionFailed(
                f"bluesky {what} 429", retry=True, wait=wait_from(response, "RateLimit-Reset")
            )
        if status != 200:
            raise SessionFailed(f"bluesky {what} {status}", retry=status >= 500)
        body = transport.json_object(response)
        try:
            return Session(
                did=str(body["did"]),
                handle=str(body["handle"]),
                access_jwt=str(body["accessJwt"]),
                refresh_jwt=str(body["refreshJwt"]),
            )
        except KeyError:
            raise SessionFailed(f"bluesky {what} without tokens", retry=False) from None

    async def _post_raw(self, nsid: str, body: Any, *, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return await self._client.post(
                f"{self.account.base_url}/xrpc/{nsid}", json=body, headers=headers
            )
        except httpx.HTTPError as error:
            raise SessionFailed(f"bluesky {transport.describe(error)}", retry=True) from None

    async def _fresh_session(self) -> Session:
        if self.session is None:
            self.session = await self._login()
        expires = self.session.access_expires_at
        if expires is not None and expires - clock.now() < REFRESH_MARGIN:
            self.session = await self._refresh(self.session)
        return self.session

    async def call(self, method: str, nsid: str, **kwargs: Any) -> httpx.Response:
        """An authenticated XRPC call; an ``ExpiredToken`` answer refreshes and tries once more."""
        for attempt in range(2):
            session = await self._fresh_session()
            headers = {"Authorization": f"Bearer {session.access_jwt}"}
            try:
                response = await self._client.request(
                    method, f"{self.account.base_url}/xrpc/{nsid}", headers=headers, **kwargs
                )
            except httpx.HTTPError as error:
                raise SessionFailed(f"bluesky {transport.describe(error)}", retry=True) from None
            error_name = transport.json_object(response).get("error")
            expired = error_name in {"ExpiredToken", "InvalidToken"}
            if response.status_code in {400, 401} and expired and attempt == 0:
                self.session = await self._refresh(session)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def mentions(self, cursor: str | None) -> Polled:
        """Mentions and replies newer than ``cursor``, oldest first, and the new cursor."""
        mark = _parse_cursor(cursor)
        found: list[Mapping[str, Any]] = []
        page_cursor: str | None = None
        error: str | None = None
        wait: float | None = None
        complete = False
        for _ in range(MAX_PAGES):
            params: list[tuple[str, str | int]] = [
                ("reasons", "mention"),
                ("reasons", "reply"),
                ("limit", PAGE_SIZE),
            ]
            if page_cursor:
                params.append(("cursor", page_cursor))
            try:
                response = await self.call(
                    "GET", "app.bsky.notification.listNotifications", params=params
                )
            except SessionFailed as failed:
                error, wait = str(failed), failed.wait
                break
            if response.status_code == 429:
                error, wait = "bluesky 429", wait_from(response, "RateLimit-Reset")
                break
            if response.status_code != 200:
                error = f"bluesky {response.status_code}"
                break
            body = transport.json_object(response)
            notes = _list(body.get("notifications"))
            for note in notes:
                if mark is not None and _mark(note) <= mark:
                    complete = True
                    break
                found.append(note)
            page_cursor = body.get("cursor") if isinstance(body.get("cursor"), str) else None
            if mark is None or not notes or not page_cursor:
                complete = True
            if complete:
                break
        own = self.name
        posts = [p for p in (to_post(n, self.account, own) for n in reversed(found)) if p]
        # Pages come newest first: the mark moves only once everything down to the old mark
        # was read, or a gap would be skipped for good. What was read is handed over anyway
        # (the pipeline keeps each post once), so a poll stopped by a 429 loses nothing.
        new_cursor = cursor
        if complete and found:
            newest = max(_mark(n) for n in found)
            new_cursor = f"{newest[0].isoformat()}|{newest[1]}"
        return Polled(tuple(posts), new_cursor, wait_seconds=wait, error=error)

    async def reply(self, message: Message) -> Outcome:
        parent, root = _map(replies.value(message, "parent")), _map(replies.value(message, "root"))
        if not (parent.get("uri") and parent.get("cid") and root.get("uri") and root.get("cid")):
            return Failed("a Bluesky answer needs the parent and root references (uri and cid)")
        handle = replies.value(message, "mention_handle")
        did = replies.value(message, "mention_did")
        prefix = f"@{handle} " if handle and did else ""
        text = replies.reply_text(message, POST_LIMIT, prefix=prefix)
        record: dict[str, Any] = {
            "$type": "app.bsky.feed.post",
            "text": text,
            "createdAt": transport.as_utc_text(clock.now()),
            "langs": [message.language],
            "reply": {
                "root": {"uri": str(root["uri"]), "cid": str(root["cid"])},
                "parent": {"uri": str(parent["uri"]), "cid": str(parent["cid"])},
            },
        }
        facets = facets_for(text, mention=(f"@{handle}", str(did)) if prefix else None)
        if facets:
            record["facets"] = facets
        rkey = record_key(message.id)
        try:
            session = await self._fresh_session()
            response = await self.call(
                "POST",
                "com.atproto.repo.createRecord",
                json={
                    "repo": session.did,
                    "collection": POST_COLLECTION,
                    "rkey": rkey,
                    "record": record,
                },
            )
            status = response.status_code
            if status == 200:
                return Delivered(
                    provider_id=str(transport.json_object(response).get("uri") or "") or None
                )
            if status == 429:
                return RetryLater("bluesky 429", after=wait_from(response, "RateLimit-Reset"))
            # A key already taken is a 500 on today's PDS (a 400 with its own error name
            # later): an earlier try of this row may have written it.
            earlier = await self._written(session.did, rkey, str(parent["uri"]))
        except SessionFailed as failed:
            if failed.retry:
                return RetryLater(str(failed), after=failed.wait)
            return Failed(str(failed))
        if isinstance(earlier, str):
            return Delivered(provider_id=earlier)
        if earlier is False:
            return Failed(f"bluesky: record key {rkey} holds another post")
        if status >= 500:
            return RetryLater(f"bluesky {status}", after=wait_from(response, "RateLimit-Reset"))
        return Failed(f"bluesky {status} ({transport.json_object(response).get('error')})")

    async def _written(self, did: str, rkey: str, parent_uri: str) -> str | bool | None:
        """What the record key holds: the record's uri when it is our reply to
        ``parent_uri`` (an earlier try went through), False when it is another record, None
        when there is none (or the PDS cannot say)."""
        found = await self.call(
            "GET",
            "com.atproto.repo.getRecord",
            params={"repo": did, "collection": POST_COLLECTION, "rkey": rkey},
        )
        if found.status_code != 200:
            return None  # RecordNotFound, or the PDS is in trouble: the first answer stands
        document = transport.json_object(found)
        value = _map(document.get("value"))
        if _map(_map(value.get("reply")).get("parent")).get("uri") == parent_uri:
            return str(document.get("uri") or "") or f"at://{did}/{POST_COLLECTION}/{rkey}"
        return False

    async def close(self) -> None:
        await self._client.aclose()


def facets_for(text: str, *, mention: tuple[str, str] | None) -> list[dict[str, Any]]:
    """Rich-text facets: the mention at the start and every link, in UTF-8 byte offsets."""
    facets: list[dict[str, Any]] = []

    def span(start: int, end: int) -> dict[str, int]:
        return {
            "byteStart": len(text[:start].encode()),
            "byteEnd": len(text[:end].encode()),
        }

    if mention is not None and text.startswith(mention[0]):
        facets.append(
            {
                "index": span(0, len(mention[0])),
                "features": [{"$type": "app.bsky.richtext.facet#mention", "did": mention[1]}],
            }
        )
    for match in _URL.finditer(text):
        facets.append(
            {
                "index": span(match.start(), match.end()),
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": match.group(0)}],
            }
        )
    return facets


class BlueskyChannel:
    """Answers on Bluesky (contact kind ``bluesky``); ``data`` from ``reply_data``."""

    kind = "bluesky"

    def __init__(self, clients: Sequence[BlueskyClient]) -> None:
        self._clients = {c.account.identifier: c for c in clients}

    async def deliver(self, message: Message) -> Outcome:
        account = replies.value(message, "account")
        client = self._clients.get(str(account))
        if client is None:
            client = next((c for c in self._clients.values() if c.name == account), None)
        if client is None and account is None and len(self._clients) == 1:
            client = next(iter(self._clients.values()))
        if client is None:
            return Failed("no Bluesky account configured for this conversation")
        return await client.reply(message)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
