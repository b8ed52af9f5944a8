"""The admin API's use cases: one object of a city at a time, by the city file's rules.

Every write here validates with the city file's models (``schema.py``) and geometry hygiene
(``geometry.py``), writes with the same statements as ``apply`` (``service.py``), and runs
under the same advisory lock, so a REST write and a ``kerbside city apply`` never interleave.

Optimistic concurrency: every object has an ETag (a hash of its city-file form, the same for
its YAML and JSON representations). A write to an existing object must send ``If-Match``
with the ETag it read (428 without, 412 when it no longer matches); ``If-Match: *`` is the
explicit "overwrite whatever is there". The check runs under the lock, so two administrators
who read the same version cannot both write it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.cities import geometry
from app.cities.geometry import AreaShape, GeometryProblem, Shape
from app.cities.schema import CityFile, GeometrySource, Jurisdiction, Service, Strict
from app.cities.service import (
    Change,
    CityFileError,
    Outcome,
    apply,
    export,
    jurisdiction_of,
    load,
    lock,
    misrouted,
    reroute,
    service_of,
    write_jurisdiction,
    write_service,
)
from app.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)

# -- documents -------------------------------------------------------------------------------


class JurisdictionDocument(Strict):
    """A jurisdiction's section of the city file and its boundary (GeoJSON inline)."""

    jurisdiction: Jurisdiction
    boundary: GeometrySource


class JurisdictionSaved(BaseModel):
    """The document as stored, with what the write changed and what the hygiene found."""

    jurisdiction: Jurisdiction
    boundary: GeometrySource
    changes: list[str] = Field(description="Plan lines, as `kerbside city apply` prints them")
    hygiene: list[str] = Field(description="Repairs made, areas outside the boundary, gaps")


class JurisdictionSummary(BaseModel):
    slug: str
    name: str
    timezone: str
    languages: list[str]
    reference_prefix: str
    allow_anonymous: bool
    bbox: list[float]
    areas: int
    services: int
    active_services: int


class AreaFeature(BaseModel):
    """One area as a GeoJSON Feature: ``properties.name`` (default: the code) and a Polygon or
    MultiPolygon. The coordinates' CRS is the ``crs`` query parameter, or the GeoJSON's own
    ``crs`` member, or WGS84."""

    model_config = ConfigDict(extra="allow")  # GeoJSON allows foreign members (id, bbox)

    type: Literal["Feature"]
    properties: dict[str, Any] | None = None
    geometry: dict[str, Any]


# -- preconditions ---------------------------------------------------------------------------


def etag_of(data: Any) -> str:
    """A strong ETag for a JSON-able value: the same value, the same tag."""
    digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:32]}"'


def check_if_match(if_match: str | None, current: str | None, what: str) -> None:
    """Refuse a write whose ``If-Match`` does not name ``current`` (``None``: no such object
    yet, where a missing header is fine)."""
    if if_match is None:
        if current is not None:
            raise PreconditionRequired(
                f"{what} exists: send If-Match with the ETag of your last read of it"
                " (or If-Match: * to overwrite whatever is there)"
            )
        return
    tags = [t.strip() for t in if_match.split(",")]
    if current is not None and ("*" in tags or current in tags):
        return
    if current is None:
        raise PreconditionFailed(f"{what} does not exist, but If-Match expected it to")
    raise PreconditionFailed(
        f"{what} has changed since you read it: read it again (ETag {current}), merge your"
        " change and send it with that ETag",
        etag=current,
    )


def refuse_files(city: CityFile | JurisdictionDocument) -> None:
    """Over HTTP a geometry is given inline: the server never reads a path a client names."""
    sources: list[tuple[str, GeometrySource]] = [("boundary", city.boundary)]
    if isinstance(city, CityFile):
        sources += [(f"areas[{i}]", a) for i, a in enumerate(city.areas)]
    errors = [
        {
            "field": f"{path}.file",
            "message": "files are not read over the API: give the GeoJSON inline (geojson)",
            "type": "value_error",
        }
        for path, source in sources
        if source.file is not None
    ]
    if errors:
        raise CityFileError(f"{errors[0]['field']}: {errors[0]['message']}", errors=errors)


def _geometry_error(problem: GeometryProblem) -> CityFileError:
    return CityFileError(
        str(problem),
        errors=[{"field": problem.path, "message": problem.message, "type": "geometry"}],
    )


# -- jurisdictions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    id: int
    slug: str


async def find(session: AsyncSession, slug: str) -> Found:
    """The jurisdiction ``slug``, or 404."""
    row = (
        await session.execute(
            text("SELECT id, slug FROM jurisdiction WHERE slug = :s"), {"s": slug}
        )
    ).first()
    if row is None:
        raise NotFound(f"No jurisdiction {slug!r}")
    return Found(row.id, row.slug)


async def list_jurisdictions(
    session: AsyncSession, only_id: int | None
) -> list[JurisdictionSummary]:
    """Every jurisdiction (``only_id``: that one only, for staff)."""
    rows = await session.execute(
        text(
            "SELECT j.slug, j.name, j.timezone, j.languages, j.reference_prefix,"
            " j.allow_anonymous, ST_XMin(j.boundary) AS x0, ST_YMin(j.boundary) AS y0,"
            " ST_XMax(j.boundary) AS x1, ST_YMax(j.boundary) AS y1,"
            " (SELECT count(*) FROM area a WHERE a.jurisdiction_id = j.id) AS areas,"
            " (SELECT count(*) FROM service s WHERE s.jurisdiction_id = j.id) AS services,"
            " (SELECT count(*) FROM service s WHERE s.jurisdiction_id = j.id AND s.active)"
            " AS active_services"
            " FROM jurisdiction j"
            " WHERE CAST(:only AS int) IS NULL OR j.id = CAST(:only AS int) ORDER BY j.slug"
        ),
        {"only": only_id},
    )
    return [
        JurisdictionSummary(
            slug=r.slug,
            name=r.name,
            timezone=r.timezone,
            languages=list(r.languages),
            reference_prefix=r.reference_prefix,
            allow_anonymous=r.allow_anonymous,
            bbox=[r.x0, r.y0, r.x1, r.y1],
            areas=r.areas,
            services=r.services,
            active_services=r.active_services,
        )
        for r in rows
    ]


async def read_jurisdiction(session: AsyncSession, slug: str) -> JurisdictionDocument | None:
    row = (
        await session.execute(
            text(
                "SELECT slug, name, timezone, languages, reference_prefix, allow_anonymous,"
                " business_hours, holidays,"
                " ST_AsGeoJSON(ST_ForcePolygonCCW(boundary), 9) AS boundary"
                " FROM jurisdiction WHERE slug = :slug"
            ),
            {"slug": slug},
        )
    ).first()
    if row is None:
        return None
    return JurisdictionDocument(
        jurisdiction=jurisdiction_of(row),
        boundary=GeometrySource(geojson=json.loads(row.boundary)),
    )


def document_etag(document: JurisdictionDocument) -> str:
    return etag_of(document.model_dump(mode="json"))


async def save_jurisdiction(
    session: AsyncSession,
    document: JurisdictionDocument,
    *,
    create: bool,
    if_match: str | None = None,
) -> JurisdictionSaved:
    """Create (``create``; 409 when the slug is taken) or update a jurisdiction's section and
    boundary."""
    refuse_files(document)
    slug = document.jurisdiction.slug
    await lock(session)
    current = await read_jurisdiction(session, slug)
    if create and current is not None:
        raise Conflict(
            f"A jurisdiction {slug!r} exists already (slugs are unique)",
            errors=[
                {"field": "jurisdiction.slug", "message": "taken", "type": "unique", "in": "body"}
            ],
        )
    if not create:
        if current is None:
            raise NotFound(f"No jurisdiction {slug!r}")
        check_if_match(if_match, document_etag(current), f"Jurisdiction {slug!r}")
    try:
        boundary = await geometry.boundary_shape(session, document.boundary, None)
    except GeometryProblem as problem:
        raise _geometry_error(problem) from None
    outcome = Outcome(slug, dry_run=False)
    jurisdiction_id = await write_jurisdiction(session, document.jurisdiction, boundary, outcome)
    hygiene = await geometry.check_layout(
        session, boundary, await _stored_areas(session, jurisdiction_id)
    )
    saved = await read_jurisdiction(session, slug)
    assert saved is not None
    return JurisdictionSaved(
        jurisdiction=saved.jurisdiction,
        boundary=saved.boundary,
        changes=[c.line() for c in outcome.changes if c.action != "unchanged"],
        hygiene=hygiene.lines(),
    )


# -- the whole city ------------------------------------------------------------------------


def city_etag(city: CityFile) -> str:
    return etag_of(city.model_dump(mode="json"))


@dataclass
class CityPut:
    outcome: Outcome
    created: bool
    etag: str | None  # the new version's (not for a dry run)


async def put_city(
    session: AsyncSession,
    slug: str,
    body: bytes,
    *,
    if_match: str | None,
    dry_run: bool,
    reroute_open: bool,
) -> CityPut:
    """Apply a whole city file (YAML or JSON) to the jurisdiction ``slug``, the path of
    ``kerbside city apply``; a dry run plans, checks ``If-Match`` when sent, and rolls back."""
    city = load(body, name="body")
    if city.jurisdiction.slug != slug:
        raise CityFileError(
            f"jurisdiction.slug: must be {slug!r}, the jurisdiction of the URL",
            errors=[
                {
                    "field": "jurisdiction.slug",
                    "message": f"must be {slug!r}, the jurisdiction of the URL",
                    "type": "value_error",
                }
            ],
        )
    refuse_files(city)
    await lock(session)
    exists = await read_jurisdiction(session, slug) is not None
    current = city_etag(await export(session, slug)) if exists else None
    if not dry_run or if_match is not None:
        check_if_match(if_match, current, f"City {slug!r}")
    if dry_run:
        savepoint = await session.begin_nested()
        try:
            outcome = await apply(session, city, dry_run=True, reroute_open=reroute_open)
        finally:
            await savepoint.rollback()
        return CityPut(outcome, created=False, etag=None)
    outcome = await apply(session, city, reroute_open=reroute_open)
    return CityPut(outcome, created=not exists, etag=city_etag(await export(session, slug)))


# -- areas ---------------------------------------------------------------------------------

_FEATURE = """
    json_build_object(
        'type', 'Feature',
        'id', a.kind || '/' || a.code,
        'properties', json_build_object('kind', a.kind, 'code', a.code, 'name', a.name),
        'geometry', CAST(ST_AsGeoJSON(ST_ForcePolygonCCW(a.geom), 9) AS json)
    )
"""


async def areas_geojson(session: AsyncSession, jurisdiction_id: int) -> bytes:
    """Every area of the jurisdiction as a FeatureCollection, built by PostGIS (RFC 7946:
    WGS84, exterior rings counterclockwise)."""
    features: str = (
        await session.execute(
            text(
                f"SELECT COALESCE(json_agg({_FEATURE} ORDER BY a.kind, a.code), '[]')::text"  # noqa: S608
                " FROM area a WHERE a.jurisdiction_id = :j"
            ),
            {"j": jurisdiction_id},
        )
    ).scalar_one()
    return b'{"type":"FeatureCollection","features":' + features.encode() + b"}"


async def read_area(
    session: AsyncSession, jurisdiction_id: int, kind: str, code: str
) -> dict[str, Any] | None:
    row = (
        await session.execute(
            text(
                f"SELECT {_FEATURE}::text AS feature FROM area a"  # noqa: S608
                " WHERE a.jurisdiction_id = :j AND a.kind = :kind AND a.code = :code"
            ),
            {"j": jurisdiction_id, "kind": kind, "code": code},
        )
    ).first()
    return None if row is None else dict(json.loads(row.feature))


@dataclass
class AreaPut:
    feature: dict[str, Any]
    created: bool
    changes: list[str] = field(default_factory=list)
    hygiene: list[str] = field(default_factory=list)
    open_tickets_to_reroute: int = 0
    rerouted: int = 0


async def put_area(
    session: AsyncSession,
    jurisdiction: Found,
    kind: str,
    code: str,
    body: AreaFeature,
    *,
    crs: str | None,
    if_match: str | None,
    reroute_open: bool,
) -> AreaPut:
    """Create or replace one area from a GeoJSON Feature, reprojected and repaired (or
    refused) as the city file's areas are."""
    await lock(session)
    current = await read_area(session, jurisdiction.id, kind, code)
    check_if_match(if_match, None if current is None else etag_of(current), f"Area {kind} {code!r}")
    raw = body.model_dump(mode="json", exclude_none=True)
    properties = raw.get("properties") or {}
    name = str(properties.get("name") or code).strip()
    if len(name) > 200:
        raise InvalidInput(
            "properties.name: at most 200 characters",
            errors=[
                {"field": "properties.name", "message": "at most 200 characters", "in": "body"}
            ],
        )
    try:
        source = GeometrySource(geojson=raw, **({"crs": crs} if crs else {}))
        srid = geometry.srid_of(source, raw, "body")
        shape = await geometry.clean(session, raw["geometry"], srid, "body.geometry", properties)
    except GeometryProblem as problem:
        # Paths name the request body's members, as FastAPI's own validation errors do.
        field_path = problem.path.removeprefix("body.").removeprefix("body")
        raise CityFileError(
            f"{field_path}: {problem.message}",
            errors=[
                {"field": field_path, "message": problem.message, "type": "geometry", "in": "body"}
            ],
        ) from None
    outcome = Outcome(jurisdiction.slug, dry_run=False)
    label = f"{kind} {code}"
    if current is None:
        outcome.changes.append(_change("create", label))
        await session.execute(
            text(
                "INSERT INTO area (jurisdiction_id, kind, code, name, geom)"
                " VALUES (:j, :kind, :code, :name, ST_GeomFromEWKT(:ewkt))"
            ),
            {"j": jurisdiction.id, "kind": kind, "code": code, "name": name, "ewkt": shape.ewkt},
        )
    else:
        # Compared as the file's apply compares: name and the cleaned geometry's EWKT.
        result = await session.execute(
            text(
                "UPDATE area SET name = :name, geom = ST_GeomFromEWKT(:ewkt)"
                " WHERE jurisdiction_id = :j AND kind = :kind AND code = :code"
                " AND (name <> :name OR ST_AsEWKT(geom, 9) <> :ewkt)"
            ),
            {"j": jurisdiction.id, "kind": kind, "code": code, "name": name, "ewkt": shape.ewkt},
        )
        changed = bool(result.rowcount)  # type: ignore[attr-defined]
        outcome.changes.append(_change("update" if changed else "unchanged", label))
    stored = await _stored_areas(session, jurisdiction.id)
    boundary = await _stored_boundary(session, jurisdiction.id)
    hygiene = await geometry.check_layout(session, boundary, [a for a in stored if a.kind == kind])
    hygiene.repaired = [shape.repaired] if shape.repaired else []
    out = AreaPut(
        feature=await read_area(session, jurisdiction.id, kind, code) or {},
        created=current is None,
        changes=[c.line() for c in outcome.changes if c.action != "unchanged"],
        hygiene=hygiene.lines(),
    )
    if out.changes:
        out.open_tickets_to_reroute = await misrouted(session, jurisdiction.id)
        if reroute_open and out.open_tickets_to_reroute:
            out.rerouted = await reroute(session, jurisdiction.id)
    return out


async def delete_area(
    session: AsyncSession, jurisdiction: Found, kind: str, code: str, *, if_match: str | None
) -> None:
    """Delete an area that holds no ticket and no crew names (409 otherwise), as the file
    deletes an area it leaves out."""
    await lock(session)
    current = await read_area(session, jurisdiction.id, kind, code)
    if current is None:
        raise NotFound(f"No {kind} {code!r} in {jurisdiction.slug!r}")
    check_if_match(if_match, etag_of(current), f"Area {kind} {code!r}")
    uses = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM ticket t WHERE t.area_id = a.id) AS tickets,"
                " (SELECT string_agg(DISTINCT c.name, ', ' ORDER BY c.name) FROM crew c"
                "  WHERE c.id IN (SELECT crew_id FROM crew_area WHERE area_id = a.id"
                "                 UNION SELECT crew_id FROM assignment_rule WHERE area_id = a.id))"
                " AS crews, a.id"
                " FROM area a WHERE a.jurisdiction_id = :j AND a.kind = :kind AND a.code = :code"
            ),
            {"j": jurisdiction.id, "kind": kind, "code": code},
        )
    ).one()
    if uses.tickets:
        raise Conflict(
            f"{kind} {code} holds {uses.tickets} tickets; areas holding tickets are never"
            " deleted (replace its geometry instead)",
            tickets=uses.tickets,
        )
    if uses.crews:
        raise Conflict(
            f"{kind} {code} is in the territory or assignment rules of crews {uses.crews};"
            " change those crews first"
        )
    await session.execute(text("DELETE FROM area WHERE id = :id"), {"id": uses.id})


def _change(action: Literal["create", "update", "unchanged"], label: str) -> Change:
    return Change("area", label, action)


async def _stored_areas(session: AsyncSession, jurisdiction_id: int) -> list[AreaShape]:
    rows = await session.execute(
        text(
            "SELECT kind, code, name, ST_AsEWKT(geom, 9) AS ewkt FROM area"
            " WHERE jurisdiction_id = :j ORDER BY kind, code"
        ),
        {"j": jurisdiction_id},
    )
    return [AreaShape(r.kind, r.code, r.name, Shape(f"{r.kind} {r.code}", r.ewkt)) for r in rows]


async def _stored_boundary(session: AsyncSession, jurisdiction_id: int) -> Shape:
    ewkt = (
        await session.execute(
            text("SELECT ST_AsEWKT(boundary, 9) FROM jurisdiction WHERE id = :j"),
            {"j": jurisdiction_id},
        )
    ).scalar_one()
    return Shape("boundary", ewkt)


# -- services ------------------------------------------------------------------------------


async def _service_row(session: AsyncSession, jurisdiction_id: int, code: str) -> Any:
    return (
        await session.execute(
            text("SELECT * FROM service WHERE jurisdiction_id = :j AND code = :code"),
            {"j": jurisdiction_id, "code": code},
        )
    ).first()


async def list_services(session: AsyncSession, jurisdiction_id: int) -> list[Service]:
    """Every service, inactive ones too (``active: false``), as the city file lists them."""
    rows = await session.execute(
        text("SELECT * FROM service WHERE jurisdiction_id = :j ORDER BY code"),
        {"j": jurisdiction_id},
    )
    return [service_of(r) for r in rows]


async def read_service(session: AsyncSession, jurisdiction: Found, code: str) -> Service:
    row = await _service_row(session, jurisdiction.id, code)
    if row is None:
        raise NotFound(f"No service {code!r} in {jurisdiction.slug!r}")
    return service_of(row)


def service_etag(service: Service) -> str:
    return etag_of(service.model_dump(mode="json"))


async def create_service(session: AsyncSession, jurisdiction: Found, body: Service) -> Service:
    await lock(session)
    if await _service_row(session, jurisdiction.id, body.code) is not None:
        raise Conflict(
            f"Service {body.code!r} exists in {jurisdiction.slug!r} (perhaps inactive): PUT it"
            " instead",
            errors=[{"field": "code", "message": "taken", "type": "unique", "in": "body"}],
        )
    await write_service(session, jurisdiction.id, body, None, Outcome(jurisdiction.slug, False))
    return await read_service(session, jurisdiction, body.code)


async def update_service(
    session: AsyncSession, jurisdiction: Found, code: str, body: Service, if_match: str | None
) -> Service:
    if body.code != code:
        raise InvalidInput(
            f"code: must be {code!r}, the service of the URL (codes do not change)",
            errors=[
                {
                    "field": "code",
                    "message": f"must be {code!r}",
                    "type": "value_error",
                    "in": "body",
                }
            ],
        )
    await lock(session)
    row = await _service_row(session, jurisdiction.id, code)
    if row is None:
        raise NotFound(f"No service {code!r} in {jurisdiction.slug!r}")
    check_if_match(if_match, service_etag(service_of(row)), f"Service {code!r}")
    await write_service(session, jurisdiction.id, body, row, Outcome(jurisdiction.slug, False))
    return await read_service(session, jurisdiction, code)


async def deactivate_service(
    session: AsyncSession, jurisdiction: Found, code: str, if_match: str | None
) -> None:
    """Services are never deleted (tickets and reports name them): it stops taking reports."""
    await lock(session)
    row = await _service_row(session, jurisdiction.id, code)
    if row is None:
        raise NotFound(f"No service {code!r} in {jurisdiction.slug!r}")
    check_if_match(if_match, service_etag(service_of(row)), f"Service {code!r}")
    await session.execute(text("UPDATE service SET active = false WHERE id = :id"), {"id": row.id})
