"""The demo data: complete, idempotent, and filed through the real intake path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.seed.demo import DEMO_USERS, seed_demo
from app.seed.history import HISTORY, SAME_SPOT_M, Kind, plan
from geo.city import make_city
from geo.distance import haversine_m

FINISHED = ("fixed", "closed", "not_our_responsibility", "rejected")


async def test_demo_seed_is_complete_and_idempotent(
    database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    first = await seed_demo(database_url, reports=200, progress=False)
    second = await seed_demo(database_url, reports=200, progress=False)
    assert first["areas"] == 8
    assert first["services"] == ["fly_tipping", "pothole", "streetlight"]
    assert first["history"].get("skipped", 0) == 0  # every planned step fitted its ticket
    assert second["sample_reports_filed"] == 0
    assert "history" not in second
    async with committed_db() as session:
        counts = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM jurisdiction), (SELECT count(*) FROM report),"
                    " (SELECT count(*) FROM ticket), (SELECT sum(report_count) FROM ticket),"
                    " (SELECT count(*) FROM app_user), (SELECT count(*) FROM ticket"
                    "  WHERE area_id IS NULL), (SELECT count(DISTINCT status) FROM ticket),"
                    " (SELECT count(*) FROM ticket_event)"
                )
            )
        ).one()
    jurisdictions, reports, tickets, attached, users, without_area, statuses, events = counts
    assert (jurisdictions, reports, users) == (1, 200, len(DEMO_USERS))
    assert tickets == first["tickets_created"]
    assert attached == 200  # every report belongs to exactly one ticket
    assert without_area == 0
    assert statuses >= 5
    assert events > 4 * tickets  # staff, crews and the worker acted, not only the intake


async def test_demo_reports_cluster_into_tickets_of_several_reports(
    database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    # Issue 16: 400 demo reports made 400 single-report tickets.
    await seed_demo(database_url, reports=200, progress=False)
    async with committed_db() as session:
        sizes = dict(
            (await session.execute(text("SELECT report_count, count(*) FROM ticket GROUP BY 1")))
            .tuples()
            .all()
        )
        joined = (
            await session.execute(
                text(
                    "SELECT count(*), count(*) FILTER (WHERE match_distance_m <= :near)"
                    " FROM report WHERE joined_existing"
                ),
                {"near": 2 * SAME_SPOT_M},
            )
        ).one()
        backers = (
            await session.execute(
                text(
                    "SELECT (SELECT sum(supporter_count) FROM ticket),"
                    " (SELECT count(*) FROM subscription WHERE reason = 'follower')"
                )
            )
        ).one()
    tickets = sum(sizes.values())
    several = sum(n for size, n in sizes.items() if size >= 2)
    # Most problems are reported once; a good share by 2 to 8 people.
    assert 0.15 * tickets <= several <= 0.5 * tickets, sizes
    assert sum(n for size, n in sizes.items() if size >= 4) >= 3, sizes
    assert max(sizes) <= 12, sizes
    assert joined[0] == 200 - tickets
    assert joined[1] >= 0.9 * joined[0]  # people pinned the same spot, a few metres apart
    supporters, followers = backers
    assert supporters >= 5
    assert followers >= 1


async def test_finished_demo_tickets_hold_no_crew_work(
    database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    # Issue 16: finished tickets kept work_status "assigned".
    await seed_demo(database_url, reports=200, progress=False)
    async with committed_db() as session:
        states = (
            await session.execute(
                text("SELECT status, work_status, count(*) FROM ticket GROUP BY 1, 2")
            )
        ).all()
    finished = {(status, work): n for status, work, n in states if status in FINISHED}
    assert sum(n for (status, _), n in finished.items() if status in ("fixed", "closed")) > 10
    assert any(status == "not_our_responsibility" for status, _ in finished), states
    for (status, work), n in finished.items():
        # Fixed by the crew's "done"; a dismissed ticket was taken off the crew's list.
        assert work == ("done" if status in ("fixed", "closed") else None), (status, work, n)
    working = {work for status, work, _ in states if status not in FINISHED}
    assert working <= {"assigned", "accepted", "en_route", "on_site", "unable"}, states


async def test_demo_timelines_are_dated_when_things_happened(
    database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    # Issue 16: backdated tickets had timelines dated at seed time.
    started = datetime.now(UTC)
    await seed_demo(database_url, reports=200, progress=False)
    finished = datetime.now(UTC)
    async with committed_db() as session:
        events = (
            await session.execute(
                text(
                    "SELECT e.kind, e.created_at, t.first_reported_at, t.created_at AS opened"
                    " FROM ticket_event e JOIN ticket t ON t.id = e.ticket_id"
                )
            )
        ).all()
        reports = (
            await session.execute(
                text("SELECT count(*) FROM report WHERE received_at <> reported_at")
            )
        ).scalar_one()
    kinds = {e.kind for e in events}
    assert {"ticket_opened", "report_attached", "assigned", "status_changed"} <= kinds
    assert {"work_progress", "supporter_added", "sla_warning"} <= kinds
    outside = [e for e in events if not e.first_reported_at <= e.created_at <= finished]
    assert outside == []
    # A ticket opened weeks ago has no line dated at the seed's run.
    old = [e for e in events if e.first_reported_at < started - timedelta(days=3)]
    assert len(old) > len(events) / 2
    assert max(e.created_at for e in old) < started
    assert len({e.created_at.date() for e in events}) > 60  # spread over three months
    assert all(e.opened == e.first_reported_at for e in events)
    assert reports == 0  # each demo report was received when it was made


def test_the_demo_history_is_planned_the_same_way_every_time() -> None:
    city = make_city()
    kinds = [
        Kind("pothole", timedelta(days=60), timedelta(days=14), timedelta(days=14)),
        Kind("fly_tipping", timedelta(days=14), timedelta(days=14), timedelta(days=5)),
    ]
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    points = city.random_points(100, seed=11)
    first = plan(100, kinds, points, lambda p: True, now=now)
    assert first == plan(100, kinds, points, lambda p: True, now=now)
    assert sum(len(p.sightings) for p in first) == 100
    for problem in first:
        origin = problem.sightings[0]
        assert all(now - HISTORY <= s.at <= now for s in problem.sightings)
        assert all(a.at <= now for a in problem.actions)
        for later in problem.sightings[1:]:
            assert haversine_m(origin.lon, origin.lat, later.lon, later.lat) <= 2 * SAME_SPOT_M


async def test_the_map_shows_the_demo_right_after_the_seed(
    database_url: str, committed_db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    # Issue 16: the low-zoom grid was built only when a map request found it stale, so the
    # first minute of /maps showed no clusters (and let browsers cache the empty tiles).
    await seed_demo(database_url, reports=40, progress=False)
    west, south, east, north = make_city().boundary.bounds
    response = await client.get(
        "/v1/tickets/clusters", params={"bbox": f"{west},{south},{east},{north}", "zoom": 11}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=60"
    async with committed_db() as session:
        tickets = (await session.execute(text("SELECT count(*) FROM ticket"))).scalar_one()
    assert tickets > 0
    assert response.json()["tickets"] == tickets


async def test_demo_users_can_sign_in(
    database_url: str, committed_db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await seed_demo(database_url, reports=0, progress=False)
    # The rolled-back test connection sees committed rows too.
    email, password, *_ = DEMO_USERS[1]
    response = await client.post(
        "/v1/auth/jwt/login", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text


async def test_in_the_demo_a_status_change_reaches_the_citizen_through_the_local_sink(
    database_url: str,
    committed_db: async_sessionmaker[AsyncSession],
    settings: object,
    tmp_path: object,
) -> None:
    from pathlib import Path

    from app.channels.registry import channels_for, close_all
    from app.main import create_app
    from app.settings import Settings
    from app.tickets import workflow
    from app.tickets.models import TicketStatus
    from tests.jobs_support import drain
    from tests.test_notify import STAFF

    assert isinstance(settings, Settings)
    assert isinstance(tmp_path, Path)
    demo = settings.model_copy(update={"channels_sink_file": tmp_path / "sink.jsonl"})
    summary = await seed_demo(database_url, reports=60, progress=False)
    follows = summary["citizen_follows"]
    assert len(follows) == 3
    async with committed_db() as session, session.begin():
        ticket_id = await workflow.ticket_id(session, follows[0])
        await workflow.change_status(session, ticket_id, TicketStatus.acknowledged, actor=STAFF)
    channels = channels_for(demo)
    try:
        await drain(demo, queues=["notify"], channels=channels)
    finally:
        await close_all(channels)
    app = create_app(demo)
    app.state.sessionmaker = committed_db
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        login = await client.post(
            "/v1/auth/jwt/login",
            data={"username": "staff@demo.kerbside.dev", "password": "demo-staff-password"},
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        outbox = await client.get("/v1/demo/outbox", headers=headers)
        assert outbox.status_code == 200, outbox.text
        received = outbox.json()
        assert [(m["address"], m["ticket"], m["event"]) for m in received] == [
            ("citizen@demo.kerbside.dev", follows[0], "acknowledged")
        ]
        assert (await client.get("/v1/demo/outbox")).status_code == 401
