"""HTTP for contacts: confirm an address from the link we sent to it."""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from app.contacts import service
from app.db import SessionDep

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])

Token = Annotated[str, Query(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class VerifiedOut(BaseModel):
    verified: bool
    kind: str


@router.get(
    "/verify",
    response_class=HTMLResponse,
    summary="The page behind a verification link: a button that confirms the address",
    description=(
        "Opening the link changes nothing (mail scanners open links too); the button on the "
        "page sends the POST that confirms."
    ),
)
async def verification_page(token: Token) -> HTMLResponse:
    safe = html.escape(token, quote=True)
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width'><title>Confirm updates</title>"
        "<body style='font-family:sans-serif;max-width:32em;margin:3em auto'>"
        "<h1>Confirm updates</h1><p>Confirm that this address may receive updates about the"
        " reports it follows.</p>"
        f"<form method=post action='/v1/contacts/verify?token={safe}'>"
        "<button type=submit>Confirm</button></form></body></html>"
    )


@router.post(
    "/verify",
    response_model=VerifiedOut,
    summary="Confirm an address with the token sent to it",
    responses={
        200: {"content": {"text/html": {}}, "description": "Confirmed (HTML for a browser)"},
        422: {"description": "Unknown, used or expired token"},
    },
)
async def verify(token: Token, request: Request, session: SessionDep) -> VerifiedOut | Response:
    contact = await service.verify(session, token)
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(
            "<!doctype html><html lang=en><meta charset=utf-8><title>Confirmed</title>"
            "<body style='font-family:sans-serif;max-width:32em;margin:3em auto'>"
            "<h1>Thank you</h1><p>This address will now receive the updates it asked for."
            " Every message has a link to stop them.</p></body></html>"
        )
    return VerifiedOut(verified=True, kind=contact.kind.value)
