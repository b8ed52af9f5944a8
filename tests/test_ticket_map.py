"""ticket_map (migration 0005): the public map's read model of each ticket, kept by triggers.

Every check compares the read model with what the application builds from the ticket itself
(``feature_text(PUBLIC, MAP_PROPERTIES)``, the old per-request path) in one statement, so both
sides read the same ``now()``: tickets of every status and service-level edge, after every
kind of write to a ticket or a service, through the HTTP API with every filter and keyset
pages, and after the migration's backfill of tickets written before it.
"""

# ruff: noqa: S608  (statements join code constants and fixed test text; values are bound)
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from alembic import command
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import NullPool

from app.jurisdictions.models import Jurisdiction, Service
from app.maps.queries import (
    MAP_FEATURE,
    MAP_PROPERTIES,
    MAP_SLA_STATE,
    MAX_PUBLIC_SNAP_SQL,
    PUBLIC,
    PUBLIC_POINT,
    Filters,
    feature_text,
    features_page_sql,
    filter_params,
    map_page_sql,
)
from app.migrations import alembic_config, head_revision
from app.settings import to_sqlalchemy_url
from app.tickets.models import TicketStatus
from app.tickets.sla import sla_state, sla_state_sql
from geo.bbox import BBox
from geo.distance import haversine_m, offset_lonlat
from tests.factories import CITY, make_jurisdiction, make_service, make_ticket
from tests.maps_data import CENTER

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
STATUSES = tuple(s.value for s in TicketStatus)
DISMISSED = "('duplicate', 'not_our_responsibility', 'rejected')"
DONE = "('fixed', 'closed')"
AREA_CODES = ("D01", "D02", None, "D03")
# A 2 km box around the city centre (4 km², under the 25 km² limit): every ticket is inside.
WIDE = BBox(*offset_lonlat(*CENTER, -1000, -1000), *offset_lonlat(*CENTER, 1000, 1000))
WIDE_PARAM = ",".join(f"{v:.6f}" for v in WIDE.as_tuple())
_references = itertools.count(1)


# -- tickets of every kind ----------------------------------------------------------------------


def clocks(now: datetime) -> dict[str, dict[str, datetime | None]]:
    """Deadline columns per service-level situation, around ``now`` (hours of margin, so the
    database's ``now()`` a few seconds later sees the same state)."""

    def c(
        ack_at: datetime | None = None,
        ack_warn: datetime | None = None,
        ack_due: datetime | None = None,
        fix_warn: datetime | None = None,
        fix_due: datetime | None = None,
        fixed: datetime | None = None,
    ) -> dict[str, datetime | None]:
        return {
            "acknowledged_at": ack_at,
            "acknowledge_warn_at": ack_warn,
            "acknowledge_due_at": ack_due,
            "resolve_warn_at": fix_warn,
            "resolve_due_at": fix_due,
            "fixed_at": fixed,
        }

    later = {"fix_warn": now + 5 * DAY, "fix_due": now + 10 * DAY}
    acked = {"ack_at": now - 3 * DAY, "ack_warn": now - 5 * DAY, "ack_due": now - 4 * DAY}
    return {
        # Not acknowledged, an acknowledge deadline: measured against it.
        "ack_ok": c(ack_warn=now + DAY, ack_due=now + 2 * DAY, **later),
        "ack_warning": c(ack_warn=now - HOUR, ack_due=now + DAY, **later),
        "ack_breached": c(ack_warn=now - 2 * DAY, ack_due=now - DAY, **later),
        "ack_at_due": c(ack_warn=now - 2 * DAY, ack_due=now - timedelta(seconds=1), **later),
        # ... even when the resolve deadline has passed already.
        "ack_no_warn_time": c(ack_due=now + DAY, fix_warn=now - 2 * DAY, fix_due=now - DAY),
        # Acknowledged (the acknowledge deadline, long past, no longer counts).
        "acked_ok": c(**acked, fix_warn=now + DAY, fix_due=now + 2 * DAY),
        "acked_warning": c(**acked, fix_warn=now - HOUR, fix_due=now + DAY),
        "acked_breached": c(**acked, fix_warn=now - 2 * DAY, fix_due=now - DAY),
        "acked_no_warn_time": c(**acked, fix_due=now + DAY),
        "acked_no_due": c(**acked),
        # No acknowledge deadline: straight to the resolve one.
        "no_ack_deadline": c(fix_warn=now - HOUR, fix_due=now + DAY),
        "no_deadlines": c(),
        # Fixed before / at / after the resolve deadline, or without one of the two.
        "fixed_in_time": c(
            **acked, fix_warn=now - 3 * DAY, fix_due=now - 2 * DAY, fixed=now - 2 * DAY - HOUR
        ),
        "fixed_at_due": c(
            **acked, fix_warn=now - 3 * DAY, fix_due=now - 2 * DAY, fixed=now - 2 * DAY
        ),
        "fixed_late": c(**acked, fix_warn=now - 3 * DAY, fix_due=now - 2 * DAY, fixed=now - DAY),
        "fixed_before_future_due": c(
            **acked, fix_warn=now + DAY, fix_due=now + 2 * DAY, fixed=now - HOUR
        ),
        "fixed_without_due": c(**acked, fixed=now - DAY),
        "due_without_fixed_at": c(**acked, fix_warn=now - 2 * DAY, fix_due=now - DAY),
    }


@dataclass(frozen=True)
class Places:
    """Where tickets go: a jurisdiction and its services (ids), and the first spot to use."""

    jurisdiction_id: int
    service_ids: Sequence[int]
    start: int = 0


def ticket_rows(places: Places, now: datetime) -> list[dict[str, Any]]:
    """Every status crossed with every service-level situation, spread over the services,
    areas (and none), places within 800 m of the centre, counts and times."""
    rows = []
    situations = clocks(now)
    for i, (status, situation) in enumerate(itertools.product(STATUSES, situations)):
        n = places.start + i
        lon, lat = offset_lonlat(*CENTER, (n % 13) * 123.0 - 740, (n // 13 % 13) * 117.0 - 700)
        reported = now - (n + 1) * 37 * timedelta(minutes=1)
        rows.append(
            {
                "reference": f"TM-2026-{next(_references):06d}",
                "jurisdiction_id": places.jurisdiction_id,
                "service_id": places.service_ids[n % len(places.service_ids)],
                "area_code": AREA_CODES[n % len(AREA_CODES)],
                "lon": lon,
                "lat": lat,
                "status": status,
                "report_count": n % 4,
                "reported_at": reported,
                "updated_at": reported + (n % 5) * 13 * timedelta(minutes=1),
                **situations[situation],
            }
        )
    return rows


INSERT_TICKET = text(
    "INSERT INTO ticket (reference, jurisdiction_id, service_id, area_id, location, status,"
    " report_count, first_reported_at, last_reported_at, created_at, updated_at,"
    " acknowledged_at, acknowledge_due_at, acknowledge_warn_at, resolve_due_at,"
    " resolve_warn_at, fixed_at)"
    " VALUES (:reference, :jurisdiction_id, :service_id,"
    " (SELECT a.id FROM area a WHERE a.jurisdiction_id = :jurisdiction_id"
    "  AND a.code = :area_code),"
    " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :status, :report_count, :reported_at,"
    " :reported_at, :reported_at, :updated_at, :acknowledged_at, :acknowledge_due_at,"
    " :acknowledge_warn_at, :resolve_due_at, :resolve_warn_at, :fixed_at)"
)


# -- parity: the read model against the ticket, in one statement --------------------------------

# The row stores the running deadline rather than the state, so the state must be the rule's
# at any clock, not only at now(): checked at each of the ticket's warning times and deadlines,
# a second before, at, and a second after (the edges of ``>=``), and at now().
TICKET_CLOCKS = (
    "(SELECT d + o AS clock FROM unnest(ARRAY[t.acknowledge_warn_at, t.acknowledge_due_at,"
    " t.resolve_warn_at, t.resolve_due_at, t.fixed_at, now()]) AS d,"
    " unnest(ARRAY[interval '-1 second', interval '0', interval '1 second']) AS o"
    " WHERE d IS NOT NULL) c"
)
# For "did a write change what the map shows": a day apart over a month.
DAILY_CLOCKS = (
    "generate_series(now() - interval '15 days', now() + interval '15 days',"
    " interval '1 day') AS c(clock)"
)
assert MAP_SLA_STATE.count("now()") == 1
MAP_SLA_AT_CLOCK = MAP_SLA_STATE.replace("now()", "c.clock")
SLA_AT_CLOCKS = f"ARRAY(SELECT {sla_state_sql('t', 'c.clock')} FROM {DAILY_CLOCKS})"

PARITY_SQL = text(
    f"""
SELECT t.id, t.reference, m.ticket_id IS NOT NULL AS mapped,
       {MAP_FEATURE} AS got,
       {feature_text(PUBLIC, MAP_PROPERTIES)} AS want,
       (m.jurisdiction_id, m.service_id, m.area_id, m.status, m.first_reported_at, m.updated_at)
           IS NOT DISTINCT FROM (t.jurisdiction_id, t.service_id, t.area_id, t.status,
                                 t.first_reported_at, t.updated_at) AS same_columns,
       ST_AsEWKB(m.point) = ST_AsEWKB({PUBLIC_POINT}) AS same_point,
       ARRAY(SELECT c.clock FROM {TICKET_CLOCKS}
             WHERE {MAP_SLA_AT_CLOCK} IS DISTINCT FROM {sla_state_sql("t", "c.clock")})
           AS wrong_at,
       now() AS now, t.status, t.acknowledged_at, t.acknowledge_due_at, t.acknowledge_warn_at,
       t.resolve_due_at, t.resolve_warn_at, t.fixed_at
FROM ticket t
JOIN service s ON s.id = t.service_id
LEFT JOIN ticket_map m ON m.ticket_id = t.id
WHERE t.jurisdiction_id = ANY(:jurisdictions)
ORDER BY t.id
"""
)
# Rows that no ticket of those jurisdictions explains (a stale jurisdiction, say).
STRAY_SQL = text(
    "SELECT count(*) FROM ticket_map m WHERE m.jurisdiction_id = ANY(:jurisdictions)"
    " AND NOT EXISTS (SELECT 1 FROM ticket t WHERE t.id = m.ticket_id"
    " AND t.jurisdiction_id = m.jurisdiction_id)"
)


@dataclass(frozen=True)
class Parity:
    problems: list[str]
    states: set[str | None]
    tickets: int


def judge(rows: Sequence[Row[Any]], strays: int) -> Parity:
    problems: list[str] = []
    states: set[str | None] = set()
    for r in rows:
        want = json.loads(r.want)
        states.add(want["properties"]["sla_state"])
        # The rule in Python agrees with the SQL one (at the database's clock).
        rule = sla_state(r, r.now)
        if want["properties"]["sla_state"] != (None if rule is None else rule.value):
            problems.append(f"{r.reference}: sla_state_sql disagrees with sla_state: {r.want}")
        if not r.mapped:
            problems.append(f"{r.reference}: no ticket_map row")
            continue
        if r.got != r.want:
            problems.append(f"{r.reference}:\n  ticket_map: {r.got}\n  ticket:     {r.want}")
        elif list(json.loads(r.got)["properties"]) != list(MAP_PROPERTIES):
            problems.append(f"{r.reference}: properties out of order: {r.got}")
        if r.same_columns is not True:
            problems.append(f"{r.reference}: filter columns differ from the ticket's")
        if r.same_point is not True:
            problems.append(f"{r.reference}: point differs from the public point")
        if r.wrong_at:
            problems.append(
                f"{r.reference}: sla_state differs from the rule's at {r.wrong_at}: {r.got}"
            )
    if strays:
        problems.append(f"{strays} ticket_map rows without their ticket")
    return Parity(problems, states, len(rows))


async def parity(db: AsyncSession, *jurisdictions: int) -> Parity:
    params = {"jurisdictions": list(jurisdictions)}
    rows = (await db.execute(PARITY_SQL, params)).all()
    strays = int((await db.execute(STRAY_SQL, params)).scalar_one())
    return judge(rows, strays)


async def assert_parity(db: AsyncSession, *jurisdictions: int, when: str = "") -> Parity:
    found = await parity(db, *jurisdictions)
    assert found.tickets > 0
    assert not found.problems, f"{when}:\n" + "\n".join(found.problems)
    return found


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
async def city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="map-model")


@pytest.fixture
async def other_city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="map-model-other")


@pytest.fixture
async def pothole(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(db, city, "pothole")


@pytest.fixture
async def shelter(db: AsyncSession, city: Jurisdiction) -> Service:
    """A sensitive service: the public sees its tickets on a 200 m grid."""
    return await make_service(db, city, "rough_sleeping", public_location_snap_m=200)


@pytest.fixture
async def other_service(db: AsyncSession, other_city: Jurisdiction) -> Service:
    return await make_service(db, other_city, "graffiti", public_location_snap_m=50)


@pytest.fixture
async def tickets(
    db: AsyncSession,
    city: Jurisdiction,
    other_city: Jurisdiction,
    pothole: Service,
    shelter: Service,
    other_service: Service,
) -> int:
    """Every kind of ticket in the city (two services), some in the other city; how many."""
    now = datetime.now(UTC).replace(microsecond=0)
    rows = ticket_rows(Places(city.id, (pothole.id, shelter.id)), now)
    rows += ticket_rows(Places(other_city.id, (other_service.id,), start=7), now)[::9]
    await db.execute(INSERT_TICKET, rows)
    return len(rows)


async def ticket_id(db: AsyncSession, where: str, **params: Any) -> int:
    sql = f"SELECT id FROM ticket t WHERE {where} ORDER BY id LIMIT 1"
    return int((await db.execute(text(sql), params)).scalar_one())


# -- 1. parity on every kind of ticket ----------------------------------------------------------


async def test_every_kind_of_ticket_reads_the_same_from_the_map(
    db: AsyncSession, city: Jurisdiction, other_city: Jurisdiction, tickets: int
) -> None:
    found = await assert_parity(db, city.id, other_city.id, when="after insert")
    assert found.tickets == tickets
    # The edges are covered: every state, and none.
    assert found.states == {"ok", "warning", "breached", None}
    # ... in every phase: before acknowledgement, after it, done, dismissed.
    phases = await db.execute(
        text(
            f"SELECT CASE WHEN t.status IN {DISMISSED} THEN 'dismissed'"
            f" WHEN t.status IN {DONE} THEN 'done'"
            " WHEN t.acknowledged_at IS NULL AND t.acknowledge_due_at IS NOT NULL"
            " THEN 'acknowledge' ELSE 'resolve' END AS phase,"
            f" {sla_state_sql('t')} AS state FROM ticket t WHERE t.jurisdiction_id = :j"
        ),
        {"j": city.id},
    )
    covered: dict[str, set[str | None]] = {}
    for phase, state in phases.tuples():
        covered.setdefault(phase, set()).add(state)
    assert covered == {
        "acknowledge": {"ok", "warning", "breached"},
        "resolve": {"ok", "warning", "breached", None},
        "done": {"ok", "breached", None},
        "dismissed": {None},
    }
    # ... every status, snapped and unsnapped services, no area, no reports.
    row = (
        await db.execute(
            text(
                "SELECT count(DISTINCT t.status), count(*) FILTER (WHERE s.public_location_snap_m"
                " > 0), count(*) FILTER (WHERE t.area_id IS NULL),"
                " count(*) FILTER (WHERE t.report_count = 0)"
                " FROM ticket t JOIN service s ON s.id = t.service_id WHERE t.jurisdiction_id = :j"
            ),
            {"j": city.id},
        )
    ).one()
    assert row[0] == len(STATUSES)
    assert all(n > 0 for n in row[1:])
    # A snapped ticket's map point is not where the ticket is.
    moved = (
        await db.execute(
            text(
                "SELECT count(*) FROM ticket_map m JOIN ticket t ON t.id = m.ticket_id"
                " JOIN service s ON s.id = t.service_id"
                " WHERE t.jurisdiction_id = :j AND s.public_location_snap_m > 0"
                " AND NOT ST_Equals(m.point, t.location)"
            ),
            {"j": city.id},
        )
    ).scalar_one()
    assert moved > 0
    # One row per ticket, no more.
    counts = await db.execute(
        text(
            "SELECT (SELECT count(*) FROM ticket_map WHERE jurisdiction_id = ANY(:js)),"
            " (SELECT count(*) FROM ticket WHERE jurisdiction_id = ANY(:js))"
        ),
        {"js": [city.id, other_city.id]},
    )
    assert tuple(counts.one()) == (tickets, tickets)


# -- 2. triggers keep it fresh ------------------------------------------------------------------


TICKET_WRITES: list[tuple[str, str]] = [
    ("status", "status = 'in_progress'"),
    ("report_count", "report_count = report_count + 3"),
    ("location", "location = ST_Translate(location, 0.0013, 0.0007)"),
    ("service_id to the snapped service", "service_id = :shelter"),
    ("acknowledged_at set", "acknowledged_at = now() - interval '1 minute'"),
    ("acknowledged_at cleared", "acknowledged_at = NULL"),
    (
        "acknowledge deadline behind the clock",
        "acknowledge_warn_at = now() - interval '2 days',"
        " acknowledge_due_at = now() - interval '1 day'",
    ),
    ("acknowledge deadline cleared", "acknowledge_due_at = NULL, acknowledge_warn_at = NULL"),
    (
        "resolve warning time passed",
        "resolve_warn_at = now() - interval '1 hour', resolve_due_at = now() + interval '1 day'",
    ),
    ("resolve deadline passed", "resolve_due_at = now() - interval '1 minute'"),
    ("fixed late", "status = 'fixed', fixed_at = now()"),
    ("fixed in time", "fixed_at = resolve_due_at - interval '1 hour'"),
    ("resolve deadline cleared", "resolve_due_at = NULL, resolve_warn_at = NULL"),
    ("reopened", "status = 'reopened', resolve_due_at = now() + interval '3 days'"),
    ("first_reported_at", "first_reported_at = first_reported_at - interval '3 days'"),
    ("updated_at", "updated_at = now()"),
    ("reference", "reference = reference || 'X'"),
    ("area_id", "area_id = (SELECT id FROM area WHERE jurisdiction_id = :j AND code = 'D05')"),
    ("area_id cleared", "area_id = NULL"),
    ("jurisdiction_id", "jurisdiction_id = :other"),
    ("service_id back, unsnapped", "service_id = :pothole"),
    ("dismissed", "status = 'rejected'"),
]
# Writes that touch no input of the row: nothing needs to change, parity must hold.
QUIET_WRITES: list[tuple[str, str]] = [
    ("priority", "priority = 1, priority_manual = true"),
    ("sla_next_at", "sla_next_at = now() + interval '1 hour', sla_flags = 3"),
    ("text", "description = 'a \"quoted\" one', address = '1 High St'"),
    ("work order", "work_status = 'assigned', assigned_at = now(), scheduled_for = now()"),
    ("same values", "status = status, location = location, report_count = report_count"),
]

SOURCE_OF_ONE = text(
    f"SELECT {feature_text(PUBLIC, MAP_PROPERTIES)} AS feature,"
    " t.jurisdiction_id, t.service_id, t.area_id, t.status, t.first_reported_at, t.updated_at,"
    f" ST_AsEWKB({PUBLIC_POINT}) AS point, {SLA_AT_CLOCKS} AS states"
    " FROM ticket t JOIN service s ON s.id = t.service_id WHERE t.id = :id"
)


async def source_of(db: AsyncSession, id_: int) -> tuple[Any, ...]:
    return tuple((await db.execute(SOURCE_OF_ONE, {"id": id_})).one())


async def test_ticket_writes_are_followed(
    db: AsyncSession,
    city: Jurisdiction,
    other_city: Jurisdiction,
    pothole: Service,
    shelter: Service,
    tickets: int,
) -> None:
    ids = {
        "pending": await ticket_id(
            db,
            "status = 'open' AND acknowledged_at IS NULL AND acknowledge_due_at > now()"
            " AND service_id = :s",
            s=pothole.id,
        ),
        "acknowledged": await ticket_id(
            db, "status = 'acknowledged' AND resolve_due_at > now() + interval '3 days'"
        ),
    }
    params = {"shelter": shelter.id, "pothole": pothole.id, "j": city.id, "other": other_city.id}
    for what, assignment in TICKET_WRITES:
        changed = []
        for name, id_ in ids.items():
            before = await source_of(db, id_)
            await db.execute(
                text(f"UPDATE ticket SET {assignment} WHERE id = :id"),
                {"id": id_, **{k: v for k, v in params.items() if f":{k}" in assignment}},
            )
            changed.append(await source_of(db, id_) != before)
            await assert_parity(db, city.id, other_city.id, when=f"{name} ticket, {what}")
        # Each write changes what the map must show, for one of the tickets at least (else
        # it would test nothing).
        assert any(changed), f"{what}: the write changed nothing the map shows"
    for what, assignment in QUIET_WRITES:
        await db.execute(
            text(f"UPDATE ticket SET {assignment} WHERE jurisdiction_id = :j"),
            {"j": city.id},
        )
        await assert_parity(db, city.id, other_city.id, when=f"quiet write: {what}")


async def test_set_based_ticket_writes_are_followed(
    db: AsyncSession, city: Jurisdiction, other_city: Jurisdiction, shelter: Service, tickets: int
) -> None:
    writes = [
        "status = CASE WHEN status = 'open' THEN 'acknowledged' ELSE 'open' END,"
        " acknowledged_at = CASE WHEN acknowledged_at IS NULL THEN now() END",
        "service_id = :shelter, report_count = report_count * 2 + 1",
        "location = ST_Translate(location, -0.0021, 0.0009), updated_at = now()",
    ]
    # Rows written by a session in another time zone read the same (times are UTC text).
    await db.execute(text("SET LOCAL TimeZone = 'Pacific/Chatham'"))
    for assignment in writes:
        params: dict[str, Any] = {"j": city.id}
        if ":shelter" in assignment:
            params["shelter"] = shelter.id
        result = await db.execute(
            text(f"UPDATE ticket SET {assignment} WHERE jurisdiction_id = :j"),
            params,
        )
        assert result.rowcount > 100  # type: ignore[attr-defined]
        await assert_parity(db, city.id, other_city.id, when=assignment)


async def test_orm_writes_are_followed(
    db: AsyncSession, city: Jurisdiction, pothole: Service, shelter: Service
) -> None:
    ticket = await make_ticket(db, city, shelter, *offset_lonlat(*CENTER, 37.0, 61.0))
    count = text("SELECT count(*) FROM ticket_map WHERE ticket_id = :id")
    assert (await db.execute(count, {"id": ticket.id})).scalar_one() == 1
    await assert_parity(db, city.id, when="ORM insert")
    ticket.status = "acknowledged"
    ticket.acknowledged_at = datetime.now(UTC)
    ticket.report_count = 5
    ticket.service_id = pothole.id
    await db.flush()
    await assert_parity(db, city.id, when="ORM update")
    assert (await db.execute(count, {"id": ticket.id})).scalar_one() == 1


async def test_service_writes_are_followed(
    db: AsyncSession,
    city: Jurisdiction,
    other_city: Jurisdiction,
    pothole: Service,
    shelter: Service,
    tickets: int,
) -> None:
    writes: list[tuple[str, dict[str, Any]]] = [
        ("public_location_snap_m = 500", {"id": pothole.id}),  # unsnapped -> snapped
        ("public_location_snap_m = 0", {"id": shelter.id}),  # snapped -> unsnapped
        ("public_location_snap_m = 75", {"id": pothole.id}),  # another grid
        ("code = 'pothole_v2'", {"id": pothole.id}),
        ("code = code || '_x', public_location_snap_m = 120", {"id": shelter.id}),
        ('names = \'{"en": "Renamed"}\', duplicate_radius_m = 5', {"id": pothole.id}),  # quiet
        ("code = code", {"id": pothole.id}),  # quiet
    ]
    for assignment, params in writes:
        before = [await source_of(db, i) for i in await ids_of_service(db, params["id"])]
        await db.execute(
            text(f"UPDATE service SET {assignment} WHERE id = :id"),
            params,
        )
        after = [await source_of(db, i) for i in await ids_of_service(db, params["id"])]
        if "code = code" not in assignment and "names" not in assignment:
            assert all(a != b for a, b in zip(after, before, strict=True)), assignment
        await assert_parity(db, city.id, other_city.id, when=f"UPDATE service SET {assignment}")
    # Several services in one statement.
    await db.execute(
        text(
            "UPDATE service SET code = code || '_y',"
            " public_location_snap_m = public_location_snap_m + 30 WHERE jurisdiction_id = :j"
        ),
        {"j": city.id},
    )
    await assert_parity(db, city.id, other_city.id, when="UPDATE of all services")


async def ids_of_service(db: AsyncSession, service_id: int) -> list[int]:
    sql = text("SELECT id FROM ticket WHERE service_id = :s ORDER BY id LIMIT 25")
    return [int(i) for i in (await db.execute(sql, {"s": service_id})).scalars()]


async def test_insert_makes_one_row_and_delete_removes_it(
    db: AsyncSession, city: Jurisdiction, other_city: Jurisdiction, tickets: int
) -> None:
    count = text("SELECT count(*) FROM ticket_map WHERE ticket_id = ANY(:ids)")
    # A set-based insert (INSERT ... SELECT) of copies of a few tickets.
    new = [
        int(i)
        for i in (
            await db.execute(
                text(
                    "INSERT INTO ticket (reference, jurisdiction_id, service_id, area_id, location,"
                    " status, report_count, first_reported_at, last_reported_at, updated_at,"
                    " acknowledge_due_at, acknowledge_warn_at, resolve_due_at, resolve_warn_at)"
                    " SELECT reference || '-COPY', jurisdiction_id, service_id, area_id, location,"
                    " status, report_count, first_reported_at, last_reported_at, updated_at,"
                    " acknowledge_due_at, acknowledge_warn_at, resolve_due_at, resolve_warn_at"
                    " FROM ticket WHERE jurisdiction_id = :j ORDER BY id LIMIT 12 RETURNING id"
                ),
                {"j": city.id},
            )
        ).scalars()
    ]
    assert len(new) == 12
    assert (await db.execute(count, {"ids": new})).scalar_one() == 12
    await assert_parity(db, city.id, other_city.id, when="INSERT ... SELECT")
    # Deleting a ticket (nothing refers to it) removes its row (ON DELETE CASCADE).
    gone = new[:3]
    await db.execute(text("DELETE FROM ticket WHERE id = ANY(:ids)"), {"ids": gone})
    assert (await db.execute(count, {"ids": gone})).scalar_one() == 0
    assert (await db.execute(count, {"ids": new[3:]})).scalar_one() == 9
    await assert_parity(db, city.id, other_city.id, when="DELETE")


async def test_deleting_an_area_is_followed(
    db: AsyncSession, city: Jurisdiction, other_city: Jurisdiction, tickets: int
) -> None:
    """ticket.area_id is ON DELETE SET NULL: a referential action, which fires the trigger."""
    with_d02 = text(
        "SELECT count(*) FROM ticket_map m JOIN area a ON a.id = m.area_id"
        " WHERE a.code = 'D02' AND a.jurisdiction_id = :j"
    )
    assert (await db.execute(with_d02, {"j": city.id})).scalar_one() > 0
    await db.execute(
        text("DELETE FROM area WHERE jurisdiction_id = :j AND code = 'D02'"), {"j": city.id}
    )
    await assert_parity(db, city.id, other_city.id, when="DELETE FROM area")


# -- 3. through the API -------------------------------------------------------------------------


async def walk(client: httpx.AsyncClient, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every feature of every page, following ``next`` links; each page checked."""
    features: list[dict[str, Any]] = []
    query = dict(params)
    for _ in range(200):
        response = await client.get("/v1/tickets.geojson", params=query)
        assert response.status_code == 200, response.text
        doc = response.json()
        assert doc["numberReturned"] == len(doc["features"])
        if "limit" in params:
            assert len(doc["features"]) <= int(params["limit"])
        features += doc["features"]
        following = [link["href"] for link in doc["links"] if link["rel"] == "next"]
        if not following:
            return features
        assert len(doc["features"]) == int(params["limit"])
        ids = [f["id"] for f in doc["features"]]
        assert ids == sorted(ids), "a page with a next page is in reference (id) order"
        query = {k: v[0] for k, v in parse_qs(urlsplit(following[0]).query).items()}
    raise AssertionError("more than 200 pages")


def by_id(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(features, key=lambda feature: str(feature["id"]))


REVERSED = ",".join(reversed(MAP_PROPERTIES))

FACTS_SQL = text(
    f"""
SELECT t.id, t.reference, ST_X(p.point) AS lon, ST_Y(p.point) AS lat, s.code AS service,
       t.status, a.code AS area, j.slug AS jurisdiction, t.first_reported_at, t.updated_at,
       EXISTS (SELECT 1 FROM photo ph WHERE ph.ticket_id = t.id AND ph.public) AS has_photo
FROM ticket t
JOIN service s ON s.id = t.service_id
JOIN jurisdiction j ON j.id = t.jurisdiction_id
LEFT JOIN area a ON a.id = t.area_id
CROSS JOIN LATERAL (SELECT {PUBLIC_POINT} AS point) p
ORDER BY t.id
"""
)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def matches(fact: Row[Any], params: dict[str, str]) -> bool:
    """The filters' meaning, written out independently of the application's SQL."""
    if "bbox" in params:
        w, s, e, n = (float(v) for v in params["bbox"].split(","))
        if not (w <= fact.lon <= e and s <= fact.lat <= n):
            return False
    for name in ("service", "status", "area", "jurisdiction"):
        if name in params and getattr(fact, name) not in params[name].split(","):
            return False
    if "created_since" in params and fact.first_reported_at < parse(params["created_since"]):
        return False
    if "created_until" in params and fact.first_reported_at >= parse(params["created_until"]):
        return False
    if "updated_since" in params and fact.updated_at < parse(params["updated_since"]):
        return False
    if "updated_until" in params and fact.updated_at >= parse(params["updated_until"]):
        return False
    return "has_photo" not in params or fact.has_photo == (params["has_photo"] == "true")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
async def photos(db: AsyncSession, city: Jurisdiction, tickets: int) -> None:
    """Public photos on every fifth ticket; a private one (not counted) on a few others."""
    await db.execute(
        text(
            "INSERT INTO photo (ticket_id, storage_key, thumbnail_key, content_type, width,"
            " height, bytes, sha256, public)"
            " SELECT id, 'k' || id, 'k', 'image/jpeg', 1, 1, 1, 'x', id % 5 = 0 FROM ticket"
            " WHERE jurisdiction_id = :j AND (id % 5 = 0 OR id % 7 = 0)"
        ),
        {"j": city.id},
    )


def filter_cases(facts: Sequence[Row[Any]]) -> Iterator[dict[str, str]]:
    created = sorted(f.first_reported_at for f in facts)
    updated = sorted(f.updated_at for f in facts)
    mid_c, late_c = iso(created[len(created) // 2]), iso(created[len(created) * 3 // 4])
    mid_u = iso(updated[len(updated) // 3])
    near = ",".join(
        f"{v:.6f}" for v in (*offset_lonlat(*CENTER, -300, -250), *offset_lonlat(*CENTER, 350, 200))
    )
    yield {}
    yield {"bbox": near}
    yield {"service": "pothole"}
    yield {"service": "rough_sleeping,graffiti,nothing"}
    yield {"status": "open,fixed,rejected"}
    yield {"status": "reopened"}
    yield {"area": "D01"}
    yield {"area": "D02,D03"}
    yield {"jurisdiction": "map-model"}
    yield {"jurisdiction": "map-model-other"}
    yield {"created_since": mid_c}  # the edge ticket is included
    yield {"created_until": mid_c}  # ... and here excluded
    yield {"created_since": mid_c, "created_until": late_c}
    yield {"updated_since": mid_u}
    yield {"updated_until": mid_u}
    yield {"has_photo": "true"}
    yield {"has_photo": "false"}
    yield {"bbox": near, "service": "rough_sleeping", "status": "open,acknowledged,fixed"}
    yield {"service": "pothole", "area": "D01,D03", "has_photo": "false", "updated_since": mid_u}
    yield {"jurisdiction": "map-model", "created_until": late_c, "has_photo": "true"}


async def test_api_pages_from_the_map_equal_the_old_path(
    client: httpx.AsyncClient, db: AsyncSession, tickets: int, photos: None
) -> None:
    facts = (await db.execute(FACTS_SQL)).all()
    assert len(facts) == tickets
    covered = 0
    for number, case in enumerate(filter_cases(facts)):
        expected = [f.reference for f in facts if matches(f, {"bbox": WIDE_PARAM, **case})]
        covered += bool(expected)
        params = {"bbox": WIDE_PARAM, **case}
        # A page that holds the whole answer comes in index order: compare in id order.
        lean = by_id(await walk(client, params))  # the read model
        old = by_id(await walk(client, {**params, "properties": REVERSED}))  # per-request SQL
        assert [f["id"] for f in lean] == expected, f"{case}: read model"
        assert [f["id"] for f in old] == expected, f"{case}: old path"
        for a, b in zip(lean, old, strict=True):
            assert list(a["properties"]) == list(MAP_PROPERTIES)
            assert list(b["properties"]) == list(reversed(MAP_PROPERTIES))
            assert a == b, f"{case}: feature {a['id']} differs"
        if number % 6 == 0:
            # Keyset pages of the read model walk every matching ticket exactly once.
            paged = await walk(client, {**params, "limit": "7"})  # pages in id order
            assert paged == lean, f"{case}: pages of 7"
    assert covered >= 18  # nearly every case finds something


async def test_page_statements_give_the_same_bytes(
    db: AsyncSession, tickets: int, photos: None
) -> None:
    """map_page_sql against features_page_sql (the public default, padded prefilter) on the
    same filters and cursors: the same count, bytes and last id."""
    facts = (await db.execute(FACTS_SQL)).all()
    pad = float((await db.execute(text(MAX_PUBLIC_SNAP_SQL))).scalar_one())
    assert pad > 0
    for case in filter_cases(facts):
        filters = Filters(
            bbox=WIDE if "bbox" not in case else BBox(*map(float, case["bbox"].split(","))),
            services=case["service"].split(",") if "service" in case else [],
            statuses=case["status"].split(",") if "status" in case else [],
            areas=case["area"].split(",") if "area" in case else [],
            jurisdiction=case.get("jurisdiction"),
            created_since=parse(case["created_since"]) if "created_since" in case else None,
            created_until=parse(case["created_until"]) if "created_until" in case else None,
            updated_since=parse(case["updated_since"]) if "updated_since" in case else None,
            updated_until=parse(case["updated_until"]) if "updated_until" in case else None,
            has_photo=None if "has_photo" not in case else case["has_photo"] == "true",
        )
        for without_bbox in (False, True):
            if without_bbox:
                filters.bbox = None
            key = filters.key()
            for after in (None, facts[len(facts) // 3].id):
                for limit in (5, 1000):
                    old_params = filter_params(filters, PUBLIC, pad) | {"limit": limit}
                    new_params = filter_params(filters, PUBLIC, 0.0) | {"limit": limit}
                    if after is not None:
                        old_params["after"] = new_params["after"] = after
                    old_sql = features_page_sql(
                        PUBLIC, MAP_PROPERTIES, key, True, after is not None
                    )
                    new_sql = map_page_sql(key, after is not None)
                    old = tuple((await db.execute(text(old_sql), old_params)).one())
                    new = tuple((await db.execute(text(new_sql), new_params)).one())
                    assert new == old, f"{case}, bbox: {not without_bbox}, after {after}"


async def test_a_snapped_ticket_is_found_at_its_grid_point_only(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction, shelter: Service
) -> None:
    lon, lat = offset_lonlat(*CENTER, 37.0, 61.0)
    made = await make_ticket(db, city, shelter, lon, lat)
    snapped = (
        await db.execute(
            text("SELECT ST_X(point), ST_Y(point) FROM ticket_map WHERE ticket_id = :id"),
            {"id": made.id},
        )
    ).one()
    plon, plat = float(snapped[0]), float(snapped[1])
    assert haversine_m(lon, lat, plon, plat) > 10  # far enough for tiny boxes to tell apart

    def tiny(x: float, y: float) -> str:
        return f"{x - 0.00001:.6f},{y - 0.00001:.6f},{x + 0.00001:.6f},{y + 0.00001:.6f}"

    for properties in (None, REVERSED):  # the read model, and the old path
        extra = {} if properties is None else {"properties": properties}
        at_exact = await walk(client, {"bbox": tiny(lon, lat), **extra})
        assert at_exact == [], f"found at its exact spot ({extra})"
        at_grid = await walk(client, {"bbox": tiny(plon, plat), **extra})
        assert [f["id"] for f in at_grid] == [made.reference]
        assert at_grid[0]["geometry"]["coordinates"] == pytest.approx([plon, plat], abs=1e-6)
    # Moving the ticket a metre (same cell) keeps it on the grid point: still not found at
    # its new exact spot.
    await db.execute(
        text("UPDATE ticket SET location = ST_Translate(location, 0.000015, 0) WHERE id = :id"),
        {"id": made.id},
    )
    assert await walk(client, {"bbox": tiny(lon + 0.000015, lat)}) == []
    assert [f["id"] for f in await walk(client, {"bbox": tiny(plon, plat)})] == [made.reference]
    # The service no longer snapped: found at its exact spot, no longer at the grid point.
    await db.execute(
        text("UPDATE service SET public_location_snap_m = 0 WHERE id = :id"), {"id": shelter.id}
    )
    found = await walk(client, {"bbox": tiny(lon + 0.000015, lat)})
    assert [f["id"] for f in found] == [made.reference]
    assert await walk(client, {"bbox": tiny(plon, plat)}) == []


# -- 4. the migration's backfill ----------------------------------------------------------------


def _city_sql(conn: Connection, slug: str) -> tuple[int, list[int]]:
    """A jurisdiction with the city's districts and two services (one snapped), in SQL (the
    ORM models are the head's; this runs at revision 0004)."""
    j = conn.execute(
        text(
            "INSERT INTO jurisdiction (slug, name, boundary)"
            " VALUES (:slug, :slug, ST_Multi(ST_GeomFromText(:wkt, 4326))) RETURNING id"
        ),
        {"slug": slug, "wkt": CITY.boundary.wkt},
    ).scalar_one()
    conn.execute(
        text(
            "INSERT INTO area (jurisdiction_id, code, name, geom)"
            " VALUES (:j, :code, :code, ST_Multi(ST_GeomFromText(:wkt, 4326)))"
        ),
        [{"j": j, "code": d.code, "wkt": d.geom.wkt} for d in CITY.districts],
    )
    services = [
        int(
            conn.execute(
                text(
                    "INSERT INTO service (jurisdiction_id, code, names, public_location_snap_m)"
                    " VALUES (:j, :code, CAST(:names AS jsonb), :snap) RETURNING id"
                ),
                {"j": j, "code": code, "names": json.dumps({"en": code}), "snap": snap},
            ).scalar_one()
        )
        for code, snap in (("pothole", 0), ("rough_sleeping", 200))
    ]
    return int(j), services


def test_upgrade_backfills_tickets_written_before_it(database_url: str) -> None:
    """Down to 0004, tickets written, up to head: every ticket has its row, with parity.
    All in one transaction that is rolled back (PostgreSQL DDL is transactional), so the
    test database stays at head whatever happens."""
    engine = create_engine(to_sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            try:
                conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                config = alembic_config(database_url)
                config.attributes["connection"] = conn
                command.downgrade(config, "0004")
                gone = conn.execute(text("SELECT to_regclass('ticket_map')")).scalar_one()
                assert gone is None
                j, services = _city_sql(conn, "backfill-city")
                now = datetime.now(UTC).replace(microsecond=0)
                rows = ticket_rows(Places(j, services), now)
                conn.execute(INSERT_TICKET, rows)
                command.upgrade(config, "head")
                version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                assert version == head_revision()
                params = {"jurisdictions": [j]}
                found = judge(
                    conn.execute(PARITY_SQL, params).all(),
                    int(conn.execute(STRAY_SQL, params).scalar_one()),
                )
                assert found.tickets == len(rows)
                assert not found.problems, "\n".join(found.problems)
                assert found.states == {"ok", "warning", "breached", None}
                # And the triggers are in place after the upgrade.
                conn.execute(INSERT_TICKET, ticket_rows(Places(j, services, start=3), now)[:5])
                conn.execute(
                    text("UPDATE ticket SET status = 'closed' WHERE jurisdiction_id = :j"),
                    {"j": j},
                )
                conn.execute(
                    text("UPDATE service SET public_location_snap_m = 30 WHERE id = :s"),
                    {"s": services[0]},
                )
                found = judge(
                    conn.execute(PARITY_SQL, params).all(),
                    int(conn.execute(STRAY_SQL, params).scalar_one()),
                )
                assert found.tickets == len(rows) + 5
                assert not found.problems, "\n".join(found.problems)
            finally:
                transaction.rollback()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass('ticket_map')")).scalar() is not None
    finally:
        engine.dispose()
