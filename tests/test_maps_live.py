"""Against a live server (uvicorn in a thread, committed data): OGC API - Features through
OWSLib, and the dashboard rendered by headless Chromium."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from app.db import driver_of
from app.embedded import free_port
from app.main import create_app
from app.maps.service import refresh_grid
from app.settings import Settings, to_sqlalchemy_url
from geo.distance import offset_lonlat
from tests.factories import make_jurisdiction, make_service
from tests.live import browser
from tests.maps_data import CENTER, NOW, add_ticket

owslib_features = pytest.importorskip("owslib.ogcapi.features")


@dataclass(frozen=True)
class Live:
    url: str
    references: list[str]
    slug: str


@pytest.fixture(scope="module")
async def seeded(database_url: str) -> AsyncIterator[list[str]]:
    """A committed city with 60 tickets around its centre; emptied afterwards."""
    engine = create_async_engine(to_sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as db:
            city = await make_jurisdiction(db, slug="livecity")
            pothole = await make_service(db, city, "pothole")
            light = await make_service(db, city, "streetlight")
            references = []
            for i in range(60):
                east, north = (i % 10) * 150.0 - 700, (i // 10) * 150.0 - 400
                made = await add_ticket(
                    db,
                    city,
                    pothole if i % 3 else light,
                    *offset_lonlat(*CENTER, east, north),
                    reported_at=NOW - timedelta(minutes=10 * (60 - i)),
                )
                references.append(made.reference)
            await db.commit()
            # The worker's job builds the cluster grid; here it is built once, up front.
            await refresh_grid(await driver_of(db))
            await db.commit()
        yield references
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


@pytest.fixture(scope="module")
def live(
    seeded: list[str], database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    port = free_port()
    settings = Settings(
        env="test",
        database_url=database_url,
        media_dir=tmp_path_factory.mktemp("live-media"),
        log_json=False,
        log_level="WARNING",
        public_base_url=f"http://127.0.0.1:{port}",
        database_pool_size=4,
    )
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    try:
        yield Live(f"http://127.0.0.1:{port}", seeded, "livecity")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


CORE = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core"
GEOJSON_CLASS = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"


def test_owslib_reads_the_collection(live: Live) -> None:
    api = owslib_features.Features(live.url + "/v1/ogc/")
    assert {CORE, GEOJSON_CLASS} <= set(api.conformance()["conformsTo"])
    assert api.feature_collections() == ["tickets"]
    collection = api.collection("tickets")
    assert collection["itemType"] == "feature"
    (bbox,) = collection["extent"]["spatial"]["bbox"]
    assert bbox[0] < CENTER[0] < bbox[2]
    assert bbox[1] < CENTER[1] < bbox[3]
    document = api.api()
    assert "/v1/ogc/collections/{collection_id}/items" in document["paths"]

    first = api.collection_items("tickets", limit=7)
    assert first["type"] == "FeatureCollection"
    assert first["numberReturned"] == 7
    assert [f["id"] for f in first["features"]] == live.references[:7]
    assert {"self", "next", "collection"} <= {link["rel"] for link in first["links"]}
    offset = api.collection_items("tickets", limit=5, offset=7)
    assert [f["id"] for f in offset["features"]] == live.references[7:12]

    one = api.collection_item("tickets", live.references[3])
    assert one["id"] == live.references[3]
    assert one["geometry"]["type"] == "Point"


def test_owslib_bbox_and_datetime(live: Live) -> None:
    api = owslib_features.Features(live.url + "/v1/ogc/")
    west, south = offset_lonlat(*CENTER, -710, -410)
    east, north = offset_lonlat(*CENTER, -540, -240)  # the first two columns of two rows
    found = api.collection_items("tickets", bbox=[west, south, east, north], limit=100)
    assert sorted(f["id"] for f in found["features"]) == sorted(
        [live.references[i] for i in (0, 1, 10, 11)]
    )
    everything = api.collection_items("tickets", limit=100)["features"]
    times = sorted(f["properties"]["created_at"] for f in everything)
    start, end = times[10], times[19]
    window = api.collection_items("tickets", datetime_=f"{start}/{end}", limit=100)
    assert window["numberReturned"] == 10  # closed interval: both ends count
    since = api.collection_items("tickets", datetime_=f"{times[50]}/..", limit=100)
    assert since["numberReturned"] == 10
    instant = api.collection_items("tickets", datetime_=times[0], limit=100)
    assert instant["numberReturned"] == 1


def test_unknown_collection_and_feature_are_404(live: Live) -> None:
    import requests

    for path in ("/v1/ogc/collections/nope", "/v1/ogc/collections/tickets/items/K-0000-000000"):
        response = requests.get(live.url + path, timeout=10)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


# -- the dashboard in headless Chromium ----------------------------------------------------------

TICKET_RGB = (0xD1, 0x49, 0x5B)  # dashboard.js TICKET_COLOUR
CLUSTER_RGB = (0x3B, 0x5B, 0xA5)  # dashboard.js CLUSTER_COLOUR
BACKGROUND_RGB = (0xF4, 0xF1, 0xEA)


def _near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_dashboard_renders_tickets(live: Live, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    with browser(tmp_path / "profile") as chrome:
        chrome.load(
            f"{live.url}/maps?jurisdiction={live.slug}",
            "document.body && document.body.dataset.mapReady === '1'",
        )
        time.sleep(0.5)  # one more frame after "idle"
        chrome.screenshot(shot)
        problem = chrome.evaluate("document.getElementById('summary').textContent")
    assert "tickets" in problem, problem
    image = Image.open(shot).convert("RGB")
    map_width = image.width - 300  # the stats panel is 300 px wide on the right
    pixels = [image.getpixel((x, y)) for x in range(map_width) for y in range(image.height)]
    ticket_pixels = sum(1 for p in pixels if _near(p, TICKET_RGB) or _near(p, CLUSTER_RGB))
    background = sum(1 for p in pixels if _near(p, BACKGROUND_RGB, 6))
    assert background > len(pixels) * 0.2, "the plain background is missing"
    assert ticket_pixels > 150, f"only {ticket_pixels} ticket-coloured pixels"
