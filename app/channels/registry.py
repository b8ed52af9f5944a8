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
"""

from __future__ import annotations

from app.channels.base import Channel
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


def channels_for(settings: Settings) -> dict[str, Channel]:
    """One adapter per contact kind it can deliver to; the caller closes each (``close()``)."""
    channels = configured(settings)
    if settings.env != "production":
        for kind in ContactKind:
            if kind.value not in channels:
                channels[kind.value] = SinkChannel.from_settings(kind.value, settings)
    return channels


def unavailable(channels: dict[str, Channel]) -> list[str]:
    """The contact kinds nothing can deliver to."""
    return [kind.value for kind in ContactKind if kind.value not in channels]


async def close_all(channels: dict[str, Channel]) -> None:
    for channel in channels.values():
        await channel.close()
