"""The dashboard reads well (headless Chromium): clusters carry their counts and differ in
colour from tickets, dismissed tickets are drawn as such, the weekly chart has axes and
labels, and a deployment can set its own basemap style."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.db import driver_of
from app.embedded import free_port
from app.main import create_app
from app.maps.service import refresh_grid
from app.settings import Settings, to_sqlalchemy_url
from geo.distance import offset_lonlat
from tests.factories import make_jurisdiction, make_service
from tests.live import Browser, browser, serve
from tests.maps_data import CENTER, NOW, add_ticket

# dashboard.js colours
CLUSTER_RGB = (0x3B, 0x5B, 0xA5)
TICKET_RGB = (0xD1, 0x49, 0x5B)
DONE_RGB = (0x3A, 0x7D, 0x44)
DISMISSED_RGB = (0x8C, 0x8C, 0x8C)
BASEMAP_RGB = (0x20, 0x40, 0x60)
SLUG = "dashcity"
CROWD = 40  # tickets within 60 m of each other: one cluster
STATUSES = ["open", "fixed", "rejected", "not_our_responsibility"] * 3


@dataclass(frozen=True)
class City:
    crowd: tuple[float, float]  # where the crowd is
    row: tuple[float, float]  # where the tickets of every status are


@pytest.fixture(scope="module")
async def city(database_url: str) -> AsyncIterator[City]:
    engine = create_async_engine(to_sqlalchemy_url(database_url), poolclass=NullPool)
    crowd = offset_lonlat(*CENTER, -600, 0)
    row = offset_lonlat(*CENTER, 600, 0)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as db:
            place = await make_jurisdiction(db, slug=SLUG)
            pothole = await make_service(db, place, "pothole")
            for i in range(CROWD):
                await add_ticket(
                    db,
                    place,
                    pothole,
                    *offset_lonlat(*crowd, (i % 8) * 8.0, (i // 8) * 8.0),
                    reported_at=NOW - timedelta(days=3 * i % 60),
                )
            for i, status in enumerate(STATUSES):
                await add_ticket(
                    db, place, pothole, *offset_lonlat(*row, i * 25.0, 0), status=status
                )
            await db.commit()
            await refresh_grid(await driver_of(db))
            await db.commit()
        yield City(crowd, row)
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "TRUNCATE jurisdiction, app_user, contact, idempotency_record "
                    "RESTART IDENTITY CASCADE"
                )
            )
            await conn.execute(text("REFRESH MATERIALIZED VIEW ticket_grid"))
            await conn.execute(text("DELETE FROM ticket_grid_refreshed"))
        await engine.dispose()


def _settings(database_url: str, port: int, media: Path, **more: object) -> Settings:
    return Settings(
        env="test",
        database_url=database_url,
        media_dir=media,
        log_json=False,
        log_level="WARNING",
        public_base_url=f"http://127.0.0.1:{port}",
        database_pool_size=2,
        **more,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def live(city: City, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    app = create_app(_settings(database_url, port, tmp_path_factory.mktemp("dash-media")))
    with serve(app, port) as url:
        yield url


def _count(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 20) -> int:
    width = image.width - 300  # the panel
    return sum(
        1
        for x in range(0, width)
        for y in range(image.height)
        if all(abs(a - b) <= tolerance for a, b in zip(image.getpixel((x, y)), colour, strict=True))
    )


def _wait_idle(chrome: Browser, center: tuple[float, float], zoom: float) -> None:
    chrome.evaluate(
        "window.settled = false; kerbsideMap.once('idle', () => { window.settled = true; });"
        f"kerbsideMap.jumpTo({{center: [{center[0]}, {center[1]}], zoom: {zoom}}});"
    )
    chrome.load_wait("window.settled === true")


READY = (
    "document.body && document.body.dataset.mapReady === '1'"
    " && document.querySelector('#weekly svg') !== null"
)


def test_clusters_show_counts_in_their_own_colour(live: str, city: City, tmp_path: Path) -> None:
    with browser(tmp_path / "profile") as chrome:
        chrome.load(f"{live}/maps?jurisdiction={SLUG}", READY)
        _wait_idle(chrome, city.crowd, 13)
        chrome.screenshot(tmp_path / "clusters.png")
        rendered = chrome.evaluate(
            "JSON.stringify(kerbsideMap.queryRenderedFeatures({layers: ['clusters']})"
            ".map((f) => f.properties.count))"
        )
        labelled = chrome.evaluate(
            "kerbsideMap.queryRenderedFeatures({layers: ['clusters']})"
            ".every((f) => kerbsideMap.hasImage('count-' + f.properties.count))"
        )
    counts = json.loads(rendered)
    assert max(counts) >= CROWD // 2, counts
    assert labelled, "a cluster without its count"
    image = Image.open(tmp_path / "clusters.png").convert("RGB")
    blue = _count(image, CLUSTER_RGB)
    assert blue > 3.14 * 20**2, f"the crowd's cluster is small: {blue} px"  # radius over 20 px
    assert _count(image, TICKET_RGB) < blue / 10, "clusters drawn in the tickets' red"
    # White count digits inside the blue disc.
    assert _count(image, (255, 255, 255), 10) > 20


def test_dismissed_tickets_are_not_drawn_as_open(live: str, city: City, tmp_path: Path) -> None:
    with browser(tmp_path / "profile") as chrome:
        chrome.load(f"{live}/maps?jurisdiction={SLUG}", READY)
        east = offset_lonlat(*city.row, 25.0 * (len(STATUSES) - 1) / 2, 0)
        _wait_idle(chrome, east, 16)
        chrome.screenshot(tmp_path / "tickets.png")
        statuses = chrome.evaluate(
            "JSON.stringify(kerbsideMap.queryRenderedFeatures({layers: ['tickets']})"
            ".map((f) => f.properties.status))"
        )
    assert sorted(set(json.loads(statuses))) == sorted(set(STATUSES))
    image = Image.open(tmp_path / "tickets.png").convert("RGB")
    red, green, grey = (_count(image, c) for c in (TICKET_RGB, DONE_RGB, DISMISSED_RGB))
    assert green > 30, green
    # Three open and three fixed: as much red as green (dismissed drawn as open: triple).
    assert red < 1.6 * green, (red, green)
    assert grey > 30, grey


def test_weekly_chart_has_axes_and_labels(live: str, city: City, tmp_path: Path) -> None:
    with browser(tmp_path / "profile") as chrome:
        chrome.load(f"{live}/maps?jurisdiction={SLUG}", READY)
        chart = json.loads(
            chrome.evaluate(
                "JSON.stringify({"
                "axes: document.querySelectorAll('#weekly .axis').length,"
                "y: [...document.querySelectorAll('#weekly .y-tick')].map((t) => t.textContent),"
                "x: [...document.querySelectorAll('#weekly .x-tick')].map((t) => t.textContent),"
                "bars: document.querySelectorAll('#weekly rect').length,"
                "label: document.querySelector('#weekly svg').getAttribute('aria-label'),"
                "legend: document.getElementById('panel').innerText})"
            )
        )
    assert chart["axes"] >= 2
    assert chart["y"][0] == "0"
    assert len(chart["y"]) >= 2
    assert int(chart["y"][-1]) >= 1
    assert len(chart["x"]) >= 2
    assert all(any(ch.isdigit() for ch in label) for label in chart["x"])
    assert chart["bars"] == 2 * 12  # opened and fixed for each of 12 weeks
    assert "opened" in chart["label"]
    assert "opened" in chart["legend"]
    assert "fixed" in chart["legend"]


def test_a_deployment_sets_its_basemap_style(city: City, database_url: str, tmp_path: Path) -> None:
    style = {
        "version": 8,
        "sources": {},
        "layers": [{"id": "land", "type": "background", "paint": {"background-color": "#204060"}}],
    }

    async def style_json(request: object) -> JSONResponse:
        # Another origin: the style server allows the dashboard to read it.
        return JSONResponse(style, headers={"Access-Control-Allow-Origin": "*"})

    tiles = Starlette(routes=[Route("/style.json", style_json)])
    port = free_port()
    with serve(tiles) as style_server:
        settings = _settings(
            database_url,
            port,
            tmp_path / "media",
            map_basemap_style_url=f"{style_server}/style.json",
        )
        with serve(create_app(settings), port) as url, browser(tmp_path / "profile") as chrome:
            chrome.load(f"{url}/maps?jurisdiction={SLUG}", READY)
            config = json.loads(
                chrome.evaluate(
                    "(async () => JSON.stringify(await (await fetch('/maps/config.json'))"
                    ".json()))()"
                )
            )
            chrome.screenshot(tmp_path / "basemap.png")
    image = Image.open(tmp_path / "basemap.png").convert("RGB")
    pixels = (image.width - 300) * image.height
    assert _count(image, BASEMAP_RGB, 24) > pixels * 0.05, "the basemap style is not drawn"
    assert config == {"basemap_style_url": f"{style_server}/style.json"}
