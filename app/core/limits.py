"""What every request may carry, enforced before any route sees it.

- Its size, enforced while the body streams in (Content-Length can lie or be absent).
- No NUL character in its path, query string or text body. PostgreSQL text cannot hold one,
  so a NUL anywhere would end as a database error (a 500) deep inside whichever route got it;
  refusing it here answers one 422 for every route, present and future.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes or declared < 0:
                    await self._reject(scope, receive, send)
                    return
                break

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            f"The request body is larger than the {self.max_bytes // (1024 * 1024)} MiB allowed",
            instance=scope.get("path"),
        )
        await response(scope, receive, send)


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body parsing re-raises it as is."""

    def __init__(self) -> None:
        super().__init__(413, "The request body is too large")


_NUL_IN_QUERY = (b"%00", b"\x00")
# A NUL inside a JSON string is the escape \u0000 (a raw NUL byte is not valid JSON anyway).
# It also matches the rare text that spells an escaped backslash before "u0000"; such text
# is refused too, which costs nobody anything real.
_NUL_IN_JSON = b"\\u0000"


class RejectNulMiddleware:
    """422 for a NUL character in the path, the query string, or a JSON or form body.

    Multipart bodies (photos) are binary and are not inspected; their text parts are
    read by ``app.core.multipart``, which refuses NUL itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if "\x00" in scope["path"] or any(marker in query for marker in _NUL_IN_QUERY):
            await _nul_problem(scope).__call__(scope, receive, send)
            return
        marker = _body_marker(scope)
        if marker is None:
            await self.app(scope, receive, send)
            return
        tail = b""

        async def checked_receive() -> Message:
            nonlocal tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = tail + message.get("body", b"")
                if any(m in chunk for m in marker):
                    raise _NulInBody()
                tail = chunk[-(max(len(m) for m in marker) - 1) :]
            return message

        await self.app(scope, checked_receive, send)


def _body_marker(scope: Scope) -> tuple[bytes, ...] | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";")[0].strip().lower()
            if media == b"application/json" or media.endswith(b"+json"):
                return (_NUL_IN_JSON, b"\x00")
            if media == b"application/x-www-form-urlencoded":
                return _NUL_IN_QUERY
            return None
    return (_NUL_IN_JSON,)  # no type: routes that read JSON anyway


def _nul_problem(scope: Scope) -> Response:
    return problem(
        422, "The request may not contain NUL characters (%00)", instance=scope.get("path")
    )


class _NulInBody(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body parsing re-raises it as is."""

    def __init__(self) -> None:
        super().__init__(422, "The request body may not contain NUL characters (\\u0000)")
