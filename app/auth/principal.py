"""Who is calling: a signed-in user or an API key, as one ``Principal``, and the role gates.

Routes declare what they need in their signature::

    async def assign(ticket_id: int, staff: StaffPrincipal, session: SessionDep) -> ...:
        ensure_same_jurisdiction(staff, ticket.jurisdiction_id)

Gates (each answers 401 problem+json without credentials, 403 with too few rights):

- ``OptionalPrincipal``: anyone; ``None`` when anonymous (credentials sent but wrong: 401).
- ``CurrentPrincipal``: any signed-in user or valid API key.
- ``CitizenPrincipal``: the same people as ``CurrentPrincipal``: every role can act as a citizen.
- ``CrewPrincipal``: crew, staff and admin. Staff dispatch and act for crews, so crew routes
  must not assume ``crew_id`` is set.
- ``StaffPrincipal``: staff and admin.
- ``AdminPrincipal``: admin only (API keys are never admin).

Staff, crew and API keys act for one jurisdiction: routes that touch a jurisdiction's data
call ``ensure_same_jurisdiction``. Admins pass every gate and every jurisdiction.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import BackgroundTasks, Depends, Request
from fastapi.security import APIKeyHeader, APIKeyQuery
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.api_keys import LiveApiKey, authenticate_api_key
from app.auth.models import ROLE_RANK, Role, User
from app.auth.users import UserDatabase, UserManager, bearer_transport, get_jwt_strategy
from app.core.contract import answers
from app.core.errors import Forbidden, NotAuthenticated, NotFound
from app.core.ratelimit import limit_account_writes
from app.db import read_db, read_session
from app.settings import Settings

_api_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKeyHeader",
    description="An API key (`ks_...`) issued by a jurisdiction's staff",
    auto_error=False,
)
_api_key_query = APIKeyQuery(
    name="api_key",
    scheme_name="ApiKeyQuery",
    description="The same API key as a query parameter, for Open311 clients",
    auto_error=False,
)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request. ``label`` is stable and unique: use it for audit trails and
    idempotency records ("user:<uuid>" or "api-key:<id>")."""

    kind: Literal["user", "api_key"]
    role: Role
    label: str
    user_id: uuid.UUID | None = None
    api_key_id: int | None = None
    name: str | None = None  # the API key's name, or the user's full name
    jurisdiction_id: int | None = None
    crew_id: int | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin

    def at_least(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def allows(self, scope: str) -> bool:
        """Scopes narrow what an API key may do; people are not scoped."""
        return self.kind == "user" or scope in self.scopes

    @classmethod
    def of_user(cls, user: User) -> Principal:
        return cls(
            kind="user",
            role=Role(user.role),
            label=f"user:{user.id}",
            user_id=user.id,
            name=user.full_name,
            jurisdiction_id=user.jurisdiction_id,
            crew_id=user.crew_id,
        )

    @classmethod
    def of_api_key(cls, key: LiveApiKey) -> Principal:
        return cls(
            kind="api_key",
            role=Role(key.role),
            label=f"api-key:{key.id}",
            api_key_id=key.id,
            name=key.name,
            jurisdiction_id=key.jurisdiction_id,
            scopes=frozenset(key.scopes),
        )


async def resolve_principal(
    session: AsyncSession, settings: Settings, token: str | None, api_key: str | None
) -> Principal | None:
    """The caller with a bearer ``token`` or an ``api_key``, or ``None`` with neither.

    Credentials that are present but wrong are a 401 even where anonymous calls are allowed:
    a client with an expired token must learn it, not be silently treated as anonymous. The
    user manager and token strategy are built only for a token: API-key and anonymous calls,
    most of the machine traffic, skip them.
    """
    if token:
        manager = UserManager(UserDatabase(session, User), settings, BackgroundTasks())
        user = await (await get_jwt_strategy(settings)).read_token(token, manager)
        if user is None:
            raise NotAuthenticated("The access token is invalid or has expired; sign in again")
        if not user.is_active:
            raise NotAuthenticated("This account has been deactivated")
        return Principal.of_user(user)
    if api_key:
        return Principal.of_api_key(await authenticate_api_key(session, api_key))
    return None


@answers(401, credentials="optional")
async def get_optional_principal(
    request: Request,
    token: Annotated[str | None, Depends(bearer_transport.scheme)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
    query_key: Annotated[str | None, Depends(_api_key_query)],
) -> Principal | None:
    """The caller, or ``None`` if the request carries no credentials at all.

    Looked up on a read session of its own, returned before the route runs: no transaction
    round trips for the lookup, and no connection held for it while the route works.
    """
    if not (token or header_key or query_key):
        return None
    principal = await principal_of(request, token, header_key or query_key)
    if principal is not None:
        await limit_account_writes(request, principal.label)
    return principal


async def principal_of(
    request: Request, token: str | None, api_key: str | None
) -> Principal | None:
    """``resolve_principal`` on a connection of its own. A key alone (machine clients, the
    busiest callers) is one hand-written statement on a read-pool connection; a bearer token
    needs the user manager, hence a session."""
    if api_key and not token:
        async with read_db(request) as db:
            return Principal.of_api_key(await authenticate_api_key(db, api_key))
    async with read_session(request) as session:
        return await resolve_principal(session, request.app.state.settings, token, api_key)


@answers(401)
async def refuse_wrong_credentials(request: Request) -> None:
    """For public routes whose answer is the same for everyone: credentials are not needed,
    but wrong or expired ones still get 401, as on every other route (docs/auth.md), so a
    client learns its token is stale. Anonymous requests pay nothing."""
    headers = request.headers
    scheme, _, token = headers.get("authorization", "").partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else None
    key = headers.get("x-api-key") or request.query_params.get("api_key")
    if bearer or key:
        await principal_of(request, bearer, key)


# As a route's or router's ``dependencies=[CHECK_CREDENTIALS]``.
CHECK_CREDENTIALS = Depends(refuse_wrong_credentials)


@answers(401, credentials="required")
async def get_current_principal(
    principal: Annotated[Principal | None, Depends(get_optional_principal)],
) -> Principal:
    if principal is None:
        raise NotAuthenticated()
    return principal


def require_role(minimum: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through principals whose role ranks at least ``minimum``."""

    @answers(403)
    async def role_gate(
        principal: Annotated[Principal, Depends(get_current_principal)],
    ) -> Principal:
        if not principal.at_least(minimum):
            raise Forbidden(f"This needs the {minimum} role (you are {principal.role})")
        return principal

    role_gate.__name__ = f"require_{minimum}"
    return role_gate


def ensure_same_jurisdiction(principal: Principal, jurisdiction_id: int) -> None:
    """403 unless the principal acts for ``jurisdiction_id`` (admins act for every one)."""
    if principal.is_admin:
        return
    if principal.jurisdiction_id != jurisdiction_id:
        raise Forbidden("You may only act for your own jurisdiction")


def ensure_own_object(principal: Principal, jurisdiction_id: int, missing: str) -> None:
    """404 (``missing``) unless the principal acts for ``jurisdiction_id``: another
    jurisdiction's private objects (crews, rules, templates, API keys, work orders) do not
    exist for it, so their ids cannot be probed (docs/auth.md, several jurisdictions)."""
    if principal.is_admin or principal.jurisdiction_id == jurisdiction_id:
        return
    raise NotFound(missing)


OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]
CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]
CitizenPrincipal = Annotated[Principal, Depends(require_role(Role.citizen))]
CrewPrincipal = Annotated[Principal, Depends(require_role(Role.crew))]
StaffPrincipal = Annotated[Principal, Depends(require_role(Role.staff))]
AdminPrincipal = Annotated[Principal, Depends(require_role(Role.admin))]
