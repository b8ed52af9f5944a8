"""Work-order searches: reach per role, every filter at its edges, sorting, keyset pages,
JSON and GeoJSON, and the bounds on every filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings
from app.tickets.models import Ticket
from app.workorders.schemas import WorkOrder, WorkOrderPage
from geo.distance import haversine_m, metres_per_degree, offset_lonlat
from tests.factories import make_ticket
from tests.workorders_support import PROBLEM, World, inside, make_world

D01 = inside("D01")  # North's area
D02 = inside("D02")  # North's area
D03 = inside("D03")  # nobody's area
D05 = inside("D05")  # South's area


@pytest.fixture
async def world(db: AsyncSession, settings: Settings) -> World:
    return await make_world(db, settings)


async def get(
    client: httpx.AsyncClient, headers: dict[str, str], path: str = "/v1/workorders", **params: Any
) -> httpx.Response:
    return await client.get(path, params=params, headers=headers)


def refs(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["reference"] for item in response.json()["items"]]


# -- reach ---------------------------------------------------------------------------------------


@pytest.fixture
async def spread(db: AsyncSession, world: World) -> dict[str, Ticket]:
    """One open ticket per place that matters, plus a closed one and one in the other city."""
    w = world
    return {
        "north_area": await make_ticket(db, w.city, w.pothole, *D01),
        "north_area_2": await make_ticket(db, w.city, w.pothole, *D02),
        "nobodys_area": await make_ticket(db, w.city, w.pothole, *D03),
        # Assigned to North although outside its areas: part of its territory.
        "given_to_north": await make_ticket(db, w.city, w.pothole, *D03, crew=w.north),
        "south_area": await make_ticket(db, w.city, w.pothole, *D05),
        "fixed": await make_ticket(db, w.city, w.pothole, *D01, status="fixed"),
        "other_city": await make_ticket(db, w.other_city, w.other_pothole, *D01),
    }


def named(spread: dict[str, Ticket], *names: str) -> set[str]:
    return {spread[n].reference for n in names}


async def test_each_role_sees_its_reach(
    client: httpx.AsyncClient, world: World, spread: dict[str, Ticket]
) -> None:
    seen = {
        who: set(refs(await get(client, world[who])))
        for who in ("crew", "south_crew", "staff", "other_staff", "admin")
    }
    assert seen["crew"] == named(spread, "north_area", "north_area_2", "given_to_north")
    assert seen["south_crew"] == named(spread, "south_area")
    assert seen["staff"] == named(
        spread, "north_area", "north_area_2", "nobodys_area", "given_to_north", "south_area"
    )
    assert seen["other_staff"] == named(spread, "other_city")
    assert seen["admin"] == seen["staff"] | seen["other_staff"]  # open ones only


@pytest.mark.parametrize(
    ("who", "status"),
    [("anonymous", 401), ("citizen", 403), ("crewless", 403)],
)
async def test_who_may_not_list_work_orders(
    client: httpx.AsyncClient, world: World, who: str, status: int
) -> None:
    for method, path in [
        ("GET", "/v1/workorders"),
        ("POST", "/v1/workorders/search"),
        ("GET", "/v1/workorders/route?start=-2.58,51.45"),
        ("GET", "/v1/workorders/T-2026-000001"),
    ]:
        body = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
        response = await client.request(
            method, path, headers=world[who], json=body if method == "POST" else None
        )
        assert response.status_code == status, (who, path, response.text)
        assert response.headers["content-type"] == PROBLEM


async def test_crew_filter_per_role(
    client: httpx.AsyncClient, world: World, spread: dict[str, Ticket]
) -> None:
    # Staff look at one crew's territory; crews may only name their own.
    south = await get(client, world["staff"], crew=world.south.id)
    assert set(refs(south)) == named(spread, "south_area")
    assert (await get(client, world["crew"], crew=world.south.id)).status_code == 403
    own = await get(client, world["crew"], crew=world.north.id)
    assert set(refs(own)) == named(spread, "north_area", "north_area_2", "given_to_north")
    # Another city's crew does not exist for staff; admins may look at it.
    assert (await get(client, world["staff"], crew=world.other_crew.id)).status_code == 404
    theirs = await get(client, world["admin"], crew=world.other_crew.id)
    assert set(refs(theirs)) == named(spread, "other_city")
    assert (await get(client, world["staff"], crew=999_999)).status_code == 404
    # Staff may not name another jurisdiction; admins narrow to one.
    assert (
        await get(client, world["staff"], jurisdiction_id=world.other_city.id)
    ).status_code == 403
    theirs = await get(client, world["admin"], jurisdiction_id=world.other_city.id)
    assert set(refs(theirs)) == named(spread, "other_city")


async def test_one_work_order_within_reach_only(
    client: httpx.AsyncClient, world: World, spread: dict[str, Ticket]
) -> None:
    mine = spread["north_area"].reference
    response = await get(client, world["crew"], f"/v1/workorders/{mine}")
    assert response.status_code == 200
    assert response.json()["reference"] == mine
    # A finished work order stays readable by reference.
    fixed = spread["fixed"].reference
    assert (await get(client, world["crew"], f"/v1/workorders/{fixed}")).status_code == 200
    # Outside the territory: as if it did not exist.
    for who, ref in [
        ("south_crew", mine),
        ("other_staff", mine),
        ("crew", spread["south_area"].reference),
        ("staff", spread["other_city"].reference),
    ]:
        response = await get(client, world[who], f"/v1/workorders/{ref}")
        assert response.status_code == 404, (who, ref)
    assert (await get(client, world["admin"], f"/v1/workorders/{mine.lower()}")).status_code == 200
    feature = await get(client, world["staff"], f"/v1/workorders/{mine}", format="geojson")
    assert feature.headers["content-type"] == "application/geo+json"
    assert feature.json()["type"] == "Feature"


# -- the representation --------------------------------------------------------------------------


async def test_a_work_order_has_the_documented_shape(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    ticket = await make_ticket(
        db, world.city, world.pothole, *D01, crew=world.north, priority=2, description="Deep"
    )
    page = WorkOrderPage.model_validate_json((await get(client, world["crew"])).content)
    assert page.count == 1
    assert page.next is None
    item = page.items[0]
    assert item.reference == ticket.reference
    assert item.status == "open"
    assert item.work_status == "assigned"
    assert item.priority == 2
    assert item.service_code == "pothole"
    assert item.area is not None
    assert item.area.code == "D01"
    assert item.crew is not None
    assert item.crew.name == "North"
    assert item.location.lon == pytest.approx(D01[0])
    assert item.sla_state == "ok"
    assert item.description == "Deep"
    assert item.url.endswith(f"/v1/workorders/{ticket.reference}")
    assert item.resolve_due_at is not None
    assert item.resolve_due_at.tzinfo is not None
    assert item.distance_m is None
    raw = (await get(client, world["crew"])).json()["items"][0]
    assert raw["first_reported_at"].endswith("Z")
    # Every field the database writes is documented (distance_m only comes with `near`).
    assert set(raw) == set(WorkOrder.model_fields) - {"distance_m"}


async def test_sla_state_is_in_every_work_order(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    now = datetime.now(UTC)
    ok = await make_ticket(
        db, world.city, world.pothole, *D01, reported_at=now - timedelta(hours=1)
    )
    # Acknowledged, so the resolve deadline (14 days) is what counts.
    warning = await make_ticket(
        db,
        world.city,
        world.pothole,
        *D01,
        reported_at=now - timedelta(days=12),
        acknowledged_at=now - timedelta(days=11),
    )
    breached = await make_ticket(
        db,
        world.city,
        world.pothole,
        *D01,
        reported_at=now - timedelta(days=15),
        acknowledged_at=now - timedelta(days=14),
    )
    states = {
        i["reference"]: i["sla_state"] for i in (await get(client, world["crew"])).json()["items"]
    }
    assert states == {
        ok.reference: "ok",
        warning.reference: "warning",
        breached.reference: "breached",
    }
    only = await get(client, world["crew"], sla_state="warning,breached")
    assert set(refs(only)) == {warning.reference, breached.reference}


# -- filters at their edges ----------------------------------------------------------------------


async def test_near_and_radius_at_the_edge(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    centre = D01
    inner = offset_lonlat(*centre, 99.0, 0)
    outer = offset_lonlat(*centre, 101.5, 0)
    a = await make_ticket(db, world.city, world.pothole, *inner)
    b = await make_ticket(db, world.city, world.pothole, *outer)
    near = f"{centre[0]},{centre[1]}"
    response = await get(client, world["staff"], near=near, radius_m=100)
    assert refs(response) == [a.reference]
    (item,) = response.json()["items"]
    assert item["distance_m"] == pytest.approx(haversine_m(*centre, *inner), abs=0.2)
    both = await get(client, world["staff"], near=near, radius_m=102, sort="distance")
    assert refs(both) == [a.reference, b.reference]
    assert both.json()["items"][1]["distance_m"] > 100


async def test_bbox_includes_its_edges(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    x, y = D01
    on_edge = await make_ticket(db, world.city, world.pothole, x + 0.001, y)
    inside_box = await make_ticket(db, world.city, world.pothole, x + 0.0005, y + 0.0005)
    just_outside = await make_ticket(db, world.city, world.pothole, x + 0.0010001, y)
    response = await get(client, world["staff"], bbox=f"{x},{y - 0.001},{x + 0.001},{y + 0.001}")
    assert set(refs(response)) == {on_edge.reference, inside_box.reference}
    assert just_outside.reference not in refs(response)


async def test_polygon_search(client: httpx.AsyncClient, db: AsyncSession, world: World) -> None:
    x, y = D01
    inside_it = await make_ticket(db, world.city, world.pothole, x + 0.0002, y + 0.0002)
    in_the_notch = await make_ticket(db, world.city, world.pothole, x + 0.0008, y + 0.0008)
    outside_it = await make_ticket(db, world.city, world.pothole, x + 0.002, y)
    # An L shape: the square's upper-right quarter is cut out.
    ring = [
        [x, y],
        [x + 0.001, y],
        [x + 0.001, y + 0.0005],
        [x + 0.0005, y + 0.0005],
        [x + 0.0005, y + 0.001],
        [x, y + 0.001],
        [x, y],
    ]
    polygon = {"type": "Polygon", "coordinates": [ring]}
    response = await client.post("/v1/workorders/search", json=polygon, headers=world["staff"])
    assert refs(response) == [inside_it.reference]
    multi = {
        "type": "MultiPolygon",
        "coordinates": [
            [ring],
            [[[x + 0.0019, y - 0.0001], [x + 0.0021, y - 0.0001], [x + 0.0021, y + 0.0001],
              [x + 0.0019, y + 0.0001], [x + 0.0019, y - 0.0001]]],
        ],
    }  # fmt: skip
    response = await client.post("/v1/workorders/search", json=multi, headers=world["staff"])
    assert set(refs(response)) == {inside_it.reference, outside_it.reference}
    assert in_the_notch.reference not in refs(response)
    # Other filters combine with the polygon; crews stay inside their territory.
    assert (
        refs(
            await client.post(
                "/v1/workorders/search?service=fly_tipping", json=polygon, headers=world["staff"]
            )
        )
        == []
    )
    assert (
        refs(await client.post("/v1/workorders/search", json=polygon, headers=world["south_crew"]))
        == []
    )


async def test_list_filters(client: httpx.AsyncClient, db: AsyncSession, world: World) -> None:
    now = datetime.now(UTC)
    w = world
    p1 = await make_ticket(
        db, w.city, w.pothole, *D01, priority=1, resolve_due_at=now + timedelta(days=1)
    )
    tip = await make_ticket(
        db,
        w.city,
        w.fly_tipping,
        *D02,
        status="acknowledged",
        resolve_due_at=now + timedelta(days=5),
    )
    held = await make_ticket(
        db,
        w.city,
        w.pothole,
        *D03,
        crew=w.north,
        work_status="accepted",
        resolve_due_at=now + timedelta(days=9),
    )
    unable = await make_ticket(
        db, w.city, w.pothole, *D05, crew=w.south, work_status="unable", resolve_due_at=None
    )
    staff = w["staff"]
    assert set(refs(await get(client, staff, service="fly_tipping"))) == {tip.reference}
    assert set(refs(await get(client, staff, status="acknowledged"))) == {tip.reference}
    assert set(refs(await get(client, staff, priority="1,2"))) == {p1.reference}
    assert set(refs(await get(client, staff, work_status="none"))) == {p1.reference, tip.reference}
    assert set(refs(await get(client, staff, work_status=["accepted", "unable"]))) == {
        held.reference,
        unable.reference,
    }
    assert set(refs(await get(client, staff, area=str(w.areas["D02"].id)))) == {tip.reference}
    before = (now + timedelta(days=6)).isoformat()
    assert set(refs(await get(client, staff, due_before=before))) == {p1.reference, tip.reference}
    after = (now + timedelta(days=5)).isoformat()
    assert set(refs(await get(client, staff, due_after=after))) == {tip.reference, held.reference}


# -- bounds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"radius_m": 5001, "near": "-2.58,51.45"}, "radius_m"),
        ({"radius_m": 100}, "radius_m"),
        ({"near": "51.45"}, "near"),
        ({"near": "-2.58,95"}, "near"),
        ({"sort": "distance"}, "sort"),
        ({"bbox": "-3,51,-2,52"}, "bbox"),  # ~7,700 km²
        ({"bbox": "-2.5,51.4,-2.6,51.5"}, "bbox"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"limit": 201}, "limit"),
        ({"status": "fixed"}, "status"),
        ({"work_status": "resting"}, "work_status"),
        ({"priority": "9"}, "priority"),
        ({"area": "north"}, "area"),
        ({"sla_state": "late"}, "sla_state"),
        ({"due_before": "2026-11-24T10:00:00"}, "due_before"),
    ],
)
async def test_every_filter_is_bounded(
    client: httpx.AsyncClient, world: World, params: dict[str, Any], field: str
) -> None:
    response = await get(client, world["staff"], **params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"].endswith("/invalid-input")
    assert field in {e["field"] for e in problem["errors"]}
    assert all(e["in"] == "query" for e in problem["errors"])


def square(lon: float, lat: float, side_m: float) -> list[list[float]]:
    m_lon, m_lat = metres_per_degree(lat)
    dx, dy = side_m / m_lon, side_m / m_lat
    return [[lon, lat], [lon + dx, lat], [lon + dx, lat + dy], [lon, lat + dy], [lon, lat]]


BOW_TIE = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]  # crosses itself


@pytest.mark.parametrize(
    ("polygon", "kind"),
    [
        ({"type": "Polygon", "coordinates": [BOW_TIE]}, "invalid_geometry"),
        ({"type": "Polygon", "coordinates": [square(-2.6, 51.4, 25_000)]}, "too_large"),  # 625 km²
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}, "invalid_geometry"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [200, 1], [0, 0]]]}, "value_error"),
    ],
)
async def test_polygon_bounds(
    client: httpx.AsyncClient, world: World, polygon: dict[str, Any], kind: str
) -> None:
    response = await client.post("/v1/workorders/search", json=polygon, headers=world["staff"])
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert (error["type"], error["in"]) == (kind, "body")


@pytest.mark.parametrize(
    ("content", "content_type", "status", "kind"),
    [
        (b'{"type": "Polygon", "coordinates": [[[0, 0], [1, 0]', "application/json", 422,
         "json_invalid"),
        (b"", "application/json", 422, "missing"),
        (b'{"type": "Polygon", "coordinates": "north"}', "application/json", 422, "list_type"),
        (b'{"type": "Polygon", "coordinates": [[[0, 0, 0, 0]]]}', "application/json", 422,
         "too_long"),
        (b'{"type": "Polygon"}', "application/json", 422, "missing"),
        (b"type=Polygon", "application/x-www-form-urlencoded", 415, None),
    ],
)  # fmt: skip
async def test_a_body_that_is_no_polygon_is_a_problem(
    client: httpx.AsyncClient,
    world: World,
    content: bytes,
    content_type: str,
    status: int,
    kind: str | None,
) -> None:
    response = await client.post(
        "/v1/workorders/search",
        content=content,
        headers={**world["staff"], "content-type": content_type},
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if kind is not None:
        assert kind in {e["type"] for e in response.json()["errors"]}
        assert {e["in"] for e in response.json()["errors"]} == {"body"}
    # Nothing is held: the next search answers.
    polygon = {"type": "Polygon", "coordinates": [square(-2.6, 51.4, 500)]}
    again = await client.post("/v1/workorders/search", json=polygon, headers=world["staff"])
    assert again.status_code == 200


async def test_anonymous_searches_are_refused_before_the_body_is_read(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/workorders/search", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 401


async def test_polygon_vertex_limit(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    limit = settings.workorders_max_polygon_vertices
    x, y = D01
    ring = [[x + 0.01 * (i % 2), y + 0.00001 * i] for i in range(limit)]
    ring = [[x, y], *ring[1:], [x, y + 0.00001 * limit], [x, y]]
    response = await client.post(
        "/v1/workorders/search",
        json={"type": "Polygon", "coordinates": [ring]},
        headers=world["staff"],
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "too_many"
    response = await client.post(
        "/v1/workorders/search",
        json={"type": "Point", "coordinates": [x, y]},
        headers=world["staff"],
    )
    assert response.status_code == 422


# -- sorting and keyset pages --------------------------------------------------------------------


@pytest.fixture
async def many(db: AsyncSession, world: World) -> list[Ticket]:
    """37 open tickets around D01 with ties in priority and due time, some without a due time."""
    now = datetime.now(UTC).replace(microsecond=0)
    made = []
    for n in range(37):
        lon, lat = offset_lonlat(*D01, (n % 7) * 40.0 - 120, (n // 7) * 35.0 - 90)
        due = None if n % 9 == 4 else now + timedelta(days=1 + n % 4)
        made.append(
            await make_ticket(
                db, world.city, world.pothole, lon, lat, priority=2 + n % 3, resolve_due_at=due
            )
        )
    return made


async def walk(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> tuple[list[dict[str, Any]], int]:
    """Follow `next` to the end; every item and the number of pages."""
    items: list[dict[str, Any]] = []
    response = await get(client, headers, **params)
    pages = 0
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        items += body["items"]
        if body["next"] is None:
            assert "link" not in response.headers
            return items, pages
        assert response.headers["link"] == f'<{body["next"]}>; rel="next"'
        response = await client.get(body["next"], headers=headers)


def _due_key(item: dict[str, Any]) -> tuple[bool, str]:
    return (item["resolve_due_at"] is None, item["resolve_due_at"] or "")


@pytest.mark.parametrize("sort", ["priority", "due", "distance"])
async def test_keyset_pages_have_no_gaps_or_duplicates(
    client: httpx.AsyncClient, world: World, many: list[Ticket], sort: str
) -> None:
    params: dict[str, Any] = {"sort": sort, "limit": 5}
    if sort == "distance":
        params["near"] = f"{D01[0]},{D01[1]}"
    items, pages = await walk(client, world["staff"], **params)
    assert pages == 8
    references = [i["reference"] for i in items]
    assert len(references) == len(set(references)) == 37
    assert set(references) == {t.reference for t in many}
    whole, _ = await walk(client, world["staff"], **{**params, "limit": 200})
    assert references == [i["reference"] for i in whole]
    if sort == "priority":
        keys = [(i["priority"], *_due_key(i), i["reference"]) for i in items]
        assert [k[:3] for k in keys] == sorted(k[:3] for k in keys)
    elif sort == "due":
        keys = [_due_key(i) for i in items]
        assert keys == sorted(keys)
    else:
        distances = [i["distance_m"] for i in items]
        assert distances == sorted(distances)


async def test_pages_stay_stable_when_work_moves_on(
    client: httpx.AsyncClient, db: AsyncSession, world: World, many: list[Ticket]
) -> None:
    # A ticket closed between two pages neither shifts nor repeats the rest.
    first = await get(client, world["staff"], limit=10)
    seen = refs(first)
    await db.execute(
        text("UPDATE ticket SET status = 'fixed' WHERE reference = :r"), {"r": seen[3]}
    )
    rest, _ = await walk(client, world["staff"], limit=10, cursor=_cursor(first))
    later = [i["reference"] for i in rest]
    assert not set(seen) & set(later)
    assert len(seen) + len(later) == 37


def _cursor(response: httpx.Response) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(response.json()["next"]).query)["cursor"][0]


async def test_cursors_belong_to_their_search(
    client: httpx.AsyncClient, world: World, many: list[Ticket]
) -> None:
    first = await get(client, world["staff"], limit=5)
    cursor = _cursor(first)
    for params in [
        {"cursor": cursor, "sort": "due"},
        {"cursor": cursor, "priority": "2"},
        {"cursor": "not-a-cursor"},
        {"cursor": "eyJzIjoicHJpb3JpdHkiLCJrIjpbIngiXSwiZiI6IiJ9"},
    ]:
        response = await get(client, world["staff"], limit=5, **params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["errors"][0]["field"] == "cursor"
    # The same search with another page size may go on from it.
    assert (await get(client, world["staff"], limit=7, cursor=cursor)).status_code == 200
    # Another caller's scope makes it another search.
    assert (await get(client, world["crew"], limit=5, cursor=cursor)).status_code == 400


async def test_distance_pages_reach_past_the_first_ring(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    # Sparse work: one ticket every 400 m going east, so pages need wider rings.
    made = [
        await make_ticket(db, world.city, world.pothole, *offset_lonlat(*D01, 400.0 * k, 10))
        for k in range(6)
    ]
    near = f"{D01[0]},{D01[1]}"
    items, _ = await walk(client, world["staff"], sort="distance", near=near, limit=2)
    assert [i["reference"] for i in items] == [t.reference for t in made]
    only = await get(client, world["staff"], sort="distance", near=near, radius_m=1000)
    assert refs(only) == [t.reference for t in made[:3]]


async def test_distance_order_is_great_circle_not_the_index_order(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    # In degrees (the GiST index's nearest-neighbour order) north is nearer: a degree of
    # longitude is shorter than one of latitude here. In metres east is nearer.
    north = await make_ticket(db, world.city, world.pothole, *offset_lonlat(*D01, 0.0, 100.0))
    east = await make_ticket(db, world.city, world.pothole, *offset_lonlat(*D01, 90.0, 0.0))
    far = await make_ticket(db, world.city, world.pothole, *offset_lonlat(*D01, 0.0, 300.0))
    near = f"{D01[0]},{D01[1]}"
    items, _ = await walk(client, world["staff"], sort="distance", near=near, limit=1)
    assert [i["reference"] for i in items] == [east.reference, north.reference, far.reference]
    assert [round(i["distance_m"]) for i in items] == [90, 100, 300]


# -- GeoJSON -------------------------------------------------------------------------------------


@pytest.mark.parametrize("ask", ["format", "accept"])
async def test_geojson_pages(
    client: httpx.AsyncClient, world: World, many: list[Ticket], ask: str
) -> None:
    headers = dict(world["staff"])
    params: dict[str, Any] = {"limit": 10}
    if ask == "format":
        params["format"] = "geojson"
    else:
        headers["Accept"] = "application/geo+json"
    response = await client.get("/v1/workorders", params=params, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    collection = response.json()
    assert collection["type"] == "FeatureCollection"
    assert collection["numberReturned"] == 10
    feature = collection["features"][0]
    assert feature["geometry"]["type"] == "Point"
    assert feature["id"] == feature["properties"]["reference"]
    assert "location" not in feature["properties"]
    assert feature["properties"]["sla_state"] == "ok"
    (link,) = collection["links"]
    assert link["rel"] == "next"
    followed = 10
    while collection["links"]:
        collection = (await client.get(collection["links"][0]["href"], headers=headers)).json()
        followed += collection["numberReturned"]
    assert followed == 37


@pytest.mark.parametrize(
    ("ring_text", "words"),
    [
        # A NaN vertex (JSON has no NaN, but Python's and JavaScript's encoders write it).
        ("[[-2.59, 51.45], [NaN, 51.45], [-2.58, 51.46], [-2.59, 51.45]]", "finite"),
        ("[[-2.59, 51.45], [Infinity, 51.45], [-2.58, 51.46], [-2.59, 51.45]]", "finite"),
        # RFC 7946: a ring's last position is its first; an open ring is not a polygon.
        ("[[-2.59, 51.45], [-2.58, 51.45], [-2.58, 51.46], [-2.59, 51.46]]", "closed"),
        ("[[-2.59, 51.45], [-2.58, 51.45], [-2.59, 51.45]]", "4 positions"),
    ],
)
async def test_polygon_search_refuses_nan_and_open_rings(
    client: httpx.AsyncClient, world: World, ring_text: str, words: str
) -> None:
    body = '{"type": "Polygon", "coordinates": [' + ring_text + "]}"
    response = await client.post(
        "/v1/workorders/search",
        content=body,
        headers={**world["staff"], "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.text
