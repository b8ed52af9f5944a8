"""A fake FCM HTTP v1 API and its OAuth2 token endpoint, as Google's speak them.

The token endpoint takes the JWT bearer grant and checks the assertion's RS256 signature
with the service account's public key (and its issuer, scope, audience and lifetime) before
it issues an access token. The send endpoint takes only tokens it issued and not revoked,
and answers like FCM: 200 with the message name, 404 ``UNREGISTERED`` for a dead device
token, 400 ``INVALID_ARGUMENT`` for a malformed message.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.http import Received, Reply

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
PROJECT = "kerbside-test"
CLIENT_EMAIL = "kerbside@kerbside-test.iam.gserviceaccount.com"
DEAD_TOKEN = "dead-device-token"
BAD_TOKEN = "malformed-device-token"


def service_account(key: rsa.RSAPrivateKey, token_url: str) -> str:
    """A service account's JSON key file, as the Google Cloud console hands it out."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "test-key-1",
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "token_uri": token_url,
        }
    )


def error(status: int, grpc_status: str, code: str | None) -> Reply:
    details = (
        [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
        if code
        else []
    )
    body = {
        "error": {
            "code": status,
            "message": code or grpc_status,
            "status": grpc_status,
            "details": details,
        }
    }
    return Reply.json(status, json.dumps(body))


@dataclass
class FakeFcm:
    public_key: rsa.RSAPublicKey
    base_url: str = ""  # set once the server listens
    token_lifetime: int = 3600
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    def __call__(self, request: Received) -> Reply:
        if request.path == "/token":
            return self.token(request)
        if request.path == f"/v1/projects/{PROJECT}/messages:send":
            return self.send(request)
        return error(404, "NOT_FOUND", None)

    def token(self, request: Received) -> Reply:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Reply.json(400, '{"error":"unsupported_grant_type"}')
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self.public_key,
                algorithms=["RS256"],
                audience=self.token_url,
                issuer=CLIENT_EMAIL,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.PyJWTError as failure:
            request.notes["jwt"] = repr(failure)
            return Reply.json(400, '{"error":"invalid_grant"}')
        if claims.get("scope") != SCOPE or claims["exp"] - claims["iat"] > 3600:
            return Reply.json(400, '{"error":"invalid_scope"}')
        request.notes["jwt"] = "verified"
        token = f"ya29.test-{next(self._numbers)}"
        self.issued.append(token)
        return Reply.json(
            200,
            json.dumps(
                {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
            ),
        )

    def send(self, request: Received) -> Reply:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.issued or bearer in self.revoked:
            return error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")
        try:
            message = json.loads(request.body)["message"]
            token = message["token"]
            if not all(isinstance(v, str) for v in message.get("data", {}).values()):
                raise ValueError("data values must be strings")
        except (ValueError, KeyError, TypeError):
            return error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
        if token == DEAD_TOKEN:
            return error(404, "NOT_FOUND", "UNREGISTERED")
        if token == BAD_TOKEN:
            return error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
        self.sent.append(message)
        name = f"projects/{PROJECT}/messages/0:{int(time.time() * 1000)}%{len(self.sent)}"
        return Reply.json(200, json.dumps({"name": name}))
