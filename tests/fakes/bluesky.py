"""A fake Bluesky PDS for one city account: sessions with real, decodable JWTs (access tokens
expire; ``ExpiredToken`` as the PDS answers it), refresh tokens used once, notifications paged
newest first with an opaque cursor, and ``createRecord`` checking what a PDS and the AppView
check of a reply: the repo is the session's, the ``reply.root``/``reply.parent`` strong refs
name posts that exist with those cids (root being the parent's root), the text fits 300
graphemes, and every facet's UTF-8 byte range lies on the text (a mention's on ``@handle``).
A record key given with ``createRecord`` must be a TID (``app.bsky.feed.post``'s key type);
a key already taken is answered as the reference PDS does today (500 InternalServerError: its
repository tree refuses a second value at a key), and ``getRecord`` shows what a key holds.
``drop_after_create`` makes the next writes succeed and then close the connection unanswered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http import Received, Reply

HANDLE = "gemeente.example.nl"
DID = "did:plc:cityaccount00000000000"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
_SECRET = b"fake-pds-signing-key"
_TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def xrpc_error(status: int, name: str, message: str = "", **headers: str) -> Reply:
    return Reply.json(status, json.dumps({"error": name, "message": message or name}), **headers)


@dataclass
class FakePDS:
    now: datetime
    access_lifetime: timedelta = timedelta(hours=2)
    logins: int = 0
    refreshes: int = 0
    notifications: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)  # uri → {cid, record}
    created: list[dict[str, Any]] = field(default_factory=list)
    used_refresh: set[str] = field(default_factory=set)
    serial: int = 0
    drop_after_create: int = 0  # writes to accept and then leave unanswered
    calls: list[str] = field(default_factory=list)  # the methods asked for, in order
    blobs: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)  # (did, cid)

    def jwt(self, scope: str, lifetime: timedelta) -> str:
        self.serial += 1
        header = b64(json.dumps({"typ": "at+jwt", "alg": "HS256"}).encode())
        claims = {
            "scope": scope,
            "sub": DID,
            "iat": int(self.now.timestamp()),
            "exp": int((self.now + lifetime).timestamp()),
            "jti": f"jti{self.serial}",
        }
        payload = b64(json.dumps(claims).encode())
        signature = b64(hmac.new(_SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"

    def claims(self, token: str) -> dict[str, Any] | None:
        try:
            header, payload, signature = token.split(".")
        except ValueError:
            return None
        expected = b64(hmac.new(_SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            return None
        data: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
        return data

    def session(self) -> dict[str, Any]:
        return {
            "did": DID,
            "handle": HANDLE,
            "accessJwt": self.jwt("com.atproto.access", self.access_lifetime),
            "refreshJwt": self.jwt("com.atproto.refresh", timedelta(days=90)),
            "active": True,
        }

    def add_post(
        self,
        author_did: str,
        author_handle: str,
        text: str,
        *,
        reason: str = "mention",
        reply_to: str | None = None,
        facets: list[dict[str, Any]] | None = None,
        embed: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A post by someone else that mentions or answers the city, and its notification."""
        self.serial += 1
        uri = f"at://{author_did}/app.bsky.feed.post/3kfake{self.serial:07d}"
        cid = f"bafyreifake{self.serial:010d}"
        record: dict[str, Any] = {
            "$type": "app.bsky.feed.post",
            "text": text,
            "createdAt": self.now.isoformat().replace("+00:00", "Z"),
            "langs": ["nl"],
        }
        if reply_to is not None:
            parent = self.posts[reply_to]
            root = parent["record"].get("reply", {}).get("root") or {
                "uri": reply_to,
                "cid": parent["cid"],
            }
            record["reply"] = {"root": root, "parent": {"uri": reply_to, "cid": parent["cid"]}}
        if facets:
            record["facets"] = facets
        if embed:
            record["embed"] = embed
        self.posts[uri] = {"cid": cid, "record": record}
        indexed = self.now + timedelta(milliseconds=self.serial)
        note = {
            "uri": uri,
            "cid": cid,
            "author": {"did": author_did, "handle": author_handle, "displayName": "Resident"},
            "reason": reason,
            "record": record,
            "isRead": False,
            "indexedAt": indexed.isoformat().replace("+00:00", "Z"),
            "labels": [],
        }
        self.notifications.append(note)
        return note

    def __call__(self, request: Received) -> Reply:
        parts = urlsplit(request.path)
        nsid = parts.path.removeprefix("/xrpc/")
        self.calls.append(nsid)
        if nsid == "com.atproto.sync.getBlob":  # public, as a PDS serves blobs
            query = parse_qs(parts.query)
            blob = self.blobs.get((query.get("did", [""])[0], query.get("cid", [""])[0]))
            if blob is None:
                return xrpc_error(400, "BlobNotFound", "Blob not found")
            return Reply(200, blob[0], {"Content-Type": blob[1]})
        if nsid == "com.atproto.server.createSession":
            body = json.loads(request.body)
            if body.get("identifier") not in {HANDLE, DID} or body.get("password") != APP_PASSWORD:
                return xrpc_error(401, "AuthenticationRequired", "Invalid identifier or password")
            self.logins += 1
            return Reply.json(200, json.dumps(self.session()))
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        claims = self.claims(token)
        if claims is None:
            return xrpc_error(400, "InvalidToken", "Token could not be verified")
        if claims["exp"] <= self.now.timestamp():
            return xrpc_error(400, "ExpiredToken", "Token has expired")
        if nsid == "com.atproto.server.refreshSession":
            if claims["scope"] != "com.atproto.refresh" or claims["jti"] in self.used_refresh:
                return xrpc_error(400, "InvalidToken", "Token has been revoked")
            self.used_refresh.add(claims["jti"])
            self.refreshes += 1
            return Reply.json(200, json.dumps(self.session()))
        if claims["scope"] != "com.atproto.access":
            return xrpc_error(400, "InvalidToken", "Bad token scope")
        if nsid == "app.bsky.notification.listNotifications":
            return self.list_notifications(parse_qs(parts.query))
        if nsid == "com.atproto.repo.createRecord":
            reply = self.create_record(json.loads(request.body))
            if reply.status == 200 and self.drop_after_create > 0:
                self.drop_after_create -= 1
                return Reply.drop()
            return reply
        if nsid == "com.atproto.repo.getRecord":
            return self.get_record(parse_qs(parts.query))
        return xrpc_error(501, "MethodNotImplemented")

    def get_record(self, query: dict[str, list[str]]) -> Reply:
        repo, collection, rkey = (query.get(k, [""])[0] for k in ("repo", "collection", "rkey"))
        did = DID if repo in {DID, HANDLE} else repo
        uri = f"at://{did}/{collection}/{rkey}"
        found = self.posts.get(uri)
        if found is None:
            return xrpc_error(400, "RecordNotFound", f"Could not locate record: {uri}")
        return Reply.json(
            200, json.dumps({"uri": uri, "cid": found["cid"], "value": found["record"]})
        )

    def replies_to(self, parent_uri: str) -> list[dict[str, Any]]:
        """The city's posts answering ``parent_uri``, as the repository holds them."""
        return [
            p["record"]
            for uri, p in self.posts.items()
            if uri.startswith(f"at://{DID}/")
            and p["record"].get("reply", {}).get("parent", {}).get("uri") == parent_uri
        ]

    def list_notifications(self, query: dict[str, list[str]]) -> Reply:
        reasons = set(query.get("reasons", []))
        notes = [n for n in reversed(self.notifications) if not reasons or n["reason"] in reasons]
        limit = int(query.get("limit", ["50"])[0])
        start = int(base64.b64decode(query["cursor"][0])) if "cursor" in query else 0
        page = notes[start : start + limit]
        body: dict[str, Any] = {"notifications": page, "priority": False}
        if start + limit < len(notes):
            body["cursor"] = base64.b64encode(str(start + limit).encode()).decode()
        return Reply.json(200, json.dumps(body))

    def create_record(self, body: dict[str, Any]) -> Reply:
        if body.get("repo") not in {DID, HANDLE} or body.get("collection") != "app.bsky.feed.post":
            return xrpc_error(400, "InvalidRequest", "repo or collection")
        record = body.get("record") or {}
        text = record.get("text")
        if not isinstance(text, str) or len(text) > 300 or not record.get("createdAt"):
            return xrpc_error(400, "InvalidRequest", "Invalid app.bsky.feed.post record")
        reply = record.get("reply")
        if reply is not None:
            for key in ("root", "parent"):
                ref = reply.get(key) or {}
                known = self.posts.get(ref.get("uri", ""))
                if known is None or known["cid"] != ref.get("cid"):
                    return xrpc_error(
                        400, "InvalidRequest", f"reply.{key} is not a known strong ref"
                    )
            parent = self.posts[reply["parent"]["uri"]]
            root = parent["record"].get("reply", {}).get("root") or {
                "uri": reply["parent"]["uri"],
                "cid": parent["cid"],
            }
            if root != reply["root"]:
                return xrpc_error(400, "InvalidRequest", "reply.root is not the parent's root")
        encoded = text.encode()
        for facet in record.get("facets", []):
            start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
            if not 0 <= start < end <= len(encoded):
                return xrpc_error(400, "InvalidRequest", "facet out of range")
            try:
                covered = encoded[start:end].decode()
            except UnicodeDecodeError:
                return xrpc_error(400, "InvalidRequest", "facet splits a character")
            for feature in facet["features"]:
                if feature["$type"] == "app.bsky.richtext.facet#mention" and not covered.startswith(
                    "@"
                ):
                    return xrpc_error(400, "InvalidRequest", "mention facet not on a mention")
                if feature["$type"] == "app.bsky.richtext.facet#link" and covered != feature["uri"]:
                    return xrpc_error(400, "InvalidRequest", "link facet not on its link")
        rkey = body.get("rkey")
        if rkey is not None and (not isinstance(rkey, str) or not _TID.match(rkey)):
            return xrpc_error(
                400, "InvalidRequest", "Invalid record key for app.bsky.feed.post: not a TID"
            )
        self.serial += 1
        uri = f"at://{DID}/app.bsky.feed.post/{rkey or f'3kreply{self.serial:06d}'}"
        if uri in self.posts:
            # The reference PDS: its repository tree throws "There is already a value at key",
            # which reaches the client as a bare 500.
            return xrpc_error(500, "InternalServerError", "Internal Server Error")
        cid = f"bafyreireply{self.serial:010d}"
        self.posts[uri] = {"cid": cid, "record": record}
        self.created.append(record)
        return Reply.json(200, json.dumps({"uri": uri, "cid": cid, "validationStatus": "valid"}))
