"""Crew use cases for staff and admins: crews, territories, members, assignment rules.

Staff act for their own jurisdiction; admins for any (and must name it when creating).
Objects of another jurisdiction answer 404, as if they did not exist; naming another
jurisdiction outright answers 403.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal, ensure_same_jurisdiction
from app.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.crews import repository as sql
from app.crews.schemas import (
    AreaOut,
    AreaRef,
    CrewIn,
    CrewOut,
    CrewPatch,
    CrewRef,
    MemberOut,
    RuleIn,
    RuleOut,
    RulePatch,
    ServiceRef,
    TerritoryIn,
)


def acting_jurisdiction(
    principal: Principal, requested: int | None, *, required: bool
) -> int | None:
    """The jurisdiction a request acts for: staff their own, admins the one they name.

    ``None`` only for admins who named none where none is ``required`` (a list of all).
    """
    if principal.is_admin:
        if requested is None and required:
            raise InvalidInput(
                "Admins must say which jurisdiction: send jurisdiction_id",
                errors=[{"field": "jurisdiction_id", "message": "missing", "type": "missing"}],
            )
        return requested
    if principal.jurisdiction_id is None:
        raise Forbidden("Your account belongs to no jurisdiction")
    if requested is not None:
        ensure_same_jurisdiction(principal, requested)
    return principal.jurisdiction_id


# -- crews ---------------------------------------------------------------------------------------


async def list_crews(
    session: AsyncSession,
    principal: Principal,
    jurisdiction_id: int | None,
    *,
    include_inactive: bool,
) -> list[CrewOut]:
    scope = acting_jurisdiction(principal, jurisdiction_id, required=False)
    rows = await sql.list_crews(session, scope, include_inactive=include_inactive)
    return [_crew_out(r) for r in rows]


async def get_crew(session: AsyncSession, principal: Principal, crew_id: int) -> CrewOut:
    return _crew_out(await _visible_crew(session, principal, crew_id))


async def create_crew(session: AsyncSession, principal: Principal, body: CrewIn) -> CrewOut:
    jurisdiction_id = acting_jurisdiction(principal, body.jurisdiction_id, required=True)
    assert jurisdiction_id is not None
    await _ensure_jurisdiction_exists(session, jurisdiction_id)
    if await sql.crew_name_taken(session, jurisdiction_id, body.name):
        raise Conflict(f"A crew named {body.name!r} already exists in this jurisdiction")
    await _ensure_owned(session, "area", "area_ids", body.area_ids, jurisdiction_id)
    crew_id = await sql.insert_crew(session, jurisdiction_id, body.name)
    await sql.set_areas(session, crew_id, sorted(set(body.area_ids)))
    return await get_crew(session, principal, crew_id)


async def update_crew(
    session: AsyncSession, principal: Principal, crew_id: int, body: CrewPatch
) -> CrewOut:
    crew = await _visible_crew(session, principal, crew_id, lock=True)
    if body.name is not None and await sql.crew_name_taken(
        session, crew.jurisdiction_id, body.name, other_than=crew_id
    ):
        raise Conflict(f"A crew named {body.name!r} already exists in this jurisdiction")
    await sql.update_crew(session, crew_id, name=body.name, active=body.active)
    return await get_crew(session, principal, crew_id)


async def deactivate_crew(session: AsyncSession, principal: Principal, crew_id: int) -> None:
    """Crews are kept for the history of the tickets they worked; deactivating is harmless twice."""
    await _visible_crew(session, principal, crew_id, lock=True)
    await sql.update_crew(session, crew_id, name=None, active=False)


async def set_territory(
    session: AsyncSession, principal: Principal, crew_id: int, body: TerritoryIn
) -> CrewOut:
    crew = await _visible_crew(session, principal, crew_id, lock=True)
    area_ids = sorted(set(body.area_ids))
    await _ensure_owned(session, "area", "area_ids", area_ids, crew.jurisdiction_id)
    await sql.set_areas(session, crew_id, area_ids)
    return await get_crew(session, principal, crew_id)


async def crew_members(
    session: AsyncSession, principal: Principal, crew_id: int
) -> list[MemberOut]:
    await _visible_crew(session, principal, crew_id)
    return [
        MemberOut(id=r.id, email=r.email, full_name=r.full_name, role=r.role, is_active=r.is_active)
        for r in await sql.members(session, crew_id)
    ]


async def list_areas(
    session: AsyncSession, principal: Principal, jurisdiction_id: int | None
) -> list[AreaOut]:
    scope = acting_jurisdiction(principal, jurisdiction_id, required=False)
    return [
        AreaOut(
            id=r.id,
            jurisdiction_id=r.jurisdiction_id,
            kind=r.kind,
            code=r.code,
            name=r.name,
            crew_ids=list(r.crew_ids),
        )
        for r in await sql.areas(session, scope)
    ]


async def _visible_crew(
    session: AsyncSession, principal: Principal, crew_id: int, *, lock: bool = False
) -> Any:
    row = await sql.crew(session, crew_id, lock=lock)
    if row is None or not (principal.is_admin or row.jurisdiction_id == principal.jurisdiction_id):
        raise NotFound(f"No crew {crew_id}")
    return row


def _crew_out(row: Any) -> CrewOut:
    return CrewOut(
        id=row.id,
        jurisdiction_id=row.jurisdiction_id,
        name=row.name,
        active=row.active,
        areas=[AreaRef(**a) for a in row.areas],
        members=row.members,
        created_at=row.created_at,
    )


# -- assignment rules ----------------------------------------------------------------------------


async def list_rules(
    session: AsyncSession, principal: Principal, jurisdiction_id: int | None
) -> list[RuleOut]:
    scope = acting_jurisdiction(principal, jurisdiction_id, required=False)
    return [_rule_out(r) for r in await sql.rules(session, scope)]


async def create_rule(session: AsyncSession, principal: Principal, body: RuleIn) -> RuleOut:
    jurisdiction_id = acting_jurisdiction(principal, body.jurisdiction_id, required=True)
    assert jurisdiction_id is not None
    await _check_rule(session, jurisdiction_id, body.area_id, body.service_id, body.crew_id)
    rule_id = await sql.insert_rule(
        session, jurisdiction_id, body.area_id, body.service_id, body.crew_id
    )
    return _rule_out(await sql.rule(session, rule_id))


async def update_rule(
    session: AsyncSession, principal: Principal, rule_id: int, body: RulePatch
) -> RuleOut:
    current = await _visible_rule(session, principal, rule_id)
    sent = body.model_fields_set
    area_id = body.area_id if "area_id" in sent else current.area_id
    service_id = body.service_id if "service_id" in sent else current.service_id
    crew_id = body.crew_id if body.crew_id is not None else current.crew_id
    await _check_rule(
        session, current.jurisdiction_id, area_id, service_id, crew_id, other_than=rule_id
    )
    await sql.update_rule(session, rule_id, area_id, service_id, crew_id)
    return _rule_out(await sql.rule(session, rule_id))


async def delete_rule(session: AsyncSession, principal: Principal, rule_id: int) -> None:
    await _visible_rule(session, principal, rule_id)
    await sql.delete_rule(session, rule_id)


async def _visible_rule(session: AsyncSession, principal: Principal, rule_id: int) -> Any:
    row = await sql.rule(session, rule_id)
    if row is None or not (principal.is_admin or row.jurisdiction_id == principal.jurisdiction_id):
        raise NotFound(f"No assignment rule {rule_id}")
    return row


async def _check_rule(
    session: AsyncSession,
    jurisdiction_id: int,
    area_id: int | None,
    service_id: int | None,
    crew_id: int,
    *,
    other_than: int | None = None,
) -> None:
    await _ensure_owned(session, "crew", "crew_id", [crew_id], jurisdiction_id)
    if area_id is not None:
        await _ensure_owned(session, "area", "area_id", [area_id], jurisdiction_id)
    if service_id is not None:
        await _ensure_owned(session, "service", "service_id", [service_id], jurisdiction_id)
    crew = await sql.crew(session, crew_id)
    if not crew.active:
        raise InvalidInput(
            f"Crew {crew.name!r} is inactive; activate it or choose another",
            errors=[{"field": "crew_id", "message": "inactive crew", "type": "inactive"}],
        )
    taken = await sql.rule_scope_taken(
        session, jurisdiction_id, area_id, service_id, other_than=other_than
    )
    if taken is not None:
        raise Conflict(
            f"Assignment rule {taken} already covers this area and service; change that one",
            rule_id=taken,
        )


def _rule_out(row: Any) -> RuleOut:
    return RuleOut(
        id=row.id,
        jurisdiction_id=row.jurisdiction_id,
        area=AreaRef(id=row.area_id, code=row.area_code, name=row.area_name)
        if row.area_id is not None
        else None,
        service=ServiceRef(id=row.service_id, code=row.service_code)
        if row.service_id is not None
        else None,
        crew=CrewRef(id=row.crew_id, name=row.crew_name, active=row.crew_active),
        created_at=row.created_at,
    )


# -- shared checks -------------------------------------------------------------------------------


async def _ensure_owned(
    session: AsyncSession, table: str, field: str, ids: Sequence[int], jurisdiction_id: int
) -> None:
    """422 naming the ids that are not the jurisdiction's (missing or someone else's alike)."""
    foreign = await sql.foreign_ids(session, table, ids, jurisdiction_id)
    if foreign:
        listed = ", ".join(str(i) for i in foreign)
        raise InvalidInput(
            f"No {table} {listed} in this jurisdiction",
            errors=[
                {"field": field, "message": f"unknown {table} {i}", "type": "unknown_id"}
                for i in foreign
            ],
        )


async def _ensure_jurisdiction_exists(session: AsyncSession, jurisdiction_id: int) -> None:
    if not await sql.jurisdiction_exists(session, jurisdiction_id):
        raise InvalidInput(
            f"No jurisdiction {jurisdiction_id}",
            errors=[{"field": "jurisdiction_id", "message": "unknown", "type": "unknown_id"}],
        )
