"""A partner's webhook receiver that verifies Standard Webhooks signatures over the raw body.

``verify`` is written from the specification, apart from the sender's code: the signed text
is ``{webhook-id}.{webhook-timestamp}.{raw body}``, the key the base64 after ``whsec_``, the
header a space-separated list of ``v1,<base64>`` signatures, and timestamps more than five
minutes away from now are refused (replays).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.http import Received, Reply

TOLERANCE_SECONDS = 5 * 60


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None) -> bool:
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature", "")
    if not webhook_id or not timestamp or not timestamp.isdigit():
        return False
    if abs((now or time.time()) - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    for signature in signatures.split():
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


@dataclass
class WebhookReceiver:
    secret: str
    events: list[dict[str, Any]] = field(default_factory=list)
    seen_ids: list[str] = field(default_factory=list)

    def __call__(self, request: Received) -> Reply:
        if request.path == "/gone":
            return Reply(410)
        if not verify(self.secret, request.headers, request.body):
            request.notes["signature"] = "invalid"
            return Reply(401)
        request.notes["signature"] = "valid"
        self.seen_ids.append(request.headers["webhook-id"])
        self.events.append(json.loads(request.body))
        return Reply(204)
