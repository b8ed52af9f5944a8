"""CORS for open data: public reads usable by a web map on any origin, without credentials.

Tiles, GeoJSON, TileJSON, OGC API items, stats, exports, public ticket reads and photos
answer ``Access-Control-Allow-Origin`` for the origins of ``KERBSIDE_OPEN_DATA_CORS_ORIGINS``
(``*`` by default) and answer their preflight. They never send
``Access-Control-Allow-Credentials``, so a browser sends no cookies or HTTP authentication
with them, and ``Authorization`` and ``X-API-Key`` are not among the allowed headers: across
origins these routes show what anyone sees. Every other route (staff, crews, intake) is left
to ``KERBSIDE_CORS_ORIGINS`` and Starlette's ``CORSMiddleware``, which is off unless set.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The public read routes (GET and HEAD only). /v1/tickets/{reference} yes, its /internal no.
OPEN_DATA_PATHS = re.compile(
    r"^/(?:openapi\.json"
    r"|v1/(?:tickets\.geojson|tickets/clusters|tickets/nearby|tickets/[^/]+"
    r"|tiles\.json|tiles/\d+/\d+/\d+\.mvt|areas\.geojson|stats|export/tickets\.(?:csv|geojson)"
    r"|ogc(?:/.*)?|jurisdictions(?:/[^/]+/services)?"
    r"|photos/[^/]+\.jpg|photos/[^/]+/thumbnail\.jpg"
    r"|broadcasts\.cap|broadcasts/[^/]+\.cap))$"
)
METHODS = frozenset({"GET", "HEAD"})
# What a map client may send: revalidation and content negotiation, never credentials.
ALLOWED_HEADERS = ("accept", "accept-language", "if-none-match", "if-modified-since")
EXPOSED_HEADERS = "ETag, Content-Disposition, X-Request-ID"
PREFLIGHT_MAX_AGE = "86400"


def is_open_data(path: str) -> bool:
    return OPEN_DATA_PATHS.match(path) is not None


class OpenDataCORSMiddleware:
    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)

    def _allowed(self, origin: str) -> str | None:
        if self.any_origin:
            return "*"
        return origin if origin in self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_open_data(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self._allowed(origin)
        method = scope["method"]
        if method == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(scope, receive, send, headers, allowed)
            return
        if allowed is None or method not in METHODS:
            await self.app(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["Access-Control-Allow-Origin"] = allowed
                response_headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
                if allowed != "*":
                    response_headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _preflight(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, allowed: str | None
    ) -> None:
        requested = headers["access-control-request-method"].upper()
        asked = {
            h.strip().lower()
            for h in headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        }
        refused = sorted(asked - set(ALLOWED_HEADERS))
        if allowed is None or requested not in METHODS or refused:
            why = (
                "origin not allowed"
                if allowed is None
                else f"method {requested} not allowed"
                if requested not in METHODS
                else f"headers not allowed: {', '.join(refused)} (open data takes no credentials)"
            )
            # No Access-Control-Allow-Origin: the browser refuses the request.
            await PlainTextResponse(f"CORS preflight refused: {why}", status_code=400)(
                scope, receive, send
            )
            return
        response = PlainTextResponse(
            "OK",
            headers={
                "Access-Control-Allow-Origin": allowed,
                "Access-Control-Allow-Methods": "GET, HEAD",
                "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                **({"Vary": "Origin"} if allowed != "*" else {}),
            },
        )
        await response(scope, receive, send)
