"""A resident's own Mastodon server: the host they name, checked, and our app there.

Mastodon is federated: most residents are not on the city account's server. Linking there
is what every Mastodon client does: register the app on the server at first use
(``POST /api/v1/apps``; kept in ``mastodon_app``, one per server and redirect URI, and used
for every later linking there while the server knows it: Mastodon deletes apps that hold no
token a day after they were made, and ours hold none, so each start asks), then the same
OAuth 2 code flow with PKCE. The notice still
comes from the city account, mentioning ``@user@server``.

The host is typed in by a person and called from our servers (SSRF), so it is taken as
a plain host name (IDNA) or IPv4 address with an optional port and nothing else, reached
over https through the webhooks' guard (``app.channels.webhook.guarded_transport``: every
address the name resolves to must be public, and the connection goes to the address
checked). Loopback, over http, only with ``KERBSIDE_LINKING_ALLOW_LOOPBACK`` (tests and
demos; refused in production). Every exchange with the server is bounded in time as a
whole, not only per read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.channels import mastodon, transport
from app.channels.oauth import LinkRefused
from app.channels.webhook import TargetRefused, guarded_transport, refusal
from app.linking import repository as sql
from app.settings import Settings

MAX_HOST = 253  # characters of a DNS name
_HOST_PORT = re.compile(r"^(?P<host>[^:]+)(?::(?P<port>[0-9]{1,5}))?$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DEFAULT_PORT = {"https": 443, "http": 80}
_T = TypeVar("_T")


class ServerRefused(Exception):
    """The server named is not one we link on; the reason is for the person who named it."""


def base_url(given: str, *, allow_loopback: bool) -> str:
    """``https://host[:port]`` for what a person gave as their server (``mastodon.social``,
    ``social.example:8443``); ``ServerRefused`` when it is more than a host (a scheme, path,
    user, query), no valid host name, or an address we never call."""
    text = given.strip()
    if (
        not text
        or "://" in text
        or any(c in text for c in "/\\@?#%")
        or any(c.isspace() or not c.isprintable() for c in text)
    ):
        raise ServerRefused(
            "give the server's name only, like mastodon.social (no https://, path or user)"
        )
    match = _HOST_PORT.match(text)
    if match is None:
        raise ServerRefused("not a host name, or a host name and a port")
    try:
        host = match["host"].rstrip(".").lower().encode("idna").decode("ascii")
    except UnicodeError:
        raise ServerRefused("not a valid host name") from None
    if not host or len(host) > MAX_HOST:
        raise ServerRefused(f"a host name has 1 to {MAX_HOST} characters")
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise ServerRefused("the port is out of range")
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        labels = host.split(".")
        # Two labels at least: a single one would be looked up in our own search domains.
        if len(labels) < 2 or labels[-1].isdigit() or not all(map(_LABEL.match, labels)):
            raise ServerRefused("not a valid host name") from None
        scheme = "https"
    else:
        why = refusal(address, allow_loopback=allow_loopback)
        if why is not None:
            raise ServerRefused(f"{host} is a {why} address")
        scheme = "http" if address.is_loopback else "https"
    if port == _DEFAULT_PORT[scheme]:
        port = None
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def same_server(url: str, other: str | None) -> bool:
    """Whether two base URLs name one server (host and port; case and default ports aside)."""
    if other is None:
        return False
    a, b = urlsplit(url), urlsplit(other)
    try:
        ports = (a.port or _DEFAULT_PORT.get(a.scheme), b.port or _DEFAULT_PORT.get(b.scheme))
    except ValueError:
        return False
    return (a.hostname or "").lower() == (b.hostname or "").lower() and ports[0] == ports[1]


def app_name(settings: Settings) -> str:
    """What the resident's server shows on its authorization page: the deployment by its
    public host (the registration is shared by every city of the deployment)."""
    host = urlsplit(settings.public_base_url).hostname or ""
    return f"Kerbside ({host[:48]})" if host else "Kerbside"


@asynccontextmanager
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The channels' client (timeouts, no proxy, no redirects) over the public-only guard."""
    guard = guarded_transport(allow_loopback=settings.linking_allow_loopback)
    async with transport.client(settings, guard) as http:
        yield http


async def bounded(settings: Settings, calls: int, work: Awaitable[_T]) -> _T:
    """``work`` (``calls`` requests to the server) within their timeouts as a whole: a server
    that trickles its answer cannot hold the request longer. ``LinkRefused`` past it, or
    when the server's name resolves to an address we do not call."""
    seconds = calls * (
        settings.channels_connect_timeout_seconds + settings.channels_read_timeout_seconds
    )
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError:
        raise LinkRefused(f"it did not answer within {seconds:g} seconds") from None
    except TargetRefused as refused:
        raise LinkRefused(f"its name resolves to a {refused.why} address") from None


async def oauth_client(
    session: AsyncSession,
    settings: Settings,
    server: str,
    redirect_uri: str,
    *,
    register: bool,
) -> mastodon.OAuthClient | None:
    """Our app on ``server`` for ``redirect_uri``. Starting a linking (``register``): the one
    kept if the server still knows it, else a new registration there, kept. Finishing one:
    the one kept, or None. ``LinkRefused`` when the server does not answer or register it."""
    key = {"base_url": server, "redirect_uri": redirect_uri}
    row = (await session.execute(sql.MASTODON_APP, key)).first()
    if row is None and not register:
        return None
    if row is not None and not register:
        return _app(server, redirect_uri, row.client_id, row.client_secret)
    async with client(settings) as http:
        if row is not None:
            kept = _app(server, redirect_uri, row.client_id, row.client_secret)
            # Two requests at most: the app token, its revocation.
            if await bounded(settings, 2, mastodon.app_known(http, kept)):
                return kept
            await session.execute(sql.FORGET_MASTODON_APP, {**key, "client_id": kept.client_id})
        registered = await bounded(
            settings,
            1,
            mastodon.register_app(
                http,
                server,
                name=app_name(settings),
                redirect_uri=redirect_uri,
                website=settings.public_base_url,
            ),
        )
    new = {**key, "client_id": registered.client_id, "client_secret": registered.client_secret}
    # Another first linking there registered at the same moment: its row is the one.
    row = (await session.execute(sql.KEEP_MASTODON_APP, new)).first() or (
        await session.execute(sql.MASTODON_APP, key)
    ).one()
    return _app(server, redirect_uri, row.client_id, row.client_secret)


def _app(
    server: str, redirect_uri: str, client_id: str, client_secret: str
) -> mastodon.OAuthClient:
    return mastodon.OAuthClient(
        base_url=server,
        client_id=client_id,
        client_secret=client_secret,
        redirect_uri=redirect_uri,
    )
