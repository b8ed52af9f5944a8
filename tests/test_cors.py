"""CORS: open data is readable from any origin without credentials; staff routes are not.

The last test is the real thing: a MapLibre page served from a second local origin loads
our vector tiles, GeoJSON and OGC items in headless Chromium.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from app.core.cors import is_open_data
from app.embedded import free_port
from app.main import create_app
from app.settings import Settings, to_sqlalchemy_url
from geo.distance import offset_lonlat
from tests.factories import make_jurisdiction, make_service
from tests.live import browser, serve
from tests.maps_data import CENTER, NOW, add_ticket

ELSEWHERE = "https://map.example.org"
OPEN_DATA = [
    "/v1/tickets.geojson",
    "/v1/tickets/clusters?bbox=-2.6,51.4,-2.5,51.5&zoom=12",
    "/v1/tiles/14/8073/5448.mvt",
    "/v1/tiles.json",
    "/v1/areas.geojson",
    "/v1/stats",
    "/v1/ogc/collections/tickets/items",
    "/v1/ogc",
    "/v1/tickets/nearby?lon=-2.59&lat=51.45",
    "/v1/tickets/K-2026-000001",
    "/v1/jurisdictions",
    "/openapi.json",
]
CLOSED = [
    "/v1/workorders",
    "/v1/tickets/K-2026-000001/internal",
    "/v1/users/me",
    "/v1/api-keys",
    "/v1/crews",
    "/v1/reports",
    "/v1/me/reports",
]


def test_which_paths_are_open_data() -> None:
    for path in OPEN_DATA:
        assert is_open_data(path.split("?")[0]), path
    for path in CLOSED:
        assert not is_open_data(path), path


@pytest.mark.parametrize("path", OPEN_DATA)
async def test_open_data_answers_any_origin_without_credentials(
    client: httpx.AsyncClient, path: str
) -> None:
    preflight = await client.options(
        path,
        headers={
            "Origin": ELSEWHERE,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "if-none-match",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert "if-none-match" in preflight.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in preflight.headers
    response = await client.get(path, headers={"Origin": ELSEWHERE})
    assert response.headers["access-control-allow-origin"] == "*", response.status_code
    assert "ETag" in response.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("path", CLOSED)
async def test_staff_and_write_routes_stay_closed(client: httpx.AsyncClient, path: str) -> None:
    for method in ("GET", "POST"):
        preflight = await client.options(
            path,
            headers={
                "Origin": ELSEWHERE,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers, (path, method)
    response = await client.get(path, headers={"Origin": ELSEWHERE})
    assert "access-control-allow-origin" not in response.headers


async def test_open_data_preflight_refuses_credentials_and_writes(
    client: httpx.AsyncClient,
) -> None:
    for method, asked in (("GET", "authorization"), ("GET", "x-api-key"), ("POST", "")):
        preflight = await client.options(
            "/v1/tickets.geojson",
            headers={
                "Origin": ELSEWHERE,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": asked,
            },
        )
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers


async def test_open_data_origins_are_configurable(app: FastAPI, settings: Settings) -> None:
    for origins, origin, expected in (
        (["https://city.example"], "https://city.example", "https://city.example"),
        (["https://city.example"], ELSEWHERE, None),
        ([], ELSEWHERE, None),
    ):
        configured = create_app(settings.model_copy(update={"open_data_cors_origins": origins}))
        configured.state.engine = app.state.engine
        configured.state.sessionmaker = app.state.sessionmaker
        transport = httpx.ASGITransport(app=configured)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            response = await c.get("/v1/tiles.json", headers={"Origin": origin})
        assert response.headers.get("access-control-allow-origin") == expected, origins
        if expected and expected != "*":
            assert "Origin" in response.headers["vary"]


# -- a MapLibre page on another origin, in headless Chromium ----------------------------------


@pytest.fixture(scope="module")
async def tickets(database_url: str) -> AsyncIterator[int]:
    engine = create_async_engine(to_sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as db:
            city = await make_jurisdiction(db, slug="corscity")
            pothole = await make_service(db, city, "pothole")
            for i in range(12):
                east, north = (i % 4) * 60.0 - 90, (i // 4) * 60.0 - 60
                await add_ticket(
                    db,
                    city,
                    pothole,
                    *offset_lonlat(*CENTER, east, north),
                    reported_at=NOW - timedelta(minutes=i),
                )
            await db.commit()
        yield 12
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "TRUNCATE jurisdiction, app_user, contact, idempotency_record "
                    "RESTART IDENTITY CASCADE"
                )
            )
            await conn.execute(text("REFRESH MATERIALIZED VIEW ticket_grid"))
        await engine.dispose()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8">
<link rel="stylesheet" href="API/maps/static/maplibre-gl.css">
<style>html, body, #map { margin: 0; width: 100%; height: 100%; }</style></head>
<body><div id="map"></div>
<script src="API/maps/static/maplibre-gl.js"></script>
<script>
const api = "API";
const result = {errors: []};
const map = new maplibregl.Map({
  container: "map",
  center: [LON, LAT],
  zoom: 16,
  style: {
    version: 8,
    sources: {
      tiles: {type: "vector", url: api + "/v1/tiles.json"},
      geojson: {type: "geojson", data: api + "/v1/tickets.geojson"},
    },
    layers: [
      {id: "bg", type: "background", paint: {"background-color": "#fff"}},
      {id: "tile-points", type: "circle", source: "tiles", "source-layer": "tickets",
       paint: {"circle-radius": 6, "circle-color": "#d00"}},
      {id: "geojson-points", type: "circle", source: "geojson",
       paint: {"circle-radius": 3, "circle-color": "#00d"}},
    ],
  },
});
map.on("error", (e) => result.errors.push(String(e.error && e.error.message)));
map.on("idle", async () => {
  if (result.done) return;
  result.done = true;
  result.tile = map.querySourceFeatures("tiles", {sourceLayer: "tickets"}).length;
  result.geojson = map.querySourceFeatures("geojson").length;
  try {  // a header outside the safelist: the browser sends a preflight first
    const items = await fetch(api + "/v1/ogc/collections/tickets/items?limit=5",
                              {headers: {"If-None-Match": '"nothing"'}});
    result.ogc = (await items.json()).numberReturned;
    result.etag = items.headers.get("ETag");
  } catch (e) { result.errors.push("ogc: " + e); }
  try {
    await fetch(api + "/v1/workorders");
    result.staff = "readable";
  } catch (e) { result.staff = "blocked"; }
  document.body.dataset.result = JSON.stringify(result);
});
</script></body></html>
"""


@pytest.fixture(scope="module")
def api_server(
    tickets: int, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    settings = Settings(
        env="test",
        database_url=database_url,
        media_dir=tmp_path_factory.mktemp("cors-media"),
        log_json=False,
        log_level="WARNING",
        public_base_url=f"http://127.0.0.1:{port}",
        database_pool_size=2,
    )
    with serve(create_app(settings), port) as url:
        yield url


def test_a_map_on_another_origin_loads_tiles_and_geojson(
    api_server: str, tickets: int, tmp_path: Path
) -> None:
    html = (
        PAGE.replace("API", api_server)
        .replace("LON", str(CENTER[0]))
        .replace("LAT", str(CENTER[1]))
    )

    async def page(request: object) -> HTMLResponse:
        return HTMLResponse(html)

    site = Starlette(routes=[Route("/", page)])
    with serve(site) as elsewhere, browser(tmp_path / "profile") as chrome:
        assert elsewhere.split(":")[-1] != api_server.split(":")[-1]  # two origins
        chrome.load(elsewhere + "/", "document.body && document.body.dataset.result", timeout=90)
        result = json.loads(chrome.evaluate("document.body.dataset.result"))
    assert result["errors"] == [], result
    assert result["tile"] >= tickets, result
    assert result["geojson"] >= tickets, result
    assert result["ogc"] == 5, result
    assert result["etag"], result  # exposed to the page
    assert result["staff"] == "blocked", result
