"""What every HTTP channel shares: its client (with the channel timeouts) and reading a
provider's ``Retry-After``.

Each adapter owns one ``httpx.AsyncClient`` for its life and closes it in ``close()``.
Clients ignore the environment's proxy variables (``trust_env=False``): a proxy would carry
webhook requests past the private-address guard, and the providers are reached directly.

Their connections are kept by ``KeptConnections``, not httpcore's pool: that pool walks every
connection it holds on each request and each answer (polling each idle socket, and counting
the idle ones once per connection), so with the worker's batch in flight (16 and more
connections) the walk cost more than the request: 37 % of a delivering worker's time.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpcore
import httpx

# httpx's own mapping of httpcore's errors and its response stream, so a request through
# ``KeptConnections`` fails with exactly the errors the default transport raises.
from httpx._transports.default import AsyncResponseStream, map_httpcore_exceptions

from app.core import clock
from app.settings import Settings


def timeouts(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(
        settings.channels_read_timeout_seconds,
        connect=settings.channels_connect_timeout_seconds,
    )


def client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=timeouts(settings),
        trust_env=False,
        follow_redirects=False,  # a redirect could lead anywhere; providers do not redirect
        transport=transport or KeptConnectionsTransport(),
        headers={"User-Agent": "Kerbside"},
    )


_Key = tuple[bytes, bytes, int]  # scheme, host, port (httpcore's Origin is not hashable)


class KeptConnections:
    """HTTP/1.1 connections kept alive per origin: a request takes the most recently used
    idle one (or opens one) and gives it back when its answer is read, at a constant cost
    however many are open. How many are open at once is the callers' concurrency (the
    worker's send gate); at most ``keep_per_origin`` idle ones are kept, each for
    ``keepalive_expiry`` seconds (a connection the server closed is dropped when taken).
    """

    def __init__(
        self,
        *,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_expiry: float = 5.0,
        keep_per_origin: int = 64,
    ) -> None:
        self._backend = network_backend or httpcore.AnyIOBackend()
        self._ssl_context = ssl_context or httpx.create_ssl_context(trust_env=False)
        self._keepalive_expiry = keepalive_expiry
        self._keep = keep_per_origin
        self._idle: dict[_Key, list[httpcore.AsyncHTTPConnection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        origin = request.url.origin
        key = (origin.scheme, origin.host, origin.port)
        connection = await self._take(key)
        if connection is None:
            connection = httpcore.AsyncHTTPConnection(
                origin=origin,
                ssl_context=self._ssl_context,
                keepalive_expiry=self._keepalive_expiry,
                network_backend=self._backend,
            )
        try:
            response = await connection.handle_async_request(request)
        except BaseException:
            await connection.aclose()
            raise
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_Answer(response.stream, lambda: self._give_back(key, connection)),
            extensions=response.extensions,
        )

    async def _take(self, key: _Key) -> httpcore.AsyncHTTPConnection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()  # the newest: the least likely to have expired
            if connection.is_idle() and not connection.has_expired():
                return connection
            await connection.aclose()
        return None

    async def _give_back(self, key: _Key, connection: httpcore.AsyncHTTPConnection) -> None:
        idle = self._idle.setdefault(key, [])
        if not self._closed and connection.is_idle() and len(idle) < self._keep:
            idle.append(connection)
        else:  # the answer ended it, it was not read to the end, or we are closing
            await connection.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                await connection.aclose()
        self._idle.clear()


class _Answer:
    """An answer's body; once it is read or closed, its connection is given back."""

    def __init__(
        self,
        stream: AsyncIterable[bytes] | Iterable[bytes],
        give_back: Callable[[], Awaitable[None]],
    ) -> None:
        assert isinstance(stream, AsyncIterable)
        self._stream = stream
        self._give_back: Callable[[], Awaitable[None]] | None = give_back

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        give_back, self._give_back = self._give_back, None
        if give_back is None:
            return
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()
        await give_back()


class KeptConnectionsTransport(httpx.AsyncBaseTransport):
    """httpx's transport over ``KeptConnections`` (what ``httpx.AsyncHTTPTransport`` does
    over httpcore's pool: the same request, answer and errors)."""

    def __init__(self, connections: KeptConnections | None = None) -> None:
        self.connections = connections or KeptConnections()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with map_httpcore_exceptions():
            answer = await self.connections.handle_async_request(core)
        assert isinstance(answer.stream, AsyncIterable)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=AsyncResponseStream(answer.stream),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        await self.connections.aclose()


def retry_after(response: httpx.Response) -> float | None:
    """The provider's ``Retry-After`` in seconds (RFC 9110: seconds or an HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())


def json_object(response: httpx.Response) -> Mapping[str, Any]:
    """The answer's JSON object; empty when it is not one (a proxy's HTML error page)."""
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, Mapping) else {}


def describe(error: httpx.HTTPError) -> str:
    """A short reason for a transport failure, without the URL (webhook URLs may hold tokens)."""
    kind = type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        return f"timeout ({kind})"
    return f"network error ({kind})"


def now_unix() -> int:
    return int(clock.now().timestamp())


def as_utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
