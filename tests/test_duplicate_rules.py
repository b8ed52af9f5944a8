"""Duplicate rules per service: `radius` (the default), `same_address` and `never`.

Each rule's joins and non-joins at its edges, the reopen window under each rule, the plan of
the address lookup, and concurrent reports of one address (on real parallel connections).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.jurisdictions.models import DuplicateStrategy, Jurisdiction, Service
from app.main import create_app
from app.reports import repository
from app.settings import Settings, to_sqlalchemy_url
from geo.address import address_key
from geo.distance import haversine_m, offset_lonlat
from tests.factories import CITY, make_jurisdiction, make_service

CENTER = CITY.center


@pytest.fixture
async def city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="testville")


@pytest.fixture
async def bulky(db: AsyncSession, city: Jurisdiction) -> Service:
    """Call-centre pickups: the same address only (neighbours are separate jobs)."""
    return await make_service(
        db,
        city,
        "bulky_items",
        duplicate_strategy=DuplicateStrategy.same_address,
        duplicate_radius_m=30.0,
        duplicate_window=timedelta(days=2),
    )


@pytest.fixture
async def snow(db: AsyncSession, city: Jurisdiction) -> Service:
    """Snow on one street is one job up to 200 m apart."""
    return await make_service(
        db,
        city,
        "snow",
        duplicate_strategy=DuplicateStrategy.same_address,
        duplicate_street_within_m=200.0,
        duplicate_radius_m=30.0,
        duplicate_window=timedelta(days=2),
    )


@pytest.fixture
async def vehicle(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(
        db, city, "abandoned_vehicle", duplicate_strategy=DuplicateStrategy.never
    )


def at(north_m: float = 0.0, east_m: float = 0.0) -> dict[str, float]:
    lon, lat = offset_lonlat(*CENTER, east_m, north_m)
    return {"lon": lon, "lat": lat}


async def report(
    client: httpx.AsyncClient, service: str, address: str | None, where: dict[str, float]
) -> dict[str, Any]:
    payload: dict[str, Any] = {"service_code": service, "location": where}
    if address is not None:
        payload["address"] = address
    response = await client.post("/v1/reports", json=payload)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def ref(filed: dict[str, Any]) -> str:
    reference: str = filed["ticket"]["reference"]
    return reference


# -- same_address ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("bulky")
async def test_same_address_spelled_differently_150_m_apart_joins(
    client: httpx.AsyncClient,
) -> None:
    first = await report(client, "bulky_items", "16815 W VANOWEN ST, 91406", at())
    # The geocoder put the second call 150 m away: far beyond the 30 m radius.
    second = await report(client, "bulky_items", "16815 West Vanowen Street", at(150.0))
    assert second["joined_existing"] is True
    assert ref(second) == ref(first)
    assert "at the same address" in second["explanation"]
    assert "150 m away" in second["explanation"]


@pytest.mark.usefixtures("bulky")
async def test_neighbours_on_one_street_stay_apart_even_metres_away(
    client: httpx.AsyncClient,
) -> None:
    first = await report(client, "bulky_items", "16815 W VANOWEN ST", at())
    # 10 m away, well inside the radius, but another house: another pickup.
    neighbour = await report(client, "bulky_items", "16817 W VANOWEN ST", at(0.0, 10.0))
    assert neighbour["joined_existing"] is False
    assert ref(neighbour) != ref(first)
    assert "no open bulky items ticket at the same address" in neighbour["explanation"]


@pytest.mark.usefixtures("bulky")
async def test_same_address_far_away_is_a_namesake(client: httpx.AsyncClient) -> None:
    first = await report(client, "bulky_items", "100 MAIN ST", at())
    far = await report(client, "bulky_items", "100 Main Street", at(1200.0))
    assert far["joined_existing"] is False
    assert ref(far) != ref(first)


@pytest.mark.usefixtures("snow")
@pytest.mark.parametrize(("metres", "joins"), [(190.0, True), (210.0, False)])
async def test_same_street_within_its_distance_edge(
    client: httpx.AsyncClient, metres: float, joins: bool
) -> None:
    first = await report(client, "snow", "200 ELM AVE", at())
    point = at(metres)
    assert haversine_m(*CENTER, point["lon"], point["lat"]) == pytest.approx(metres, abs=0.5)
    second = await report(client, "snow", "260 Elm Avenue", point)
    assert second["joined_existing"] is joins
    assert (ref(second) == ref(first)) is joins


@pytest.mark.usefixtures("snow")
async def test_another_street_next_door_is_another_job(client: httpx.AsyncClient) -> None:
    first = await report(client, "snow", "200 ELM AVE", at())
    corner = await report(client, "snow", "5 OAK ST", at(0.0, 5.0))
    assert corner["joined_existing"] is False
    assert ref(corner) != ref(first)


@pytest.mark.usefixtures("snow")
async def test_the_same_address_is_preferred_to_a_nearer_neighbour(
    client: httpx.AsyncClient,
) -> None:
    same = await report(client, "snow", "300 ELM AVE", at(100.0))
    await report(client, "snow", "250 ELM AVE", at(2.0))
    # Within 200 m of both; the 300 ticket is at this address, the 250 one only nearer.
    second = await report(client, "snow", "300 Elm Ave.", at())
    assert ref(second) == ref(same)


@pytest.mark.usefixtures("bulky")
async def test_without_an_address_same_address_falls_back_to_radius(
    client: httpx.AsyncClient,
) -> None:
    first = await report(client, "bulky_items", "16815 W VANOWEN ST", at())
    near = await report(client, "bulky_items", None, at(20.0))
    assert near["joined_existing"] is True
    assert ref(near) == ref(first)
    assert "(within 30 m)" in near["explanation"]
    far = await report(client, "bulky_items", "  ", at(40.0))
    assert far["joined_existing"] is False


@pytest.mark.usefixtures("bulky")
async def test_same_address_window_edge(client: httpx.AsyncClient, db: AsyncSession) -> None:
    first = await report(client, "bulky_items", "16815 W VANOWEN ST", at())
    # Reported 2 days and a minute before: outside the 2-day window.
    await db.execute(
        text(
            "UPDATE ticket SET first_reported_at = :t, last_reported_at = :t WHERE reference = :r"
        ),
        {"t": datetime.now(UTC) - timedelta(days=2, minutes=1), "r": ref(first)},
    )
    late = await report(client, "bulky_items", "16815 W VANOWEN ST", at())
    assert late["joined_existing"] is False
    assert ref(late) != ref(first)


@pytest.mark.usefixtures("bulky")
async def test_same_address_closed_ticket_only_through_the_reopen_window(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    first = await report(client, "bulky_items", "16815 W VANOWEN ST", at())
    set_status = text(
        "UPDATE ticket SET status = :s, fixed_at = :f, closed_at = :f WHERE reference = :r"
    )
    # Fixed an hour ago, within the 14-day reopen window: the report reopens it.
    await db.execute(
        set_status, {"s": "fixed", "f": datetime.now(UTC) - timedelta(hours=1), "r": ref(first)}
    )
    again = await report(client, "bulky_items", "16815 W Vanowen St", at(120.0))
    assert again["reopened"] is True
    assert ref(again) == ref(first)
    assert again["explanation"].startswith(f"Reopened {ref(first)}")
    # Closed 20 days ago: outside the reopen window, a new ticket.
    await db.execute(
        set_status, {"s": "closed", "f": datetime.now(UTC) - timedelta(days=20), "r": ref(first)}
    )
    fresh = await report(client, "bulky_items", "16815 W VANOWEN ST", at())
    assert fresh["joined_existing"] is False
    assert ref(fresh) != ref(first)


@pytest.mark.usefixtures("bulky")
async def test_a_closure_after_the_report_time_does_not_take_it(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    """A ticket fixed after the (backdated) report's time cannot be what it reports again."""
    first = await report(client, "bulky_items", "16815 W VANOWEN ST", at())
    await db.execute(
        text("UPDATE ticket SET status = 'fixed', fixed_at = now() WHERE reference = :r"),
        {"r": ref(first)},
    )
    lookup = _lookup(await _service_id(db, "bulky_items"), "16815 W VANOWEN ST")
    now = (await db.execute(repository.FIND_SAME_ADDRESS, lookup)).one()
    assert (now.reference, now.status) == (ref(first), "fixed")
    earlier = {**lookup, "reported_at": datetime.now(UTC) - timedelta(hours=1)}
    assert (await db.execute(repository.FIND_SAME_ADDRESS, earlier)).first() is None


# -- never ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("vehicle")
async def test_never_opens_a_ticket_for_every_report(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    first = await report(client, "abandoned_vehicle", "1 MAIN ST", at())
    same = await report(client, "abandoned_vehicle", "1 MAIN ST", at())
    assert same["joined_existing"] is False
    assert ref(same) != ref(first)
    assert "every abandoned vehicle report is a case of its own" in same["explanation"]
    # Nor does a fixed one reopen.
    await db.execute(
        text("UPDATE ticket SET status = 'fixed', fixed_at = now() WHERE reference = :r"),
        {"r": ref(first)},
    )
    third = await report(client, "abandoned_vehicle", None, at())
    assert third["reopened"] is False
    assert len({ref(first), ref(same), ref(third)}) == 3


# -- radius stays the default ---------------------------------------------------------------------


async def test_radius_is_the_default_and_ignores_addresses(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction
) -> None:
    pothole = await make_service(db, city, "pothole", duplicate_radius_m=30.0)
    await db.refresh(pothole)
    assert pothole.duplicate_strategy == DuplicateStrategy.radius
    first = await report(client, "pothole", "1 ELM AVE", at())
    # Another address 20 m away: one pothole; the same address 150 m away: another.
    near = await report(client, "pothole", "3 ELM AVE", at(20.0))
    assert ref(near) == ref(first)
    far = await report(client, "pothole", "1 ELM AVE", at(150.0))
    assert ref(far) != ref(first)
    # The ticket stores its address keys whatever the rule (a later switch finds it).
    keys = (
        await db.execute(
            text("SELECT address_key, street_key FROM ticket WHERE reference = :r"),
            {"r": ref(first)},
        )
    ).one()
    assert tuple(keys) == ("1 ELM AVE", "ELM AVE")


@pytest.mark.usefixtures("bulky", "snow", "vehicle")
async def test_discovery_shows_each_services_rule(client: httpx.AsyncClient) -> None:
    services = (await client.get("/v1/jurisdictions/testville/services")).json()
    rules = {s["code"]: (s["duplicate_strategy"], s["duplicate_street_within_m"]) for s in services}
    assert rules == {
        "abandoned_vehicle": ("never", 0.0),
        "bulky_items": ("same_address", 0.0),
        "snow": ("same_address", 200.0),
    }


async def test_unknown_strategies_are_refused_by_the_database(
    db: AsyncSession, city: Jurisdiction
) -> None:
    with pytest.raises(Exception, match="duplicate_strategy_known"):
        async with db.begin_nested():
            await make_service(db, city, "odd", duplicate_strategy="sometimes")


# -- the plan ---------------------------------------------------------------------------------


async def _service_id(db: AsyncSession, code: str) -> int:
    service_id: int = (
        await db.execute(text("SELECT id FROM service WHERE code = :c"), {"c": code})
    ).scalar_one()
    return service_id


def _lookup(service_id: int, address: str) -> dict[str, Any]:
    keys = address_key(address)
    assert keys is not None
    return {
        "service_id": service_id,
        "lon": CENTER[0],
        "lat": CENTER[1],
        "address_key": keys.address,
        "street_key": keys.street,
        "street_within_m": 0.0,
        "address_within_m": 1000.0,
        "reported_at": datetime.now(UTC),
        "window": timedelta(days=2),
        "reopen_within": timedelta(days=14),
    }


@pytest.mark.usefixtures("bulky")
async def test_the_address_lookup_is_an_index_probe(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    first = await report(client, "bulky_items", "140 W VANOWEN ST", at(100.0))
    # 400 more open tickets on 40 other streets, as in a city: the lookup reads its street's.
    await db.execute(
        text(
            "INSERT INTO ticket (reference, jurisdiction_id, service_id, location, address_key,"
            " street_key, status, first_reported_at, last_reported_at)"
            " SELECT t.reference || '-' || i, t.jurisdiction_id, t.service_id, t.location,"
            " i || ' STREET ' || i % 40, 'STREET ' || i % 40, 'open', t.first_reported_at,"
            " t.last_reported_at FROM ticket t, generate_series(1, 400) AS i"
            " WHERE t.reference = :r"
        ),
        {"r": ref(first)},
    )
    await db.execute(text("ANALYZE ticket"))
    sql = repository.FIND_SAME_ADDRESS.text
    params = _lookup(await _service_id(db, "bulky_items"), "140 W VANOWEN ST")
    await db.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join((await db.execute(text(f"EXPLAIN {sql}"), params)).scalars().all())
    assert "ix_ticket_open_service_street" in plan, plan
    assert "ix_ticket_done_service_street" in plan
    found = (await db.execute(repository.FIND_SAME_ADDRESS, params)).one()
    assert found.distance_m == pytest.approx(100.0, abs=0.5)


# -- concurrency ------------------------------------------------------------------------------


@pytest.fixture
async def live_app(
    settings: Settings, database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> AsyncIterator[FastAPI]:
    """The app on a real pool: every request its own connection and its own commit."""
    async with committed_db() as session, session.begin():
        city = await make_jurisdiction(session, slug="busytown")
        await make_service(
            session,
            city,
            "bulky_items",
            duplicate_strategy=DuplicateStrategy.same_address,
            duplicate_radius_m=10.0,
        )
    engine = create_async_engine(to_sqlalchemy_url(database_url), pool_size=30, max_overflow=0)
    app = create_app(settings.model_copy(update={"rate_limit_reports_per_minute": 0}))
    app.state.engine = engine
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    try:
        yield app
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_simultaneous_reports_of_one_address_make_one_ticket(
    live_app: FastAPI, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    # Spread 0 to 570 m along one street: no two share a neighbourhood lock cell by radius,
    # so only the address lock serialises them.
    spellings = ("16815 W VANOWEN ST, 91406", "16815 West Vanowen Street", "16815 w vanowen st")
    payloads = [
        {
            "service_code": "bulky_items",
            "address": spellings[i % 3],
            "location": at(i * 30.0),
        }
        for i in range(20)
    ]
    transport = httpx.ASGITransport(app=live_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", timeout=60
    ) as client:
        responses = await asyncio.gather(*(client.post("/v1/reports", json=p) for p in payloads))
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses][:3]
    # 1000 m cap: all within 570 m of each other, so one ticket.
    assert len({r.json()["ticket"]["reference"] for r in responses}) == 1
    async with committed_db() as session:
        count = (await session.execute(text("SELECT count(*) FROM ticket"))).scalar_one()
        assert count == 1
