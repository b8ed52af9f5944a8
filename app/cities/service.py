"""Apply a city file (plan, then change, in one transaction) and export one back.

``apply`` validates everything first (the file, every geometry, every reference), then prints
a plan (create / update / unchanged / deactivate / delete per object), then applies it in one
transaction, or nothing. Two applies at once are serialised by an advisory lock. Applying the
same file twice changes nothing, and ``export`` writes what ``apply`` reads, so apply → export →
apply is a no-op. Tickets and reports are never deleted: a service left out of the file is
deactivated; an area left out is deleted only when no ticket lies in it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.channels import accounts
from app.channels.accounts import CityChannels
from app.cities import geometry
from app.cities.geometry import AreaShape, GeometryProblem, Hygiene, Shape
from app.cities.schema import (
    AreaSet,
    AssignmentRule,
    Attribute,
    CityFile,
    Classify,
    Crew,
    GeometrySource,
    History,
    Jurisdiction,
    Notifications,
    Privacy,
    Service,
    Talk,
    Template,
)
from app.core.errors import KerbsideError
from app.jurisdictions.sql import area_at_sql
from app.social import config as social_config

Action = Literal["create", "update", "unchanged", "deactivate", "delete"]
Say = Callable[[str], None]

_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('kerbside-city-apply'))")
_OPEN = "('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')"


class CityFileError(KerbsideError):
    """The city file cannot be applied; ``errors`` name each problem's path in the file."""

    status, slug, title = 422, "invalid-city-file", "Invalid city file"


@dataclass(frozen=True)
class Change:
    what: str  # "jurisdiction", "boundary", "area", "service", "crew", "template", "classify",
    # "talk"
    # "channels"
    key: str
    action: Action
    fields: tuple[str, ...] = ()

    def line(self) -> str:
        mark = {"create": "+", "update": "~", "unchanged": "=", "deactivate": "-", "delete": "-"}
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        verb = "" if self.action in ("create", "update", "unchanged") else f" [{self.action}]"
        return f"{mark[self.action]} {self.what} {self.key}{detail}{verb}"


@dataclass
class Outcome:
    """What an apply did (or, with ``dry_run``, would do)."""

    slug: str
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    hygiene: Hygiene = field(default_factory=Hygiene)
    open_tickets_to_reroute: int = 0
    rerouted: int = 0

    @property
    def changed(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for change in self.changes:
            out[change.action] = out.get(change.action, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "jurisdiction": self.slug,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "counts": self.counts(),
            "changes": [c.line() for c in self.changes if c.action != "unchanged"],
            "hygiene": self.hygiene.lines(),
            "open_tickets_to_reroute": self.open_tickets_to_reroute,
            "rerouted": self.rerouted,
        }


# -- reading the file ----------------------------------------------------------------------------


def load(source: str | bytes, *, name: str = "city file") -> CityFile:
    """Parse and validate a city file; every problem is reported with its path."""
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CityFileError(
            f"{name} is not valid YAML{where}: {problem}",
            errors=[{"field": "", "message": f"not YAML{where}: {problem}", "type": "yaml"}],
        ) from None
    if not isinstance(data, dict):
        raise CityFileError(
            f"{name} must be a mapping with jurisdiction, boundary, services, …",
            errors=[{"field": "", "message": "not a mapping", "type": "type_error"}],
        )
    try:
        return CityFile.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": _path(e["loc"]), "message": _message(e), "type": e["type"]}
            for e in exc.errors(include_url=False)
        ]
        first = errors[0]
        where = f"{first['field']}: " if first["field"] else ""
        raise CityFileError(
            f"{name}: {where}{first['message']}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
            errors=errors,
        ) from None


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "tagged-union")):
            out += f".{part}" if out else str(part)
    return out


def _message(error: Any) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return message[:1].lower() + message[1:]


# -- applying ----------------------------------------------------------------------------------


async def apply(
    session: AsyncSession,
    city: CityFile,
    *,
    base_dir: Path | None = None,
    dry_run: bool = False,
    reroute_open: bool = False,
    say: Say | None = None,
) -> Outcome:
    """Apply ``city`` in the session's transaction (the caller commits, or rolls back for a
    dry run). Raises ``CityFileError`` before changing anything when the file cannot apply."""
    tell = say or (lambda _line: None)
    await session.execute(_LOCK)
    slug = city.jurisdiction.slug
    tell(f"city {slug}: reading geometry")
    try:
        boundary = await geometry.boundary_shape(session, city.boundary, base_dir)
        areas = await geometry.area_shapes(session, city.areas, base_dir)
    except GeometryProblem as problem:
        raise CityFileError(
            str(problem),
            errors=[{"field": problem.path, "message": problem.message, "type": "geometry"}],
        ) from None
    _check_crews(city, {a.code for a in areas})
    _check_channels(city)
    hygiene = await geometry.check_layout(session, boundary, areas)
    tell(f"city {slug}: {len(areas)} areas, {len(city.services)} services; planning")
    state = await _State.read(session, slug)
    outcome = Outcome(slug, dry_run, hygiene=hygiene)
    jurisdiction_id = await _jurisdiction(
        session, state, city.jurisdiction, city.history, city.notifications, boundary, outcome
    )
    await _privacy(session, state, jurisdiction_id, city.jurisdiction.slug, city.privacy, outcome)
    area_ids = await _areas(session, state, jurisdiction_id, areas, outcome)
    service_ids = await _services(session, state, jurisdiction_id, city.services, outcome)
    await _crews(session, state, jurisdiction_id, city.crews, area_ids, service_ids, outcome)
    await _templates(session, state, jurisdiction_id, city.templates, service_ids, outcome)
    await _classify(
        session, jurisdiction_id, slug, city.classify, outcome, created=state.jurisdiction is None
    )
    social_action = await social_config.write(session, jurisdiction_id, city.social)
    if social_action != "unchanged":  # a city without social accounts plans as before
        outcome.changes.append(Change("social", slug, social_action))
    await _talk(
        session, jurisdiction_id, slug, city.talk, outcome, created=state.jurisdiction is None
    )
    await _channels(
        session, jurisdiction_id, slug, city.channels, outcome, created=state.jurisdiction is None
    )
    geometry_changed = any(
        c.what in ("boundary", "area") and c.action != "unchanged" for c in outcome.changes
    )
    if geometry_changed and state.jurisdiction is not None:
        outcome.open_tickets_to_reroute = await misrouted(session, jurisdiction_id)
        if reroute_open and outcome.open_tickets_to_reroute:
            outcome.rerouted = await reroute(session, jurisdiction_id)
    tell(f"city {slug}: {outcome.counts()}")
    return outcome


def _check_crews(city: CityFile, area_codes: set[str]) -> None:
    errors = []
    scopes: dict[tuple[str | None, str | None], str] = {}
    for i, crew in enumerate(city.crews):
        for code in crew.areas:
            if code not in area_codes:
                errors.append((f"crews[{i}].areas", f"unknown area {code!r}"))
        for j, rule in enumerate(crew.assign):
            for code in rule.areas:
                if code not in area_codes:
                    errors.append((f"crews[{i}].assign[{j}].areas", f"unknown area {code!r}"))
            for scope in _scopes(rule):
                if scope in scopes and scopes[scope] != crew.name:
                    errors.append(
                        (
                            f"crews[{i}].assign[{j}]",
                            f"{_scope_text(scope)} already goes to {scopes[scope]!r}",
                        )
                    )
                scopes[scope] = crew.name
    if errors:
        raise CityFileError(
            f"{errors[0][0]}: {errors[0][1]}",
            errors=[{"field": f, "message": m, "type": "value_error"} for f, m in errors],
        )


def _scopes(rule: AssignmentRule) -> list[tuple[str | None, str | None]]:
    areas: list[str | None] = list(rule.areas) or [None]
    services: list[str | None] = list(rule.services) or [None]
    return [(a, s) for a in areas for s in services]


def _scope_text(scope: tuple[str | None, str | None]) -> str:
    area, service = scope
    return f"{service or 'every service'} in {area or 'every area'}"


@dataclass
class _State:
    """The jurisdiction as the database has it now."""

    jurisdiction: Any = None
    boundary_ewkt: str | None = None
    areas: dict[tuple[str, str], Any] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    crews: dict[str, Any] = field(default_factory=dict)
    crew_areas: dict[int, set[str]] = field(default_factory=dict)
    crew_rules: dict[int, set[tuple[str | None, str | None]]] = field(default_factory=dict)
    templates: dict[tuple[str, str, str | None], Any] = field(default_factory=dict)

    @classmethod
    async def read(cls, session: AsyncSession, slug: str) -> _State:
        state = cls()
        row = (
            await session.execute(
                text(
                    "SELECT id, slug, name, timezone, languages, reference_prefix,"
                    " allow_anonymous, business_hours, holidays, history, notifications,"
                    " privacy, ST_AsEWKT(boundary, 9) AS ewkt"
                    " FROM jurisdiction WHERE slug = :slug FOR UPDATE"
                ),
                {"slug": slug},
            )
        ).first()
        if row is None:
            return state
        state.jurisdiction, state.boundary_ewkt = row, row.ewkt
        j = {"j": row.id}
        for area in await session.execute(
            text(
                "SELECT id, kind, code, name, ST_AsEWKT(geom, 9) AS ewkt FROM area"
                " WHERE jurisdiction_id = :j"
            ),
            j,
        ):
            state.areas[(area.kind, area.code)] = area
        for service in await session.execute(
            text("SELECT * FROM service WHERE jurisdiction_id = :j"), j
        ):
            state.services[service.code] = service
        for crew in await session.execute(
            text("SELECT id, name, active FROM crew WHERE jurisdiction_id = :j"), j
        ):
            state.crews[crew.name] = crew
            state.crew_areas[crew.id] = set()
            state.crew_rules[crew.id] = set()
        for link in await session.execute(
            text(
                "SELECT ca.crew_id, a.code FROM crew_area ca JOIN area a ON a.id = ca.area_id"
                " WHERE a.jurisdiction_id = :j"
            ),
            j,
        ):
            state.crew_areas.setdefault(link.crew_id, set()).add(link.code)
        for rule in await session.execute(
            text(
                "SELECT r.crew_id, a.code AS area, s.code AS service FROM assignment_rule r"
                " LEFT JOIN area a ON a.id = r.area_id LEFT JOIN service s ON s.id = r.service_id"
                " WHERE r.jurisdiction_id = :j"
            ),
            j,
        ):
            state.crew_rules.setdefault(rule.crew_id, set()).add((rule.area, rule.service))
        for template in await session.execute(
            text(
                "SELECT t.id, t.status, t.language, s.code AS service, t.body"
                " FROM response_template t LEFT JOIN service s ON s.id = t.service_id"
                " WHERE t.jurisdiction_id = :j"
            ),
            j,
        ):
            state.templates[(template.status, template.language, template.service)] = template
        return state


def _jurisdiction_values(
    j: Jurisdiction, history: History, notifications: Notifications
) -> dict[str, Any]:
    return {
        "history": history.model_dump(mode="json", exclude_defaults=True),
        "notifications": notifications.model_dump(mode="json", exclude_defaults=True),
        "name": j.name,
        "timezone": j.timezone,
        "languages": list(j.languages),
        "reference_prefix": j.reference_prefix,
        "allow_anonymous": j.allow_anonymous,
        "business_hours": {
            day: [list(span) for span in spans] for day, spans in j.business_hours.items()
        },
        "holidays": sorted(j.holidays),
    }


async def _jurisdiction(
    session: AsyncSession,
    state: _State,
    wanted: Jurisdiction,
    history: History,
    notifications: Notifications,
    boundary: Shape,
    outcome: Outcome,
) -> int:
    values = _jurisdiction_values(wanted, history, notifications)
    params = {
        **values,
        "business_hours": json.dumps(values["business_hours"]),
        "history": json.dumps(values["history"]),
        "notifications": json.dumps(values["notifications"]),
        "slug": wanted.slug,
        "boundary": boundary.ewkt,
    }
    current = state.jurisdiction
    if current is None:
        outcome.changes.append(Change("jurisdiction", wanted.slug, "create"))
        outcome.changes.append(Change("boundary", wanted.slug, "create"))
        return int(
            (
                await session.execute(
                    text(
                        "INSERT INTO jurisdiction (slug, name, boundary, timezone, languages,"
                        " reference_prefix, allow_anonymous, business_hours, holidays, history,"
                        " notifications)"
                        " VALUES (:slug, :name, ST_GeomFromEWKT(:boundary), :timezone,"
                        " :languages, :reference_prefix, :allow_anonymous,"
                        " CAST(:business_hours AS jsonb), :holidays, CAST(:history AS jsonb),"
                        " CAST(:notifications AS jsonb))"
                        " RETURNING id"
                    ),
                    params,
                )
            ).scalar_one()
        )
    have = {
        "name": current.name,
        "timezone": current.timezone,
        "languages": list(current.languages),
        "reference_prefix": current.reference_prefix,
        "allow_anonymous": current.allow_anonymous,
        "business_hours": current.business_hours,
        "holidays": sorted(current.holidays),
        "history": current.history,
        "notifications": current.notifications,
    }
    differs = tuple(k for k in values if values[k] != have[k])
    outcome.changes.append(
        Change("jurisdiction", wanted.slug, "update" if differs else "unchanged", differs)
    )
    boundary_differs = state.boundary_ewkt != boundary.ewkt
    outcome.changes.append(
        Change("boundary", wanted.slug, "update" if boundary_differs else "unchanged")
    )
    if differs or boundary_differs:
        await session.execute(
            text(
                "UPDATE jurisdiction SET name = :name, boundary = ST_GeomFromEWKT(:boundary),"
                " timezone = :timezone, languages = :languages,"
                " reference_prefix = :reference_prefix, allow_anonymous = :allow_anonymous,"
                " business_hours = CAST(:business_hours AS jsonb), holidays = :holidays,"
                " history = CAST(:history AS jsonb), notifications = CAST(:notifications AS jsonb)"
                " WHERE id = :id"
            ),
            {**params, "id": current.id},
        )
    return int(current.id)


async def _privacy(
    session: AsyncSession,
    state: _State,
    jurisdiction_id: int,
    slug: str,
    wanted: Privacy,
    outcome: Outcome,
) -> None:
    """The city's retention settings (their own column and change line, so the jurisdiction
    section and the admin API's writes of it leave them alone)."""
    values = wanted.model_dump(mode="json", exclude_defaults=True)
    have = state.jurisdiction.privacy if state.jurisdiction is not None else {}
    if values == have:
        return  # a line only when it changes: plans of cities without the section stay as they were
    action: Action = "create" if state.jurisdiction is None else "update"
    outcome.changes.append(Change("privacy", slug, action, tuple(sorted(values))))
    await session.execute(
        text("UPDATE jurisdiction SET privacy = CAST(:privacy AS jsonb) WHERE id = :id"),
        {"privacy": json.dumps(values), "id": jurisdiction_id},
    )


async def lock(session: AsyncSession) -> None:
    """Serialise with every other apply and admin write until the transaction ends."""
    await session.execute(_LOCK)


async def write_jurisdiction(
    session: AsyncSession, wanted: Jurisdiction, boundary: Shape, outcome: Outcome
) -> int:
    """Create the jurisdiction ``wanted.slug`` or update its section and boundary (the admin
    API's path; ``apply`` does the same for a whole file). Returns its id."""
    state = await _State.read(session, wanted.slug)
    # The section and boundary only: the city's import settings stay as they are.
    current = state.jurisdiction
    kept = History.model_validate(current.history) if current else History()
    policy = Notifications.model_validate(current.notifications) if current else Notifications()
    return await _jurisdiction(session, state, wanted, kept, policy, boundary, outcome)


async def _areas(
    session: AsyncSession,
    state: _State,
    jurisdiction_id: int,
    areas: list[AreaShape],
    outcome: Outcome,
) -> dict[str, int]:
    ids: dict[str, int] = {}
    wanted = {(a.kind, a.code): a for a in areas}
    for key, current in state.areas.items():
        if key in wanted:
            continue
        tickets = (
            await session.execute(
                text("SELECT count(*) FROM ticket WHERE area_id = :id"), {"id": current.id}
            )
        ).scalar_one()
        if tickets:
            raise CityFileError(
                f"areas: {key[0]} {key[1]} is not in the file but {tickets} tickets lie in it;"
                " keep it in the file (areas holding tickets are never deleted)",
                errors=[
                    {
                        "field": "areas",
                        "message": f"{key[0]} {key[1]} holds {tickets} tickets",
                        "type": "in_use",
                    }
                ],
            )
        outcome.changes.append(Change("area", f"{key[0]} {key[1]}", "delete"))
        await session.execute(text("DELETE FROM area WHERE id = :id"), {"id": current.id})
    for key, area in wanted.items():
        label = f"{key[0]} {key[1]}"
        current = state.areas.get(key)
        if current is None:
            outcome.changes.append(Change("area", label, "create"))
            ids[area.code] = (
                await session.execute(
                    text(
                        "INSERT INTO area (jurisdiction_id, kind, code, name, geom)"
                        " VALUES (:j, :kind, :code, :name, ST_GeomFromEWKT(:ewkt)) RETURNING id"
                    ),
                    {
                        "j": jurisdiction_id,
                        "kind": area.kind,
                        "code": area.code,
                        "name": area.name,
                        "ewkt": area.shape.ewkt,
                    },
                )
            ).scalar_one()
            continue
        ids[area.code] = current.id
        differs = tuple(
            name
            for name, same in (
                ("name", current.name == area.name),
                ("geometry", current.ewkt == area.shape.ewkt),
            )
            if not same
        )
        outcome.changes.append(Change("area", label, "update" if differs else "unchanged", differs))
        if differs:
            # The area_part pieces follow by trigger (see app/jurisdictions/models.py).
            await session.execute(
                text("UPDATE area SET name = :name, geom = ST_GeomFromEWKT(:ewkt) WHERE id = :id"),
                {"name": area.name, "ewkt": area.shape.ewkt, "id": current.id},
            )
    return ids


_SERVICE_COLUMNS = (
    "names",
    "descriptions",
    "group",
    "keywords",
    "hashtags",
    "duplicate_strategy",
    "duplicate_radius_m",
    "duplicate_street_within_m",
    "duplicate_window",
    "acknowledge_within",
    "resolve_within",
    "business_hours",
    "hazard_level",
    "attributes",
    "description_required",
    "completion_photo_required",
    "reopen_within",
    "public_location_snap_m",
    "active",
)
_JSON_COLUMNS = {"names", "descriptions", "keywords", "hashtags", "attributes"}


def _attributes(attributes: list[Attribute]) -> list[dict[str, Any]]:
    out = []
    for attribute in attributes:
        data = attribute.model_dump(exclude_none=True)
        if not data.get("values"):
            data.pop("values", None)
        out.append(data)
    return out


def _service_values(service: Service) -> dict[str, Any]:
    values = {name: getattr(service, name) for name in _SERVICE_COLUMNS}
    values["attributes"] = _attributes(service.attributes)
    values["names"] = dict(service.names)
    values["descriptions"] = dict(service.descriptions)
    values["keywords"] = {k: list(v) for k, v in service.keywords.items()}
    values["hashtags"] = {k: list(v) for k, v in service.hashtags.items()}
    return values


_COLUMNS = ", ".join(f'"{c}"' for c in _SERVICE_COLUMNS)
_PLACEHOLDERS = ", ".join(
    f"CAST(:{c} AS jsonb)" if c in _JSON_COLUMNS else f":{c}" for c in _SERVICE_COLUMNS
)
_ASSIGNMENTS = ", ".join(
    f'"{c}" = CAST(:{c} AS jsonb)' if c in _JSON_COLUMNS else f'"{c}" = :{c}'
    for c in _SERVICE_COLUMNS
)


async def write_service(
    session: AsyncSession, jurisdiction_id: int, service: Service, current: Any, outcome: Outcome
) -> int:
    """Create ``service``, or update the row ``current`` (a ``service`` row) where it differs;
    the change goes into ``outcome``. Returns the service's id. The file and the admin API
    both write services here."""
    values = _service_values(service)
    params = {k: json.dumps(v) if k in _JSON_COLUMNS else v for k, v in values.items()} | {
        "j": jurisdiction_id,
        "code": service.code,
    }
    if current is None:
        outcome.changes.append(Change("service", service.code, "create"))
        return int(
            (
                await session.execute(
                    text(
                        f"INSERT INTO service (jurisdiction_id, code, {_COLUMNS})"  # noqa: S608
                        f" VALUES (:j, :code, {_PLACEHOLDERS}) RETURNING id"
                    ),
                    params,
                )
            ).scalar_one()
        )
    differs = tuple(c for c in _SERVICE_COLUMNS if getattr(current, c) != values[c])
    outcome.changes.append(
        Change("service", service.code, "update" if differs else "unchanged", differs)
    )
    if differs:
        await session.execute(
            text(f"UPDATE service SET {_ASSIGNMENTS} WHERE id = :id"),  # noqa: S608
            params | {"id": current.id},
        )
    return int(current.id)


def service_of(row: Any) -> Service:
    """A ``service`` row as the city file writes it."""
    values = {c: getattr(row, c) for c in _SERVICE_COLUMNS}
    values["attributes"] = [Attribute.model_validate(a) for a in values["attributes"]]
    return Service(code=row.code, **values)


async def _services(
    session: AsyncSession,
    state: _State,
    jurisdiction_id: int,
    services: list[Service],
    outcome: Outcome,
) -> dict[str, int]:
    ids: dict[str, int] = {}
    for service in services:
        ids[service.code] = await write_service(
            session, jurisdiction_id, service, state.services.get(service.code), outcome
        )
    wanted = {s.code for s in services}
    for code, current in state.services.items():
        if code in wanted:
            continue
        ids[code] = current.id
        if current.active:
            outcome.changes.append(Change("service", code, "deactivate"))
            await session.execute(
                text("UPDATE service SET active = false WHERE id = :id"), {"id": current.id}
            )
        else:
            outcome.changes.append(Change("service", code, "unchanged", ("inactive",)))
    return ids


async def _crews(
    session: AsyncSession,
    state: _State,
    jurisdiction_id: int,
    crews: list[Crew],
    area_ids: dict[str, int],
    service_ids: dict[str, int],
    outcome: Outcome,
) -> None:
    # Rules are replaced as a whole per crew; drop every changed crew's rules first, so a
    # scope that moves from one crew to another never meets its old row.
    planned: list[tuple[Crew, Any, set[str], set[tuple[str | None, str | None]], tuple[str, ...]]]
    planned = []
    for crew in crews:
        areas = set(crew.areas)
        rules = {scope for rule in crew.assign for scope in _scopes(rule)}
        current = state.crews.get(crew.name)
        if current is None:
            planned.append((crew, None, areas, rules, ("new",)))
            continue
        differs = tuple(
            name
            for name, same in (
                ("active", current.active == crew.active),
                ("areas", state.crew_areas.get(current.id, set()) == areas),
                ("assign", state.crew_rules.get(current.id, set()) == rules),
            )
            if not same
        )
        planned.append((crew, current, areas, rules, differs))
        if "assign" in differs:
            await session.execute(
                text("DELETE FROM assignment_rule WHERE crew_id = :c"), {"c": current.id}
            )
    for crew, current, areas, rules, differs in planned:
        if current is None:
            outcome.changes.append(Change("crew", crew.name, "create"))
            crew_id = (
                await session.execute(
                    text(
                        "INSERT INTO crew (jurisdiction_id, name, active)"
                        " VALUES (:j, :name, :active) RETURNING id"
                    ),
                    {"j": jurisdiction_id, "name": crew.name, "active": crew.active},
                )
            ).scalar_one()
        else:
            crew_id = current.id
            outcome.changes.append(
                Change("crew", crew.name, "update" if differs else "unchanged", differs)
            )
            if not differs:
                continue
            await session.execute(
                text("UPDATE crew SET active = :active WHERE id = :id"),
                {"active": crew.active, "id": crew_id},
            )
        if current is None or "areas" in differs:
            await session.execute(text("DELETE FROM crew_area WHERE crew_id = :c"), {"c": crew_id})
            if areas:
                await session.execute(
                    text("INSERT INTO crew_area (crew_id, area_id) VALUES (:c, :a)"),
                    [{"c": crew_id, "a": area_ids[code]} for code in sorted(areas)],
                )
        if (current is None or "assign" in differs) and rules:
            await session.execute(
                text(
                    "INSERT INTO assignment_rule (jurisdiction_id, area_id, service_id, crew_id)"
                    " VALUES (:j, :a, :s, :c)"
                ),
                [
                    {
                        "j": jurisdiction_id,
                        "a": area_ids[a] if a else None,
                        "s": service_ids[s] if s else None,
                        "c": crew_id,
                    }
                    for a, s in sorted(rules, key=lambda r: (r[0] or "", r[1] or ""))
                ],
            )
    wanted = {c.name for c in crews}
    for name, current in state.crews.items():
        if name in wanted:
            continue
        if current.active:
            # Its work orders stay its own; it takes no new ones.
            outcome.changes.append(Change("crew", name, "deactivate"))
            await session.execute(
                text("UPDATE crew SET active = false WHERE id = :id"), {"id": current.id}
            )
            await session.execute(
                text("DELETE FROM assignment_rule WHERE crew_id = :c"), {"c": current.id}
            )


async def _templates(
    session: AsyncSession,
    state: _State,
    jurisdiction_id: int,
    templates: list[Template],
    service_ids: dict[str, int],
    outcome: Outcome,
) -> None:
    wanted = {(t.status, t.language, t.service): t for t in templates}
    for key, current in state.templates.items():
        if key not in wanted:
            outcome.changes.append(Change("template", _template_key(key), "delete"))
            await session.execute(
                text("DELETE FROM response_template WHERE id = :id"), {"id": current.id}
            )
    for key, template in wanted.items():
        current = state.templates.get(key)
        if current is not None and current.body == template.body:
            outcome.changes.append(Change("template", _template_key(key), "unchanged"))
            continue
        outcome.changes.append(
            Change(
                "template",
                _template_key(key),
                "create" if current is None else "update",
                () if current is None else ("body",),
            )
        )
        await session.execute(
            text(
                "INSERT INTO response_template (jurisdiction_id, service_id, status, language,"
                " body) VALUES (:j, :s, :status, :language, :body)"
                " ON CONFLICT (jurisdiction_id, service_id, status, language)"
                " DO UPDATE SET body = EXCLUDED.body, updated_at = now()"
            ),
            {
                "j": jurisdiction_id,
                "s": service_ids[template.service] if template.service else None,
                "status": template.status,
                "language": template.language,
                "body": template.body,
            },
        )


async def _classify(
    session: AsyncSession,
    jurisdiction_id: int,
    slug: str,
    wanted: Classify,
    outcome: Outcome,
    *,
    created: bool,
) -> None:
    """The ``classify`` section, in its own column (a section of its own in the plan)."""
    await _json_section(session, "classify", jurisdiction_id, slug, wanted, outcome, created)


async def _talk(
    session: AsyncSession,
    jurisdiction_id: int,
    slug: str,
    wanted: Talk,
    outcome: Outcome,
    *,
    created: bool,
) -> None:
    """The ``talk`` section (spike thresholds), in its own column, as ``classify``."""
    await _json_section(session, "talk", jurisdiction_id, slug, wanted, outcome, created)


# The sections kept whole in a JSON column of ``jurisdiction`` named as the section.
_SECTIONS: dict[str, type[Classify] | type[Talk]] = {"classify": Classify, "talk": Talk}


async def _json_section(
    session: AsyncSession,
    column: Literal["classify", "talk"],
    jurisdiction_id: int,
    slug: str,
    wanted: Classify | Talk,
    outcome: Outcome,
    created: bool,
) -> None:
    values = wanted.model_dump(mode="json", exclude_defaults=True)
    current = await _section_of(session, column, jurisdiction_id)
    have = current.model_dump(mode="json", exclude_defaults=True)
    if values == have:
        # A new city without the section: nothing to plan (the defaults are the column's).
        if not created:
            outcome.changes.append(Change(column, slug, "unchanged"))
        return
    differs = tuple(sorted(k for k in {*values, *have} if values.get(k) != have.get(k)))
    if created:
        outcome.changes.append(Change(column, slug, "create"))
    else:
        outcome.changes.append(Change(column, slug, "update", differs))
    await session.execute(
        text(f"UPDATE jurisdiction SET {column} = CAST(:v AS jsonb) WHERE id = :id"),  # noqa: S608 (a code constant)
        {"v": json.dumps(values), "id": jurisdiction_id},
    )


async def _section_of(
    session: AsyncSession, column: Literal["classify", "talk"], jurisdiction_id: int
) -> Classify | Talk:
    stored = (
        await session.execute(
            text(f"SELECT {column} FROM jurisdiction WHERE id = :id"),  # noqa: S608 (a constant)
            {"id": jurisdiction_id},
        )
    ).scalar_one()
    return _SECTIONS[column].model_validate(stored or {})


async def _classify_of(session: AsyncSession, jurisdiction_id: int) -> Classify:
    found = await _section_of(session, "classify", jurisdiction_id)
    assert isinstance(found, Classify)
    return found


async def _talk_of(session: AsyncSession, jurisdiction_id: int) -> Talk:
    found = await _section_of(session, "talk", jurisdiction_id)
    assert isinstance(found, Talk)
    return found


def _check_channels(city: CityFile) -> None:
    """Every secret the ``channels`` section names must be in this environment: a city whose
    messages cannot go out is refused at the plan, not found out at the first message."""
    problems = accounts.missing(city.channels)
    if problems:
        raise CityFileError(
            f"{problems[0].field}: {problems[0].message}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            errors=[
                {"field": p.field, "message": p.message, "type": "environment"} for p in problems
            ],
        )


async def _channels(
    session: AsyncSession,
    jurisdiction_id: int,
    slug: str,
    wanted: CityChannels,
    outcome: Outcome,
    *,
    created: bool,
) -> None:
    """The ``channels`` section, in its own column (a section of its own in the plan)."""
    values = wanted.model_dump(mode="json", exclude_defaults=True)
    have = (await _channels_of(session, jurisdiction_id)).model_dump(
        mode="json", exclude_defaults=True
    )
    if values == have:
        if not created:
            outcome.changes.append(Change("channels", slug, "unchanged"))
        return
    differs = tuple(sorted(k for k in {*values, *have} if values.get(k) != have.get(k)))
    outcome.changes.append(
        Change("channels", slug, "create")
        if created
        else Change("channels", slug, "update", differs)
    )
    await session.execute(
        text("UPDATE jurisdiction SET channels = CAST(:v AS jsonb) WHERE id = :id"),
        {"v": json.dumps(values), "id": jurisdiction_id},
    )


async def _channels_of(session: AsyncSession, jurisdiction_id: int) -> CityChannels:
    stored = (
        await session.execute(
            text("SELECT channels FROM jurisdiction WHERE id = :id"), {"id": jurisdiction_id}
        )
    ).scalar_one()
    return CityChannels.model_validate(stored or {})


def _template_key(key: tuple[str, str, str | None]) -> str:
    status, language, service = key
    return f"{status}/{language}" + (f"/{service}" if service else "")


_MISROUTED = f"""
    SELECT t.id, {area_at_sql("t.location", "t.jurisdiction_id")} AS area_id
    FROM ticket t
    WHERE t.jurisdiction_id = :j AND t.status IN {_OPEN}
"""  # noqa: S608 (code constants only)


async def misrouted(session: AsyncSession, jurisdiction_id: int) -> int:
    return int(
        (
            await session.execute(
                text(
                    f"SELECT count(*) FROM ({_MISROUTED}) m JOIN ticket t ON t.id = m.id"  # noqa: S608
                    " WHERE t.area_id IS DISTINCT FROM m.area_id"
                ),
                {"j": jurisdiction_id},
            )
        ).scalar_one()
    )


async def reroute(session: AsyncSession, jurisdiction_id: int) -> int:
    """Give every open ticket the area its point now lies in; returns how many moved."""
    result = await session.execute(
        text(
            f"UPDATE ticket t SET area_id = m.area_id, updated_at = now()"  # noqa: S608
            f" FROM ({_MISROUTED}) m WHERE t.id = m.id AND t.area_id IS DISTINCT FROM m.area_id"
        ),
        {"j": jurisdiction_id},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- exporting ---------------------------------------------------------------------------------


async def export(session: AsyncSession, slug: str) -> CityFile:
    """The jurisdiction ``slug`` as a city file (geometry inline, in WGS84)."""
    state = await _State.read(session, slug)
    current = state.jurisdiction
    if current is None:
        raise CityFileError(
            f"No jurisdiction {slug!r}",
            errors=[{"field": "slug", "message": "unknown", "type": "not_found"}],
        )
    geojson = (
        await session.execute(
            text("SELECT ST_AsGeoJSON(boundary, 9) FROM jurisdiction WHERE id = :id"),
            {"id": current.id},
        )
    ).scalar_one()
    kinds: dict[str, list[dict[str, Any]]] = {}
    for area in await session.execute(
        text(
            "SELECT kind, code, name, ST_AsGeoJSON(geom, 9) AS geojson FROM area"
            " WHERE jurisdiction_id = :j ORDER BY kind, code"
        ),
        {"j": current.id},
    ):
        kinds.setdefault(area.kind, []).append(
            {
                "type": "Feature",
                "properties": {"code": area.code, "name": area.name},
                "geometry": json.loads(area.geojson),
            }
        )
    services = []
    for code in sorted(state.services):
        services.append(service_of(state.services[code]))
    crews = []
    crew_names = {c.id: name for name, c in state.crews.items()}
    for crew_id, name in sorted(crew_names.items(), key=lambda kv: kv[1]):
        rules_by_service: dict[str | None, list[str | None]] = {}
        for area_code, service_code in state.crew_rules.get(crew_id, set()):
            rules_by_service.setdefault(service_code, []).append(area_code)
        assign = []
        for service, areas in sorted(rules_by_service.items(), key=lambda kv: kv[0] or ""):
            named = sorted(a for a in areas if a is not None)
            if None in areas:
                assign.append(AssignmentRule(areas=[], services=[service] if service else []))
            if named:
                assign.append(AssignmentRule(areas=named, services=[service] if service else []))
        crews.append(
            Crew(
                name=name,
                areas=sorted(state.crew_areas.get(crew_id, set())),
                assign=assign,
                active=state.crews[name].active,
            )
        )
    templates = [
        Template(status=s, language=lang, service=svc, body=row.body)
        for (s, lang, svc), row in sorted(
            state.templates.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")
        )
    ]
    return CityFile(
        jurisdiction=jurisdiction_of(current),
        boundary=GeometrySource(geojson=json.loads(geojson)),
        areas=[
            AreaSet(
                kind=kind,
                geojson={"type": "FeatureCollection", "features": features},
                code_property="code",
                name_property="name",
            )
            for kind, features in kinds.items()
        ],
        services=services,
        crews=crews,
        templates=templates,
        history=History.model_validate(current.history or {}),
        notifications=Notifications.model_validate(current.notifications or {}),
        classify=await _classify_of(session, current.id),
        privacy=Privacy.model_validate(current.privacy or {}),
        social=await social_config.read(session, current.id),
        talk=await _talk_of(session, current.id),
        channels=await _channels_of(session, current.id),
    )


def jurisdiction_of(row: Any) -> Jurisdiction:
    """A ``jurisdiction`` row as the city file writes it."""
    return Jurisdiction(
        slug=row.slug,
        name=row.name,
        timezone=row.timezone,
        languages=list(row.languages),
        reference_prefix=row.reference_prefix,
        allow_anonymous=row.allow_anonymous,
        business_hours=row.business_hours,
        holidays=list(row.holidays),
    )


def dump(city: CityFile) -> str:
    """The city file as YAML: defaults left out, in the order the format declares."""
    data = city.model_dump(mode="json", exclude_defaults=True)
    data = {"kerbside": city.kerbside, **data}
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
