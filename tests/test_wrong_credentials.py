"""Wrong credentials are a 401 on every public API route, never silently ignored
(docs/auth.md): a client with a stale token must learn it, not act as nobody."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.test_route_security import _PLACEHOLDERS, PUBLIC

# The public API routes (pages, probes and bundled files take no credentials at all).
API_ROUTES = sorted((method, path) for method, path in PUBLIC if path.startswith("/v1/"))
WRONG = [
    {"Authorization": "Bearer not-a-token"},
    {"X-API-Key": "ks_not_a_key"},
]
# Enough for each route to get past its own input checks when credentials are fine.
QUERIES = {
    "/v1/tickets/nearby": {"service_code": "pothole", "lon": "-2.59", "lat": "51.45"},
    "/v1/tickets/clusters": {"bbox": "-2.6,51.4,-2.5,51.5", "zoom": "12"},
    "/v1/tiles/{z}/{x}/{y}.mvt": {},
}
PATH_VALUES = {**_PLACEHOLDERS, "z": "14", "x": "8073", "y": "5448", "collection_id": "tickets"}


def test_the_list_covers_the_public_api() -> None:
    paths = {path for _, path in API_ROUTES}
    assert {"/v1/tickets/nearby", "/v1/tickets/{reference}", "/v1/tickets.geojson"} <= paths
    assert len(API_ROUTES) >= 20


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
async def test_wrong_credentials_are_refused(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "1"), path)
    for headers in WRONG:
        response = await client.request(
            method, url, params=QUERIES.get(path), headers=headers, json={}
        )
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    anonymous = await client.request(method, url, params=QUERIES.get(path), json={})
    assert anonymous.status_code != 401, anonymous.text
