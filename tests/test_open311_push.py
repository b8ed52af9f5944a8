"""Open311 beyond coordinates and uploads (issue 19's gaps): address-only requests placed by
the geocoder or the street gazetteer, ``media_url`` photos fetched after filing through the
safe downloader, and FixMyStreet's ``POST servicerequestupdates`` as internal comments.

The geocoder and the clients' photo servers are real HTTP servers on loopback (``tests/fakes``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.api_keys import issue_api_key
from app.auth.models import Role
from app.geocoding.service import HttpGeocoder
from app.settings import Settings
from app.social import config as social_config
from app.social.config import Social, Street
from tests.factories import CITY, make_jurisdiction, make_service
from tests.fakes.http import FakeServer, Received, Reply, serving

BASE = "/open311/v2"
LON, LAT = CITY.center
STATION_ROAD = (LON + 0.003, LAT + 0.002)  # what the geocoder knows
VISMARKT = (LON - 0.004, LAT - 0.001)  # a street of the city file's gazetteer


@pytest.fixture
async def city(db: AsyncSession) -> dict[str, Any]:
    jurisdiction = await make_jurisdiction(db, slug="addressville")
    await make_service(db, jurisdiction, "pothole")
    key = await issue_api_key(db, jurisdiction_id=jurisdiction.id, name="fms", role=Role.citizen)
    await social_config.write(
        db,
        jurisdiction.id,
        Social(streets=[Street(name="Vismarkt", lon=VISMARKT[0], lat=VISMARKT[1])]),
    )
    return {"jurisdiction": jurisdiction, "key": key.secret}


def form(city: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "api_key": city["key"],
        "service_code": "pothole",
        "description": "A deep pothole by the bus stop",
        **fields,
    }


async def report_of(db: AsyncSession, reference: str) -> Any:
    return (
        await db.execute(
            text(
                "SELECT r.id, r.location_source, r.address, ST_X(r.location) AS lon,"
                " ST_Y(r.location) AS lat FROM report r JOIN ticket t ON t.id = r.ticket_id"
                " WHERE t.reference = :r ORDER BY r.id DESC LIMIT 1"
            ),
            {"r": reference},
        )
    ).one()


# -- address-only requests ----------------------------------------------------------------------


@pytest.fixture
async def geocoder(app: FastAPI, settings: Settings) -> AsyncIterator[FakeServer]:
    """A Nominatim that knows Station Road 12, and a corner of the city's box (outside it)."""
    west, south, _, _ = CITY.boundary.bounds

    def nominatim(request: Received) -> Reply:
        known = {
            "Station+Road+12": STATION_ROAD,
            "Far+Corner+1": (west + 0.0005, south + 0.0005),
        }
        for query, (lon, lat) in known.items():
            if query in request.path:
                return Reply.json(200, json.dumps([{"lat": str(lat), "lon": str(lon)}]))
        return Reply.json(200, "[]")

    with serving(nominatim) as server:
        found = HttpGeocoder(settings.model_copy(update={"geocoder_url": server.url}))
        app.state.geocoder = found
        yield server
        await found.close()


async def test_an_address_is_placed_by_the_geocoder_inside_the_city(
    client: httpx.AsyncClient, city: dict[str, Any], db: AsyncSession, geocoder: FakeServer
) -> None:
    filed = await client.post(
        f"{BASE}/requests.json", data=form(city, address_string="Station Road 12")
    )
    assert filed.status_code == 200, filed.text
    report = await report_of(db, filed.json()[0]["service_request_id"])
    assert report.location_source == "address"
    assert (report.lon, report.lat) == pytest.approx(STATION_ROAD)
    assert report.address == "Station Road 12"
    (asked,) = geocoder.to("/search?")
    assert "bounded=1" in asked.path  # searched within the jurisdiction's box
    # Inside the box but outside the boundary: refused, naming the field, in both formats.
    for ext in (".json", ".xml"):
        outside = await client.post(
            f"{BASE}/requests{ext}", data=form(city, address_string="Far Corner 1")
        )
        assert outside.status_code == 400, outside.text
        assert "address_string" in outside.text
        assert "outside" in outside.text
    # The geocoder does not know it: the street gazetteer does (after the geocoder).
    street = await client.post(
        f"{BASE}/requests.json", data=form(city, address_string="Vismarkt, by the fish stall")
    )
    assert street.status_code == 200, street.text
    report = await report_of(db, street.json()[0]["service_request_id"])
    assert (report.location_source, report.lon, report.lat) == (
        "address",
        pytest.approx(VISMARKT[0]),
        pytest.approx(VISMARKT[1]),
    )


async def test_without_a_geocoder_the_gazetteer_places_a_street_and_nothing_else(
    client: httpx.AsyncClient, city: dict[str, Any], db: AsyncSession, app: FastAPI
) -> None:
    assert app.state.geocoder is None  # KERBSIDE_GEOCODER_URL unset
    # FixMyStreet's address_id marker is no address; a street name in address_id is.
    filed = await client.post(
        f"{BASE}/requests.json", data=form(city, address_id="Vismarkt", lat="", long="")
    )
    assert filed.status_code == 200, filed.text
    report = await report_of(db, filed.json()[0]["service_request_id"])
    assert report.location_source == "address"
    for fields in (
        {"address_string": "Station Road 12"},
        {"address_id": "#NOTPINPOINTED#"},
        {},
    ):
        for ext in (".json", ".xml"):
            refused = await client.post(f"{BASE}/requests{ext}", data=form(city, **fields))
            assert refused.status_code == 400, refused.text
            assert "lat/long: send lat and long" in refused.text
    refused = await client.post(
        f"{BASE}/requests.json", data=form(city, address_string="Station Road 12")
    )
    assert refused.json() == [
        {
            "code": 400,
            "description": "lat/long: send lat and long (WGS84), or a photo with GPS in its"
            " EXIF: address_string 'Station Road 12' could not be placed on the map",
        }
    ]
