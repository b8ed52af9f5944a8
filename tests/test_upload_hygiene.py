"""Upload hygiene (issue 22): what an upload is comes from its bytes, never from what the client
declares; polyglots and decompression bombs are refused; every write route has a documented,
enforced maximum body size (413 problem+json beyond it).
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from PIL import Image, PngImagePlugin
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.main import create_app, larger_bodies
from app.media.processing import (
    DecompressionBomb,
    HiddenContent,
    check_photo,
    process_photo,
)
from app.settings import Settings
from tests.factories import CITY, make_jurisdiction, make_service
from tests.images import jpeg
from tests.test_route_security import _routes

PROBLEM = "application/problem+json"


def _png(**text_chunks: tuple[str, bool]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, (value, compressed) in text_chunks.items():
        info.add_text(key, value, zip=compressed)
    out = io.BytesIO()
    Image.linear_gradient("L").resize((64, 48)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def _with_comment(data: bytes, comment: bytes) -> bytes:
    """A JPEG with a COM segment right after its start marker."""
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return data[:2] + segment + data[2:]


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.html", "<h1>hello</h1>")
    return out.getvalue()


POLYGLOTS = {
    "jpeg + zip": jpeg((64, 48)) + _zip(),
    "jpeg + html after the end": jpeg((64, 48)) + b"<html><script>alert(1)</script></html>",
    "jpeg with php in a comment": _with_comment(jpeg((64, 48)), b"<?php system($_GET['c']); ?>"),
    "jpeg + program": jpeg((64, 48)) + b"MZ\x90\x00" + bytes(64),
    "png with a script in its text": _png(Comment=("<script>alert(1)</script>", False)),
    "png + pdf": _png() + b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n",
    "png + zip": _png() + _zip(),
}


@pytest.mark.parametrize("name", sorted(POLYGLOTS))
def test_polyglots_are_refused(name: str) -> None:
    data = POLYGLOTS[name]
    Image.open(io.BytesIO(data)).load()  # each is a picture Pillow reads happily
    with pytest.raises(HiddenContent):
        check_photo(data)
    with pytest.raises(HiddenContent):
        process_photo(data)


def test_pictures_with_honest_extras_are_taken() -> None:
    """A second picture after the first (MPO, phone trailers) and XMP metadata are images."""
    mpo_like = jpeg((64, 48)) + jpeg((32, 24))
    assert check_photo(mpo_like).original_format == "jpeg"
    xmp = _with_comment(jpeg((64, 48)), b'<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>')
    assert check_photo(xmp).original_format == "jpeg"
    assert check_photo(_png(Title=("Pothole on Main Street", True))).original_format == "png"
    # The bytes of a ZIP's last record, as they turn up by chance in a photo's data: not a
    # record a ZIP reader would find (its length does not end the file there).
    chance = _with_comment(jpeg((64, 48)), b"PK\x05\x06" + bytes(range(40)))
    assert check_photo(chance).original_format == "jpeg"


def test_a_zip_directory_record_ending_the_file_is_refused_without_the_rest_of_the_zip() -> None:
    record = b"PK\x05\x06" + bytes(16) + (3).to_bytes(2, "little") + b"abc"
    with pytest.raises(HiddenContent):
        check_photo(_with_comment(jpeg((64, 48)), b"x") + record)


def test_metadata_that_inflates_past_pillows_limits_is_a_decompression_bomb() -> None:
    # 512 KiB of text in a few hundred bytes: under Pillow's default 1 MiB per chunk, over ours.
    bomb = _png(Comment=("A" * 512 * 1024, True))
    assert len(bomb) < 5_000
    with pytest.raises(DecompressionBomb):
        check_photo(bomb)


def _form(report: dict[str, Any], name: str, data: bytes, declared: str) -> dict[str, Any]:
    return {
        "files": [
            ("report", (None, orjson.dumps(report), "application/json")),
            ("photos", (name, data, declared)),
        ]
    }


async def test_the_intake_sniffs_uploads_and_ignores_the_declared_type(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    city = await make_jurisdiction(db)
    await make_service(db, city, "pothole")
    lon, lat = CITY.center
    report = {"service_code": "pothole", "location": {"lon": lon, "lat": lat}}
    # A PNG called a JPEG and named like a program: it is a PNG, and a photo.
    taken = await client.post(
        "/v1/reports", **_form(report, "setup.exe", _png(), "application/x-msdownload")
    )
    assert taken.status_code == 201, taken.text
    # A JPEG declared as a web page is still a JPEG.
    page = await client.post(
        "/v1/reports", **_form(report, "index.html", jpeg((64, 48)), "text/html")
    )
    assert page.status_code == 201, page.text
    # A polyglot declared as a plain JPEG is refused, and nothing is filed.
    before = (await db.execute(text("SELECT count(*) FROM report"))).scalar_one()
    refused = await client.post(
        "/v1/reports", **_form(report, "photo.jpg", POLYGLOTS["jpeg + zip"], "image/jpeg")
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["errors"][0] == {
        "field": "photos[0]",
        "message": refused.json()["errors"][0]["message"],
        "type": "hidden_content",
    }
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == before


# -- request sizes -------------------------------------------------------------------------------

_WRITES = ("POST", "PUT", "PATCH", "DELETE")


def _write_routes(app: FastAPI) -> list[tuple[str, str]]:
    return sorted({(m, p) for m, p, _ in _routes(app) if m in _WRITES})


def test_every_write_route_documents_its_maximum_body_and_its_413() -> None:
    app = create_app()
    settings: Settings = app.state.settings
    document = app.openapi()["paths"]
    routes = _write_routes(app)
    assert len(routes) > 40
    larger = larger_bodies(settings)
    for method, path in routes:
        operation = document[path][method.lower()]
        wanted = larger.get((method, path), settings.max_json_body_bytes)
        assert operation["x-max-request-bytes"] == wanted, (method, path)
        assert "413" in operation["responses"], (method, path)
    # The few larger ones are real routes, and none is above the ceiling.
    assert set(larger) <= set(routes)
    assert max(larger.values()) <= settings.max_request_bytes


async def test_every_write_route_refuses_a_body_over_its_maximum(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    settings: Settings = app.state.settings
    larger = larger_bodies(settings)
    for method, path in _write_routes(app):
        limit = larger.get((method, path), settings.max_json_body_bytes)
        url = re.sub(r"\{(\w+)\}", "1", path)
        response = await client.request(
            method, url, content=b"x" * (limit + 1), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413, (method, path, response.status_code)
        # Open311's clients read Open311's own error document, in the format they asked for.
        if path.startswith("/open311/"):
            wanted_type = (
                "application/json; charset=utf-8"
                if path.endswith(".json")
                else "text/xml; charset=utf-8"
            )
        else:
            wanted_type = PROBLEM
        assert response.headers["content-type"] == wanted_type, (method, path)


async def test_a_json_route_refuses_a_streamed_body_over_its_maximum_and_takes_one_under(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(settings.max_json_body_bytes // 65536 + 2):
            yield b"x" * 65536

    streamed = await client.post(
        "/v1/tickets/K-2026-000001/support",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    assert streamed.headers["content-type"] == PROBLEM
    assert "1 MiB" in streamed.json()["detail"]
    # Just under the maximum goes through to the route (which finds no such ticket).
    padded = b'{"email": null' + b" " * (settings.max_json_body_bytes - 100) + b"}"
    under = await client.post(
        "/v1/tickets/K-2026-000001/support",
        content=padded,
        headers={"content-type": "application/json"},
    )
    assert under.status_code == 404, under.text
