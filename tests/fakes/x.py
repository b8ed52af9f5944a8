"""A fake X API v2 speaking the real payloads (refs/channels.md §1; the sample shapes of
``x_mentions_timeline.json``, ``x_create_reply_*.json``, ``x_error_*.json``, the webhook
bodies): the mentions timeline with ``since_id``, opaque ``pagination_token``s, expansions
(users, places, media, referenced posts) and rate-limit headers; replies with X's 403 for a
duplicate text and X's 403 for a reply it refuses (the 2026 rule: only to a post whose author
mentioned the city; or the author limited replies); direct messages
(``POST /2/dm_conversations/with/:id/messages``, 201 ``dm_conversation_id``/``dm_event_id``,
403 "You cannot send messages to this user." for people who accept none); bearer tokens
checked. ``FakeServer.fail_next`` injects a 429 or a broken
page before the fake's own answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http import Received, Reply, served_file

CITY_ID = "1458203741520000001"
CITY_HANDLE = "CityOfExample"
BEARER = "test-bearer-token-not-real"
USER_TOKEN = "test-user-token-not-real"
CONSUMER_SECRET = "test-consumer-secret-not-real"
# The city's OAuth 2 app, for residents linking their account (confidential client).
CLIENT_ID = "test-oauth2-client-id"
CLIENT_SECRET = "test-oauth2-client-secret-not-real"
REDIRECT_URI = "https://city.example/linked/x"
RESET = 1763451900  # x-rate-limit-reset of the 429 sample

_ids = itertools.count(1986420000000000100)


def next_id() -> str:
    return str(next(_ids))


def problem(status: int, title: str, detail: str) -> Reply:
    body = {"title": title, "detail": detail, "type": "about:blank", "status": status}
    return Reply.json(status, json.dumps(body))


def too_many_requests(reset: int = RESET) -> Reply:
    return Reply.json(
        429,
        json.dumps(
            {
                "title": "Too Many Requests",
                "detail": "Too Many Requests",
                "type": "about:blank",
                "status": 429,
            }
        ),
        **{
            "x-rate-limit-limit": "450",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(reset),
        },
    )


def tweet(
    text: str,
    *,
    author_id: str = "1299000000000000011",
    post_id: str | None = None,
    created_at: str = "2026-12-04T08:14:22.000Z",
    conversation_id: str | None = None,
    replied_to: str | None = None,
    retweeted: str | None = None,
    coordinates: tuple[float, float] | None = None,
    place_id: str | None = None,
    media_keys: tuple[str, ...] = (),
    lang: str = "en",
    hashtags: tuple[str, ...] = (),
    mentions_city: bool = True,
    reply_settings: str = "everyone",
) -> dict[str, Any]:
    """A v2 post as the mentions timeline sends it (``referenced_tweets``, GeoJSON order).
    ``mentions_city=False``: a reply in a thread of ours that does not @mention the city (X's
    2026 rule lets the city answer it only through the author's original mention);
    ``reply_settings``: who may reply (``mentionedUsers``, ``following``, ``verified``)."""
    post_id = post_id or next_id()
    entities: dict[str, Any] = {}
    if mentions_city:
        entities["mentions"] = [{"start": 0, "end": 14, "username": CITY_HANDLE, "id": CITY_ID}]
    if hashtags:
        entities["hashtags"] = [{"start": 0, "end": len(t) + 1, "tag": t} for t in hashtags]
    found: dict[str, Any] = {
        "id": post_id,
        "edit_history_tweet_ids": [post_id],
        "conversation_id": conversation_id or post_id,
        "author_id": author_id,
        "created_at": created_at,
        "lang": lang,
        "text": text,
        "entities": entities,
        "reply_settings": reply_settings,
        "possibly_sensitive": False,
    }
    referenced = []
    if replied_to:
        referenced.append({"type": "replied_to", "id": replied_to})
        found["in_reply_to_user_id"] = CITY_ID
    if retweeted:
        referenced.append({"type": "retweeted", "id": retweeted})
    if referenced:
        found["referenced_tweets"] = referenced
    geo: dict[str, Any] = {}
    if place_id:
        geo["place_id"] = place_id
    if coordinates:
        geo["coordinates"] = {"type": "Point", "coordinates": list(coordinates)}
    if geo:
        found["geo"] = geo
    if media_keys:
        found["attachments"] = {"media_keys": list(media_keys)}
    return found


def user(user_id: str, username: str, name: str = "Someone") -> dict[str, Any]:
    return {
        "id": user_id,
        "name": name,
        "username": username,
        "created_at": "2016-08-30T12:01:02.000Z",
    }


def place(place_id: str, name: str, bbox: tuple[float, float, float, float], kind: str) -> dict:
    return {
        "id": place_id,
        "full_name": name,
        "name": name.split(",")[0],
        "place_type": kind,
        "country": "United Kingdom",
        "country_code": "GB",
        "geo": {"type": "Feature", "bbox": list(bbox), "properties": {}},
    }


@dataclass
class FakeX:
    """Mentions of the city account (newest first) and the replies the city posted."""

    mentions: list[dict[str, Any]] = field(default_factory=list)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    places: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Referenced posts X could not include (deleted, or their author is protected).
    unavailable: set[str] = field(default_factory=set)
    replies: list[dict[str, Any]] = field(default_factory=list)
    # Direct messages the city sent, and the people who accept none from it.
    dms: list[dict[str, Any]] = field(default_factory=list)
    dm_closed: set[str] = field(default_factory=set)
    remaining: int = 450
    page_size_cap: int = 100
    reachable: int = 800  # X serves only the newest 800 mentions
    # Media on the platform's CDN, by path (public, as the CDN serves it).
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    # OAuth 2 (a resident linking their account).
    signed_in: dict[str, Any] | None = None
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)

    def mention(self, post: dict[str, Any], author: str | None = None) -> dict[str, Any]:
        self.mentions.append(post)
        self.mentions.sort(key=lambda p: -int(p["id"]))
        if post["author_id"] not in self.users:
            self.users[post["author_id"]] = user(
                post["author_id"], author or f"user{post['author_id'][-4:]}"
            )
        return post

    def delete(self, post_id: str) -> None:
        self.mentions = [p for p in self.mentions if p["id"] != post_id]

    def __call__(self, request: Received) -> Reply:
        if (media := served_file(self.files, request)) is not None:
            return media
        parts = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if path.startswith(("/i/oauth2/", "/2/oauth2/")) or path == "/2/users/me":
            return self._oauth(request, path, query)
        if request.method == "GET" and path == f"/2/users/{CITY_ID}/mentions":
            if request.headers.get("authorization") != f"Bearer {BEARER}":
                return problem(401, "Unauthorized", "Unauthorized")
            return self._mentions(query)
        if request.method == "GET" and path.startswith("/2/users/") and path.endswith("/mentions"):
            return problem(404, "Not Found Error", "Could not find user")
        if request.method == "POST" and path == "/2/tweets":
            if request.headers.get("authorization") != f"Bearer {USER_TOKEN}":
                return problem(401, "Unauthorized", "Unauthorized")
            return self._reply(request)
        if (
            request.method == "POST"
            and path.startswith("/2/dm_conversations/with/")
            and path.endswith("/messages")
        ):
            if request.headers.get("authorization") != f"Bearer {USER_TOKEN}":
                return problem(401, "Unauthorized", "Unauthorized")
            return self._dm(request, path.split("/")[4])
        return problem(404, "Not Found", f"no route {request.method} {path}")

    def _oauth(self, request: Received, path: str, query: dict[str, str]) -> Reply:
        """OAuth 2.0 authorization code with PKCE, as X runs it for a confidential client."""
        if request.method == "GET" and path == "/i/oauth2/authorize":
            if query.get("client_id") != CLIENT_ID or query.get("redirect_uri") != REDIRECT_URI:
                return problem(400, "Invalid Request", "client_id or redirect_uri")
            scopes = set(query.get("scope", "").split())
            if not {"users.read", "tweet.read"} <= scopes or query.get("response_type") != "code":
                return problem(400, "Invalid Request", "scope or response_type")
            if query.get("code_challenge_method") != "S256" or self.signed_in is None:
                return problem(400, "Invalid Request", "PKCE S256, and a signed-in user")
            code = base64.urlsafe_b64encode(next_id().encode()).decode()
            self.codes[code] = {**query, "user": self.signed_in, "used": False}
            state = query.get("state", "")
            return Reply(302, b"", {"Location": f"{REDIRECT_URI}?state={state}&code={code}"})
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.method == "POST" and path == "/2/oauth2/token":
            if request.headers.get("authorization") != basic:
                return Reply.json(401, json.dumps({"error": "unauthorized_client"}))
            grant = self.codes.get(form.get("code", ""))
            if grant is None or grant["used"] or form.get("grant_type") != "authorization_code":
                return Reply.json(400, json.dumps({"error": "invalid_request"}))
            grant["used"] = True
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            if challenge != grant["code_challenge"] or form.get("redirect_uri") != REDIRECT_URI:
                return Reply.json(400, json.dumps({"error": "invalid_request"}))
            token = f"user-access-{next_id()}"
            self.tokens[token] = grant["user"]
            answer = {"token_type": "bearer", "expires_in": 7200, "access_token": token}
            return Reply.json(200, json.dumps({**answer, "scope": grant["scope"]}))
        if request.method == "POST" and path == "/2/oauth2/revoke":
            if request.headers.get("authorization") != basic:
                return Reply.json(401, json.dumps({"error": "unauthorized_client"}))
            self.revoked.append(form.get("token", ""))
            self.tokens.pop(form.get("token", ""), None)
            return Reply.json(200, json.dumps({"revoked": True}))
        if request.method == "GET" and path == "/2/users/me":
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            if token not in self.tokens:
                return problem(401, "Unauthorized", "Unauthorized")
            return Reply.json(200, json.dumps({"data": self.tokens[token]}))
        return problem(404, "Not Found", f"no route {request.method} {path}")

    def _headers(self) -> dict[str, str]:
        self.remaining = max(self.remaining - 1, 0)
        return {
            "x-rate-limit-limit": "450",
            "x-rate-limit-remaining": str(self.remaining),
            "x-rate-limit-reset": str(RESET),
        }

    def _mentions(self, query: dict[str, str]) -> Reply:
        size = min(int(query.get("max_results", "10")), self.page_size_cap)
        since = int(query["since_id"]) if query.get("since_id") else 0
        newer = [p for p in self.mentions if int(p["id"]) > since][: self.reachable]
        offset = 0
        token = query.get("pagination_token")
        if token:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode())
        page = newer[offset : offset + size]
        if not page:
            return Reply.json(200, json.dumps({"meta": {"result_count": 0}}), **self._headers())
        includes: dict[str, list[Any]] = {"users": [], "places": [], "media": [], "tweets": []}
        errors = []
        for post in page:
            if post["author_id"] in self.users:
                includes["users"].append(self.users[post["author_id"]])
            place_id = post.get("geo", {}).get("place_id")
            if place_id in self.places:
                includes["places"].append(self.places[place_id])
            for key in post.get("attachments", {}).get("media_keys", []):
                if key in self.media:
                    includes["media"].append(self.media[key])
            for ref in post.get("referenced_tweets", []):
                if ref["id"] in self.unavailable:
                    errors.append(
                        {
                            "value": ref["id"],
                            "detail": "Could not find tweet with referenced_tweets.id:"
                            f" [{ref['id']}].",
                            "title": "Not Found Error",
                            "resource_type": "tweet",
                            "parameter": "referenced_tweets.id",
                            "resource_id": ref["id"],
                            "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    )
        meta: dict[str, Any] = {
            "result_count": len(page),
            "newest_id": page[0]["id"],
            "oldest_id": page[-1]["id"],
        }
        if offset + size < len(newer):
            meta["next_token"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        body: dict[str, Any] = {
            "data": page,
            "includes": {k: v for k, v in includes.items() if v},
            "meta": meta,
        }
        if errors:
            body["errors"] = errors
        return Reply.json(200, json.dumps(body), **self._headers())

    def _reply(self, request: Received) -> Reply:
        try:
            body = json.loads(request.body)
            text = body["text"]
            parent = body["reply"]["in_reply_to_tweet_id"]
        except (ValueError, KeyError, TypeError):
            return problem(400, "Invalid Request", "One or more parameters is invalid.")
        if any(r["text"] == text for r in self.replies):
            return problem(
                403, "Forbidden", "You are not allowed to create a Tweet with duplicate content."
            )
        if not self._may_reply(parent):
            # X's 2026 rule, and a post whose author limited replies: the same 403.
            return problem(
                403,
                "Forbidden",
                "Reply to this conversation is not allowed because you have not been mentioned"
                " or otherwise engaged by the author of the post you are replying to.",
            )
        posted = next_id()
        self.replies.append({"id": posted, "text": text, "in_reply_to": parent})
        return Reply.json(
            201,
            json.dumps({"data": {"id": posted, "text": text, "edit_history_tweet_ids": [posted]}}),
        )

    def _may_reply(self, parent: str) -> bool:
        """X's 2026 rule: the city may answer a post whose author mentioned it (or one of the
        city's own posts); a post whose author limited replies to others refuses it too."""
        if any(r["id"] == parent for r in self.replies):
            return True
        post = next((p for p in self.mentions if p["id"] == parent), None)
        if post is None:
            return True  # a post this fake does not hold: nothing to check it against
        mentioned = any(m.get("id") == CITY_ID for m in post["entities"].get("mentions", []))
        if post.get("reply_settings", "everyone") != "everyone" and not mentioned:
            return False
        return mentioned

    def _dm(self, request: Received, participant: str) -> Reply:
        try:
            text = json.loads(request.body)["text"]
        except (ValueError, KeyError, TypeError):
            return problem(400, "Invalid Request", "One or more parameters is invalid.")
        if participant in self.dm_closed:
            # The person does not accept direct messages from the city.
            return problem(403, "Forbidden", "You cannot send messages to this user.")
        event = next_id()
        self.dms.append({"id": event, "to": participant, "text": text})
        return Reply.json(
            201,
            json.dumps(
                {"data": {"dm_conversation_id": f"{CITY_ID}-{participant}", "dm_event_id": event}}
            ),
        )


def sign(body: bytes, secret: str = CONSUMER_SECRET) -> str:
    """``x-twitter-webhooks-signature`` as X computes it."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def xaa_mention(post: dict[str, Any], author: dict[str, Any]) -> bytes:
    """An X Activity API ``post.mention.create`` delivery (compact JSON, as X sends it)."""
    event = {
        "data": {
            "event_uuid": next_id(),
            "filter": {"user_id": CITY_ID},
            "event_type": "post.mention.create",
            "tag": "mentions",
            "payload": post,
            "includes": {"users": [author]},
        }
    }
    return json.dumps(event, separators=(",", ":")).encode()
