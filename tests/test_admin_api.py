"""The admin API (/v1/admin): roles, ETag / If-Match, the whole city as a document, areas as
GeoJSON in and out, services, and the same validation and messages as the city file."""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from pyproj import Transformer
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.auth.models import Role
from app.cities import service
from app.jurisdictions.models import Jurisdiction, Service
from app.main import create_app
from app.settings import Settings, to_sqlalchemy_url
from tests.factories import bearer_headers, make_jurisdiction, make_service, make_ticket, make_user
from tests.test_city_file import X0, Y0, as_yaml, square, town

CITY = "/v1/admin/jurisdictions/squareton/city"


@pytest.fixture
async def admin(db: AsyncSession, settings: Any) -> dict[str, str]:
    return await bearer_headers(settings, await make_user(db, role=Role.admin))


@pytest.fixture
async def squareton(db: AsyncSession) -> Jurisdiction:
    await service.apply(db, service.load(as_yaml(town())))
    found = await db.execute(select(Jurisdiction).where(Jurisdiction.slug == "squareton"))
    return found.scalar_one()


def ring_area(ring: list[list[float]]) -> float:
    """Twice the signed area (shoelace): positive when counterclockwise."""
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(ring))


# -- who may -----------------------------------------------------------------------------------


async def test_roles_admin_everything_staff_read_their_own_others_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Any, squareton: Jurisdiction
) -> None:
    other = await make_jurisdiction(db)
    staff = await make_user(db, role=Role.staff, jurisdiction=other)
    staff_here = await make_user(db, role=Role.staff, jurisdiction=squareton)
    crew = await make_user(db, role=Role.crew, jurisdiction=squareton)
    citizen = await make_user(db, role=Role.citizen)
    as_staff, as_staff_here = (
        await bearer_headers(settings, staff),
        await bearer_headers(settings, staff_here),
    )
    reads = [
        "/v1/admin/jurisdictions/squareton",
        CITY,
        "/v1/admin/jurisdictions/squareton/areas",
        "/v1/admin/jurisdictions/squareton/areas/district/W",
        "/v1/admin/jurisdictions/squareton/services",
        "/v1/admin/jurisdictions/squareton/services/pothole",
    ]
    for url in reads:
        assert (await client.get(url, headers=as_staff_here)).status_code == 200, url
        refused = await client.get(url, headers=as_staff)
        assert refused.status_code == 403, url
        assert refused.headers["content-type"] == "application/problem+json"
        for user in (crew, citizen):
            assert (
                await client.get(url, headers=await bearer_headers(settings, user))
            ).status_code == 403
    listed = await client.get("/v1/admin/jurisdictions", headers=as_staff_here)
    assert [j["slug"] for j in listed.json()] == ["squareton"]
    # Staff never write, not even their own city.
    got = await client.get(
        "/v1/admin/jurisdictions/squareton/services/pothole", headers=as_staff_here
    )
    write = await client.put(
        "/v1/admin/jurisdictions/squareton/services/pothole",
        json=got.json(),
        headers={**as_staff_here, "If-Match": got.headers["etag"]},
    )
    assert write.status_code == 403
    assert "admin" in write.json()["detail"]


# -- jurisdictions and If-Match ---------------------------------------------------------------


def document(**jurisdiction: Any) -> dict[str, Any]:
    return {
        "jurisdiction": {"slug": "newtown", "name": "Newtown", **jurisdiction},
        "boundary": {"crs": "EPSG:3857", "geojson": square(X0, Y0, X0 + 2000, Y0 + 2000)},
    }


async def test_create_read_update_a_jurisdiction_and_two_admins_cannot_overwrite_each_other(
    client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI
) -> None:
    created = await client.post("/v1/admin/jurisdictions", json=document(), headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/admin/jurisdictions/newtown"
    assert created.json()["changes"] == ["+ jurisdiction newtown", "+ boundary newtown"]
    again = await client.post("/v1/admin/jurisdictions", json=document(), headers=admin)
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "jurisdiction.slug"

    read = await client.get("/v1/admin/jurisdictions/newtown", headers=admin)
    assert read.headers["etag"] == created.headers["etag"]
    body = read.json()
    ring = body["boundary"]["geojson"]["coordinates"][0][0]
    assert ring_area(ring) > 0  # RFC 7946: exterior rings counterclockwise
    assert abs(ring[0][0] - (-2.587)) < 0.01  # reprojected from EPSG:3857 to WGS84

    url = "/v1/admin/jurisdictions/newtown"
    first = copy.deepcopy(body)
    first["jurisdiction"]["name"] = "Newtown upon Avon"
    second = copy.deepcopy(body)
    second["jurisdiction"]["timezone"] = "Europe/London"

    missing = await client.put(url, json=first, headers=admin)
    assert missing.status_code == 428
    assert missing.headers["content-type"] == "application/problem+json"

    app.state.catalog._loaded_at = 0.0  # a loaded catalog; a write must drop it
    ok = await client.put(url, json=first, headers={**admin, "If-Match": read.headers["etag"]})
    assert ok.status_code == 200, ok.text
    assert ok.json()["changes"] == ["~ jurisdiction newtown (name)"]
    assert ok.headers["etag"] != read.headers["etag"]
    assert app.state.catalog._loaded_at == -1e18

    # The second administrator read the same version: their write is refused, not merged away.
    stale = await client.put(url, json=second, headers={**admin, "If-Match": read.headers["etag"]})
    assert stale.status_code == 412
    assert stale.json()["etag"] == ok.headers["etag"]
    now = (await client.get(url, headers=admin)).json()
    assert now["jurisdiction"]["name"] == "Newtown upon Avon"
    assert now["jurisdiction"]["timezone"] == "UTC"

    anything = await client.put(url, json=second, headers={**admin, "If-Match": "*"})
    assert anything.status_code == 200
    renamed = copy.deepcopy(second)
    renamed["jurisdiction"]["slug"] = "othertown"
    refused = await client.put(url, json=renamed, headers={**admin, "If-Match": "*"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "jurisdiction.slug"


async def test_jurisdiction_bodies_get_the_city_files_messages(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    bad_zone = await client.post(
        "/v1/admin/jurisdictions", json=document(timezone="Mars/Olympus"), headers=admin
    )
    assert bad_zone.status_code == 422
    error = bad_zone.json()["errors"][0]
    assert error["field"] == "jurisdiction.timezone"
    assert "unknown time zone" in error["message"]

    a_point = document()
    a_point["boundary"]["geojson"] = {"type": "Point", "coordinates": [X0, Y0]}
    refused = await client.post("/v1/admin/jurisdictions", json=a_point, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "boundary"
    assert "Polygon" in refused.json()["detail"]

    a_file = document()
    a_file["boundary"] = {"file": "/etc/passwd"}
    refused = await client.post("/v1/admin/jurisdictions", json=a_file, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "boundary.file"


# -- the whole city ----------------------------------------------------------------------------


async def test_the_city_document_in_yaml_or_json_and_put_back_as_the_cli_applies_it(
    client: httpx.AsyncClient, admin: dict[str, str], db: AsyncSession, squareton: Jurisdiction
) -> None:
    as_yaml_doc = await client.get(CITY, headers=admin)
    assert as_yaml_doc.status_code == 200
    assert as_yaml_doc.headers["content-type"] == "application/yaml"
    as_json_doc = await client.get(CITY, headers={**admin, "Accept": "application/json"})
    assert as_json_doc.headers["content-type"] == "application/json"
    assert yaml.safe_load(as_yaml_doc.text) == as_json_doc.json()
    assert as_yaml_doc.headers["etag"] == as_json_doc.headers["etag"]
    exported = service.dump(await service.export(db, "squareton"))
    assert as_yaml_doc.text == exported
    refused = await client.get(CITY, headers={**admin, "Accept": "text/html"})
    assert refused.status_code == 406

    etag = as_yaml_doc.headers["etag"]
    same = await client.put(
        CITY,
        content=as_yaml_doc.content,
        headers={**admin, "Content-Type": "application/yaml", "If-Match": etag},
    )
    assert same.status_code == 200, same.text
    assert same.json()["changed"] is False
    assert same.headers["etag"] == etag

    changed = as_json_doc.json()
    changed["services"] = [s for s in changed["services"] if s["code"] != "graffiti"]
    plan = await client.put(CITY + "?dry_run=true", json=changed, headers=admin)
    assert plan.status_code == 200, plan.text
    assert plan.json()["dry_run"] is True
    assert plan.json()["changes"] == ["- service graffiti [deactivate]"]
    assert "etag" not in plan.headers
    active = await db.execute(text("SELECT active FROM service WHERE code = 'graffiti'"))
    assert active.scalar_one() is True  # a dry run changes nothing

    without = await client.put(CITY, json=changed, headers=admin)
    assert without.status_code == 428
    applied = await client.put(CITY, json=changed, headers={**admin, "If-Match": etag})
    assert applied.status_code == 200
    assert applied.json()["counts"]["deactivate"] == 1
    stale = await client.put(CITY, json=changed, headers={**admin, "If-Match": etag})
    assert stale.status_code == 412


async def test_a_city_put_creates_a_city_and_reports_errors_with_their_paths(
    client: httpx.AsyncClient, admin: dict[str, str], db: AsyncSession
) -> None:
    data = town()
    data["services"][0]["duplicate_radius_m"] = 0
    bad = await client.put(
        CITY, content=as_yaml(data), headers={**admin, "Content-Type": "application/yaml"}
    )
    assert bad.status_code == 422
    assert bad.json()["type"].endswith("/invalid-city-file")
    assert bad.json()["errors"][0]["field"] == "services[0].duplicate_radius_m"

    not_yaml = await client.put(CITY, content=b"jurisdiction: [", headers=admin)
    assert not_yaml.status_code == 422
    assert "not valid YAML" in not_yaml.json()["detail"]

    elsewhere = await client.put(
        "/v1/admin/jurisdictions/elsewhere/city", content=as_yaml(town()), headers=admin
    )
    assert elsewhere.status_code == 422
    assert elsewhere.json()["errors"][0]["field"] == "jurisdiction.slug"

    with_file = town()
    with_file["areas"][0] = {"file": "districts.geojson", "code_property": "ward"}
    refused = await client.put(CITY, content=as_yaml(with_file), headers=admin)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "areas[0].file"

    created = await client.put(CITY, content=as_yaml(town()), headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/admin/jurisdictions/squareton"
    assert created.json()["counts"]["create"] > 5
    assert (await client.get(CITY, headers=admin)).headers["etag"] == created.headers["etag"]


# -- areas -------------------------------------------------------------------------------------


async def test_areas_out_as_rfc7946_geojson_and_in_from_a_feature_in_any_crs(
    client: httpx.AsyncClient, admin: dict[str, str], db: AsyncSession, squareton: Jurisdiction
) -> None:
    areas = await client.get("/v1/admin/jurisdictions/squareton/areas", headers=admin)
    assert areas.status_code == 200
    assert areas.headers["content-type"] == "application/geo+json"
    collection = areas.json()
    assert collection["type"] == "FeatureCollection"
    assert [f["properties"]["code"] for f in collection["features"]] == ["E", "W"]
    for feature in collection["features"]:
        for polygon in feature["geometry"]["coordinates"]:
            assert ring_area(polygon[0]) > 0

    # A new ward in Web Mercator metres, from the crs query parameter.
    url = "/v1/admin/jurisdictions/squareton/areas/ward/N"
    feature = {
        "type": "Feature",
        "properties": {"name": "North"},
        "geometry": square(X0, Y0 + 1000, X0 + 2000, Y0 + 2000),
    }
    created = await client.put(url + "?crs=EPSG:3857", json=feature, headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["content-type"] == "application/geo+json"
    body = created.json()
    lon, lat = Transformer.from_crs(3857, 4326, always_xy=True).transform(X0, Y0 + 1000)
    corners = body["geometry"]["coordinates"][0][0]
    assert min(abs(c[0] - lon) + abs(c[1] - lat) for c in corners) < 1e-7
    assert body["properties"] == {"kind": "ward", "code": "N", "name": "North"}
    assert body["changes"] == ["+ area ward N"]
    assert "ward N: " not in " ".join(body["hygiene"])  # inside the boundary

    got = await client.get(url, headers=admin)
    assert got.headers["etag"] == created.headers["etag"]

    # A bow tie (self-intersecting): ST_MakeValid's repair would change its area by far more
    # than the safe share, so it is refused, with where, as in the file.
    bow_tie = copy.deepcopy(feature)
    bow_tie["geometry"] = {
        "type": "Polygon",
        "coordinates": [
            [[X0, Y0], [X0 + 1000, Y0 + 1000], [X0 + 1000, Y0], [X0, Y0 + 1000], [X0, Y0]]
        ],
    }
    refused = await client.put(
        url + "?crs=EPSG:3857", json=bow_tie, headers={**admin, "If-Match": got.headers["etag"]}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "geometry"
    # The GeoJSON's own crs member is honoured when the query names none.
    sticking_out = copy.deepcopy(feature)
    sticking_out["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}
    sticking_out["geometry"] = square(X0, Y0 + 1000, X0 + 3000, Y0 + 2000)
    replaced = await client.put(
        url, json=sticking_out, headers={**admin, "If-Match": got.headers["etag"]}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["changes"] == ["~ area ward N"]
    assert any(
        line.startswith("outside the boundary: ward N") for line in replaced.json()["hygiene"]
    )
    point = {**feature, "geometry": {"type": "Point", "coordinates": [0, 0]}}
    not_polygon = await client.put(url, json=point, headers={**admin, "If-Match": "*"})
    assert not_polygon.status_code == 422
    assert not_polygon.json()["errors"][0]["field"] == "geometry"

    stale = await client.delete(url, headers={**admin, "If-Match": got.headers["etag"]})
    assert stale.status_code == 412
    deleted = await client.delete(url, headers={**admin, "If-Match": replaced.headers["etag"]})
    assert deleted.status_code == 204
    assert (await client.get(url, headers=admin)).status_code == 404


async def test_an_area_that_holds_tickets_or_crews_is_not_deleted(
    client: httpx.AsyncClient, admin: dict[str, str], db: AsyncSession, squareton: Jurisdiction
) -> None:
    url = "/v1/admin/jurisdictions/squareton/areas/district/W"
    etag = (await client.get(url, headers=admin)).headers["etag"]
    crews = await client.delete(url, headers={**admin, "If-Match": etag})
    assert crews.status_code == 409
    assert "Roads" in crews.json()["detail"]
    await db.execute(text("DELETE FROM crew_area"))
    await db.execute(text("DELETE FROM assignment_rule"))
    pothole = (await db.execute(select(Service).where(Service.code == "pothole"))).scalar_one()
    lon, lat = Transformer.from_crs(3857, 4326, always_xy=True).transform(X0 + 500, Y0 + 500)
    await make_ticket(db, squareton, pothole, lon, lat)
    tickets = await client.delete(url, headers={**admin, "If-Match": etag})
    assert tickets.status_code == 409
    assert tickets.json()["tickets"] == 1
    assert "never deleted" in tickets.json()["detail"]


# -- services ----------------------------------------------------------------------------------


async def test_services_crud_deactivates_never_deletes_and_the_intake_sees_it_at_once(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    db: AsyncSession,
    app: FastAPI,
    squareton: Jurisdiction,
) -> None:
    base = "/v1/admin/jurisdictions/squareton/services"
    listed = await client.get(base, headers=admin)
    assert [s["code"] for s in listed.json()] == ["graffiti", "pothole"]
    pothole = next(s for s in listed.json() if s["code"] == "pothole")
    assert pothole["duplicate_window"] == "1w"  # the city file's own spans

    new = {"code": "streetlight", "names": {"en": "Streetlight out"}, "resolve_within": "3d"}
    created = await client.post(base, json=new, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["resolve_within"] == "3d"
    assert (await client.post(base, json=new, headers=admin)).status_code == 409

    bad = await client.post(base, json={**new, "code": "x", "duplicate_radius_m": 0}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "duplicate_radius_m"
    assert bad.json()["errors"][0]["message"] == "Input should be greater than 0"
    unknown = await client.post(base, json={**new, "code": "y", "colour": "red"}, headers=admin)
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "colour"

    url = f"{base}/streetlight"
    etag = (await client.get(url, headers=admin)).headers["etag"]
    assert etag == created.headers["etag"]
    updated = await client.put(
        url, json={**new, "hazard_level": 4}, headers={**admin, "If-Match": etag}
    )
    assert updated.status_code == 200
    assert updated.json()["hazard_level"] == 4
    recoded = await client.put(
        url, json={**new, "code": "lamp"}, headers={**admin, "If-Match": "*"}
    )
    assert recoded.status_code == 422

    catalog = app.state.catalog
    assert "streetlight" in (await catalog.by_slug(db, "squareton")).services
    assert (await client.delete(url, headers=admin)).status_code == 428
    gone = await client.delete(url, headers={**admin, "If-Match": updated.headers["etag"]})
    assert gone.status_code == 204
    # Deactivated, not deleted; and the intake's catalog no longer offers it, at once.
    still = await client.get(url, headers=admin)
    assert still.json()["active"] is False
    assert "streetlight" not in (await catalog.by_slug(db, "squareton")).services
    public = await client.get("/v1/jurisdictions/squareton/services")
    assert "streetlight" not in [s["code"] for s in public.json()]
    revived = await client.put(
        url, json={**new, "active": True}, headers={**admin, "If-Match": still.headers["etag"]}
    )
    assert revived.json()["active"] is True


async def test_unknown_objects_are_404_problems(
    client: httpx.AsyncClient, admin: dict[str, str], db: AsyncSession, squareton: Jurisdiction
) -> None:
    await make_service(db, await make_jurisdiction(db, slug="elsewhere"), "abandoned")
    for url in (
        "/v1/admin/jurisdictions/nowhere",
        "/v1/admin/jurisdictions/nowhere/city",
        "/v1/admin/jurisdictions/squareton/services/abandoned",  # another city's code
        "/v1/admin/jurisdictions/squareton/areas/district/Z",
    ):
        response = await client.get(url, headers=admin)
        assert response.status_code == 404, url
        assert response.headers["content-type"] == "application/problem+json"
    put = await client.put(
        "/v1/admin/jurisdictions/squareton/services/abandoned",
        json={"code": "abandoned", "names": {"en": "A"}},
        headers={**admin, "If-Match": "*"},
    )
    assert put.status_code == 404


@pytest.mark.slow
async def test_two_simultaneous_writes_of_one_version_one_wins_the_other_gets_412(
    settings: Settings, database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    """On real parallel connections: the If-Match check and the write hold the apply lock."""
    async with committed_db() as session, session.begin():
        await service.apply(session, service.load(as_yaml(town())))
        headers = await bearer_headers(settings, await make_user(session, role=Role.admin))
    engine = create_async_engine(to_sqlalchemy_url(database_url), pool_size=4, max_overflow=0)
    app = create_app(settings)
    app.state.engine = engine
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    url = "/v1/admin/jurisdictions/squareton/services/pothole"
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            read = await client.get(url, headers=headers)
            headers = {**headers, "If-Match": read.headers["etag"]}
            # Another transaction holds the row, so both writes get as far as they can before
            # either commits: without the lock around check and write, both checks would pass.
            async with committed_db() as holder, holder.begin():
                await holder.execute(
                    text("SELECT 1 FROM service WHERE code = 'pothole' FOR UPDATE")
                )
                writes = asyncio.gather(
                    *(
                        client.put(
                            url, json={**read.json(), "hazard_level": level}, headers=headers
                        )
                        for level in (2, 3)
                    )
                )
                await asyncio.sleep(1.0)
            answers = await writes
    finally:
        await engine.dispose()
    assert sorted(a.status_code for a in answers) == [200, 412], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200)
    async with committed_db() as session:
        stored = await session.execute(
            text("SELECT hazard_level FROM service WHERE code = 'pothole'")
        )
        assert stored.scalar_one() == winner.json()["hazard_level"]
