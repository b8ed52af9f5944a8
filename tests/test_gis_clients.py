"""Real GIS clients against the demo city on a live server: OWSLib and GDAL's OGC API
driver read every ticket of a city-wide bbox in a few requests, and the areas are RFC 7946
polygons (exterior rings counterclockwise)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from shapely.geometry import shape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.main import create_app
from app.seed.demo import seed_demo
from app.settings import Settings, to_sqlalchemy_url
from tests.live import serve

owslib_features = pytest.importorskip("owslib.ogcapi.features")

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


class CountingApp:
    """Counts the requests per path, to see how many round trips a client needed."""

    def __init__(self, app: ASGI) -> None:
        self.app = app
        self.paths: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths[scope["path"]] += 1
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class Demo:
    url: str
    counter: CountingApp
    tickets: int  # public tickets of the demo city
    bbox: tuple[float, float, float, float]  # the city's boundary


@pytest.fixture(scope="module")
async def demo_city(database_url: str) -> AsyncIterator[tuple[int, tuple[float, ...]]]:
    await seed_demo(database_url, progress=False)
    engine = create_async_engine(to_sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM ticket_map), ST_XMin(e), ST_YMin(e),"
                        " ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(boundary) AS e"
                        " FROM jurisdiction) x"
                    )
                )
            ).one()
        yield int(row[0]), tuple(float(v) for v in row[1:])
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
def demo(
    demo_city: tuple[int, tuple[float, float, float, float]],
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Demo]:
    tickets, bbox = demo_city
    from app.embedded import free_port

    port = free_port()
    settings = Settings(
        env="test",
        database_url=database_url,
        media_dir=tmp_path_factory.mktemp("gis-media"),
        log_json=False,
        log_level="WARNING",
        public_base_url=f"http://127.0.0.1:{port}",
        database_pool_size=4,
    )
    counter = CountingApp(create_app(settings))
    with serve(counter, port) as url:
        yield Demo(url, counter, tickets, bbox)


ITEMS = "/v1/ogc/collections/tickets/items"


def test_the_demo_city_is_wider_than_the_old_bbox_limit(demo: Demo) -> None:
    from geo.bbox import BBox

    assert demo.tickets > 100
    assert BBox(*demo.bbox).area_km2() > 25  # what used to be refused


def test_owslib_reads_every_feature_of_the_city_in_a_few_requests(demo: Demo) -> None:
    api = owslib_features.Features(demo.url + "/v1/ogc/")
    landing = api.links
    described = [link["type"] for link in landing if link["rel"] == "service-desc"]
    assert described[0] == "application/vnd.oai.openapi+json;version=3.1"
    assert api.api()["openapi"].startswith("3.1")
    # What GDAL and QGIS do: read the page size from the document.
    (limit,) = [
        p
        for p in api.api()["paths"][ITEMS.replace("tickets", "{collection_id}")]["get"][
            "parameters"
        ]
        if p["name"] == "limit"
    ]
    assert limit["schema"]["maximum"] >= 1000
    assert limit["schema"]["default"] >= 100

    demo.counter.paths.clear()
    page = api.collection_items("tickets", bbox=list(demo.bbox), limit=limit["schema"]["maximum"])
    assert page["numberReturned"] == demo.tickets
    assert "next" not in {link["rel"] for link in page["links"]}
    assert demo.counter.paths[ITEMS] == 1

    # Smaller pages: follow `next` until it is missing; every feature once.
    seen: list[str] = []
    params: dict[str, Any] = {"bbox": list(demo.bbox), "limit": 150}
    for _ in range(20):
        page = api.collection_items("tickets", **params)
        seen += [f["id"] for f in page["features"]]
        following = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not following:
            break
        cursor = following[0].split("cursor=")[1].split("&")[0]
        params = {"bbox": list(demo.bbox), "limit": 150, "cursor": cursor}
    assert len(seen) == len(set(seen)) == demo.tickets
    # Above the maximum is served as the maximum, not refused.
    assert api.collection_items("tickets", limit=10**6)["numberReturned"] == demo.tickets


def test_tickets_geojson_takes_a_city_wide_bbox(demo: Demo) -> None:
    bbox = ",".join(map(str, demo.bbox))
    answer = requests.get(f"{demo.url}/v1/tickets.geojson?bbox={bbox}", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["numberReturned"] == demo.tickets


def _ogrinfo(demo: Demo, *options: str) -> int:
    """Run ``ogrinfo -spat`` over the whole city; the number of features it read."""
    ogrinfo = shutil.which("ogrinfo")
    if ogrinfo is None:
        if os.geteuid() == 0 or os.environ.get("CI"):
            pytest.fail("GDAL is missing: scripts/bootstrap installs it (Debian gdal-bin)")
        pytest.skip("GDAL is not installed (scripts/bootstrap installs gdal-bin as root)")
    run = subprocess.run(
        [
            ogrinfo,
            "-ro",
            "-al",
            "-q",
            "-spat",
            *map(str, demo.bbox),
            *options,
            f"OAPIF:{demo.url}/v1/ogc",
            "tickets",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "ERROR" not in run.stderr, run.stderr
    return run.stdout.count("OGRFeature(tickets)")


def test_gdal_ogrinfo_reads_the_whole_city_with_spat(demo: Demo) -> None:
    # GDAL 3.6 pages by 10 unless told otherwise: slow, but every feature arrives.
    demo.counter.paths.clear()
    assert _ogrinfo(demo) == demo.tickets
    assert demo.counter.paths[ITEMS] > 10
    # With the page size the document advertises: one page (and one to learn the fields).
    document = requests.get(f"{demo.url}/openapi.json", timeout=30).json()
    (limit,) = [
        p
        for p in document["paths"]["/v1/ogc/collections/{collection_id}/items"]["get"]["parameters"]
        if p["name"] == "limit"
    ]
    demo.counter.paths.clear()
    assert _ogrinfo(demo, "-oo", f"PAGE_SIZE={limit['schema']['maximum']}") == demo.tickets
    assert demo.counter.paths[ITEMS] <= 2, demo.counter.paths


def test_area_rings_follow_rfc_7946(demo: Demo) -> None:
    collection = requests.get(f"{demo.url}/v1/areas.geojson", timeout=30).json()
    assert len(collection["features"]) == 8
    for feature in collection["features"]:
        geometry = shape(feature["geometry"])
        polygons = list(getattr(geometry, "geoms", [geometry]))
        for polygon in polygons:
            assert polygon.exterior.is_ccw, feature["properties"]["code"]
            assert all(not ring.is_ccw for ring in polygon.interiors)
    assert json.dumps(collection)  # plain JSON
