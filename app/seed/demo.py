"""The demo jurisdiction: a synthetic city with districts, services, crews, users and tickets.

Idempotent: each part is created once and kept on later runs. Demo credentials are documented
in the README; they are refused in production (``kerbside serve`` never seeds there by itself).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi_users.password import PasswordHelper
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.auth.models import Role, User
from app.crews.models import AssignmentRule, Crew, crew_area
from app.jurisdictions.models import Area, Jurisdiction, Service
from app.seed.progress import Progress
from app.settings import to_sqlalchemy_url
from geo.city import make_city

DEMO_SLUG = "demo"
DEMO_USERS = (
    # email, password, role, full name, crew name
    ("admin@demo.kerbside.dev", "demo-admin-password", Role.admin, "Ada Admin", None),
    ("staff@demo.kerbside.dev", "demo-staff-password", Role.staff, "Sam Staff", None),
    ("crew@demo.kerbside.dev", "demo-crew-password", Role.crew, "Cal Crew", "North crew"),
    ("citizen@demo.kerbside.dev", "demo-citizen-password", Role.citizen, "Cit Izen", None),
)

DEMO_SERVICES: tuple[dict[str, Any], ...] = (
    {
        "code": "pothole",
        "names": {"en": "Pothole", "es": "Bache", "fr": "Nid-de-poule"},
        "descriptions": {"en": "A hole or sunken patch in a road or cycle lane"},
        "group": "Roads",
        "keywords": {
            "en": ["pothole", "hole in the road", "road damage", "sunken road"],
            "es": ["bache", "hoyo"],
        },
        "duplicate_radius_m": 30.0,
        "duplicate_window": timedelta(days=60),
        "acknowledge_within": timedelta(days=2),
        "resolve_within": timedelta(days=14),
        "hazard_level": 3,
        "attributes": [
            {
                "code": "depth_cm",
                "datatype": "number",
                "required": False,
                "variable": True,
                "order": 1,
                "description": "Roughly how deep is it, in centimetres?",
            }
        ],
    },
    {
        "code": "fly_tipping",
        "names": {"en": "Fly-tipping", "es": "Vertido ilegal", "fr": "Dépôt sauvage"},
        "descriptions": {"en": "Rubbish dumped on a street, verge or alley"},
        "group": "Waste",
        "keywords": {
            "en": ["fly-tipping", "flytipping", "dumped", "illegal dumping", "rubbish", "mattress"],
            "es": ["basura", "vertido"],
        },
        "duplicate_radius_m": 50.0,
        "duplicate_window": timedelta(days=14),
        "acknowledge_within": timedelta(days=1),
        "resolve_within": timedelta(days=5),
        "hazard_level": 2,
        "attributes": [],
    },
    {
        "code": "streetlight",
        "names": {"en": "Streetlight out", "es": "Farola apagada", "fr": "Lampadaire éteint"},
        "descriptions": {"en": "A street lamp that is out, flickering or on by day"},
        "group": "Lighting",
        "keywords": {
            "en": ["streetlight", "street light", "lamp post", "light out", "dark street"],
            "es": ["farola"],
        },
        "duplicate_radius_m": 25.0,
        "duplicate_window": timedelta(days=30),
        "acknowledge_within": timedelta(days=2),
        "resolve_within": timedelta(days=10),
        "hazard_level": 2,
        "attributes": [
            {
                "code": "pole_number",
                "datatype": "string",
                "required": False,
                "variable": True,
                "order": 1,
                "description": "The number on the lamp post, if you can see it",
            }
        ],
    },
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
        return summary
    finally:
        await engine.dispose()


async def _seed(session: AsyncSession, *, reports: int, progress: bool) -> dict[str, Any]:
    city = make_city()
    summary: dict[str, Any] = {"jurisdiction": DEMO_SLUG}
    jurisdiction = (
        await session.execute(select(Jurisdiction).where(Jurisdiction.slug == DEMO_SLUG))
    ).scalar_one_or_none()
    if jurisdiction is None:
        jurisdiction = Jurisdiction(
            slug=DEMO_SLUG,
            name="Kerbside Demo City",
            boundary=f"SRID=4326;{city.boundary.wkt}",
            timezone="Europe/London",
            languages=["en", "es", "fr"],
            reference_prefix="K",
            allow_anonymous=True,
        )
        session.add(jurisdiction)
        await session.flush()
        summary["created_jurisdiction"] = True
    areas = {
        a.code: a
        for a in (
            await session.execute(select(Area).where(Area.jurisdiction_id == jurisdiction.id))
        ).scalars()
    }
    for district in city.districts:
        if district.code not in areas:
            area = Area(
                jurisdiction_id=jurisdiction.id,
                kind="district",
                code=district.code,
                name=district.name,
                geom=f"SRID=4326;{district.geom.wkt}",
            )
            session.add(area)
            areas[district.code] = area
    await session.flush()
    summary["areas"] = len(areas)

    services = {
        s.code: s
        for s in (
            await session.execute(select(Service).where(Service.jurisdiction_id == jurisdiction.id))
        ).scalars()
    }
    for spec in DEMO_SERVICES:
        if spec["code"] not in services:
            service = Service(jurisdiction_id=jurisdiction.id, **spec)
            session.add(service)
            services[spec["code"]] = service
    await session.flush()
    summary["services"] = sorted(services)

    crews = {
        c.name: c
        for c in (
            await session.execute(select(Crew).where(Crew.jurisdiction_id == jurisdiction.id))
        ).scalars()
    }
    codes = sorted(areas)
    crew_plan = {
        "North crew": codes[: len(codes) // 2],
        "South crew": codes[len(codes) // 2 :],
    }
    for name, area_codes in crew_plan.items():
        if name not in crews:
            crew = Crew(jurisdiction_id=jurisdiction.id, name=name)
            session.add(crew)
            await session.flush()
            await session.execute(
                crew_area.insert(),
                [{"crew_id": crew.id, "area_id": areas[code].id} for code in area_codes],
            )
            # New tickets in the crew's districts go to it (app/tickets/workflow.py).
            session.add_all(
                AssignmentRule(
                    jurisdiction_id=jurisdiction.id, area_id=areas[code].id, crew_id=crew.id
                )
                for code in area_codes
            )
            crews[name] = crew
    summary["crews"] = sorted(crews)
    await _response_templates(session, jurisdiction.id)

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
        created = await _sample_tickets(session, list(services.values()), city, reports, progress)
    summary["sample_reports_filed"] = reports if existing == 0 else 0
    summary["tickets_created"] = created
    return summary


DEMO_TEMPLATES = {
    "acknowledged": "Thank you: we have {reference} ({service}) on our list.",
    "scheduled": "{reference}: a crew is booked to fix this {service} by {expected_date}.",
    "in_progress": "{reference}: our crew is working on it now.",
    "fixed": "{reference} is fixed. Not fixed? Reopen it within 14 days from the app.",
    "closed": "{reference} is closed. Thank you for reporting it.",
    "not_our_responsibility": "{reference}: this is not ours to fix; we have passed it on.",
}


async def _response_templates(session: AsyncSession, jurisdiction_id: int) -> None:
    await session.execute(
        text(
            "INSERT INTO response_template (jurisdiction_id, status, language, body)"
            " VALUES (:j, :status, 'en', :body) ON CONFLICT DO NOTHING"
        ),
        [{"j": jurisdiction_id, "status": k, "body": v} for k, v in DEMO_TEMPLATES.items()],
    )


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
