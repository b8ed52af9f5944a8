"""Headers every answer carries, and redirects that never echo the request's ``Host``.

- ``X-Content-Type-Options: nosniff``: browsers take our content types as given (a photo or
  an export is never run as a script).
- Framing is refused (``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'``): the
  dashboard and the documentation cannot be framed by another site to trick clicks.
- ``Referrer-Policy: strict-origin-when-cross-origin``: links out of our pages do not carry
  ticket references or tokens in their query strings.
- A Content-Security-Policy under which the dashboard (WebGL, workers from blobs, the
  basemap's tiles), Swagger UI, ReDoc and the landing page keep working: the headless
  Chromium tests (tests/test_dashboard.py, tests/test_home.py) render them under it.

Starlette builds absolute redirect URLs (a trailing slash removed, for one) from the
``Host`` header, which anyone can set; a ``Location`` on the request's own host is rewritten
onto the configured public base URL, so a poisoned cache or a crafted link cannot send
people elsewhere. Other absolute locations (a photo on object storage) are left alone.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Scripts, styles, fonts and frames from our own origin only (the pages' libraries are
# vendored); inline scripts and styles stay allowed because Swagger UI and ReDoc are started
# by one inline script. The dashboard's basemap (style, tiles, glyphs) may come from any
# configured server, hence https:/http: for connections and images; MapLibre and ReDoc run
# workers from blob: URLs.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob: https: http:",
        "font-src 'self' data:",
        "connect-src 'self' https: http:",
        "worker-src 'self' blob:",
        "child-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
)
_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, public_base_url: str) -> None:
        self.app = app
        self.public_base_url = public_base_url.rstrip("/").encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        host = next((v for n, v in scope.get("headers", ()) if n == b"host"), None)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, self._location(value, host) if name == b"location" else value)
                    for name, value in message.get("headers", ())
                    if name not in _NAMES  # ours win: one value each
                ]
                headers.extend(SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _location(self, value: bytes, host: bytes | None) -> bytes:
        """A ``Location`` on the request's host moved onto the public base URL (path and
        query kept)."""
        if host is None or not value.lower().startswith((b"http://", b"https://")):
            return value
        parts = urlsplit(value.decode("latin-1"))
        if parts.netloc.lower() != host.decode("latin-1").lower():
            return value
        rest = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.public_base_url + rest.encode("latin-1")
