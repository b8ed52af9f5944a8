"""HTTP for linked accounts: ``/v1/me/linked-accounts`` (the signed-in person's own)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.auth.principal import CurrentPrincipal
from app.contacts.service import LinkedContact
from app.core.contract import problems
from app.core.errors import BadRequest
from app.db import SessionDep
from app.linking import service
from app.linking.models import LinkPlatform

router = APIRouter(prefix="/v1/me/linked-accounts", tags=["linked accounts"])

LinkId = Annotated[int, Path(ge=1, le=2**53 - 1)]
State = Annotated[
    str,
    Field(
        min_length=59,
        max_length=76,
        pattern=service.STATE_PATTERN,
        description="The state `start` gave, as the platform handed it back",
    ),
]


class StartIn(BaseModel):
    jurisdiction: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        description="The city whose account sends the notices (its slug)"
    )
    account: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="Which of its accounts (a handle); unset: the first offered"
    )
    server: Annotated[str, Field(min_length=1, max_length=300)] | None = Field(
        default=None,
        description="Mastodon: your own server, as a host name (`mastodon.social`, optionally "
        "with `:port`); unset or the city account's server: linked there",
        examples=["mastodon.social"],
    )


class StartOut(BaseModel):
    platform: Literal["mastodon", "messenger", "x"]
    authorize_url: str = Field(
        description="Where to send the person: the Mastodon server's authorization page, or "
        "the Page's m.me link (open the conversation to finish linking)"
    )
    state: str = Field(description="Bound to you, single use, valid until expires_at")
    expires_at: datetime


class CallbackIn(BaseModel):
    code: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9._~+/=-]+$")]
    state: State


class LinkedAccount(BaseModel):
    """An account of yours that receives notices (your own data: never public)."""

    id: int = Field(description="Unlink with DELETE /v1/me/linked-accounts/{id}")
    platform: Literal["mastodon", "messenger", "x"]
    handle: str | None = Field(
        description="Mastodon: user@instance; X: the username; Messenger: none"
    )
    via: str | None = Field(description="The city account that sends the notices")
    how: str | None = Field(
        description="How it was linked: oauth:mastodon, oauth:x, messenger:referral"
    )
    linked_at: datetime


def _out(linked: LinkedContact) -> LinkedAccount:
    via: Any = linked.evidence.get("via")
    return LinkedAccount(
        id=linked.id,
        platform=service.PLATFORM_OF[linked.kind].value,
        handle=linked.handle,
        via=str(via.get("account")) if isinstance(via, dict) and via.get("account") else None,
        how=str(linked.evidence.get("how")) if linked.evidence.get("how") else None,
        linked_at=linked.linked_at,
    )


def _person(principal: Any) -> Any:
    if principal.user_id is None:
        raise BadRequest("API keys link no accounts; sign in as a person")
    return principal.user_id


@router.get(
    "",
    response_model=list[LinkedAccount],
    summary="Your linked accounts: where you receive notices that there is news",
    responses=problems((400, "An API key: sign in as a person")),
)
async def my_linked_accounts(
    principal: CurrentPrincipal, session: SessionDep
) -> list[LinkedAccount]:
    return [_out(c) for c in await service.linked(session, _person(principal))]


@router.post(
    "/{platform}/start",
    response_model=StartOut,
    status_code=201,
    summary="Start linking an account of yours for notices",
    description=(
        "Mastodon: OAuth 2 on your own server (`server`; the city account's when unset), "
        "authorization code with PKCE, scope `profile` (our app is registered on your server "
        "at its first linking); X: OAuth 2 with PKCE (`users.read tweet.read`); send the person to "
        "`authorize_url`, then POST the code and state to "
        "`/v1/me/linked-accounts/{platform}/callback`. Messenger: open `authorize_url` (the "
        "city Page's m.me link carrying the state as `ref`); the link is made when the "
        "conversation opens. Notices say only that there is news about your report, with "
        "a link to your page."
    ),
    responses=problems(
        (400, "An API key: sign in as a person"),
        (404, "No such city, or it offers no account of this platform to link"),
        (
            422,
            "The server named is no host name, resolves to an address we do not call, does "
            "not answer, or is not Mastodon 4.3 or later (`errors[0].field`: `server`)",
        ),
    ),
)
async def start(
    platform: LinkPlatform,
    given: StartIn,
    principal: CurrentPrincipal,
    request: Request,
    session: SessionDep,
) -> StartOut:
    started = await service.start(
        session,
        request.app.state.settings,
        _person(principal),
        platform,
        given.jurisdiction,
        given.account,
        given.server,
    )
    return StartOut(
        platform=started.platform.value,
        authorize_url=started.authorize_url,
        state=started.state,
        expires_at=started.expires_at,
    )


@router.post(
    "/{platform}/callback",
    response_model=LinkedAccount,
    status_code=201,
    summary="Finish linking a Mastodon or X account with the code the platform handed back",
    description=(
        "Send what the platform appended to the redirect URI (`code`, `state`), signed in as "
        "the person who started: the state alone does not finish a linking."
    ),
    responses=problems(
        (400, "An API key: sign in as a person"),
        (404, "The city no longer offers the account"),
        (409, "The account is linked to another person"),
        (422, "The state is forged, expired, used or another's; or the platform refused the code"),
    ),
)
async def callback(
    platform: Literal["mastodon", "x"],
    given: CallbackIn,
    principal: CurrentPrincipal,
    request: Request,
    session: SessionDep,
) -> LinkedAccount:
    linked = await service.finish_oauth(
        session,
        request.app.state.settings,
        _person(principal),
        LinkPlatform(platform),
        given.code,
        given.state,
    )
    return _out(linked)


@router.delete(
    "/{link_id}",
    status_code=204,
    summary="Unlink: no notice is sent to the account from now on, queued ones included",
    responses=problems((400, "An API key: sign in as a person"), (404, "Not one of yours")),
)
async def unlink(link_id: LinkId, principal: CurrentPrincipal, session: SessionDep) -> Response:
    await service.unlink(session, _person(principal), link_id)
    return Response(status_code=204)
