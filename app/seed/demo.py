"""The demo jurisdiction: a synthetic city with districts, services, crews, users and tickets.

The city is the city file ``app/seed/city/demo.yaml``, applied as ``kerbside city apply``
would; users and sample reports come on top. Idempotent: each part is created once and kept on
later runs. Demo credentials are documented
in the README; they are refused in production (``kerbside serve`` never seeds there by itself).
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi_users.password import PasswordHelper
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.auth.models import Role, User
from app.cities.service import apply, load
from app.crews.models import Crew
from app.db import driver_of
from app.jurisdictions.models import Jurisdiction, Service
from app.maps.service import refresh_grid
from app.seed.progress import Progress
from app.settings import to_sqlalchemy_url
from geo.city import make_city

DEMO_SLUG = "demo"
DEMO_CITY_FILE = Path(__file__).parent / "city" / "demo.yaml"
DEMO_USERS = (
    # email, password, role, full name, crew name
    ("admin@demo.kerbside.dev", "demo-admin-password", Role.admin, "Ada Admin", None),
    ("staff@demo.kerbside.dev", "demo-staff-password", Role.staff, "Sam Staff", None),
    ("crew@demo.kerbside.dev", "demo-crew-password", Role.crew, "Cal Crew", "North crew"),
    ("citizen@demo.kerbside.dev", "demo-citizen-password", Role.citizen, "Cit Izen", None),
)

SAMPLE_TEXT = {
    "pothole": [
        "Deep pothole in the cycle lane",
        "Road surface breaking up",
        "Pothole by the bus stop",
    ],
    "fly_tipping": [
        "Mattress dumped on the verge",
        "Bags of rubbish in the alley",
        "Old sofa left on the pavement",
    ],
    "streetlight": ["Street lamp out", "Light flickering all night", "Lamp on during the day"],
}


async def seed_demo(
    database_url: str, *, reports: int = 400, progress: bool = True
) -> dict[str, Any]:
    engine = create_async_engine(to_sqlalchemy_url(database_url))
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            # One seeder at a time (two `make run` started together).
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('kerbside-seed'))"))
            summary = await _seed(session, reports=reports, progress=progress)
        # The map's low-zoom clusters come from a grid: build it now, so the first map
        # after the seed shows the demo (otherwise it waits for the worker's next minute).
        async with AsyncSession(engine) as session, session.begin():
            await refresh_grid(await driver_of(session))
        return summary
    finally:
        await engine.dispose()


def _say(line: str) -> None:
    print(f"kerbside: {line}", file=sys.stderr, flush=True)


async def _seed(session: AsyncSession, *, reports: int, progress: bool) -> dict[str, Any]:
    city = make_city()
    summary: dict[str, Any] = {"jurisdiction": DEMO_SLUG}
    # The city itself (boundary, districts, services, crews, templates) is a city file,
    # applied through the same path as `kerbside city apply`.
    declared = load(DEMO_CITY_FILE.read_bytes(), name=str(DEMO_CITY_FILE))
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
    created = 0
    if existing == 0 and reports > 0:
        created = await _sample_tickets(session, services, city, reports, progress)
    summary["sample_reports_filed"] = reports if existing == 0 else 0
    summary["tickets_created"] = created
    return summary


async def _sample_tickets(
    session: AsyncSession,
    services: list[Service],
    city: Any,
    count: int,
    progress: bool,
) -> int:
    """File ``count`` demo reports; returns how many tickets they made."""
    from app.jurisdictions.catalog import Catalog
    from app.seed.sample import submit_sample_report

    rng = random.Random(2026)
    now = datetime.now(UTC)
    catalog = Catalog()
    shown = Progress("kerbside: demo reports", count) if progress else None
    points = city.random_points(count, seed=11)
    # Oldest first, so clustering windows see reports in the order they happened.
    times = sorted(now - timedelta(minutes=rng.randint(10, 90 * 24 * 60)) for _ in points)
    for i, ((lon, lat), reported_at) in enumerate(zip(points, times, strict=True), start=1):
        service = rng.choice(services)
        await submit_sample_report(
            session,
            catalog,
            service_code=service.code,
            lon=lon,
            lat=lat,
            description=rng.choice(SAMPLE_TEXT.get(service.code, ["Problem reported"])),
            reported_at=reported_at,
            now=now,
            rng=rng,
        )
        if shown and (i % 50 == 0 or i == count):
            shown.step(i)
    tickets = await session.execute(text("SELECT count(*) FROM ticket"))
    return int(tickets.scalar_one())
