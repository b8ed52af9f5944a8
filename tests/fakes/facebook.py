"""A fake Graph API for a Page (Send API, comment replies), and webhook deliveries as Meta sends
them, signed over the raw bytes.

The fake keeps its own record of when each person last wrote (``last_message``), as Meta
does, and refuses free messages outside 24 hours with Meta's error (code 10, subcode
2018278), whatever the sender believed; tags must be real ones, HUMAN_AGENT within 7 days.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http import Received, Reply, served_file

VERSION = "v24.0"
PAGE_ID = "104857600000001"
PAGE_TOKEN = "fake-page-access-token-0123456789"
APP_SECRET = "fake-app-secret-for-tests"
VERIFY_TOKEN = "fake-verify-token"
TAGS = {"ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "HUMAN_AGENT"}


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def graph_error(status: int, code: int, message: str, subcode: int | None = None) -> Reply:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "AFakeTrace"
    return Reply.json(status, json.dumps({"error": error}))


def messages_delivery(*events: dict[str, Any], page_id: str = PAGE_ID) -> bytes:
    body = {
        "object": "page",
        "entry": [{"id": page_id, "time": 1763449200123, "messaging": list(events)}],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def message_event(
    psid: str, mid: str, *, text: str | None = None, at_ms: int = 1763449199876, **message: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"mid": mid, **message}
    if text is not None:
        body["text"] = text
    return {
        "sender": {"id": psid},
        "recipient": {"id": PAGE_ID},
        "timestamp": at_ms,
        "message": body,
    }


def referral_event(
    psid: str, ref: str, *, at_ms: int = 1763449199876, how: str = "referral"
) -> dict[str, Any]:
    """A person opened the Page's conversation from an ``m.me/<page>?ref=…`` link:
    ``messaging_referrals`` when they had a conversation already, else the Get Started
    ``postback`` carrying the referral; ``optin`` is the Send to Messenger plugin's."""
    event: dict[str, Any] = {
        "sender": {"id": psid},
        "recipient": {"id": PAGE_ID},
        "timestamp": at_ms,
    }
    referral = {"ref": ref, "source": "SHORTLINK", "type": "OPEN_THREAD"}
    if how == "referral":
        event["referral"] = referral
    elif how == "postback":
        event["postback"] = {
            "title": "Get Started",
            "payload": "GET_STARTED",
            "mid": f"m_postback_{psid}",
            "referral": referral,
        }
    else:
        event["optin"] = {"ref": ref}
    return event


def feed_delivery(*values: dict[str, Any], page_id: str = PAGE_ID) -> bytes:
    changes = [{"field": "feed", "value": value} for value in values]
    body = {"object": "page", "entry": [{"id": page_id, "time": 1763449300, "changes": changes}]}
    return json.dumps(body, separators=(",", ":")).encode()


def comment_value(post: str, comment: str, author: str, text: str, **more: Any) -> dict[str, Any]:
    return {
        "from": {"id": author, "name": "Pat Resident"},
        "post": {"status_type": "mobile_status_update", "is_published": True, "id": post},
        "message": text,
        "post_id": post,
        "comment_id": comment,
        "created_time": 1763449300,
        "item": "comment",
        "parent_id": post,
        "verb": "add",
        **more,
    }


@dataclass
class FakeGraph:
    now: datetime
    last_message: dict[str, datetime] = field(default_factory=dict)  # psid → last inbound
    comments: set[str] = field(default_factory=set)
    optin_tokens: set[str] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
    comment_replies: list[tuple[str, str]] = field(default_factory=list)
    # Media on the platform's CDN, by path (public, as the CDN serves it).
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def opened(self, psid: str) -> None:
        """The person opened the conversation (a referral): Meta's window starts now."""
        self.last_message[psid] = self.now

    def __call__(self, request: Received) -> Reply:
        if (media := served_file(self.files, request)) is not None:
            return media
        path = urlsplit(request.path).path
        query = parse_qs(urlsplit(request.path).query)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token != PAGE_TOKEN and query.get("access_token") != [PAGE_TOKEN]:
            return graph_error(400, 190, "Invalid OAuth access token.")
        try:
            body = json.loads(request.body)
        except ValueError:
            return graph_error(400, 100, "Invalid JSON")
        if path == f"/{VERSION}/{PAGE_ID}/messages":
            return self.send(body)
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == VERSION and parts[2] == "comments":
            return self.comment(parts[1], body)
        return graph_error(404, 803, "Unknown path")

    def send(self, body: dict[str, Any]) -> Reply:
        recipient, message = body.get("recipient") or {}, body.get("message") or {}
        text = message.get("text")
        if not isinstance(text, str) or not text or len(text) > 2000:
            return graph_error(400, 100, "Invalid parameter: message.text")
        if "notification_messages_token" in recipient:
            if recipient["notification_messages_token"] not in self.optin_tokens:
                return graph_error(400, 100, "Invalid notification messages token")
            return self._sent(body, "optin")
        psid = recipient.get("id")
        if psid not in self.last_message:
            return graph_error(400, 100, "No matching user found", 2018001)
        age = self.now - self.last_message[psid]
        kind = body.get("messaging_type")
        if kind in {"RESPONSE", "UPDATE"}:
            if age >= timedelta(hours=24):
                return graph_error(
                    400, 10, "(#10) This message is sent outside of allowed window.", 2018278
                )
        elif kind == "MESSAGE_TAG":
            tag = body.get("tag")
            if tag not in TAGS:
                return graph_error(400, 100, "Invalid tag")
            if tag == "HUMAN_AGENT" and age >= timedelta(days=7):
                return graph_error(
                    400, 10, "(#10) This message is sent outside of allowed window.", 2018278
                )
        else:
            return graph_error(400, 100, "messaging_type is required")
        return self._sent(body, str(psid))

    def _sent(self, body: dict[str, Any], to: str) -> Reply:
        self.sent.append(body)
        answer = {"recipient_id": to, "message_id": f"m_fake{len(self.sent):06d}"}
        return Reply.json(200, json.dumps(answer))

    def comment(self, comment_id: str, body: dict[str, Any]) -> Reply:
        if comment_id not in self.comments:
            return graph_error(400, 100, "Unsupported post request. Object does not exist", 33)
        text = body.get("message")
        if not isinstance(text, str) or not text:
            return graph_error(400, 100, "(#100) message is required")
        self.comment_replies.append((comment_id, text))
        reply_id = f"{comment_id.split('_')[0]}_{len(self.comment_replies):010d}"
        return Reply.json(200, json.dumps({"id": reply_id}))
