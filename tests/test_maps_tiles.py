"""Clusters (/v1/tickets/clusters) and vector tiles (/v1/tiles/{z}/{x}/{y}.mvt, TileJSON)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import mapbox_vector_tile
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.db import driver_of
from app.jurisdictions.models import Jurisdiction, Service
from app.maps.service import refresh_grid
from geo.distance import haversine_m, offset_lonlat
from geo.tiles import cell_range, cluster_level, mercator, tile_of
from tests.factories import PASSWORD, make_jurisdiction, make_service, make_user
from tests.maps_data import CENTER, add_ticket

MVT = "application/vnd.mapbox-vector-tile"
CITY_BOX = "-2.70,51.39,-2.49,51.51"


async def rebuild_grid(db: AsyncSession) -> None:
    """What the ``refresh_map_grid`` job does, in this test's transaction: low-zoom clusters
    come from the grid, which no request rebuilds."""
    await refresh_grid(await driver_of(db))


@pytest.fixture
async def city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="tileville")


@pytest.fixture
async def pothole(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(db, city, "pothole")


@pytest.fixture
async def streetlight(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(db, city, "streetlight")


async def clusters(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/tickets/clusters", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/geo+json"
    doc: dict[str, Any] = response.json()
    return doc


async def test_low_zoom_clusters_count_per_service(
    client: httpx.AsyncClient,
    db: AsyncSession,
    city: Jurisdiction,
    pothole: Service,
    streetlight: Service,
) -> None:
    await add_ticket(db, city, pothole, *CENTER)
    await add_ticket(db, city, pothole, *offset_lonlat(*CENTER, 100, 0))
    await add_ticket(db, city, streetlight, *offset_lonlat(*CENTER, 0, 100), status="fixed")
    await rebuild_grid(db)
    doc = await clusters(client, bbox=CITY_BOX, zoom=10)
    assert doc["tickets"] == 3
    (cluster,) = doc["features"]
    assert cluster["properties"]["count"] == 3
    assert cluster["properties"]["services"] == {"pothole": 2, "streetlight": 1}
    lon, lat = cluster["geometry"]["coordinates"]
    assert haversine_m(lon, lat, *offset_lonlat(*CENTER, 33, 33)) < 1.0  # the mean position
    only_open = await clusters(client, bbox=CITY_BOX, zoom=10, status="open")
    assert only_open["tickets"] == 2
    lights = await clusters(client, bbox=CITY_BOX, zoom=10, service="streetlight")
    assert lights["features"][0]["properties"]["services"] == {"streetlight": 1}
    assert (await clusters(client, bbox=CITY_BOX, zoom=10, area="D09"))["tickets"] == 0


async def test_high_zoom_clusters_split_and_match_the_grid(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    far = offset_lonlat(*CENTER, 500, 0)
    for point in (CENTER, offset_lonlat(*CENTER, 2, 2), far):
        await add_ticket(db, city, pothole, *point)
    await rebuild_grid(db)
    box = ",".join(
        str(v) for v in (*offset_lonlat(*CENTER, -800, -800), *offset_lonlat(*CENTER, 800, 800))
    )
    for zoom in (14, 17):  # 14: from the grid; 17: counted live
        doc = await clusters(client, bbox=box, zoom=zoom)
        counts = sorted(f["properties"]["count"] for f in doc["features"])
        assert counts == [1, 2], zoom
        level = cluster_level(zoom)
        cells = {tuple(map(int, f["id"].split("/"))) for f in doc["features"]}
        near = cell_range((*CENTER, *CENTER), level)
        assert (level, near[0], near[1]) in cells


async def test_cluster_requests_are_bounded(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/tickets/clusters", params={"zoom": 3})
    assert missing.status_code == 422
    wide_live = await client.get("/v1/tickets/clusters", params={"bbox": CITY_BOX, "zoom": 18})
    assert wide_live.status_code == 400
    assert wide_live.json()["type"].endswith("/bbox-too-large")
    too_many = await client.get(
        "/v1/tickets/clusters", params={"bbox": "-60,-40,60,40", "zoom": 14}
    )
    assert too_many.status_code == 400


async def test_snapped_services_cluster_at_public_points(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction
) -> None:
    hidden = await make_service(db, city, "needle", public_location_snap_m=500)
    lon, lat = offset_lonlat(*CENTER, 123, 77)
    await add_ticket(db, city, hidden, lon, lat)
    await rebuild_grid(db)
    (cluster,) = (await clusters(client, bbox=CITY_BOX, zoom=14))["features"]
    clon, clat = cluster["geometry"]["coordinates"]
    assert haversine_m(lon, lat, clon, clat) > 5


def decode(content: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = mapbox_vector_tile.decode(content)
    return decoded


async def test_z14_tile_holds_ticket_points(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    made = await add_ticket(db, city, pothole, *CENTER)
    tile = tile_of(*CENTER, 14)
    response = await client.get(f"/v1/tiles/14/{tile.x}/{tile.y}.mvt")
    assert response.status_code == 200
    assert response.headers["content-type"] == MVT
    assert response.headers["cache-control"] == "public, max-age=60"
    layers = decode(response.content)
    assert list(layers) == ["tickets"]
    (feature,) = layers["tickets"]["features"]
    assert feature["properties"] == {
        "reference": made.reference,
        "service_code": "pothole",
        "status": "open",
        "sla_state": "ok",
    }
    # The point lands where Web Mercator puts it in the tile (y up in the decoded tile).
    west, south, east, north = tile.bounds_lonlat()
    x0, y0 = mercator(west, south)
    x1, y1 = mercator(east, north)
    px, py = mercator(*CENTER)
    x, y = feature["geometry"]["coordinates"]
    assert x == pytest.approx((px - x0) / (x1 - x0) * 4096, abs=1.5)
    assert y == pytest.approx((py - y0) / (y1 - y0) * 4096, abs=1.5)
    again = await client.get(
        f"/v1/tiles/14/{tile.x}/{tile.y}.mvt", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304
    # The neighbouring tile is empty.
    empty = await client.get(f"/v1/tiles/14/{tile.x + 2}/{tile.y}.mvt")
    assert empty.status_code == 200
    assert decode(empty.content) == {}


async def test_staff_tiles_carry_internal_fields(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    await add_ticket(db, city, pothole, *CENTER, priority=2)
    staff = await make_user(db, role=Role.staff, jurisdiction=city)
    login = await client.post(
        "/v1/auth/jwt/login", data={"username": staff.email, "password": PASSWORD}
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    tile = tile_of(*CENTER, 15)
    response = await client.get(f"/v1/tiles/15/{tile.x}/{tile.y}.mvt", headers=headers)
    (feature,) = decode(response.content)["tickets"]["features"]
    assert feature["properties"]["priority"] == 2
    assert response.headers["cache-control"] == "private, no-cache"


async def test_low_zoom_tile_holds_clusters(
    client: httpx.AsyncClient,
    db: AsyncSession,
    city: Jurisdiction,
    pothole: Service,
    streetlight: Service,
) -> None:
    await add_ticket(db, city, pothole, *CENTER)
    await add_ticket(db, city, pothole, *offset_lonlat(*CENTER, 30, 0))
    await add_ticket(db, city, streetlight, *offset_lonlat(*CENTER, 0, 30))
    await rebuild_grid(db)
    tile = tile_of(*CENTER, 10)
    response = await client.get(f"/v1/tiles/10/{tile.x}/{tile.y}.mvt")
    layers = decode(response.content)
    assert list(layers) == ["clusters"]
    (cluster,) = layers["clusters"]["features"]
    assert cluster["properties"]["count"] == 3
    assert cluster["properties"]["top_service"] == "pothole"
    assert json.loads(cluster["properties"]["services"]) == {"pothole": 2, "streetlight": 1}
    filtered = await client.get(
        f"/v1/tiles/10/{tile.x}/{tile.y}.mvt", params={"service": "streetlight"}
    )
    (only,) = decode(filtered.content)["clusters"]["features"]
    assert only["properties"]["count"] == 1


@pytest.mark.parametrize("path", ["/v1/tiles/3/8/0.mvt", "/v1/tiles/23/0/0.mvt"])
async def test_tiles_outside_the_scheme_are_422(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.usefixtures("city")
async def test_tilejson(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/tiles.json", params={"service": "pothole"})
    assert response.status_code == 200
    doc = response.json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"][0].endswith("/v1/tiles/{z}/{x}/{y}.mvt?service=pothole")
    assert {layer["id"] for layer in doc["vector_layers"]} == {"tickets", "clusters"}
    west, south, east, north = doc["bounds"]
    assert west < CENTER[0] < east
    assert south < CENTER[1] < north


async def test_a_grid_never_built_is_not_served_as_a_cacheable_answer(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    # A fresh database: the grid was never built (migration 0008 leaves no row).
    await db.execute(text("DELETE FROM ticket_grid_refreshed"))
    await add_ticket(db, city, pothole, *CENTER)
    tile = tile_of(*CENTER, 10)
    for path, params in (
        ("/v1/tickets/clusters", {"bbox": CITY_BOX, "zoom": 10}),
        (f"/v1/tiles/10/{tile.x}/{tile.y}.mvt", {}),
    ):
        provisional = await client.get(path, params=params)
        assert provisional.status_code == 200
        assert provisional.headers["cache-control"] == "no-store", path
        assert "etag" not in provisional.headers
    # No request built it: that is the worker's job (and the seed's, and an import's).
    assert (await db.execute(text("SELECT count(*) FROM ticket_grid_refreshed"))).scalar_one() == 0

    await rebuild_grid(db)
    built = await client.get("/v1/tickets/clusters", params={"bbox": CITY_BOX, "zoom": 10})
    assert built.json()["tickets"] == 1
    assert built.headers["cache-control"] == "public, max-age=60"
    assert built.headers["etag"]
