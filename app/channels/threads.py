"""Answers in a thread on Facebook, WhatsApp, Mastodon and Bluesky, whichever city account the
person wrote to.

Those adapters take their accounts when made (``FacebookChannel([accounts], settings)``), but
the accounts live in each city file, which the worker does not read at start. So each answer
carries its account, as X's do: the pipeline writes ``reply_to`` (the consent's evidence, or
the reply row) with the platform's ``reply_data`` keys, the account, its base URL, its
options (message tag, template) and the *names* of the environment variables holding its
secrets. ``ThreadChannel`` reads the secrets when it sends, makes one adapter per account
(kept, with its HTTP client and, for Bluesky, its session: logins are rate limited), and
hands it the message with ``reply_to``'s keys in its ``data``.

Outside production, an answer whose account names no base URL, or the API's own demo
platform (``/demo/``), goes to the local sink: the demo and a developer's machine never write
to a real platform by accident, and the demo's answers are in ``GET /v1/demo/outbox``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from app.channels.base import Channel, Failed, Message, Outcome, RetryLater
from app.channels.bluesky import SERVICE_URL as BLUESKY_URL
from app.channels.bluesky import BlueskyAccount, BlueskyChannel, BlueskyClient
from app.channels.facebook import GRAPH_URL, FacebookAccount, FacebookChannel
from app.channels.mastodon import MastodonAccount, MastodonChannel, MastodonClient
from app.channels.sink import SinkChannel
from app.channels.whatsapp import WhatsAppAccount, WhatsAppChannel
from app.settings import Settings

KINDS = ("facebook", "whatsapp", "mastodon", "bluesky")
# What the adapter needs to send, by contact kind: the secret's name in ``env``.
_SENDING_SECRET = {
    "facebook": "access_token",
    "whatsapp": "access_token",
    "mastodon": "access_token",
    "bluesky": "app_password",
}


def _secret(target: Mapping[str, Any], name: str) -> tuple[str, str | None]:
    env = target.get("env")
    variable = str(env.get(name) or "") if isinstance(env, Mapping) else ""
    return variable, (os.environ.get(variable) if variable else None)


class ThreadChannel:
    """The outbound channel of one contact kind (``facebook``, ``whatsapp``, ``mastodon``,
    ``bluesky``), for every city account of that platform."""

    def __init__(self, kind: str, settings: Settings) -> None:
        if kind not in KINDS:
            raise ValueError(f"no thread channel for {kind!r}")
        self.kind = kind
        self.settings = settings
        self._adapters: dict[tuple[str, ...], Channel] = {}
        self._sink: SinkChannel | None = None

    def _adapter(self, target: Mapping[str, Any], secret: str) -> Channel:
        account = str(target.get("account") or "")
        base = target.get("base_url")
        key = (account, str(base or ""), secret)
        found = self._adapters.get(key)
        if found is not None:
            return found
        made: Channel
        if self.kind == "facebook":
            made = FacebookChannel(
                [
                    FacebookAccount(
                        page_id=account,
                        access_token=secret,
                        base_url=str(base or GRAPH_URL),
                        update_tag=target.get("update_tag"),
                        human_agent=bool(target.get("human_agent")),
                    )
                ],
                self.settings,
            )
        elif self.kind == "whatsapp":
            languages = target.get("template_languages")
            made = WhatsAppChannel(
                [
                    WhatsAppAccount(
                        phone_number_id=account,
                        access_token=secret,
                        base_url=str(base or GRAPH_URL),
                        update_template=target.get("update_template"),
                        template_languages=dict(languages)
                        if isinstance(languages, Mapping)
                        else {},
                    )
                ],
                self.settings,
            )
        elif self.kind == "mastodon":
            made = MastodonChannel(
                [
                    MastodonClient(
                        MastodonAccount(base_url=str(base), access_token=secret, handle=account),
                        self.settings,
                    )
                ]
            )
        else:
            made = BlueskyChannel(
                [
                    BlueskyClient(
                        BlueskyAccount(
                            identifier=account,
                            app_password=secret,
                            base_url=str(base or BLUESKY_URL),
                        ),
                        self.settings,
                    )
                ]
            )
        self._adapters[key] = made
        return made

    async def deliver(self, message: Message) -> Outcome:
        target = message.data.get("reply_to")
        if not isinstance(target, Mapping) or not target.get("account"):
            return Failed(f"no {self.kind} conversation to answer in (reply_to)")
        base = str(target.get("base_url") or "")
        if self.settings.env != "production" and (not base or "/demo/" in base):
            if self._sink is None:
                self._sink = SinkChannel.from_settings(self.kind, self.settings)
            return await self._sink.deliver(message)
        if self.kind == "mastodon" and not target.get("base_url"):
            return Failed("a Mastodon account needs its server's URL (base_url)")
        variable, secret = _secret(target, _SENDING_SECRET[self.kind])
        if not secret:
            return RetryLater(f"the account's secret ({variable or 'unnamed'}) is not set")
        # The adapters read their keys from ``data``, then the contact's data (the messaging
        # window's last_inbound_at is kept current there).
        data = {**message.data, **{k: v for k, v in target.items() if k != "env"}}
        return await self._adapter(target, secret).deliver(replace(message, data=data))

    async def close(self) -> None:
        for adapter in self._adapters.values():
            await adapter.close()
        self._adapters.clear()
        if self._sink is not None:
            await self._sink.close()
