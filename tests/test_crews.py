"""Crews, territories, members and assignment rules: the staff routes and their role matrix."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.crews.models import AssignmentRule
from app.crews.sql import ticket_in_territory
from app.settings import Settings
from tests.factories import make_ticket
from tests.workorders_support import PROBLEM, World, inside, make_world


@pytest.fixture
async def world(db: AsyncSession, settings: Settings) -> World:
    world = await make_world(db, settings)
    rule = AssignmentRule(
        jurisdiction_id=world.city.id, service_id=world.fly_tipping.id, crew_id=world.north.id
    )
    db.add(rule)
    await db.flush()
    world.rule_id = rule.id
    return world


def ids(items: list[dict[str, Any]]) -> set[int]:
    return {item["id"] for item in items}


# -- role matrix ---------------------------------------------------------------------------------


def staff_routes(w: World) -> list[tuple[str, str, dict[str, Any] | None]]:
    crew = w.north.id
    return [
        ("GET", "/v1/crews", None),
        ("POST", "/v1/crews", {"name": "New crew", "area_ids": [w.areas["D03"].id]}),
        ("GET", f"/v1/crews/{crew}", None),
        ("PATCH", f"/v1/crews/{crew}", {"name": "Renamed"}),
        ("PUT", f"/v1/crews/{crew}/areas", {"area_ids": [w.areas["D01"].id]}),
        ("GET", f"/v1/crews/{crew}/members", None),
        ("DELETE", f"/v1/crews/{w.south.id}", None),
        ("GET", "/v1/assignment-rules", None),
        ("POST", "/v1/assignment-rules", {"area_id": w.areas["D02"].id, "crew_id": crew}),
        ("PATCH", f"/v1/assignment-rules/{w.rule_id}", {"area_id": w.areas["D03"].id}),
        ("DELETE", f"/v1/assignment-rules/{w.rule_id}", None),
    ]


async def call(
    client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        ("anonymous", 401),
        ("citizen", 403),
        ("crew", 403),
        ("staff", None),
        ("admin", None),
    ],
)
async def test_role_matrix_of_crew_routes(
    client: httpx.AsyncClient, world: World, who: str, allowed: int | None
) -> None:
    for method, path, body in staff_routes(world):
        if who == "admin" and method == "POST":
            body = {**(body or {}), "jurisdiction_id": world.city.id}
        response = await call(client, method, path, body, world[who])
        if allowed is None:
            assert response.status_code in (200, 201, 204), (who, method, path, response.text)
        else:
            assert response.status_code == allowed, (who, method, path, response.text)
            assert response.headers["content-type"] == PROBLEM


async def test_staff_of_another_city_see_nothing_of_ours(
    client: httpx.AsyncClient, world: World
) -> None:
    them = world["other_staff"]
    listed = (await client.get("/v1/crews", headers=them)).json()
    assert ids(listed) == {world.other_crew.id}
    for method, path, body in staff_routes(world):
        if path in ("/v1/crews", "/v1/assignment-rules"):
            continue  # their own lists and creations
        response = await call(client, method, path, body, them)
        assert response.status_code == 404, (method, path, response.text)
    # Naming our jurisdiction outright is refused, not hidden.
    response = await client.get(f"/v1/crews?jurisdiction_id={world.city.id}", headers=them)
    assert response.status_code == 403
    # Our areas, services and crews are unknown ids to them.
    response = await client.post(
        "/v1/crews", json={"name": "Sneaky", "area_ids": [world.areas["D01"].id]}, headers=them
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "area_ids"


async def test_admin_lists_every_city_and_must_name_one_to_create(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world["admin"]
    everything = ids((await client.get("/v1/crews", headers=admin)).json())
    assert {world.north.id, world.south.id, world.other_crew.id} <= everything
    one = ids(
        (await client.get(f"/v1/crews?jurisdiction_id={world.city.id}", headers=admin)).json()
    )
    assert one == {world.north.id, world.south.id}
    response = await client.post("/v1/crews", json={"name": "Nowhere"}, headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "jurisdiction_id"
    response = await client.post(
        "/v1/crews", json={"name": "Nowhere", "jurisdiction_id": 999_999}, headers=admin
    )
    assert response.status_code == 422


# -- crews and territories -----------------------------------------------------------------------


async def test_create_rename_and_set_territory(client: httpx.AsyncClient, world: World) -> None:
    staff = world["staff"]
    d3, d4 = world.areas["D03"].id, world.areas["D04"].id
    response = await client.post(
        "/v1/crews", json={"name": "  East  ", "area_ids": [d3, d3]}, headers=staff
    )
    assert response.status_code == 201, response.text
    crew = response.json()
    assert crew["name"] == "East"
    assert crew["jurisdiction_id"] == world.city.id
    assert [a["id"] for a in crew["areas"]] == [d3]
    assert crew["active"] is True
    assert crew["members"] == 0

    response = await client.post("/v1/crews", json={"name": "east"}, headers=staff)
    assert response.status_code == 409  # names are unique, whatever the case

    response = await client.put(
        f"/v1/crews/{crew['id']}/areas", json={"area_ids": [d4, d3]}, headers=staff
    )
    assert response.status_code == 200
    assert sorted(a["code"] for a in response.json()["areas"]) == ["D03", "D04"]

    response = await client.put(
        f"/v1/crews/{crew['id']}/areas",
        json={"area_ids": [d4, world.other_areas["D01"].id]},
        headers=staff,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["message"].startswith("unknown area")

    response = await client.patch(f"/v1/crews/{crew['id']}", json={"name": "North"}, headers=staff)
    assert response.status_code == 409
    response = await client.patch(f"/v1/crews/{crew['id']}", json={"name": ""}, headers=staff)
    assert response.status_code == 422


async def test_deactivate_hides_a_crew_from_the_default_list(
    client: httpx.AsyncClient, world: World
) -> None:
    staff = world["staff"]
    assert (await client.delete(f"/v1/crews/{world.south.id}", headers=staff)).status_code == 204
    assert (await client.delete(f"/v1/crews/{world.south.id}", headers=staff)).status_code == 204
    listed = ids((await client.get("/v1/crews", headers=staff)).json())
    assert world.south.id not in listed
    every = (await client.get("/v1/crews?include_inactive=true", headers=staff)).json()
    assert {c["id"]: c["active"] for c in every}[world.south.id] is False
    response = await client.patch(
        f"/v1/crews/{world.south.id}", json={"active": True}, headers=staff
    )
    assert response.json()["active"] is True


async def test_members_of_a_crew(client: httpx.AsyncClient, world: World) -> None:
    members = (
        await client.get(f"/v1/crews/{world.north.id}/members", headers=world["staff"])
    ).json()
    assert [m["role"] for m in members] == ["crew"]
    crew = (await client.get(f"/v1/crews/{world.north.id}", headers=world["staff"])).json()
    assert crew["members"] == 1


async def test_areas_list_the_crews_covering_them(client: httpx.AsyncClient, world: World) -> None:
    for who in ("crew", "staff", "admin"):
        areas = (
            await client.get(f"/v1/areas?jurisdiction_id={world.city.id}", headers=world[who])
        ).json()
        by_code = {a["code"]: a for a in areas}
        assert set(by_code) == set(world.areas)
        assert by_code["D01"]["crew_ids"] == [world.north.id]
        assert by_code["D05"]["crew_ids"] == [world.south.id]
        assert by_code["D03"]["crew_ids"] == []
    assert (await client.get("/v1/areas", headers=world["citizen"])).status_code == 403
    assert (await client.get("/v1/areas")).status_code == 401


# -- the one definition of a crew's territory ----------------------------------------------------


async def test_territory_is_the_crews_areas_plus_what_is_assigned_to_it(
    db: AsyncSession, world: World
) -> None:
    in_area = await make_ticket(db, world.city, world.pothole, *inside("D02"))
    outside = await make_ticket(db, world.city, world.pothole, *inside("D03"))
    given = await make_ticket(db, world.city, world.pothole, *inside("D03"), crew=world.north)
    assert await ticket_in_territory(db, in_area.id, world.north.id)
    assert not await ticket_in_territory(db, outside.id, world.north.id)
    assert await ticket_in_territory(db, given.id, world.north.id)
    assert not await ticket_in_territory(db, in_area.id, world.south.id)


# -- assignment rules ----------------------------------------------------------------------------


async def test_assignment_rules_crud_and_checks(client: httpx.AsyncClient, world: World) -> None:
    staff = world["staff"]
    d2 = world.areas["D02"].id
    response = await client.post(
        "/v1/assignment-rules",
        json={"area_id": d2, "service_id": world.pothole.id, "crew_id": world.north.id},
        headers=staff,
    )
    assert response.status_code == 201, response.text
    rule = response.json()
    assert rule["area"]["code"] == "D02"
    assert rule["service"] == {"id": world.pothole.id, "code": "pothole"}
    assert rule["crew"]["name"] == "North"

    same_scope = {"area_id": d2, "service_id": world.pothole.id, "crew_id": world.south.id}
    response = await client.post("/v1/assignment-rules", json=same_scope, headers=staff)
    assert response.status_code == 409
    assert response.json()["rule_id"] == rule["id"]

    # A catch-all rule (any area, any service) is a scope of its own.
    response = await client.post(
        "/v1/assignment-rules", json={"crew_id": world.south.id}, headers=staff
    )
    assert response.status_code == 201
    catch_all = response.json()
    assert catch_all["area"] is None
    assert catch_all["service"] is None

    # Ids of another city are unknown here, each named.
    response = await client.post(
        "/v1/assignment-rules",
        json={
            "area_id": world.other_areas["D01"].id,
            "service_id": world.other_pothole.id,
            "crew_id": world.other_crew.id,
        },
        headers=staff,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "crew_id"

    # Widen the first rule to any service; only the fields sent change.
    response = await client.patch(
        f"/v1/assignment-rules/{rule['id']}", json={"service_id": None}, headers=staff
    )
    assert response.status_code == 200
    assert response.json()["service"] is None
    assert response.json()["area"]["id"] == d2
    # Widening it to any area too would collide with the catch-all.
    response = await client.patch(
        f"/v1/assignment-rules/{rule['id']}", json={"area_id": None}, headers=staff
    )
    assert response.status_code == 409

    listed = (await client.get("/v1/assignment-rules", headers=staff)).json()
    # Most specific first: by area, then service, "any" last.
    assert [r["id"] for r in listed] == [rule["id"], world.rule_id, catch_all["id"]]
    assert (
        await client.delete(f"/v1/assignment-rules/{rule['id']}", headers=world["other_staff"])
    ).status_code == 404
    assert (
        await client.delete(f"/v1/assignment-rules/{rule['id']}", headers=staff)
    ).status_code == 204
    assert (
        await client.delete(f"/v1/assignment-rules/{rule['id']}", headers=staff)
    ).status_code == 404


async def test_rules_refuse_an_inactive_crew(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    await db.execute(text("UPDATE crew SET active = false WHERE id = :c"), {"c": world.south.id})
    response = await client.post(
        "/v1/assignment-rules", json={"crew_id": world.south.id}, headers=world["staff"]
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "inactive"
