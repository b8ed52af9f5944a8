"""An in-process, briefly cached view of jurisdictions and their services.

Every report needs "which jurisdiction contains this point" and "which service is this code";
answering both from memory (shapely prepared boundaries) saves two queries on the hottest
path. The cache lives on ``app.state``, is rebuilt after ``ttl`` seconds, and once more on a
miss, so a new jurisdiction or service is seen at once by the process that looks for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import shapely
from shapely import wkb
from shapely.geometry import Point
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.jurisdictions.calendar import BusinessCalendar
from geo.grid import cell_size_degrees

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceInfo:
    id: int
    code: str
    names: dict[str, str]
    group: str | None
    duplicate_radius_m: float
    duplicate_window: timedelta
    acknowledge_within: timedelta | None
    resolve_within: timedelta | None
    attributes: list[dict[str, Any]]
    description_required: bool
    lock_cell_deg: float
    hazard_level: int = 1
    reopen_within: timedelta = timedelta(days=14)
    counts_business_hours: bool = False
    duplicate_strategy: str = "radius"  # a DuplicateStrategy value
    duplicate_street_within_m: float = 0.0

    def name(self, language: str = "en") -> str:
        return self.names.get(language) or self.names.get("en") or next(iter(self.names.values()))


@dataclass(frozen=True)
class JurisdictionInfo:
    id: int
    slug: str
    name: str
    reference_prefix: str
    allow_anonymous: bool
    boundary: Any  # prepared shapely geometry
    max_abs_lat: float
    services: dict[str, ServiceInfo] = field(default_factory=dict)
    calendar: BusinessCalendar | None = None  # working hours, for business-time levels

    def contains(self, lon: float, lat: float) -> bool:
        return bool(self.boundary.covers(Point(lon, lat)))


class Catalog:
    def __init__(self, ttl: float = 30.0, min_refresh: float = 1.0) -> None:
        self.ttl = ttl
        # A miss (unknown service code, point outside every jurisdiction) reloads at most this
        # often, so made-up codes cannot turn every request into a full catalog load.
        self.min_refresh = min_refresh
        self._loaded_at = -1e18
        self._jurisdictions: list[JurisdictionInfo] = []

    def invalidate(self) -> None:
        self._loaded_at = -1e18

    async def jurisdictions(
        self, session: AsyncSession, *, fresh: bool = False
    ) -> list[JurisdictionInfo]:
        age = time.monotonic() - self._loaded_at
        if age > self.ttl or (fresh and age > self.min_refresh):
            self._jurisdictions = await _load(session)
            self._loaded_at = time.monotonic()
        return self._jurisdictions

    async def find(
        self, session: AsyncSession, matches: Callable[[JurisdictionInfo], bool]
    ) -> JurisdictionInfo | None:
        """The first jurisdiction that ``matches``, reloading once before saying there is none."""
        for fresh in (False, True):
            for jurisdiction in await self.jurisdictions(session, fresh=fresh):
                if matches(jurisdiction):
                    return jurisdiction
        return None

    async def by_point(
        self, session: AsyncSession, lon: float, lat: float
    ) -> JurisdictionInfo | None:
        return await self.find(session, lambda j: j.contains(lon, lat))

    async def by_slug(self, session: AsyncSession, slug: str) -> JurisdictionInfo | None:
        return await self.find(session, lambda j: j.slug == slug)

    async def service(
        self, session: AsyncSession, jurisdiction: JurisdictionInfo, code: str
    ) -> tuple[JurisdictionInfo, ServiceInfo | None]:
        """The service ``code`` of ``jurisdiction``, reloading once if it is not known yet."""
        if code in jurisdiction.services:
            return jurisdiction, jurisdiction.services[code]
        await self.jurisdictions(session, fresh=True)
        reloaded = next((j for j in self._jurisdictions if j.id == jurisdiction.id), jurisdiction)
        return reloaded, reloaded.services.get(code)


async def _load(session: AsyncSession) -> list[JurisdictionInfo]:
    rows = await session.execute(
        text(
            "SELECT id, slug, name, reference_prefix, allow_anonymous, ST_AsBinary(boundary) AS b,"
            " timezone, business_hours, holidays,"
            " greatest(abs(ST_YMin(boundary)), abs(ST_YMax(boundary))) AS max_abs_lat"
            " FROM jurisdiction ORDER BY id"
        )
    )
    services = await session.execute(
        text(
            'SELECT id, jurisdiction_id, code, names, "group", duplicate_radius_m,'
            " duplicate_window, acknowledge_within, resolve_within, attributes,"
            " description_required, hazard_level, reopen_within, business_hours,"
            " duplicate_strategy, duplicate_street_within_m"
            " FROM service WHERE active ORDER BY jurisdiction_id, code"
        )
    )
    by_jurisdiction: dict[int, dict[str, ServiceInfo]] = {}
    max_lat: dict[int, float] = {}
    jurisdictions = []
    for row in rows:
        geom = wkb.loads(bytes(row.b))
        shapely.prepare(geom)
        max_lat[row.id] = float(row.max_abs_lat)
        jurisdictions.append(
            JurisdictionInfo(
                id=row.id,
                slug=row.slug,
                name=row.name,
                reference_prefix=row.reference_prefix,
                allow_anonymous=row.allow_anonymous,
                boundary=geom,
                max_abs_lat=float(row.max_abs_lat),
                services=by_jurisdiction.setdefault(row.id, {}),
                calendar=_calendar(row),
            )
        )
    for s in services:
        if s.jurisdiction_id not in max_lat:
            continue
        by_jurisdiction.setdefault(s.jurisdiction_id, {})[s.code] = ServiceInfo(
            id=s.id,
            code=s.code,
            names=s.names,
            group=s.group,
            duplicate_radius_m=float(s.duplicate_radius_m),
            duplicate_window=s.duplicate_window,
            acknowledge_within=s.acknowledge_within,
            resolve_within=s.resolve_within,
            attributes=s.attributes,
            description_required=s.description_required,
            lock_cell_deg=cell_size_degrees(
                float(s.duplicate_radius_m), max_lat[s.jurisdiction_id]
            ),
            hazard_level=s.hazard_level,
            reopen_within=s.reopen_within,
            counts_business_hours=s.business_hours,
            duplicate_strategy=s.duplicate_strategy,
            duplicate_street_within_m=float(s.duplicate_street_within_m),
        )
    return jurisdictions


def _calendar(row: Any) -> BusinessCalendar | None:
    try:
        return BusinessCalendar.parse(row.timezone, row.business_hours, row.holidays)
    except (ValueError, KeyError) as exc:
        # A broken calendar must not stop intake: levels fall back to clock time.
        logger.warning("jurisdiction %s: business hours ignored: %s", row.slug, exc)
        return None
