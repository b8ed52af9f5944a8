"""Which adapter delivers each contact kind, from the settings.

A channel whose settings are present gets its real adapter; settings present but incomplete
(an SMS account without its token) stop the start with a ``ValueError`` naming what is
missing. Webhooks need no settings (each contact holds its own secret).

Outside production, every kind without an adapter (the ones not configured, X unless
``KERBSIDE_X_API_BASE_URL`` points somewhere) gets the local sink, so the demo delivers end
to end; Facebook, WhatsApp, Mastodon and Bluesky answers go to the sink there unless their
account names a base URL (``app.channels.threads``). In production the sink is never used:
a kind without an adapter is left out of the map, and ``unavailable`` names those kinds for
the worker to log at start. A city need not offer every channel, so this is not a reason to
refuse to start; the worker fails a message whose kind has no channel (without disabling the
contact).
A city may have its own accounts (the city file's ``channels:``, ``app.channels.accounts``):
``channels_for`` returns a ``Channels``, the deployment's adapters by kind that also builds,
on first use, each city's own (``for_city``), again when the city's section changes. A city
account whose secret's environment variable is not set is a channel that answers every
message with the reason (retried, then dead with it), never a crash and never the
deployment's account in its place: a city that declares its own sender must not send as
another.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import SecretStr, ValidationError

from app.channels.accounts import (
    SECTION_OF_KIND,
    Account,
    CityChannels,
    Problem,
    account_for,
)
from app.channels.base import Channel, Message, Outcome, RetryLater
from app.channels.email import EmailChannel
from app.channels.fcm import FcmChannel
from app.channels.sink import SinkChannel
from app.channels.sms import SmsChannel
from app.channels.threads import KINDS as THREAD_KINDS
from app.channels.threads import ThreadChannel
from app.channels.webhook import WebhookChannel
from app.channels.webpush import WebPushChannel
from app.channels.x import XChannel
from app.contacts.models import ContactKind
from app.settings import Settings


def configured(settings: Settings) -> dict[str, Channel]:
    """The real adapters whose settings are present."""
    channels: dict[str, Channel] = {ContactKind.webhook.value: WebhookChannel(settings)}
    if settings.smtp_host:
        channels[ContactKind.email.value] = EmailChannel(settings)
    if settings.fcm_service_account_file or settings.fcm_service_account_json:
        channels[ContactKind.fcm.value] = FcmChannel(settings)
    if settings.webpush_vapid_private_key is not None:
        channels[ContactKind.webpush.value] = WebPushChannel(settings)
    if settings.sms_account_sid or settings.sms_auth_token is not None:
        channels[ContactKind.phone.value] = SmsChannel(settings)
    # X replies carry their account's token name (the city file's credentials), so the
    # adapter needs no settings of its own; outside production only when pointed somewhere.
    if settings.x_api_base_url or settings.env == "production":
        channels[ContactKind.x.value] = XChannel(settings)
    # Facebook, WhatsApp, Mastodon, Bluesky: each answer names its account (and, outside
    # production, goes to the sink unless that account names a base URL).
    for kind in THREAD_KINDS:
        channels[kind] = ThreadChannel(kind, settings)
    return channels


def channels_for(settings: Settings, environ: Mapping[str, str] | None = None) -> Channels:
    """One adapter per contact kind it can deliver to, and each city's own on demand; the
    caller closes them (``close_all``)."""
    channels = configured(settings)
    if settings.env != "production":
        for kind in ContactKind:
            if kind.value not in channels:
                channels[kind.value] = SinkChannel.from_settings(kind.value, settings)
    return Channels(settings, channels, os.environ if environ is None else environ)


log = logging.getLogger("kerbside.channels")


class Channels(Mapping[str, Channel]):
    """The deployment's adapters by contact kind, and the cities' own (``for_city``)."""

    def __init__(
        self, settings: Settings, deployment: dict[str, Channel], environ: Mapping[str, str]
    ) -> None:
        self._settings = settings
        self._deployment = deployment
        self._environ = environ
        # (city, kind) -> (the section it was built from, its adapter)
        self._cities: dict[tuple[str, str], tuple[Any, Channel]] = {}
        self._retired: list[Channel] = []  # replaced while a batch may still use them

    def __getitem__(self, kind: str) -> Channel:
        return self._deployment[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._deployment)

    def __len__(self) -> int:
        return len(self._deployment)

    def for_city(self, kind: str, city: str | None, section: Any) -> Channel | None:
        """The adapter for ``kind`` contacts of ``city`` (its ``channels`` column)."""
        part = section.get(SECTION_OF_KIND.get(kind, "")) if isinstance(section, dict) else None
        if city is None or not part:
            return self._deployment.get(kind)
        key = (city, kind)
        cached = self._cities.get(key)
        if cached is not None and cached[0] == part:
            return cached[1]
        channel = self._build(kind, city, section)
        if cached is not None:
            self._retired.append(cached[1])
        self._cities[key] = (part, channel)
        return channel

    def _build(self, kind: str, city: str, section: dict[str, Any]) -> Channel:
        try:
            accounts = CityChannels.model_validate(section)
        except ValidationError as error:  # written by an older or newer format: say so
            return Unusable(
                kind, f"city {city}: channels section is invalid ({error.error_count()} errors)"
            )
        found = account_for(kind, city, accounts, self._settings, self._environ)
        if found is None:
            return self._deployment.get(kind) or Unusable(kind, f"no channel for {kind} contacts")
        if isinstance(found, Problem):
            log.warning(
                "a city's channel cannot send",
                extra={"city": city, "kind": kind, "why": found.message},
            )
            return Unusable(kind, found.message)
        try:
            return _adapter(kind, found, self._deployment.get(kind))
        except ValueError as error:  # e.g. a service account key that is not one
            reason = f"city {city}: the {kind} account is unusable ({error})"
            log.warning(
                "a city's channel cannot send", extra={"city": city, "kind": kind, "why": reason}
            )
            return Unusable(kind, reason)

    async def close(self) -> None:
        for channel in [
            *self._deployment.values(),
            *(c for _, c in self._cities.values()),
            *self._retired,
        ]:
            await channel.close()
        self._cities.clear()
        self._retired.clear()


def pick(
    channels: Mapping[str, Channel], kind: str, city: str | None, section: Any
) -> Channel | None:
    """The adapter for one message: the city's own where ``channels`` knows cities."""
    if isinstance(channels, Channels):
        return channels.for_city(kind, city, section)
    return channels.get(kind)


def _adapter(kind: str, account: Account, deployment: Channel | None) -> Channel:
    settings = account.settings
    if kind == ContactKind.email.value:
        return EmailChannel(
            settings,
            reply_to=account.extra.get("reply_to"),
            implicit_tls=bool(account.extra.get("implicit_tls")),
        )
    if kind == ContactKind.phone.value:
        return SmsChannel(settings)
    if kind == ContactKind.fcm.value:
        return FcmChannel(settings)
    if kind == ContactKind.webpush.value:
        return WebPushChannel(settings)
    if kind == ContactKind.webhook.value:
        return PartnerWebhooks(WebhookChannel(settings), account.extra["secrets"])
    raise ValueError(f"no city accounts for {kind} contacts")


class Unusable:
    """A city's channel that cannot send: every message gets the reason (retried, so a fixed
    environment and a restarted worker send it; dead after the last attempt)."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason

    async def deliver(self, message: Message) -> Outcome:
        return RetryLater(self.reason)

    async def close(self) -> None:
        return None


class PartnerWebhooks:
    """Webhooks whose URL is one of the city's partners are signed with the partner's secret
    from the environment; any other webhook contact with its own."""

    kind = ContactKind.webhook.value

    def __init__(self, inner: WebhookChannel, secrets: Mapping[str, SecretStr | Problem]) -> None:
        self._inner = inner
        self._secrets = secrets

    async def deliver(self, message: Message) -> Outcome:
        secret = self._secrets.get(message.address)
        if isinstance(secret, Problem):
            return RetryLater(secret.message)
        if secret is not None:
            data = {**message.contact_data, "secret": secret.get_secret_value()}
            message = dataclasses.replace(message, contact_data=data)
        return await self._inner.deliver(message)

    async def close(self) -> None:
        await self._inner.close()


def unavailable(channels: Mapping[str, Channel]) -> list[str]:
    """The contact kinds nothing can deliver to."""
    return [kind.value for kind in ContactKind if kind.value not in channels]


async def close_all(channels: Mapping[str, Channel]) -> None:
    if isinstance(channels, Channels):
        await channels.close()
        return
    for channel in channels.values():
        await channel.close()
