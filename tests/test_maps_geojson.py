"""GET /v1/tickets.geojson: valid RFC 7946, filters at their edges, bbox limits, pages, ETag,
gzip, public versus staff views, snapped sensitive locations, no personal data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.jurisdictions.models import Jurisdiction, Service
from app.maps.queries import MAP_PROPERTIES, PUBLIC_PROPERTIES, STAFF_PROPERTIES
from geo.city import make_city
from geo.distance import haversine_m, offset_lonlat
from tests.factories import PASSWORD, make_crew, make_jurisdiction, make_service, make_user
from tests.maps_data import CENTER, NOW, add_ticket

GEOJSON = "application/geo+json"
PROBLEM = "application/problem+json"
NEAR = ",".join(
    f"{v:.6f}" for v in (*offset_lonlat(*CENTER, -300, -300), *offset_lonlat(*CENTER, 300, 300))
)


@pytest.fixture
async def city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="mapville")


@pytest.fixture
async def pothole(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(db, city, "pothole")


@pytest.fixture
async def streetlight(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(db, city, "streetlight")


async def get(client: httpx.AsyncClient, **params: Any) -> httpx.Response:
    headers = params.pop("headers", None)
    return await client.get("/v1/tickets.geojson", params=params, headers=headers)


def refs(response: httpx.Response) -> list[str]:
    """The features' references, sorted: a page that holds the whole answer comes in index
    order, which depends on what the index held before (not a promise of the API)."""
    assert response.status_code == 200, response.text
    return sorted(f["id"] for f in response.json()["features"])


async def login(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    answer = await client.post("/v1/auth/jwt/login", data={"username": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def test_valid_feature_collection_in_lon_lat_order(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    made = await add_ticket(db, city, pothole, *CENTER, description='Deep "one", by the kerb')
    lean = await get(client, bbox=NEAR)
    assert tuple(lean.json()["features"][0]["properties"]) == MAP_PROPERTIES
    response = await get(client, bbox=NEAR, properties="all")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == GEOJSON
    doc = response.json()
    assert doc["type"] == "FeatureCollection"
    assert doc["numberReturned"] == 1
    assert [link["rel"] for link in doc["links"]] == ["self"]
    (feature,) = doc["features"]
    assert feature["type"] == "Feature"
    assert feature["id"] == made.reference
    assert feature["geometry"]["type"] == "Point"
    lon, lat = feature["geometry"]["coordinates"]
    assert (lon, lat) == pytest.approx(CENTER, abs=1e-6)  # RFC 7946: longitude first
    assert lon < 0 < lat  # the synthetic city is at -2.59, 51.45: an order swap would show
    props = feature["properties"]
    assert set(props) == set(PUBLIC_PROPERTIES)
    assert props["reference"] == made.reference
    assert props["service_code"] == "pothole"
    assert props["status"] == "open"
    assert props["area_code"] == "D01"
    assert props["description"] == 'Deep "one", by the kerb'
    assert props["sla_state"] == "ok"
    assert props["expected_by"] == props["resolve_due_at"]  # open, nothing scheduled
    assert props["has_photo"] is False
    assert props["created_at"].endswith("Z")
    assert props["url"].endswith(f"/v1/tickets/{made.reference}")


async def test_bbox_edges_are_included(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    lon, lat = CENTER
    inside = await add_ticket(db, city, pothole, lon, lat)
    edge = await add_ticket(db, city, pothole, lon + 0.001, lat + 0.001)
    await add_ticket(db, city, pothole, lon + 0.0011, lat)
    box = f"{lon - 0.001},{lat - 0.001},{lon + 0.001},{lat + 0.001}"
    assert refs(await get(client, bbox=box)) == [inside.reference, edge.reference]


@pytest.mark.parametrize(
    ("bbox", "field_message"),
    [
        ("1,2,3", "4 numbers"),
        ("a,b,c,d", "numbers"),
        ("-2.5,51.4,-2.6,51.5", "east of"),
        ("-2.6,51.5,-2.5,51.4", "north of"),
        ("51.4,-2.6,51.5,-200", "latitudes"),
        ("nan,1,2,3", "finite"),
    ],
)
async def test_bad_bbox_is_a_422_on_the_field(
    client: httpx.AsyncClient, bbox: str, field_message: str
) -> None:
    response = await get(client, bbox=bbox)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    (error,) = response.json()["errors"]
    assert error["field"] == "bbox"
    assert error["in"] == "query"
    assert field_message in error["message"]


@pytest.mark.parametrize(
    ("params", "headers", "status", "field"),
    [
        ({"bbox": NEAR}, {"X-API-Key": "ks_000000000000_nope"}, 401, None),
        ({"bbox": NEAR, "api_key": "ks_000000000000_nope"}, {}, 401, None),
        ({"bbox": NEAR}, {"Authorization": "Bearer not.a.token"}, 401, None),
        ({"bbox": NEAR, "limit": "many"}, {}, 422, "limit"),
        ({"bbox": NEAR, "limit": "0"}, {}, 422, "limit"),
        ({"bbox": NEAR, "has_photo": "perhaps"}, {}, 422, "has_photo"),
        ({"bbox": NEAR, "created_since": "2026-11-24T08:00:00"}, {}, 422, "created_since"),
    ],
)
async def test_the_route_checks_its_own_inputs(
    client: httpx.AsyncClient,
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
    field: str | None,
) -> None:
    """The route resolves caller and query in its handler (app/maps/routes.py): wrong
    credentials and bad values get the same problems as every other route, and the next
    request still gets a connection."""
    response = await get(client, headers=headers, **params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    if status == 401:
        assert "www-authenticate" in response.headers
    else:
        assert [e["field"] for e in response.json()["errors"]] == [field]
    assert (await get(client, bbox=NEAR)).status_code == 200


async def test_a_bbox_of_any_size_is_paged_not_refused(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    """A whole region (GDAL's -spat, QGIS's extent) gets pages of `limit`, never a 400."""
    made = [
        await add_ticket(db, city, pothole, *offset_lonlat(*CENTER, i * 40, 0)) for i in range(3)
    ]
    wide = "-3,51,-2,52"  # ~7,700 km²
    first = await get(client, bbox=wide, limit=2)
    assert first.status_code == 200, first.text
    assert refs(first) == [t.reference for t in made[:2]]
    (following,) = [link["href"] for link in first.json()["links"] if link["rel"] == "next"]
    rest = await client.get(urlsplit(following)._replace(scheme="", netloc="").geturl())
    assert refs(rest) == [made[2].reference]
    everything = await get(client, bbox="-180,-90,180,90")
    assert sorted(refs(everything)) == sorted(t.reference for t in made)
    # A limit above the maximum is served as the maximum.
    assert (await get(client, bbox=wide, limit=10**9)).status_code == 200


async def test_bbox_required_only_above_the_size(
    client: httpx.AsyncClient, app: FastAPI, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    for i in range(3):
        await add_ticket(db, city, pothole, *offset_lonlat(*CENTER, i * 40, 0))
    limit = await db.scalar(text("SELECT count(*) FROM ticket"))
    app.state.settings = app.state.settings.model_copy(update={"map_bbox_optional_below": limit})
    assert len(refs(await get(client))) == 3
    app.state.settings = app.state.settings.model_copy(
        update={"map_bbox_optional_below": limit - 1}
    )
    response = await get(client)
    assert response.status_code == 400
    assert response.json()["type"].endswith("/bbox-required")


async def test_service_status_area_and_photo_filters(
    client: httpx.AsyncClient,
    db: AsyncSession,
    city: Jurisdiction,
    pothole: Service,
    streetlight: Service,
) -> None:
    a = await add_ticket(db, city, pothole, *CENTER)
    b = await add_ticket(db, city, streetlight, *offset_lonlat(*CENTER, 50, 0), status="fixed")
    c = await add_ticket(db, city, pothole, *offset_lonlat(*CENTER, 0, 50), status="closed")
    await db.execute(
        text(
            "INSERT INTO photo (ticket_id, storage_key, thumbnail_key, content_type, width,"
            " height, bytes, sha256) VALUES (:t, 'k', 'k', 'image/jpeg', 1, 1, 1, 'x')"
        ),
        {"t": b.id},
    )
    assert refs(await get(client, bbox=NEAR, service="pothole")) == [a.reference, c.reference]
    assert refs(await get(client, bbox=NEAR, service="streetlight,nothing")) == [b.reference]
    assert refs(await get(client, bbox=NEAR, status="fixed,closed")) == [b.reference, c.reference]
    assert refs(await get(client, bbox=NEAR, has_photo="true")) == [b.reference]
    assert refs(await get(client, bbox=NEAR, has_photo="false")) == [a.reference, c.reference]
    assert refs(await get(client, bbox=NEAR, area="D01")) == [a.reference, b.reference, c.reference]
    assert refs(await get(client, bbox=NEAR, area="D02")) == []
    assert refs(await get(client, bbox=NEAR, jurisdiction="elsewhere")) == []
    assert len(refs(await get(client, bbox=NEAR, jurisdiction="mapville"))) == 3
    bad = await get(client, bbox=NEAR, status="opened")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "status"


async def test_time_filters_at_their_edges(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    t0 = NOW - timedelta(days=10)
    older = await add_ticket(db, city, pothole, *CENTER, reported_at=t0 - timedelta(seconds=1))
    exact = await add_ticket(
        db, city, pothole, *offset_lonlat(*CENTER, 30, 0), reported_at=t0, updated_at=NOW
    )
    newer = await add_ticket(
        db, city, pothole, *offset_lonlat(*CENTER, 60, 0), reported_at=t0 + timedelta(seconds=1)
    )
    iso = t0.isoformat().replace("+00:00", "Z")
    # since is included, until is excluded: consecutive windows never share a ticket.
    assert refs(await get(client, bbox=NEAR, created_since=iso)) == [
        exact.reference,
        newer.reference,
    ]
    assert refs(await get(client, bbox=NEAR, created_until=iso)) == [older.reference]
    assert refs(await get(client, bbox=NEAR, updated_since=NOW.isoformat())) == [exact.reference]
    assert refs(await get(client, bbox=NEAR, updated_until=NOW.isoformat())) == [
        older.reference,
        newer.reference,
    ]
    naive = await get(client, bbox=NEAR, created_since="2026-01-01T00:00:00")
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "created_since"
    backwards = await get(client, bbox=NEAR, created_since=iso, created_until=iso)
    assert backwards.status_code == 422


async def test_keyset_pages_follow_next_links(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    made = [
        await add_ticket(db, city, pothole, *offset_lonlat(*CENTER, i * 20, 0)) for i in range(5)
    ]
    seen: list[str] = []
    params: dict[str, Any] = {"bbox": NEAR, "limit": 2, "service": "pothole"}
    for _ in range(5):
        response = await get(client, **params)
        doc = response.json()
        seen += refs(response)
        nxt = [link["href"] for link in doc["links"] if link["rel"] == "next"]
        if not nxt:
            break
        query = parse_qs(urlsplit(nxt[0]).query)
        assert query["bbox"] == [NEAR]
        assert query["service"] == ["pothole"]
        params = {k: v[0] for k, v in query.items()}
    assert seen == [m.reference for m in made]
    assert (await get(client, bbox=NEAR, cursor="x1")).status_code == 422


async def test_property_selection(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    await add_ticket(db, city, pothole, *CENTER)
    response = await get(client, bbox=NEAR, properties="status,reference")
    assert list(response.json()["features"][0]["properties"]) == ["status", "reference"]
    for name in ("nonsense", "priority", "crew_name"):  # unknown, or staff only
        bad = await get(client, bbox=NEAR, properties=f"status,{name}")
        assert bad.status_code == 422
        assert name in bad.json()["errors"][0]["message"]


async def test_etag_304_and_gzip(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    for i in range(20):
        await add_ticket(db, city, pothole, *offset_lonlat(*CENTER, i * 10, 0))
    first = await get(client, bbox=NEAR, headers={"Accept-Encoding": "identity"})
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    assert "content-encoding" not in first.headers
    assert first.headers["cache-control"] == "public, max-age=60"
    again = await get(client, bbox=NEAR, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    zipped = await client.get(
        "/v1/tickets.geojson", params={"bbox": NEAR}, headers={"Accept-Encoding": "gzip"}
    )
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["etag"] == etag
    assert zipped.json() == first.json()  # httpx decodes it
    # A change is a new ETag.
    await add_ticket(db, city, pothole, *CENTER)
    changed = await get(client, bbox=NEAR, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


async def test_staff_see_internal_fields_of_their_own_jurisdiction_only(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    crew = await make_crew(db, city, name="Pothole crew")
    mine = await add_ticket(db, city, pothole, *CENTER, priority=1, crew_id=crew.id)
    other_city = await make_jurisdiction(db, slug="elsewhere")
    other_service = await make_service(db, other_city, "pothole")
    theirs = await add_ticket(db, other_city, other_service, *offset_lonlat(*CENTER, 40, 0))
    staff = await make_user(db, role=Role.staff, jurisdiction=city)
    headers = await login(client, staff.email)

    public = await get(client, bbox=NEAR, properties="all")
    assert refs(public) == [mine.reference, theirs.reference]
    assert "priority" not in public.json()["features"][0]["properties"]

    lean = (await get(client, bbox=NEAR, headers=headers)).json()["features"][0]["properties"]
    assert {"priority", "work_status", "crew_id"} <= set(lean)
    response = await get(client, bbox=NEAR, headers=headers, properties="all")
    assert response.headers["cache-control"] == "private, no-cache"
    (feature,) = response.json()["features"]
    assert feature["id"] == mine.reference
    props = feature["properties"]
    assert set(props) == set(STAFF_PROPERTIES)
    assert props["priority"] == 1
    assert props["crew_name"] == "Pothole crew"
    assert props["id"] == mine.id

    citizen = await make_user(db, role=Role.citizen)
    as_citizen = await get(
        client, bbox=NEAR, headers=await login(client, citizen.email), properties="all"
    )
    assert refs(as_citizen) == [mine.reference, theirs.reference]
    assert set(as_citizen.json()["features"][0]["properties"]) == set(PUBLIC_PROPERTIES)


async def test_sensitive_locations_are_snapped_for_the_public(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction
) -> None:
    shelter = await make_service(db, city, "rough_sleeping", public_location_snap_m=200)
    lon, lat = offset_lonlat(*CENTER, 37.0, 61.0)
    made = await add_ticket(db, city, shelter, lon, lat)
    (feature,) = (await get(client, bbox=NEAR)).json()["features"]
    plon, plat = feature["geometry"]["coordinates"]
    moved = haversine_m(lon, lat, plon, plat)
    assert 0 < moved <= 200 * 0.75  # on the 200 m grid, at most half a diagonal away
    # On the grid: a multiple of the cell size in both directions.
    assert round(plat / (200 / 110574.0), 6) == pytest.approx(round(plat / (200 / 110574.0)))
    # A tiny box around the true spot finds nothing: the exact place cannot be probed.
    tiny = f"{lon - 0.00001},{lat - 0.00001},{lon + 0.00001},{lat + 0.00001}"
    assert refs(await get(client, bbox=tiny)) == []
    # Staff see the exact spot.
    staff = await make_user(db, role=Role.staff, jurisdiction=city)
    response = await get(client, bbox=tiny, headers=await login(client, staff.email))
    (exact,) = response.json()["features"]
    assert exact["id"] == made.reference
    assert exact["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-6)


async def test_no_personal_data_in_public_output(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    contact = {"name": "Secret Person", "email": "secret@example.org", "phone": "+447700900123"}
    filed = await client.post(
        "/v1/reports",
        json={
            "service_code": "pothole",
            "location": {"lon": CENTER[0], "lat": CENTER[1]},
            "description": "Pothole",
            "contact": contact,
        },
    )
    assert filed.status_code == 201, filed.text
    await db.execute(text("UPDATE report SET reporter_name = 'Secret Person'"))
    reference = filed.json()["ticket"]["reference"]
    bodies = [
        await get(client, bbox=NEAR, properties="all"),
        await client.get("/v1/export/tickets.csv"),
        await client.get("/v1/export/tickets.geojson"),
        await client.get(f"/v1/ogc/collections/tickets/items/{reference}"),
    ]
    for response in bodies:
        assert response.status_code == 200, response.text
        assert reference in response.text
        for secret in ("Secret", "secret@example.org", "+447700900123", "7700900123"):
            assert secret not in response.text


def test_the_city_fixture_is_where_the_tests_think() -> None:
    city = make_city()
    assert city.center == CENTER
