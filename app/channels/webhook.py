"""Signed outbound webhooks to partner systems, per Standard Webhooks.

Each request carries ``webhook-id`` (the outbox row's id: the receiver's idempotency key, the
same on every retry), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``:
``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the contact's secret
(``contact_data["secret"]``, ``whsec_<base64>``). The body is JSON: ``type``, ``timestamp``,
``data``.

Answers: 2xx delivered; 410 the endpoint is gone (disable the contact); 408, 429 and 5xx
retry (``Retry-After`` honoured); redirects and other 4xx fail.

The URL is typed in by people, so the request could be aimed at our own network (SSRF). Every
address a host name resolves to must be public, and the connection goes to the address that
was checked, so a DNS answer that changes between check and connect (rebinding) gains
nothing. Loopback is allowed only with ``KERBSIDE_WEBHOOK_ALLOW_LOOPBACK`` (tests, demos;
refused in production).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from app.channels import transport
from app.channels.base import Delivered, Failed, Message, Outcome, RetryLater
from app.contacts.models import ContactKind
from app.core import clock
from app.settings import Settings

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


class TargetRefused(Exception):
    """The host resolves to an address we do not send to (``why``: loopback, private...)."""

    def __init__(self, why: str) -> None:
        super().__init__(f"webhook host resolves to a {why} address")
        self.why = why


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one request (Standard Webhooks, ``v1``)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def refusal(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool
) -> str | None:
    """Why an address is not a webhook target (None: it is fine)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None if allow_loopback else "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if not address.is_global or address.is_multicast:  # CGNAT, reserved, multicast, …
        return "not public"
    return None


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses that pass ``refusal``."""

    def __init__(self, *, allow_loopback: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_loopback = allow_loopback

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        for address in addresses:
            why = refusal(address, allow_loopback=self._allow_loopback)
            if why is not None:
                raise TargetRefused(why)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
        assert last is not None
        raise last

    async def _resolve(
        self, host: str, port: int, seconds: float | None
    ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), seconds
            )
        except (OSError, TimeoutError) as error:
            raise httpcore.ConnectError(f"cannot resolve the webhook host ({error!r})") from None
        found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if address not in found:
                found.append(address)
        if not found:
            raise httpcore.ConnectError("the webhook host has no address")
        return found

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(*, allow_loopback: bool) -> transport.KeptConnectionsTransport:
    """The channels' transport with ``PublicOnlyBackend`` underneath (the test of refused
    loopback targets fails if this stops working)."""
    return transport.KeptConnectionsTransport(
        transport.KeptConnections(
            network_backend=PublicOnlyBackend(allow_loopback=allow_loopback),
            # A connection closed after each answer is a new TCP handshake for the next.
            keepalive_expiry=5.0,
        )
    )


class WebhookChannel:
    kind = ContactKind.webhook.value

    def __init__(self, settings: Settings) -> None:
        # Requests go to the transport itself: what httpx's client adds on top (cookies,
        # redirects, auth, event hooks) a webhook never uses, and it was a fifth of a
        # webhook's CPU. No redirects are followed and no proxy is used, as with the client.
        self._transport = guarded_transport(allow_loopback=settings.webhook_allow_loopback)
        self._timeout = transport.timeouts(settings).as_dict()

    def body(self, message: Message) -> bytes:
        document = {
            "type": f"ticket.{message.event}",
            "timestamp": transport.as_utc_text(clock.now()),
            "data": {
                "notification_id": message.id,
                "ticket": message.ticket_reference,
                "event": message.event,
                "subject": message.subject,
                "body": message.body,
                "link": message.link,
                "language": message.language,
                **message.data,
            },
        }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    async def deliver(self, message: Message) -> Outcome:
        if urlsplit(message.address).scheme not in {"https", "http"}:
            return Failed("webhook address is not an http(s) URL", disable_contact=True)
        secret = message.contact_data.get("secret")
        if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
            return Failed("webhook without a whsec_ secret", disable_contact=True)
        webhook_id = str(message.id)
        timestamp = transport.now_unix()
        body = self.body(message)
        try:
            signature = sign(secret, webhook_id, timestamp, body)
        except (binascii.Error, ValueError):
            return Failed("webhook secret is not base64", disable_contact=True)
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
            "Content-Type": "application/json",
            "User-Agent": "Kerbside",
        }
        try:
            request = httpx.Request(
                "POST",
                message.address,
                content=body,
                headers=headers,
                extensions={"timeout": self._timeout},
            )
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except TargetRefused as refused:
            return Failed(str(refused))
        except httpx.HTTPError as error:
            return RetryLater(f"webhook {transport.describe(error)}")
        return outcome_of(response, webhook_id)

    async def close(self) -> None:
        await self._transport.aclose()


def outcome_of(response: httpx.Response, webhook_id: str) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return Delivered(provider_id=webhook_id)
    reason = f"webhook {status}"
    if status == 410:
        return Failed(reason + ": endpoint gone", disable_contact=True)
    if status in {408, 429} or status >= 500:
        return RetryLater(reason, after=transport.retry_after(response))
    return Failed(reason)
