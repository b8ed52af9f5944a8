"""HTTP for notifications: one-click unsubscribe, what a citizen was sent, and the dead
letters staff see and retry."""

from __future__ import annotations

import hmac
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import text

from app.auth.principal import CurrentPrincipal, StaffPrincipal, ensure_same_jurisdiction
from app.channels import sink
from app.contacts import service as contacts
from app.contacts.messages import queue_verifications
from app.contacts.models import ConsentMethod, ContactKind, Purpose
from app.contacts.service import Consent, ContactSpec
from app.core.errors import BadRequest, Conflict, Forbidden, NotFound
from app.core.jobs import DELIVER_NOTIFICATIONS, defer
from app.db import SessionDep
from app.notify.service import unsubscribe_signature

router = APIRouter(tags=["notifications"])

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
ContactId = Annotated[int, Path(ge=1, le=2**63 - 1)]

NotificationId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Signature = Annotated[str, Query(min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$")]


class SentMessage(BaseModel):
    """A message sent (or being sent) to the signed-in person."""

    id: int
    ticket_reference: str | None
    channel: str
    event: str
    status: str
    subject: str | None
    body: str | None
    created_at: datetime
    sent_at: datetime | None


class UndeliveredMessage(BaseModel):
    """A message that failed for good or gave up (no personal data: the channel only)."""

    id: int
    ticket_reference: str | None
    channel: str
    event: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime


class ContactIn(BaseModel):
    """A way to reach me: an email address or phone number (confirmed by a link first), a
    push token or Web Push subscription from this device."""

    kind: Literal["email", "phone", "fcm", "webpush"]
    address: Annotated[str, Field(min_length=3, max_length=2048)]
    # A Web Push subscription's keys: {"p256dh": …, "auth": …}.
    keys: dict[str, Annotated[str, Field(max_length=200)]] | None = None
    broadcasts: bool = Field(
        default=False, description="Also receive the city's emergency notices on it"
    )

    @model_validator(mode="after")
    def _valid(self) -> ContactIn:
        if self.kind == "email" and not EMAIL.match(self.address):
            raise ValueError("address must be an email address")
        if self.kind == "phone" and not PHONE.match(self.address.replace(" ", "")):
            raise ValueError("address must be a phone number in E.164 form, e.g. +31612345678")
        if self.kind == "webpush":
            if not self.address.startswith("https://"):
                raise ValueError("a Web Push endpoint is an https URL")
            if not self.keys or not {"p256dh", "auth"} <= set(self.keys):
                raise ValueError("a Web Push subscription needs keys.p256dh and keys.auth")
        return self


class MyContact(BaseModel):
    id: int
    kind: str
    address: str
    verified: bool = Field(description="False until the link sent to it was followed")
    disabled: bool = Field(description="True when it could no longer be reached")
    purposes: list[str] = Field(description="What it agreed to hear about")


class Unsubscribed(BaseModel):
    unsubscribed: bool
    ticket_reference: str | None


_OF = text(
    "SELECT n.id, n.contact_id, n.ticket_id, n.status, n.reason, t.reference,"
    " coalesce(t.jurisdiction_id, b.jurisdiction_id) AS jurisdiction_id FROM notification n"
    " LEFT JOIN ticket t ON t.id = n.ticket_id LEFT JOIN broadcast b ON b.id = n.broadcast_id"
    " WHERE n.id = :id"
)


async def _signed(session: SessionDep, request: Request, notification_id: int, sig: str) -> Any:
    row = (await session.execute(_OF, {"id": notification_id})).first()
    wanted = unsubscribe_signature(request.app.state.settings, notification_id)
    if row is None or not hmac.compare_digest(wanted, sig):
        raise NotFound("No such unsubscribe link")
    return row


@router.get(
    "/v1/notifications/{notification_id}/unsubscribe",
    response_class=HTMLResponse,
    summary="The page behind a message's unsubscribe link: a button that stops them",
    responses={404: {"description": "Unknown link"}},
)
async def unsubscribe_page(
    notification_id: NotificationId, sig: Signature, request: Request, session: SessionDep
) -> HTMLResponse:
    await _signed(session, request, notification_id, sig)
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Stop these messages</title>"
        "<body style='font-family:sans-serif;max-width:32em;margin:3em auto'>"
        "<h1>Stop these messages</h1><p>You will hear nothing more about this report.</p>"
        f"<form method=post action='/v1/notifications/{notification_id}/unsubscribe"
        f"?sig={sig}'><button type=submit>Stop</button></form></body></html>"
    )


@router.post(
    "/v1/notifications/{notification_id}/unsubscribe",
    response_model=Unsubscribed,
    summary="One-click unsubscribe (RFC 8058): stop messages about this report",
    description=(
        "The target of `List-Unsubscribe-Post: List-Unsubscribe=One-Click`. Withdraws the "
        "contact's consent to hear about the ticket and ends its subscription; messages "
        "already queued are not sent."
    ),
    responses={404: {"description": "Unknown link"}},
)
async def unsubscribe(
    notification_id: NotificationId, sig: Signature, request: Request, session: SessionDep
) -> Unsubscribed:
    row = await _signed(session, request, notification_id, sig)
    contact_id, ticket_id = row.contact_id, row.ticket_id
    if row.reason in ("area", "broadcast"):
        # A place followed, or the city's notices: stop hearing about places.
        for purpose in (Purpose.area_updates, Purpose.broadcasts):
            await contacts.withdraw_consent(
                session, contact_id, how="unsubscribe_link", purpose=purpose
            )
        await session.execute(
            text(
                "UPDATE area_subscription SET ended_at = now() WHERE contact_id = :c"
                " AND ended_at IS NULL"
            ),
            {"c": contact_id},
        )
    else:
        await contacts.withdraw_consent(
            session,
            contact_id,
            how="unsubscribe_link",
            purpose=Purpose.ticket_updates,
            ticket_id=ticket_id,
        )
        await session.execute(
            text(
                "UPDATE subscription SET ended_at = now() WHERE contact_id = :c"
                " AND ticket_id = :t AND ended_at IS NULL"
            ),
            {"c": contact_id, "t": ticket_id},
        )
    return Unsubscribed(unsubscribed=True, ticket_reference=row.reference)


@router.get(
    "/v1/me/notifications",
    response_model=list[SentMessage],
    summary="The messages sent to the signed-in person, newest first",
)
async def my_notifications(
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[SentMessage]:
    if principal.user_id is None:
        raise BadRequest("API keys receive no messages; sign in as a person")
    rows = await session.execute(
        text(
            "SELECT n.id, t.reference, n.channel, n.event_kind, n.status, n.subject, n.body,"
            " n.created_at, n.sent_at FROM notification n JOIN contact c ON c.id = n.contact_id"
            " LEFT JOIN ticket t ON t.id = n.ticket_id WHERE c.user_id = :user"
            " ORDER BY n.id DESC LIMIT :limit"
        ),
        {"user": principal.user_id, "limit": limit},
    )
    return [
        SentMessage(
            id=r.id,
            ticket_reference=r.reference,
            channel=r.channel,
            event=r.event_kind,
            status=r.status,
            subject=r.subject,
            body=r.body,
            created_at=r.created_at,
            sent_at=r.sent_at,
        )
        for r in rows
    ]


@router.get(
    "/v1/notifications",
    response_model=list[UndeliveredMessage],
    summary="Messages that failed or gave up (dead letters), for staff to retry",
)
async def undelivered(
    staff: StaffPrincipal,
    session: SessionDep,
    status: Literal["dead", "failed"] = "dead",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[UndeliveredMessage]:
    rows = await session.execute(
        text(
            "SELECT n.id, t.reference, n.channel, n.event_kind, n.status, n.attempts,"
            " n.last_error, n.created_at FROM notification n JOIN ticket t ON t.id = n.ticket_id"
            " WHERE n.status = :status AND (CAST(:j AS int) IS NULL OR t.jurisdiction_id = :j)"
            " ORDER BY n.id DESC LIMIT :limit"
        ),
        {
            "status": status,
            "j": None if staff.is_admin else staff.jurisdiction_id,
            "limit": limit,
        },
    )
    return [
        UndeliveredMessage(
            id=r.id,
            ticket_reference=r.reference,
            channel=r.channel,
            event=r.event_kind,
            status=r.status,
            attempts=r.attempts,
            last_error=r.last_error,
            created_at=r.created_at,
        )
        for r in rows
    ]


@router.post(
    "/v1/notifications/{notification_id}/retry",
    status_code=202,
    summary="Send a dead or failed message again",
    responses={404: {"description": "No such message"}, 409: {"description": "Not dead or failed"}},
)
async def retry(
    notification_id: NotificationId, staff: StaffPrincipal, session: SessionDep
) -> Response:
    row = (await session.execute(_OF, {"id": notification_id})).first()
    if row is None:
        raise NotFound(f"No message {notification_id}")
    if row.jurisdiction_id is not None:
        try:
            ensure_same_jurisdiction(staff, row.jurisdiction_id)
        except Forbidden:
            raise NotFound(f"No message {notification_id}") from None
    if row.status not in ("dead", "failed"):
        raise Conflict(f"Message {notification_id} is {row.status}; only dead or failed ones retry")
    await session.execute(
        text(
            "UPDATE notification SET status = 'pending', attempts = 0, next_attempt_at = NULL"
            " WHERE id = :id"
        ),
        {"id": notification_id},
    )
    await defer(session, DELIVER_NOTIFICATIONS, queue="notify")
    return Response(status_code=202)


@router.get(
    "/v1/me/contacts",
    response_model=list[MyContact],
    summary="The ways the signed-in person can be reached, and what each agreed to",
)
async def my_contacts(principal: CurrentPrincipal, session: SessionDep) -> list[MyContact]:
    user_id = _person(principal)
    return [
        MyContact(
            id=c.id,
            kind=c.kind,
            address=c.address,
            verified=c.verified,
            disabled=c.disabled,
            purposes=list(c.purposes),
        )
        for c in await contacts.of_user(session, user_id)
    ]


@router.post(
    "/v1/me/contacts",
    response_model=MyContact,
    status_code=201,
    summary="Add a way to reach me (an email address or phone number is confirmed first)",
    responses={409: {"description": "The address belongs to another account"}},
)
async def add_contact(
    given: ContactIn, principal: CurrentPrincipal, request: Request, session: SessionDep
) -> MyContact:
    user_id = _person(principal)
    spec = ContactSpec(
        ContactKind(given.kind), given.address, data={"keys": given.keys} if given.keys else {}
    )
    stored = await contacts.remember(session, spec, user_id=user_id)
    mine = next((c for c in await contacts.of_user(session, user_id) if c.id == stored.id), None)
    if mine is None:
        raise Conflict("That address belongs to another account")
    if given.broadcasts:
        await contacts.give_consent(
            session, stored.id, Consent(Purpose.broadcasts, ConsentMethod.account)
        )
    verification = await contacts.begin_verification(session, stored)
    if verification is not None:
        await queue_verifications(
            session, request.app.state.settings, [verification], "your Kerbside account"
        )
    mine = next(c for c in await contacts.of_user(session, user_id) if c.id == stored.id)
    return MyContact(
        id=mine.id,
        kind=mine.kind,
        address=mine.address,
        verified=mine.verified,
        disabled=mine.disabled,
        purposes=list(mine.purposes),
    )


@router.delete(
    "/v1/me/contacts/{contact_id}",
    status_code=204,
    summary="Remove a way to reach me: nothing more is sent to it, and it is deleted",
    responses={404: {"description": "Not one of mine"}},
)
async def remove_contact(
    contact_id: ContactId, principal: CurrentPrincipal, session: SessionDep
) -> Response:
    if not await contacts.forget(session, _person(principal), contact_id):
        raise NotFound(f"No contact {contact_id} of yours")
    return Response(status_code=204)


def _person(principal: Any) -> Any:
    if principal.user_id is None:
        raise BadRequest("API keys have no contacts; sign in as a person")
    return principal.user_id


class SinkMessage(BaseModel):
    at: str
    kind: str
    address: str
    event: str
    ticket: str | None
    language: str
    subject: str
    body: str


@router.get(
    "/v1/demo/outbox",
    response_model=list[SinkMessage],
    summary="What the local sink delivered: every message, as each person received it",
    description=(
        "Outside production, channels without credentials deliver to a local sink "
        "(`KERBSIDE_CHANNELS_SINK_FILE`). Staff see here what each reporter received, newest "
        "last, so a status change can be watched reaching its reporter. 404 in production."
    ),
    responses={404: {"description": "Production: there is no sink"}},
)
async def demo_outbox(
    staff: StaffPrincipal,
    request: Request,
    session: SessionDep,
    address: Annotated[str, Query(min_length=1, max_length=320)] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[SinkMessage]:
    settings = request.app.state.settings
    if settings.env == "production":
        raise NotFound("There is no local sink in production")
    messages = sink.read(settings.channels_sink_file, address=address, limit=limit)
    if not staff.is_admin:  # staff see their own jurisdiction's tickets only
        mine = set(
            (
                await session.execute(
                    text(
                        "SELECT reference FROM ticket WHERE jurisdiction_id = :j"
                        " AND reference = ANY(:refs)"
                    ),
                    {"j": staff.jurisdiction_id, "refs": [m.get("ticket") for m in messages]},
                )
            ).scalars()
        )
        messages = [m for m in messages if m.get("ticket") in mine]
    return [
        SinkMessage(
            at=m["at"],
            kind=m["kind"],
            address=m["address"],
            event=m["event"],
            ticket=m.get("ticket"),
            language=m["language"],
            subject=m["subject"],
            body=m["body"],
        )
        for m in messages
    ]
