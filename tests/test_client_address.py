"""How ``kerbside serve`` meets clients (issue 22, defects 4 and 7).

Per-client limits count the connecting peer unless it is a configured proxy:
``X-Forwarded-For`` from anyone else is ignored, so a client cannot name a new address for
each attempt. Sign-in is also throttled per address across accounts. Slow clients (silent,
or sending headers that never end) are let go.

These run a real uvicorn with the options ``kerbside serve`` uses: forwarded headers are
applied by the server, before the application sees the request.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.cli import uvicorn_options
from app.main import create_app
from app.settings import Settings
from tests.live import serve

_addresses = (f"203.0.113.{n}" for n in itertools.count(1))


@pytest.fixture
def live_settings(settings: Settings, tmp_path: Path, fresh_rate_limits: None) -> Settings:
    return settings.model_copy(
        update={
            "media_dir": tmp_path,
            "rate_limit_login_per_minute": 100,
            "rate_limit_login_per_address_per_minute": 3,
        }
    )


def _live(settings: Settings) -> Iterator[str]:
    with serve(create_app(settings), **uvicorn_options(settings)) as url:
        yield url


def _login(url: str, n: int, forwarded_for: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = httpx.post(
        f"{url}/v1/auth/jwt/login",
        data={"username": f"nobody{n}@example.org", "password": "not the password"},
        headers=headers,
        timeout=30,
    )
    return response.status_code


def test_forwarded_for_from_an_untrusted_peer_is_ignored(live_settings: Settings) -> None:
    assert live_settings.trusted_proxies == ""  # the default
    for url in _live(live_settings):
        # A new address named for each attempt, and a new account each time: the address
        # budget (3) still counts the real peer.
        codes = [_login(url, n, next(_addresses)) for n in range(4)]
        assert codes == [400, 400, 400, 429]


def test_forwarded_for_from_a_trusted_proxy_is_the_client(live_settings: Settings) -> None:
    trusted = live_settings.model_copy(update={"trusted_proxies": "127.0.0.1"})
    for url in _live(trusted):
        # Behind our proxy, each forwarded client has its own budget...
        assert [_login(url, n, next(_addresses)) for n in range(4)] == [400] * 4
        # ...and one client trying many accounts is stopped.
        one = next(_addresses)
        assert [_login(url, n, one) for n in range(4)] == [400, 400, 400, 429]


def _closed_within(url: str, payload: bytes, seconds: float) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        if payload:
            conn.sendall(payload)
        conn.settimeout(seconds)
        try:
            return conn.recv(100) == b""  # closed without an answer
        except TimeoutError:
            return False


def test_slow_clients_are_let_go(live_settings: Settings) -> None:
    quick = live_settings.model_copy(update={"http_header_timeout_seconds": 1.0})
    for url in _live(quick):
        # Connected and silent; headers that never end: both closed after the deadline.
        assert _closed_within(url, b"", 5)
        assert _closed_within(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 5)
        # A client that sends its request is served as ever, and may keep the connection.
        with httpx.Client(base_url=url) as client:
            assert client.get("/healthz").status_code == 200
            time.sleep(1.5)  # idle between requests: the keep-alive timeout (5 s) applies
            assert client.get("/healthz").status_code == 200
