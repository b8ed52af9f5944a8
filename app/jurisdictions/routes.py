"""Public discovery: which jurisdictions we serve and what can be reported there."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from app.core.errors import NotFound
from app.db import SessionDep
from app.jurisdictions.models import DuplicateStrategy

router = APIRouter(prefix="/v1/jurisdictions", tags=["jurisdictions"])


class JurisdictionOut(BaseModel):
    slug: str
    name: str
    bbox: list[float]
    languages: list[str]
    allow_anonymous: bool
    timezone: str


class ServiceOut(BaseModel):
    code: str
    name: str
    names: dict[str, str]
    descriptions: dict[str, str]
    group: str | None
    keywords: dict[str, list[str]]
    duplicate_strategy: DuplicateStrategy
    duplicate_radius_m: float
    duplicate_street_within_m: float
    duplicate_window_seconds: float
    acknowledge_within_seconds: float | None
    resolve_within_seconds: float | None
    attributes: list[dict[str, Any]]
    description_required: bool


def _seconds(span: timedelta | None) -> float | None:
    return span.total_seconds() if span is not None else None


@router.get("", response_model=list[JurisdictionOut], summary="Jurisdictions served here")
async def list_jurisdictions(session: SessionDep) -> Any:
    rows = await session.execute(
        text(
            "SELECT slug, name, languages, allow_anonymous, timezone,"
            " ST_XMin(boundary) AS x0, ST_YMin(boundary) AS y0,"
            " ST_XMax(boundary) AS x1, ST_YMax(boundary) AS y1 FROM jurisdiction ORDER BY slug"
        )
    )
    return [
        JurisdictionOut(
            slug=r.slug,
            name=r.name,
            bbox=[r.x0, r.y0, r.x1, r.y1],
            languages=list(r.languages),
            allow_anonymous=r.allow_anonymous,
            timezone=r.timezone,
        )
        for r in rows
    ]


@router.get(
    "/{slug}/services",
    response_model=list[ServiceOut],
    summary="What can be reported in a jurisdiction, with each service's questions",
)
async def list_services(slug: str, session: SessionDep) -> Any:
    rows = (
        await session.execute(
            text(
                "SELECT s.* FROM service s JOIN jurisdiction j ON j.id = s.jurisdiction_id"
                ' WHERE j.slug = :slug AND s.active ORDER BY s."group" NULLS LAST, s.code'
            ),
            {"slug": slug},
        )
    ).all()
    if not rows:
        exists = (
            await session.execute(text("SELECT 1 FROM jurisdiction WHERE slug = :s"), {"s": slug})
        ).first()
        if exists is None:
            raise NotFound(f"No jurisdiction {slug!r}")
    return [
        ServiceOut(
            code=r.code,
            name=r.names.get("en") or next(iter(r.names.values()), r.code),
            names=r.names,
            descriptions=r.descriptions,
            group=r.group,
            keywords=r.keywords,
            duplicate_strategy=r.duplicate_strategy,
            duplicate_radius_m=r.duplicate_radius_m,
            duplicate_street_within_m=r.duplicate_street_within_m,
            duplicate_window_seconds=r.duplicate_window.total_seconds(),
            acknowledge_within_seconds=_seconds(r.acknowledge_within),
            resolve_within_seconds=_seconds(r.resolve_within),
            attributes=r.attributes,
            description_required=r.description_required,
        )
        for r in rows
    ]
