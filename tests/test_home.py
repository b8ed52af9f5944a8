"""The front door: the landing page, and the API documentation rendered offline in Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from tests.live import browser, serve


async def test_landing_page_links_docs_map_open_data_and_health(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for link in ("/docs", "/redoc", "/maps", "/v1/ogc", "/v1/tickets.geojson", "/healthz"):
        assert f'href="{link}"' in response.text, link


async def test_docs_pages_load_nothing_from_elsewhere(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        page = (await client.get(path)).text
        assert "://" not in page, path
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        response = await client.get(f"/static/docs/{name}")
        assert response.status_code == 200, name
        assert len(response.content) > 100_000, name
    for name in ("swagger-ui.LICENSE.txt", "redoc.LICENSE.txt"):
        assert "License" in (await client.get(f"/static/docs/{name}")).text
    assert (await client.get("/static/docs/../settings.py")).status_code == 404
    redirect = await client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert "oauth2" in redirect.text


@pytest.fixture(scope="module")
def docs_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        env="test",
        database_url=database_url,
        media_dir=tmp_path_factory.mktemp("docs-media"),
        log_json=False,
        log_level="WARNING",
        database_pool_size=2,
    )
    with serve(create_app(settings)) as url:
        yield url


def test_swagger_ui_renders_offline(docs_server: str, tmp_path: Path) -> None:
    with browser(tmp_path / "profile") as chrome:
        # The bundle loaded, read the whole document and drew operations as blocks. Past
        # about 130 operations Swagger UI draws only those in view (a virtual list), so the
        # blocks drawn are a screenful, not every operation.
        chrome.load(
            f"{docs_server}/docs",
            "document.querySelectorAll('.opblock').length >= 5"
            " && typeof ui !== 'undefined' && ui.specSelectors.operations().size > 100",
            timeout=60,
        )
        text = chrome.evaluate("document.body.innerText")
        paths = json.loads(
            chrome.evaluate("JSON.stringify(ui.specSelectors.paths().keySeq().toJS())")
        )
    assert "/v1/reports" in paths
    assert "/open311/v2/requests.json" in paths
    assert "Kerbside" in text


def test_redoc_renders_offline(docs_server: str, tmp_path: Path) -> None:
    with browser(tmp_path / "profile") as chrome:
        chrome.load(
            f"{docs_server}/redoc",
            "document.querySelectorAll('[data-section-id^=\"operation/\"]').length > 20",
            timeout=90,
        )
        text = chrome.evaluate("document.body.innerText")
    assert "Kerbside" in text
    assert "tickets" in text.lower()
