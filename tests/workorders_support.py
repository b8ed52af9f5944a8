"""One small world for the crew and work-order tests: two cities, crews with territories,
one signed-in person per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.crews.models import Crew
from app.jurisdictions.models import Area, Jurisdiction, Service
from app.settings import Settings
from tests.factories import (
    CITY,
    bearer_headers,
    make_crew,
    make_jurisdiction,
    make_service,
    make_user,
)

PROBLEM = "application/problem+json"
ROLES = ("anonymous", "citizen", "crew", "south_crew", "crewless", "staff", "other_staff", "admin")


def inside(code: str) -> tuple[float, float]:
    """A point well inside district ``code`` of the synthetic city."""
    district = next(d for d in CITY.districts if d.code == code)
    point = district.geom.representative_point()
    return float(point.x), float(point.y)


@dataclass
class World:
    city: Jurisdiction
    other_city: Jurisdiction
    pothole: Service
    fly_tipping: Service  # needs an after-photo to finish
    other_pothole: Service
    areas: dict[str, Area]  # of `city`, by code
    other_areas: dict[str, Area]
    north: Crew  # covers D01 and D02
    south: Crew  # covers D05
    other_crew: Crew  # of `other_city`, covers its D01
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    rule_id: int = 0  # an assignment rule, where a test makes one

    def __getitem__(self, who: str) -> dict[str, str]:
        return self.headers[who]


async def make_world(db: AsyncSession, settings: Settings) -> World:
    city = await make_jurisdiction(db)
    other_city = await make_jurisdiction(db)

    async def areas_of(j: Jurisdiction) -> dict[str, Area]:
        rows = await db.execute(select(Area).where(Area.jurisdiction_id == j.id))
        return {a.code: a for a in rows.scalars()}

    areas, other_areas = await areas_of(city), await areas_of(other_city)
    world = World(
        city=city,
        other_city=other_city,
        pothole=await make_service(db, city, "pothole"),
        fly_tipping=await make_service(db, city, "fly_tipping", completion_photo_required=True),
        other_pothole=await make_service(db, other_city, "pothole"),
        areas=areas,
        other_areas=other_areas,
        north=await make_crew(db, city, [areas["D01"], areas["D02"]], name="North"),
        south=await make_crew(db, city, [areas["D05"]], name="South"),
        other_crew=await make_crew(db, other_city, [other_areas["D01"]], name="Elsewhere"),
    )
    users: dict[str, Any] = {
        "citizen": await make_user(db),
        "crew": await make_user(db, role=Role.crew, jurisdiction=city, crew=world.north),
        "south_crew": await make_user(db, role=Role.crew, jurisdiction=city, crew=world.south),
        "crewless": await make_user(db, role=Role.crew, jurisdiction=city),
        "staff": await make_user(db, role=Role.staff, jurisdiction=city),
        "other_staff": await make_user(db, role=Role.staff, jurisdiction=other_city),
        "admin": await make_user(db, role=Role.admin),
    }
    world.headers = {who: await bearer_headers(settings, user) for who, user in users.items()}
    world.headers["anonymous"] = {}
    return world
