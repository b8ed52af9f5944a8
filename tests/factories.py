"""Factories for domain objects: small, explicit, and built on the same synthetic city."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from fastapi_users.password import PasswordHelper
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role, User
from app.crews.models import Crew, crew_area
from app.jurisdictions.models import Area, Jurisdiction, Service
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
