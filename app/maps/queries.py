"""The SQL of maps and open data: features, clusters, tiles, stats and exports.

Everything is built by PostGIS in one statement and passed through as bytes: GeoJSON features
as text (``ST_AsGeoJSON`` + ``json_build_object``), tiles with ``ST_AsMVT``. Statements are
assembled from fixed fragments chosen by which filters a request uses; every value is a bound
parameter. Public statements show a sensitive service's locations snapped to its grid
(``service.public_location_snap_m``) and filter on the snapped point, so a tiny bbox cannot
find where the snapped point came from.
"""

# ruff: noqa: S608  (statements join code constants; every value is a bound parameter)
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from app.tickets.sla import expected_by_sql, sla_state_sql
from geo.bbox import BBox

# A ticket's location as the public sees it (aliases t = ticket, s = service). The grid is
# in metres: latitude steps of snap/110,574 degrees, longitude steps sized at the latitude
# rounded to a whole degree, so the grid is the same for every ticket of a city. The
# migration 0003 (ticket_grid) uses this same expression.
PUBLIC_POINT = """(CASE WHEN s.public_location_snap_m > 0
    THEN ST_SnapToGrid(t.location,
         s.public_location_snap_m / (111320.0 * cos(radians(round(ST_Y(t.location)::numeric)))),
         s.public_location_snap_m / 110574.0)
    ELSE t.location END)"""
EXACT_POINT = "t.location"

_HALF_WORLD = "20037508.342789244"
_R = "6378137.0"


def _ts(column: str) -> str:
    """A timestamptz as ISO 8601 UTC text with a Z (NULL stays NULL)."""
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


def _merc_x(point: str) -> str:
    return f"(radians(ST_X({point})) * {_R})"


def _merc_y(point: str) -> str:
    return (
        f"(ln(tan(pi() / 4 + radians(greatest(least(ST_Y({point}), 85.0511), -85.0511)) / 2))"
        f" * {_R})"
    )


# name -> SQL over t (ticket), s (service), a (area, LEFT JOIN), c (crew, LEFT JOIN, staff).
PUBLIC_PROPERTIES: dict[str, str] = {
    "reference": "t.reference",
    "service_code": "s.code",
    "service_name": "coalesce(s.names->>'en', s.code)",
    "status": "t.status",
    "area_code": "a.code",
    "area_name": "a.name",
    "description": "t.description",
    "report_count": "t.report_count",
    "supporter_count": "t.supporter_count",
    "created_at": _ts("t.first_reported_at"),
    "updated_at": _ts("t.updated_at"),
    "acknowledged_at": _ts("t.acknowledged_at"),
    "fixed_at": _ts("t.fixed_at"),
    "closed_at": _ts("t.closed_at"),
    "acknowledge_due_at": _ts("t.acknowledge_due_at"),
    "resolve_due_at": _ts("t.resolve_due_at"),
    "sla_state": sla_state_sql("t"),
    "expected_by": _ts(expected_by_sql("t")),
    "has_photo": "EXISTS (SELECT 1 FROM photo p WHERE p.ticket_id = t.id AND p.public)",
    "url": "CAST(:base_url AS text) || '/v1/tickets/' || t.reference",
}
# Internal fields, for staff of the ticket's jurisdiction. Still no personal data: reporter
# names and contacts stay on reports and are never joined here.
STAFF_PROPERTIES: dict[str, str] = {
    **PUBLIC_PROPERTIES,
    "id": "t.id",
    "priority": "t.priority",
    "priority_manual": "t.priority_manual",
    "crew_id": "t.crew_id",
    "crew_name": "c.name",
    "address": "t.address",
    "work_status": "t.work_status",
    "assigned_at": _ts("t.assigned_at"),
    "scheduled_for": _ts("t.scheduled_for"),
    "acknowledge_warn_at": _ts("t.acknowledge_warn_at"),
    "resolve_warn_at": _ts("t.resolve_warn_at"),
    "reopened_count": "t.reopened_count",
    "merged_into_id": "t.merged_into_id",
    "public_location_snap_m": "s.public_location_snap_m",
}
# What /v1/tickets.geojson sends unless asked (`properties=`, or `all`): what a map needs to
# draw and filter. Every property costs database time per feature; the full set is about
# four times the lean one (measured at 150 features).
MAP_PROPERTIES = (
    "reference",
    "service_code",
    "status",
    "created_at",
    "updated_at",
    "report_count",
    "sla_state",
)
STAFF_MAP_PROPERTIES = (*MAP_PROPERTIES, "priority", "work_status", "crew_id")
# The properties of one ticket in a vector tile (small: tiles are about many points).
TILE_PROPERTIES = ("reference", "service_code", "status", "sla_state")
STAFF_TILE_PROPERTIES = (*TILE_PROPERTIES, "priority", "work_status", "crew_id")


@dataclass(frozen=True)
class View:
    """Who looks: the public (snapped points, public fields) or staff of one jurisdiction
    (``jurisdiction_id``; None for an admin: all of them) with exact points and every field."""

    staff: bool = False
    jurisdiction_id: int | None = None

    @property
    def properties(self) -> dict[str, str]:
        return STAFF_PROPERTIES if self.staff else PUBLIC_PROPERTIES

    @property
    def map_properties(self) -> tuple[str, ...]:
        return STAFF_MAP_PROPERTIES if self.staff else MAP_PROPERTIES

    @property
    def point(self) -> str:
        return EXACT_POINT if self.staff else PUBLIC_POINT


PUBLIC = View()


@dataclass
class Filters:
    """What a request asks for. None or empty: no filter."""

    bbox: BBox | None = None
    services: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    areas: list[str] = field(default_factory=list)
    jurisdiction: str | None = None
    created_since: datetime | None = None
    created_until: datetime | None = None
    created_until_inclusive: bool = False  # OGC datetime intervals are closed
    updated_since: datetime | None = None
    updated_until: datetime | None = None
    has_photo: bool | None = None

    def has_time_window(self) -> bool:
        """Whether created or updated times narrow the rows (their selectivity is in the
        values: a day or a year)."""
        return any(
            moment is not None
            for moment in (
                self.created_since,
                self.created_until,
                self.updated_since,
                self.updated_until,
            )
        )

    def key(self) -> tuple[Any, ...]:
        """Which fragments the statement needs (not the values)."""
        return (
            self.bbox is not None,
            bool(self.services),
            bool(self.statuses),
            bool(self.areas),
            self.jurisdiction is not None,
            self.created_since is not None,
            self.created_until is not None,
            self.created_until_inclusive,
            self.updated_since is not None,
            self.updated_until is not None,
            self.has_photo,
        )


def _layer_conditions(filters: Filters, alias: str, *, joined_service: bool = True) -> list[str]:
    """The filters every layer shares (service, status, area, jurisdiction), over ``alias``
    (``t``, a ticket, ``g``, a ticket_grid row, or ``m``, a ticket_map row, which have the
    same columns) and, when ``joined_service``, s."""
    where = []
    if filters.services and joined_service:
        where.append("s.code = ANY(:services)")
    elif filters.services:
        where.append(
            f"{alias}.service_id IN (SELECT sv.id FROM service sv WHERE sv.code = ANY(:services))"
        )
    if filters.statuses:
        where.append(f"{alias}.status = ANY(:statuses)")
    if filters.areas:
        where.append(f"{alias}.area_id IN (SELECT ar.id FROM area ar WHERE ar.code = ANY(:areas))")
    if filters.jurisdiction is not None:
        where.append(
            f"{alias}.jurisdiction_id"
            " = (SELECT j.id FROM jurisdiction j WHERE j.slug = :jurisdiction)"
        )
    return where


def _conditions(filters: Filters, view: View, *, pad: bool) -> list[str]:
    """WHERE fragments over t, s (and a) for ``filters``; ``pad``: the bbox index prefilter is
    the padded box ``:px0..:py1``, the exact test is on the view's point."""
    where: list[str] = []
    if view.staff and view.jurisdiction_id is not None:
        where.append("t.jurisdiction_id = :scope_jurisdiction_id")
    if filters.bbox is not None:
        if view.staff:
            where.append("t.location && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
        else:
            box = ":px0, :py0, :px1, :py1" if pad else ":x0, :y0, :x1, :y1"
            where.append(f"t.location && ST_MakeEnvelope({box}, 4326)")
            where.append(f"{PUBLIC_POINT} && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
    return where + _layer_conditions(filters, "t") + _time_conditions(filters, "t", "t.id")


def _time_conditions(filters: Filters, alias: str, ticket_id: str) -> list[str]:
    """The created/updated windows and has_photo, over ``alias`` (t, a ticket, or m, a
    ticket_map row) whose ticket id is ``ticket_id``."""
    where = []
    if filters.created_since is not None:
        where.append(f"{alias}.first_reported_at >= :created_since")
    if filters.created_until is not None:
        op = "<=" if filters.created_until_inclusive else "<"
        where.append(f"{alias}.first_reported_at {op} :created_until")
    if filters.updated_since is not None:
        where.append(f"{alias}.updated_at >= :updated_since")
    if filters.updated_until is not None:
        where.append(f"{alias}.updated_at < :updated_until")
    if filters.has_photo is not None:
        exists = f"EXISTS (SELECT 1 FROM photo p WHERE p.ticket_id = {ticket_id} AND p.public)"
        where.append(exists if filters.has_photo else "NOT " + exists)
    return where


def filter_params(filters: Filters, view: View, pad_m: float) -> dict[str, Any]:
    """The bound values for ``_conditions``."""
    params: dict[str, Any] = {}
    if view.staff and view.jurisdiction_id is not None:
        params["scope_jurisdiction_id"] = view.jurisdiction_id
    if filters.bbox is not None:
        b = filters.bbox
        params.update(x0=b.west, y0=b.south, x1=b.east, y1=b.north)
        padded = b.expanded(pad_m)
        params.update(px0=padded.west, py0=padded.south, px1=padded.east, py1=padded.north)
    if filters.services:
        params["services"] = filters.services
    if filters.statuses:
        params["statuses"] = filters.statuses
    if filters.areas:
        params["areas"] = filters.areas
    if filters.jurisdiction is not None:
        params["jurisdiction"] = filters.jurisdiction
    for name in ("created_since", "created_until", "updated_since", "updated_until"):
        value = getattr(filters, name)
        if value is not None:
            params[name] = value
    return params


def _joins(view: View, properties: tuple[str, ...]) -> str:
    joins = " FROM ticket t JOIN service s ON s.id = t.service_id"
    if any(p in ("area_code", "area_name") for p in properties):
        joins += " LEFT JOIN area a ON a.id = t.area_id"
    if view.staff and "crew_name" in properties:
        joins += " LEFT JOIN crew c ON c.id = t.crew_id"
    return joins


# How each property's SQL value becomes JSON text. Concatenating text is about twice as fast
# as json_build_object, so values that can never need escaping are written as they are:
# references, service codes, statuses and sla states are constrained by the schema to
# [A-Za-z0-9_.-]; times come from to_char. Anything else goes through to_json.
_PLAIN_TEXT = frozenset(
    {"reference", "service_code", "status", "sla_state", "work_status"}
    | {name for name, sql in STAFF_PROPERTIES.items() if sql.startswith("to_char(")}
)
_NUMBERS = frozenset(
    {"report_count", "supporter_count", "id", "priority", "crew_id", "reopened_count"}
    | {"merged_into_id", "public_location_snap_m"}
)
_BOOLEANS = frozenset({"has_photo", "priority_manual"})


def _json_value(name: str, sql: str) -> str:
    if name in _PLAIN_TEXT:
        return f"coalesce('\"' || {sql} || '\"', 'null')"
    if name in _NUMBERS:
        return f"coalesce(({sql})::text, 'null')"
    if name in _BOOLEANS:
        return f"CASE WHEN {sql} THEN 'true' ELSE 'false' END"
    return f"coalesce(to_json({sql})::text, 'null')"


def properties_text(view: View, properties: tuple[str, ...]) -> str:
    """SQL for the JSON object of ``properties`` as text."""
    chosen = view.properties
    parts = [
        f"'{',' if i else '{'}\"{name}\":' || {_json_value(name, chosen[name])}"
        for i, name in enumerate(properties)
    ]
    return "(" + " || ".join(parts) + " || '}')" if parts else "'{}'"


def feature_text(view: View, properties: tuple[str, ...]) -> str:
    """SQL for one GeoJSON Feature as text (id = the ticket's public reference)."""
    return (
        '\'{"type":"Feature","id":"\' || t.reference'
        f' || \'","geometry":\' || ST_AsGeoJSON({view.point}, 6)'
        f" || ',\"properties\":' || {properties_text(view, properties)} || '}}'"
    )


@lru_cache(maxsize=512)
def features_page_sql(
    view: View,
    properties: tuple[str, ...],
    key: tuple[Any, ...],
    pad: bool,
    after: bool,
    ordered: bool = True,
) -> str:
    """One page of features in id order: (rows read, at most limit + 1; their features
    joined by commas; the largest id read). ``key`` is ``Filters.key()`` (the cache key).

    The extra row only says that there is a next page: the caller drops its feature (the
    last one) and starts the next page at its id. A window function would say the same
    but costs more than the whole page (measured). Not ``ordered``: any limit + 1 of the
    matching rows, in index order, which is the whole answer when they are no more than
    ``limit`` (see ``service.features_page``).
    """
    filters = _filters_of_key(key)
    where = _conditions(filters, view, pad=pad)
    if after:
        where.append("t.id > :after")
    return (
        _PAGE_OF_FEATURES
        + "(SELECT t.id, "
        + feature_text(view, properties)
        + " AS feature"
        + _joins(view, properties)
        + (" WHERE " + " AND ".join(where) if where else "")
        + (" ORDER BY t.id" if ordered else "")
        + " LIMIT CAST(:limit AS int) + 1) f"
    )


# The page's features in the order the subquery yields them (id order when it sorts): a
# plain aggregate keeps that order. ``string_agg(… ORDER BY f.id)`` would sort the page a
# second time (PostgreSQL 15 does not notice the input is sorted), 10-15 % of a z16 view. The
# order within a page is a courtesy: paging goes by ``max_id``, whatever the order. The text
# comes as text: ``convert_to`` to bytea validated and copied a z16 view's megabyte once more
# in the server, a tenth of its time (measured); psycopg's binary text loader is a memcpy.
_PAGE_OF_FEATURES = (
    "SELECT count(*) AS n, string_agg(f.feature, ',') AS features, max(f.id) AS max_id FROM "
)

# The read model's service-level state at now(): the rule's clock step (migration 0007,
# kerbside_sla_clock) on the running deadline and outcome that the ticket_map trigger stored
# with the rule's other parts; kerbside_sla_state is the same functions composed.
MAP_SLA_STATE = "kerbside_sla_clock(m.sla_state, m.sla_warn_at, m.sla_due_at, now())"
# A ticket_map row's whole Feature: the stored head, the state, the closing braces.
MAP_FEATURE = f"m.head || coalesce('\"' || {MAP_SLA_STATE} || '\"', 'null') || '}}}}'"


def serves_from_map(view: View, properties: tuple[str, ...]) -> bool:
    """Whether ``ticket_map`` has this page's features ready: the public default ones."""
    return not view.staff and properties == MAP_PROPERTIES


@lru_cache(maxsize=256)
def map_page_sql(key: tuple[Any, ...], after: bool, ordered: bool = True) -> str:
    """``features_page_sql`` for ``serves_from_map`` pages, from the read model: one
    index-only scan of ``ix_ticket_map_point`` for a bbox (the stored point is the public
    one, so there is no padded prefilter). Same columns, same bound names, same
    ``ordered``."""
    filters = _filters_of_key(key)
    where: list[str] = []
    if filters.bbox is not None:
        where.append("m.point && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
    where += _layer_conditions(filters, "m", joined_service=False)
    where += _time_conditions(filters, "m", "m.ticket_id")
    if after:
        where.append("m.ticket_id > :after")
    return (
        _PAGE_OF_FEATURES
        + f"(SELECT m.ticket_id AS id, {MAP_FEATURE} AS feature FROM ticket_map m"
        + (" WHERE " + " AND ".join(where) if where else "")
        + (" ORDER BY m.ticket_id" if ordered else "")
        + " LIMIT CAST(:limit AS int) + 1) f"
    )


def _filters_of_key(key: tuple[Any, ...]) -> Filters:
    """A stand-in ``Filters`` with the same fragments as ``key`` (values are never used)."""
    (bbox, services, statuses, areas, jurisdiction, cs, cu, cu_incl, us, uu, photo) = key
    sentinel = datetime(2000, 1, 1)  # noqa: DTZ001 (never bound: only its presence counts)
    return Filters(
        bbox=BBox(0, 0, 0, 0) if bbox else None,
        services=["x"] if services else [],
        statuses=["x"] if statuses else [],
        areas=["x"] if areas else [],
        jurisdiction="x" if jurisdiction else None,
        created_since=sentinel if cs else None,
        created_until=sentinel if cu else None,
        created_until_inclusive=cu_incl,
        updated_since=sentinel if us else None,
        updated_until=sentinel if uu else None,
        has_photo=photo,
    )


@lru_cache(maxsize=8)
def feature_by_reference_sql(view: View, properties: tuple[str, ...]) -> str:
    scope = (
        " AND t.jurisdiction_id = :scope_jurisdiction_id"
        if view.staff and view.jurisdiction_id is not None
        else ""
    )
    return (
        "SELECT "
        + feature_text(view, properties)
        + " AS feature"
        + _joins(view, properties)
        + " WHERE t.reference = :reference"
        + scope
    )


# -- vector tiles ---------------------------------------------------------------------------


@lru_cache(maxsize=256)
def tile_points_sql(view: View, key: tuple[Any, ...], pad: bool) -> str:
    """An MVT of ticket points (layer ``tickets``) in tile :z/:x/:y; the box ``:x0..:y1`` is
    the tile's lon/lat bounds with its buffer."""
    filters = _filters_of_key(key)
    names = STAFF_TILE_PROPERTIES if view.staff else TILE_PROPERTIES
    columns = ", ".join(f"{view.properties[n]} AS {n}" for n in names)
    where = _conditions(filters, view, pad=pad)
    return (
        "SELECT ST_AsMVT(q, 'tickets', 4096, 'geom') FROM (SELECT ST_AsMVTGeom("
        f"ST_Transform({view.point}, 3857), ST_TileEnvelope(:z, :x, :y), 4096, 64, true)"
        f" AS geom, {columns}"
        + _joins(view, names)
        + " WHERE "
        + " AND ".join(where)
        + " LIMIT :max_points) q"
    )


@lru_cache(maxsize=64)
def grid_cells_sql(key: tuple[Any, ...], staff_scope: bool) -> str:
    """Per (cell, service) counts at grid :level in cells :cx0..:cy1, from ``ticket_grid``."""
    filters = _filters_of_key(key)
    where = [
        "g.level = :level",
        "g.cx BETWEEN :cx0 AND :cx1",
        "g.cy BETWEEN :cy0 AND :cy1",
    ]
    if staff_scope:
        where.append("g.jurisdiction_id = :scope_jurisdiction_id")
    if not filters.statuses and not filters.areas:
        where.append("g.status = '' AND g.area_id = -1")  # the all-statuses, all-areas rows
    where += _layer_conditions(filters, "g")
    return (
        "SELECT g.cx, g.cy, s.code, sum(g.n)::int AS n, sum(g.sx) AS sx, sum(g.sy) AS sy"
        " FROM ticket_grid g JOIN service s ON s.id = g.service_id WHERE "
        + " AND ".join(where)
        + " GROUP BY g.cx, g.cy, s.code"
    )


@lru_cache(maxsize=256)
def live_cells_sql(view: View, key: tuple[Any, ...], pad: bool) -> str:
    """The same per (cell, service) counts at grid :level (cell side :cell_m), from tickets."""
    filters = _filters_of_key(key)
    where = _conditions(filters, view, pad=pad)
    x, y = _merc_x(view.point), _merc_y(view.point)
    return (
        "SELECT m.cx, m.cy, m.code, count(*)::int AS n, sum(m.x) AS sx, sum(m.y) AS sy FROM ("
        f"SELECT s.code, {x} AS x, {y} AS y,"
        f" floor(({x} + {_HALF_WORLD}) / :cell_m)::int AS cx,"
        f" floor(({_HALF_WORLD} - {y}) / :cell_m)::int AS cy"
        + _joins(view, ())
        + " WHERE "
        + " AND ".join(where)
        + ") m GROUP BY m.cx, m.cy, m.code"
    )


def clusters_geojson_sql(cells: str) -> str:
    """Clusters as GeoJSON features (text, comma-joined) from a per (cell, service) query."""
    lon = f"degrees(k.x / {_R})"
    lat = f"degrees(2 * atan(exp(k.y / {_R})) - pi() / 2)"
    return f"""SELECT count(*) AS n, coalesce(sum(k.n), 0)::bigint AS tickets,
        convert_to(string_agg(
        '{{"type":"Feature","id":"' || CAST(:level AS int) || '/' || k.cx || '/' || k.cy
        || '","geometry":' || ST_AsGeoJSON(ST_MakePoint({lon}, {lat}), 6)
        || ',"properties":' || json_build_object('count', k.n, 'services', k.services,
        'level', CAST(:level AS int))::text || '}}', ',' ORDER BY k.cy, k.cx), 'UTF8')
        AS features FROM (SELECT c.cx, c.cy, sum(c.n)::int AS n, sum(c.sx) / sum(c.n) AS x,
        sum(c.sy) / sum(c.n) AS y, json_object_agg(c.code, c.n ORDER BY c.code) AS services
        FROM ({cells}) c GROUP BY c.cx, c.cy) k"""


def clusters_mvt_sql(cells: str) -> str:
    """Clusters as an MVT layer ``clusters`` in tile :z/:x/:y."""
    return (
        "SELECT ST_AsMVT(q, 'clusters', 4096, 'geom') FROM (SELECT ST_AsMVTGeom("
        "ST_SetSRID(ST_MakePoint(k.x, k.y), 3857), ST_TileEnvelope(:z, :x, :y), 4096, 64, true)"
        " AS geom, k.n AS count, k.top AS top_service, k.services::text AS services"
        " FROM (SELECT c.cx, c.cy, sum(c.n)::int AS n, sum(c.sx) / sum(c.n) AS x,"
        " sum(c.sy) / sum(c.n) AS y, json_object_agg(c.code, c.n ORDER BY c.code) AS services,"
        " (array_agg(c.code ORDER BY c.n DESC, c.code))[1] AS top"
        f" FROM ({cells}) c GROUP BY c.cx, c.cy) k) q"
    )


# -- districts --------------------------------------------------------------------------------

# RFC 7946 3.1.6: exterior rings counterclockwise, holes clockwise (PostGIS keeps whatever
# order the polygons were stored in).
AREAS_SQL = (
    'SELECT coalesce(string_agg(\'{"type":"Feature","id":\' || a.id'
    " || ',\"geometry\":'"
    " || ST_AsGeoJSON(ST_ForcePolygonCCW(ST_SimplifyPreserveTopology(a.geom, 0.0001)), 6)"
    " || ',\"properties\":' || json_build_object('code', a.code, 'name', a.name,"
    " 'kind', a.kind, 'jurisdiction', j.slug)::text || '}', ',' ORDER BY a.id), '') AS features"
    " FROM area a JOIN jurisdiction j ON j.id = a.jurisdiction_id"
    " WHERE (CAST(:jurisdiction AS text) IS NULL OR j.slug = :jurisdiction)"
)

MAX_PUBLIC_SNAP_SQL = "SELECT coalesce(max(public_location_snap_m), 0) FROM service"
# A row once ticket_grid was first built (migration 0008).
GRID_BUILT_SQL = "SELECT at FROM ticket_grid_refreshed"

# -- stats ------------------------------------------------------------------------------------

_DISMISSED = "('duplicate', 'not_our_responsibility', 'rejected')"


@lru_cache(maxsize=64)
def stats_sql(key: tuple[Any, ...]) -> str:
    """Counts by service, status and area in one scan (grouping sets), with medians and
    service-level compliance per service."""
    where = _conditions(_filters_of_key(key), PUBLIC, pad=False)
    ack_measured = (
        f"t.status NOT IN {_DISMISSED} AND t.acknowledge_due_at IS NOT NULL"
        " AND (t.acknowledged_at IS NOT NULL OR now() > t.acknowledge_due_at)"
    )
    fix_measured = (
        f"t.status NOT IN {_DISMISSED} AND t.resolve_due_at IS NOT NULL"
        " AND (t.fixed_at IS NOT NULL OR now() > t.resolve_due_at)"
    )
    return (
        "SELECT GROUPING(s.code) AS g_service, GROUPING(t.status) AS g_status,"
        " GROUPING(a.code) AS g_area, s.code AS service, t.status, a.code AS area,"
        " min(a.name) AS area_name, count(*) AS n,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
        " t.acknowledged_at - t.first_reported_at)) AS ack_median_s,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
        " t.fixed_at - t.first_reported_at)) AS fix_median_s,"
        f" count(*) FILTER (WHERE {ack_measured}) AS ack_measured,"
        f" count(*) FILTER (WHERE {ack_measured} AND t.acknowledged_at <= t.acknowledge_due_at)"
        " AS ack_met,"
        f" count(*) FILTER (WHERE {fix_measured}) AS fix_measured,"
        f" count(*) FILTER (WHERE {fix_measured} AND t.fixed_at <= t.resolve_due_at)"
        " AS fix_met"
        " FROM ticket t JOIN service s ON s.id = t.service_id"
        " LEFT JOIN area a ON a.id = t.area_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " GROUP BY GROUPING SETS ((), (s.code), (t.status), (a.code))"
    )


@lru_cache(maxsize=64)
def weekly_sql(key: tuple[Any, ...]) -> str:
    """Tickets opened and fixed per ISO week (Monday, UTC) over the last :weeks weeks."""
    where = _conditions(_filters_of_key(key), PUBLIC, pad=False)
    extra = "".join(" AND " + w for w in where)
    return (
        "WITH w AS (SELECT generate_series(date_trunc('week', now() AT TIME ZONE 'UTC')"
        " - (:weeks - 1) * interval '1 week', date_trunc('week', now() AT TIME ZONE 'UTC'),"
        " interval '1 week') AS week),"
        " opened AS (SELECT date_trunc('week', t.first_reported_at AT TIME ZONE 'UTC') AS week,"
        " count(*) AS n FROM ticket t JOIN service s ON s.id = t.service_id"
        " WHERE t.first_reported_at >= (SELECT min(week) FROM w) AT TIME ZONE 'UTC'"
        + extra
        + " GROUP BY 1),"
        " fixed AS (SELECT date_trunc('week', t.fixed_at AT TIME ZONE 'UTC') AS week,"
        " count(*) AS n FROM ticket t JOIN service s ON s.id = t.service_id"
        " WHERE t.fixed_at >= (SELECT min(week) FROM w) AT TIME ZONE 'UTC'" + extra + " GROUP BY 1)"
        " SELECT to_char(w.week, 'YYYY-MM-DD') AS week, coalesce(o.n, 0) AS opened,"
        " coalesce(f.n, 0) AS fixed FROM w LEFT JOIN opened o ON o.week = w.week"
        " LEFT JOIN fixed f ON f.week = w.week ORDER BY w.week"
    )


# -- export -------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "reference",
    "service_code",
    "service_name",
    "status",
    "area_code",
    "area_name",
    "lon",
    "lat",
    "created_at",
    "updated_at",
    "acknowledged_at",
    "fixed_at",
    "closed_at",
    "report_count",
    "supporter_count",
    "sla_state",
    "description",
    "url",
)


def _csv_text(expr: str) -> str:
    """A quoted cell. Text a spreadsheet would run as a formula (it starts with =, +, -, @,
    a tab or a carriage return) gets a leading apostrophe, as OWASP advises against CSV
    injection: the public writes these texts, and city staff open the export."""
    defused = f"regexp_replace({expr}, E'^([-=+@\\\\t\\\\r])', E'\\'\\\\1')"
    return f"coalesce('\"' || replace({defused}, '\"', '\"\"') || '\"', '')"


def _csv_plain(expr: str) -> str:
    return f"coalesce(({expr})::text, '')"


def _csv_line() -> str:
    p = PUBLIC_PROPERTIES
    cells = [
        _csv_text(p["reference"]),
        _csv_text(p["service_code"]),
        _csv_text(p["service_name"]),
        _csv_plain(p["status"]),
        _csv_text(p["area_code"]),
        _csv_text(p["area_name"]),
        _csv_plain(f"round(ST_X({PUBLIC_POINT})::numeric, 6)"),
        _csv_plain(f"round(ST_Y({PUBLIC_POINT})::numeric, 6)"),
        *(
            _csv_plain(p[n])
            for n in (
                "created_at",
                "updated_at",
                "acknowledged_at",
                "fixed_at",
                "closed_at",
                "report_count",
                "supporter_count",
                "sla_state",
            )
        ),
        _csv_text(p["description"]),
        _csv_text(p["url"]),
    ]
    return " || ',' || ".join(cells) + " || E'\\r\\n'"


@lru_cache(maxsize=64)
def export_sql(key: tuple[Any, ...], fmt: str) -> str:
    """Every public ticket matching the filters, in id order, one text row each."""
    where = _conditions(_filters_of_key(key), PUBLIC, pad=False)
    properties = tuple(PUBLIC_PROPERTIES)
    row = _csv_line() if fmt == "csv" else feature_text(PUBLIC, properties)
    return (
        f"SELECT {row} AS line"
        + _joins(PUBLIC, properties)
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY t.id"
    )
