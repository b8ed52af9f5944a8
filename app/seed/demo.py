"""The demo jurisdiction: a synthetic city with districts, services, crews, users and tickets.

The city is the city file ``app/seed/city/demo.yaml``, applied as ``kerbside city apply``
would; users come on top, then three months of history: sample reports that cluster into
tickets, and what staff, crews, neighbours and the worker did about them, each dated when it
happened (``app.seed.history`` plans it, ``app.seed.sample`` replays it through the real
calls). Idempotent: each part is created once and kept on later runs; the history is filed
only while the demo has no report. Demo credentials are documented in the README; they are
refused in production (``kerbside serve`` never seeds there by itself).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi_users.password import PasswordHelper
from shapely import Point
from shapely.prepared import prep
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.auth.models import Role, User
from app.auth.principal import Principal
from app.cities.service import apply, load
from app.core import clock
from app.crews.models import Crew
from app.db import driver_of
from app.jurisdictions.models import Jurisdiction, Service
from app.maps.service import refresh_grid
from app.seed.history import Kind, plan
from app.seed.progress import Progress
from app.seed.sample import Cast, replay
from app.settings import to_sqlalchemy_url
from app.social.demo import replay_meta
from geo.city import make_city

DEMO_SLUG = "demo"
DEMO_CITY_FILE = Path(__file__).parent / "city" / "demo.yaml"
# Where the city file's demo platforms are (app/social/demo.py, served by the API itself).
DEMO_BASE_URL = b"http://127.0.0.1:8000"
DEMO_USERS = (
    # email, password, role, full name, crew name
    ("admin@demo.kerbside.dev", "demo-admin-password", Role.admin, "Ada Admin", None),
    ("staff@demo.kerbside.dev", "demo-staff-password", Role.staff, "Sam Staff", None),
    ("crew@demo.kerbside.dev", "demo-crew-password", Role.crew, "Cal Crew", "North crew"),
    ("citizen@demo.kerbside.dev", "demo-citizen-password", Role.citizen, "Cit Izen", None),
)


async def seed_demo(
    database_url: str,
    *,
    reports: int = 400,
    progress: bool = True,
    public_base_url: str | None = None,
) -> dict[str, Any]:
    """The demo city and its history; ``public_base_url``: where this server answers, when
    not the city file's ``http://127.0.0.1:8000`` (its demo platforms live there)."""
    engine = create_async_engine(to_sqlalchemy_url(database_url))
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            # One seeder at a time (two `make run` started together).
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('kerbside-seed'))"))
            summary = await _seed(
                session, reports=reports, progress=progress, public_base_url=public_base_url
            )
        # Facebook and WhatsApp push: their sample deliveries are kept now, as their webhook
        # would keep them, and the worker files them (app/social/demo.py).
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            summary["social_replayed"] = await replay_meta(session)
        if "history" in summary:
            # After the history has committed: a contact made before the commit would be
            # sent the whole history (the event stream runs at commit and sees it).
            async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
                summary["citizen_follows"] = await _citizen_hears_back(session)
        # The map's low-zoom clusters come from a grid: build it now, so the first map
        # after the seed shows the demo (otherwise it waits for the worker's next minute).
        async with AsyncSession(engine) as session, session.begin():
            await refresh_grid(await driver_of(session))
        return summary
    finally:
        await engine.dispose()


def _say(line: str) -> None:
    print(f"kerbside: {line}", file=sys.stderr, flush=True)


async def _seed(
    session: AsyncSession, *, reports: int, progress: bool, public_base_url: str | None
) -> dict[str, Any]:
    city = make_city()
    summary: dict[str, Any] = {"jurisdiction": DEMO_SLUG}
    # The city itself (boundary, districts, services, crews, templates) is a city file,
    # applied through the same path as `kerbside city apply`.
    written = DEMO_CITY_FILE.read_bytes()
    if public_base_url:
        written = written.replace(DEMO_BASE_URL, public_base_url.rstrip("/").encode())
    declared = load(written, name=str(DEMO_CITY_FILE))
    outcome = await apply(
        session, declared, base_dir=DEMO_CITY_FILE.parent, say=_say if progress else None
    )
    summary["city_file"] = outcome.counts()
    jurisdiction = (
        await session.execute(select(Jurisdiction).where(Jurisdiction.slug == DEMO_SLUG))
    ).scalar_one()
    services = list(
        (
            await session.execute(
                select(Service)
                .where(Service.jurisdiction_id == jurisdiction.id, Service.active)
                .order_by(Service.code)
            )
        ).scalars()
    )
    summary["areas"] = (
        await session.execute(
            text("SELECT count(*) FROM area WHERE jurisdiction_id = :j"), {"j": jurisdiction.id}
        )
    ).scalar_one()
    summary["services"] = [s.code for s in services]
    crews = {
        c.name: c
        for c in (
            await session.execute(select(Crew).where(Crew.jurisdiction_id == jurisdiction.id))
        ).scalars()
    }
    summary["crews"] = sorted(crews)

    helper = PasswordHelper()
    for email, password, role, full_name, crew_name in DEMO_USERS:
        exists = (
            await session.execute(text("SELECT 1 FROM app_user WHERE email = :e"), {"e": email})
        ).first()
        if exists:
            continue
        session.add(
            User(
                email=email,
                hashed_password=helper.hash(password),
                is_active=True,
                is_verified=True,
                is_superuser=role == Role.admin,
                role=role.value,
                full_name=full_name,
                jurisdiction_id=jurisdiction.id,
                crew_id=crews[crew_name].id if crew_name else None,
            )
        )
    await session.flush()
    summary["users"] = [u[0] for u in DEMO_USERS]

    existing = (
        await session.execute(
            text("SELECT count(*) FROM report WHERE jurisdiction_id = :j"), {"j": jurisdiction.id}
        )
    ).scalar_one()
    summary["sample_reports_filed"] = 0
    summary["tickets_created"] = 0
    if existing == 0 and reports > 0:
        cast = await _cast(session, jurisdiction.id, crews)
        done = await _sample_history(
            session, jurisdiction.id, services, city, cast, reports, progress
        )
        summary["sample_reports_filed"] = reports
        summary["tickets_created"] = (
            await session.execute(
                text("SELECT count(*) FROM ticket WHERE jurisdiction_id = :j"),
                {"j": jurisdiction.id},
            )
        ).scalar_one()
        summary["history"] = dict(sorted(done.items()))
    return summary


async def _citizen_hears_back(session: AsyncSession) -> list[str]:
    """The demo citizen follows three open tickets with their account's email address, so a
    status change made in the demo reaches them (through the local sink: GET
    /v1/demo/outbox shows what they received)."""
    from app.contacts import service as contacts
    from app.contacts.models import ContactKind
    from app.tickets.schemas import SupportIn
    from app.tickets.service import support_or_follow

    citizen = (
        await session.execute(
            select(User).where(User.__table__.c.email == "citizen@demo.kerbside.dev")
        )
    ).scalar_one()
    await contacts.remember(
        session, contacts.ContactSpec(ContactKind.email, citizen.email), user_id=citizen.id
    )
    references = list(
        (
            await session.execute(
                text(
                    "SELECT t.reference FROM ticket t JOIN jurisdiction j"
                    " ON j.id = t.jurisdiction_id WHERE j.slug = :slug AND t.status = 'open'"
                    " ORDER BY t.id DESC LIMIT 3"
                ),
                {"slug": DEMO_SLUG},
            )
        ).scalars()
    )
    for reference in references:
        await support_or_follow(
            session,
            reference,
            SupportIn(),
            user_id=citizen.id,
            actor_label=f"user:{citizen.id}",
            support=False,
        )
    return references


async def _cast(session: AsyncSession, jurisdiction_id: int, crews: dict[str, Crew]) -> Cast:
    """The demo users who act in the history; a crew without a demo user acts as itself."""
    emails = [email for email, *_ in DEMO_USERS]
    users = {
        u.email: u
        for u in (
            await session.execute(select(User).where(User.__table__.c.email.in_(emails)))
        ).scalars()
    }
    members = {u.crew_id: Principal.of_user(u) for u in users.values() if u.crew_id}
    return Cast(
        staff=Principal.of_user(users[DEMO_USERS[1][0]]),
        crews={
            crew.id: members.get(crew.id)
            or Principal(
                kind="user",
                role=Role.crew,
                label="demo-seed",
                name=crew.name,
                jurisdiction_id=jurisdiction_id,
                crew_id=crew.id,
            )
            for crew in crews.values()
        },
        citizen=users[DEMO_USERS[3][0]].id,
    )


async def _sample_history(
    session: AsyncSession,
    jurisdiction_id: int,
    services: list[Service],
    city: Any,
    cast: Cast,
    count: int,
    progress: bool,
) -> Counter[str]:
    """Plan the demo's last three months and replay them: ``count`` reports."""
    now = clock.now()
    kinds = [Kind(s.code, s.duplicate_window, s.reopen_within, s.resolve_within) for s in services]
    boundary = prep(city.boundary)
    problems = plan(
        count,
        kinds,
        city.random_points(count, seed=11),
        lambda p: bool(boundary.contains(Point(p))),
        now=now,
    )
    shown = Progress("kerbside: demo reports", count) if progress else None
    return await replay(
        session, problems, jurisdiction_id=jurisdiction_id, cast=cast, now=now, progress=shown
    )
