"""The service-level rule in one place: the SQL function ``kerbside_sla_state`` (migration
0007) against its Python mirror ``sla_state_of`` on every status and every order of the
deadlines around the clock; the planner inlines it; and a ticket crossing its warning times
and deadlines shows the function's state everywhere: the ``ticket_map`` row its trigger
keeps (read as a map page does), the work orders (at the clock of ``app.core.clock``, which
the test moves), their ``sla_state`` filter, and the Python mirror."""

# ruff: noqa: S608  (statements join code constants; values are bound)
from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import clock
from app.maps.queries import PUBLIC, Filters, features_page_sql, filter_params, map_page_sql
from app.settings import Settings
from app.tickets.models import DISMISSED_STATUSES, DONE_STATUSES, TicketStatus
from app.tickets.sla import SLA_COLUMNS, sla_state_of, sla_state_sql
from app.workorders.repository import search_statement
from app.workorders.schemas import Scope, Search
from geo.bbox import BBox
from tests.factories import make_ticket
from tests.workorders_support import inside, make_world

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)
TIMES = ("acknowledge_warn_at", "acknowledge_due_at", "resolve_warn_at", "resolve_due_at")

# -- the mirror equals the function ---------------------------------------------------------------


def grid() -> list[dict[str, Any]]:
    """Every status; acknowledged or not; each deadline, warning time and the fix absent or at
    one of three moments; the clock at each of those moments. Every order of the times around
    the clock, the equal ones included (the edges of ``>=``)."""
    moments = (T0, T0 + HOUR, T0 + 2 * HOUR)
    cases = []
    for status, acknowledged_at, times, fixed_at, at in itertools.product(
        [s.value for s in TicketStatus],
        (None, T0 - HOUR),
        itertools.product((None, *moments), repeat=len(TIMES)),
        (None, *moments),
        moments,
    ):
        cases.append(
            {
                "status": status,
                "acknowledged_at": acknowledged_at,
                **dict(zip(TIMES, times, strict=True)),
                "fixed_at": fixed_at,
                "at": at,
            }
        )
    return cases


def mirror(case: dict[str, Any]) -> str | None:
    state = sla_state_of(
        case["at"],
        case["status"],
        acknowledged_at=case["acknowledged_at"],
        acknowledge_due_at=case["acknowledge_due_at"],
        acknowledge_warn_at=case["acknowledge_warn_at"],
        resolve_due_at=case["resolve_due_at"],
        resolve_warn_at=case["resolve_warn_at"],
        fixed_at=case["fixed_at"],
    )
    return None if state is None else state.value


def phase(case: dict[str, Any]) -> str:
    if case["status"] in DISMISSED_STATUSES:
        return "dismissed"
    if case["status"] in DONE_STATUSES:
        return "done"
    if case["acknowledged_at"] is None and case["acknowledge_due_at"] is not None:
        return "acknowledge"
    return "resolve"


# One row per case, its number first: the function on the ticket's columns, as every caller
# renders it (sla_state_sql over a relation with the ticket's column names).
GRID_SQL = (
    f"SELECT g.n, {sla_state_sql('g', 'g.at')} FROM unnest("
    "CAST(:status AS text[]), CAST(:acknowledged_at AS timestamptz[]),"
    " CAST(:acknowledge_warn_at AS timestamptz[]), CAST(:acknowledge_due_at AS timestamptz[]),"
    " CAST(:resolve_warn_at AS timestamptz[]), CAST(:resolve_due_at AS timestamptz[]),"
    " CAST(:fixed_at AS timestamptz[]), CAST(:at AS timestamptz[]))"
    f" WITH ORDINALITY AS g({', '.join(SLA_COLUMNS)}, at, n) ORDER BY g.n"
)


async def test_python_mirror_equals_the_sql_function(db: AsyncSession) -> None:
    cases = grid()
    columns = (*SLA_COLUMNS, "at")
    params = {c: [case[c] for case in cases] for c in columns}
    rows = (await db.execute(text(GRID_SQL), params)).all()
    assert [n for n, _ in rows] == list(range(1, len(cases) + 1))
    differ = [
        (case, state) for case, (_, state) in zip(cases, rows, strict=True) if state != mirror(case)
    ]
    assert not differ, f"{len(differ)} of {len(cases)} differ, e.g. {differ[:3]}"
    # The grid reaches every state of every phase, so a change to any branch shows.
    covered: dict[str, set[str | None]] = {}
    for case, (_, state) in zip(cases, rows, strict=True):
        covered.setdefault(phase(case), set()).add(state)
    assert covered == {
        "dismissed": {None},
        "done": {None, "ok", "breached"},
        "acknowledge": {"ok", "warning", "breached"},
        "resolve": {None, "ok", "warning", "breached"},
    }


async def test_the_functions_are_inlined_into_the_statements(db: AsyncSession) -> None:
    """``LANGUAGE sql``, one expression, ``IMMUTABLE``: the planner writes the rule into the
    plan, so the map and work-order plans are those of the expression itself (a function
    call would also hide the expression from the planner's estimates)."""
    box = BBox(-2.6, 51.44, -2.58, 51.46)
    filters = Filters(bbox=box)
    statements = {
        "map page (ticket_map)": (
            map_page_sql(filters.key(), False),
            filter_params(filters, PUBLIC, 0.0) | {"limit": 10},
        ),
        "map page (per request)": (
            features_page_sql(PUBLIC, ("reference", "sla_state"), filters.key(), True, False),
            filter_params(filters, PUBLIC, 0.0) | {"limit": 10},
        ),
        "work orders with the sla_state filter": search_statement(
            Scope(1, None), Search(sla_states=("warning",)), now=T0
        ),
    }
    for name, (sql, params) in statements.items():
        plan = (await db.execute(text(f"EXPLAIN (VERBOSE, COSTS OFF) {sql}"), params)).scalars()
        written = "\n".join(plan)
        assert "'breached'::text" in written, name  # the rule is in the plan ...
        assert "kerbside_sla" not in written, f"{name}: not inlined:\n{written}"  # ... inlined


# -- a ticket crossing its warning times and deadlines --------------------------------------------

D01 = inside("D01")  # North's area: the crew sees its tickets


async def test_a_ticket_crossing_its_deadlines_reads_the_same_everywhere(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = await make_world(db, settings)
    ticket = await make_ticket(db, world.city, world.pothole, *D01, reported_at=T0)
    ref = ticket.reference
    # Deadlines of its own, written by UPDATE: the ticket_map trigger derives its row again.
    await db.execute(
        text(
            "UPDATE ticket SET acknowledge_warn_at = :aw, acknowledge_due_at = :ad,"
            " resolve_warn_at = :rw, resolve_due_at = :rd WHERE id = :id"
        ),
        {"aw": T0 + HOUR, "ad": T0 + 2 * HOUR, "rw": T0 + 8 * HOUR, "rd": T0 + 10 * HOUR,
         "id": ticket.id},
    )  # fmt: skip

    lon, lat = D01
    box = BBox(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)
    filters = Filters(bbox=box)
    map_sql = map_page_sql(filters.key(), False)
    assert map_sql.count("now()") == 1  # the read model's only clock: moved to :at below
    map_at = text(map_sql.replace("now()", "CAST(:at AS timestamptz)"))
    map_params = filter_params(filters, PUBLIC, 0.0) | {"limit": 1000}
    function_at = text(
        f"SELECT {sla_state_sql('t', 'CAST(:at AS timestamptz)')}, "
        + ", ".join(f"t.{c}" for c in SLA_COLUMNS)
        + " FROM ticket t WHERE t.id = :id"
    )
    seen: list[tuple[str, str | None]] = []

    async def states_at(at: datetime) -> None:
        monkeypatch.setattr(clock, "now", lambda: at)
        row = (await db.execute(function_at, {"at": at, "id": ticket.id})).one()
        function = row[0]
        python = sla_state_of(at, **dict(zip(SLA_COLUMNS, row[1:], strict=True)))
        page = (await db.execute(map_at, map_params | {"at": at})).one()
        features = {f["id"]: f for f in json.loads(f"[{page.features}]")}
        map_state = features[ref]["properties"]["sla_state"]
        response = await client.get(f"/v1/workorders/{ref}", headers=world["crew"])
        assert response.status_code == 200, response.text
        work_order = response.json()["sla_state"]
        where = f"{at - T0} after the report"
        assert (None if python is None else python.value) == function, where
        assert map_state == function, f"{where}: ticket_map"
        assert work_order == function, f"{where}: work order"
        if row.status not in DONE_STATUSES:  # work-order searches list open tickets
            for state in ("ok", "warning", "breached"):
                listed = await client.get(
                    "/v1/workorders", params={"sla_state": state}, headers=world["crew"]
                )
                assert listed.status_code == 200, listed.text
                found = ref in [i["reference"] for i in listed.json()["items"]]
                assert found == (state == function), f"{where}: sla_state={state}"
        seen.append((row.status, function))

    # Measured against the acknowledge deadline, at and around its warning time and deadline.
    for hours, offset in [(0, 0), (1, -1), (1, 0), (2, -1), (2, 0), (3, 0)]:
        await states_at(T0 + hours * HOUR + offset * SECOND)
    # Acknowledged at +3 h: the resolve deadline runs (the trigger moves the map row to it).
    await db.execute(
        text("UPDATE ticket SET status = 'acknowledged', acknowledged_at = :at WHERE id = :id"),
        {"at": T0 + 3 * HOUR, "id": ticket.id},
    )
    for hours, offset in [(3, 0), (8, -1), (8, 0), (10, -1), (10, 0), (11, 0)]:
        await states_at(T0 + hours * HOUR + offset * SECOND)
    # Fixed late, then (corrected) in time: the outcome no longer follows the clock.
    for fixed_at in (T0 + 11 * HOUR, T0 + 9 * HOUR):
        await db.execute(
            text("UPDATE ticket SET status = 'fixed', fixed_at = :at WHERE id = :id"),
            {"at": fixed_at, "id": ticket.id},
        )
        for hours in (11, 1000):
            await states_at(T0 + hours * HOUR)

    assert seen == [
        ("open", "ok"),
        ("open", "ok"),
        ("open", "warning"),
        ("open", "warning"),
        ("open", "breached"),
        ("open", "breached"),
        ("acknowledged", "ok"),
        ("acknowledged", "ok"),
        ("acknowledged", "warning"),
        ("acknowledged", "warning"),
        ("acknowledged", "breached"),
        ("acknowledged", "breached"),
        ("fixed", "breached"),
        ("fixed", "breached"),
        ("fixed", "ok"),
        ("fixed", "ok"),
    ]
    # And at the database's own clock (long after T0), the routes that read it agree.
    bbox = ",".join(f"{v:.6f}" for v in box.as_tuple())
    page = (await client.get("/v1/tickets.geojson", params={"bbox": bbox})).json()
    assert [f["properties"]["sla_state"] for f in page["features"] if f["id"] == ref] == ["ok"]
    assert (await client.get(f"/v1/tickets/{ref}")).json()["sla_state"] == "ok"
