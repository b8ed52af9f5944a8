"""A fake WhatsApp Cloud API: messages (text in the 24-hour window, approved templates after it),
media by id (the URL lookup, then the download, both with the bearer token), and webhook
deliveries as Meta sends them, signed over the raw bytes.

Like Meta, the fake keeps its own record of each person's last message and refuses free text
after 24 hours with error 131047, whatever the sender believed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.http import Received, Reply

VERSION = "v24.0"
PHONE_NUMBER_ID = "106540352242922"
TOKEN = "fake-whatsapp-token-abcdef0123456789"
APP_SECRET = "fake-whatsapp-app-secret"
VERIFY_TOKEN = "fake-whatsapp-verify"
TEMPLATES = {"ticket_update": 2}  # approved template → number of body parameters


def wa_error(status: int, code: int, message: str, details: str = "") -> Reply:
    error = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details or message},
        "fbtrace_id": "AFakeTrace",
    }
    return Reply.json(status, json.dumps({"error": error}))


def delivery(*messages: dict[str, Any], wa_id: str = "31612345678", name: str = "Sam") -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "31850000000", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "messages": list(messages),
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def receipt(
    wamid: str,
    status: str,
    *,
    recipient: str = "31612345678",
    at: int = 1764840000,
    code: int | None = None,
) -> dict[str, Any]:
    """One of ``value.statuses[]``: what became of a message the business sent."""
    found: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(at),
        "recipient_id": recipient,
    }
    if status in {"sent", "delivered"}:
        found["conversation"] = {
            "id": "CONVERSATION_ID",
            "origin": {"type": "service"},
        }
        found["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    if code is not None:
        found["errors"] = [
            {
                "code": code,
                "title": {131047: "Re-engagement message", 131026: "Message undeliverable"}.get(
                    code, "Error"
                ),
                "message": "Message failed to send",
                "error_data": {"details": "Message failed to send."},
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
            }
        ]
    return found


def receipts_delivery(*statuses: dict[str, Any]) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "31850000000", "phone_number_id": PHONE_NUMBER_ID},
        "statuses": list(statuses),
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def text_message(
    wamid: str, body: str, *, sender: str = "31612345678", at: int = 1764840000
) -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid,
        "timestamp": str(at),
        "type": "text",
        "text": {"body": body},
    }


def location_message(
    wamid: str,
    lat: float,
    lon: float,
    *,
    sender: str = "31612345678",
    at: int = 1764840000,
    **more: Any,
) -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid,
        "timestamp": str(at),
        "type": "location",
        "location": {"latitude": lat, "longitude": lon, **more},
    }


def image_message(
    wamid: str,
    media_id: str,
    *,
    caption: str | None = None,
    sender: str = "31612345678",
    at: int = 1764840000,
) -> dict[str, Any]:
    image: dict[str, Any] = {"mime_type": "image/jpeg", "sha256": "ZmFrZQ==", "id": media_id}
    if caption is not None:
        image["caption"] = caption
    return {"from": sender, "id": wamid, "timestamp": str(at), "type": "image", "image": image}


@dataclass
class FakeCloudAPI:
    now: datetime
    url: str = ""  # the fake's own address, for the media URLs it hands out
    last_message: dict[str, datetime] = field(default_factory=dict)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: Received) -> Reply:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return wa_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        path = urlsplit(request.path).path
        if request.method == "GET" and path.startswith("/download/"):
            found = self.media.get(path.removeprefix("/download/"))
            if found is None:
                return Reply(404)
            return Reply(200, found[0], {"Content-Type": found[1]})
        if request.method == "GET" and path.startswith(f"/{VERSION}/"):
            media_id = path.removeprefix(f"/{VERSION}/")
            if media_id not in self.media:
                return wa_error(400, 100, "Unsupported get request.")
            content, kind = self.media[media_id]
            answer = {
                "messaging_product": "whatsapp",
                "url": f"{self.url}/download/{media_id}",
                "mime_type": kind,
                "sha256": hashlib.sha256(content).hexdigest(),
                "file_size": str(len(content)),
                "id": media_id,
            }
            return Reply.json(200, json.dumps(answer))
        if request.method == "POST" and path == f"/{VERSION}/{PHONE_NUMBER_ID}/messages":
            return self.send(json.loads(request.body))
        return wa_error(404, 100, "Unknown path")

    def send(self, body: dict[str, Any]) -> Reply:
        if body.get("messaging_product") != "whatsapp":
            return wa_error(400, 100, "The parameter messaging_product is required.")
        to = str(body.get("to") or "")
        kind = body.get("type")
        if kind == "text":
            text = (body.get("text") or {}).get("body")
            if not text or len(text) > 4096:
                return wa_error(400, 100, "Invalid parameter: text.body")
            last = self.last_message.get(to)
            if last is None or self.now - last >= timedelta(hours=24):
                return wa_error(
                    400,
                    131047,
                    "Re-engagement message",
                    "Message failed to send because more than 24 hours have passed since the"
                    " customer last replied to this number.",
                )
        elif kind == "template":
            template = body.get("template") or {}
            wanted = TEMPLATES.get(str(template.get("name")))
            if wanted is None:
                return wa_error(404, 132001, "Template name does not exist in the translation")
            components = template.get("components") or []
            parameters = [p for c in components if c.get("type") == "body" for p in c["parameters"]]
            if len(parameters) != wanted or not (template.get("language") or {}).get("code"):
                return wa_error(400, 132000, "Number of parameters does not match")
        else:
            return wa_error(400, 100, "Unsupported message type")
        self.sent.append(body)
        answer = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": f"wamid.FAKE{len(self.sent):06d}"}],
        }
        return Reply.json(200, json.dumps(answer))
