"""What every request may carry, enforced before any route sees it.

- Its size, enforced while the body streams in (Content-Length can lie or be absent): each
  write route has its own maximum (``BodyLimits``: a JSON body's by default, more for the
  few that take photos, files or geometry), every other request the JSON maximum, and none
  more than ``KERBSIDE_MAX_REQUEST_BYTES``. Each write operation documents its maximum in the
  OpenAPI document (``x-max-request-bytes``) with its 413.
- No NUL character in its path, query string or text body. PostgreSQL text cannot hold one,
  so a NUL anywhere would end as a database error (a 500) deep inside whichever route got it;
  refusing it here answers one 422 for every route, present and future.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyLimits:
    """The largest body each route takes, in bytes.

    ``default``: every route not named in ``install`` (JSON bodies); ``ceiling``: no route more.
    Filled by ``install`` once the routes are known; looked up on every request (an exact
    path first, then the templated paths of that method).
    """

    def __init__(self, default: int, ceiling: int) -> None:
        self.default = min(default, ceiling)
        self.ceiling = ceiling
        self._exact: dict[tuple[str, str], int] = {}
        self._templated: dict[str, list[tuple[re.Pattern[str], int]]] = {}
        self.documented: dict[tuple[str, str], int] = {}

    def install(
        self, routes: Iterable[tuple[str, str]], larger: dict[tuple[str, str], int]
    ) -> None:
        """``routes``: every (method, path template) of the application; ``larger``: the
        routes that take more than ``default``."""
        unknown = set(larger) - set(routes)
        if unknown:
            raise ValueError(f"body limits name routes that do not exist: {sorted(unknown)}")
        for method, path in routes:
            limit = min(larger.get((method, path), self.default), self.ceiling)
            if method in _WRITES:
                self.documented[(method, path)] = limit
            if limit == self.default:
                continue
            if "{" not in path:
                self._exact[(method, path)] = limit
            else:
                pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path))
                self._templated.setdefault(method, []).append((re.compile(pattern + "$"), limit))

    def limit(self, method: str, path: str) -> int:
        found = self._exact.get((method, path))
        if found is not None:
            return found
        for pattern, limit in self._templated.get(method, ()):
            if pattern.match(path):
                return limit
        return self.default


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n:,} bytes"


def _too_large(max_bytes: int) -> str:
    return f"The request body is larger than the {_size(max_bytes)} this route takes"


def install_body_limit_responses(app: FastAPI, limits: BodyLimits) -> None:
    """Document each write operation's maximum (``x-max-request-bytes``) and its 413."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                limit = limits.documented.get((method.upper(), path))
                if limit is None:
                    continue
                operation["x-max-request-bytes"] = limit
                operation.setdefault("responses", {}).setdefault(
                    "413",
                    {
                        "description": f"The body is larger than {_size(limit)}",
                        "content": {"application/problem+json": {}},
                    },
                )
        app.openapi_schema = document
        return document

    install: Callable[[], dict[str, Any]] = openapi
    app.openapi = install  # type: ignore[method-assign]


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limits.limit(scope["method"], scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > max_bytes or declared < 0:
                    await self._reject(scope, receive, send, max_bytes)
                    return
                break

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise _BodyTooLarge(max_bytes)
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
                await self._reject(scope, receive, send, max_bytes)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        response = problem(413, _too_large(max_bytes), instance=scope.get("path"))
        await response(scope, receive, send)


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body parsing re-raises it as is."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _too_large(max_bytes))


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
