"""HTTP for crews, their territories and members, areas, and assignment rules (staff, admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from app.auth.principal import CrewPrincipal, StaffPrincipal
from app.core.models import Int4Id
from app.crews import service
from app.crews.schemas import (
    AreaOut,
    CrewIn,
    CrewOut,
    CrewPatch,
    MemberOut,
    RuleIn,
    RuleOut,
    RulePatch,
    TerritoryIn,
)
from app.db import SessionDep

router = APIRouter(prefix="/v1", tags=["crews"])

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in", "content": {"application/problem+json": {}}},
    403: {"description": "Not staff, or another jurisdiction named"},
    404: {"description": "No such crew in your jurisdiction"},
}
JurisdictionQuery = Annotated[
    Int4Id | None, Query(description="Admins: one jurisdiction (default: all)")
]


@router.get(
    "/crews",
    response_model=list[CrewOut],
    summary="Crews of your jurisdiction",
    responses=_PROBLEMS,
)
async def list_crews(
    session: SessionDep,
    staff: StaffPrincipal,
    jurisdiction_id: JurisdictionQuery = None,
    include_inactive: bool = False,
) -> Any:
    return await service.list_crews(
        session, staff, jurisdiction_id, include_inactive=include_inactive
    )


@router.post(
    "/crews",
    status_code=201,
    response_model=CrewOut,
    summary="Create a crew, optionally with its territory",
    responses={**_PROBLEMS, 409: {"description": "A crew of that name exists"}},
)
async def create_crew(body: CrewIn, session: SessionDep, staff: StaffPrincipal) -> Any:
    return await service.create_crew(session, staff, body)


@router.get("/crews/{crew_id}", response_model=CrewOut, summary="One crew", responses=_PROBLEMS)
async def get_crew(crew_id: Int4Id, session: SessionDep, staff: StaffPrincipal) -> Any:
    return await service.get_crew(session, staff, crew_id)


@router.patch(
    "/crews/{crew_id}",
    response_model=CrewOut,
    summary="Rename, deactivate or reactivate a crew",
    responses={**_PROBLEMS, 409: {"description": "A crew of that name exists"}},
)
async def update_crew(
    crew_id: Int4Id, body: CrewPatch, session: SessionDep, staff: StaffPrincipal
) -> Any:
    return await service.update_crew(session, staff, crew_id, body)


@router.delete(
    "/crews/{crew_id}",
    status_code=204,
    response_class=Response,
    summary="Deactivate a crew (kept for the history of its tickets)",
    responses=_PROBLEMS,
)
async def deactivate_crew(crew_id: Int4Id, session: SessionDep, staff: StaffPrincipal) -> Response:
    await service.deactivate_crew(session, staff, crew_id)
    return Response(status_code=204)


@router.put(
    "/crews/{crew_id}/areas",
    response_model=CrewOut,
    summary="Set the areas a crew covers (replaces its territory)",
    responses=_PROBLEMS,
)
async def set_territory(
    crew_id: Int4Id, body: TerritoryIn, session: SessionDep, staff: StaffPrincipal
) -> Any:
    return await service.set_territory(session, staff, crew_id, body)


@router.get(
    "/crews/{crew_id}/members",
    response_model=list[MemberOut],
    summary="The accounts of a crew",
    responses=_PROBLEMS,
)
async def crew_members(crew_id: Int4Id, session: SessionDep, staff: StaffPrincipal) -> Any:
    return await service.crew_members(session, staff, crew_id)


@router.get(
    "/areas",
    response_model=list[AreaOut],
    summary="Areas of your jurisdiction, with the crews covering each (crew, staff, admin)",
    responses=_PROBLEMS,
)
async def list_areas(
    session: SessionDep, principal: CrewPrincipal, jurisdiction_id: JurisdictionQuery = None
) -> Any:
    return await service.list_areas(session, principal, jurisdiction_id)


@router.get(
    "/assignment-rules",
    response_model=list[RuleOut],
    summary="Rules that assign new tickets to crews by area and service",
    responses=_PROBLEMS,
)
async def list_rules(
    session: SessionDep, staff: StaffPrincipal, jurisdiction_id: JurisdictionQuery = None
) -> Any:
    return await service.list_rules(session, staff, jurisdiction_id)


@router.post(
    "/assignment-rules",
    status_code=201,
    response_model=RuleOut,
    summary="Add an assignment rule (area and/or service → crew)",
    responses={**_PROBLEMS, 409: {"description": "A rule with this area and service exists"}},
)
async def create_rule(body: RuleIn, session: SessionDep, staff: StaffPrincipal) -> Any:
    return await service.create_rule(session, staff, body)


@router.patch(
    "/assignment-rules/{rule_id}",
    response_model=RuleOut,
    summary="Change an assignment rule",
    responses={**_PROBLEMS, 409: {"description": "A rule with this area and service exists"}},
)
async def update_rule(
    rule_id: Int4Id, body: RulePatch, session: SessionDep, staff: StaffPrincipal
) -> Any:
    return await service.update_rule(session, staff, rule_id, body)


@router.delete(
    "/assignment-rules/{rule_id}",
    status_code=204,
    response_class=Response,
    summary="Remove an assignment rule",
    responses=_PROBLEMS,
)
async def delete_rule(rule_id: Int4Id, session: SessionDep, staff: StaffPrincipal) -> Response:
    await service.delete_rule(session, staff, rule_id)
    return Response(status_code=204)
