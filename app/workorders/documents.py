"""A work order's document (JSON object or GeoJSON Feature), made from one row of typed columns.

The statements in ``app.workorders.repository`` select ``COLUMNS`` and read them in binary: the
database decodes nothing to text and builds no JSON, and this module turns each row into the
``WorkOrder`` schema with plain tuple unpacking, for ``orjson`` to write the whole page at once.
Building the JSON in PostgreSQL (``json_build_object``, ``to_char`` per time) cost more than
half of a district search's execution time; here a page of 50 costs about 0.3 ms.

``COLUMNS`` and ``_unpack`` are the two halves of one contract and live together.
"""

from __future__ import annotations

from typing import Any

from app.tickets.sla import sla_state_sql

# The select list, in the order _unpack reads it. ``t`` is the ticket (with a ``distance_m``
# column where the statement computes one), ``s`` its service, ``a`` its area, ``c`` its crew;
# ``:now`` is the clock the service-level state is read at (every statement binds it).
COLUMNS = (
    "t.id",
    "t.reference",
    "t.status",
    "t.work_status",
    "t.priority",
    "s.code",
    "coalesce(s.names->>'en', s.code)",
    "ST_X(t.location)",
    "ST_Y(t.location)",
    "a.id",
    "a.code",
    "a.name",
    "c.id",
    "c.name",
    "t.description",
    "t.address",
    "t.report_count",
    "t.supporter_count",
    "t.first_reported_at",
    "t.last_reported_at",
    "t.acknowledge_due_at",
    "t.resolve_due_at",
    "t.assigned_at",
    "t.scheduled_for",
    # The rule's own function (app.tickets.sla), so a page shows the state its filter reads.
    sla_state_sql("t", "CAST(:now AS timestamptz)"),
)
ID, PRIORITY, LON, LAT, RESOLVE_DUE_AT = 0, 4, 7, 8, 21
DISTANCE = len(COLUMNS)  # select_list's last column


def select_list(distance: str | None = None) -> str:
    """``COLUMNS`` as SQL, with ``distance`` (an SQL expression, metres) as the last column."""
    return ", ".join((*COLUMNS, distance or "CAST(NULL AS float8)"))


def _unpack(row: tuple[Any, ...], base_url: str) -> dict[str, Any]:
    (
        _id,
        reference,
        status,
        work_status,
        priority,
        service_code,
        service_name,
        lon,
        lat,
        area_id,
        area_code,
        area_name,
        crew_id,
        crew_name,
        description,
        address,
        report_count,
        supporter_count,
        first_reported_at,
        last_reported_at,
        acknowledge_due_at,
        resolve_due_at,
        assigned_at,
        scheduled_for,
        sla_state,
        _distance,
    ) = row
    return {
        "reference": reference,
        "url": f"{base_url}/v1/workorders/{reference}",
        "ticket_url": f"{base_url}/v1/tickets/{reference}",
        "status": status,
        "work_status": work_status,
        "priority": priority,
        "service_code": service_code,
        "service_name": service_name,
        "location": {"lon": lon, "lat": lat},
        "area": None if area_id is None else {"id": area_id, "code": area_code, "name": area_name},
        "crew": None if crew_id is None else {"id": crew_id, "name": crew_name},
        "description": description,
        "address": address,
        "report_count": report_count,
        "supporter_count": supporter_count,
        "first_reported_at": first_reported_at,
        "last_reported_at": last_reported_at,
        "acknowledge_due_at": acknowledge_due_at,
        "resolve_due_at": resolve_due_at,
        "assigned_at": assigned_at,
        "scheduled_for": scheduled_for,
        "sla_state": sla_state,
    }


def work_order(
    row: tuple[Any, ...], *, base_url: str, with_distance: bool = False
) -> dict[str, Any]:
    """The ``WorkOrder`` object of ``row``; ``distance_m`` (to 0.1 m) when ``with_distance``."""
    document = _unpack(row, base_url)
    if with_distance:
        document["distance_m"] = round(row[DISTANCE], 1)
    return document


def feature(row: tuple[Any, ...], *, base_url: str, with_distance: bool = False) -> dict[str, Any]:
    """``row`` as a GeoJSON Feature: the work order's fields bar ``location`` as properties,
    the point to 9 decimals (0.1 mm), as PostGIS writes GeoJSON."""
    properties = work_order(row, base_url=base_url, with_distance=with_distance)
    del properties["location"]
    return {
        "type": "Feature",
        "id": properties["reference"],
        "geometry": {"type": "Point", "coordinates": [round(row[LON], 9), round(row[LAT], 9)]},
        "properties": properties,
    }


def document(
    row: tuple[Any, ...],
    *,
    base_url: str,
    geojson: bool,
    with_distance: bool = False,
) -> dict[str, Any]:
    make = feature if geojson else work_order
    return make(row, base_url=base_url, with_distance=with_distance)
