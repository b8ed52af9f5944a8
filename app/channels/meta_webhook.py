"""What Meta's webhooks share (Facebook Page, Messenger, WhatsApp Cloud API): the subscription
handshake and the ``X-Hub-Signature-256`` check.

The signature is ``sha256=<hex HMAC-SHA256(app secret, raw body)>``: computed over the bytes as
received, never over JSON parsed and dumped again (key order, spaces and escapes change the
bytes), and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "X-Hub-Signature-256"


def challenge(params: Mapping[str, str], verify_token: str) -> str | None:
    """The text to answer a subscription check with (200, ``text/plain``); None: answer 403."""
    if params.get("hub.mode") != "subscribe":
        return None
    token = params.get("hub.verify_token")
    if token is None or not hmac.compare_digest(token.encode(), verify_token.encode()):
        return None
    answer = params.get("hub.challenge")
    return answer if answer else None


def signature(app_secret: str, body: bytes) -> str:
    """The header value Meta sends with ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verified(app_secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` signs exactly these bytes with the app secret."""
    if not header or not app_secret:
        return False
    return hmac.compare_digest(header.strip().encode(), signature(app_secret, body).encode())


class Rejected(Exception):
    """A delivery we refuse: ``status`` 401 for a bad signature, 400 for a body that is not a
    JSON object (Meta retries either; neither is ever parsed)."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.status = status


def signed_document(app_secret: str, body: bytes, header: str | None) -> Mapping[str, Any]:
    """The delivery's JSON once its signature holds; ``Rejected`` otherwise."""
    if not verified(app_secret, body, header):
        raise Rejected("X-Hub-Signature-256 does not match the body", 401)
    try:
        document = json.loads(body)
    except ValueError:
        raise Rejected("the signed body is not JSON", 400) from None
    if not isinstance(document, Mapping):
        raise Rejected("the signed body is not a JSON object", 400)
    return document
