"""HTTP for tickets: read one, find open ones nearby ("already reported?"), support, follow."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request

from app.auth.principal import CHECK_CREDENTIALS, OptionalPrincipal
from app.contacts.messages import queue_verifications
from app.core.contract import problems
from app.core.errors import InvalidInput
from app.core.ratelimit import client_ip, rate_limit
from app.db import SessionDep
from app.tickets import queries
from app.tickets.schemas import NearbyTicket, SupportIn, SupportOut, TicketDetail
from app.tickets.service import support_or_follow
from geo.validation import check_lonlat

router = APIRouter(prefix="/v1/tickets", tags=["tickets"])

MAX_NEARBY_RADIUS_M = 1000.0


@router.get(
    "/nearby",
    response_model=list[NearbyTicket],
    dependencies=[CHECK_CREDENTIALS],
    summary="Open tickets of a service near a point, nearest first",
    description=(
        'For the app\'s "already reported?" step before submitting: offer to support or follow '
        "one of these instead of filing a duplicate. The radius defaults to the service's "
        "duplicate radius (at least 100 m) and is capped at 1,000 m."
    ),
)
async def nearby(
    request: Request,
    session: SessionDep,
    service_code: Annotated[str, Query(min_length=1, max_length=64)],
    lon: Annotated[float, Query(ge=-180, le=180)],
    lat: Annotated[float, Query(ge=-90, le=90)],
    radius_m: Annotated[float | None, Query(gt=0, le=MAX_NEARBY_RADIUS_M)] = None,
    jurisdiction: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> Any:
    problems = check_lonlat(lon, lat)
    if problems:
        raise InvalidInput(
            problems[0].message,
            errors=[
                {"field": p.field, "message": p.message, "type": "value_error", "in": "query"}
                for p in problems
            ],
        )
    catalog = request.app.state.catalog
    place = (
        await catalog.by_slug(session, jurisdiction)
        if jurisdiction
        else await catalog.by_point(session, lon, lat)
    )
    if place is None:
        return []
    place, service = await catalog.service(session, place, service_code)
    if service is None:
        valid = sorted(place.services)
        raise InvalidInput(
            f"Unknown service {service_code!r}; valid codes: {', '.join(valid)}",
            errors=[
                {
                    "field": "service_code",
                    "message": "unknown",
                    "type": "unknown_service",
                    "in": "query",
                }
            ],
            valid=valid,
        )
    return await queries.nearby_open_tickets(
        session,
        service_id=service.id,
        lon=lon,
        lat=lat,
        radius_m=radius_m or max(service.duplicate_radius_m, 100.0),
        limit=limit,
        base_url=request.app.state.settings.public_base_url,
    )


@router.get(
    "/{reference}",
    response_model=TicketDetail,
    dependencies=[CHECK_CREDENTIALS],
    summary="A ticket with its reports, photos and public timeline",
)
async def get_ticket(reference: str, request: Request, session: SessionDep) -> Any:
    return await queries.ticket_detail(
        session, reference, request.app.state.settings.public_base_url
    )


_SUPPORT_LIMIT = Depends(
    rate_limit("support", lambda s: s.rate_limit_reports_per_minute, client_ip)
)


async def _subscribe(
    reference: str,
    request: Request,
    session: SessionDep,
    principal: OptionalPrincipal,
    who: SupportIn | None,
    *,
    support: bool,
) -> SupportOut:
    out, verification = await support_or_follow(
        session,
        reference,
        who or SupportIn(),
        user_id=principal.user_id if principal else None,
        actor_label=principal.label if principal else "anonymous",
        support=support,
    )
    if verification is not None:
        await queue_verifications(
            session, request.app.state.settings, [verification], out.reference
        )
    return out


@router.post(
    "/{reference}/support",
    response_model=SupportOut,
    summary='"Me too": support a ticket and hear about its progress, without a new report',
    dependencies=[_SUPPORT_LIMIT],
    responses=problems((409, "The ticket is closed, rejected or merged: report it again")),
)
async def support(
    reference: str,
    request: Request,
    session: SessionDep,
    principal: OptionalPrincipal,
    who: Annotated[SupportIn | None, Body()] = None,
) -> Any:
    return await _subscribe(reference, request, session, principal, who, support=True)


@router.post(
    "/{reference}/follow",
    response_model=SupportOut,
    summary="Follow a ticket: hear about its progress",
    dependencies=[_SUPPORT_LIMIT],
    responses=problems((409, "The ticket is closed, rejected or merged: report it again")),
)
async def follow(
    reference: str,
    request: Request,
    session: SessionDep,
    principal: OptionalPrincipal,
    who: Annotated[SupportIn | None, Body()] = None,
) -> Any:
    return await _subscribe(reference, request, session, principal, who, support=False)
