"""Per-client limits count the connecting peer unless it is a configured proxy (issue 22,
defect 4): ``X-Forwarded-For`` from anyone else is ignored, so a client cannot name a new
address for each attempt. Sign-in is also throttled per address across accounts.

These run a real uvicorn with the options ``kerbside serve`` uses: forwarded headers are
applied by the server, before the application sees the request.
"""

from __future__ import annotations

import itertools
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
def live_settings(settings: Settings, tmp_path: Path) -> Settings:
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
