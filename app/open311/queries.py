"""The SQL of Open311's reads: service requests (tickets), their updates, tokens, services.

Hand-written, with bound parameters, on the read pool. A statement is assembled from fixed
fragments chosen by which filters a request uses (a bounded set, each prepared once per
connection). Public output only: a ticket's public point (``ticket_map.point``, snapped for
sensitive services), its public text, public photos and public timeline lines; the reporter's
name, contacts and the street address never appear (the address stays staff-only, as on the
map).
"""

# ruff: noqa: S608  (statements join code constants; every value is a bound parameter)
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.rows import namedtuple_row

from app.db import HotStatement, ReadConnection, prepare_flag
from app.tickets.models import OPEN_STATUSES
from app.tickets.sla import expected_by_sql

_statements: dict[str, HotStatement] = {}


def _statement(sql: str) -> HotStatement:
    found = _statements.get(sql)
    if found is None:
        found = _statements[sql] = HotStatement(sql)
    return found


async def rows(db: ReadConnection, sql: str, params: dict[str, Any]) -> list[Any]:
    async with db.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(_statement(sql).sql, params, prepare=prepare_flag(db))
        return await cursor.fetchall()


_OPEN = "(" + ", ".join(f"'{s}'" for s in OPEN_STATUSES) + ")"

REQUEST_COLUMNS = f"""
    t.id, t.reference, t.status, s.code AS service_code,
    coalesce(s.names->>CAST(:language AS text), s.names->>'en', s.code) AS service_name,
    t.description, j.name AS agency, t.first_reported_at, t.updated_at,
    {expected_by_sql("t")} AS expected_at, a.name AS area_name,
    ST_X(m.point) AS lon, ST_Y(m.point) AS lat,
    (SELECT p.public_id FROM photo p
      WHERE p.ticket_id = t.id AND p.public AND p.status = 'ready'
      ORDER BY p.id LIMIT 1) AS photo,
    (SELECT e.note FROM ticket_event e
      WHERE e.ticket_id = t.id AND e.kind = 'status_changed' AND e.public
      ORDER BY e.id DESC LIMIT 1) AS status_notes"""
EXTENDED_COLUMNS = """,
    t.report_count, t.supporter_count, t.acknowledged_at, t.fixed_at, t.closed_at,
    (SELECT mt.reference FROM ticket mt WHERE mt.id = t.merged_into_id) AS merged_into,
    ARRAY(SELECT p.public_id FROM photo p
          WHERE p.ticket_id = t.id AND p.public AND p.status = 'ready'
          ORDER BY p.id LIMIT 20) AS photos"""
REQUEST_FROM = """
    FROM ticket t
    JOIN ticket_map m ON m.ticket_id = t.id
    JOIN service s ON s.id = t.service_id
    JOIN jurisdiction j ON j.id = t.jurisdiction_id
    LEFT JOIN area a ON a.id = t.area_id"""


@dataclass
class RequestFilters:
    """What GET requests asks for. None or empty: no filter."""

    references: list[str] = field(default_factory=list)
    jurisdiction_id: int | None = None
    service_codes: list[str] = field(default_factory=list)
    open: bool | None = None  # True: open only; False: closed only
    start: datetime | None = None
    end: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    near: dict[str, float] | None = None  # geo.distance.near_params
    bbox: tuple[float, float, float, float] | None = None

    def conditions(self) -> tuple[list[str], dict[str, Any]]:
        where: list[str] = []
        params: dict[str, Any] = {}
        if self.references:
            # "service_request_id overrides every other argument" but the jurisdiction's.
            where.append("t.reference = ANY(:references)")
            params["references"] = self.references
        if self.jurisdiction_id is not None:
            where.append("t.jurisdiction_id = CAST(:jurisdiction_id AS int4)")
            params["jurisdiction_id"] = self.jurisdiction_id
        if self.references:
            return where, params
        if self.service_codes:
            where.append("s.code = ANY(:service_codes)")
            params["service_codes"] = self.service_codes
        if self.open is True:
            where.append(f"t.status IN {_OPEN}")
        elif self.open is False:
            where.append(f"t.status NOT IN {_OPEN}")
        for name, column, op in (
            ("start", "first_reported_at", ">="),
            ("end", "first_reported_at", "<="),
            ("updated_after", "updated_at", ">="),
            ("updated_before", "updated_at", "<="),
        ):
            value = getattr(self, name)
            if value is not None:
                where.append(f"t.{column} {op} CAST(:{name} AS timestamptz)")
                params[name] = value
        if self.near is not None:
            where.append(
                "m.point && ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326)"
                " AND ST_DWithin(m.point::geography,"
                " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :radius_m)"
            )
            params.update(self.near)
        if self.bbox is not None:
            where.append("m.point && ST_MakeEnvelope(:bx0, :by0, :bx1, :by1, 4326)")
            params.update(zip(("bx0", "by0", "bx1", "by1"), self.bbox, strict=True))
        return where, params


async def requests(
    db: ReadConnection,
    filters: RequestFilters,
    *,
    extended: bool,
    language: str,
    limit: int,
    offset: int,
) -> list[Any]:
    """Public tickets matching ``filters``, newest first by when they were first reported."""
    where, params = filters.conditions()
    sql = (
        "SELECT"
        + REQUEST_COLUMNS
        + (EXTENDED_COLUMNS if extended else "")
        + REQUEST_FROM
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY t.first_reported_at DESC, t.id DESC"
        + " LIMIT CAST(:limit AS int4) OFFSET CAST(:offset AS int4)"
    )
    return await rows(db, sql, {**params, "language": language, "limit": limit, "offset": offset})


# FixMyStreet's pull of status updates: public status changes in a window, oldest first.
UPDATES = """
    SELECT e.id, t.reference, e.data->>'to' AS status, e.note, e.created_at
    FROM ticket_event e JOIN ticket t ON t.id = e.ticket_id
    WHERE e.kind = 'status_changed' AND e.public
      AND e.created_at >= CAST(:start AS timestamptz) AND e.created_at <= CAST(:end AS timestamptz)
      AND (CAST(:jurisdiction_id AS int4) IS NULL
           OR t.jurisdiction_id = CAST(:jurisdiction_id AS int4))
    ORDER BY e.created_at, e.id
    LIMIT CAST(:limit AS int4)
"""


async def updates(
    db: ReadConnection, *, start: datetime, end: datetime, jurisdiction_id: int | None, limit: int
) -> list[Any]:
    return await rows(
        db,
        UPDATES,
        {"start": start, "end": end, "jurisdiction_id": jurisdiction_id, "limit": limit},
    )


REQUEST_OF_REPORT = """
    SELECT t.reference, t.jurisdiction_id FROM report r JOIN ticket t ON t.id = r.ticket_id
    WHERE r.public_id = CAST(:token AS uuid)
"""


async def request_of_token(db: ReadConnection, token: str) -> Any:
    found = await rows(db, REQUEST_OF_REPORT, {"token": token})
    return found[0] if found else None


SERVICES = """
    SELECT code, names, descriptions, "group", keywords, attributes, created_at
    FROM service WHERE jurisdiction_id = CAST(:jurisdiction_id AS int4) AND active
    ORDER BY code
"""


async def services(db: ReadConnection, jurisdiction_id: int) -> list[Any]:
    return await rows(db, SERVICES, {"jurisdiction_id": jurisdiction_id})


JURISDICTIONS = "SELECT id, slug, name FROM jurisdiction ORDER BY id"


async def jurisdictions(db: ReadConnection) -> list[Any]:
    return await rows(db, JURISDICTIONS, {})
