"""Every error under ``/open311/`` in Open311's own shape, in the format the request asked for.

Open311 clients read ``[{"code", "description"}]`` / ``<errors><error>``, not problem+json, and
know 400, 403 and 404. Whatever answered (a route's ``KerbsideError``, FastAPI's 404 or 405,
the NUL guard, the body size limit, a rate limit, a database outage, an unexpected
exception), this middleware turns the problem into that body, with the status the spec
gives its class: invalid input (422) is a 400 and missing credentials (401) a 403. Statuses
outside the spec's three keep their meaning for HTTP (405, 409, 413, 415, 429, 500, 503).

It also takes the base URL as clients concatenate it: ``/open311/v2//requests.json`` (a base
with a trailing slash, plus a slash) and ``/open311/v2/requests.json/`` are the same resource.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PROBLEM_MEDIA_TYPE
from app.open311.formats import error_body, format_of

log = logging.getLogger("kerbside.open311")

PREFIX = "/open311/"
_SLASHES = re.compile(r"/{2,}")
# Problem statuses as Open311 classes them (the rest keep theirs).
_STATUS = {401: 403, 422: 400}
BAD_ROUTE = (
    "No such Open311 resource. Resources: discovery, services, services/{service_code},"
    " requests, requests/{service_request_id}, tokens/{token}, servicerequestupdates;"
    " each with .xml or .json"
)


def open311_status(status: int) -> int:
    return _STATUS.get(status, status)


def _field(name: str) -> str:
    """A problem's field path in the names an Open311 client sent."""
    if name.startswith("attributes."):
        return f"attribute[{name.removeprefix('attributes.')}]"
    if name.startswith("location"):
        return "lat/long"
    return name


def descriptions(problem: dict[str, Any]) -> list[str]:
    """One line per error of a problem document (its field errors, else its detail)."""
    errors = problem.get("errors") or []
    lines = [
        f"{_field(str(e.get('field') or ''))}: {e.get('message')}".removeprefix(": ")
        for e in errors
        if isinstance(e, dict) and e.get("message")
    ]
    return lines or [str(problem.get("detail") or problem.get("title") or "Error")]


def normalised(path: str) -> str:
    path = _SLASHES.sub("/", path)
    return path.rstrip("/") if len(path) > len(PREFIX) else path


class Open311Middleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX[:-1]):
            await self.app(scope, receive, send)
            return
        path = normalised(scope["path"])
        if path != scope["path"]:
            scope = {**scope, "path": path, "raw_path": path.encode()}
        fmt = format_of(path, Headers(scope=scope).get("accept"))
        held: Message | None = None
        chunks: list[bytes] = []
        started = False

        async def rewrite(message: Message) -> None:
            nonlocal held, started
            if message["type"] == "http.response.start":
                started = True
                content_type = Headers(raw=message["headers"]).get("content-type", "")
                if content_type.startswith(PROBLEM_MEDIA_TYPE):
                    held = message
                    return
                await send(message)
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status = held["status"]
            try:
                problem = orjson.loads(b"".join(chunks))
            except orjson.JSONDecodeError:
                problem = {}
            lines = descriptions(problem) if isinstance(problem, dict) else ["Error"]
            if status == 404 and str(problem.get("detail", "")).startswith("No route matches"):
                lines = [BAD_ROUTE]
            code = open311_status(status)
            body = error_body(fmt, [(code, line) for line in lines])
            headers = [
                (k, v)
                for k, v in held["headers"]
                if k.lower() not in (b"content-type", b"content-length", b"www-authenticate")
            ]
            headers += [
                (b"content-type", fmt.media_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": code, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        try:
            await self.app(scope, receive, rewrite)
        except Exception:
            if started:
                raise
            # The application's own last-resort handler would answer problem+json; answered
            # here instead, logged as it logs (never the trace to the client).
            log.exception("unhandled error", extra={"path": path})
            body = error_body(fmt, [(500, "Something went wrong on our side; it has been logged")])
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", fmt.media_type.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
