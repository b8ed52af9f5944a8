"""Facebook Page and Messenger, through the Graph API: the webhook in, answers out.

In: one webhook URL takes the Page's ``feed`` changes (posts and comments on the Page) and
Messenger events. ``meta_webhook`` checks the subscription handshake and the signature over
the raw body; ``parse`` turns a verified delivery into ``InboundPost``\\ s, ``platform``
"facebook" for the feed and "messenger" for messages. Meta retries and batches deliveries,
so the same post can come twice: its ``post_id`` (the comment's or post's id, the message's
``mid``) is the same each time, and the pipeline's unique (platform, post id) keeps one.

Out (``FacebookChannel``, contact kind ``facebook``): an answer to a feed post or comment is a
public comment reply (``POST /{comment-id}/comments``); anything else is a Messenger message
to the page-scoped id (``POST /{page-id}/messages``). Messenger allows free text within 24
hours of the person's last message (``last_inbound_at``); after that only with a message tag
the city has chosen (``FacebookAccount.update_tag``, e.g. ``ACCOUNT_UPDATE``: whether a status
update fits is a policy judgement), or through a notification-messages token the person opted
in to; otherwise the message fails without being sent (the platform would refuse it with code
10 / 2018278, which is handled the same way).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeGuard

import httpx

from app.channels import replies, transport
from app.channels.base import Delivered, Failed, Message, Outcome, RetryLater
from app.channels.polling import parse_time
from app.channels.posts import InboundPost
from app.core import clock
from app.settings import Settings

GRAPH_URL = "https://graph.facebook.com/v24.0"
MESSENGER_LIMIT = 2000  # characters of a text message
COMMENT_LIMIT = 8000
HUMAN_AGENT_WINDOW = timedelta(days=7)
# Graph error codes that mean "later": throttling of the app, the page or the user.
_THROTTLED = {4, 17, 32, 613, 80001, 80006}


@dataclass(frozen=True)
class FacebookAccount:
    """One city Page: its id, and the secrets given by the caller (never read from a file here)."""

    page_id: str
    access_token: str = field(repr=False)  # a Page access token (pages_messaging, manage)
    app_secret: str = field(default="", repr=False)  # signs the webhook deliveries
    verify_token: str = field(default="", repr=False)  # the subscription handshake's token
    base_url: str = GRAPH_URL
    update_tag: str | None = None  # message tag for updates after 24 h; None: do not send
    human_agent: bool = False  # an agent's own answer may use HUMAN_AGENT (7 days)


@dataclass(frozen=True)
class OptIn:
    """A person agreed to notification messages (the consented notice): send with ``token``."""

    page_id: str
    psid: str
    token: str = field(repr=False)
    payload: str | None
    expires_at: datetime | None


@dataclass(frozen=True)
class Referral:
    """A person opened the Page's conversation from one of our links (``m.me/<page>?ref=…``,
    a "Send to Messenger" button): the ``ref`` we wrote into the link, and their PSID."""

    page_id: str
    psid: str
    ref: str
    at: datetime


# -- in ----------------------------------------------------------------------------------------


def parse(document: Mapping[str, Any]) -> list[InboundPost]:
    """The posts, comments and messages in a verified delivery, in the order sent.

    Left out: reactions, removals, the Page's own echoes and delivery/read receipts (not
    posts addressed to the city), and entries that are not a Page's.
    """
    if document.get("object") != "page":
        return []
    posts: list[InboundPost] = []
    for entry in _list(document.get("entry")):
        page_id = str(entry.get("id", ""))
        for change in _list(entry.get("changes")):
            if change.get("field") == "feed" and isinstance(change.get("value"), Mapping):
                post = _feed_post(page_id, change["value"])
                if post is not None:
                    posts.append(post)
        for event in _list(entry.get("messaging")):
            post = _message(page_id, event)
            if post is not None:
                posts.append(post)
    return posts


def parse_optins(document: Mapping[str, Any]) -> list[OptIn]:
    """The notification-messages opt-ins in a verified delivery (Messenger ``optin`` events)."""
    found = []
    for entry in _list(document.get("entry")):
        for event in _list(entry.get("messaging")):
            optin = event.get("optin")
            if not isinstance(optin, Mapping) or optin.get("type") != "notification_messages":
                continue
            token = optin.get("notification_messages_token")
            sender = _id(event.get("sender"))
            if not token or not sender:
                continue
            expiry = optin.get("token_expiry_timestamp")
            found.append(
                OptIn(
                    page_id=str(entry.get("id", "")),
                    psid=sender,
                    token=str(token),
                    payload=optin.get("payload"),
                    expires_at=_millis(expiry) if isinstance(expiry, int) else None,
                )
            )
    return found


def parse_referrals(document: Mapping[str, Any]) -> list[Referral]:
    """The refs that came back in a verified delivery: a ``messaging_referrals`` event (the
    person already had a conversation), a Get Started ``postback`` carrying the referral (a
    new conversation), or a ``messaging_optins`` event of the Send to Messenger plugin. The
    checkbox plugin's ``user_ref`` is no PSID and is left out."""
    found = []
    for entry in _list(document.get("entry")):
        page_id = str(entry.get("id", ""))
        for event in _list(entry.get("messaging")):
            sender = _id(event.get("sender"))
            postback = event.get("postback")
            optin = event.get("optin")
            referral = event.get("referral")
            if isinstance(postback, Mapping) and isinstance(postback.get("referral"), Mapping):
                referral = postback["referral"]
            ref = None
            if isinstance(referral, Mapping):
                ref = referral.get("ref")
            elif isinstance(optin, Mapping) and optin.get("type") != "notification_messages":
                ref = optin.get("ref")
            if not sender or sender == page_id or not isinstance(ref, str) or not ref:
                continue
            timestamp = event.get("timestamp")
            at = _millis(timestamp) if isinstance(timestamp, int) else clock.now()
            found.append(Referral(page_id=page_id, psid=sender, ref=ref, at=at))
    return found


def _feed_post(page_id: str, value: Mapping[str, Any]) -> InboundPost | None:
    item = value.get("item")
    if item not in {"comment", "post", "status", "photo", "video"} or value.get("verb") != "add":
        return None
    author = _id(value.get("from"))
    post_id = value.get("comment_id") if item == "comment" else value.get("post_id")
    if not author or not post_id:
        return None
    media: list[str] = []
    # A photo post's image is its ``link``; a comment's attached image is its ``photo``.
    url = value.get("link" if item == "photo" else "photo")
    if isinstance(url, str) and url.startswith("https://"):
        media.append(url)
    media.extend(u for u in _list_str(value.get("photos")) if u.startswith("https://"))
    parent = value.get("parent_id")
    return InboundPost(
        platform="facebook",
        account=page_id,
        post_id=str(post_id),
        author_id=author,
        text=str(value.get("message") or ""),
        created_at=parse_time(value.get("created_time")) or clock.now(),
        raw=value,
        conversation_id=str(value.get("post_id")) if value.get("post_id") else None,
        in_reply_to_id=str(parent) if item == "comment" and parent else None,
        media_urls=tuple(dict.fromkeys(media)),
    )


def _message(page_id: str, event: Mapping[str, Any]) -> InboundPost | None:
    message = event.get("message")
    postback = event.get("postback")
    sender = _id(event.get("sender"))
    if not sender or sender == page_id:
        return None
    if isinstance(message, Mapping):
        if message.get("is_echo") or not message.get("mid"):
            return None
        mid = str(message["mid"])
        text = str(message.get("text") or "")
        quick = message.get("quick_reply")
        if isinstance(quick, Mapping) and not text:
            text = str(quick.get("payload") or "")
        reply_to = message.get("reply_to")
        in_reply_to = (
            str(reply_to["mid"]) if isinstance(reply_to, Mapping) and reply_to.get("mid") else None
        )
        media, coordinates = _attachments(message.get("attachments"))
    elif isinstance(postback, Mapping) and postback.get("mid"):
        # A button or menu tap: the payload is what the city's button said it means.
        mid = str(postback["mid"])
        text = str(postback.get("payload") or postback.get("title") or "")
        in_reply_to, media, coordinates = None, [], None
    else:
        return None
    timestamp = event.get("timestamp")
    return InboundPost(
        platform="messenger",
        account=page_id,
        post_id=mid,
        author_id=sender,
        text=text,
        created_at=_millis(timestamp) if isinstance(timestamp, int) else clock.now(),
        raw=event,
        conversation_id=f"{page_id}:{sender}",
        in_reply_to_id=in_reply_to,
        is_private=True,
        coordinates=coordinates,
        media_urls=tuple(media),
    )


def _attachments(value: Any) -> tuple[list[str], tuple[float, float] | None]:
    media: list[str] = []
    coordinates = None
    for attachment in _list(value):
        payload = attachment.get("payload")
        if not isinstance(payload, Mapping):
            continue
        if attachment.get("type") == "image" and isinstance(payload.get("url"), str):
            media.append(payload["url"])
        elif attachment.get("type") == "location":
            # Older clients share a pin as coordinates; newer ones no longer offer it.
            point = payload.get("coordinates")
            if isinstance(point, Mapping):
                lat, lon = point.get("lat"), point.get("long")
                if _number(lat) and _number(lon):
                    coordinates = (float(lon), float(lat))
    return media, coordinates


def reply_data(post: InboundPost) -> dict[str, Any]:
    """What the outbox row's ``data`` needs to answer ``post`` (see ``FacebookChannel``)."""
    data: dict[str, Any] = {"account": post.account, "platform": post.platform}
    if post.platform == "facebook":
        data["comment_id"] = post.post_id
    else:
        data["last_inbound_at"] = post.created_at.isoformat()
    return data


# -- out ---------------------------------------------------------------------------------------


class FacebookChannel:
    """Answers on a Page: comment replies and Messenger messages (contact kind ``facebook``).

    ``message.address`` is the person's page-scoped id; ``data``/``contact_data`` keys:
    ``account`` (the page id; optional with one account), ``comment_id`` (answer as a public
    comment reply), ``last_inbound_at`` (the messaging window), ``notification_messages_token``
    (an opt-in, after the window).
    """

    kind = "facebook"

    def __init__(
        self,
        accounts: Sequence[FacebookAccount],
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._accounts = {account.page_id: account for account in accounts}
        self._client = http or transport.client(settings)

    def _account(self, message: Message) -> FacebookAccount | None:
        page = replies.value(message, "account")
        if page is None and len(self._accounts) == 1:
            return next(iter(self._accounts.values()))
        return self._accounts.get(str(page))

    async def deliver(self, message: Message) -> Outcome:
        account = self._account(message)
        if account is None:
            return Failed("no Facebook page configured for this conversation")
        comment = replies.value(message, "comment_id")
        if comment:
            url = f"{account.base_url}/{comment}/comments"
            body: dict[str, Any] = {"message": replies.reply_text(message, COMMENT_LIMIT)}
        else:
            made = self.messenger_body(account, message)
            if isinstance(made, Failed):
                return made
            url, body = f"{account.base_url}/{account.page_id}/messages", made
        try:
            response = await self._client.post(
                url, json=body, headers={"Authorization": f"Bearer {account.access_token}"}
            )
        except httpx.HTTPError as error:
            return RetryLater(f"facebook {transport.describe(error)}")
        return outcome_of(response)

    def messenger_body(self, account: FacebookAccount, message: Message) -> dict[str, Any] | Failed:
        """The Send API request for ``message``, by the messaging window; Failed: do not send."""
        text = {"text": replies.reply_text(message, MESSENGER_LIMIT)}
        recipient = {"id": message.address}
        now = clock.now()
        if replies.within(message, now=now):
            kind = "RESPONSE" if message.event in replies.ANSWERS else "UPDATE"
            return {"recipient": recipient, "messaging_type": kind, "message": text}
        if (
            account.human_agent
            and message.event == "answer"
            and replies.within(message, HUMAN_AGENT_WINDOW, now=now)
        ):
            return {
                "recipient": recipient,
                "messaging_type": "MESSAGE_TAG",
                "tag": "HUMAN_AGENT",
                "message": text,
            }
        token = replies.value(message, "notification_messages_token")
        expires = parse_time(replies.value(message, "notification_messages_expire_at"))
        if token and (expires is None or expires > now):
            return {"recipient": {"notification_messages_token": str(token)}, "message": text}
        if account.update_tag:
            return {
                "recipient": recipient,
                "messaging_type": "MESSAGE_TAG",
                "tag": account.update_tag,
                "message": text,
            }
        return Failed("outside Messenger's 24-hour window, and no message tag or opt-in")

    async def close(self) -> None:
        await self._client.aclose()


def outcome_of(response: httpx.Response) -> Outcome:
    status = response.status_code
    document = transport.json_object(response)
    if 200 <= status < 300:
        sent = document.get("message_id") or document.get("id")
        return Delivered(provider_id=str(sent) if sent else None)
    error = document.get("error")
    error = error if isinstance(error, Mapping) else {}
    code, subcode = error.get("code"), error.get("error_subcode")
    reason = f"facebook {status} (code {code}, subcode {subcode})"
    if status == 429 or status >= 500 or code in _THROTTLED or error.get("is_transient"):
        return RetryLater(reason, after=transport.retry_after(response))
    if code == 10 and subcode == 2018278:
        return Failed(reason + ": outside the messaging window")
    if code == 551 or (code == 100 and subcode == 2018001):
        # The person blocked the page, left Messenger or never had a thread: stop writing.
        return Failed(reason + ": recipient unavailable", disable_contact=True)
    return Failed(reason)


# -- reading payloads --------------------------------------------------------------------------


def _list(value: Any) -> Iterable[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _list_str(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _id(value: Any) -> str | None:
    if isinstance(value, Mapping) and value.get("id") is not None:
        return str(value["id"])
    return None


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _millis(value: int) -> datetime:
    return parse_time(value / 1000) or clock.now()
