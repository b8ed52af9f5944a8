"""Web Push to browsers: VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291).

A contact's address is its subscription's endpoint, a URL of the browser's push service;
``contact_data`` holds the subscription's keys (``p256dh``, ``auth``), as the browser's
``PushSubscription.toJSON()`` gives them (flat or under ``keys``). py_vapid signs the VAPID
token and http_ece encrypts; the request goes out on our own httpx client (pywebpush would
bring requests and aiohttp for the same two calls).

Headers: ``TTL`` (how long the push service keeps it for an offline browser), ``Urgency``
(``high`` for broadcasts) and ``Topic``: one per ticket, so a newer message about a ticket
replaces one still waiting. Answers: 201 delivered (the push service's ``Location`` is its
id), 404 and 410 the subscription is gone (disable the contact), 413 too large, 429 and 5xx
retry (``Retry-After`` honoured), other 4xx fail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import http_ece  # type: ignore[import-untyped]
import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException  # type: ignore[import-untyped]

from app.channels import transport
from app.channels.base import Delivered, Failed, Message, Outcome, RetryLater
from app.contacts.models import ContactKind
from app.settings import Settings

# Every push service takes at least this much (RFC 8030 section 7.2).
MAX_PAYLOAD_BYTES = 4096
# VAPID tokens are signed for 12 hours (at most 24 are allowed) and reused for 11.
VAPID_LIFETIME_SECONDS = 12 * 3600
VAPID_REUSE_SECONDS = 11 * 3600
TOPIC_MAX = 32  # RFC 8030: at most 32 characters of the URL-safe base64 alphabet
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_vapid_key(text: str) -> Any:
    """A VAPID private key from PEM, or from base64url (the raw 32 bytes, or DER)."""
    try:
        if "-----BEGIN" in text:
            return Vapid02.from_pem(text.encode())
        return Vapid02.from_string(text.strip())
    except (VapidException, ValueError, TypeError, binascii.Error):
        # Never echo the text: it is the private key.
        raise ValueError(
            "KERBSIDE_WEBPUSH_VAPID_PRIVATE_KEY is not a P-256 private key (PEM or base64url)"
        ) from None


def topic_of(message: Message) -> str:
    """One topic per ticket; long or unusual references are hashed into the alphabet."""
    key = message.ticket_reference or f"kerbside-{message.id}"
    if len(key) <= TOPIC_MAX and not _TOPIC_UNSAFE.search(key):
        return key
    digest = base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()).decode()
    return digest.rstrip("=")[:TOPIC_MAX]


def subscription_keys(contact_data: Mapping[str, Any]) -> tuple[bytes, bytes] | None:
    """The browser's public key (65 bytes, uncompressed P-256) and auth secret (16 bytes)."""
    keys = contact_data.get("keys", contact_data)
    if not isinstance(keys, Mapping):
        return None
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    if not isinstance(p256dh, str) or not isinstance(auth, str):
        return None
    try:
        public, secret = b64url_decode(p256dh), b64url_decode(auth)
    except (binascii.Error, ValueError):
        return None
    if len(public) != 65 or public[0] != 4 or len(secret) < 16:
        return None
    return public, secret


def encrypt(payload: bytes, public_key: bytes, auth_secret: bytes) -> bytes:
    """RFC 8291: a new sender key pair and salt for every message."""
    sender = ec.generate_private_key(ec.SECP256R1())
    encrypted: bytes = http_ece.encrypt(
        payload,
        private_key=sender,
        dh=public_key,
        auth_secret=auth_secret,
        version="aes128gcm",
    )
    return encrypted


class WebPushChannel:
    kind = ContactKind.webpush.value

    def __init__(self, settings: Settings) -> None:
        if settings.webpush_vapid_private_key is None or not settings.webpush_vapid_subject:
            raise ValueError(
                "the Web Push channel needs KERBSIDE_WEBPUSH_VAPID_PRIVATE_KEY and _SUBJECT"
            )
        self._vapid = load_vapid_key(settings.webpush_vapid_private_key.get_secret_value())
        self._subject = settings.webpush_vapid_subject
        self._ttl = settings.webpush_ttl_seconds
        self._client = transport.client(settings)
        self._authorization: dict[str, tuple[str, float]] = {}  # origin -> (header, until)

    def payload(self, message: Message) -> bytes:
        """What the service worker receives: JSON for its ``showNotification``."""
        document: dict[str, Any] = {
            "id": message.id,
            "title": message.subject,
            "body": message.body,
            "event": message.event,
            "url": message.link,
            "ticket": message.ticket_reference,
            "unsubscribe": message.unsubscribe_url,
            "lang": message.language,
        }
        if message.data:
            document["data"] = dict(message.data)
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    def authorization(self, endpoint: str) -> str:
        """``vapid t=<JWT>,k=<public key>`` for the endpoint's push service (RFC 8292)."""
        parts = urlsplit(endpoint)
        origin = f"{parts.scheme}://{parts.netloc}"
        cached = self._authorization.get(origin)
        now = time.time()
        if cached is not None and now < cached[1]:
            return cached[0]
        header: str = self._vapid.sign(
            {"aud": origin, "sub": self._subject, "exp": int(now) + VAPID_LIFETIME_SECONDS}
        )["Authorization"]
        self._authorization[origin] = (header, now + VAPID_REUSE_SECONDS)
        return header

    async def deliver(self, message: Message) -> Outcome:
        if urlsplit(message.address).scheme not in {"https", "http"}:
            return Failed("webpush endpoint is not an http(s) URL", disable_contact=True)
        keys = subscription_keys(message.contact_data)
        if keys is None:
            return Failed("webpush subscription without usable keys", disable_contact=True)
        try:
            authorization = self.authorization(message.address)
        except VapidException:
            # py_vapid takes only scheme://host[:port] audiences (no IPv6 literals).
            return Failed("webpush endpoint's origin cannot be signed for", disable_contact=True)
        body = encrypt(self.payload(message), *keys)
        if len(body) > MAX_PAYLOAD_BYTES:
            return Failed(f"webpush payload of {len(body)} bytes is over {MAX_PAYLOAD_BYTES}")
        headers = {
            "Authorization": authorization,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(self._ttl),
            "Urgency": "high" if message.event == "broadcast" else "normal",
            "Topic": topic_of(message),
        }
        try:
            response = await self._client.post(message.address, content=body, headers=headers)
        except httpx.HTTPError as error:
            return RetryLater(f"webpush {transport.describe(error)}")
        return outcome_of(response)

    async def close(self) -> None:
        await self._client.aclose()


def outcome_of(response: httpx.Response) -> Outcome:
    status = response.status_code
    if status in {200, 201, 202}:
        return Delivered(provider_id=response.headers.get("Location"))
    reason = f"webpush {status}"
    if status in {404, 410}:
        return Failed(reason + ": subscription gone", disable_contact=True)
    if status == 429 or status >= 500:
        return RetryLater(reason, after=transport.retry_after(response))
    return Failed(reason)
