"""Mobile push through Firebase Cloud Messaging, HTTP v1; iOS devices through FCM's APNs relay.

``POST {base}/v1/projects/{project}/messages:send`` with an OAuth2 access token of a service
account. The token comes from the service account's token endpoint by the JWT bearer grant
(RFC 7523): a JWT signed RS256 with the account's private key. It is kept until shortly
before it expires; a 401 fetches a new one once.

Messages about one ticket collapse on the device (``android.collapse_key``,
``apns-collapse-id``): a phone that was offline shows the latest news, not a queue of it.

Answers (``error.details[].errorCode``): ``UNREGISTERED`` or 404, and ``SENDER_ID_MISMATCH``
(the token belongs to another app), disable the contact; 400 ``INVALID_ARGUMENT`` fails the
message; 429 and 5xx retry (``Retry-After`` honoured).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from app.channels import transport
from app.channels.base import Delivered, Failed, Message, Outcome, RetryLater
from app.contacts.models import ContactKind
from app.settings import Settings

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
# A token is renewed this long before it expires, so none expires on its way to FCM.
TOKEN_MARGIN_SECONDS = 300
ASSERTION_LIFETIME_SECONDS = 3600  # the longest Google accepts
DISABLING_ERRORS = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
COLLAPSE_KEY_MAX = 64  # apns-collapse-id takes at most 64 bytes


@dataclass(frozen=True)
class ServiceAccount:
    """What is used of a Google service account's JSON key."""

    client_email: str
    private_key: str  # PEM
    private_key_id: str | None
    project_id: str | None
    token_uri: str | None

    @classmethod
    def from_json(cls, text: str) -> ServiceAccount:
        try:
            data = json.loads(text)
            return cls(
                client_email=data["client_email"],
                private_key=data["private_key"],
                private_key_id=data.get("private_key_id"),
                project_id=data.get("project_id"),
                token_uri=data.get("token_uri"),
            )
        except (ValueError, KeyError, TypeError) as error:
            # Never echo the text: it holds the private key.
            raise ValueError(
                f"the FCM service account is not a service account JSON key ({error!r:.40})"
            ) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceAccount | None:
        if settings.fcm_service_account_json is not None:
            return cls.from_json(settings.fcm_service_account_json.get_secret_value())
        if settings.fcm_service_account_file is not None:
            return cls.from_json(settings.fcm_service_account_file.read_text())
        return None


@dataclass
class _Token:
    value: str
    renew_at: float  # time.monotonic()


class FcmChannel:
    kind = ContactKind.fcm.value

    def __init__(self, settings: Settings, account: ServiceAccount | None = None) -> None:
        account = account or ServiceAccount.from_settings(settings)
        if account is None:
            raise ValueError("the FCM channel needs KERBSIDE_FCM_SERVICE_ACCOUNT_FILE or _JSON")
        project = settings.fcm_project_id or account.project_id
        if not project:
            raise ValueError("the FCM channel needs KERBSIDE_FCM_PROJECT_ID")
        self._account = account
        self._token_url = settings.fcm_token_url or account.token_uri or GOOGLE_TOKEN_URL
        self._send_url = f"{settings.fcm_base_url}/v1/projects/{project}/messages:send"
        self._ttl = settings.fcm_ttl_seconds
        self._client = transport.client(settings)
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()

    def payload(self, message: Message) -> dict[str, Any]:
        collapse = collapse_key(message)
        data = {key: stringify(value) for key, value in message.data.items()}
        data.update(
            {
                "notification_id": str(message.id),
                "event": message.event,
                **({"ticket": message.ticket_reference} if message.ticket_reference else {}),
                **({"link": message.link} if message.link else {}),
                "unsubscribe": message.unsubscribe_url,
            }
        )
        return {
            "message": {
                "token": message.address,
                "notification": {"title": message.subject, "body": message.body},
                "data": data,
                "android": {
                    "priority": "high" if message.event == "broadcast" else "normal",
                    "collapse_key": collapse,
                    "ttl": f"{self._ttl}s",
                },
                "apns": {
                    "headers": {
                        "apns-collapse-id": collapse,
                        "apns-priority": "10" if message.event == "broadcast" else "5",
                        "apns-expiration": str(int(time.time()) + self._ttl),
                    },
                    "payload": {"aps": {"sound": "default"}},
                },
            }
        }

    async def deliver(self, message: Message) -> Outcome:
        body = self.payload(message)
        token = await self._access_token(rejected=None)
        if not isinstance(token, str):
            return token
        response = await self._send(body, token)
        if isinstance(response, httpx.Response) and response.status_code == 401:
            # Revoked, or expired early: one new token and one more try.
            token = await self._access_token(rejected=token)
            if not isinstance(token, str):
                return token
            response = await self._send(body, token)
        if not isinstance(response, httpx.Response):
            return response
        return self._outcome(response)

    async def _send(self, body: dict[str, Any], token: str) -> httpx.Response | Outcome:
        try:
            return await self._client.post(
                self._send_url, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as error:
            return RetryLater(f"fcm {transport.describe(error)}")

    def _outcome(self, response: httpx.Response) -> Outcome:
        status = response.status_code
        if status == 200:
            name = transport.json_object(response).get("name")
            return Delivered(provider_id=name if isinstance(name, str) else None)
        code = fcm_error_code(response)
        reason = f"fcm {status}" + (f" {code}" if code else "")
        if code in DISABLING_ERRORS or status == 404:
            return Failed(reason, disable_contact=True)
        if status == 429 or status >= 500 or code in {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"}:
            return RetryLater(reason, after=transport.retry_after(response))
        if status == 401:
            return RetryLater(reason + ": a fresh access token was refused too")
        return Failed(reason)

    async def _access_token(self, *, rejected: str | None) -> str | Outcome:
        """The cached token, or a new one when it is due or FCM ``rejected`` it.

        One delivery fetches at a time; those waiting take what it fetched.
        """
        async with self._token_lock:
            current = self._token
            if current is not None:
                if rejected is not None and current.value != rejected:
                    return current.value  # already renewed by another delivery
                if rejected is None and time.monotonic() < current.renew_at:
                    return current.value
            fetched = await self._fetch_token()
            if isinstance(fetched, _Token):
                self._token = fetched
                return fetched.value
            return fetched

    async def _fetch_token(self) -> _Token | Outcome:
        now = int(time.time())
        headers = {"kid": self._account.private_key_id} if self._account.private_key_id else None
        assertion = jwt.encode(
            {
                "iss": self._account.client_email,
                "scope": SCOPE,
                "aud": self._token_url,
                "iat": now,
                "exp": now + ASSERTION_LIFETIME_SECONDS,
            },
            self._account.private_key,
            algorithm="RS256",
            headers=headers,
        )
        try:
            response = await self._client.post(
                self._token_url,
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": assertion,
                },
            )
        except httpx.HTTPError as error:
            return RetryLater(f"fcm token endpoint {transport.describe(error)}")
        answer = transport.json_object(response)
        token, lifetime = answer.get("access_token"), answer.get("expires_in")
        if response.status_code != 200 or not isinstance(token, str):
            # A refused grant is a configuration fault (a revoked key): the messages wait.
            grant_error = answer.get("error")
            return RetryLater(
                f"fcm token endpoint {response.status_code}"
                + (f" {grant_error}" if isinstance(grant_error, str) else ""),
                after=transport.retry_after(response),
            )
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        return _Token(token, time.monotonic() + max(0.0, seconds - TOKEN_MARGIN_SECONDS))

    async def close(self) -> None:
        await self._client.aclose()


def collapse_key(message: Message) -> str:
    """One key per ticket, so a device keeps only the latest news of it."""
    key = message.ticket_reference or f"kerbside-{message.id}"
    if len(key.encode()) > COLLAPSE_KEY_MAX:
        key = hashlib.sha256(key.encode()).hexdigest()[:COLLAPSE_KEY_MAX]
    return key


def stringify(value: Any) -> str:
    """FCM's ``data`` takes strings only."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def fcm_error_code(response: httpx.Response) -> str | None:
    error = transport.json_object(response).get("error")
    if not isinstance(error, Mapping):
        return None
    for detail in error.get("details") or ():
        if isinstance(detail, Mapping) and isinstance(detail.get("errorCode"), str):
            return str(detail["errorCode"])
    status = error.get("status")
    return status if isinstance(status, str) else None
