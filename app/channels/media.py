"""Downloading a post's photos from the platform that carries them, and from nowhere else.

A post names its photos by URL (X's ``includes.media[].url``, a Messenger attachment's
``payload.url``, a Mastodon attachment's ``url``, a Bluesky blob on the image CDN or the PDS).
Those URLs come from outside, so a download goes only to the platform's own hosts
(``MediaHosts``): the origin of the account's configured base URL (its API, a Mastodon
server, a PDS, a local fake) and the platform's known media hosts over HTTPS (``pbs.twimg.com``,
``*.fbcdn.net``, ``cdn.bsky.app``, plus the account's ``media_hosts`` from the city file).
Anything else is refused before a connection is made (no SSRF through a crafted post):
another host, another port or scheme, credentials in the URL, a redirect that leaves the
list. A download is bounded in bytes (``max_bytes``, read as a stream and cut off) and in time
(``deadline`` for the whole, beside the client's connect and read timeouts). No credentials
are sent: these URLs are public, and a token must not travel to a CDN.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from app.channels import transport

MAX_REDIRECTS = 3
# Where each platform serves the photos of posts, besides the account's own base URL.
PLATFORM_HOSTS: dict[str, tuple[str, ...]] = {
    "x": ("pbs.twimg.com",),
    "facebook": ("*.fbcdn.net", "lookaside.fbsbx.com"),
    "messenger": ("*.fbcdn.net", "lookaside.fbsbx.com"),
    "whatsapp": ("lookaside.fbsbx.com",),
    "mastodon": (),  # the server itself; a media domain is the account's media_hosts
    "bluesky": ("cdn.bsky.app",),
}
# The base URL of each platform's API when an account names none.
PLATFORM_BASE_URLS: dict[str, str] = {
    "x": "https://api.x.com",
    "facebook": "https://graph.facebook.com",
    "messenger": "https://graph.facebook.com",
    "whatsapp": "https://graph.facebook.com",
    "bluesky": "https://bsky.social",
}


@dataclass(frozen=True)
class Media:
    content: bytes
    content_type: str


class MediaUnavailable(Exception):
    """The media could not be had: ``retry`` says whether trying later may help."""

    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.retry = retry


def _origin(url: str) -> tuple[str, str, int] | None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return parts.scheme, parts.hostname.lower().rstrip("."), port


@dataclass(frozen=True)
class MediaHosts:
    """Where a platform's photos may be downloaded from."""

    origins: frozenset[tuple[str, str, int]]  # exact (scheme, host, port): the base URLs
    hosts: tuple[str, ...]  # over HTTPS (port 443): a name, or "*.suffix" for its subdomains
    # Any http(s) host (a client's own photo server, Open311's media_url): the caller's
    # client must then refuse private addresses itself (``webhook.guarded_transport``).
    anywhere: bool = False

    @classmethod
    def any_public(cls) -> MediaHosts:
        """Any host: for a client that connects to public addresses only."""
        return cls(frozenset(), (), anywhere=True)

    @classmethod
    def of(
        cls, platform: str, base_urls: Iterable[str | None], extra: Iterable[str] = ()
    ) -> MediaHosts:
        """The platform's hosts, the origins of ``base_urls`` (unset: the platform's API) and
        the account's ``extra`` hosts."""
        bases = [u for u in base_urls if u] or [PLATFORM_BASE_URLS.get(platform, "")]
        origins = frozenset(o for o in (_origin(u) for u in bases) if o is not None)
        names = [*PLATFORM_HOSTS.get(platform, ()), *extra]
        return cls(origins, tuple(h.lower().rstrip(".") for h in names if h))

    def allows(self, url: str) -> bool:
        origin = _origin(url)
        if origin is None:
            return False
        if self.anywhere or origin in self.origins:
            return True
        scheme, host, port = origin
        if scheme != "https" or port != 443:
            return False
        for allowed in self.hosts:
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]) and host != allowed[2:]:
                    return True
            elif host == allowed:
                return True
        return False


async def download(
    client: httpx.AsyncClient,
    url: str,
    hosts: MediaHosts,
    *,
    max_bytes: int,
    deadline: float,
    headers: dict[str, str] | None = None,
) -> Media:
    """The bytes at ``url``, from an allowed host, at most ``max_bytes`` within ``deadline``
    seconds; ``MediaUnavailable`` otherwise. ``client`` must not follow redirects itself."""
    try:
        return await asyncio.wait_for(
            _download(client, url, hosts, max_bytes, headers or {}), timeout=deadline
        )
    except TimeoutError:
        raise MediaUnavailable("media download took too long", retry=True) from None


async def _download(
    client: httpx.AsyncClient,
    url: str,
    hosts: MediaHosts,
    max_bytes: int,
    headers: dict[str, str],
) -> Media:
    for _ in range(MAX_REDIRECTS + 1):
        if not hosts.allows(url):
            raise MediaUnavailable("media URL outside the platform's hosts", retry=False)
        try:
            async with client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status in {301, 302, 303, 307, 308} and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    continue
                if status != 200:
                    raise MediaUnavailable(
                        f"media download {status}", retry=status in {408, 429} or status >= 500
                    )
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise MediaUnavailable("media larger than any photo we take", retry=False)
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content.extend(chunk)
                    if len(content) > max_bytes:
                        raise MediaUnavailable("media larger than any photo we take", retry=False)
                kind = response.headers.get("Content-Type", "application/octet-stream")
                return Media(bytes(content), kind.split(";")[0].strip())
        except httpx.HTTPError as error:
            raise MediaUnavailable(f"media {transport.describe(error)}", retry=True) from None
    raise MediaUnavailable("media behind too many redirects", retry=False)
