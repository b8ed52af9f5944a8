"""HTTP for accounts (``/v1/auth``, ``/v1/users``) and API keys (``/v1/api-keys``).

The account routes are fastapi-users' own, mounted here with our schemas and rate limits.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.routing import APIRoute

from app.auth import api_keys
from app.auth.principal import (
    Principal,
    StaffPrincipal,
    ensure_own_object,
    ensure_same_jurisdiction,
    get_optional_principal,
)
from app.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    UserCreate,
    UserRead,
    UserUpdate,
)
from app.auth.users import fastapi_users, jwt_backend
from app.core.contract import problems
from app.core.errors import Forbidden, InvalidInput, NotFound
from app.core.models import Int4Id
from app.core.ratelimit import client_ip, rate_limit
from app.db import SessionDep
from app.jurisdictions.models import Jurisdiction

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


async def _ip_and_username(request: Request) -> str:
    form = await request.form()  # already parsed by FastAPI for the route; this reads the cache
    username = str(form.get("username") or "").strip().casefold()[:320]
    return f"{client_ip(request)}|{username}"


login_limit = rate_limit("login", lambda s: s.rate_limit_login_per_minute, key=_ip_and_username)
# One address trying many accounts: each account's own budget above never fills.
login_address_limit = rate_limit(
    "login-address", lambda s: s.rate_limit_login_per_address_per_minute
)
register_limit = rate_limit("register", lambda s: s.rate_limit_register_per_minute)
# Both routes send mail to an address the caller names; one budget for the two.
account_mail_limit = rate_limit("account-mail", lambda s: s.rate_limit_account_mail_per_minute)

RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    status.HTTP_429_TOO_MANY_REQUESTS: {"description": "Too many attempts", **PROBLEM}
}


def _only(router: APIRouter, path: str) -> APIRouter:
    """The route at ``path`` of a fastapi-users router, to mount with its own dependencies."""
    picked = APIRouter()
    picked.routes.extend(r for r in router.routes if isinstance(r, APIRoute) and r.path == path)
    assert picked.routes, f"fastapi-users has no route {path}"
    return picked


auth_router = APIRouter(prefix="/v1/auth", tags=["auth"])
_jwt = fastapi_users.get_auth_router(jwt_backend)
auth_router.include_router(
    _only(_jwt, "/login"),
    prefix="/jwt",
    dependencies=[Depends(login_address_limit), Depends(login_limit)],
    responses=RATE_LIMITED,
)
auth_router.include_router(
    _only(_jwt, "/logout"), prefix="/jwt", responses={204: {"description": "Signed out"}}
)
auth_router.include_router(
    fastapi_users.get_register_router(UserRead, UserCreate),
    dependencies=[Depends(register_limit)],
    responses=RATE_LIMITED,
)
_verify = fastapi_users.get_verify_router(UserRead)
auth_router.include_router(
    _only(_verify, "/request-verify-token"),
    dependencies=[Depends(account_mail_limit)],
    responses=RATE_LIMITED,
)
auth_router.include_router(_only(_verify, "/verify"))
_reset = fastapi_users.get_reset_password_router()
auth_router.include_router(
    _only(_reset, "/forgot-password"),
    dependencies=[Depends(account_mail_limit)],
    responses=RATE_LIMITED,
)
auth_router.include_router(_only(_reset, "/reset-password"))

users_router = APIRouter(prefix="/v1/users", tags=["users"])
users_router.include_router(
    fastapi_users.get_users_router(UserRead, UserUpdate),
    # fastapi-users identifies the caller itself; ours too, so the account's write budget
    # (per account or API key, as on every other route) counts these writes as well.
    dependencies=[Depends(get_optional_principal)],
    # The last active admin cannot be deleted, demoted or deactivated.
    responses=problems((409, "This would leave no active admin")),
)


# -- API keys ----------------------------------------------------------------------------------

api_keys_router = APIRouter(
    prefix="/v1/api-keys",
    tags=["api-keys"],
    responses={
        401: {"description": "Not signed in", **PROBLEM},
        403: {"description": "Not staff of this jurisdiction", **PROBLEM},
    },
)


def _people_only(principal: Principal) -> None:
    if principal.kind != "user":
        raise Forbidden("API keys are managed by people, not by other API keys")


def _jurisdiction_of(principal: Principal, requested: int | None) -> int | None:
    """The jurisdiction a staff member acts for; for an admin, the one they asked for."""
    if principal.is_admin:
        return requested
    if principal.jurisdiction_id is None:
        raise Forbidden("Your account is not linked to a jurisdiction")
    if requested is not None:
        ensure_same_jurisdiction(principal, requested)
    return principal.jurisdiction_id


@api_keys_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Issue an API key (the secret is in this response only)",
    responses={
        404: {"description": "No such jurisdiction", **PROBLEM},
        422: {"description": "Invalid input", **PROBLEM},
    },
)
async def create_api_key(
    body: ApiKeyCreate, staff: StaffPrincipal, session: SessionDep
) -> ApiKeyCreated:
    _people_only(staff)
    jurisdiction_id = _jurisdiction_of(staff, body.jurisdiction_id)
    if jurisdiction_id is None:
        raise InvalidInput(
            "Say which jurisdiction the key is for",
            errors=[
                {"field": "jurisdiction_id", "message": "required for admins", "type": "missing"}
            ],
        )
    if await session.get(Jurisdiction, jurisdiction_id) is None:
        raise NotFound(f"No jurisdiction {jurisdiction_id}")
    issued = await api_keys.issue_api_key(
        session,
        jurisdiction_id=jurisdiction_id,
        name=body.name,
        role=body.role,
        scopes=body.scopes,
        expires_at=body.expires_at,
        created_by_id=staff.user_id,
        creator_role=staff.role,
    )
    read = ApiKeyRead.model_validate(issued.api_key)
    return ApiKeyCreated(**read.model_dump(), key=issued.secret)


@api_keys_router.get("", summary="List API keys (never their secrets)")
async def list_api_keys(
    staff: StaffPrincipal,
    session: SessionDep,
    jurisdiction_id: Annotated[
        Int4Id | None, Query(description="Admins: only this jurisdiction's keys")
    ] = None,
) -> list[ApiKeyRead]:
    _people_only(staff)
    keys = await api_keys.list_api_keys(session, _jurisdiction_of(staff, jurisdiction_id))
    return [ApiKeyRead.model_validate(k) for k in keys]


@api_keys_router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key (revoking it again changes nothing)",
    responses={404: {"description": "No such key", **PROBLEM}},
)
async def revoke_api_key(key_id: Int4Id, staff: StaffPrincipal, session: SessionDep) -> Response:
    _people_only(staff)
    api_key = await api_keys.get_api_key(session, key_id)
    ensure_own_object(staff, api_key.jurisdiction_id, f"No API key {key_id}")
    await api_keys.revoke_api_key(session, api_key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


router = APIRouter()
router.include_router(auth_router)
router.include_router(users_router)
router.include_router(api_keys_router)
