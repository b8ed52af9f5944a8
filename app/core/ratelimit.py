"""In-process rate limits: a sliding one-minute window per client key, as FastAPI dependencies.

The counters live in memory on ``app.state``, so a limit holds **per API process**: with
``KERBSIDE_WORKERS=4`` a client may get up to four times the limit across workers. That is
enough to slow password guessing and sign-up floods; a fleet-wide limit belongs in the proxy.

Use::

    from app.core.ratelimit import client_ip, rate_limit

    reports_limit = rate_limit("reports", lambda s: s.rate_limit_reports_per_minute, client_ip)

    @router.post("/v1/reports", dependencies=[Depends(reports_limit)])
    async def create_report(...): ...

A rejected request gets ``429`` problem+json with ``Retry-After`` (seconds). Rejected attempts
are not counted, so a client that keeps knocking is let in again once its window has room.
"""

from __future__ import annotations

import inspect
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request

from app.core.errors import TooManyRequests
from app.settings import Settings

WINDOW_SECONDS = 60.0

KeyFunction = Callable[[Request], str | Awaitable[str]]
Limit = int | Callable[[Settings], int]


class SlidingWindow:
    """Timestamps of accepted hits per key over the last ``window`` seconds.

    Keys that have been quiet for a whole window are swept once a window; beyond ``max_keys``
    the longest-known keys are dropped first, so memory stays bounded whatever clients send.
    """

    def __init__(
        self,
        window: float = WINDOW_SECONDS,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._last_sweep = clock()

    def hit(self, key: str, limit: int) -> float | None:
        """Count one hit for ``key``; return ``None`` if allowed, else seconds until it would be."""
        now = self.clock()
        if now - self._last_sweep >= self.window or len(self._hits) >= self.max_keys:
            self._sweep(now)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        cutoff = now - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= limit:
            # Allowed again once enough of the window's hits have aged out.
            return hits[len(hits) - limit] + self.window - now
        hits.append(now)
        return None

    def _sweep(self, now: float) -> None:
        cutoff = now - self.window
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= cutoff]:
            del self._hits[key]
        while len(self._hits) >= self.max_keys:
            del self._hits[next(iter(self._hits))]
        self._last_sweep = now

    def __len__(self) -> int:
        return len(self._hits)


class RateLimits:
    """The named windows of one application (``app.state.rate_limits``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._windows: dict[str, SlidingWindow] = {}

    def window(self, name: str) -> SlidingWindow:
        found = self._windows.get(name)
        if found is None:
            found = self._windows[name] = SlidingWindow(clock=self.clock)
        return found

    def reset(self) -> None:
        self._windows.clear()


def rate_limits(app: FastAPI) -> RateLimits:
    """The application's limiter state, made on first use."""
    state: RateLimits | None = getattr(app.state, "rate_limits", None)
    if state is None:
        state = app.state.rate_limits = RateLimits()
    return state


def client_ip(request: Request) -> str:
    """The client's address (uvicorn has already applied trusted ``X-Forwarded-For``)."""
    return request.client.host if request.client else "unknown"


def rate_limit(
    name: str, per_minute: Limit, key: KeyFunction = client_ip
) -> Callable[[Request], Awaitable[None]]:
    """A dependency that allows ``per_minute`` requests per ``key(request)`` under ``name``.

    ``per_minute`` is a number or a function of the settings (read on each request, so tests
    and operators can change it); ``0`` turns the limit off. ``key`` may be async (to read a
    form field, say). Routes that share a ``name`` share one budget per key.
    """

    async def check_rate_limit(request: Request) -> None:
        settings: Settings = request.app.state.settings
        limit = per_minute(settings) if callable(per_minute) else per_minute
        if limit <= 0:
            return
        found: Any = key(request)
        client_key: str = await found if inspect.isawaitable(found) else found
        wait = rate_limits(request.app).window(name).hit(client_key, limit)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequests(
                f"Too many attempts; try again in {seconds} s",
                headers={"Retry-After": str(seconds)},
                retry_after=seconds,
            )

    return check_rate_limit
