"""The ticket workflow: transitions per role, templates, merge, split, priority, reopen,
automatic assignment, and the role matrix of every workflow route."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi_users.authentication import JWTStrategy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role, User
from app.crews.models import AssignmentRule, Crew
from app.jurisdictions.models import Area, Jurisdiction, Service
from app.settings import Settings
from app.tickets.models import TicketStatus
from app.tickets.workflow import CREW_TARGETS, TRANSITIONS
from geo.distance import offset_lonlat
from tests.factories import CITY, make_crew, make_jurisdiction, make_service, make_user

CENTER = CITY.center
PROBLEM = "application/problem+json"


async def bearer(settings: Settings, user: User) -> dict[str, str]:
    strategy: JWTStrategy[User, uuid.UUID] = JWTStrategy(
        secret=settings.secret_key.get_secret_value(), lifetime_seconds=600
    )
    return {"Authorization": f"Bearer {await strategy.write_token(user)}"}


@pytest.fixture
async def city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="workflowville", languages=["en", "es"])


@pytest.fixture
async def other_city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="elsewhere")


@pytest.fixture
async def pothole(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(db, city, "pothole", hazard_level=3)


async def district(db: AsyncSession, city: Jurisdiction, lon: float, lat: float) -> Area:
    area_id = (
        await db.execute(
            text(
                "SELECT id FROM area WHERE jurisdiction_id = :j"
                " AND ST_Intersects(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
            ),
            {"j": city.id, "lon": lon, "lat": lat},
        )
    ).scalar_one()
    area = await db.get(Area, area_id)
    assert area is not None
    return area


class People:
    """One signed-in person per role (crew covers the district of CENTER)."""

    def __init__(self, **headers: dict[str, str]) -> None:
        self.headers = headers

    def __getitem__(self, who: str) -> dict[str, str]:
        return self.headers[who]


@pytest.fixture
async def people(
    db: AsyncSession, settings: Settings, city: Jurisdiction, other_city: Jurisdiction
) -> People:
    home = await district(db, city, *CENTER)
    far = next(d for d in CITY.districts if d.code != home.code)
    away = (
        await db.execute(
            text("SELECT id FROM area WHERE jurisdiction_id = :j AND code = :c"),
            {"j": city.id, "c": far.code},
        )
    ).scalar_one()
    crew = await make_crew(db, city, [home], name="Home crew")
    away_crew = await make_crew(db, city, [await db.get(Area, away)], name="Away crew")  # type: ignore[list-item]
    users = {
        "citizen": await make_user(db),
        "reporter": await make_user(db),
        "crew": await make_user(db, role=Role.crew, jurisdiction=city, crew=crew),
        "away_crew": await make_user(db, role=Role.crew, jurisdiction=city, crew=away_crew),
        "staff": await make_user(db, role=Role.staff, jurisdiction=city),
        "other_staff": await make_user(db, role=Role.staff, jurisdiction=other_city),
        "admin": await make_user(db, role=Role.admin),
    }
    return People(**{k: await bearer(settings, u) for k, u in users.items()})


async def report(
    client: httpx.AsyncClient,
    lon: float = CENTER[0],
    lat: float = CENTER[1],
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/reports",
        json={"service_code": "pothole", "location": {"lon": lon, "lat": lat}, **extra},
        headers=headers or {},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def set_status(db: AsyncSession, reference: str, status: str, **columns: Any) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in ("status", *columns))
    await db.execute(
        text(f"UPDATE ticket SET {sets} WHERE reference = :ref"),  # noqa: S608 (test code)
        {"status": status, "ref": reference, **columns},
    )


async def move(
    client: httpx.AsyncClient, reference: str, status: str, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/tickets/{reference}/status", json={"status": status, **body}, headers=headers
    )


# -- transitions per role ------------------------------------------------------------------------

ALL_MOVES = [
    (start, to)
    for start in TicketStatus
    for to in TicketStatus
    if start != TicketStatus.duplicate and to not in (start, TicketStatus.duplicate)
]


@pytest.mark.usefixtures("pothole")
@pytest.mark.parametrize("who", ["staff", "crew", "away_crew", "other_staff", "citizen"])
async def test_every_transition_allowed_or_denied_per_role(
    client: httpx.AsyncClient, db: AsyncSession, people: People, who: str
) -> None:
    ticket = (await report(client))["ticket"]["reference"]
    fixed_at = datetime.now(UTC) - timedelta(days=1)
    for start, to in ALL_MOVES:
        await set_status(db, ticket, start.value, fixed_at=fixed_at)
        response = await move(client, ticket, to.value, people[who], use_template=False)
        in_workflow = to in TRANSITIONS[start]
        may = {
            "staff": in_workflow,
            "crew": in_workflow and to in CREW_TARGETS,
            "away_crew": False,
            "other_staff": False,
            "citizen": False,
        }[who]
        if may:
            assert response.status_code == 200, (start, to, response.text)
            assert response.json()["status"] == to.value
        elif not in_workflow:
            assert response.status_code in (409, 403), (start, to, response.text)
            if who in ("staff", "crew"):
                assert response.status_code == 409, (start, to)
        else:
            assert response.status_code == 403, (start, to, response.text)
            assert response.headers["content-type"] == PROBLEM


@pytest.mark.usefixtures("pothole")
async def test_anonymous_cannot_change_anything(client: httpx.AsyncClient) -> None:
    ticket = (await report(client))["ticket"]["reference"]
    for path, payload in [
        ("status", {"status": "acknowledged"}),
        ("reopen", {"reason": "still there"}),
        ("assign", {"crew_id": None}),
        ("priority", {"priority": 1}),
        ("comments", {"note": "hello"}),
        ("merge", {"into": ticket}),
        ("split", {"report_id": str(uuid.uuid4())}),
    ]:
        response = await client.post(f"/v1/tickets/{ticket}/{path}", json=payload)
        assert response.status_code == 401, (path, response.text)
    assert (await client.get(f"/v1/tickets/{ticket}/internal")).status_code == 401
    assert (await client.get("/v1/response-templates")).status_code == 401


@pytest.mark.usefixtures("pothole")
async def test_role_matrix_of_staff_routes(client: httpx.AsyncClient, people: People) -> None:
    a = (await report(client))["ticket"]["reference"]
    lon, lat = offset_lonlat(*CENTER, 500, 0)
    b = (await report(client, lon, lat))["ticket"]["reference"]
    staff_only = [
        ("assign", {"crew_id": None}),
        ("priority", {"priority": 1}),
        ("merge", {"into": b}),
        ("split", {"report_id": str(uuid.uuid4())}),
    ]
    for who in ("citizen", "crew"):
        for path, payload in staff_only:
            response = await client.post(
                f"/v1/tickets/{a}/{path}", json=payload, headers=people[who]
            )
            assert response.status_code == 403, (who, path, response.text)
        response = await client.get("/v1/response-templates", headers=people[who])
        assert response.status_code == 403
    for path, payload in staff_only[:3]:
        response = await client.post(
            f"/v1/tickets/{a}/{path}", json=payload, headers=people["other_staff"]
        )
        assert response.status_code == 403, (path, response.text)
    # Internal view: crews of the territory, staff of the jurisdiction, admins.
    for who, expected in [
        ("citizen", 403),
        ("away_crew", 403),
        ("other_staff", 403),
        ("crew", 200),
        ("staff", 200),
        ("admin", 200),
    ]:
        response = await client.get(f"/v1/tickets/{a}/internal", headers=people[who])
        assert response.status_code == expected, (who, response.text)


@pytest.mark.usefixtures("pothole")
async def test_status_change_writes_event_with_actor_and_sets_times(
    client: httpx.AsyncClient, people: People
) -> None:
    ticket = (await report(client))["ticket"]["reference"]
    response = await move(
        client, ticket, "acknowledged", people["staff"], note="On our list", internal_note="x"
    )
    assert response.status_code == 200
    detail = response.json()
    assert detail["acknowledged_at"] is not None
    changed = [e for e in detail["timeline"] if e["kind"] == "status_changed"]
    assert changed[-1]["note"] == "On our list"
    assert changed[-1]["data"]["from"] == "open"
    assert changed[-1]["data"]["to"] == "acknowledged"
    assert changed[-1]["actor"].startswith("user:")
    internal = [e for e in detail["timeline"] if e["kind"] == "comment"]
    assert internal
    assert internal[0]["public"] is False
    public = (await client.get(f"/v1/tickets/{ticket}")).json()
    assert [e for e in public["timeline"] if e["kind"] == "comment"] == []
    assert "actor" not in public["timeline"][-1]

    fixed = (await move(client, ticket, "fixed", people["crew"])).json()
    assert fixed["fixed_at"] is not None
    assert fixed["status"] == "fixed"
    assert fixed["expected_by"] is None  # no longer open
    closed = (await move(client, ticket, "closed", people["staff"])).json()
    assert closed["closed_at"] is not None
    assert (await move(client, ticket, "duplicate", people["staff"])).status_code == 409


# -- response templates --------------------------------------------------------------------------


@pytest.mark.usefixtures("pothole")
async def test_response_template_fills_placeholders_in_every_language(
    client: httpx.AsyncClient, people: People
) -> None:
    staff = people["staff"]
    for language, body in [
        ("en", "{reference}: your {service} report is {status}; expected {expected_date}."),
        ("es", "{reference}: {service} {status}."),
    ]:
        response = await client.put(
            "/v1/response-templates",
            json={
                "service_code": "pothole",
                "status": "scheduled",
                "language": language,
                "body": body,
            },
            headers=staff,
        )
        assert response.status_code == 200, response.text
    generic = await client.put(
        "/v1/response-templates",
        json={"status": "scheduled", "language": "en", "body": "generic"},
        headers=staff,
    )
    assert generic.status_code == 200
    bad = await client.put(
        "/v1/response-templates",
        json={"status": "fixed", "language": "en", "body": "Hi {name}"},
        headers=staff,
    )
    assert bad.status_code == 422
    assert "name" in bad.json()["detail"]
    listed = (await client.get("/v1/response-templates", headers=staff)).json()
    assert len(listed) == 3

    accepted = await report(client)
    ticket = accepted["ticket"]["reference"]
    due = datetime.fromisoformat(accepted["ticket"]["resolve_due_at"])
    detail = (await move(client, ticket, "scheduled", staff)).json()
    event = [e for e in detail["timeline"] if e["kind"] == "status_changed"][-1]
    assert event["note"] == (
        f"{ticket}: your Pothole report is scheduled; expected {due.date().isoformat()}."
    )
    assert event["data"]["notes"]["es"] == f"{ticket}: Pothole scheduled."
    # An explicit note wins over the template.
    detail = (await move(client, ticket, "in_progress", staff, note="Crew on the way")).json()
    assert detail["timeline"][-1]["note"] == "Crew on the way"


async def test_a_template_only_in_the_jurisdictions_languages_and_for_one_that_exists(
    client: httpx.AsyncClient, people: People
) -> None:
    """A template in a language the city does not offer was stored, and then the city's
    export (GET /v1/admin/jurisdictions/{slug}/city) failed with a 500; an admin naming a
    jurisdiction that does not exist got a 500 (foreign key) instead of a 404."""
    body = {"status": "fixed", "language": "fr", "body": "Réparé"}
    refused = await client.put("/v1/response-templates", json=body, headers=people["staff"])
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "language"
    missing = await client.put(
        "/v1/response-templates",
        params={"jurisdiction_id": 2**31 - 1},
        json={**body, "language": "en"},
        headers=people["admin"],
    )
    assert missing.status_code == 404, missing.text
    assert missing.headers["content-type"] == "application/problem+json"


# -- merge and split ----------------------------------------------------------------------------


@pytest.mark.usefixtures("pothole")
async def test_merge_moves_everything_and_loses_nothing(
    client: httpx.AsyncClient, db: AsyncSession, people: People
) -> None:
    a = await report(client, contact={"email": "a@example.org", "updates": True})
    lon, lat = offset_lonlat(*CENTER, 300, 0)
    b = await report(client, lon, lat, contact={"email": "b@example.org", "updates": True})
    b2 = await report(client, lon, lat, headers=people["reporter"])
    a_ref, b_ref = a["ticket"]["reference"], b["ticket"]["reference"]
    assert b2["ticket"]["reference"] == b_ref
    await client.post(f"/v1/tickets/{b_ref}/support", json={"email": "fan@example.org"})
    await client.post(f"/v1/tickets/{a_ref}/support", json={"email": "fan@example.org"})

    response = await client.post(
        f"/v1/tickets/{b_ref}/merge", json={"into": a_ref}, headers=people["staff"]
    )
    assert response.status_code == 200, response.text
    assert response.json()["reports_moved"] == 2

    merged = (await client.get(f"/v1/tickets/{a_ref}")).json()
    assert merged["report_count"] == 3
    assert merged["supporter_count"] == 1  # the same fan supported both: counted once
    assert {r["id"] for r in merged["reports"]} == {
        a["report"]["id"],
        b["report"]["id"],
        b2["report"]["id"],
    }
    assert any(e["kind"] == "merged" and e["data"]["from"] == b_ref for e in merged["timeline"])
    dup = (await client.get(f"/v1/tickets/{b_ref}")).json()
    assert dup["status"] == "duplicate"
    assert dup["merged_into"] == a_ref
    assert dup["report_count"] == 0
    assert any(e["kind"] == "merged" and e["data"]["into"] == a_ref for e in dup["timeline"])
    # Everyone who followed B now follows A, and only A.
    followers = (
        await db.execute(
            text(
                "SELECT t.reference, count(*) FROM subscription s JOIN ticket t"
                " ON t.id = s.ticket_id WHERE s.ended_at IS NULL AND t.reference IN (:a, :b)"
                " GROUP BY t.reference"
            ),
            {"a": a_ref, "b": b_ref},
        )
    ).all()
    assert dict(followers) == {a_ref: 4}  # a@, b@, the signed-in reporter, the fan
    reports_left = (
        await db.execute(
            text(
                "SELECT count(*) FROM report r JOIN ticket t ON t.id = r.ticket_id"
                " WHERE t.reference = :b"
            ),
            {"b": b_ref},
        )
    ).scalar_one()
    assert reports_left == 0
    # A duplicate cannot be merged again, nor can anything merge into it, nor into itself.
    for src, dst in [(b_ref, a_ref), (a_ref, b_ref), (a_ref, a_ref)]:
        again = await client.post(
            f"/v1/tickets/{src}/merge", json={"into": dst}, headers=people["staff"]
        )
        assert again.status_code == 409, again.text


@pytest.mark.usefixtures("pothole")
async def test_split_moves_a_report_out_into_a_new_ticket(
    client: httpx.AsyncClient, people: People
) -> None:
    first = await report(client, contact={"email": "one@example.org", "updates": True})
    lon, lat = offset_lonlat(*CENTER, 10, 0)
    second = await report(client, lon, lat, contact={"email": "two@example.org", "updates": True})
    ref = first["ticket"]["reference"]
    assert second["ticket"]["reference"] == ref
    response = await client.post(
        f"/v1/tickets/{ref}/split",
        json={"report_id": second["report"]["id"], "note": "Different hole"},
        headers=people["staff"],
    )
    assert response.status_code == 201, response.text
    new_ref = response.json()["new_reference"]
    assert new_ref != ref
    old, new = [(await client.get(f"/v1/tickets/{r}")).json() for r in (ref, new_ref)]
    assert old["report_count"] == 1
    assert new["report_count"] == 1
    assert [r["id"] for r in new["reports"]] == [second["report"]["id"]]
    assert new["location"]["lon"] == pytest.approx(lon)
    assert new["area"] is not None
    assert new["resolve_due_at"] is not None
    assert any(e["kind"] == "split" and e["data"]["to"] == new_ref for e in old["timeline"])
    assert any(e["kind"] == "split" and e["data"]["from"] == ref for e in new["timeline"])
    # The only report cannot be split off.
    only = await client.post(
        f"/v1/tickets/{new_ref}/split",
        json={"report_id": second["report"]["id"]},
        headers=people["staff"],
    )
    assert only.status_code == 409


@pytest.mark.usefixtures("pothole")
async def test_following_again_after_a_split_ended_the_subscription(
    client: httpx.AsyncClient, people: People, db: AsyncSession
) -> None:
    await report(client, contact={"email": "one@example.org", "updates": True})
    lon, lat = offset_lonlat(*CENTER, 10, 0)
    second = await report(client, lon, lat, contact={"email": "two@example.org", "updates": True})
    ref = second["ticket"]["reference"]
    split = await client.post(
        f"/v1/tickets/{ref}/split",
        json={"report_id": second["report"]["id"]},
        headers=people["staff"],
    )
    assert split.status_code == 201, split.text
    # The split ended two@'s subscription to the old ticket; they choose to follow it again.
    again = await client.post(f"/v1/tickets/{ref}/follow", json={"email": "two@example.org"})
    assert again.status_code in (200, 201), again.text
    assert again.json()["already"] is False
    live = (
        await db.execute(
            text(
                "SELECT count(*) FROM subscription s JOIN contact c ON c.id = s.contact_id"
                " JOIN ticket t ON t.id = s.ticket_id"
                " WHERE t.reference = :ref AND c.address = 'two@example.org'"
                " AND s.ended_at IS NULL"
            ),
            {"ref": ref},
        )
    ).scalar_one()
    assert live == 1
    # Following once more changes nothing.
    twice = await client.post(f"/v1/tickets/{ref}/follow", json={"email": "two@example.org"})
    assert twice.json()["already"] is True


# -- priority -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("pothole")
async def test_priority_manual_then_back_to_the_explained_signal(
    client: httpx.AsyncClient, people: People
) -> None:
    accepted = await report(client)
    ref = accepted["ticket"]["reference"]
    assert accepted["ticket"]["priority"] == 3  # hazard 3 alone: 30 points
    detail = (await client.get(f"/v1/tickets/{ref}/internal", headers=people["staff"])).json()
    assert detail["priority_signal"]["factors"]["hazard"] == 30
    assert detail["priority_signal"]["suggested"] == 3
    manual = await client.post(
        f"/v1/tickets/{ref}/priority",
        json={"priority": 1, "reason": "School route"},
        headers=people["staff"],
    )
    assert manual.status_code == 200
    assert manual.json()["priority"] == 1
    assert manual.json()["priority_signal"]["manual"]
    auto = await client.post(
        f"/v1/tickets/{ref}/priority", json={"priority": None}, headers=people["staff"]
    )
    assert auto.json()["priority"] == 3
    assert not auto.json()["priority_signal"]["manual"]
    bad = await client.post(
        f"/v1/tickets/{ref}/priority", json={"priority": 9}, headers=people["staff"]
    )
    assert bad.status_code == 422


async def test_priority_refresh_follows_reports_and_supporters(
    db: AsyncSession, city: Jurisdiction
) -> None:
    from app.tickets import priority

    service = await make_service(db, city, "flytip", hazard_level=3)
    now = datetime.now(UTC)
    await db.execute(
        text(
            "INSERT INTO ticket (reference, jurisdiction_id, service_id, location, status,"
            " priority, priority_manual, report_count, supporter_count, first_reported_at,"
            " last_reported_at) VALUES"
            " ('T-1', :j, :s, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'open', 3, false,"
            "  30, 25, :now, :now),"
            " ('T-2', :j, :s, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'open', 5, true,"
            "  30, 25, :now, :now)"
        ),
        {"j": city.id, "s": service.id, "lon": CENTER[0], "lat": CENTER[1], "now": now},
    )
    changed = await priority.refresh(db, now)
    assert changed == 1
    rows = dict(
        (
            await db.execute(
                text("SELECT reference, priority FROM ticket WHERE reference LIKE 'T-%'")
            )
        )
        .tuples()
        .all()
    )
    # 30 hazard + 20 reports + 15 supporters = 65: priority 1; the manual one stays.
    assert rows == {"T-1": 1, "T-2": 5}


# -- automatic assignment ------------------------------------------------------------------------


async def test_rules_assign_new_tickets_most_specific_first(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, pothole: Service
) -> None:
    streetlight = await make_service(db, city, "streetlight")
    home = await district(db, city, *CENTER)
    anywhere = await make_crew(db, city, name="Anywhere")
    local = await make_crew(db, city, [home], name="Local")
    lights = await make_crew(db, city, name="Lights")
    db.add_all(
        [
            AssignmentRule(jurisdiction_id=city.id, crew_id=anywhere.id),
            AssignmentRule(jurisdiction_id=city.id, area_id=home.id, crew_id=local.id),
            AssignmentRule(
                jurisdiction_id=city.id,
                area_id=home.id,
                service_id=streetlight.id,
                crew_id=lights.id,
            ),
        ]
    )
    await db.flush()

    async def crew_of(reference: str) -> tuple[int | None, str | None]:
        row = (
            await db.execute(
                text("SELECT crew_id, work_status FROM ticket WHERE reference = :r"),
                {"r": reference},
            )
        ).one()
        return row.crew_id, row.work_status

    pothole_here = (await report(client))["ticket"]["reference"]
    light_here = (await report(client, service_code="streetlight"))["ticket"]["reference"]
    far = next(d for d in CITY.districts if d.code != home.code).geom.representative_point()
    pothole_far = (await report(client, far.x, far.y))["ticket"]["reference"]
    assert await crew_of(pothole_here) == (local.id, "assigned")
    assert await crew_of(light_here) == (lights.id, "assigned")
    assert await crew_of(pothole_far) == (anywhere.id, "assigned")
    # An inactive crew's rule is passed over.
    await db.execute(text("UPDATE crew SET active = false WHERE id = :id"), {"id": local.id})
    lon, lat = offset_lonlat(*CENTER, 400, 0)
    assert await crew_of((await report(client, lon, lat))["ticket"]["reference"]) == (
        anywhere.id,
        "assigned",
    )


async def test_staff_assign_and_unassign(
    client: httpx.AsyncClient, db: AsyncSession, people: People, pothole: Service
) -> None:
    ref = (await report(client))["ticket"]["reference"]
    crew_id = (await db.execute(text("SELECT id FROM crew WHERE name = 'Away crew'"))).scalar_one()
    response = await client.post(
        f"/v1/tickets/{ref}/assign", json={"crew_id": crew_id}, headers=people["staff"]
    )
    assert response.status_code == 200, response.text
    assert response.json()["crew"] == "Away crew"
    assert response.json()["work_status"] == "assigned"
    # Now in the away crew's reach (assigned to it), though outside its areas.
    away = await client.get(f"/v1/tickets/{ref}/internal", headers=people["away_crew"])
    assert away.status_code == 200
    again = await client.post(
        f"/v1/tickets/{ref}/assign", json={"crew_id": crew_id}, headers=people["staff"]
    )
    assert again.status_code == 409
    unknown = await client.post(
        f"/v1/tickets/{ref}/assign", json={"crew_id": 999999}, headers=people["staff"]
    )
    assert unknown.status_code == 422
    back = await client.post(
        f"/v1/tickets/{ref}/assign", json={"crew_id": None}, headers=people["staff"]
    )
    assert back.json()["crew_id"] is None
    assert back.json()["work_status"] is None


# -- reopen ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("pothole")
async def test_reporter_reopens_within_the_window_only(
    client: httpx.AsyncClient, db: AsyncSession, people: People
) -> None:
    ref = (await report(client, headers=people["reporter"]))["ticket"]["reference"]
    await move(client, ref, "fixed", people["staff"])
    stranger = await client.post(
        f"/v1/tickets/{ref}/reopen", json={"reason": "not fixed"}, headers=people["citizen"]
    )
    assert stranger.status_code == 403
    ok = await client.post(
        f"/v1/tickets/{ref}/reopen", json={"reason": "Still a hole"}, headers=people["reporter"]
    )
    assert ok.status_code == 204, ok.text
    detail = (await client.get(f"/v1/tickets/{ref}")).json()
    assert detail["status"] == "reopened"
    assert detail["timeline"][-1]["note"] == "Still a hole"
    assert detail["sla_state"] == "ok"
    # Fixed again, but 15 days ago: past the 14-day window.
    await set_status(db, ref, "fixed", fixed_at=datetime.now(UTC) - timedelta(days=15))
    late = await client.post(
        f"/v1/tickets/{ref}/reopen", json={"reason": "Still a hole"}, headers=people["reporter"]
    )
    assert late.status_code == 403
    assert "14 days" in late.json()["detail"]
    # Staff may still reopen it.
    assert (await move(client, ref, "reopened", people["staff"])).status_code == 200


@pytest.mark.usefixtures("pothole")
async def test_new_report_soon_after_a_fix_reopens_the_ticket(
    client: httpx.AsyncClient, db: AsyncSession, people: People
) -> None:
    first = await report(client)
    ref = first["ticket"]["reference"]
    await move(client, ref, "fixed", people["staff"])
    lon, lat = offset_lonlat(*CENTER, 10, 0)
    again = await report(client, lon, lat)
    assert again["ticket"]["reference"] == ref
    assert again["reopened"] is True
    assert again["joined_existing"] is True
    assert again["ticket"]["status"] == "reopened"
    assert "Reopened" in again["explanation"]
    timeline = (await client.get(f"/v1/tickets/{ref}")).json()["timeline"]
    reopened = [e for e in timeline if e["kind"] == "status_changed"][-1]
    assert reopened["data"]["from"] == "fixed"
    assert reopened["data"]["to"] == "reopened"
    # Fixed long ago: a new report opens a new ticket.
    await set_status(db, ref, "closed", fixed_at=datetime.now(UTC) - timedelta(days=20))
    fresh = await report(client, lon, lat)
    assert fresh["ticket"]["reference"] != ref
    assert fresh["reopened"] is False


@pytest.mark.usefixtures("pothole")
async def test_unknown_ticket_and_bad_bodies_are_clear_problems(
    client: httpx.AsyncClient, people: People
) -> None:
    missing = await move(client, "K-2026-999999", "acknowledged", people["staff"])
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    ref = (await report(client))["ticket"]["reference"]
    bad = await move(client, ref, "melted", people["staff"])
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"].endswith("status")
    short = await client.post(
        f"/v1/tickets/{ref}/reopen", json={"reason": ""}, headers=people["citizen"]
    )
    assert short.status_code == 422


async def test_crew_of_another_jurisdiction_gets_403(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    pothole: Service,
    other_city: Jurisdiction,
) -> None:
    crew: Crew = await make_crew(db, other_city, name="Foreign")
    user = await make_user(db, role=Role.crew, jurisdiction=other_city, crew=crew)
    ref = (await report(client))["ticket"]["reference"]
    response = await move(client, ref, "acknowledged", await bearer(settings, user))
    assert response.status_code == 403


@pytest.mark.usefixtures("pothole")
async def test_undisputed_fixes_close_after_the_reopen_window(
    client: httpx.AsyncClient, db: AsyncSession, people: People
) -> None:
    from app.tickets.workflow import close_undisputed_fixes

    old = (await report(client))["ticket"]["reference"]
    lon, lat = offset_lonlat(*CENTER, 600, 0)
    recent = (await report(client, lon, lat))["ticket"]["reference"]
    now = datetime.now(UTC)
    await set_status(db, old, "fixed", fixed_at=now - timedelta(days=14, seconds=1))
    await set_status(db, recent, "fixed", fixed_at=now - timedelta(days=13))
    assert await close_undisputed_fixes(db, now) == 1
    closed = (await client.get(f"/v1/tickets/{old}")).json()
    assert closed["status"] == "closed"
    assert closed["timeline"][-1]["data"] == {"from": "fixed", "to": "closed"}
    assert (await client.get(f"/v1/tickets/{recent}")).json()["status"] == "fixed"
