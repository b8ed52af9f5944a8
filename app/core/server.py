"""The HTTP protocol ``kerbside serve`` gives uvicorn: its own, plus a deadline for headers.

uvicorn lets go of a keep-alive connection that stays idle after an answer
(``timeout_keep_alive``), but not of a new connection that sends nothing, or sends its
request headers a byte at a time: forty such slow clients held forty connections open for
as long as they liked (issue 22). Here every request must have sent its complete headers
within ``KERBSIDE_HTTP_HEADER_TIMEOUT_SECONDS`` of its first byte (or of the connection
opening); otherwise the connection is closed. Bodies are not timed: uploads of large photos
over slow mobile links are legitimate, and their size is capped elsewhere.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import get_settings


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers."""

    # Set by ``kerbside serve`` in its own process; uvicorn's worker processes import this
    # class afresh and read the setting from the environment instead.
    header_timeout_seconds: ClassVar[float | None] = None
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # the next request on a kept-alive connection
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        timeout = self.header_timeout_seconds or get_settings().http_header_timeout_seconds
        self._header_deadline = self.loop.call_later(timeout, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
