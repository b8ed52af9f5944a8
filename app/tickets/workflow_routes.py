"""HTTP for the ticket workflow: status, reopen, assignment, priority, comments, merge, split,
the internal view of a ticket, and response templates.

Each route checks the caller's role here (the gate) and their reach (jurisdiction, crew
territory, reporter) in the service; every action is a timeline event with actor and time.
"""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import text

from app.auth.principal import (
    CHECK_CREDENTIALS,
    CitizenPrincipal,
    CrewPrincipal,
    OptionalPrincipal,
    Principal,
    StaffPrincipal,
    ensure_own_object,
    ensure_same_jurisdiction,
)
from app.core import clock
from app.core.contract import problems
from app.core.errors import InvalidInput, NotFound
from app.core.models import Int4Id
from app.db import SessionDep
from app.tickets import information, queries, service, templates, workflow
from app.tickets.models import TicketStatus
from app.tickets.schemas import (
    AssignIn,
    CommentIn,
    InformationIn,
    InformationRequestIn,
    MergeIn,
    MergeOut,
    PriorityIn,
    ReopenIn,
    ResponseTemplateIn,
    ResponseTemplateOut,
    SplitIn,
    SplitOut,
    StaffTicketDetail,
    StatusChangeIn,
)

router = APIRouter(
    prefix="/v1/tickets",
    tags=["workflow"],
    responses=problems((409, "The ticket's state does not allow this (now)")),
)


async def _detail(
    session: SessionDep, request: Request, reference: str, actor: Principal
) -> StaffTicketDetail:
    await session.flush()
    return await queries.staff_ticket_detail(
        session,
        reference,
        request.app.state.settings.public_base_url,
        actor=actor,
        now=clock.now(),
    )


@router.get(
    "/{reference}/internal",
    response_model=StaffTicketDetail,
    summary="A ticket as staff and crews see it: internal timeline, crew, priority signal",
)
async def internal_view(
    reference: str, request: Request, session: SessionDep, actor: CrewPrincipal
) -> Any:
    return await _detail(session, request, reference, actor)


@router.post(
    "/{reference}/status",
    response_model=StaffTicketDetail,
    summary="Move a ticket along the workflow (staff; crews: acknowledge, schedule, start, fix)",
    description=(
        "Allowed moves: open/reopened → acknowledged, scheduled, in_progress, fixed,"
        " not_our_responsibility, rejected; acknowledged → scheduled, in_progress, fixed, ...;"
        " fixed → closed, reopened; closed, rejected, not_our_responsibility → reopened."
        " `duplicate` only by merging. Without a `note`, the response template for the service,"
        " status and language becomes the public note. 409 when the move is not in the"
        " workflow, 403 when your role may not make it."
    ),
)
async def change_status(
    reference: str,
    body: StatusChangeIn,
    request: Request,
    session: SessionDep,
    actor: CrewPrincipal,
) -> Any:
    ticket_id = await workflow.ticket_id(session, reference)
    await workflow.change_status(
        session,
        ticket_id,
        body.status,
        actor=actor,
        note=body.note,
        internal_note=body.internal_note,
        use_template=body.use_template,
    )
    return await _detail(session, request, reference, actor)


@router.post(
    "/{reference}/reopen",
    status_code=204,
    summary='"It is not fixed": a reporter reopens a fixed ticket',
    description=(
        "A reporter of the ticket may reopen it within the service's reopen window after the"
        " fix (default 14 days); staff may reopen any fixed, closed or dismissed ticket. The"
        " reason is the public note on the timeline."
    ),
)
async def reopen(
    reference: str, body: ReopenIn, session: SessionDep, actor: CitizenPrincipal
) -> Response:
    ticket_id = await workflow.ticket_id(session, reference)
    await workflow.change_status(
        session, ticket_id, TicketStatus.reopened, actor=actor, note=body.reason
    )
    return Response(status_code=204)


@router.post(
    "/{reference}/assign",
    response_model=StaffTicketDetail,
    summary="Give a ticket to a crew (or take it back with crew_id null)",
)
async def assign(
    reference: str, body: AssignIn, request: Request, session: SessionDep, actor: StaffPrincipal
) -> Any:
    ticket_id = await workflow.ticket_id(session, reference)
    await workflow.assign(session, ticket_id, body.crew_id, actor=actor, note=body.note)
    return await _detail(session, request, reference, actor)


@router.post(
    "/{reference}/priority",
    response_model=StaffTicketDetail,
    summary="Set a priority by hand, or null to follow the computed signal",
)
async def set_priority(
    reference: str,
    body: PriorityIn,
    request: Request,
    session: SessionDep,
    actor: StaffPrincipal,
) -> Any:
    ticket_id = await workflow.ticket_id(session, reference)
    await workflow.set_priority(session, ticket_id, body.priority, actor=actor, reason=body.reason)
    return await _detail(session, request, reference, actor)


@router.post(
    "/{reference}/comments",
    response_model=StaffTicketDetail,
    status_code=201,
    summary="A note on the timeline: internal (default) or public",
)
async def comment(
    reference: str, body: CommentIn, request: Request, session: SessionDep, actor: CrewPrincipal
) -> Any:
    ticket_id = await workflow.ticket_id(session, reference)
    await workflow.comment(session, ticket_id, body.note, public=body.public, actor=actor)
    return await _detail(session, request, reference, actor)


@router.post(
    "/{reference}/information-request",
    response_model=StaffTicketDetail,
    status_code=201,
    summary="Needs more information: ask the ticket's reporters a question (staff)",
    description=(
        "The question is a public line on the timeline and is sent, in the same transaction,"
        " to every reporter and supporter who agreed to hear about the ticket, each message"
        " with its own link to answer. The ticket then shows `information: requested` until"
        " one of them answers. 409 when the ticket is not open."
    ),
)
async def ask_for_information(
    reference: str,
    body: InformationRequestIn,
    request: Request,
    session: SessionDep,
    actor: StaffPrincipal,
) -> Any:
    ticket_id = await workflow.ticket_id(session, reference)
    await information.ask(session, ticket_id, body.question, actor=actor)
    return await _detail(session, request, reference, actor)


@router.post(
    "/{reference}/information",
    status_code=204,
    summary="A reporter answers staff's question (signed in, or by the message's link)",
    description=(
        "A reporter or supporter of the ticket, signed in; or anyone with the answer link of"
        " a message that asked (`notification` and `sig`, signed per message), so reporters"
        " without an account answer too. The answer is an internal line on the timeline"
        " (staff and crews read it; it may carry personal details) and puts the ticket back"
        " with staff (`information: answered`). 403 for anyone else, 404 for a wrong link,"
        " 409 when nothing was asked."
    ),
    responses={
        403: {"description": "Not a reporter or supporter"},
        404: {"description": "Unknown ticket or answer link"},
        409: {"description": "Nobody asked"},
    },
)
async def answer_information(
    reference: str,
    body: InformationIn,
    request: Request,
    session: SessionDep,
    principal: OptionalPrincipal,
    notification: Annotated[
        int | None, Query(ge=1, le=2**53 - 1, description="From the answer link")
    ] = None,
    sig: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{32}$", description="From the answer link")
    ] = None,
) -> Response:
    ticket_id = await workflow.ticket_id(session, reference)
    await information.answer(
        session,
        ticket_id,
        body.answer,
        actor=principal,
        settings=request.app.state.settings,
        notification_id=notification,
        sig=sig,
    )
    return Response(status_code=204)


_LinkNotification = Annotated[int, Query(ge=1, le=2**53 - 1, description="From the answer link")]
_LinkSignature = Annotated[
    str, Query(pattern=r"^[0-9a-f]{32}$", description="From the answer link")
]
_PAGE = (
    "<!doctype html><html><meta charset=utf-8><title>{title}</title>"
    "<body style='font-family:sans-serif;max-width:32em;margin:3em auto'>{body}</body></html>"
)


@router.get(
    "/{reference}/information",
    response_class=HTMLResponse,
    summary="The page behind a question's answer link: the question and a box to answer",
    responses={404: {"description": "Unknown ticket or link"}},
    dependencies=[CHECK_CREDENTIALS],
)
async def answer_page(
    reference: str,
    request: Request,
    session: SessionDep,
    notification: _LinkNotification,
    sig: _LinkSignature,
) -> HTMLResponse:
    ticket_id = await workflow.ticket_id(session, reference)
    question = await information.question_of_link(
        session, request.app.state.settings, ticket_id, notification, sig
    )
    ref = html.escape(reference.upper())
    action = f"/v1/tickets/{ref}/information/form?notification={notification}&amp;sig={sig}"
    return HTMLResponse(
        _PAGE.format(
            title=f"{ref}: a question",
            body=f"<h1>{ref}</h1><p>{html.escape(question)}</p>"
            f"<form method=post action='{action}'>"
            "<textarea name=answer rows=6 cols=50 required maxlength=4000></textarea>"
            "<p><button type=submit>Send</button></p></form>",
        )
    )


@router.post(
    "/{reference}/information/form",
    response_class=HTMLResponse,
    summary="The answer page's form: the same answer as POST …/information with the link",
    responses={404: {"description": "Unknown ticket or link"}},
    dependencies=[CHECK_CREDENTIALS],
)
async def answer_form(
    reference: str,
    request: Request,
    session: SessionDep,
    notification: _LinkNotification,
    sig: _LinkSignature,
    form: Annotated[InformationIn, Form()],
) -> HTMLResponse:
    ticket_id = await workflow.ticket_id(session, reference)
    await information.answer(
        session,
        ticket_id,
        form.answer,
        actor=None,
        settings=request.app.state.settings,
        notification_id=notification,
        sig=sig,
    )
    ref = html.escape(reference.upper())
    return HTMLResponse(
        _PAGE.format(title=f"{ref}: thank you", body=f"<h1>Thank you</h1><p>{ref}</p>")
    )


@router.post(
    "/{reference}/merge",
    response_model=MergeOut,
    summary="Merge this ticket into another: it becomes a duplicate of it",
    description=(
        "All reports, photos, subscribers and supporters move to the other ticket; this one"
        " becomes `duplicate` with `merged_into` set, and its followers follow the other one"
        " from now on. Both timelines record the merge."
    ),
)
async def merge(
    reference: str, body: MergeIn, session: SessionDep, actor: StaffPrincipal
) -> MergeOut:
    duplicate_id = await workflow.ticket_id(session, reference)
    into_id = await workflow.ticket_id(session, body.into)
    return await service.merge(session, duplicate_id, into_id, actor=actor, note=body.note)


@router.post(
    "/{reference}/split",
    response_model=SplitOut,
    status_code=201,
    summary="Move one report out of this ticket into a new ticket",
)
async def split(
    reference: str, body: SplitIn, session: SessionDep, actor: StaffPrincipal
) -> SplitOut:
    ticket_id = await workflow.ticket_id(session, reference)
    return await service.split(session, ticket_id, body.report_id, actor=actor, note=body.note)


# -- response templates ------------------------------------------------------------------------

templates_router = APIRouter(prefix="/v1/response-templates", tags=["workflow"])

_TEMPLATE_COLUMNS = (
    "rt.id, s.code AS service_code, rt.status, rt.language, rt.body, rt.updated_at"
    " FROM response_template rt LEFT JOIN service s ON s.id = rt.service_id"
)


def _jurisdiction_of(actor: Principal, jurisdiction_id: int | None) -> int:
    chosen = jurisdiction_id or actor.jurisdiction_id
    if chosen is None:
        raise InvalidInput(
            "Say which jurisdiction (admins act for every one)",
            errors=[
                {"field": "jurisdiction_id", "message": "missing", "type": "missing", "in": "query"}
            ],
        )
    ensure_same_jurisdiction(actor, chosen)
    return chosen


@templates_router.get(
    "", response_model=list[ResponseTemplateOut], summary="Response templates of your jurisdiction"
)
async def list_templates(
    session: SessionDep, actor: StaffPrincipal, jurisdiction_id: Int4Id | None = None
) -> Any:
    rows = await session.execute(
        text(
            "SELECT " + _TEMPLATE_COLUMNS + " WHERE rt.jurisdiction_id = :j"
            " ORDER BY rt.status, s.code NULLS FIRST, rt.language"
        ),
        {"j": _jurisdiction_of(actor, jurisdiction_id)},
    )
    return [ResponseTemplateOut.model_validate(r._mapping) for r in rows]


@templates_router.put(
    "",
    response_model=ResponseTemplateOut,
    summary="Create or replace the template for (service or every service, status, language)",
    responses=problems((404, "An admin named a jurisdiction that does not exist")),
    description="Placeholders: "
    + ", ".join(f"`{{{p}}}`" for p in sorted(templates.PLACEHOLDERS))
    + ". Others are refused with 422.",
)
async def put_template(
    body: ResponseTemplateIn,
    session: SessionDep,
    actor: StaffPrincipal,
    jurisdiction_id: Int4Id | None = None,
) -> Any:
    jid = _jurisdiction_of(actor, jurisdiction_id)
    languages = (
        await session.execute(text("SELECT languages FROM jurisdiction WHERE id = :j"), {"j": jid})
    ).scalar_one_or_none()
    if languages is None:  # an admin named a jurisdiction that does not exist
        raise NotFound(f"No jurisdiction {jid}")
    if body.language not in languages:
        # The city file holds the templates too, and refuses other languages on export.
        raise InvalidInput(
            f"{body.language!r} is not one of the jurisdiction's languages"
            f" ({', '.join(languages)})",
            errors=[{"field": "language", "message": "not offered", "type": "value_error"}],
        )
    unknown = templates.unknown_placeholders(body.body)
    if unknown:
        raise InvalidInput(
            f"Unknown placeholders: {', '.join(unknown)}; use "
            + ", ".join(sorted(templates.PLACEHOLDERS)),
            errors=[{"field": "body", "message": "unknown placeholder", "type": "value_error"}],
        )
    service_id = None
    if body.service_code is not None:
        service_id = (
            await session.execute(
                text("SELECT id FROM service WHERE jurisdiction_id = :j AND code = :c"),
                {"j": jid, "c": body.service_code},
            )
        ).scalar_one_or_none()
        if service_id is None:
            raise InvalidInput(
                f"Unknown service {body.service_code!r}",
                errors=[{"field": "service_code", "message": "unknown", "type": "unknown_service"}],
            )
    template_id = (
        await session.execute(
            text(
                """
                INSERT INTO response_template (jurisdiction_id, service_id, status, language, body)
                VALUES (:j, :s, :status, :language, :body)
                ON CONFLICT (jurisdiction_id, service_id, status, language)
                DO UPDATE SET body = EXCLUDED.body, updated_at = now()
                RETURNING id
                """
            ),
            {
                "j": jid,
                "s": service_id,
                "status": body.status.value,
                "language": body.language,
                "body": body.body,
            },
        )
    ).scalar_one()
    row = (
        await session.execute(
            text("SELECT " + _TEMPLATE_COLUMNS + " WHERE rt.id = :id"), {"id": template_id}
        )
    ).one()
    return ResponseTemplateOut.model_validate(row._mapping)


@templates_router.delete("/{template_id}", status_code=204, summary="Delete a response template")
async def delete_template(
    template_id: Int4Id, session: SessionDep, actor: StaffPrincipal
) -> Response:
    jid = (
        await session.execute(
            text("SELECT jurisdiction_id FROM response_template WHERE id = :id"),
            {"id": template_id},
        )
    ).scalar_one_or_none()
    if jid is None:
        raise NotFound(f"No response template {template_id}")
    ensure_own_object(actor, jid, f"No response template {template_id}")
    await session.execute(text("DELETE FROM response_template WHERE id = :id"), {"id": template_id})
    return Response(status_code=204)
