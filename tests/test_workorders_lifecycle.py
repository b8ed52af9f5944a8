"""The work-order lifecycle: assigned → accepted → en_route → on_site → done / unable, who may
step it, in which order, what it writes, and after-photos."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings
from app.tickets.models import Ticket
from tests.factories import make_ticket
from tests.images import jpeg
from tests.workorders_support import PROBLEM, World, inside, make_world

D01 = inside("D01")  # North's area
D03 = inside("D03")  # nobody's area
D05 = inside("D05")  # South's area
CHAIN = [("accept", "accepted"), ("en-route", "en_route"), ("on-site", "on_site")]


@pytest.fixture
async def world(db: AsyncSession, settings: Settings) -> World:
    return await make_world(db, settings)


async def step(
    client: httpx.AsyncClient,
    ticket: Ticket | str,
    name: str,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    **kw: Any,
) -> httpx.Response:
    reference = ticket if isinstance(ticket, str) else ticket.reference
    return await client.post(f"/v1/workorders/{reference}/{name}", json=body, headers=headers, **kw)


async def state(db: AsyncSession, ticket: Ticket) -> Any:
    return (
        await db.execute(
            text(
                "SELECT status, work_status, scheduled_for, acknowledged_at, fixed_at"
                " FROM ticket WHERE id = :id"
            ),
            {"id": ticket.id},
        )
    ).one()


async def events(db: AsyncSession, ticket: Ticket, kind: str) -> list[Any]:
    return list(
        (
            await db.execute(
                text(
                    "SELECT public, actor_label, actor_user_id, note, data, created_at"
                    " FROM ticket_event WHERE ticket_id = :id AND kind = :kind ORDER BY id"
                ),
                {"id": ticket.id, "kind": kind},
            )
        ).all()
    )


async def test_the_whole_lifecycle(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    ticket = await make_ticket(db, world.city, world.pothole, *D01, crew=world.north)
    crew = world["crew"]
    when = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    response = await step(
        client, ticket, "accept", crew, {"scheduled_for": when.isoformat(), "note": "tomorrow"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["work_status"] == "accepted"
    assert response.json()["status"] == "scheduled"
    assert response.json()["sla_state"] == "ok"
    now = await state(db, ticket)
    assert (now.status, now.work_status, now.scheduled_for) == ("scheduled", "accepted", when)
    assert now.acknowledged_at is not None

    response = await step(client, ticket, "en-route", crew)
    assert (response.json()["work_status"], response.json()["status"]) == (
        "en_route",
        "in_progress",
    )
    response = await step(client, ticket, "on-site", crew, {"note": "cones out"})
    assert (response.json()["work_status"], response.json()["status"]) == (
        "on_site",
        "in_progress",
    )
    response = await step(client, ticket, "done", crew, {"note": "Filled and sealed."})
    assert response.status_code == 200, response.text
    assert (response.json()["work_status"], response.json()["status"]) == ("done", "fixed")
    assert (await state(db, ticket)).fixed_at is not None

    progress = await events(db, ticket, "work_progress")
    assert [(e.data["from"], e.data["to"]) for e in progress] == [
        ("assigned", "accepted"),
        ("accepted", "en_route"),
        ("en_route", "on_site"),
        ("on_site", "done"),
    ]
    assert all(not e.public for e in progress)  # crews' comings and goings are internal
    assert all(e.actor_label.startswith("user:") and e.actor_user_id for e in progress)
    assert [e.note for e in progress] == ["tomorrow", None, "cones out", None]
    assert progress[0].data["scheduled_for"].startswith(when.date().isoformat())
    assert all(e.data["crew_id"] == world.north.id for e in progress)
    changes = await events(db, ticket, "status_changed")
    assert [(e.data["from"], e.data["to"]) for e in changes] == [
        ("open", "scheduled"),
        ("scheduled", "in_progress"),
        ("in_progress", "fixed"),
    ]
    assert changes[-1].public
    assert changes[-1].note == "Filled and sealed."  # told to every reporter

    # Finished: nothing more to step, and the work order is still readable.
    response = await step(client, ticket, "unable", crew, {"reason": "late"})
    assert response.status_code == 409
    assert (await client.get(f"/v1/workorders/{ticket.reference}", headers=crew)).status_code == 200


@pytest.mark.parametrize(
    ("work_status", "name"),
    [
        ("assigned", "en-route"),
        ("assigned", "on-site"),
        ("assigned", "done"),
        ("accepted", "accept"),
        ("accepted", "on-site"),
        ("en_route", "done"),
        ("on_site", "accept"),
        ("unable", "accept"),
        ("unable", "unable"),
    ],
)
async def test_steps_out_of_order_are_conflicts(
    client: httpx.AsyncClient, db: AsyncSession, world: World, work_status: str, name: str
) -> None:
    ticket = await make_ticket(
        db, world.city, world.pothole, *D01, crew=world.north, work_status=work_status
    )
    body = {"note": "x", "reason": "x"} if name in ("done", "unable") else None
    response = await step(client, ticket, name, world["crew"], body)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["work_status"] == work_status
    assert name not in problem["allowed"]
    assert (await state(db, ticket)).work_status == work_status
    assert await events(db, ticket, "work_progress") == []


async def test_unable_needs_a_reason_and_works_from_any_open_step(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    for work_status in ("assigned", "accepted", "en_route", "on_site"):
        ticket = await make_ticket(
            db, world.city, world.pothole, *D01, crew=world.north, work_status=work_status
        )
        assert (await step(client, ticket, "unable", world["crew"], {})).status_code == 422
        response = await step(
            client, ticket, "unable", world["crew"], {"reason": "Needs a road closure"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["work_status"] == "unable"
        assert response.json()["status"] == "open"  # staff decide what happens next
        (event,) = await events(db, ticket, "work_progress")
        assert event.note == "Needs a road closure"


async def test_done_needs_a_note(client: httpx.AsyncClient, db: AsyncSession, world: World) -> None:
    ticket = await make_ticket(
        db, world.city, world.pothole, *D01, crew=world.north, work_status="on_site"
    )
    for body in ({}, {"note": ""}):
        response = await step(client, ticket, "done", world["crew"], body)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "note"
    response = await client.post(
        f"/v1/workorders/{ticket.reference}/done",
        content=b"note=done",
        headers={**world["crew"], "Content-Type": "text/plain"},
    )
    assert response.status_code == 415


# -- who may step ----------------------------------------------------------------------------------


async def test_only_the_assigned_crew_or_staff_step_a_work_order(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    w = world
    north_held = await make_ticket(db, w.city, w.pothole, *D01, crew=w.north)
    # In North's area but held by South: North sees it and may not touch it.
    south_held_in_north = await make_ticket(db, w.city, w.pothole, *D01, crew=w.south)
    unassigned_in_north = await make_ticket(db, w.city, w.pothole, *D01)
    south_held = await make_ticket(db, w.city, w.pothole, *D05, crew=w.south)
    other_city = await make_ticket(db, w.other_city, w.other_pothole, *D01, crew=w.other_crew)

    expected = [
        ("anonymous", north_held, 401),
        ("citizen", north_held, 403),
        ("crewless", north_held, 404),
        ("south_crew", north_held, 404),  # outside South's territory: not even there
        ("crew", south_held, 404),
        ("crew", south_held_in_north, 403),  # visible, but another crew's
        ("crew", unassigned_in_north, 403),
        ("other_staff", north_held, 404),
        ("staff", other_city, 404),
        ("staff", unassigned_in_north, 409),  # nobody holds it: assign it first
        ("crew", north_held, 200),
        ("staff", south_held, 200),
        ("admin", other_city, 200),
    ]
    for who, ticket, status in expected:
        response = await step(client, ticket, "accept", w[who])
        assert response.status_code == status, (who, ticket.reference, response.text)
        if status != 200:
            assert response.headers["content-type"] == PROBLEM
    staff_step = await events(db, south_held, "work_progress")
    assert staff_step[0].data["crew_id"] == w.south.id  # staff act for the crew
    assert staff_step[0].actor_label.startswith("user:")


@pytest.mark.parametrize(("who", "status"), [("anonymous", 401), ("citizen", 403)])
async def test_no_step_without_crew_or_staff_rights(
    client: httpx.AsyncClient, db: AsyncSession, world: World, who: str, status: int
) -> None:
    ticket = await make_ticket(db, world.city, world.pothole, *D01, crew=world.north)
    for name in ("accept", "en-route", "on-site", "done", "unable"):
        response = await step(client, ticket, name, world[who], {"note": "x", "reason": "x"})
        assert response.status_code == status, (name, response.text)
    assert (await state(db, ticket)).work_status == "assigned"


async def test_no_step_on_a_closed_ticket(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    ticket = await make_ticket(
        db, world.city, world.pothole, *D01, crew=world.north, status="closed"
    )
    response = await step(client, ticket, "accept", world["crew"])
    assert response.status_code == 409
    # RFC 9457's `status` is the HTTP status; the ticket's has a member of its own.
    assert (response.json()["status"], response.json()["ticket_status"]) == (409, "closed")


async def test_a_step_never_moves_the_ticket_back(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    # Staff started the work before the crew accepted: accepting keeps it in progress.
    ticket = await make_ticket(
        db, world.city, world.pothole, *D01, crew=world.north, status="in_progress"
    )
    response = await step(client, ticket, "accept", world["crew"])
    assert response.status_code == 200
    assert response.json()["status"] == "in_progress"
    assert await events(db, ticket, "status_changed") == []


# -- after-photos ----------------------------------------------------------------------------------


async def done_with_photos(
    client: httpx.AsyncClient, ticket: Ticket, headers: dict[str, str], photos: list[bytes]
) -> httpx.Response:
    return await client.post(
        f"/v1/workorders/{ticket.reference}/done",
        data={"note": "Cleared the lot", "internal_note": "2 bags"},
        files=[("photos", (f"after{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)],
        headers=headers,
    )


async def test_services_that_need_an_after_photo_get_one(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    ticket = await make_ticket(
        db, world.city, world.fly_tipping, *D01, crew=world.north, work_status="on_site"
    )
    crew = world["crew"]
    response = await step(client, ticket, "done", crew, {"note": "Cleared"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "photos"
    assert (await state(db, ticket)).work_status == "on_site"

    response = await done_with_photos(client, ticket, crew, [jpeg(lon=D01[0], lat=D01[1])] * 2)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "fixed"
    photos = (
        await db.execute(
            text(
                "SELECT kind, report_id, public, public_id FROM photo WHERE ticket_id = :id"
                " ORDER BY id"
            ),
            {"id": ticket.id},
        )
    ).all()
    assert [(p.kind, p.report_id, p.public) for p in photos] == [("completion", None, True)] * 2
    (event,) = await events(db, ticket, "work_progress")
    assert event.data["photos"] == 2
    assert event.data["photo_ids"] == [str(p.public_id) for p in photos]
    assert event.note == "2 bags"
    public = (await client.get(f"/v1/tickets/{ticket.reference}")).json()
    assert [p["id"] for p in public["completion_photos"]] == [str(p.public_id) for p in photos]
    served = await client.get(f"/v1/photos/{photos[0].public_id}.jpg")
    assert served.status_code == 200
    assert b"KerbCam" not in served.content  # stored without metadata


async def test_after_photos_are_optional_elsewhere_and_checked(
    client: httpx.AsyncClient, db: AsyncSession, world: World, settings: Settings
) -> None:
    ticket = await make_ticket(
        db, world.city, world.pothole, *D01, crew=world.north, work_status="on_site"
    )
    crew = world["crew"]
    too_many = [jpeg()] * (settings.max_completion_photos + 1)
    assert (await done_with_photos(client, ticket, crew, too_many)).status_code == 422
    # Past what the form parser reads at all: 422 too, not the parser's undocumented 400.
    far_too_many = [b"x"] * (settings.max_completion_photos + 2)
    assert (await done_with_photos(client, ticket, crew, far_too_many)).status_code == 422
    response = await done_with_photos(client, ticket, crew, [b"not an image at all"])
    assert response.status_code in (415, 422)
    assert (await state(db, ticket)).work_status == "on_site"
    response = await client.post(
        f"/v1/workorders/{ticket.reference}/done", data={"note": "Patched"}, headers=crew
    )
    assert response.status_code == 200, response.text
