"""Every answer carries the security headers, and redirects never echo the request's
``Host`` (issue 22, defect 7). The headless-browser tests of the dashboard
(tests/test_dashboard.py) and the documentation (tests/test_home.py) render the pages under
these headers."""

from __future__ import annotations

import httpx
import pytest

from app.core.headers import SECURITY_HEADERS


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/healthz"),
        ("GET", "/"),
        ("GET", "/maps"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/v1/jurisdictions"),
        ("GET", "/v1/tickets/K-2026-999999"),  # a 404 problem
        ("GET", "/v1/crews"),  # a 401 problem
        ("GET", "/no/such/route"),
        ("DELETE", "/healthz"),  # 405
        ("GET", "/v1/tickets.geojson?bbox=nonsense"),  # 422
    ],
)
async def test_every_answer_carries_the_security_headers(
    client: httpx.AsyncClient, method: str, url: str
) -> None:
    response = await client.request(method, url)
    for name, value in SECURITY_HEADERS:
        assert response.headers.get(name.decode()) == value.decode(), (url, name)
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "default-src 'self'" in policy
    assert "object-src 'none'" in policy


async def test_redirects_use_the_public_base_url_not_the_host_header(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/crews/", headers={"Host": "evil.example"})
    assert response.status_code in (301, 302, 307, 308)
    location = response.headers["location"]
    assert "evil.example" not in location
    assert location == "http://127.0.0.1:8000/v1/crews"
