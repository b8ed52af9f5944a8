"""GET /v1/workorders/route: the crew's day route over HTTP (the algorithm: test_route.py)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings
from geo.distance import haversine_m, offset_lonlat
from tests.factories import make_ticket
from tests.workorders_support import PROBLEM, World, inside, make_world

D01 = inside("D01")
START = offset_lonlat(*D01, -300, 0)


@pytest.fixture
async def world(db: AsyncSession, settings: Settings) -> World:
    return await make_world(db, settings)


def start_param(point: tuple[float, float] = START) -> str:
    return f"{point[0]},{point[1]}"


async def test_the_route_visits_the_crews_open_work_in_a_short_order(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    w = world
    # Work east of the start, created out of order; plus work that is not on today's route.
    east = [offset_lonlat(*D01, 200.0 * k, 0) for k in (3, 1, 4, 2)]
    made = [await make_ticket(db, w.city, w.pothole, *p, crew=w.north) for p in east]
    await make_ticket(db, w.city, w.pothole, *D01, crew=w.north, work_status="unable")
    await make_ticket(db, w.city, w.pothole, *D01, crew=w.north, status="fixed")
    await make_ticket(db, w.city, w.pothole, *D01)  # in the territory but nobody's yet
    await make_ticket(db, w.city, w.pothole, *D01, crew=w.south)

    response = await client.get(
        "/v1/workorders/route", params={"start": start_param()}, headers=w["crew"]
    )
    assert response.status_code == 200, response.text
    route = response.json()
    assert route["crew_id"] == w.north.id
    assert route["method"] == "exact"
    assert route["truncated"] is False
    visited = [s["work_order"]["reference"] for s in route["stops"]]
    by_distance = sorted(made, key=lambda t: east[made.index(t)][0])
    assert visited == [t.reference for t in by_distance]
    assert [s["sequence"] for s in route["stops"]] == [1, 2, 3, 4]
    legs = route["legs_m"]
    assert [s["leg_m"] for s in route["stops"]] == legs
    assert route["total_m"] == pytest.approx(sum(legs), abs=0.5)
    assert route["stops"][-1]["cumulative_m"] == pytest.approx(route["total_m"], abs=0.5)
    assert legs[0] == pytest.approx(haversine_m(*START, *east[1]), abs=0.5)
    assert all(s["work_order"]["sla_state"] == "ok" for s in route["stops"])

    back = await client.get(
        "/v1/workorders/route",
        params={"start": start_param(), "return_to_start": "true"},
        headers=w["crew"],
    )
    assert len(back.json()["legs_m"]) == 5
    assert back.json()["total_m"] > route["total_m"]


async def test_the_route_as_geojson(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    points = [offset_lonlat(*D01, 100.0 * k, 50.0 * k) for k in range(1, 4)]
    for p in points:
        await make_ticket(db, world.city, world.pothole, *p, crew=world.north)
    response = await client.get(
        "/v1/workorders/route",
        params={"start": start_param(), "format": "geojson"},
        headers=world["crew"],
    )
    assert response.headers["content-type"] == "application/geo+json"
    line, *stops = response.json()["features"]
    assert line["geometry"]["type"] == "LineString"
    assert line["geometry"]["coordinates"][0] == list(START)
    assert line["geometry"]["coordinates"][1:] == [s["geometry"]["coordinates"] for s in stops]
    assert line["properties"]["total_m"] > 0
    assert [s["properties"]["sequence"] for s in stops] == [1, 2, 3]


async def test_whose_route(client: httpx.AsyncClient, db: AsyncSession, world: World) -> None:
    w = world
    await make_ticket(db, w.city, w.pothole, *D01, crew=w.south)
    params = {"start": start_param()}
    # Staff name the crew; crews get their own and may not ask for another's.
    response = await client.get("/v1/workorders/route", params=params, headers=w["staff"])
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "crew"
    response = await client.get(
        "/v1/workorders/route", params={**params, "crew": w.south.id}, headers=w["staff"]
    )
    assert len(response.json()["stops"]) == 1
    response = await client.get(
        "/v1/workorders/route", params={**params, "crew": w.south.id}, headers=w["crew"]
    )
    assert response.status_code == 403
    response = await client.get(
        "/v1/workorders/route", params={**params, "crew": w.south.id}, headers=w["other_staff"]
    )
    assert response.status_code == 404
    response = await client.get(
        "/v1/workorders/route", params={**params, "crew": w.south.id}, headers=w["admin"]
    )
    assert response.status_code == 200
    empty = await client.get("/v1/workorders/route", params=params, headers=w["crew"])
    assert empty.json()["stops"] == []
    assert empty.json()["total_m"] == 0


@pytest.mark.parametrize("start", ["", "1", "-2.5,95", "x,y"])
async def test_a_route_needs_a_start(client: httpx.AsyncClient, world: World, start: str) -> None:
    response = await client.get(
        "/v1/workorders/route", params={"start": start}, headers=world["crew"]
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_long_days_are_cut_to_the_most_urgent(
    client: httpx.AsyncClient,
    db: AsyncSession,
    world: World,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "workorders_route_max_stops", 12)
    urgent = [
        await make_ticket(
            db, world.city, world.pothole, *offset_lonlat(*D01, 30.0 * k, 0), crew=world.north,
            priority=1,
        )
        for k in range(12)
    ]  # fmt: skip
    for k in range(5):
        await make_ticket(
            db, world.city, world.pothole, *offset_lonlat(*D01, 0, 30.0 * k), crew=world.north
        )
    response = await client.get(
        "/v1/workorders/route", params={"start": start_param()}, headers=world["crew"]
    )
    route = response.json()
    assert route["truncated"] is True
    assert route["method"] == "2-opt+or-opt"
    assert {s["work_order"]["reference"] for s in route["stops"]} == {t.reference for t in urgent}
