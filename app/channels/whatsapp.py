"""WhatsApp Business Platform (Cloud API): the webhook in, media by id, answers out.

In: the webhook is Meta's (``meta_webhook``: the same handshake and ``X-Hub-Signature-256``
over the raw body). ``parse`` turns the ``messages`` of a verified delivery into
``InboundPost``\\ s (``platform`` "whatsapp", private): text, a shared location (coordinates;
a chosen place's name as the place hint), an image (its caption as text). An image has no URL
in the webhook, only a media id: the post's ``media_urls`` hold ``whatsapp-media:<id>``, and
``WhatsAppMedia.fetch`` turns that into the bytes and content type (the URL lookup, then the
download with the bearer token; the URL lives five minutes) for the photo pipeline.
``parse_statuses`` reads the delivery receipts (sent, delivered, read, failed).

Out (``WhatsAppChannel``, contact kind ``whatsapp``): free text only within 24 hours of the
person's last message (the customer-service window, from ``last_inbound_at``); after it, only
a pre-approved template (``WhatsAppAccount.update_template``: body parameters ``{{1}}`` the
ticket reference and ``{{2}}`` the link). Without a template the message fails unsent, as the
platform would refuse it (error 131047).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

import httpx

from app.channels import replies, transport
from app.channels.base import Delivered, Failed, Message, Outcome, RetryLater
from app.channels.media import Media, MediaHosts, MediaUnavailable, download
from app.channels.polling import parse_time
from app.channels.posts import InboundPost, PlaceHint
from app.core import clock
from app.settings import Settings

GRAPH_URL = "https://graph.facebook.com/v24.0"
MEDIA_SCHEME = "whatsapp-media:"
TEXT_LIMIT = 4096
MEDIA_LIMIT = 16 * 1024 * 1024  # larger than any photo the pipeline accepts
# Error codes that mean "later": rate limits (app, account, pair) and a busy platform.
_THROTTLED = {4, 80007, 130429, 131056, 131000, 131016, 133004}
_WINDOW_CLOSED = {131047}  # re-engagement: more than 24 hours since the person wrote
_UNREACHABLE = {131026, 131021}  # not a WhatsApp user, or the recipient is the sender


@dataclass(frozen=True)
class WhatsAppAccount:
    """One city number (its ``phone_number_id``), with the secrets given by the caller."""

    phone_number_id: str
    access_token: str = field(repr=False)
    app_secret: str = field(default="", repr=False)
    verify_token: str = field(default="", repr=False)
    base_url: str = GRAPH_URL
    update_template: str | None = None  # an approved "utility" template for updates
    template_languages: Mapping[str, str] = field(
        default_factory=dict
    )  # "nl" → "nl", "en" → "en_GB"


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt for a message we sent (``provider_id`` of the outbox row)."""

    message_id: str
    status: str  # sent, delivered, read, failed
    at: datetime | None
    errors: tuple[int, ...] = ()


# -- in ----------------------------------------------------------------------------------------


def parse(document: Mapping[str, Any]) -> list[InboundPost]:
    """The messages in a verified delivery: text, location and image (others: ignored)."""
    if document.get("object") != "whatsapp_business_account":
        return []
    posts = []
    for value in _values(document):
        number = str(_map(value.get("metadata")).get("phone_number_id", ""))
        for message in _list(value.get("messages")):
            post = _message(number, message)
            if post is not None:
                posts.append(post)
    return posts


def parse_statuses(document: Mapping[str, Any]) -> list[Receipt]:
    found = []
    for value in _values(document):
        for status in _list(value.get("statuses")):
            if not status.get("id") or not status.get("status"):
                continue
            codes = tuple(
                int(e["code"])
                for e in _list(status.get("errors"))
                if isinstance(e.get("code"), int)
            )
            found.append(
                Receipt(
                    message_id=str(status["id"]),
                    status=str(status["status"]),
                    at=parse_time(status.get("timestamp")),
                    errors=codes,
                )
            )
    return found


def _message(number: str, message: Mapping[str, Any]) -> InboundPost | None:
    kind = message.get("type")
    sender, message_id = message.get("from"), message.get("id")
    if not sender or not message_id:
        return None
    text = ""
    coordinates = None
    place = None
    media: tuple[str, ...] = ()
    if kind == "text":
        text = str(_map(message.get("text")).get("body") or "")
    elif kind == "location":
        location = _map(message.get("location"))
        lat, lon = location.get("latitude"), location.get("longitude")
        if not (_number(lat) and _number(lon)):
            return None
        coordinates = (float(lon), float(lat))
        name = " ".join(str(location[k]) for k in ("name", "address") if location.get(k))
        place = PlaceHint(name) if name else None
    elif kind == "image":
        image = _map(message.get("image"))
        if not image.get("id"):
            return None
        text = str(image.get("caption") or "")
        media = (MEDIA_SCHEME + str(image["id"]),)
    elif kind == "button":
        text = str(_map(message.get("button")).get("text") or "")
    elif kind == "interactive":
        interactive = _map(message.get("interactive"))
        chosen = _map(interactive.get("button_reply")) or _map(interactive.get("list_reply"))
        text = str(chosen.get("id") or chosen.get("title") or "")
    else:
        return None  # audio, video, stickers, reactions, contacts: not a report's content
    context = _map(message.get("context"))
    return InboundPost(
        platform="whatsapp",
        account=number,
        post_id=str(message_id),
        author_id=str(sender),
        text=text,
        created_at=parse_time(message.get("timestamp")) or clock.now(),
        raw=message,
        conversation_id=f"{number}:{sender}",
        in_reply_to_id=str(context["id"]) if context.get("id") else None,
        is_private=True,
        coordinates=coordinates,
        place=place,
        media_urls=media,
    )


def media_id(url: str) -> str | None:
    """The media id of a ``whatsapp-media:`` reference (None: not one)."""
    if url.startswith(MEDIA_SCHEME) and len(url) > len(MEDIA_SCHEME):
        return url[len(MEDIA_SCHEME) :]
    return None


def reply_data(post: InboundPost) -> dict[str, Any]:
    """What the outbox row's ``data`` needs to answer ``post``."""
    return {
        "account": post.account,
        "platform": "whatsapp",
        "context_message_id": post.post_id,
        "last_inbound_at": post.created_at.isoformat(),
    }


class WhatsAppMedia:
    """Fetches inbound media by id: ``GET /{media-id}`` for its URL, then the bytes."""

    def __init__(
        self, account: WhatsAppAccount, settings: Settings, *, http: httpx.AsyncClient | None = None
    ) -> None:
        self._account = account
        self._client = http or transport.client(settings)
        self._deadline = settings.social_photo_timeout_seconds

    async def fetch(self, reference: str) -> Media:
        identifier = media_id(reference) or reference
        auth = {"Authorization": f"Bearer {self._account.access_token}"}
        try:
            found = await self._client.get(f"{self._account.base_url}/{identifier}", headers=auth)
        except httpx.HTTPError as error:
            raise MediaUnavailable(f"media {transport.describe(error)}", retry=True) from None
        if found.status_code != 200:
            raise MediaUnavailable(
                f"media lookup {found.status_code}",
                retry=found.status_code == 429 or found.status_code >= 500,
            )
        url = transport.json_object(found).get("url")
        if not isinstance(url, str):
            raise MediaUnavailable("media lookup without a URL", retry=False)
        # The URL Meta hands out is on its own media host (or the configured API's): the
        # token goes nowhere else.
        return await download(
            self._client,
            url,
            MediaHosts.of("whatsapp", [self._account.base_url]),
            max_bytes=MEDIA_LIMIT,
            deadline=self._deadline,
            headers=auth,
        )

    async def close(self) -> None:
        await self._client.aclose()


# -- out ---------------------------------------------------------------------------------------


class WhatsAppChannel:
    """Answers on WhatsApp (contact kind ``whatsapp``; ``message.address`` is the wa_id).

    ``data``/``contact_data`` keys: ``account`` (the city's phone_number_id; optional with one
    account), ``last_inbound_at`` (the window), ``context_message_id`` (quote the message
    answered, inside the window).
    """

    kind = "whatsapp"

    def __init__(
        self,
        accounts: Sequence[WhatsAppAccount],
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._accounts = {account.phone_number_id: account for account in accounts}
        self._client = http or transport.client(settings)

    def _account(self, message: Message) -> WhatsAppAccount | None:
        number = replies.value(message, "account")
        if number is None and len(self._accounts) == 1:
            return next(iter(self._accounts.values()))
        return self._accounts.get(str(number))

    def body(self, account: WhatsAppAccount, message: Message) -> dict[str, Any] | Failed:
        """The request for ``message`` by the window: free text, a template, or Failed."""
        base: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.address,
        }
        if window_open(message):
            context = replies.value(message, "context_message_id")
            if context and message.event in replies.ANSWERS:
                base["context"] = {"message_id": str(context)}
            text = replies.reply_text(message, TEXT_LIMIT)
            return {**base, "type": "text", "text": {"preview_url": False, "body": text}}
        if not account.update_template:
            return Failed("outside WhatsApp's 24-hour window, and no template configured")
        if not message.ticket_reference:
            return Failed("outside WhatsApp's 24-hour window: a template needs a ticket")
        language = account.template_languages.get(message.language, message.language)
        parameters = [{"type": "text", "text": message.ticket_reference}]
        parameters.append({"type": "text", "text": message.link or "-"})
        return {
            **base,
            "type": "template",
            "template": {
                "name": account.update_template,
                "language": {"code": language},
                "components": [{"type": "body", "parameters": parameters}],
            },
        }

    async def deliver(self, message: Message) -> Outcome:
        account = self._account(message)
        if account is None:
            return Failed("no WhatsApp number configured for this conversation")
        body = self.body(account, message)
        if isinstance(body, Failed):
            return body
        try:
            response = await self._client.post(
                f"{account.base_url}/{account.phone_number_id}/messages",
                json=body,
                headers={"Authorization": f"Bearer {account.access_token}"},
            )
        except httpx.HTTPError as error:
            return RetryLater(f"whatsapp {transport.describe(error)}")
        return outcome_of(response)

    async def close(self) -> None:
        await self._client.aclose()


def window_open(message: Message) -> bool:
    """Within 24 hours of the person's last message, unless the platform already refused a
    free message in that window (a failed receipt with 131047: ``window_closed_for``)."""
    closed_for = replies.value(message, "window_closed_for")
    if closed_for is not None and closed_for == replies.value(message, "last_inbound_at"):
        return False
    return replies.within(message)


def receipt_outcome(receipt: Receipt) -> Outcome | None:
    """What a ``failed`` receipt means for the message, as if the send had been refused
    (None for the other receipts). ``window_closed`` tells the caller a template may do."""
    if receipt.status != "failed":
        return None
    codes = set(receipt.errors)
    reason = f"whatsapp receipt failed (codes {', '.join(map(str, sorted(codes))) or 'none'})"
    if codes & _THROTTLED:
        return RetryLater(reason)
    if codes & _UNREACHABLE:
        return Failed(reason + ": recipient unreachable", disable_contact=True)
    if codes & _WINDOW_CLOSED:
        return Failed(reason + ": outside the customer-service window")
    return Failed(reason)


def window_closed(receipt: Receipt) -> bool:
    return bool(set(receipt.errors) & _WINDOW_CLOSED)


def outcome_of(response: httpx.Response) -> Outcome:
    status = response.status_code
    document = transport.json_object(response)
    if 200 <= status < 300:
        sent = [m.get("id") for m in _list(document.get("messages")) if m.get("id")]
        return Delivered(provider_id=str(sent[0]) if sent else None)
    error = _map(document.get("error"))
    code = error.get("code")
    reason = f"whatsapp {status} (code {code})"
    if status == 429 or status >= 500 or code in _THROTTLED:
        return RetryLater(reason, after=transport.retry_after(response))
    if code in _WINDOW_CLOSED:
        return Failed(reason + ": outside the customer-service window")
    if code in _UNREACHABLE:
        return Failed(reason + ": recipient unreachable", disable_contact=True)
    return Failed(reason)


# -- reading payloads --------------------------------------------------------------------------


def _values(document: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for entry in _list(document.get("entry")):
        for change in _list(entry.get("changes")):
            if change.get("field") == "messages" and isinstance(change.get("value"), Mapping):
                yield change["value"]


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
