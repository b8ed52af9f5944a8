"""Queries for crews, their territories (``crew_area``) and the assignment rules.

What other domains need of crews (the territory, a crew's jurisdiction) is ``app.crews.sql``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# -- crews ---------------------------------------------------------------------------------------

_CREW_COLUMNS = """
    c.id, c.jurisdiction_id, c.name, c.active, c.created_at,
    coalesce((SELECT json_agg(json_build_object('id', a.id, 'code', a.code, 'name', a.name)
                              ORDER BY a.code, a.id)
              FROM crew_area ca JOIN area a ON a.id = ca.area_id WHERE ca.crew_id = c.id),
             '[]'::json) AS areas,
    (SELECT count(*) FROM app_user u WHERE u.crew_id = c.id AND u.is_active) AS members
"""


async def list_crews(
    session: AsyncSession, jurisdiction_id: int | None, *, include_inactive: bool
) -> Sequence[Any]:
    result = await session.execute(
        text(
            "SELECT " + _CREW_COLUMNS + " FROM crew c"  # noqa: S608
            " WHERE (CAST(:j AS int) IS NULL OR c.jurisdiction_id = :j)"
            " AND (c.active OR :inactive) ORDER BY c.jurisdiction_id, c.name, c.id"
        ),
        {"j": jurisdiction_id, "inactive": include_inactive},
    )
    return result.all()


async def crew(session: AsyncSession, crew_id: int, *, lock: bool = False) -> Any:
    result = await session.execute(
        text(
            "SELECT "  # noqa: S608
            + _CREW_COLUMNS
            + " FROM crew c WHERE c.id = :id"
            + (" FOR UPDATE OF c" if lock else "")
        ),
        {"id": crew_id},
    )
    return result.first()


async def crew_name_taken(
    session: AsyncSession, jurisdiction_id: int, name: str, *, other_than: int | None = None
) -> bool:
    result = await session.execute(
        text(
            "SELECT 1 FROM crew WHERE jurisdiction_id = :j AND lower(name) = lower(:name)"
            " AND (CAST(:other AS int) IS NULL OR id <> :other)"
        ),
        {"j": jurisdiction_id, "name": name, "other": other_than},
    )
    return result.first() is not None


async def insert_crew(session: AsyncSession, jurisdiction_id: int, name: str) -> int:
    result = await session.execute(
        text("INSERT INTO crew (jurisdiction_id, name) VALUES (:j, :name) RETURNING id"),
        {"j": jurisdiction_id, "name": name},
    )
    return int(result.scalar_one())


async def update_crew(
    session: AsyncSession, crew_id: int, *, name: str | None, active: bool | None
) -> None:
    await session.execute(
        text(
            "UPDATE crew SET name = coalesce(:name, name), active = coalesce(:active, active)"
            " WHERE id = :id"
        ),
        {"id": crew_id, "name": name, "active": active},
    )


async def set_areas(session: AsyncSession, crew_id: int, area_ids: Sequence[int]) -> None:
    await session.execute(text("DELETE FROM crew_area WHERE crew_id = :c"), {"c": crew_id})
    if area_ids:
        await session.execute(
            text(
                "INSERT INTO crew_area (crew_id, area_id)"
                " SELECT :c, unnest(CAST(:areas AS int[])) ON CONFLICT DO NOTHING"
            ),
            {"c": crew_id, "areas": list(area_ids)},
        )


async def members(session: AsyncSession, crew_id: int) -> Sequence[Any]:
    result = await session.execute(
        text(
            "SELECT id, email, full_name, role, is_active FROM app_user WHERE crew_id = :c"
            " ORDER BY full_name NULLS LAST, email"
        ),
        {"c": crew_id},
    )
    return result.all()


# -- what belongs to a jurisdiction --------------------------------------------------------------


async def foreign_ids(
    session: AsyncSession, table: str, ids: Sequence[int], jurisdiction_id: int
) -> list[int]:
    """The ids among ``ids`` that are not rows of ``table`` in the jurisdiction."""
    if table not in _OWNED_TABLES:
        raise ValueError(f"not a jurisdiction's table: {table}")
    if not ids:
        return []
    result = await session.execute(
        text(
            "SELECT x FROM unnest(CAST(:ids AS int[])) AS x WHERE NOT EXISTS"  # noqa: S608
            f" (SELECT 1 FROM {table} o WHERE o.id = x AND o.jurisdiction_id = :j)"
            " ORDER BY x"
        ),
        {"ids": list(ids), "j": jurisdiction_id},
    )
    return [int(x) for x in result.scalars()]


_OWNED_TABLES = frozenset({"area", "service", "crew"})


async def jurisdiction_exists(session: AsyncSession, jurisdiction_id: int) -> bool:
    found = await session.execute(
        text("SELECT 1 FROM jurisdiction WHERE id = :j"), {"j": jurisdiction_id}
    )
    return found.first() is not None


async def areas(session: AsyncSession, jurisdiction_id: int | None) -> Sequence[Any]:
    result = await session.execute(
        text(
            "SELECT a.id, a.jurisdiction_id, a.kind, a.code, a.name,"
            " coalesce(array_agg(ca.crew_id ORDER BY ca.crew_id)"
            "          FILTER (WHERE ca.crew_id IS NOT NULL), '{}') AS crew_ids"
            " FROM area a LEFT JOIN crew_area ca ON ca.area_id = a.id"
            " WHERE (CAST(:j AS int) IS NULL OR a.jurisdiction_id = :j)"
            " GROUP BY a.id ORDER BY a.jurisdiction_id, a.kind, a.code"
        ),
        {"j": jurisdiction_id},
    )
    return result.all()


# -- assignment rules ----------------------------------------------------------------------------

_RULE_SELECT = """
    SELECT r.id, r.jurisdiction_id, r.created_at,
           r.area_id, a.code AS area_code, a.name AS area_name,
           r.service_id, s.code AS service_code,
           r.crew_id, c.name AS crew_name, c.active AS crew_active
    FROM assignment_rule r
    JOIN crew c ON c.id = r.crew_id
    LEFT JOIN area a ON a.id = r.area_id
    LEFT JOIN service s ON s.id = r.service_id
"""


async def rules(session: AsyncSession, jurisdiction_id: int | None) -> Sequence[Any]:
    result = await session.execute(
        text(
            _RULE_SELECT + " WHERE (CAST(:j AS int) IS NULL OR r.jurisdiction_id = :j)"
            " ORDER BY r.jurisdiction_id, a.code NULLS LAST, s.code NULLS LAST, r.id"
        ),
        {"j": jurisdiction_id},
    )
    return result.all()


async def rule(session: AsyncSession, rule_id: int) -> Any:
    result = await session.execute(text(_RULE_SELECT + " WHERE r.id = :id"), {"id": rule_id})
    return result.first()


async def rule_scope_taken(
    session: AsyncSession,
    jurisdiction_id: int,
    area_id: int | None,
    service_id: int | None,
    *,
    other_than: int | None = None,
) -> int | None:
    """The id of another rule with this (area, service) scope, if there is one."""
    result = await session.execute(
        text(
            "SELECT id FROM assignment_rule WHERE jurisdiction_id = :j"
            " AND area_id IS NOT DISTINCT FROM CAST(:area AS int)"
            " AND service_id IS NOT DISTINCT FROM CAST(:service AS int)"
            " AND (CAST(:other AS int) IS NULL OR id <> :other)"
        ),
        {"j": jurisdiction_id, "area": area_id, "service": service_id, "other": other_than},
    )
    found = result.scalar_one_or_none()
    return int(found) if found is not None else None


async def insert_rule(
    session: AsyncSession,
    jurisdiction_id: int,
    area_id: int | None,
    service_id: int | None,
    crew_id: int,
) -> int:
    result = await session.execute(
        text(
            "INSERT INTO assignment_rule (jurisdiction_id, area_id, service_id, crew_id)"
            " VALUES (:j, :area, :service, :crew) RETURNING id"
        ),
        {"j": jurisdiction_id, "area": area_id, "service": service_id, "crew": crew_id},
    )
    return int(result.scalar_one())


async def update_rule(
    session: AsyncSession, rule_id: int, area_id: int | None, service_id: int | None, crew_id: int
) -> None:
    await session.execute(
        text(
            "UPDATE assignment_rule SET area_id = :area, service_id = :service, crew_id = :crew"
            " WHERE id = :id"
        ),
        {"id": rule_id, "area": area_id, "service": service_id, "crew": crew_id},
    )


async def delete_rule(session: AsyncSession, rule_id: int) -> None:
    await session.execute(text("DELETE FROM assignment_rule WHERE id = :id"), {"id": rule_id})
