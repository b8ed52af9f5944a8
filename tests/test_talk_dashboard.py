"""The talk panel of the dashboard renders (headless Chromium, under the app's own CSP):
spikes drawn on the map, a line per rising term, the mood over time; locked without a key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from app.auth.api_keys import issue_api_key
from app.auth.models import Role
from app.embedded import free_port
from app.main import create_app
from app.settings import Settings, to_sqlalchemy_url
from app.talk import spikes
from tests.factories import CITY, make_jurisdiction, make_service
from tests.live import browser, serve
from tests.talk_support import place_reports, store_post

SLUG = "talktown"
SPIKE_RGB = (0xF2, 0x8E, 0x2B)  # talk.js SPIKE_COLOUR (0.55 opacity over the areas' beige)


@dataclass(frozen=True)
class Town:
    key: str
    spike: tuple[float, float]


@pytest.fixture(scope="module")
async def town(database_url: str) -> AsyncIterator[Town]:
    engine = create_async_engine(to_sqlalchemy_url(database_url), poolclass=NullPool)
    now = datetime.now(UTC)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as db:
            place = await make_jurisdiction(db, slug=SLUG)
            tree = await make_service(db, place, "fallen_tree")
            lamp = await make_service(db, place, "streetlight")
            # Two weeks of a broken lamp or two a day, in a bad mood and a good one.
            for day in range(1, 15):
                await place_reports(
                    db,
                    place,
                    lamp,
                    CITY.center,
                    [(800.0, 0.0, now - timedelta(days=day, hours=1))],
                    description="Lamp out again, terrible" if day % 2 else "Thanks, lamp fixed",
                )
            # Today: a storm.
            await place_reports(
                db,
                place,
                tree,
                CITY.center,
                [(8.0 * (k % 5), 8.0 * (k // 5), now - timedelta(minutes=k)) for k in range(15)],
                description="Huge tree fallen across the road #storm",
            )
            # Two posts to the city, one answered in two hours: half answered in time.
            ago = now - timedelta(days=3)
            for answered in (ago + timedelta(hours=2), None):
                await store_post(db, place, text_="Bin not emptied", at=ago, answered_at=answered)
            await spikes.tick(db, now)
            key = await issue_api_key(db, jurisdiction_id=place.id, name="desk", role=Role.staff)
            await db.commit()
        yield Town(key=key.secret, spike=CITY.center)
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text("TRUNCATE jurisdiction, app_user, contact RESTART IDENTITY CASCADE")
            )
        await engine.dispose()


@pytest.fixture(scope="module")
def live(town: Town, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    settings = Settings(
        env="test",
        database_url=database_url,
        media_dir=tmp_path_factory.mktemp("talk-media"),
        log_json=False,
        log_level="WARNING",
        public_base_url=f"http://127.0.0.1:{port}",
        database_pool_size=2,
    )
    with serve(create_app(settings), port) as url:
        yield url


READY = (
    "document.body && document.body.dataset.mapReady === '1'"
    " && (document.getElementById('talk').dataset.ready === '1'"
    "     || document.getElementById('talk-error').textContent !== '')"
)


def _count(image: Image.Image, colour: tuple[int, int, int], tolerance: int) -> int:
    return sum(
        1
        for x in range(0, image.width - 300, 2)
        for y in range(0, image.height, 2)
        if all(abs(a - b) <= tolerance for a, b in zip(image.getpixel((x, y)), colour, strict=True))
    )


def test_the_talk_panel_draws_spikes_trends_and_moods(
    live: str, town: Town, tmp_path: Path
) -> None:
    with browser(tmp_path / "profile") as chrome:
        chrome.load(f"{live}/maps?jurisdiction={SLUG}#key={town.key}", READY)
        assert chrome.evaluate("document.getElementById('talk-error').textContent") == ""
        chrome.evaluate(
            "window.settled = false; kerbsideMap.once('idle', () => { window.settled = true; });"
            f"kerbsideMap.jumpTo({{center: [{town.spike[0]}, {town.spike[1]}], zoom: 16}});"
        )
        chrome.load_wait("window.settled === true")
        chrome.screenshot(tmp_path / "talk.png")
        panel = json.loads(
            chrome.evaluate(
                "JSON.stringify({"
                "spikes: kerbsideMap.queryRenderedFeatures({layers: ['spikes-fill']})"
                "  .map((f) => f.properties.signals),"
                "listed: [...document.querySelectorAll('#talk-spikes li')]"
                "  .map((li) => li.textContent),"
                "trendLines: document.querySelectorAll('#talk-trends polyline').length,"
                "trendLegend: document.getElementById('talk-trends').innerText,"
                "moodPoints: document.querySelector('#talk-mood polyline')"
                "  .getAttribute('points').trim().split(' ').length,"
                "axes: document.querySelectorAll('#talk .axis').length,"
                "answering: document.getElementById('talk-answering').textContent,"
                "fragment: location.hash})"
            )
        )
    assert panel["spikes"], "no spike drawn on the map"
    assert max(panel["spikes"]) == 15
    assert panel["listed"][0].startswith("15 \u00d7 fallen_tree")
    assert panel["trendLines"] >= 3
    assert "#storm" in panel["trendLegend"]
    assert panel["moodPoints"] == 15  # fourteen days of lamps, and today
    assert panel["axes"] >= 4
    assert panel["answering"] == "50 % of 2 posts due in 30 days answered within 24 h"
    assert panel["fragment"] == "", "the key stays in the address bar"
    image = Image.open(tmp_path / "talk.png").convert("RGB")
    assert _count(image, (0xF4, 0xA6, 0x5E), 40) > 200, "the spike is not drawn in orange"


def test_without_a_key_the_panel_asks_for_one(live: str, town: Town, tmp_path: Path) -> None:
    with browser(tmp_path / "profile") as chrome:
        chrome.load(f"{live}/maps?jurisdiction={SLUG}", "document.body.dataset.mapReady === '1'")
        state = chrome.evaluate("document.getElementById('talk').dataset.state")
        form = chrome.evaluate("getComputedStyle(document.getElementById('talk-key')).display")
        layers = chrome.evaluate("kerbsideMap.getLayer('spikes-fill') === undefined")
    assert state == "locked"
    assert form != "none"
    assert layers
