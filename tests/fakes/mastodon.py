"""A fake Mastodon server for one city account: mention notifications paged as Mastodon pages
them (``max_id``/``since_id``/``min_id``, ``Link`` header, newest first), a per-account
request budget with the ``X-RateLimit-*`` headers (the reset as an ISO time) and 429 past it,
and ``POST /api/v1/statuses`` that checks the token, the status replied to, the visibility,
and keeps each ``Idempotency-Key``: the same key gives back the first status, not a new one.

OAuth 2 for linking a resident's account, as Mastodon 4.3 does it: ``POST /api/v1/apps``
(a client registers itself: ``client_name``, ``redirect_uris``, ``scopes``, ``website``; the
answer is Mastodon's Application with its ``client_id`` and ``client_secret``; the city's app
is registered from the start as ``CLIENT_ID``), ``GET /oauth/authorize`` (for a registered
client and one of its redirect URIs; the resident signed in at the fake, ``signed_in``,
approves at once and is redirected there with ``code`` and ``state``), ``POST /oauth/token``
(the authorization code grant: the credentials the fake issued, the client the code was
issued to, the redirect URI, the code once, and PKCE S256 checked against the challenge),
``GET /api/v1/accounts/verify_credentials`` with the resident's token, and
``POST /oauth/revoke`` (client credentials checked as well). The client credentials grant
gives an app token (how a client learns whether the server still knows its app: deleting
one from ``apps`` is Mastodon's vacuum of unused apps).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes.http import Received, Reply, served_file

TOKEN = "fake-mastodon-token-0123456789"
CLIENT_ID = "fake-client-id-kerbside"
CLIENT_SECRET = "fake-client-secret-kerbside-0123"
REDIRECT_URI = "https://city.example/linked/mastodon"
VISIBILITIES = {"public", "unlisted", "private", "direct"}
# The server's Web Push public key, as every registered app is given it.
VAPID_KEY = (
    "BCk-QqERU0q-CfYZjcuB6lnyyOYfJ2AifKqfeGIm7Z-HiTU5T9eTG5GxVA0_OH5mMlI4UkkDTpaZwozy0TzdZ2M="
)
SCOPES = {"read", "write", "follow", "push", "profile", "read:accounts", "read:notifications"}


def error(status: int, message: str, **headers: str) -> Reply:
    return Reply.json(status, json.dumps({"error": message}), **headers)


@dataclass
class FakeMastodon:
    now: datetime
    url: str = ""
    budget: int = 300
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)  # ascending ids
    posted: list[dict[str, Any]] = field(default_factory=list)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 110000000000000000
    # Media on the platform's CDN, by path (public, as the CDN serves it).
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    # OAuth: the resident signed in at the server, codes handed out, tokens issued/revoked.
    signed_in: dict[str, Any] | None = None
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)
    app_tokens: dict[str, str] = field(default_factory=dict)  # client credentials grants
    # The scopes the server knows (Mastodon before 4.3 knows no ``profile``).
    known_scopes: set[str] = field(default_factory=lambda: set(SCOPES))
    # Registered applications by client_id: the city's own, and those POST /api/v1/apps made.
    apps: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            CLIENT_ID: {
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [REDIRECT_URI],
                "scopes": ["read", "write", "profile"],
            }
        }
    )

    def _id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def mention(
        self,
        acct: str,
        content: str,
        *,
        visibility: str = "public",
        media: tuple[tuple[str, str | None], ...] = (),
        language: str | None = "nl",
        in_reply_to_id: str | None = None,
    ) -> dict[str, Any]:
        """A status by ``acct`` mentioning the city, and its notification."""
        status_id = self._id()
        status = {
            "id": status_id,
            "created_at": self.now.isoformat().replace("+00:00", "Z"),
            "in_reply_to_id": in_reply_to_id,
            "in_reply_to_account_id": None,
            "sensitive": False,
            "spoiler_text": "",
            "visibility": visibility,
            "language": language,
            "uri": f"https://remote.example/users/{acct.split('@')[0]}/statuses/{status_id}",
            "url": f"https://remote.example/@{acct.split('@')[0]}/{status_id}",
            "content": content,
            "reblog": None,
            "account": {
                "id": str(abs(hash(acct)) % 10**9),
                "username": acct.split("@")[0],
                "acct": acct,
                "display_name": "A Resident",
                "url": f"https://remote.example/@{acct.split('@')[0]}",
            },
            "media_attachments": [
                {
                    "id": self._id(),
                    "type": "image",
                    "url": url,
                    "preview_url": url + "?small",
                    "description": alt,
                }
                for url, alt in media
            ],
            "mentions": [{"id": "1", "username": "gemeente", "acct": "gemeente", "url": "x"}],
            "tags": [],
        }
        self.statuses[status_id] = status
        note = {
            "id": self._id(),
            "type": "mention",
            "created_at": status["created_at"],
            "account": status["account"],
            "status": status,
        }
        self.notifications.append(note)
        return status

    def _rate_headers(self) -> dict[str, str]:
        reset = (self.now + timedelta(minutes=5)).isoformat().replace("+00:00", ".000Z")
        return {
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": str(max(0, self.budget)),
            "X-RateLimit-Reset": reset,
        }

    def resident(self, username: str, account_id: str = "109876543210") -> dict[str, Any]:
        """A local account signed in at the server's web page (the one that will approve)."""
        self.signed_in = {
            "id": account_id,
            "username": username,
            "acct": username,
            "display_name": "A Resident",
            "url": f"{self.url}/@{username}",
        }
        return self.signed_in

    def __call__(self, request: Received) -> Reply:
        if (media := served_file(self.files, request)) is not None:
            return media
        parts = urlsplit(request.path)
        if request.method == "POST" and parts.path == "/api/v1/apps":
            return self.register(request)
        if parts.path.startswith("/oauth/") or parts.path.endswith("/verify_credentials"):
            return self.oauth(request, parts.path, parse_qs(parts.query))
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return error(401, "The access token is invalid")
        if self.budget <= 0:
            return error(429, "Too many requests", **self._rate_headers())
        self.budget -= 1
        parts = urlsplit(request.path)
        if request.method == "GET" and parts.path == "/api/v1/notifications":
            return self.list_notifications(parse_qs(parts.query))
        if request.method == "POST" and parts.path == "/api/v1/statuses":
            return self.post_status(request)
        return error(404, "Record not found")

    def register(self, request: Received) -> Reply:
        """``POST /api/v1/apps`` (a form or JSON), answered as Mastodon 4.3 answers it."""
        if request.headers.get("content-type", "").startswith("application/json"):
            form = {k: v for k, v in json.loads(request.body).items() if isinstance(v, str)}
        else:
            form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        name, uris = form.get("client_name", ""), form.get("redirect_uris", "").split()
        scopes = form.get("scopes", "read").split()
        if not name or not uris:
            return error(422, "Validation failed: Name can't be blank, Redirect URI can't be blank")
        if not set(scopes) <= self.known_scopes:
            return error(422, "Validation failed: Scopes must be valid")
        client_id, client_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.apps[client_id] = {
            "client_secret": client_secret,
            "redirect_uris": uris,
            "scopes": scopes,
            "name": name,
            "website": form.get("website"),
        }
        app = {
            "id": self._id(),
            "name": name,
            "website": form.get("website") or None,
            "scopes": scopes,
            "redirect_uri": "\n".join(uris),
            "redirect_uris": uris,
            "vapid_key": VAPID_KEY,
            "client_id": client_id,
            "client_secret": client_secret,
            "client_secret_expires_at": 0,
        }
        return Reply.json(200, json.dumps(app))

    def _client(self, form: dict[str, str]) -> dict[str, Any] | None:
        """The registered app the form's client credentials name, if they are right."""
        app = self.apps.get(form.get("client_id", ""))
        if app is None or app["client_secret"] != form.get("client_secret"):
            return None
        return app

    def oauth(self, request: Received, path: str, query: dict[str, list[str]]) -> Reply:
        if request.method == "GET" and path == "/oauth/authorize":
            given = {k: v[0] for k, v in query.items()}
            app = self.apps.get(given.get("client_id", ""))
            if app is None or given.get("redirect_uri") not in app["redirect_uris"]:
                return error(400, "invalid_client or redirect_uri")
            if given.get("response_type") != "code" or given.get("scope") != "profile":
                return error(400, "unsupported response_type or scope")
            if given.get("code_challenge_method") != "S256" or not given.get("code_challenge"):
                return error(400, "PKCE required")
            if self.signed_in is None:
                return error(401, "sign in first")
            code = secrets.token_urlsafe(24)
            self.codes[code] = {**given, "account": self.signed_in, "used": False}
            query_back = urlencode({"code": code, "state": given["state"]})
            location = f"{given['redirect_uri']}?{query_back}"
            return Reply(302, b"", {"Location": location})
        if request.method == "POST" and path == "/oauth/token":
            form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
            if self._client(form) is None:
                return Reply.json(401, json.dumps({"error": "invalid_client"}))
            if form.get("grant_type") == "client_credentials":
                token = secrets.token_urlsafe(24)
                self.app_tokens[token] = form["client_id"]
                answer = {"access_token": token, "token_type": "Bearer", "scope": "profile"}
                return Reply.json(200, json.dumps({**answer, "created_at": 1764870000}))
            grant = self.codes.get(form.get("code", ""))
            if form.get("grant_type") != "authorization_code" or grant is None or grant["used"]:
                return Reply.json(400, json.dumps({"error": "invalid_grant"}))
            grant["used"] = True
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            if (
                challenge != grant["code_challenge"]
                or form.get("redirect_uri") != grant["redirect_uri"]
                or form.get("client_id") != grant["client_id"]
            ):
                return Reply.json(400, json.dumps({"error": "invalid_grant"}))
            token = secrets.token_urlsafe(24)
            self.tokens[token] = grant["account"]
            answer = {"access_token": token, "token_type": "Bearer", "scope": "profile"}
            return Reply.json(200, json.dumps({**answer, "created_at": 1764870000}))
        if request.method == "POST" and path == "/oauth/revoke":
            form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
            if self._client(form) is None:
                return Reply.json(403, json.dumps({"error": "unauthorized_client"}))
            self.revoked.append(form.get("token", ""))
            self.tokens.pop(form.get("token", ""), None)
            self.app_tokens.pop(form.get("token", ""), None)
            return Reply.json(200, "{}")
        if request.method == "GET" and path == "/api/v1/accounts/verify_credentials":
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            account = self.tokens.get(token)
            if account is None:
                return error(401, "The access token is invalid")
            return Reply.json(200, json.dumps(account))
        return error(404, "Record not found")

    def list_notifications(self, query: dict[str, list[str]]) -> Reply:
        types = query.get("types[]")
        notes = [n for n in self.notifications if not types or n["type"] in types]
        limit = min(int(query.get("limit", ["40"])[0]), 80)
        ids = {k: int(v[0]) for k, v in query.items() if k in {"max_id", "since_id", "min_id"}}
        if "max_id" in ids:
            notes = [n for n in notes if int(n["id"]) < ids["max_id"]]
        if "since_id" in ids:
            notes = [n for n in notes if int(n["id"]) > ids["since_id"]]
        if "min_id" in ids:
            # min_id: the page just after it (oldest of the newer ones), still newest first
            page = [n for n in notes if int(n["id"]) > ids["min_id"]][:limit]
        else:
            page = notes[-limit:]
        page = list(reversed(page))
        headers = self._rate_headers()
        if page:
            base = f"{self.url}/api/v1/notifications"
            extra = [("types[]", t) for t in types or []] + [("limit", str(limit))]
            older = urlencode([*extra, ("max_id", page[-1]["id"])])
            newer = urlencode([*extra, ("min_id", page[0]["id"])])
            headers["Link"] = f'<{base}?{older}>; rel="next", <{base}?{newer}>; rel="prev"'
        return Reply.json(200, json.dumps(page), **headers)

    def post_status(self, request: Received) -> Reply:
        key = request.headers.get("idempotency-key")
        if key and key in self.keys:
            return Reply.json(200, json.dumps(self.keys[key]), **self._rate_headers())
        if request.headers.get("content-type", "").startswith("application/json"):
            form = json.loads(request.body)
        else:
            form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        text = form.get("status")
        if not text or len(text) > 500:
            return error(422, "Validation failed: Text can't be blank or too long")
        visibility = form.get("visibility", "public")
        if visibility not in VISIBILITIES:
            return error(422, "Validation failed: Visibility is not included in the list")
        reply_to = form.get("in_reply_to_id")
        if reply_to is not None and str(reply_to) not in self.statuses:
            return error(404, "Record not found")
        status = {
            "id": self._id(),
            "content": f"<p>{text}</p>",
            "visibility": visibility,
            "in_reply_to_id": reply_to,
            "language": form.get("language"),
        }
        self.statuses[status["id"]] = status
        self.posted.append({**form, "idempotency_key": key})
        if key:
            self.keys[key] = status
        return Reply.json(200, json.dumps(status), **self._rate_headers())
