"""X (Twitter) API v2: mentions in, replies in the thread out. One module for the platform.

Inbound (``InboundPost``s for ``app.social``):

- ``XClient.mentions``: ``GET /2/users/:id/mentions`` from ``since_id``, following
  ``meta.next_token`` page by page, with the expansions for author, place, media and the
  referenced posts; it stops at a 429 (or a page that leaves no requests) and says when the
  limit resets (``x-rate-limit-reset``, epoch seconds). The caller stores ``newest_id`` as the
  next ``since_id`` only after every page came in.
- ``posts_from_page`` reads a page (the v2 shape; ``referenced_posts`` and ``includes.posts``
  of the renamed schema too), ``posts_from_webhook`` an X Activity API event or a legacy
  Account Activity (v1.1) body.
- ``crc_response`` answers the webhook's CRC challenge; ``signature_valid`` checks
  ``x-twitter-webhooks-signature`` (HMAC-SHA256 over the raw body, base64, constant time).

Outbound: ``XChannel`` (contact kind ``x``) replies in the thread of the post the message's
``reply_to`` names (``POST /2/tweets`` with ``reply.in_reply_to_tweet_id``), with the city
account's user token from the environment variable the city file names. X's 403 for a
duplicate text means the same answer is already there: delivered. A refused reply (X's 2026
rule, or replies limited by the author) falls back to the person's original mention, then to
a direct message when the account sends them. No links in replies (a post with a URL costs far
more), unless the text itself carries one (the question for a location).
A notice on a linked account (``notice`` in the target, ``app.linking``) is a direct message
instead: ``POST /2/dm_conversations/with/:participant_id/messages`` with the city account's
user token (scope ``dm.write``); X refuses it (403) when the person does not accept messages
from the city.

Linking (``OAuthClient``, ``authorize_url``, ``link_identity``): OAuth 2 authorization code
with PKCE (S256), scopes ``users.read tweet.read`` (``GET /2/users/me`` needs both); the
city's app as a confidential client (HTTP Basic at the token and revoke endpoints) or a
public one (``client_id`` in the form); the person's token revoked once their id is read.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.channels import transport
from app.channels.base import Delivered, Failed, Message, Outcome, RetryLater
from app.channels.oauth import Identity, LinkRefused, authorize_query
from app.channels.posts import InboundPost, PlaceHint
from app.channels.sources import AccountRef, Fetched
from app.core import clock
from app.settings import Settings

DEFAULT_BASE_URL = "https://api.x.com"
AUTHORIZE_URL = "https://x.com/i/oauth2/authorize"
LINK_SCOPES = "users.read tweet.read"
DM_LIMIT = 10000
PLATFORM = "x"
MAX_TEXT = 280

MENTION_PARAMS: Mapping[str, str] = {
    "max_results": "100",
    "tweet.fields": "id,text,author_id,created_at,conversation_id,in_reply_to_user_id,"
    "referenced_tweets,entities,attachments,geo,lang,note_tweet",
    "expansions": "author_id,attachments.media_keys,geo.place_id,referenced_tweets.id,"
    "in_reply_to_user_id",
    "user.fields": "id,name,username,location,created_at",
    "place.fields": "id,full_name,name,place_type,country,country_code,geo,contained_within",
    "media.fields": "media_key,type,url,preview_image_url,width,height,alt_text",
}


def base_url(settings: Settings, account_base_url: str | None = None) -> str:
    return (account_base_url or settings.x_api_base_url or DEFAULT_BASE_URL).rstrip("/")


# -- reading posts -----------------------------------------------------------------------------


def _time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            try:  # v1.1: "Mon Nov 03 08:14:22 +0000 2025"
                return datetime.strptime(value, "%a %b %d %H:%M:%S %z %Y").astimezone(UTC)
            except ValueError:
                pass
    return clock.now()


def _by_key(items: Any, key: str) -> dict[str, Mapping[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {str(i[key]): i for i in items if isinstance(i, Mapping) and key in i}


def _lonlat(value: Any) -> tuple[float, float] | None:
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        lon, lat = float(value[0]), float(value[1])
        if -180 <= lon <= 180 and -90 <= lat <= 90:
            return lon, lat
    return None


def _bbox(value: Any) -> tuple[float, float, float, float] | None:
    if (
        isinstance(value, Sequence)
        and len(value) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        west, south, east, north = (float(v) for v in value)
        return west, south, east, north
    return None


@dataclass(frozen=True)
class Includes:
    users: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    places: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    media: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, includes: Any) -> Includes:
        if not isinstance(includes, Mapping):
            return cls()
        return cls(
            users=_by_key(includes.get("users"), "id"),
            places=_by_key(includes.get("places"), "id"),
            media=_by_key(includes.get("media"), "media_key"),
        )


def post_from_v2(tweet: Mapping[str, Any], includes: Includes, account: str) -> InboundPost | None:
    """One v2 post as an ``InboundPost``; None when it lacks what every post has."""
    post_id, author_id = tweet.get("id"), tweet.get("author_id")
    note = tweet.get("note_tweet")
    text = note.get("text") if isinstance(note, Mapping) else None
    text = text if isinstance(text, str) else tweet.get("text")
    if not isinstance(post_id, str) or not isinstance(author_id, str) or not isinstance(text, str):
        return None
    referenced = tweet.get("referenced_tweets") or tweet.get("referenced_posts") or []
    kinds = {
        r.get("type"): str(r.get("id"))
        for r in (referenced if isinstance(referenced, list) else [])
        if isinstance(r, Mapping)
    }
    geo = tweet.get("geo") if isinstance(tweet.get("geo"), Mapping) else {}
    assert isinstance(geo, Mapping)
    point = geo.get("coordinates")
    coordinates = _lonlat(point.get("coordinates")) if isinstance(point, Mapping) else None
    place = None
    found = includes.places.get(str(geo.get("place_id")))
    if found is not None:
        shape = found.get("geo")
        place = PlaceHint(
            name=str(found.get("full_name") or found.get("name") or ""),
            bbox=_bbox(shape.get("bbox")) if isinstance(shape, Mapping) else None,
        )
    attachments = tweet.get("attachments")
    keys = attachments.get("media_keys", []) if isinstance(attachments, Mapping) else []
    # Photos only: a video's or GIF's ``preview_image_url`` is a still of something else.
    media = tuple(
        str(m["url"])
        for k in (keys if isinstance(keys, list) else [])
        if (m := includes.media.get(str(k))) is not None
        and m.get("type", "photo") == "photo"
        and isinstance(m.get("url"), str)
    )
    author = includes.users.get(author_id, {})
    raw: dict[str, Any] = {"data": dict(tweet)}
    related = {
        "users": [author] if author else [],
        "places": [found] if found is not None else [],
        "media": [includes.media[str(k)] for k in keys if str(k) in includes.media]
        if isinstance(keys, list)
        else [],
    }
    raw["includes"] = {k: v for k, v in related.items() if v}
    return InboundPost(
        platform=PLATFORM,
        account=account,
        post_id=post_id,
        author_id=author_id,
        text=text,
        created_at=_time(tweet.get("created_at")),
        raw=raw,
        author_handle=str(author["username"]) if author.get("username") else None,
        conversation_id=str(tweet["conversation_id"]) if tweet.get("conversation_id") else None,
        in_reply_to_id=kinds.get("replied_to"),
        is_repost="retweeted" in kinds,
        lang=tweet.get("lang") if isinstance(tweet.get("lang"), str) else None,
        coordinates=coordinates,
        place=place,
        media_urls=media,
    )


def post_from_v1(tweet: Mapping[str, Any], account: str) -> InboundPost | None:
    """A legacy v1.1 post (Account Activity API); its ``coordinates`` are lon, lat (its
    ``geo`` is lat, lon and is not read)."""
    post_id = tweet.get("id_str") or (str(tweet["id"]) if "id" in tweet else None)
    user = tweet.get("user") if isinstance(tweet.get("user"), Mapping) else {}
    assert isinstance(user, Mapping)
    author_id = user.get("id_str") or (str(user["id"]) if "id" in user else None)
    extended = tweet.get("extended_tweet")
    text = extended.get("full_text") if isinstance(extended, Mapping) else None
    text = text if isinstance(text, str) else tweet.get("text")
    if not isinstance(post_id, str) or not isinstance(author_id, str) or not isinstance(text, str):
        return None
    point = tweet.get("coordinates")
    coordinates = _lonlat(point.get("coordinates")) if isinstance(point, Mapping) else None
    place = None
    found = tweet.get("place")
    if isinstance(found, Mapping):
        box = found.get("bounding_box")
        ring = box.get("coordinates", [[]])[0] if isinstance(box, Mapping) else []
        points = [p for p in (_lonlat(c) for c in ring) if p is not None]
        bbox = (
            (
                min(p[0] for p in points),
                min(p[1] for p in points),
                max(p[0] for p in points),
                max(p[1] for p in points),
            )
            if points
            else None
        )
        place = PlaceHint(name=str(found.get("full_name") or found.get("name") or ""), bbox=bbox)
    entities = tweet.get("entities") if isinstance(tweet.get("entities"), Mapping) else {}
    assert isinstance(entities, Mapping)
    media = tuple(
        str(m["media_url_https"])
        for m in entities.get("media", [])
        if isinstance(m, Mapping) and m.get("media_url_https") and m.get("type", "photo") == "photo"
    )
    return InboundPost(
        platform=PLATFORM,
        account=account,
        post_id=post_id,
        author_id=author_id,
        text=text,
        created_at=_time(tweet.get("created_at")),
        raw={"data": dict(tweet)},
        author_handle=str(user["screen_name"]) if user.get("screen_name") else None,
        conversation_id=None,
        in_reply_to_id=tweet.get("in_reply_to_status_id_str") or None,
        is_repost="retweeted_status" in tweet,
        lang=tweet.get("lang") if isinstance(tweet.get("lang"), str) else None,
        coordinates=coordinates,
        place=place,
        media_urls=media,
    )


@dataclass(frozen=True)
class Page:
    posts: list[InboundPost]
    newest_id: str | None
    next_token: str | None
    skipped: int  # posts without an id, author or text
    errors: int  # X's partial errors: deleted or protected posts it could not include


def posts_from_page(body: Any, account: str) -> Page:
    """A page of the mentions timeline (or a filtered-stream line, or a search page)."""
    if not isinstance(body, Mapping):
        raise ValueError("not a JSON object")
    data = body.get("data", [])
    if isinstance(data, Mapping):  # a stream line or a single post
        data = [data]
    if not isinstance(data, list):
        raise ValueError("data is not a list")
    includes = Includes.of(body.get("includes"))
    posts: list[InboundPost] = []
    skipped = 0
    for tweet in data:
        post = post_from_v2(tweet, includes, account) if isinstance(tweet, Mapping) else None
        if post is None:
            skipped += 1
        else:
            posts.append(post)
    meta = body.get("meta") if isinstance(body.get("meta"), Mapping) else {}
    assert isinstance(meta, Mapping)
    errors = body.get("errors")
    return Page(
        posts=posts,
        newest_id=str(meta["newest_id"]) if meta.get("newest_id") else None,
        next_token=str(meta["next_token"]) if meta.get("next_token") else None,
        skipped=skipped,
        errors=len(errors) if isinstance(errors, list) else 0,
    )


def posts_from_webhook(body: Any) -> tuple[str | None, list[InboundPost]]:
    """The account (X user id) a webhook delivery is for, and its posts: an X Activity API
    event (``{"data": {"event_type", "filter", "payload", "includes"}}``) or a legacy
    Account Activity body (``{"for_user_id", "tweet_create_events": [...]}``)."""
    if not isinstance(body, Mapping):
        raise ValueError("not a JSON object")
    event = body.get("data")
    if isinstance(event, Mapping) and "payload" in event:
        filter_ = event.get("filter") if isinstance(event.get("filter"), Mapping) else {}
        assert isinstance(filter_, Mapping)
        account = str(filter_["user_id"]) if filter_.get("user_id") else None
        payload = event.get("payload")
        if not isinstance(payload, Mapping) or account is None:
            raise ValueError("an event without a payload or a filter.user_id")
        post = post_from_v2(payload, Includes.of(event.get("includes")), account)
        return account, [post] if post is not None else []
    if "tweet_create_events" in body:
        account = str(body.get("for_user_id") or "") or None
        events = body.get("tweet_create_events")
        if account is None or not isinstance(events, list):
            raise ValueError("tweet_create_events without for_user_id")
        posts = [post_from_v1(e, account) for e in events if isinstance(e, Mapping)]
        return account, [p for p in posts if p is not None]
    return None, []  # another kind of event (favourites, follows): nothing for us


# -- webhook security --------------------------------------------------------------------------


def _hmac(secret: str, message: bytes) -> str:
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def crc_response(secret: str, crc_token: str) -> dict[str, str]:
    """The answer to X's CRC challenge: ``sha256=`` base64 HMAC of the token."""
    return {"response_token": _hmac(secret, crc_token.encode())}


def signature_valid(secret: str, raw_body: bytes, header: str | None) -> bool:
    """``x-twitter-webhooks-signature`` over the raw bytes, compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(_hmac(secret, raw_body).encode(), header.strip().encode())


# -- polling -----------------------------------------------------------------------------------


def _reset(response: httpx.Response) -> datetime | None:
    value = response.headers.get("x-rate-limit-reset")
    if value and value.strip().isdigit():
        return datetime.fromtimestamp(int(value.strip()), UTC)
    after = transport.retry_after(response)
    return clock.now() + timedelta(seconds=after) if after is not None else None


class XClient:
    """A small async client of the X API at a configurable base URL."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.client = client or transport.client(settings)

    async def close(self) -> None:
        await self.client.aclose()

    async def mentions(
        self,
        *,
        base: str,
        user_id: str,
        token: str,
        account: str,
        since_id: str | None,
        max_pages: int,
    ) -> Fetched:
        """The mentions since ``since_id``, newest first, every page."""
        poll = Fetched()
        next_token: str | None = None
        url = f"{base}/2/users/{user_id}/mentions"
        headers = {"Authorization": f"Bearer {token}"}
        while poll.pages < max_pages:
            params = dict(MENTION_PARAMS)
            if since_id:
                params["since_id"] = since_id
            if next_token:
                params["pagination_token"] = next_token
            try:
                response = await self.client.get(url, params=params, headers=headers)
            except httpx.HTTPError as error:
                poll.error = transport.describe(error)
                return poll
            if response.status_code == 429:
                poll.retry_at = _reset(response) or clock.now()
                poll.error = "rate limited (429)"
                return poll
            if response.status_code != 200:
                poll.error = f"HTTP {response.status_code}"
                return poll
            try:
                page = posts_from_page(response.json(), account)
            except ValueError as error:
                poll.error = f"malformed page: {error}"
                return poll
            poll.pages += 1
            poll.posts.extend(page.posts)
            poll.skipped += page.skipped
            poll.errors += page.errors
            if poll.pages == 1:
                poll.cursor = page.newest_id
            next_token = page.next_token
            if next_token is None:
                poll.complete = True
                return poll
            if response.headers.get("x-rate-limit-remaining", "").strip() == "0":
                poll.retry_at = _reset(response)
                poll.error = "the rate limit leaves no request for the next page"
                return poll
        poll.error = f"stopped after {max_pages} pages"
        return poll


class XSource:
    """The mentions timeline of X accounts (``MentionSource``)."""

    platform = PLATFORM

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.client = XClient(settings, client)

    async def close(self) -> None:
        await self.client.close()

    async def fetch(self, account: AccountRef, since: str | None) -> Fetched:
        token = account.secrets.get("bearer_token")
        if not account.id:
            return Fetched(error="the account has no id (X's user id) to read mentions of")
        if not token:
            return Fetched(error="the account's bearer_token is not set in the environment")
        return await self.client.mentions(
            base=base_url(self.settings, account.base_url),
            user_id=account.id,
            token=token,
            account=account.id,
            since_id=since,
            max_pages=self.settings.x_poll_max_pages,
        )


# -- replying ---------------------------------------------------------------------------------

DUPLICATE = "duplicate content"
# X's 403 when it will not take a reply: the 2026 rule (an app may answer only a post whose
# author mentioned or quoted the city), or the author limited who may reply. The detail, as
# X sends it: "Reply to this conversation is not allowed because you have not been mentioned
# or otherwise engaged by the author of the post you are replying to."
REPLY_REFUSED = (
    "reply to this conversation is not allowed",
    "not been mentioned or otherwise engaged",
    "restricted who can reply",
    "not permitted to reply",
)


def reply_text(message: Message, handle: str | None) -> str:
    """The reply: the message's short form, after the author's @handle, within 280."""
    text = message.subject.strip()
    if handle and not text.startswith("@"):
        text = f"@{handle} {text}"
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _dm_text(message: Message) -> str:
    text = message.subject.strip()
    return text if len(text) <= DM_LIMIT else text[: DM_LIMIT - 1] + "…"


def _detail(answer: Mapping[str, Any]) -> str:
    return str(answer.get("detail") or answer.get("title") or "")


class XChannel:
    """Replies in the thread of the post that brought the person to us.

    When X refuses the reply (its 2026 rule, or the author limited replies), the answer goes
    to the person's original mention (``reply_to.mention``), then, when the account sends
    them (``reply_to.dm``), as a direct message; when all are refused, ``Failed(refused=True)``
    says why, and the post goes back to the webcare inbox.
    """

    kind = "x"

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.client = client or transport.client(settings)

    async def close(self) -> None:
        await self.client.aclose()

    async def deliver(self, message: Message) -> Outcome:
        target = message.data.get("reply_to")
        if isinstance(target, Mapping) and target.get("notice"):
            return await self._direct_message(message, target)
        if not isinstance(target, Mapping) or not target.get("post"):
            # Since 2026 an app may only answer a post that mentioned the city.
            return Failed("no post to reply to (X allows answers to mentions only)")
        variable = str(target.get("credentials") or "")
        token = os.environ.get(variable) if variable else None
        if not token:
            return RetryLater(f"the account's user token ({variable or 'unnamed'}) is not set")
        base = base_url(self.settings, target.get("base_url"))
        headers = {"Authorization": f"Bearer {token}"}
        refusals: list[str] = []
        posts = [str(target["post"])]
        if target.get("mention") and str(target["mention"]) != posts[0]:
            posts.append(str(target["mention"]))
        for post in posts:
            body = {
                "text": reply_text(message, target.get("handle")),
                "reply": {"in_reply_to_tweet_id": post},
            }
            outcome = await self._send(f"{base}/2/tweets", body, headers)
            if not isinstance(outcome, str):
                return outcome
            refusals.append(f"the reply to {post}: {outcome}")
        author = str(target.get("author") or "")
        if target.get("dm") and author:
            url = f"{base}/2/dm_conversations/with/{author}/messages"
            outcome = await self._send(url, {"text": _dm_text(message)}, headers, dm=True)
            if not isinstance(outcome, str):
                return outcome
            refusals.append(f"the direct message: {outcome}")
        else:
            refusals.append("no direct message (the account sends none)")
        return Failed("could not answer: X refused " + "; ".join(refusals)[:400], refused=True)

    async def _send(
        self, url: str, body: Mapping[str, Any], headers: Mapping[str, str], *, dm: bool = False
    ) -> Outcome | str:
        """One request; an ``Outcome``, or X's words when it refused this way of answering
        (the caller tries the next)."""
        try:
            response = await self.client.post(url, json=dict(body), headers=dict(headers))
        except httpx.HTTPError as error:
            return RetryLater(transport.describe(error))
        answer = transport.json_object(response)
        if response.status_code in (200, 201):
            data = answer.get("data")
            found = data.get("dm_event_id" if dm else "id") if isinstance(data, Mapping) else None
            return Delivered(str(found) if found else None)
        detail = _detail(answer)
        if response.status_code == 403:
            lowered = detail.lower()
            if not dm and DUPLICATE in lowered:
                return Delivered(None)  # the same words are in the thread already
            if dm or any(words in lowered for words in REPLY_REFUSED):
                return f"403 {detail[:160]}"
        if response.status_code == 429:
            reset = _reset(response)
            after = (reset - clock.now()).total_seconds() if reset else None
            return RetryLater("rate limited (429)", max(after, 0.0) if after else None)
        if response.status_code == 401 or response.status_code >= 500:
            return RetryLater(f"HTTP {response.status_code}", transport.retry_after(response))
        return Failed(f"HTTP {response.status_code}: {detail[:200]}")

    async def _direct_message(self, message: Message, target: Mapping[str, Any]) -> Outcome:
        """A notice to a linked account: a direct message from the city account."""
        variable = str(target.get("credentials") or "")
        token = os.environ.get(variable) if variable else None
        if not token:
            return RetryLater(f"the account's user token ({variable or 'unnamed'}) is not set")
        base = base_url(self.settings, target.get("base_url"))
        outcome = await self._send(
            f"{base}/2/dm_conversations/with/{message.address}/messages",
            {"text": message.body.strip()[:DM_LIMIT]},
            {"Authorization": f"Bearer {token}"},
            dm=True,
        )
        if isinstance(outcome, str):  # a 403: the person takes no messages from the city
            return Failed("X refused the message: the person does not accept messages from us")
        return outcome


# -- linking a citizen's account (app.linking) ---------------------------------------------------


@dataclass(frozen=True)
class OAuthClient:
    """The city's X app. ``authorize_base`` is x.com's page (the API's base when a fake
    serves both); ``client_secret`` None: a public client."""

    api_base: str
    authorize_base: str
    client_id: str
    redirect_uri: str
    client_secret: str | None = field(default=None, repr=False)

    def auth(self) -> tuple[httpx.BasicAuth | None, dict[str, str]]:
        if self.client_secret:
            return httpx.BasicAuth(self.client_id, self.client_secret), {}
        return None, {"client_id": self.client_id}


def authorize_url(client: OAuthClient, state: str, challenge: str) -> str:
    query = authorize_query(
        client_id=client.client_id,
        redirect_uri=client.redirect_uri,
        scope=LINK_SCOPES,
        state=state,
        challenge=challenge,
    )
    return f"{client.authorize_base}?{query}"


async def link_identity(
    http: httpx.AsyncClient, client: OAuthClient, code: str, verifier: str
) -> Identity:
    """Exchange ``code`` for a token, read ``/2/users/me``, revoke the token."""
    auth, form = client.auth()
    try:
        token = await http.post(
            f"{client.api_base}/2/oauth2/token",
            data={
                **form,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": client.redirect_uri,
                "code_verifier": verifier,
            },
            auth=auth or httpx.USE_CLIENT_DEFAULT,
        )
    except httpx.HTTPError as error:
        raise LinkRefused(f"x {transport.describe(error)}") from None
    access = transport.json_object(token).get("access_token")
    if token.status_code != 200 or not isinstance(access, str) or not access:
        raise LinkRefused(f"x refused the code ({token.status_code})")
    try:
        try:
            found = await http.get(
                f"{client.api_base}/2/users/me", headers={"Authorization": f"Bearer {access}"}
            )
        except httpx.HTTPError as error:
            raise LinkRefused(f"x {transport.describe(error)}") from None
        data = transport.json_object(found).get("data")
        if found.status_code != 200 or not isinstance(data, Mapping) or not data.get("id"):
            raise LinkRefused(f"x did not say who signed in ({found.status_code})")
        return Identity(address=str(data["id"]), handle=str(data.get("username") or ""))
    finally:
        # Best effort: the token reads the profile only, and expires in two hours.
        with contextlib.suppress(httpx.HTTPError):
            await http.post(
                f"{client.api_base}/2/oauth2/revoke",
                data={**form, "token": access, "token_type_hint": "access_token"},
                auth=auth or httpx.USE_CLIENT_DEFAULT,
            )
