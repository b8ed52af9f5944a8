"""Rate limits: a sliding one-minute window per client key, as FastAPI dependencies.

Two stores (``KERBSIDE_RATE_LIMIT_STORE``):

- ``memory`` (the default): counters in memory on ``app.state``, so a limit holds **per API
  process**: with ``KERBSIDE_WORKERS=4`` a client may get up to four times the limit.
- ``postgres``: counters in the UNLOGGED table ``rate_limit_hit``, shared by every process
  and host on the database; one statement per limited request (``_POSTGRES_HIT``), which
  estimates the sliding window from this minute's hits and the previous minute's, weighted
  by how much of it still lies within the last 60 s (the estimate Cloudflare describes for
  its limiter). The conflict branch re-checks under the row lock, so concurrent requests
  of one client cannot both take the last place.

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
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request

from app.core.contract import answers
from app.core.errors import InvalidInput, TooManyRequests
from app.db import HotStatement, read_db
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

    @answers(429)
    async def check_rate_limit(request: Request) -> None:
        settings: Settings = request.app.state.settings
        limit = per_minute(settings) if callable(per_minute) else per_minute
        if limit <= 0:
            return
        found: Any = key(request)
        client_key: str = await found if inspect.isawaitable(found) else found
        await enforce(request, name, client_key, limit)

    return check_rate_limit


async def enforce(request: Request, name: str, key: str, limit: int) -> None:
    """Count one hit of ``key`` under ``name``; 429 problem+json with ``Retry-After`` when the
    last minute already holds ``limit`` accepted hits (``limit <= 0``: no limit)."""
    if limit <= 0:
        return
    settings: Settings = request.app.state.settings
    if settings.rate_limit_store == "postgres":
        wait = await _postgres_hit(request, name, key, limit)
    else:
        wait = rate_limits(request.app).window(name).hit(key, limit)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"Too many requests; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
            retry_after=seconds,
        )


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sent by the mobile app: a random id made once per installation. A client can change it, so
# it only narrows what the address limit allows (one phone among many behind a carrier NAT).
DEVICE_HEADER = "x-device-id"
DEVICE_ID_MAX = 128
# Documented on every write operation (``install_limit_responses``) rather than declared as a
# parameter of the global dependency, which would put it on every read as well.
DEVICE_PARAMETER: dict[str, Any] = {
    "name": "X-Device-Id",
    "in": "header",
    "required": False,
    "description": (
        "A random id the app makes once per installation (at most 128 visible ASCII"
        " characters). Optional; writes are also limited per device, so one phone behind a"
        " shared address (a carrier's NAT) does not use up its neighbours' budget."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": DEVICE_ID_MAX, "pattern": "^[!-~]+$"},
}
_DEVICE_ID = re.compile(rf"[!-~]{{1,{DEVICE_ID_MAX}}}")


async def limit_writes(request: Request) -> None:
    """Every write (any method but GET, HEAD, OPTIONS) of every route, per client address and
    per device (``X-Device-Id``). Installed once for the whole application, so a new route is
    limited without anyone remembering to. The caller's account (or API key) is counted by
    ``limit_account_writes`` once it is known."""
    if request.method in SAFE_METHODS:
        return
    settings: Settings = request.app.state.settings
    await enforce(
        request,
        "writes-address",
        client_ip(request),
        settings.rate_limit_writes_per_address_per_minute,
    )
    device = request.headers.get(DEVICE_HEADER)
    if device is not None:
        if not _DEVICE_ID.fullmatch(device):
            raise InvalidInput(
                "X-Device-Id is 1 to 128 visible ASCII characters",
                errors=[
                    {
                        "field": "X-Device-Id",
                        "in": "header",
                        "message": "1 to 128 visible ASCII characters",
                        "type": "string_pattern_mismatch",
                    }
                ],
            )
        await enforce(
            request, "writes-device", device, settings.rate_limit_writes_per_device_per_minute
        )


async def limit_account_writes(request: Request, account: str) -> None:
    """Writes of one signed-in account or API key (``account``: the principal's label)."""
    if request.method in SAFE_METHODS:
        return
    settings: Settings = request.app.state.settings
    await enforce(
        request, "writes-account", account, settings.rate_limit_writes_per_account_per_minute
    )


_TOO_MANY = {
    "description": "Too many requests from this client, account or device; see `Retry-After`",
    "content": {"application/problem+json": {}},
}


def install_limit_responses(app: FastAPI) -> None:
    """Document the 429 of ``limit_writes`` on every write operation of ``app.openapi()``."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        for operations in document.get("paths", {}).values():
            for method, operation in operations.items():
                if method.upper() not in SAFE_METHODS and isinstance(operation, dict):
                    operation.setdefault("responses", {}).setdefault("429", dict(_TOO_MANY))
                    parameters = operation.setdefault("parameters", [])
                    if not any(p.get("name") == "X-Device-Id" for p in parameters):
                        parameters.append(dict(DEVICE_PARAMETER))
        app.openapi_schema = document
        return document

    install: Callable[[], dict[str, Any]] = openapi
    app.openapi = install  # type: ignore[method-assign]


# One statement: count the hit if the estimate allows it; a row comes back only then.
_POSTGRES_HIT = HotStatement(
    """
    WITH t AS (SELECT extract(epoch FROM clock_timestamp()) / 60 AS w),
    prev AS (
        SELECT floor(t.w)::bigint AS window_no,
               coalesce((SELECT hits FROM rate_limit_hit
                         WHERE name = :name AND key = :key
                           AND window_no = floor(t.w)::bigint - 1), 0)
               * (1 - (t.w - floor(t.w))) AS weighted
        FROM t
    )
    INSERT INTO rate_limit_hit AS h (name, key, window_no, hits, carried)
    SELECT :name, :key, prev.window_no, 1, prev.weighted FROM prev
    WHERE prev.weighted + 1 <= :limit
    ON CONFLICT (name, key, window_no) DO UPDATE SET hits = h.hits + 1
    WHERE h.hits + 1 + excluded.carried <= :limit
    RETURNING h.hits
    """
)
# Rows older than the previous minute are never read again.
_POSTGRES_SWEEP = HotStatement(
    "DELETE FROM rate_limit_hit"
    " WHERE window_no < floor(extract(epoch FROM clock_timestamp()) / 60)::bigint - 1"
)
_SWEEP_EVERY = 200  # hits, on average


async def _postgres_hit(request: Request, name: str, key: str, limit: int) -> float | None:
    """Like ``SlidingWindow.hit``, on the shared table: None if allowed, else the seconds
    until this minute ends (when the estimate next drops)."""
    async with read_db(request) as db:
        counted = await _POSTGRES_HIT.one(db, {"name": name, "key": key, "limit": limit})
        if random.randrange(_SWEEP_EVERY) == 0:  # housekeeping, not security
            await _POSTGRES_SWEEP.one(db, {})
    if counted is not None:
        return None
    return WINDOW_SECONDS - (time.time() % WINDOW_SECONDS)
