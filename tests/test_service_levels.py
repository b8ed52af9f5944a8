"""Service levels: deadlines in clock and business time, ``sla_state`` at its 80 % and 100 %
edges (Python and SQL agree), and the sweep: each warning and breach recorded once,
breaches escalated to staff by e-mail."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.auth.principal import Principal
from app.core import clock
from app.core.jobs import SEND_MAIL
from app.jurisdictions.calendar import BusinessCalendar
from app.jurisdictions.models import Jurisdiction, Service
from app.mail import Mail, deliver
from app.settings import Settings
from app.tickets import service_levels, workflow
from app.tickets.models import TicketStatus
from app.tickets.sla import SlaState, deadline, sla_state, sla_state_sql
from geo.distance import offset_lonlat
from tests.factories import CITY, make_jurisdiction, make_service, make_user
from tests.mailbox import Inbox
from tests.test_workflow import bearer

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC (= London time in March)
WEEKDAYS = {d: [["08:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


# -- deadlines ----------------------------------------------------------------------------------


def test_clock_time_deadline_warns_at_80_percent() -> None:
    d = deadline(T0, timedelta(hours=10))
    assert d is not None
    assert d.warn_at == T0 + timedelta(hours=8)
    assert d.due_at == T0 + timedelta(hours=10)
    assert deadline(T0, None) is None


def test_business_time_skips_nights_weekends_and_holidays() -> None:
    calendar = BusinessCalendar.parse("Europe/London", WEEKDAYS, [date(2026, 3, 3)])
    # Monday 09:00 + 10 working hours: 9 h on Monday (to 18:00), Tuesday is a holiday,
    # 1 h on Wednesday: 09:00 local.
    assert calendar.add(T0, timedelta(hours=10)) == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    # Friday 17:00 + 2 h: 1 h on Friday, then Monday 08:00 + 1 h.
    friday = datetime(2026, 3, 6, 17, 0, tzinfo=UTC)
    assert calendar.add(friday, timedelta(hours=2)) == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    # Reported on Saturday: the clock starts on Monday morning.
    saturday = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    assert calendar.add(saturday, timedelta(hours=1)) == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    d = deadline(T0, timedelta(hours=10), calendar)
    assert d is not None
    assert d.warn_at == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)  # 8 working hours


def test_business_calendar_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="ends before"):
        BusinessCalendar.parse("UTC", {"mon": [["18:00", "08:00"]]}, [])
    with pytest.raises(ValueError, match="no working time"):
        BusinessCalendar.parse("UTC", {}, [])


# -- sla_state at its edges -----------------------------------------------------------------------


def ticket(**kw: Any) -> SimpleNamespace:
    d_ack = deadline(T0, timedelta(hours=10))
    d_res = deadline(T0, timedelta(hours=100))
    assert d_ack is not None
    assert d_res is not None
    values: dict[str, Any] = {
        "status": "open",
        "acknowledged_at": None,
        "fixed_at": None,
        "acknowledge_warn_at": d_ack.warn_at,
        "acknowledge_due_at": d_ack.due_at,
        "resolve_warn_at": d_res.warn_at,
        "resolve_due_at": d_res.due_at,
    }
    values.update(kw)
    return SimpleNamespace(**values)


EDGES = [
    # (ticket changes, hours after T0, expected)
    ({}, 7.99, SlaState.ok),
    ({}, 8.0, SlaState.warning),  # 80 % of the acknowledge time
    ({}, 9.99, SlaState.warning),
    ({}, 10.0, SlaState.breached),  # 100 %
    ({"acknowledged_at": T0}, 10.0, SlaState.ok),  # now measured against resolve
    ({"acknowledged_at": T0}, 79.99, SlaState.ok),
    ({"acknowledged_at": T0}, 80.0, SlaState.warning),
    ({"acknowledged_at": T0}, 100.0, SlaState.breached),
    ({"status": "fixed", "fixed_at": T0 + timedelta(hours=99)}, 500, SlaState.ok),
    ({"status": "closed", "fixed_at": T0 + timedelta(hours=101)}, 500, SlaState.breached),
    ({"status": "rejected"}, 500, None),
    ({"acknowledge_due_at": None, "resolve_due_at": None}, 500, None),
]


@pytest.mark.parametrize(("changes", "hours", "expected"), EDGES)
def test_sla_state_edges(changes: dict[str, Any], hours: float, expected: SlaState | None) -> None:
    assert sla_state(ticket(**changes), T0 + timedelta(hours=hours)) == expected


async def test_sql_state_agrees_with_python_at_every_edge(db: AsyncSession) -> None:
    for changes, hours, expected in EDGES:
        t = ticket(**changes)
        got = (
            await db.execute(
                text(
                    "SELECT "  # noqa: S608 (test of an SQL expression from code)
                    + sla_state_sql("t", "CAST(:now AS timestamptz)")
                    + " FROM (SELECT CAST(:status AS text) AS status,"
                    " CAST(:acknowledged_at AS timestamptz) AS acknowledged_at,"
                    " CAST(:fixed_at AS timestamptz) AS fixed_at,"
                    " CAST(:acknowledge_warn_at AS timestamptz) AS acknowledge_warn_at,"
                    " CAST(:acknowledge_due_at AS timestamptz) AS acknowledge_due_at,"
                    " CAST(:resolve_warn_at AS timestamptz) AS resolve_warn_at,"
                    " CAST(:resolve_due_at AS timestamptz) AS resolve_due_at) AS t"
                ),
                {**vars(t), "now": T0 + timedelta(hours=hours)},
            )
        ).scalar_one()
        assert got == (expected.value if expected else None), (changes, hours)


# -- tickets carry their state --------------------------------------------------------------------


@pytest.fixture
async def city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="slaville", timezone="Europe/London")


@pytest.fixture
async def pothole(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(
        db,
        city,
        "pothole",
        acknowledge_within=timedelta(hours=10),
        resolve_within=timedelta(hours=100),
    )


@pytest.fixture
async def trusted(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, city: Jurisdiction
) -> httpx.AsyncClient:
    """The client, signed in as staff: staff may file reports with old timestamps."""
    staff = await make_user(db, role=Role.staff, jurisdiction=city)
    client.headers.update(await bearer(settings, staff))
    return client


async def file(client: httpx.AsyncClient, reported_at: datetime, east_m: float = 0) -> str:
    lon, lat = offset_lonlat(*CITY.center, east_m, 0)
    response = await client.post(
        "/v1/reports",
        json={
            "service_code": "pothole",
            "location": {"lon": lon, "lat": lat},
            "reported_at": reported_at.isoformat(),
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["ticket"]["sla_state"] is not None
    return str(response.json()["ticket"]["reference"])


@pytest.mark.usefixtures("pothole")
async def test_ticket_representations_carry_sla_state(trusted: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    fresh = await file(trusted, now - timedelta(minutes=1))
    late = await file(trusted, now - timedelta(hours=9), east_m=500)
    overdue = await file(trusted, now - timedelta(hours=11), east_m=1000)
    states = {
        ref: (await trusted.get(f"/v1/tickets/{ref}")).json()["sla_state"]
        for ref in (fresh, late, overdue)
    }
    assert states == {fresh: "ok", late: "warning", overdue: "breached"}
    detail = (await trusted.get(f"/v1/tickets/{fresh}")).json()
    assert detail["expected_by"] == detail["resolve_due_at"]


async def test_business_hours_service_sets_deadlines_in_working_time(
    trusted: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction
) -> None:
    await db.execute(
        text("UPDATE jurisdiction SET business_hours = :h, holidays = :d WHERE id = :id"),
        {"h": __import__("json").dumps(WEEKDAYS), "d": [date(2026, 3, 3)], "id": city.id},
    )
    await make_service(
        db, city, "pothole", acknowledge_within=timedelta(hours=10), business_hours=True
    )
    trusted._transport.app.state.catalog.invalidate()  # type: ignore[attr-defined]
    ref = await file(trusted, T0)
    due = (await trusted.get(f"/v1/tickets/{ref}")).json()["acknowledge_due_at"]
    assert datetime.fromisoformat(due) == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)


# -- the sweep ------------------------------------------------------------------------------------


async def events(db: AsyncSession, reference: str) -> list[tuple[str, str]]:
    rows = await db.execute(
        text(
            "SELECT e.kind, e.data->>'phase' FROM ticket_event e JOIN ticket t"
            " ON t.id = e.ticket_id WHERE t.reference = :r AND e.kind LIKE 'sla_%' ORDER BY e.id"
        ),
        {"r": reference},
    )
    return [(r[0], r[1]) for r in rows]


@pytest.mark.usefixtures("pothole")
async def test_sweep_records_each_level_once_and_escalates(
    trusted: httpx.AsyncClient, db: AsyncSession
) -> None:
    ref = await file(trusted, T0)
    priority = lambda: db.execute(  # noqa: E731
        text("SELECT priority, sla_flags FROM ticket WHERE reference = :r"), {"r": ref}
    )
    before = (await priority()).one().priority

    result = await service_levels.sweep(db, now=T0 + timedelta(hours=7.9))
    assert (result.warnings, result.breaches) == (0, 0)
    await service_levels.sweep(db, now=T0 + timedelta(hours=8))
    assert await events(db, ref) == [("sla_warning", "acknowledge")]
    await service_levels.sweep(db, now=T0 + timedelta(hours=9))  # nothing new
    result = await service_levels.sweep(db, now=T0 + timedelta(hours=10))
    assert result.breaches == 1
    assert ref in result.escalated[next(iter(result.escalated))][0]
    assert await events(db, ref) == [
        ("sla_warning", "acknowledge"),
        ("sla_breached", "acknowledge"),
    ]
    escalated = (await priority()).one()
    assert escalated.priority == max(1, before - 1)
    # Long after: the resolve breach comes alone (its warning is implied), once.
    await service_levels.sweep(db, now=T0 + timedelta(hours=200))
    await service_levels.sweep(db, now=T0 + timedelta(hours=300))
    assert await events(db, ref) == [
        ("sla_warning", "acknowledge"),
        ("sla_breached", "acknowledge"),
        ("sla_breached", "resolve"),
    ]
    done = (
        await db.execute(text("SELECT sla_next_at FROM ticket WHERE reference = :r"), {"r": ref})
    ).scalar_one()
    assert done is None  # nothing left to watch


@pytest.mark.usefixtures("pothole")
async def test_acknowledged_in_time_skips_the_acknowledge_levels(
    trusted: httpx.AsyncClient, db: AsyncSession
) -> None:
    ref = await file(trusted, T0)
    await db.execute(
        text(
            "UPDATE ticket SET status = 'acknowledged', acknowledged_at = :at WHERE reference = :r"
        ),
        {"at": T0 + timedelta(hours=1), "r": ref},
    )
    await service_levels.sweep(db, now=T0 + timedelta(hours=85))
    assert await events(db, ref) == [("sla_warning", "resolve")]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.mark.usefixtures("pothole")
async def test_breaches_are_emailed_to_the_jurisdictions_staff(
    trusted: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    city: Jurisdiction,
    inbox: tuple[Inbox, int],
) -> None:
    handler, port = inbox
    staff = await make_user(db, role=Role.staff, jurisdiction=city, email="duty@city.example")
    await make_user(db, role=Role.staff, email="other@elsewhere.example")
    first = await file(trusted, T0)
    second = await file(trusted, T0, east_m=800)
    result = await service_levels.sweep(db, now=T0 + timedelta(hours=10))
    mail_settings = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False}
    )
    # The mails are jobs in the sweep's transaction (tests/test_jobs.py runs the worker on
    # them after a commit); here each queued mail is sent as its job would send it.
    queued = await service_levels.escalate(db, result)
    jobs = (
        await db.execute(
            text("SELECT args FROM procrastinate_jobs WHERE task_name = :t ORDER BY id"),
            {"t": SEND_MAIL},
        )
    ).scalars()
    sent = [await deliver(mail_settings, Mail(**args)) for args in jobs]
    recipients = [m["To"] for m in handler.messages]
    assert queued == len(sent) == len(recipients) == 2  # this city's staff: duty officer, filer
    assert staff.email in recipients
    assert "other@elsewhere.example" not in recipients
    body = handler.messages[0].get_body(preferencelist=("plain",))
    assert body is not None
    content = body.get_content()
    assert first in content
    assert second in content


@pytest.mark.usefixtures("pothole")
async def test_reopen_starts_a_fresh_resolve_deadline(
    trusted: httpx.AsyncClient, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = await file(trusted, T0)
    await service_levels.sweep(db, now=T0 + timedelta(hours=200))
    await db.execute(
        text("UPDATE ticket SET status = 'fixed', fixed_at = :at WHERE reference = :r"),
        {"at": T0 + timedelta(hours=201), "r": ref},
    )
    later = T0 + timedelta(hours=202)
    monkeypatch.setattr(clock, "now", lambda: later)
    admin = Principal.of_user(await make_user(db, role=Role.admin))
    ticket_id = await workflow.ticket_id(db, ref)
    await workflow.change_status(db, ticket_id, TicketStatus.reopened, actor=admin)
    row = (
        await db.execute(
            text(
                "SELECT resolve_due_at, sla_flags, sla_next_at, reopened_count FROM ticket"
                " WHERE reference = :r"
            ),
            {"r": ref},
        )
    ).one()
    assert row.resolve_due_at == later + timedelta(hours=100)
    assert row.sla_next_at == later + timedelta(hours=80)
    assert row.reopened_count == 1
    await service_levels.sweep(db, now=later + timedelta(hours=80))
    assert (await events(db, ref))[-1] == ("sla_warning", "resolve")
