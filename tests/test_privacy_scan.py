"""Personal data never reaches a public output or a log line (issue 22, privacy scan).

Reports are filed with known personal data: a reporter's name, email, phone and push token,
a photo whose EXIF holds GPS, the camera's serial number and its author; a follower's email,
a supporter's push token, a signed-in citizen's account. Then every public GET route of the
application (walked from its own route table, so a room added later, Open311 or another, is
scanned without a word here) is called with every value it can take: JSON, GeoJSON, vector
tiles (decoded), OGC API - Features, exports, stats, photo bytes (whose EXIF must be gone).
No answer may hold any of the personal data, and nothing the application logged meanwhile
(every ``kerbside`` logger at DEBUG, everything else at INFO) may hold it or a secret.
"""

from __future__ import annotations

import io
import itertools
import logging
import re
import uuid
from typing import Any

import httpx
import mapbox_vector_tile
import orjson
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.auth.principal import get_current_principal
from app.contacts import service as contacts
from app.contacts.models import ContactKind
from app.contacts.service import ContactSpec
from geo.tiles import tile_of
from tests.factories import CITY, bearer_headers, make_jurisdiction, make_service, make_user
from tests.images import jpeg
from tests.test_route_security import FASTAPI_USERS, _calls, _routes

NAME = "Zelda Quux-Privata"
EMAIL = "zelda.quux@example.org"
PHONE = "+447700900987"
PUSH_TOKEN = "fcm-zeldaquux-token-0123456789abcdef"
SERIAL = "SN-ZQ-998877"
ARTIST = "Photo by Zelda Quux"
FOLLOWER = "follower.quux@example.org"
SUPPORTER_TOKEN = "fcm-supporter-quux-token-987654321"
ACCOUNT_EMAIL = "yorick.privatus@example.org"
ACCOUNT_NAME = "Yorick Privatus"
# The citizen's linked accounts (app/linking): a Mastodon handle and a Messenger PSID.
LINKED_HANDLE = "yorick.linked@social.example"
LINKED_PSID = "7230009988776655"
PERSONAL = (
    NAME,
    EMAIL,
    PHONE,
    PHONE.removeprefix("+"),
    PUSH_TOKEN,
    SERIAL,
    ARTIST,
    FOLLOWER,
    SUPPORTER_TOKEN,
    ACCOUNT_EMAIL,
    ACCOUNT_NAME,
    LINKED_HANDLE,
    LINKED_PSID,
)


def _leaks(blob: str | bytes) -> list[str]:
    if isinstance(blob, bytes):
        return [p for p in PERSONAL if p.encode() in blob or p.lower().encode() in blob.lower()]
    return [p for p in PERSONAL if p.lower() in blob.lower()]


def _public_get_routes(app: FastAPI) -> list[str]:
    return sorted(
        {
            path
            for method, path, route in _routes(app)
            if method == "GET"
            and not FASTAPI_USERS.match(path)
            and get_current_principal not in _calls(route)
        }
    )


async def _file_reports(
    client: httpx.AsyncClient, app: FastAPI, db: AsyncSession
) -> dict[str, Any]:
    city = await make_jurisdiction(db, slug="scanned")
    await make_service(db, city, "pothole")
    lon, lat = CITY.center
    photo = jpeg((800, 600), lon=lon + 0.0004, lat=lat, serial=SERIAL, artist=ARTIST)
    assert SERIAL.encode() in photo
    assert ARTIST.encode() in photo
    report = {
        "service_code": "pothole",
        "description": "Deep pothole by the bus stop",
        "contact": {
            "name": NAME,
            "email": EMAIL,
            "phone": PHONE,
            "push_token": PUSH_TOKEN,
            "updates": True,
        },
    }
    filed = await client.post(
        "/v1/reports",
        files=[
            ("report", (None, orjson.dumps(report), "application/json")),
            ("photos", ("mine.jpg", photo, "image/jpeg")),
        ],
    )
    assert filed.status_code == 201, filed.text
    accepted = filed.json()
    reference = accepted["ticket"]["reference"]
    photo_id = accepted["report"]["photos"][0]["id"]
    assert await app.state.photos.process_one(db, uuid.UUID(photo_id)) == "ready"
    followed = await client.post(f"/v1/tickets/{reference}/follow", json={"email": FOLLOWER})
    assert followed.status_code in (200, 201), followed.text
    supported = await client.post(
        f"/v1/tickets/{reference}/support", json={"push_token": SUPPORTER_TOKEN}
    )
    assert supported.status_code in (200, 201), supported.text
    # A signed-in citizen's own report, close by: their account's name and email.
    citizen = await make_user(db, role=Role.citizen, email=ACCOUNT_EMAIL)
    citizen.full_name = ACCOUNT_NAME
    await db.flush()
    citizen_headers = await bearer_headers(app.state.settings, citizen)
    for spec, how in (
        (
            ContactSpec(
                ContactKind.mastodon, "social.example:4242", data={"handle": LINKED_HANDLE}
            ),
            "oauth:mastodon",
        ),
        (ContactSpec(ContactKind.facebook, LINKED_PSID), "messenger:referral"),
    ):
        via = {"platform": spec.kind.value, "account": "city", "notice": True}
        assert await contacts.link(db, citizen.id, spec, how=how, via=via) is not None
    second = await client.post(
        "/v1/reports",
        json={"service_code": "pothole", "location": {"lon": lon - 0.003, "lat": lat}},
        headers=citizen_headers,
    )
    assert second.status_code == 201, second.text
    notification = (
        await db.execute(text("SELECT id FROM notification ORDER BY id LIMIT 1"))
    ).scalar_one_or_none()
    return {
        "slug": city.slug,
        "reference": reference,
        "report_id": accepted["report"]["id"],
        "photo_id": photo_id,
        "lon": lon,
        "lat": lat,
        "notification_id": str(notification or 1),
        "staff_view": (
            await client.get(
                f"/v1/reports/{accepted['report']['id']}",
                headers=await bearer_headers(
                    app.state.settings, await make_user(db, role=Role.staff, jurisdiction=city)
                ),
            )
        ).text,
        "bearer": citizen_headers["Authorization"].removeprefix("Bearer "),
    }


def _query(parameters: list[dict[str, Any]], world: dict[str, Any]) -> dict[str, str]:
    """Values for a route's query parameters: every one we know how to fill, required or not
    (so lists are asked for our tickets), and "1" for a required one we do not know."""
    lon, lat = world["lon"], world["lat"]
    known = {
        "bbox": f"{lon - 0.02},{lat - 0.02},{lon + 0.02},{lat + 0.02}",
        "zoom": "16",
        "lon": str(lon),
        "lat": str(lat),
        "service_code": "pothole",
        "jurisdiction": world["slug"],
        "jurisdiction_id": world["slug"],
        "properties": "all",
    }
    values = {}
    for parameter in parameters:
        name = parameter["name"]
        if name == "limit":
            schema = parameter.get("schema", {})
            ceiling = next((b["maximum"] for b in schema.get("anyOf", []) if "maximum" in b), 100)
            values[name] = str(min(100, schema.get("maximum", ceiling)))
        elif name in known:
            values[name] = known[name]
        elif parameter.get("required"):
            values[name] = "1"
    return values


def _paths(path: str, world: dict[str, Any], discovered: dict[str, list[str]]) -> list[str]:
    """``path`` with its parameters filled by every value that names our data."""
    names = re.findall(r"\{(\w+)\}", path)
    if not names:
        return [path]
    lon, lat = world["lon"], world["lat"]
    choices: dict[str, list[str]] = {}
    for name in names:
        if name in ("z", "x", "y"):
            continue
        if name in discovered:
            choices[name] = discovered[name]
        elif name in world:
            choices[name] = [str(world[name])]
        else:  # a room added later: try what could name our data
            choices[name] = [world["reference"], world["report_id"], world["slug"], "1"]
    if {"z", "x", "y"} <= set(names):
        tiles = [tile_of(lon, lat, z) for z in (8, 12, 16)]
        rows = [{"z": str(t.z), "x": str(t.x), "y": str(t.y)} for t in tiles]
    else:
        rows = [{}]
    filled = []
    for row in rows:
        for combination in itertools.product(*choices.values()):
            values = {**row, **dict(zip(choices, combination, strict=True))}
            filled.append(re.sub(r"\{(\w+)\}", lambda m, v=values: v[m.group(1)], path))
    return filled


def _readable(response: httpx.Response, path: str) -> str | bytes:
    """What a client gets out of the answer: tiles decoded, photos without EXIF checked."""
    kind = response.headers.get("content-type", "")
    if response.status_code == 200 and path.endswith(".mvt"):
        decoded = mapbox_vector_tile.decode(response.content)
        return orjson.dumps(decoded, default=str).decode() + response.content.hex()
    if response.status_code == 200 and kind.startswith("image/"):
        image = Image.open(io.BytesIO(response.content))
        assert not image.getexif(), path  # no GPS, serial, author, camera left
        assert "exif" not in image.info, path
        assert b"KerbCam" not in response.content, path
        return response.content
    return response.text


async def test_no_public_output_or_log_line_holds_personal_data(
    client: httpx.AsyncClient, app: FastAPI, db: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="kerbside")
    world = await _file_reports(client, app, db)
    # The scan can see a leak: staff's view of the report carries the reporter's contacts.
    assert {NAME, EMAIL, PHONE} <= set(_leaks(world["staff_view"]))

    documents = app.openapi()["paths"]
    collections = (await client.get("/v1/ogc/collections")).json()["collections"]
    discovered: dict[str, list[str]] = {"collection_id": [c["id"] for c in collections]}
    features = []
    for collection in discovered["collection_id"]:
        items = await client.get(
            f"/v1/ogc/collections/{collection}/items", params={"limit": "1000"}
        )
        features += [str(f["id"]) for f in items.json().get("features", [])]
    discovered["feature_id"] = features[:20] or ["1"]

    scanned: dict[str, int] = {}
    seen_reference: set[str] = set()
    routes = _public_get_routes(app)
    assert len(routes) >= 30
    for path in routes:
        parameters = documents.get(path, {}).get("get", {}).get("parameters", [])
        query = _query([p for p in parameters if p["in"] == "query"], world)
        for url in _paths(path, world, discovered):
            for params in (query, {}):
                response = await client.get(url, params=params)
                assert response.status_code < 500, (url, response.text)
                body = _readable(response, path)
                assert _leaks(body) == [], (url, params)
                scanned[url] = response.status_code
                text_body = body if isinstance(body, str) else body.decode("latin-1")
                if world["reference"] in text_body:
                    seen_reference.add(path)
    # The scan looked where the data is: each kind of public output showed our ticket.
    for path in (
        "/v1/tickets/{reference}",
        "/v1/reports/{report_id}",
        "/v1/tickets.geojson",
        "/v1/tiles/{z}/{x}/{y}.mvt",
        "/v1/export/tickets.csv",
        "/v1/export/tickets.geojson",
        "/v1/ogc/collections/{collection_id}/items",
        "/v1/tickets/nearby",
    ):
        assert path in seen_reference, path
    assert scanned[f"/v1/photos/{world['photo_id']}.jpg"] == 200
    assert scanned[f"/v1/photos/{world['photo_id']}/thumbnail.jpg"] == 200
    assert scanned["/v1/stats"] == 200

    # Nothing logged meanwhile holds personal data or a secret.
    assert caplog.records
    secrets = (world["bearer"], app.state.settings.secret_key.get_secret_value())
    for record in caplog.records:
        line = record.getMessage() + " " + str(record.__dict__)
        assert _leaks(line) == [], line
        for secret in secrets:
            assert secret not in line, record.name
