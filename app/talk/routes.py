"""HTTP for talk: spike alerts, trends and moods for staff (of their own jurisdiction), and
the reporter's one-tap answer to "was it fixed?" (a signed link, no account needed)."""

from __future__ import annotations

import html
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.auth.principal import StaffPrincipal
from app.db import SessionDep
from app.talk import satisfaction, service
from app.talk.schemas import AlertDetail, AlertPage, Moods, SatisfactionOut, Trends

router = APIRouter(tags=["talk"])

AlertId = Annotated[int, Path(ge=1, le=2**53 - 1)]
NotificationId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Signature = Annotated[str, Query(min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$")]
JurisdictionSlug = Annotated[
    str | None,
    Query(min_length=1, max_length=100, description="Default: the caller's own jurisdiction"),
]
Code = Annotated[str | None, Query(min_length=1, max_length=64)]


@router.get(
    "/v1/alerts",
    response_model=AlertPage,
    summary="Spike alerts of a jurisdiction, newest first (staff)",
    responses={404: {"description": "No jurisdiction with this slug"}},
    description=(
        "An alert is a burst of reports and posts of one service in one place beyond what "
        "that place usually sees at that hour of the week (docs/talk.md). `broadcast` is the "
        "body of `POST /v1/broadcasts` for its suggested polygon: add the words and send."
    ),
)
async def list_alerts(
    staff: StaffPrincipal,
    session: SessionDep,
    jurisdiction: JurisdictionSlug = None,
    status: Annotated[Literal["open", "closed"] | None, Query()] = None,
    before: Annotated[int | None, Query(ge=1, le=2**53 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AlertPage:
    return await service.list_alerts(
        session, staff, jurisdiction, status=status, before=before, limit=limit
    )


@router.get(
    "/v1/alerts/{alert_id}",
    response_model=AlertDetail,
    summary="One spike alert with the reports, posts and tickets behind it (staff)",
    responses={404: {"description": "No such alert (or another jurisdiction's)"}},
)
async def get_alert(alert_id: AlertId, staff: StaffPrincipal, session: SessionDep) -> AlertDetail:
    return await service.get_alert(session, staff, alert_id)


@router.post(
    "/v1/alerts/{alert_id}/acknowledge",
    response_model=AlertDetail,
    summary="Say that staff saw a spike alert (the first acknowledgement stands)",
    responses={404: {"description": "No such alert (or another jurisdiction's)"}},
)
async def acknowledge_alert(
    alert_id: AlertId, staff: StaffPrincipal, session: SessionDep
) -> AlertDetail:
    return await service.acknowledge(session, staff, alert_id)


@router.get(
    "/v1/talk/trends",
    response_model=Trends,
    summary="Terms, hashtags or services rising today against their recent baseline (staff)",
    responses={404: {"description": "No jurisdiction with this slug"}},
)
async def trends(
    staff: StaffPrincipal,
    session: SessionDep,
    jurisdiction: JurisdictionSlug = None,
    area: Code = None,
    kind: Annotated[Literal["terms", "services"], Query()] = "terms",
    baseline_days: Annotated[int, Query(ge=1, le=60)] = 14,
    min_count: Annotated[int, Query(ge=1, le=1000)] = 3,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Trends:
    return await service.trends(
        session,
        staff,
        jurisdiction,
        area=area,
        kind=kind,
        baseline_days=baseline_days,
        min_count=min_count,
        limit=limit,
    )


@router.get(
    "/v1/talk/sentiment",
    response_model=Moods,
    summary="Sentiment of reports and posts over time, per service, area or channel (staff)",
    responses={404: {"description": "No jurisdiction with this slug"}},
)
async def sentiment(
    staff: StaffPrincipal,
    session: SessionDep,
    jurisdiction: JurisdictionSlug = None,
    by: Annotated[Literal["none", "service", "area", "channel"], Query()] = "none",
    bucket_days: Annotated[int, Query(ge=1, le=31)] = 1,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    service_code: Annotated[str | None, Query(alias="service", min_length=1, max_length=64)] = None,
    area: Code = None,
    channel: Code = None,
) -> Moods:
    return await service.moods(
        session,
        staff,
        jurisdiction,
        by=by,
        bucket_days=bucket_days,
        days=days,
        service=service_code,
        area=area,
        channel=channel,
    )


_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8>"
    "<meta name=viewport content='width=device-width'><title>Was it fixed?</title>"
    "<body style='font-family:sans-serif;max-width:32em;margin:3em auto'>{content}</body></html>"
)


@router.get(
    "/v1/satisfaction/{notification_id}",
    response_class=HTMLResponse,
    summary='The page behind a fix message\'s "was it fixed?" link: two buttons',
    description="Opening the link changes nothing (mail scanners open links too).",
    responses={404: {"description": "Unknown link"}},
)
async def satisfaction_page(
    notification_id: NotificationId, sig: Signature, request: Request, session: SessionDep
) -> HTMLResponse:
    reference = await satisfaction.check(session, request.app.state.settings, notification_id, sig)
    action = f"/v1/satisfaction/{notification_id}?sig={sig}"
    return HTMLResponse(
        _PAGE.format(
            content=f"<h1>Was {html.escape(reference)} fixed?</h1>"
            f"<form method=post action='{action}&amp;answer=yes'>"
            "<button type=submit>Yes, it is fixed</button></form>"
            f"<form method=post action='{action}&amp;answer=no'>"
            "<button type=submit>No, it is not</button></form>"
        )
    )


@router.post(
    "/v1/satisfaction/{notification_id}",
    response_model=SatisfactionOut,
    summary='Answer "was it fixed?": no reopens the ticket, yes confirms',
    responses={
        200: {"content": {"text/html": {}}, "description": "Recorded (HTML for a browser)"},
        404: {"description": "Unknown link"},
    },
)
async def answer_satisfaction(
    notification_id: NotificationId,
    sig: Signature,
    answer: Annotated[Literal["yes", "no"], Query()],
    request: Request,
    session: SessionDep,
) -> SatisfactionOut | Response:
    done = await satisfaction.answer(
        session, request.app.state.settings, notification_id, sig, answer
    )
    if "text/html" in request.headers.get("accept", ""):
        words = (
            "We reopened it and will look again." if done.reopened else "Thank you for telling us."
        )
        return HTMLResponse(_PAGE.format(content=f"<h1>Thank you</h1><p>{words}</p>"))
    return SatisfactionOut(ticket=done.reference, answer=done.answer, status=done.status)
