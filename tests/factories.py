"""Factories for domain objects: small, explicit, and built on the same synthetic city."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi_users.password import PasswordHelper
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role, User
from app.crews.models import Crew, crew_area
from app.jurisdictions.models import Area, Jurisdiction, Service
from app.tickets.models import Ticket
from geo.city import City, make_city

_counter = itertools.count(1)
_passwords = PasswordHelper()
CITY = make_city()
PASSWORD = "correct horse battery staple"
_hashes: dict[str, str] = {}


def password_hash(password: str = PASSWORD) -> str:
    """Argon2 takes ~0.25 s a hash on purpose; tests hash each distinct password once."""
    if password not in _hashes:
        _hashes[password] = _passwords.hash(password)
    return _hashes[password]


async def make_jurisdiction(
    db: AsyncSession, *, city: City = CITY, slug: str | None = None, **overrides: Any
) -> Jurisdiction:
    n = next(_counter)
    jurisdiction = Jurisdiction(
        slug=slug or f"city-{n}",
        name=f"Test City {n}",
        boundary=f"SRID=4326;{city.boundary.wkt}",
        **overrides,
    )
    db.add(jurisdiction)
    await db.flush()
    for district in city.districts:
        db.add(
            Area(
                jurisdiction_id=jurisdiction.id,
                code=district.code,
                name=district.name,
                geom=f"SRID=4326;{district.geom.wkt}",
            )
        )
    await db.flush()
    return jurisdiction


async def make_service(
    db: AsyncSession, jurisdiction: Jurisdiction, code: str = "pothole", **overrides: Any
) -> Service:
    values: dict[str, Any] = {
        "names": {"en": code.replace("_", " ").capitalize()},
        "duplicate_radius_m": 30.0,
        "duplicate_window": timedelta(days=30),
        "acknowledge_within": timedelta(days=2),
        "resolve_within": timedelta(days=14),
    }
    values.update(overrides)
    service = Service(jurisdiction_id=jurisdiction.id, code=code, **values)
    db.add(service)
    await db.flush()
    return service


async def make_crew(
    db: AsyncSession, jurisdiction: Jurisdiction, areas: list[Area] | None = None, **kw: Any
) -> Crew:
    crew = Crew(jurisdiction_id=jurisdiction.id, name=kw.pop("name", f"Crew {next(_counter)}"))
    db.add(crew)
    await db.flush()
    if areas:
        await db.execute(crew_area.insert(), [{"crew_id": crew.id, "area_id": a.id} for a in areas])
    return crew


async def make_user(
    db: AsyncSession,
    *,
    role: Role = Role.citizen,
    jurisdiction: Jurisdiction | None = None,
    crew: Crew | None = None,
    email: str | None = None,
    password: str = PASSWORD,
    **overrides: Any,
) -> User:
    user = User(
        email=email or f"user{next(_counter)}@example.org",
        hashed_password=password_hash(password),
        is_active=True,
        is_verified=True,
        is_superuser=role == Role.admin,
        role=role.value,
        jurisdiction_id=jurisdiction.id if jurisdiction else None,
        crew_id=crew.id if crew else None,
        **overrides,
    )
    db.add(user)
    await db.flush()
    return user


# -- tickets as work orders (appended for the crews and work-order tests) ----------------------

_ticket_numbers = itertools.count(1)


async def make_ticket(
    db: AsyncSession,
    jurisdiction: Jurisdiction,
    service: Service,
    lon: float,
    lat: float,
    *,
    status: str = "open",
    priority: int = 3,
    crew: Crew | None = None,
    work_status: str | None = None,
    reported_at: datetime | None = None,
    resolve_due_at: datetime | Literal["from_service"] | None = "from_service",
    **columns: Any,
) -> Ticket:
    """One ticket at (lon, lat) in the area that holds it, written straight to the database.

    Due times follow the service's levels from ``reported_at`` unless ``resolve_due_at`` is
    given (``None``: no resolve deadline). A ``crew`` gets the ticket as ``assigned`` unless
    ``work_status`` says otherwise.
    """
    reported = reported_at or datetime.now(UTC) - timedelta(hours=1)
    area_id = (
        await db.execute(
            text(
                "SELECT id FROM area WHERE jurisdiction_id = :j"
                " AND ST_Covers(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
                " ORDER BY id LIMIT 1"
            ),
            {"j": jurisdiction.id, "lon": lon, "lat": lat},
        )
    ).scalar_one_or_none()
    ack = service.acknowledge_within
    fix = service.resolve_within
    if resolve_due_at == "from_service":
        due = reported + fix if fix else None
        warn = reported + fix * 0.8 if fix else None
    else:
        due = resolve_due_at
        warn = None if due is None else due - (due - reported) * 0.2
    ticket = Ticket(
        reference=f"T-2026-{next(_ticket_numbers):06d}",
        jurisdiction_id=jurisdiction.id,
        service_id=service.id,
        area_id=area_id,
        location=f"SRID=4326;POINT({lon} {lat})",
        status=status,
        priority=priority,
        report_count=1,
        first_reported_at=reported,
        last_reported_at=reported,
        acknowledge_due_at=reported + ack if ack else None,
        acknowledge_warn_at=reported + ack * 0.8 if ack else None,
        resolve_due_at=due,
        resolve_warn_at=warn,
        crew_id=crew.id if crew else None,
        work_status=work_status or ("assigned" if crew else None),
        assigned_at=reported if crew else None,
        **columns,
    )
    db.add(ticket)
    await db.flush()
    return ticket


async def bearer_headers(settings: Any, user: User) -> dict[str, str]:
    """An ``Authorization`` header for ``user`` without the sign-in round trip."""
    from fastapi_users.authentication import JWTStrategy

    strategy: JWTStrategy[User, Any] = JWTStrategy(
        secret=settings.secret_key.get_secret_value(), lifetime_seconds=600
    )
    return {"Authorization": f"Bearer {await strategy.write_token(user)}"}
