"""Work-order queries: hand-written SQL with bound parameters.

A search is one statement. The inner query finds the page's tickets in sort order (the
indexes decide how: ``ix_ticket_open_priority_due`` walks open tickets in priority order,
``ix_ticket_open_due`` in due order, the GiST index on ``location`` finds a small area); the
outer query joins just those rows to their service, area and crew. Every statement selects
``app.workorders.documents.COLUMNS``, read in binary, which that module turns into JSON.
Filter text comes from this module only; every value is a bound parameter.

Searches run as unnamed (unprepared) statements, so each is planned with its own values: a
street-sized box and a whole district want different plans, and a generic plan would guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import check_in
from app.crews.sql import territory_sql
from app.db import Db, HotStatement, driver_of
from app.tickets.models import OPEN_STATUSES
from app.tickets.sla import sla_state_sql
from app.workorders.documents import select_list
from app.workorders.schemas import Scope, Search, Sort
from geo.distance import near_params

NOW = "CAST(:now AS timestamptz)"
_POINT = "ST_SetSRID(ST_MakePoint(:near_lon, :near_lat), 4326)"
# Great-circle metres (PostGIS's sphere, as geo.route's haversine): half the cost of the
# spheroid, and the same distances the day route adds up.
DISTANCE = f"ST_Distance(t.location::geography, {_POINT}::geography, false)"
ACTIVE_WORK = ("assigned", "accepted", "en_route", "on_site")


# The page's rows come whole from the inner query (aliased ``t``): joining ``ticket`` again
# by id cost a planning pass over its sixteen indexes and a primary-key probe per row, a
# quarter of a district search's database time (measured).
_JOINS = (
    " JOIN service s ON s.id = t.service_id"
    " LEFT JOIN area a ON a.id = t.area_id"
    " LEFT JOIN crew c ON c.id = t.crew_id"
)

_ORDER = {
    Sort.priority: ("t.priority, t.resolve_due_at, t.id", "t.priority, t.resolve_due_at, t.id"),
    Sort.due: ("t.resolve_due_at, t.id", "t.resolve_due_at, t.id"),
    Sort.distance: ("distance_m, t.id", "t.distance_m, t.id"),
}


def scope_conditions(scope: Scope, params: dict[str, Any]) -> list[str]:
    where = []
    if scope.jurisdiction_id is not None:
        where.append("t.jurisdiction_id = :jurisdiction_id")
        params["jurisdiction_id"] = scope.jurisdiction_id
    if scope.crew_id is not None:
        where.append(territory_sql("t", "crew_id"))
        params["crew_id"] = scope.crew_id
    return where


def search_statement(
    scope: Scope,
    search: Search,
    *,
    now: datetime,
    within_m: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of one page of a work-order search (``limit + 1`` rows).

    ``within_m`` narrows the ``near`` circle below ``search.radius_m`` (see
    ``app.workorders.service`` for how distance pages choose it).
    """
    params: dict[str, Any] = {"now": now, "limit": search.limit + 1}
    where = _conditions(scope, search, params, within_m)
    distance = search.near is not None
    # Past a cursor, each branch is one range of an index (see _after); without one, one branch.
    branches = _after(search.sort, search.after, params) if search.after is not None else [""]
    inner_order, outer_order = _ORDER[search.sort]
    selects = [
        f"(SELECT t.*,"  # noqa: S608
        f" {DISTANCE if distance else 'CAST(NULL AS float8)'} AS distance_m"
        f" FROM ticket t WHERE {' AND '.join(where)}{branch}"
        f" ORDER BY {inner_order} LIMIT :limit)"
        for branch in branches
    ]
    page = (
        selects[0]
        if len(selects) == 1
        else f"(SELECT * FROM ({' UNION ALL '.join(selects)}) b"  # noqa: S608
        f" ORDER BY {inner_order.replace('t.', 'b.')} LIMIT :limit)"
    )
    sql = (
        f"SELECT {select_list('t.distance_m')}"  # noqa: S608
        f" FROM {page} t{_JOINS} ORDER BY {outer_order}"
    )
    return sql, params


def nearest_bound_statement(
    scope: Scope, search: Search, *, now: datetime
) -> tuple[str, dict[str, Any]]:
    """How far the page of a distance search can reach: the great-circle distance of the
    farthest of the ``limit + 1`` tickets nearest ``near`` in the GiST index's own order.

    The index orders by planar distance in degrees, which stretches east-west, so these are
    not exactly the nearest ones; but they are ``limit + 1`` tickets within that distance, so
    the true nearest ``limit + 1`` lie within it too. Rows: ``(found, farthest_m)``.
    """
    assert search.near is not None
    params: dict[str, Any] = {"now": now, "limit": search.limit + 1}
    # Without the circle: with it the planner misjudges how many rows the box holds and sorts
    # them all instead of walking the index in distance order.
    where = _conditions(scope, search, params, None, circle=False)
    lon, lat = search.near
    params.update(near_lon=lon, near_lat=lat)
    after = _after(search.sort, search.after, params)[0] if search.after is not None else ""
    sql = (
        f"SELECT count(*) AS found, max(k.distance_m) AS farthest_m FROM"  # noqa: S608
        f" (SELECT {DISTANCE} AS distance_m FROM ticket t WHERE {' AND '.join(where)}{after}"
        f" ORDER BY t.location <-> {_POINT} LIMIT :limit) k"
    )
    return sql, params


def _conditions(
    scope: Scope,
    search: Search,
    params: dict[str, Any],
    within_m: float | None,
    *,
    circle: bool = True,
) -> list[str]:
    """The WHERE conditions of ``search`` (its values into ``params``); ``circle``: with the
    ``near`` circle."""
    where = [check_in("t.status", OPEN_STATUSES), *scope_conditions(scope, params)]
    if search.statuses:
        where.append("t.status = ANY(CAST(:statuses AS text[]))")
        params["statuses"] = list(search.statuses)
    if search.work_statuses:
        named = [w for w in search.work_statuses if w != "none"]
        either = []
        if named:
            either.append("t.work_status = ANY(CAST(:work_statuses AS text[]))")
            params["work_statuses"] = named
        if "none" in search.work_statuses:
            either.append("t.work_status IS NULL")
        where.append("(" + " OR ".join(either) + ")")
    if search.area_ids:
        where.append("t.area_id = ANY(CAST(:area_ids AS int[]))")
        params["area_ids"] = list(search.area_ids)
    if search.service_codes:
        where.append(
            "t.service_id IN (SELECT sv.id FROM service sv"
            " WHERE sv.code = ANY(CAST(:service_codes AS text[])))"
        )
        params["service_codes"] = list(search.service_codes)
    if search.priorities:
        where.append("t.priority = ANY(CAST(:priorities AS int[]))")
        params["priorities"] = list(search.priorities)
    if search.sla_states:
        where.append(sla_state_sql("t", NOW) + " = ANY(CAST(:sla_states AS text[]))")
        params["sla_states"] = list(search.sla_states)
    if search.due_before is not None:
        where.append("t.resolve_due_at < :due_before")
        params["due_before"] = search.due_before
    if search.due_after is not None:
        where.append("t.resolve_due_at >= :due_after")
        params["due_after"] = search.due_after
    if search.bbox is not None:
        # Exact, edges included (&& alone compares float4 boxes: ~1 cm off at the edge).
        where.append("ST_Intersects(t.location, ST_MakeEnvelope(:bx0, :by0, :bx1, :by1, 4326))")
        params.update(zip(("bx0", "by0", "bx1", "by1"), search.bbox, strict=True))
    if search.polygon_wkb is not None:
        where.append("ST_Intersects(t.location, ST_GeomFromWKB(:polygon, 4326))")
        params["polygon"] = search.polygon_wkb
    if search.near is not None and circle:
        lon, lat = search.near
        params.update(near_lon=lon, near_lat=lat)
        radius = within_m if within_m is not None else search.radius_m
        if radius is not None:
            box = near_params(lon, lat, radius)
            where.append(
                "t.location && ST_MakeEnvelope(:nx0, :ny0, :nx1, :ny1, 4326)"
                f" AND ST_DWithin(t.location::geography, {_POINT}::geography, :radius_m, false)"
            )
            params.update(
                nx0=box["minx"], ny0=box["miny"], nx1=box["maxx"], ny1=box["maxy"],
                radius_m=radius,
            )  # fmt: skip
    return where


def _after(sort: Sort, key: tuple[object, ...], params: dict[str, Any]) -> list[str]:
    """Conditions for the rows strictly after the cursor's sort key, as disjoint branches.

    NULL due times sort last, and a row comparison with a NULL is never true, so rows with no
    due time get a branch of their own. Each branch is a plain range of the sort's index
    (``(a, b, c) > (x, y, z)`` is an index condition; an OR of conditions would not be), so a
    deep page costs what the first one does.
    """
    due_pair = "(CAST(:c_due AS timestamptz), CAST(:c_id AS bigint))"
    if sort == Sort.priority:
        priority, due, last_id = key
        params.update(c_priority=priority, c_due=due, c_id=last_id)
        if due is None:
            return [
                " AND t.priority = CAST(:c_priority AS int2) AND t.resolve_due_at IS NULL"
                " AND t.id > CAST(:c_id AS bigint)",
                " AND t.priority > CAST(:c_priority AS int2)",
            ]
        return [
            " AND (t.priority, t.resolve_due_at, t.id)"
            " > (CAST(:c_priority AS int2), CAST(:c_due AS timestamptz), CAST(:c_id AS bigint))",
            " AND t.priority = CAST(:c_priority AS int2) AND t.resolve_due_at IS NULL",
        ]
    if sort == Sort.due:
        due, last_id = key
        params.update(c_due=due, c_id=last_id)
        if due is None:
            return [" AND t.resolve_due_at IS NULL AND t.id > CAST(:c_id AS bigint)"]
        return [
            f" AND (t.resolve_due_at, t.id) > {due_pair}",
            " AND t.resolve_due_at IS NULL",
        ]
    distance_m, last_id = key
    params.update(c_distance=distance_m, c_id=last_id)
    return [f" AND ({DISTANCE}, t.id) > (CAST(:c_distance AS float8), CAST(:c_id AS bigint))"]


def one_statement(scope: Scope, reference: str, *, now: datetime) -> tuple[str, dict[str, Any]]:
    """One work order by reference, in any status, if the scope sees it."""
    params: dict[str, Any] = {"reference": reference.upper(), "now": now}
    where = ["t.reference = :reference", *scope_conditions(scope, params)]
    sql = f"SELECT {select_list()} FROM ticket t{_JOINS} WHERE {' AND '.join(where)}"  # noqa: S608
    return sql, params


def route_statement(crew_id: int, limit: int, *, now: datetime) -> tuple[str, dict[str, Any]]:
    """The crew's open, unfinished work orders (most urgent first)."""
    params: dict[str, Any] = {
        "route_crew": crew_id,
        "active": list(ACTIVE_WORK),
        "limit": limit,
        "now": now,
    }
    sql = (
        f"SELECT {select_list()}"  # noqa: S608
        " FROM (SELECT t.* FROM ticket t"
        f" WHERE t.crew_id = :route_crew AND {check_in('t.status', OPEN_STATUSES)}"
        " AND t.work_status = ANY(CAST(:active AS text[]))"
        " ORDER BY t.priority, t.resolve_due_at, t.id LIMIT :limit) t"
        f"{_JOINS} ORDER BY t.priority, t.resolve_due_at, t.id"
    )
    return sql, params


async def fetch(db: Db, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` (``:name`` parameters) unprepared on a session's psycopg connection, or on
    a psycopg connection (a read-pool one: searches are one statement each).

    Rows are plain tuples, read in binary: numbers and times arrive as they are stored,
    nothing is printed to text and parsed back.
    """
    driver = await driver_of(db)
    async with driver.cursor(binary=True) as cursor:
        # Parallel workers and JIT are off on request connections (app.db.make_engine).
        await cursor.execute(_pyformat(sql), params, prepare=False)
        return await cursor.fetchall()


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    # The same ``:name`` → ``%(name)s`` translation as the intake's hot statements.
    return HotStatement(sql).sql


# -- the lifecycle ---------------------------------------------------------------------------------

LOCK = text(
    """
    SELECT t.id, t.reference, t.jurisdiction_id, t.area_id, t.crew_id, t.status, t.work_status,
           s.completion_photo_required
    FROM ticket t JOIN service s ON s.id = t.service_id
    WHERE t.reference = :reference
    FOR UPDATE OF t
    """
)


async def lock_work_order(session: AsyncSession, reference: str) -> Any:
    return (await session.execute(LOCK, {"reference": reference.upper()})).first()


async def set_work_status(
    session: AsyncSession,
    ticket_id: int,
    work_status: str,
    *,
    scheduled_for: datetime | None,
    now: datetime,
) -> None:
    await session.execute(
        text(
            "UPDATE ticket SET work_status = :work_status,"
            " scheduled_for = coalesce(:scheduled_for, scheduled_for), updated_at = :now"
            " WHERE id = :id"
        ),
        {"id": ticket_id, "work_status": work_status, "scheduled_for": scheduled_for, "now": now},
    )


INSERT_COMPLETION_PHOTO = text(
    """
    INSERT INTO photo (ticket_id, report_id, kind, storage_key, thumbnail_key, content_type,
                       width, height, bytes, sha256, taken_at)
    VALUES (:ticket_id, NULL, 'completion', :storage_key, :thumbnail_key, :content_type,
            :width, :height, :bytes, :sha256, :taken_at)
    RETURNING public_id
    """
)


async def insert_completion_photos(
    session: AsyncSession, ticket_id: int, photos: Sequence[dict[str, Any]]
) -> list[Any]:
    ids = []
    for photo in photos:
        result = await session.execute(INSERT_COMPLETION_PHOTO, {"ticket_id": ticket_id, **photo})
        ids.append(result.scalar_one())
    return ids
