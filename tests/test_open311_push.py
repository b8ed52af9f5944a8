"""Open311 beyond coordinates and uploads (issue 19's gaps): address-only requests placed by
the geocoder or the street gazetteer, ``media_url`` photos fetched after filing through the
safe downloader, and FixMyStreet's ``POST servicerequestupdates`` as internal comments.

The geocoder and the clients' photo servers are real HTTP servers on loopback (``tests/fakes``)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.api_keys import issue_api_key
from app.auth.models import Role
from app.geocoding.service import HttpGeocoder
from app.media.service import PhotoPipeline
from app.open311.media import fetch_request_media, fetch_update_media
from app.settings import Settings
from app.social import config as social_config
from app.social.config import Social, Street
from tests.factories import CITY, make_jurisdiction, make_service
from tests.fakes.http import FakeServer, Received, Reply, served_file, serving
from tests.images import jpeg

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


# -- media_url ------------------------------------------------------------------------------------


@pytest.fixture
def photos(settings: Settings) -> Iterator[PhotoPipeline]:
    pipeline = PhotoPipeline(settings)
    yield pipeline
    pipeline.close()


@pytest.fixture
def photo_server() -> Iterator[FakeServer]:
    """A client's photo server: a real JPEG, a page that is no photo, a redirect."""
    files = {
        "/photos/hole.jpg": (jpeg((320, 240), lon=LON, lat=LAT), "image/jpeg"),
        "/photos/page.jpg": (b"<html><body>not a photo</body></html>", "image/jpeg"),
    }

    def handle(request: Received) -> Reply:
        if request.path == "/photos/moved.jpg":
            return Reply(302, b"", {"Location": "/photos/hole.jpg"})
        if request.path == "/photos/private.jpg":
            return Reply(302, b"", {"Location": "http://10.255.255.1/hole.jpg"})
        return served_file(files, request) or Reply(404)

    with serving(handle) as server:
        yield server


async def media_state(db: AsyncSession, report_id: int) -> Any:
    return (
        await db.execute(
            text("SELECT state, failure FROM open311_media WHERE report_id = :r"),
            {"r": report_id},
        )
    ).one()


async def photos_of(db: AsyncSession, report_id: int) -> list[Any]:
    rows = await db.execute(
        text("SELECT status FROM photo WHERE report_id = :r ORDER BY id"), {"r": report_id}
    )
    return list(rows.all())


async def test_a_media_url_photo_is_fetched_after_filing(
    client: httpx.AsyncClient,
    city: dict[str, Any],
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
    photo_server: FakeServer,
) -> None:
    url = f"{photo_server.url}/photos/moved.jpg"  # a redirect to the photo, checked again
    filed = await client.post(
        f"{BASE}/requests.json", data=form(city, lat=str(LAT), long=str(LON), media_url=url)
    )
    assert filed.status_code == 200, filed.text
    report = await report_of(db, filed.json()[0]["service_request_id"])
    assert photo_server.received == []  # nothing fetched while the client waited
    job = (
        await db.execute(
            text("SELECT args, queue_name FROM procrastinate_jobs WHERE task_name = :t"),
            {"t": "fetch_open311_media"},
        )
    ).one()
    assert (job.args, job.queue_name) == ({"report_id": report.id}, "photos")
    assert (await media_state(db, report.id)).state == "pending"
    loopback = settings.model_copy(update={"media_url_allow_loopback": True})
    done = await fetch_request_media(sessionmaker, loopback, photos, report.id, last_try=False)
    assert done == "fetched"
    assert await media_state(db, report.id) == ("fetched", None)
    assert [p.status for p in await photos_of(db, report.id)] == ["pending"]  # then processed
    assert [r.path for r in photo_server.received] == ["/photos/moved.jpg", "/photos/hole.jpg"]
    # A second try of the job attaches nothing twice.
    again = await fetch_request_media(sessionmaker, loopback, photos, report.id, last_try=False)
    assert again == "nothing to fetch"
    assert len(await photos_of(db, report.id)) == 1


async def test_a_media_url_that_is_no_photo_keeps_the_report_and_says_why(
    client: httpx.AsyncClient,
    city: dict[str, Any],
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
    photo_server: FakeServer,
) -> None:
    filed = await client.post(
        f"{BASE}/requests.json",
        data=form(
            city,
            lat=str(LAT),
            long=str(LON),
            media_url=[
                f"{photo_server.url}/photos/page.jpg",  # markup with a photo's name and type
                f"{photo_server.url}/photos/gone.jpg",  # 404
            ],
        ),
    )
    assert filed.status_code == 200, filed.text
    reference = filed.json()[0]["service_request_id"]
    report = await report_of(db, reference)
    loopback = settings.model_copy(update={"media_url_allow_loopback": True})
    done = await fetch_request_media(sessionmaker, loopback, photos, report.id, last_try=False)
    assert done == "failed"
    state = await media_state(db, report.id)
    assert state.state == "failed"
    assert "photo 1:" in state.failure
    assert "photo 2: media download 404" in state.failure
    assert await photos_of(db, report.id) == []
    note = (
        await db.execute(
            text(
                "SELECT e.note, e.public FROM ticket_event e JOIN ticket t ON t.id = e.ticket_id"
                " WHERE t.reference = :r AND e.actor_label = 'open311:media_url'"
            ),
            {"r": reference},
        )
    ).one()
    assert note.public is False
    assert "could not be fetched" in note.note
    # The report is there, public, as filed.
    listed = await client.get(f"{BASE}/requests/{reference}.json")
    assert listed.status_code == 200


async def test_media_urls_reach_public_addresses_only_in_production(
    client: httpx.AsyncClient,
    city: dict[str, Any],
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
    photo_server: FakeServer,
) -> None:
    production = Settings(
        env="production",
        secret_key=SecretStr("p" * 40),
        database_url=settings.database_url,
        media_dir=settings.media_dir,
        log_json=False,
    )
    assert production.media_url_allow_loopback is False
    with pytest.raises(ValidationError, match="MEDIA_URL_ALLOW_LOOPBACK"):
        Settings(
            env="production",
            secret_key=SecretStr("p" * 40),
            database_url=settings.database_url,
            media_url_allow_loopback=True,
        )
    filed = await client.post(
        f"{BASE}/requests.json",
        data=form(
            city,
            lat=str(LAT),
            long=str(LON),
            media_url=[
                f"{photo_server.url}/photos/hole.jpg",  # loopback: this server itself, say
                "http://10.255.255.1/hole.jpg",  # the city's own network
                "http://169.254.169.254/latest/meta-data",  # a cloud's metadata service
            ],
        ),
    )
    assert filed.status_code == 200, filed.text
    report = await report_of(db, filed.json()[0]["service_request_id"])
    done = await fetch_request_media(sessionmaker, production, photos, report.id, last_try=True)
    assert done == "failed"
    failure = (await media_state(db, report.id)).failure
    assert "photo 1: its host is a loopback address" in failure
    assert "photo 2: its host is a private address" in failure
    assert "photo 3: its host is a link-local address" in failure
    assert photo_server.received == []  # never connected
    # Allowed loopback (tests, demos) still refuses a redirect to a private address.
    redirected = await client.post(
        f"{BASE}/requests.json",
        data=form(
            city,
            lat=str(LAT + 0.01),
            long=str(LON),
            media_url=f"{photo_server.url}/photos/private.jpg",
        ),
    )
    report = await report_of(db, redirected.json()[0]["service_request_id"])
    loopback = settings.model_copy(update={"media_url_allow_loopback": True})
    assert (
        await fetch_request_media(sessionmaker, loopback, photos, report.id, last_try=True)
        == "failed"
    )
    assert "private address" in (await media_state(db, report.id)).failure


async def test_a_media_url_must_be_a_web_link(
    client: httpx.AsyncClient, city: dict[str, Any]
) -> None:
    for url in ("ftp://example.org/a.jpg", "http://user:pw@example.org/a.jpg", "not a link"):
        for ext in (".json", ".xml"):
            refused = await client.post(
                f"{BASE}/requests{ext}",
                data=form(city, lat=str(LAT), long=str(LON), media_url=url),
            )
            assert refused.status_code == 400, refused.text
            assert "media_url" in refused.text


# -- POST servicerequestupdates -------------------------------------------------------------------


def update_form(city: dict[str, Any], reference: str, **fields: Any) -> dict[str, Any]:
    """What FixMyStreet's Open311 client posts for a citizen's update."""
    return {
        "api_key": city["key"],
        "service_request_id": reference,
        "update_id": "4242",
        "updated_datetime": "2026-12-04T10:15:00+00:00",
        "status": "OPEN",
        "description": "Still there, and deeper after the rain.",
        "email": "citizen@example.org",
        "first_name": "Joanna",
        "last_name": "Quixotic",
        "title": "MRS",
        "media_url": "https://fixmystreet.example/photo/99.full.jpeg",
        **fields,
    }


async def comments(db: AsyncSession, reference: str) -> list[Any]:
    rows = await db.execute(
        text(
            "SELECT e.id, e.kind, e.public, e.note, e.data FROM ticket_event e"
            " JOIN ticket t ON t.id = e.ticket_id"
            " WHERE t.reference = :r AND e.data ? 'open311_update_id' ORDER BY e.id"
        ),
        {"r": reference},
    )
    return list(rows.all())


async def filed_reference(client: httpx.AsyncClient, city: dict[str, Any]) -> str:
    filed = await client.post(f"{BASE}/requests.json", data=form(city, lat=str(LAT), long=str(LON)))
    assert filed.status_code == 200, filed.text
    return str(filed.json()[0]["service_request_id"])


async def test_a_fixmystreet_update_becomes_an_internal_comment_once(
    client: httpx.AsyncClient, city: dict[str, Any], db: AsyncSession
) -> None:
    reference = await filed_reference(client, city)
    answer = await client.post(
        f"{BASE}/servicerequestupdates.xml", data=update_form(city, reference)
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/xml; charset=utf-8"
    root = ET.fromstring(answer.content)  # noqa: S314
    assert root.tag == "service_request_updates"
    (update,) = root
    assert update.tag == "request_update"
    assert [c.tag for c in update] == ["update_id"]  # account_id is null: left out
    (comment,) = await comments(db, reference)
    assert update.findtext("update_id") == str(comment.id)
    assert (comment.kind, comment.public) == ("comment", False)
    assert comment.note.startswith("Still there, and deeper after the rain.")
    assert "https://fixmystreet.example/photo/99.full.jpeg" in comment.note
    assert comment.data == {
        "open311_update_id": "4242",
        "status": "OPEN",
        "updated_datetime": "2026-12-04T10:15:00Z",
        "media_url": ["https://fixmystreet.example/photo/99.full.jpeg"],
    }
    # Who wrote it is not kept; nothing of it reaches the public timeline or updates.
    stored = json.dumps([comment.note, comment.data])
    for personal in ("citizen@example.org", "Joanna", "Quixotic"):
        assert personal not in stored
    public = await client.get(f"{BASE}/servicerequestupdates.json")
    assert "deeper after the rain" not in public.text
    # FixMyStreet retries (its answer was lost): the same comment, in JSON now.
    again = await client.post(
        f"{BASE}/servicerequestupdates.json", data=update_form(city, reference)
    )
    assert again.status_code == 200, again.text
    assert again.json() == [{"update_id": str(comment.id), "account_id": None}]
    assert len(await comments(db, reference)) == 1


async def test_a_citizens_closed_is_noted_and_the_ticket_stays_open(
    client: httpx.AsyncClient, city: dict[str, Any], db: AsyncSession
) -> None:
    reference = await filed_reference(client, city)
    answer = await client.post(
        f"{BASE}/servicerequestupdates.json",
        data=update_form(
            city, reference, update_id="4243", status="closed", description="Fixed, thanks!"
        ),
    )
    assert answer.status_code == 200, answer.text
    (comment,) = await comments(db, reference)
    assert comment.data["status"] == "CLOSED"
    assert "Marked CLOSED on FixMyStreet" in comment.note
    status = (
        await db.execute(text("SELECT status FROM ticket WHERE reference = :r"), {"r": reference})
    ).scalar_one()
    assert status == "open"
    listed = await client.get(f"{BASE}/requests/{reference}.json")
    assert listed.json()[0]["status"] == "open"


async def test_update_errors_are_open311_errors_in_both_formats(
    client: httpx.AsyncClient, city: dict[str, Any], db: AsyncSession
) -> None:
    reference = await filed_reference(client, city)
    other = await make_jurisdiction(db, slug="elsewhere")
    other_key = await issue_api_key(db, jurisdiction_id=other.id, name="x", role=Role.citizen)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"api_key": ""}, 403, "api_key"),
        ({"api_key": "ks_nope_nope"}, 403, "API key"),
        ({"api_key": other_key.secret}, 403, "own jurisdiction"),
        ({"jurisdiction_id": "elsewhere"}, 403, "own jurisdiction"),
        ({"service_request_id": "K-2026-999999"}, 404, "K-2026-999999"),
        ({"update_id": ""}, 400, "update_id"),
        ({"update_id": "u" * 101}, 400, "update_id"),
        ({"status": "SOLVED"}, 400, "status"),
        ({"updated_datetime": "yesterday"}, 400, "updated_datetime"),
        ({"description": "", "media_url": ""}, 400, "description"),
        ({"description": "x" * 4001}, 400, "description"),
        ({"media_url": "ftp://example.org/a.jpg"}, 400, "media_url"),
    ]
    for ext in (".json", ".xml"):
        for fields, status, words in cases:
            answer = await client.post(
                f"{BASE}/servicerequestupdates{ext}",
                data=update_form(city, reference, **fields),
            )
            assert answer.status_code == status, (fields, answer.text)
            if ext == ".json":
                body = answer.json()
                assert [e["code"] for e in body] == [status] * len(body)
                assert words in " ".join(e["description"] for e in body), (fields, body)
            else:
                root = ET.fromstring(answer.content)  # noqa: S314
                assert root.tag == "errors"
                assert words in answer.text, (fields, answer.text)
    assert await comments(db, reference) == []


async def test_an_updates_photos_are_fetched_onto_its_ticket_once(
    client: httpx.AsyncClient,
    city: dict[str, Any],
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
    photo_server: FakeServer,
) -> None:
    reference = await filed_reference(client, city)
    links = [f"{photo_server.url}/photos/moved.jpg", f"{photo_server.url}/photos/gone.jpg"]
    answer = await client.post(
        f"{BASE}/servicerequestupdates.json",
        data=update_form(city, reference, update_id="4250", media_url=links),
    )
    assert answer.status_code == 200, answer.text
    assert photo_server.received == []  # nothing fetched while FixMyStreet waited
    (comment,) = await comments(db, reference)
    job = (
        await db.execute(
            text("SELECT args, queue_name FROM procrastinate_jobs WHERE task_name = :t"),
            {"t": "fetch_open311_update_media"},
        )
    ).one()
    assert (job.args, job.queue_name) == ({"event_id": comment.id}, "photos")
    # FixMyStreet retries the push: the same comment, and its photos asked for once.
    again = await client.post(
        f"{BASE}/servicerequestupdates.json",
        data=update_form(city, reference, update_id="4250", media_url=links),
    )
    assert again.json() == [{"update_id": str(comment.id), "account_id": None}]
    jobs = await db.execute(
        text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = :t"),
        {"t": "fetch_open311_update_media"},
    )
    assert jobs.scalar_one() == 1

    loopback = settings.model_copy(update={"media_url_allow_loopback": True})
    done = await fetch_update_media(sessionmaker, loopback, photos, comment.id, last_try=True)
    assert done == "fetched"
    kept = (
        await db.execute(
            text(
                "SELECT p.kind, p.report_id, p.public, p.status FROM photo p"
                " JOIN ticket t ON t.id = p.ticket_id WHERE t.reference = :r"
            ),
            {"r": reference},
        )
    ).all()
    # Of the ticket, not of a report (the update's author filed none here); public, as a
    # report's photos are, once processed.
    assert [tuple(p) for p in kept] == [("update", None, True, "pending")]
    ticket = (await client.get(f"/v1/tickets/{reference}")).json()
    assert [p["status"] for p in ticket["update_photos"]] == ["pending"]
    assert ticket["completion_photos"] == []
    line = (
        await db.execute(
            text(
                "SELECT e.kind, e.public, e.note, e.data FROM ticket_event e"
                " JOIN ticket t ON t.id = e.ticket_id"
                " WHERE t.reference = :r AND e.actor_label = 'open311:media_url'"
            ),
            {"r": reference},
        )
    ).one()
    assert (line.kind, line.public) == ("photo_added", False)
    assert line.data == {"photos": 1, "open311_update_event": comment.id, "media_url_failed": 1}
    assert "photo 2" in line.note  # the link that led nowhere, said on the timeline
    state = (
        await db.execute(
            text("SELECT state, failure FROM open311_update_media WHERE event_id = :e"),
            {"e": comment.id},
        )
    ).one()
    assert state.state == "fetched"
    assert state.failure.startswith("photo 2:")
    # A second try of the job attaches nothing twice.
    assert (
        await fetch_update_media(sessionmaker, loopback, photos, comment.id, last_try=True)
        == "nothing to fetch"
    )
