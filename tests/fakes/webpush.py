"""A browser's push subscription and a fake push service that reads what it is sent.

``Browser`` makes a subscription as a browser does (a P-256 key pair and a 16-byte auth
secret, handed to the site as ``PushSubscription.toJSON()``). The push service checks the
VAPID token (RFC 8292: ES256 signature with the key in ``k``, audience, expiry, subject,
and that ``k`` is the application server key the browser subscribed with), then DECRYPTS
the aes128gcm payload (RFC 8291) with the browser's private key and auth secret, and keeps
the plain text with the headers that matter (TTL, Urgency, Topic).
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import http_ece  # type: ignore[import-untyped]
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fakes.http import Received, Reply


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


@dataclass
class Browser:
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, endpoint: str) -> dict[str, Any]:
        return {
            "endpoint": endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(public_bytes(self.private_key)), "auth": b64url(self.auth)},
        }


@dataclass
class Delivery:
    payload: dict[str, Any]
    ttl: str | None
    urgency: str | None
    topic: str | None
    claims: dict[str, Any]


@dataclass
class FakePushService:
    application_server_key: str  # base64url, as the site gave it to pushManager.subscribe()
    browsers: dict[str, Browser] = field(default_factory=dict)  # path -> subscriber
    gone: set[str] = field(default_factory=set)  # paths of expired subscriptions
    deliveries: list[Delivery] = field(default_factory=list)

    def __call__(self, request: Received) -> Reply:
        if request.path in self.gone:
            return Reply(410)
        browser = self.browsers.get(request.path)
        if browser is None:
            return Reply(404)
        claims = self.check_vapid(request)
        if claims is None:
            return Reply(403)
        if request.headers.get("content-encoding") != "aes128gcm":
            request.notes["error"] = "content-encoding"
            return Reply(400)
        try:
            plain = http_ece.decrypt(
                request.body,
                private_key=browser.private_key,
                auth_secret=browser.auth,
                version="aes128gcm",
            )
        except Exception as failure:
            request.notes["error"] = f"decrypt: {failure!r}"
            return Reply(400)
        self.deliveries.append(
            Delivery(
                payload=json.loads(plain),
                ttl=request.headers.get("ttl"),
                urgency=request.headers.get("urgency"),
                topic=request.headers.get("topic"),
                claims=claims,
            )
        )
        number = len(self.deliveries)
        return Reply(201, headers={"Location": f"{request.path}/messages/{number}"})

    def check_vapid(self, request: Received) -> dict[str, Any] | None:
        scheme, _, params = request.headers.get("authorization", "").partition(" ")
        parts = dict(p.split("=", 1) for p in params.split(",") if "=" in p)
        if scheme.lower() != "vapid" or parts.get("k") != self.application_server_key:
            request.notes["error"] = "vapid key"
            return None
        key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b64url_decode(parts["k"])
        )
        host = request.headers["host"]
        try:
            claims: dict[str, Any] = jwt.decode(
                parts.get("t", ""),
                key,
                algorithms=["ES256"],
                audience=f"http://{host}",
                options={"require": ["exp", "aud", "sub"]},
            )
        except jwt.PyJWTError as failure:
            request.notes["error"] = f"vapid jwt: {failure!r}"
            return None
        if claims["exp"] > time.time() + 24 * 3600:
            request.notes["error"] = "vapid exp beyond 24 h"
            return None
        if urlsplit(claims["sub"]).scheme not in {"mailto", "https"}:
            request.notes["error"] = "vapid sub"
            return None
        return claims
