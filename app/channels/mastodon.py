"""Mastodon: the city account's mentions in, replies in the thread out.

In (``MastodonClient.mentions``): poll ``GET /api/v1/notifications?types[]=mention`` with
``min_id`` (the newest notification already read): the server answers the page just after it,
and the ``Link`` header's ``rel="prev"`` leads on to newer pages, until one comes back empty.
The first poll of an account (no cursor) reads only the newest page. A 429, or a remaining
budget of zero (``X-RateLimit-Remaining``; ``X-RateLimit-Reset`` is an ISO time), stops the
poll with what was read and how long to wait. Content is HTML: it becomes plain text.
Statuses carry no coordinates, and media attachments come as URLs (``media_urls``).

Status ids are per server, so a post's ``post_id`` is ``<host>:<id>`` (the same form for
``in_reply_to_id`` and for the id of a reply we send), unique across the cities' servers.

Out (``MastodonChannel``, contact kind ``mastodon``): ``POST /api/v1/statuses`` with
``in_reply_to_id``, the author's ``@acct`` first (so they are notified), a visibility never
wider than theirs (public → unlisted, which stays out of the timelines; unlisted → unlisted;
followers-only and direct → direct), and an ``Idempotency-Key`` from the outbox row, so a
retry after an unknown outcome does not post twice. A notice on a linked account
(``notice`` in the target, ``app.linking``) is a ``direct`` status of its own that mentions
the person's ``@user@instance``, with the same key.

Linking (``register_app``, ``authorize_url``, ``link_identity``): OAuth 2 authorization code
with PKCE (S256, Mastodon 4.3+) on the resident's server (the city account's, or their own,
where our app is registered once with ``POST /api/v1/apps``), scope ``profile`` (the
account's identity only); the person's token is revoked as soon as their identity is read:
we never act as them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.channels import replies, transport
from app.channels.base import Delivered, Failed, Message, Outcome, RetryLater
from app.channels.oauth import Identity, LinkRefused, authorize_query
from app.channels.polling import Polled, parse_time, wait_from
from app.channels.posts import InboundPost
from app.core import clock
from app.settings import Settings

PAGE_SIZE = 80  # the server's maximum
MAX_PAGES = 20  # per poll: a larger backlog is read on the next polls
STATUS_LIMIT = 500  # characters, the default server limit
_REPLY_VISIBILITY = {"public": "unlisted", "unlisted": "unlisted", "private": "direct"}
# Mastodon 4.3's narrowest scope: verify_credentials and nothing else.
LINK_SCOPE = "profile"
# No redirect page of our own: the server shows the code for the citizen's app to send us.
OUT_OF_BAND = "urn:ietf:wg:oauth:2.0:oob"
# A username as Mastodon allows it; anything else from a server goes into no status of ours.
_USERNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?$")
# Client credentials as a server issues them (Mastodon: 43 URL-safe characters).
_CREDENTIAL = re.compile(r"^[A-Za-z0-9._~+/=-]{1,256}$")


@dataclass(frozen=True)
class MastodonAccount:
    """One city account on its server: the server's URL and an application token."""

    base_url: str  # e.g. https://social.overheid.nl
    access_token: str = field(repr=False)  # scopes read:notifications, write:statuses
    handle: str = ""  # the account's acct, e.g. gemeente@social.overheid.nl

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc


# -- in ----------------------------------------------------------------------------------------


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "p" and self.parts:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def plain_text(content: str) -> str:
    """A status's HTML as the text a person reads (mentions as ``@user``, links as shown)."""
    parser = _Text()
    parser.feed(content)
    parser.close()
    text = html.unescape("".join(parser.parts))
    return re.sub(r"[ \t]+\n", "\n", text).strip()


def to_post(notification: Mapping[str, Any], account: MastodonAccount) -> InboundPost | None:
    status = notification.get("status")
    if notification.get("type") != "mention" or not isinstance(status, Mapping):
        return None
    author = _map(status.get("account"))
    if not status.get("id") or not author.get("id"):
        return None
    media = tuple(
        str(a.get("url"))
        for a in _list(status.get("media_attachments"))
        if a.get("type") == "image" and isinstance(a.get("url"), str)
    )
    alt = " ".join(
        str(a["description"])
        for a in _list(status.get("media_attachments"))
        if a.get("description")
    )
    text = plain_text(str(status.get("content") or ""))
    if status.get("spoiler_text"):
        text = f"{status['spoiler_text']}\n{text}"
    if alt:
        text = f"{text}\n{alt}"  # the alt text often says where ("the bench by the pond")
    reply_to = status.get("in_reply_to_id")
    return InboundPost(
        platform="mastodon",
        account=account.handle or account.host,
        post_id=f"{account.host}:{status['id']}",
        author_id=f"{account.host}:{author['id']}",
        text=text,
        created_at=parse_time(status.get("created_at")) or clock.now(),
        raw=notification,
        author_handle=str(author.get("acct") or "") or None,
        in_reply_to_id=f"{account.host}:{reply_to}" if reply_to else None,
        is_repost=status.get("reblog") is not None,
        is_private=status.get("visibility") in {"direct", "private"},
        lang=status.get("language") if isinstance(status.get("language"), str) else None,
        media_urls=media,
    )


def next_link(header: str | None, rel: str) -> str | None:
    """The URL with ``rel`` in an HTTP ``Link`` header (RFC 8288)."""
    for part in (header or "").split(","):
        match = re.match(r"\s*<([^>]*)>\s*;(.*)", part)
        if match and re.search(rf'rel="?{rel}"?(\s|;|$)', match.group(2)):
            return match.group(1)
    return None


def reply_data(post: InboundPost) -> dict[str, Any]:
    """What the outbox row's ``data`` needs to answer ``post``."""
    status = _map(post.raw.get("status"))
    return {
        "account": post.account,
        "platform": "mastodon",
        "in_reply_to_id": str(status.get("id", post.post_id.rpartition(":")[2])),
        "visibility": str(status.get("visibility") or "public"),
        "mention": post.author_handle,
        "language": post.lang,
    }


def reply_visibility(original: str) -> str:
    """Never wider than the original; a public thread's answer stays off the timelines."""
    return _REPLY_VISIBILITY.get(original, "direct")


class MastodonClient:
    """Reads one account's mentions (``mentions``) and posts its replies (``reply``)."""

    def __init__(
        self, account: MastodonAccount, settings: Settings, *, http: httpx.AsyncClient | None = None
    ) -> None:
        self.account = account
        self._client = http or transport.client(settings)
        self._auth = {"Authorization": f"Bearer {account.access_token}"}

    async def mentions(self, cursor: str | None) -> Polled:
        """The mentions after ``cursor`` (a notification id), oldest first, and the new cursor."""
        url: str | None = f"{self.account.base_url}/api/v1/notifications"
        params: dict[str, Any] | None = {"types[]": "mention", "limit": PAGE_SIZE}
        if cursor is not None and params is not None:
            params["min_id"] = cursor
        newest = cursor
        posts: list[InboundPost] = []
        for _ in range(MAX_PAGES):
            assert url is not None
            try:
                response = await self._client.get(url, params=params, headers=self._auth)
            except httpx.HTTPError as error:
                return Polled(tuple(posts), newest, error=f"mastodon {transport.describe(error)}")
            if response.status_code == 429:
                wait = wait_from(response, "X-RateLimit-Reset")
                return Polled(tuple(posts), newest, wait_seconds=wait, error="mastodon 429")
            if response.status_code != 200:
                return Polled(tuple(posts), newest, error=f"mastodon {response.status_code}")
            try:
                page = response.json()
            except ValueError:
                return Polled(tuple(posts), newest, error="mastodon answered without JSON")
            notes = sorted(_list(page), key=lambda n: _as_int(n.get("id")))
            if not notes:
                break
            for note in notes:
                post = to_post(note, self.account)
                if post is not None:
                    posts.append(post)
            if newest is None or _as_int(notes[-1].get("id")) > _as_int(newest):
                newest = str(notes[-1].get("id"))
            if response.headers.get("X-RateLimit-Remaining") == "0":
                wait = wait_from(response, "X-RateLimit-Reset")
                return Polled(tuple(posts), newest, wait_seconds=wait)
            if cursor is None:
                break  # the first poll takes the newest page as its starting point
            url, params = next_link(response.headers.get("Link"), "prev"), None
            if url is None:
                break
        return Polled(tuple(posts), newest)

    async def notice(self, message: Message) -> Outcome:
        """A ``direct`` status from the city account to a linked account (``mention``)."""
        mention = replies.value(message, "mention")
        if not mention:
            return Failed("a Mastodon notice needs the linked account's @user@instance")
        form: dict[str, Any] = {
            "status": replies.reply_text(message, STATUS_LIMIT, prefix=f"@{mention} "),
            "visibility": "direct",
            "language": message.language,
        }
        return await self._post_status(message, form)

    async def reply(self, message: Message) -> Outcome:
        in_reply_to = replies.value(message, "in_reply_to_id")
        if not in_reply_to:
            return Failed("a Mastodon answer needs the status it answers (in_reply_to_id)")
        mention = replies.value(message, "mention")
        prefix = f"@{mention} " if mention else ""
        original = str(replies.value(message, "visibility") or "public")
        form: dict[str, Any] = {
            "status": replies.reply_text(message, STATUS_LIMIT, prefix=prefix),
            "in_reply_to_id": str(in_reply_to).rpartition(":")[2],
            "visibility": reply_visibility(original),
            "language": message.language,
        }
        return await self._post_status(message, form)

    async def _post_status(self, message: Message, form: dict[str, Any]) -> Outcome:
        headers = {**self._auth, "Idempotency-Key": f"kerbside-outbox-{message.id}"}
        try:
            response = await self._client.post(
                f"{self.account.base_url}/api/v1/statuses", json=form, headers=headers
            )
        except httpx.HTTPError as error:
            return RetryLater(f"mastodon {transport.describe(error)}")
        status = response.status_code
        if 200 <= status < 300:
            sent = transport.json_object(response).get("id")
            return Delivered(provider_id=f"{self.account.host}:{sent}" if sent else None)
        if status == 429 or status >= 500:
            return RetryLater(f"mastodon {status}", after=wait_from(response, "X-RateLimit-Reset"))
        if status == 404:
            return Failed("mastodon 404: the status answered is gone or not visible")
        return Failed(f"mastodon {status}")

    async def close(self) -> None:
        await self._client.aclose()


class MastodonChannel:
    """Answers on Mastodon (contact kind ``mastodon``); ``data`` from ``reply_data``."""

    kind = "mastodon"

    def __init__(self, clients: Sequence[MastodonClient]) -> None:
        self._clients = {c.account.handle or c.account.host: c for c in clients}

    async def deliver(self, message: Message) -> Outcome:
        account = replies.value(message, "account")
        client = self._clients.get(str(account))
        if client is None and account is None and len(self._clients) == 1:
            client = next(iter(self._clients.values()))
        if client is None:
            return Failed("no Mastodon account configured for this conversation")
        if replies.value(message, "notice"):
            return await client.notice(message)
        return await client.reply(message)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()


# -- linking a citizen's account (app.linking) ---------------------------------------------------


@dataclass(frozen=True)
class OAuthClient:
    """Our application on a Mastodon server: the city account's (registered in its
    Development settings, credentials from the city file) or a resident's own
    (``register_app`` at the first linking there, kept by ``app.linking``)."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str = OUT_OF_BAND


@dataclass(frozen=True)
class Registered:
    """Our application as a server registered it."""

    client_id: str
    client_secret: str = field(repr=False)


async def register_app(
    http: httpx.AsyncClient, base_url: str, *, name: str, redirect_uri: str, website: str
) -> Registered:
    """Register our application on a Mastodon server, as every Mastodon client does on a
    server it has not met (``POST /api/v1/apps``). ``LinkRefused`` when the server does not
    answer, or answers with no application (not Mastodon, or older than 4.3: no ``profile``
    scope)."""
    try:
        answer = await http.post(
            f"{base_url}/api/v1/apps",
            data={
                "client_name": name,
                "redirect_uris": redirect_uri,
                "scopes": LINK_SCOPE,
                "website": website,
            },
        )
    except httpx.HTTPError as error:
        raise LinkRefused(f"it did not answer: {transport.describe(error)}") from None
    app = transport.json_object(answer)
    client_id, client_secret = app.get("client_id"), app.get("client_secret")
    if (
        answer.status_code != 200
        or not isinstance(client_id, str)
        or not isinstance(client_secret, str)
        or not _CREDENTIAL.match(client_id)
        or not _CREDENTIAL.match(client_secret)
    ):
        raise LinkRefused(
            f"it registered no application (HTTP {answer.status_code}): "
            "not a Mastodon server, or older than Mastodon 4.3"
        )
    return Registered(client_id, client_secret)


async def app_known(http: httpx.AsyncClient, client: OAuthClient) -> bool:
    """Whether the server still knows our app: Mastodon deletes an app that holds no token
    a day after it was made (``Vacuum::ApplicationsVacuum``; ours are revoked at once),
    and an admin may remove it, after which its authorization page turns residents away.
    Asked with the client credentials grant (an app token, revoked at once); false only when
    the server says the client is unknown (401), true when it cannot tell (a server that
    does not offer the grant). ``LinkRefused`` when the server does not answer."""
    try:
        answer = await http.post(
            f"{client.base_url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "scope": LINK_SCOPE,
            },
        )
    except httpx.HTTPError as error:
        raise LinkRefused(f"it did not answer: {transport.describe(error)}") from None
    if answer.status_code == 401:
        return False
    if answer.status_code >= 500:
        raise LinkRefused(f"it answered HTTP {answer.status_code}")
    access = transport.json_object(answer).get("access_token")
    if answer.status_code == 200 and isinstance(access, str) and access:
        await _revoke(http, client, access)
    return True


def authorize_url(client: OAuthClient, state: str, challenge: str) -> str:
    query = authorize_query(
        client_id=client.client_id,
        redirect_uri=client.redirect_uri,
        scope=LINK_SCOPE,
        state=state,
        challenge=challenge,
    )
    return f"{client.base_url}/oauth/authorize?{query}"


async def link_identity(
    http: httpx.AsyncClient, client: OAuthClient, code: str, verifier: str
) -> Identity:
    """Exchange ``code`` for a token, read the account it belongs to, revoke the token."""
    try:
        token = await http.post(
            f"{client.base_url}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "redirect_uri": client.redirect_uri,
                "code_verifier": verifier,
                "scope": LINK_SCOPE,
            },
        )
    except httpx.HTTPError as error:
        raise LinkRefused(f"mastodon {transport.describe(error)}") from None
    access = transport.json_object(token).get("access_token")
    if token.status_code != 200 or not isinstance(access, str) or not access:
        # 400/401 invalid_grant: a wrong, used or expired code, or a verifier that does not match.
        raise LinkRefused(f"mastodon refused the code ({token.status_code})")
    try:
        return await _verify_credentials(http, client, access)
    finally:
        await _revoke(http, client, access)


async def _verify_credentials(
    http: httpx.AsyncClient, client: OAuthClient, access: str
) -> Identity:
    try:
        found = await http.get(
            f"{client.base_url}/api/v1/accounts/verify_credentials",
            headers={"Authorization": f"Bearer {access}"},
        )
    except httpx.HTTPError as error:
        raise LinkRefused(f"mastodon {transport.describe(error)}") from None
    account = transport.json_object(found)
    if found.status_code != 200 or not account.get("id") or not account.get("acct"):
        raise LinkRefused(f"mastodon did not say who signed in ({found.status_code})")
    # The signed-in account is local to the server asked, so its ``acct`` is the bare
    # username: the mention is that @ the server's host. A domain the server names itself
    # is not believed (a server of anyone's could name another's account), nor is text that
    # is no username (it goes into our statuses).
    host = urlsplit(client.base_url).netloc
    username = str(account["acct"]).partition("@")[0]
    account_id = str(account["id"])
    if not _USERNAME.match(username) or not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", account_id):
        raise LinkRefused("mastodon named the account in a form we do not take")
    return Identity(address=f"{host}:{account_id}", handle=f"{username}@{host}")


async def _revoke(http: httpx.AsyncClient, client: OAuthClient, access: str) -> None:
    # Best effort: the token can only read the profile (an app token: nothing of a person's).
    try:
        await http.post(
            f"{client.base_url}/oauth/revoke",
            data={
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "token": access,
            },
        )
    except httpx.HTTPError:
        return


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return -1
