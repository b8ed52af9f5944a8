"""Work-order use cases: whose work orders a caller sees, searching them, the crew lifecycle,
and the day route.

Reach, the same on every work-order route:

- a crew member sees their crew's territory (``app.crews.sql.territory_sql``: tickets
  assigned to the crew or in one of its areas) and steps only work orders assigned to it;
- staff see and step their jurisdiction's work orders (``crew=`` narrows to a territory);
- admins see everything.

A work order the caller cannot see answers 404, as if it did not exist; one they can see but
may not change (another crew holds it) answers 403.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import anyio
import orjson
import shapely
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.auth.principal import Principal
from app.core import clock
from app.core.errors import BadRequest, Conflict, Forbidden, InvalidInput, NotFound
from app.crews import sql as crews_sql
from app.crews.service import acting_jurisdiction
from app.db import Db
from app.media.service import StoredPhoto
from app.settings import Settings
from app.tickets import workflow
from app.tickets.events import add_event
from app.tickets.models import OPEN_STATUSES, EventKind, TicketStatus, WorkStatus
from app.tickets.sla import SlaState
from app.workorders import documents
from app.workorders import repository as sql
from app.workorders.schemas import Scope, Search, Sort, Step
from geo import route as routing
from geo.shapes import ShapeProblem, check_polygon, parse_bbox, parse_lonlat

# -- reach ----------------------------------------------------------------------------------------


async def scope_for(
    db: Db,
    principal: Principal,
    *,
    crew_id: int | None = None,
    jurisdiction_id: int | None = None,
) -> Scope:
    """The work orders ``principal`` may see, narrowed to ``crew_id``'s territory if given."""
    if not principal.at_least(Role.staff):
        own = _own_crew(principal)
        if crew_id is not None and crew_id != own:
            raise Forbidden("Crew members see their own crew's work orders only")
        if jurisdiction_id is not None and jurisdiction_id != principal.jurisdiction_id:
            raise Forbidden("You may only act for your own jurisdiction")
        return Scope(principal.jurisdiction_id, own)
    scope_jurisdiction = acting_jurisdiction(principal, jurisdiction_id, required=False)
    if crew_id is not None:
        crew = await crews_sql.CREW_JURISDICTION.one(db, {"id": crew_id})
        if crew is None or (
            scope_jurisdiction is not None and crew.jurisdiction_id != scope_jurisdiction
        ):
            raise NotFound(f"No crew {crew_id}")
        scope_jurisdiction = crew.jurisdiction_id
    return Scope(scope_jurisdiction, crew_id)


def _own_crew(principal: Principal) -> int:
    if principal.crew_id is None:
        raise Forbidden("Your account belongs to no crew; staff add crew members to a crew")
    return principal.crew_id


async def _sees(session: AsyncSession, principal: Principal, ticket: Any) -> bool:
    if principal.is_admin:
        return True
    if principal.jurisdiction_id != ticket.jurisdiction_id:
        return False
    if principal.at_least(Role.staff):
        return True
    return principal.crew_id is not None and await crews_sql.ticket_in_territory(
        session, ticket.id, principal.crew_id
    )


# -- searching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchInput:
    """A search as it arrived (query parameters, and a polygon for POST /search)."""

    status: Sequence[str] = ()
    work_status: Sequence[str] = ()
    area: Sequence[str] = ()
    service: Sequence[str] = ()
    priority: Sequence[str] = ()
    sla_state: Sequence[str] = ()
    bbox: str | None = None
    near: str | None = None
    radius_m: float | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    sort: Sort = Sort.priority
    limit: int | None = None
    cursor: str | None = None
    polygon: dict[str, Any] | None = None


WORK_STATUS_FILTERS = (*tuple(WorkStatus), "none")
_MAX_LIST = 100  # values per list filter


def check_search(given: SearchInput, settings: Settings, scope: Scope) -> Search:
    """The search, checked and bounded, or 422 naming every problem (400 for a bad cursor)."""
    errors: list[dict[str, Any]] = []

    def bad(field: str, message: str, kind: str = "value_error", where: str = "query") -> None:
        errors.append({"field": field, "message": message, "type": kind, "in": where})

    def shape_problems(problems: Sequence[ShapeProblem], where: str = "query") -> None:
        for p in problems:
            bad(p.field, p.message, p.type, where)

    def values(field: str, raw: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
        items = _split(raw)
        unknown = [v for v in items if v not in allowed]
        if unknown:
            bad(field, f"unknown {', '.join(unknown)}; one of {', '.join(allowed)}", "enum")
        if len(items) > _MAX_LIST:
            bad(field, f"at most {_MAX_LIST} values", "too_many")
        return tuple(dict.fromkeys(items))

    def integers(field: str, raw: Sequence[str], low: int, high: int) -> tuple[int, ...]:
        out = []
        for item in _split(raw):
            try:
                number = int(item)
            except ValueError:
                bad(field, f"{item!r} is not a whole number", "int_parsing")
                continue
            if not low <= number <= high:
                bad(field, f"{number} is outside {low}..{high}", "range")
            out.append(number)
        if len(out) > _MAX_LIST:
            bad(field, f"at most {_MAX_LIST} values", "too_many")
        return tuple(dict.fromkeys(out))

    statuses = values("status", given.status, OPEN_STATUSES)
    work_statuses = values("work_status", given.work_status, WORK_STATUS_FILTERS)
    sla_states = values("sla_state", given.sla_state, tuple(SlaState))
    area_ids = integers("area", given.area, 1, 2**31 - 1)
    priorities = integers("priority", given.priority, 1, 5)
    service_codes = tuple(dict.fromkeys(_split(given.service)))
    if len(service_codes) > _MAX_LIST:
        bad("service", f"at most {_MAX_LIST} values", "too_many")

    bbox = None
    if given.bbox is not None:
        bbox, problems = parse_bbox(
            given.bbox, "bbox", max_area_m2=settings.workorders_max_bbox_km2 * 1e6
        )
        shape_problems(problems)
    near = None
    if given.near is not None:
        near, problems = parse_lonlat(given.near, "near")
        shape_problems(problems)
    radius = given.radius_m
    if radius is not None:
        if given.near is None:
            bad("radius_m", "radius_m needs near=lon,lat", "missing")
        if radius > settings.workorders_max_radius_m:
            bad("radius_m", f"at most {settings.workorders_max_radius_m:g} m", "too_large")
    if given.sort == Sort.distance and given.near is None:
        bad("sort", "sort=distance needs near=lon,lat", "missing")
    polygon_wkb = None
    if given.polygon is not None:
        polygon, problems = check_polygon(
            given.polygon,
            "coordinates",
            max_vertices=settings.workorders_max_polygon_vertices,
            max_area_m2=settings.workorders_max_polygon_km2 * 1e6,
        )
        shape_problems(problems, "body")
        if polygon is not None:
            polygon_wkb = shapely.to_wkb(shapely.force_2d(polygon))
    for field, moment in (("due_before", given.due_before), ("due_after", given.due_after)):
        if moment is not None and moment.tzinfo is None:
            bad(field, "give a time zone (for example 2026-11-24T08:00:00Z)", "timezone_aware")
    limit = given.limit or settings.workorders_page_size
    if limit > settings.workorders_max_page_size:
        bad("limit", f"at most {settings.workorders_max_page_size}", "too_large")
    if errors:
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        raise InvalidInput(f"The search is not valid: see errors ({fields})", errors=errors)

    search = Search(
        statuses=statuses,
        work_statuses=work_statuses,
        area_ids=area_ids,
        service_codes=service_codes,
        priorities=priorities,
        sla_states=sla_states,
        bbox=bbox,
        polygon_wkb=polygon_wkb,
        near=near,
        radius_m=radius
        if radius is not None
        else (settings.workorders_max_radius_m if near is not None else None),
        due_before=given.due_before,
        due_after=given.due_after,
        sort=given.sort,
        limit=limit,
    )
    if given.cursor is not None:
        search = _with_cursor(search, scope, given.cursor)
    return search


def _split(raw: Sequence[str]) -> list[str]:
    return [part.strip() for item in raw for part in item.split(",") if part.strip()]


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]  # each work order (or its GeoJSON Feature), ready for orjson
    next_cursor: str | None


async def search_work_orders(
    db: Db,
    scope: Scope,
    search: Search,
    *,
    base_url: str,
    geojson: bool,
    now: datetime | None = None,
) -> Page:
    now = now or clock.now()
    if search.sort == Sort.distance:
        rows = await _nearest_first(db, scope, search, now=now)
    else:
        statement, params = sql.search_statement(scope, search, now=now)
        rows = await sql.fetch(db, statement, params)
    more = len(rows) > search.limit
    rows = rows[: search.limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        key: tuple[object, ...]
        if search.sort == Sort.priority:
            key = (last[documents.PRIORITY], last[documents.RESOLVE_DUE_AT], last[documents.ID])
        elif search.sort == Sort.due:
            key = (last[documents.RESOLVE_DUE_AT], last[documents.ID])
        else:
            key = (last[documents.DISTANCE], last[documents.ID])
        next_cursor = _encode_cursor(search, scope, key)
    with_distance = search.near is not None
    items = [
        documents.document(r, base_url=base_url, geojson=geojson, with_distance=with_distance)
        for r in rows
    ]
    return Page(items, next_cursor)


async def _nearest_first(
    db: Db,
    scope: Scope,
    search: Search,
    *,
    now: datetime,
) -> list[Any]:
    """A distance page in two index-bound steps, whatever the density and the filters.

    No index orders points by true distance: the GiST one orders by degrees, which stretch
    east-west. So first the index's own nearest-neighbour order finds ``limit + 1`` matching
    tickets and how far the farthest of them is (great-circle); the true nearest ones lie
    within that distance, and the page is that circle sorted exactly. Both steps read about a
    page of rows; the widening rings they replace sorted every ticket of a wide ring when the
    filters were sparse (300-500 ms at 1M tickets).
    """
    assert search.radius_m is not None
    statement, params = sql.nearest_bound_statement(scope, search, now=now)
    bound = (await sql.fetch(db, statement, params))[0]
    within = search.radius_m
    if bound[0] > search.limit and bound[1] is not None:
        # A hair over the farthest: its own distance was computed by the same function, but
        # the circle test (ST_DWithin) must not lose it to rounding.
        within = min(float(bound[1]) + 0.01, search.radius_m)
    statement, params = sql.search_statement(scope, search, now=now, within_m=within)
    return await sql.fetch(db, statement, params)


async def get_work_order(
    session: AsyncSession,
    scope: Scope,
    reference: str,
    *,
    base_url: str,
    geojson: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    statement, params = sql.one_statement(scope, reference, now=now or clock.now())
    rows = await sql.fetch(session, statement, params)
    if not rows:
        raise NotFound(f"No work order {reference}")
    return documents.document(rows[0], base_url=base_url, geojson=geojson)


# -- cursors: opaque to clients, tied to the search that made them --------------------------------


def _fingerprint(search: Search, scope: Scope) -> str:
    fields = _fields_of(search)
    fields.pop("limit")
    fields.pop("after")
    if fields["polygon_wkb"] is not None:
        fields["polygon_wkb"] = hashlib.sha256(fields["polygon_wkb"]).hexdigest()
    fields["scope"] = [scope.jurisdiction_id, scope.crew_id]
    encoded = orjson.dumps(fields, default=str, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()[:12]


def _encode_cursor(search: Search, scope: Scope, key: tuple[object, ...]) -> str:
    raw = orjson.dumps({"s": search.sort.value, "k": list(key), "f": _fingerprint(search, scope)})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _with_cursor(search: Search, scope: Scope, token: str) -> Search:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        sort, key, fingerprint = Sort(data["s"]), data["k"], data["f"]
        after = _cursor_key(sort, key)
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise _bad_cursor("this is not a cursor from a work-order page") from None
    if sort != search.sort or fingerprint != _fingerprint(search, scope):
        raise _bad_cursor("the cursor belongs to another search; follow `next` as given")
    return replace(search, after=after)


def _fields_of(search: Search) -> dict[str, Any]:
    # Not asdict(): it deep-copies every field, a tenth of a polygon search's Python time.
    return {field.name: getattr(search, field.name) for field in dataclasses.fields(search)}


def _cursor_key(sort: Sort, key: list[Any]) -> tuple[object, ...]:
    def due(value: Any) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(str(value))
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment

    def whole(value: Any) -> int:
        if type(value) is not int:
            raise ValueError("not an integer")
        return value

    if sort == Sort.priority:
        priority, due_at, last_id = key
        return (whole(priority), due(due_at), whole(last_id))
    if sort == Sort.due:
        due_at, last_id = key
        return (due(due_at), whole(last_id))
    distance, last_id = key
    if not isinstance(distance, int | float):
        raise ValueError("not a distance")
    return (float(distance), whole(last_id))


def _bad_cursor(why: str) -> BadRequest:
    return BadRequest(
        f"Invalid cursor: {why}",
        errors=[{"field": "cursor", "message": why, "type": "invalid_cursor", "in": "query"}],
    )


# -- the lifecycle --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    to: WorkStatus
    after: tuple[WorkStatus, ...]  # the work statuses this step may follow
    ticket_status: TicketStatus | None  # where the ticket moves (forward only)


W = WorkStatus
TRANSITIONS: dict[Step, Transition] = {
    Step.accept: Transition(W.accepted, (W.assigned,), TicketStatus.scheduled),
    Step.en_route: Transition(W.en_route, (W.accepted,), TicketStatus.in_progress),
    Step.on_site: Transition(W.on_site, (W.en_route,), TicketStatus.in_progress),
    Step.done: Transition(W.done, (W.on_site,), TicketStatus.fixed),
    Step.unable: Transition(W.unable, (W.assigned, W.accepted, W.en_route, W.on_site), None),
}
# How far along the ticket's own status is: a step never moves it back.
_STAGE = {
    TicketStatus.open: 0,
    TicketStatus.reopened: 0,
    TicketStatus.acknowledged: 0,
    TicketStatus.scheduled: 1,
    TicketStatus.in_progress: 2,
    TicketStatus.fixed: 3,
}


def next_steps(work_status: str | None) -> list[str]:
    return [step.value for step, t in TRANSITIONS.items() if work_status in t.after]


async def advance(
    session: AsyncSession,
    reference: str,
    step: Step,
    *,
    actor: Principal,
    note: str | None = None,
    public_note: str | None = None,
    scheduled_for: datetime | None = None,
    photos: Sequence[StoredPhoto] = (),
    now: datetime | None = None,
) -> None:
    """Take one lifecycle step on the work order ``reference``.

    Updates ``work_status`` (and ``scheduled_for`` on accept), stores after-photos (done),
    writes an internal ``work_progress`` event with actor and time, and moves the ticket's
    status forward through the workflow where the step implies it (accept → scheduled,
    en route / on site → in progress, done → fixed with ``public_note`` told to every
    reporter). 404 outside the caller's reach, 403 when another crew holds it, 409 out of
    order, 422 when the service wants an after-photo and none came.
    """
    now = now or clock.now()
    ticket = await sql.lock_work_order(session, reference)
    if ticket is None or not await _sees(session, actor, ticket):
        raise NotFound(f"No work order {reference}")
    if not actor.at_least(Role.staff) and ticket.crew_id != actor.crew_id:
        raise Forbidden(
            f"{ticket.reference} is not assigned to your crew; only its crew or staff step it"
        )
    transition = TRANSITIONS[step]
    if ticket.status not in OPEN_STATUSES:
        raise Conflict(
            f"{ticket.reference} is {ticket.status.replace('_', ' ')}: there is no work to do",
            ticket_status=ticket.status,
        )
    if ticket.work_status is None:
        raise Conflict(
            f"{ticket.reference} is not assigned to a crew; staff assign it first",
            work_status=None,
            allowed=[],
        )
    if ticket.work_status not in transition.after:
        wanted = " or ".join(s.value for s in transition.after)
        raise Conflict(
            f"{ticket.reference} is {ticket.work_status}: '{step.value}' follows {wanted}",
            work_status=ticket.work_status,
            allowed=next_steps(ticket.work_status),
        )
    if step == Step.done and ticket.completion_photo_required and not photos:
        raise InvalidInput(
            "This service needs an after-photo to finish the work order",
            errors=[
                {
                    "field": "photos",
                    "message": "at least one after-photo is required for this service",
                    "type": "missing",
                    "in": "body",
                }
            ],
        )

    await sql.set_work_status(
        session, ticket.id, transition.to.value, scheduled_for=scheduled_for, now=now
    )
    photo_ids = await sql.insert_completion_photos(
        session,
        ticket.id,
        [
            {
                "storage_key": p.storage_key,
                "thumbnail_key": p.thumbnail_key,
                "content_type": p.content_type,
                "width": p.width,
                "height": p.height,
                "bytes": p.size,
                "sha256": p.sha256,
                "taken_at": p.taken_at,
            }
            for p in photos
        ],
    )
    data: dict[str, Any] = {
        "step": step.value,
        "from": ticket.work_status,
        "to": transition.to.value,
        "crew_id": ticket.crew_id,
    }
    if scheduled_for is not None:
        data["scheduled_for"] = scheduled_for.isoformat()
    if photo_ids:
        data["photos"] = len(photo_ids)
        data["photo_ids"] = [str(i) for i in photo_ids]
    await add_event(
        session,
        ticket.id,
        EventKind.work_progress,
        at=now,
        public=False,
        actor=actor,
        note=note,
        data=data,
    )
    target = transition.ticket_status
    if target is not None and _STAGE.get(TicketStatus(ticket.status), 0) < _STAGE[target]:
        await workflow.change_status(
            session, ticket.id, target, actor=actor, note=public_note, now=now
        )


# -- the day route --------------------------------------------------------------------------------


async def route_crew(session: AsyncSession, principal: Principal, crew_id: int | None) -> int:
    """Whose route: a crew member's own crew; staff and admins must name one they reach."""
    if crew_id is None and principal.at_least(Role.staff):
        raise InvalidInput(
            "Name the crew whose route to plan: crew=<id>",
            errors=[{"field": "crew", "message": "missing", "type": "missing", "in": "query"}],
        )
    scope = await scope_for(session, principal, crew_id=crew_id)
    assert scope.crew_id is not None
    return scope.crew_id


@dataclass(frozen=True)
class PlannedRoute:
    crew_id: int
    start: tuple[float, float]
    return_to_start: bool
    plan: routing.Route
    points: list[tuple[float, float]]  # of the stops, in the order fetched
    work_orders: list[dict[str, Any]]  # each stop's work order, in the order fetched
    truncated: bool


async def day_route(
    session: AsyncSession,
    crew_id: int,
    start: tuple[float, float],
    *,
    max_stops: int,
    return_to_start: bool,
    base_url: str,
    now: datetime | None = None,
) -> PlannedRoute:
    """Visit the crew's open, unfinished work orders from ``start``: the most urgent
    ``max_stops`` of them, in the shortest order found (``geo.route.plan_route``)."""
    statement, params = sql.route_statement(crew_id, max_stops + 1, now=now or clock.now())
    rows = await sql.fetch(session, statement, params)
    truncated = len(rows) > max_stops
    rows = rows[:max_stops]
    points = [(r[documents.LON], r[documents.LAT]) for r in rows]
    work_orders = [documents.work_order(r, base_url=base_url) for r in rows]

    def plan() -> routing.Route:
        return routing.plan_route(start, points, return_to_start=return_to_start)

    # Small routes are solved in well under a millisecond; larger ones leave the event loop.
    planned = plan() if len(points) <= routing.EXACT_UP_TO else await anyio.to_thread.run_sync(plan)
    return PlannedRoute(crew_id, start, return_to_start, planned, points, work_orders, truncated)
