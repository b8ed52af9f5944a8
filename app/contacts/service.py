"""Contact use cases: remember a way to reach someone, record consent, verify, disable.

Every writer of ``contact`` and ``contact_consent`` goes through here: the intake (a
reporter's contacts), support and follow, and later the channels and the outbox.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.contacts import repository as sql
from app.contacts.models import SELF_VERIFYING, ConsentMethod, ContactKind, Purpose
from app.core import clock
from app.core.errors import InvalidInput

VERIFICATION_VALID_FOR = timedelta(days=7)


@dataclass(frozen=True)
class ContactSpec:
    """How a person asked to be reached: a kind and an address, in any channel's terms."""

    kind: ContactKind
    address: str
    display_name: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)  # e.g. a Web Push subscription's keys


@dataclass(frozen=True)
class Consent:
    """What the person agreed to and how; ``ticket_id`` for ``ticket_updates``."""

    purpose: Purpose
    method: ConsentMethod
    ticket_id: int | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredContact:
    id: int
    kind: ContactKind
    address: str
    display_name: str | None
    verified: bool


@dataclass(frozen=True)
class Verification:
    """A verification message to send once the transaction that asked for it has committed."""

    contact_id: int
    kind: ContactKind
    address: str
    token: str


def normalise(kind: ContactKind, address: str) -> str:
    """The one spelling of an address, so a person is one contact however they typed it."""
    address = address.strip()
    if kind == ContactKind.email:
        return address.lower()
    if kind == ContactKind.phone:
        return "".join(ch for ch in address if ch.isdigit() or ch == "+")
    return address


async def remember(
    session: AsyncSession,
    spec: ContactSpec,
    *,
    user_id: uuid.UUID | None = None,
    consent: Consent | None = None,
    at: datetime | None = None,
) -> StoredContact:
    """Store (or refresh) the contact ``spec`` describes and return it; with ``consent``,
    record that consent too (``give_consent``), in the same statement."""
    address = normalise(spec.kind, spec.address)
    if not address:
        raise InvalidInput(
            f"An empty {spec.kind.value} address",
            errors=[{"field": spec.kind.value, "message": "empty", "type": "missing"}],
        )
    params = {
        "kind": spec.kind.value,
        "address": address,
        "display_name": spec.display_name,
        "user_id": user_id,
        "data": orjson.dumps(dict(spec.data)).decode(),
        "self_verifying": spec.kind in SELF_VERIFYING,
    }
    if consent is None:
        row = await sql.UPSERT.one(session, params)
    else:
        row = await sql.UPSERT_CONSENTING.one(session, params | _consent_params(consent, at))
    return StoredContact(
        id=row.id,
        kind=spec.kind,
        address=address,
        display_name=spec.display_name,
        verified=row.verified,
    )


async def give_consent(
    session: AsyncSession, contact_id: int, consent: Consent, *, at: datetime | None = None
) -> None:
    """Record that the contact agreed to ``consent.purpose`` (once while it is not withdrawn)."""
    await sql.CONSENT.one(session, {"contact_id": contact_id} | _consent_params(consent, at))


def _consent_params(consent: Consent, at: datetime | None) -> dict[str, Any]:
    return {
        "purpose": consent.purpose.value,
        "ticket_id": consent.ticket_id,
        "method": consent.method.value,
        "evidence": orjson.dumps(dict(consent.evidence)).decode(),
        "at": at or clock.now(),
    }


async def withdraw_consent(
    session: AsyncSession,
    contact_id: int,
    *,
    how: str,
    purpose: Purpose | None = None,
    ticket_id: int | None = None,
) -> None:
    """Withdraw the contact's consents (all, or one purpose, or one ticket's)."""
    await session.execute(
        sql.WITHDRAW,
        {
            "contact_id": contact_id,
            "purpose": purpose.value if purpose else None,
            "ticket_id": ticket_id,
            "how": how,
            "at": clock.now(),
        },
    )


async def carry_consents(
    session: AsyncSession, from_ticket: int, to_ticket: int, *, report_id: int | None = None
) -> None:
    """People who agreed to hear about ``from_ticket`` hear about ``to_ticket`` now (all of
    them after a merge; a split report's own reporters with ``report_id``)."""
    await session.execute(
        sql.CARRY_CONSENTS, {"from": from_ticket, "to": to_ticket, "report_id": report_id}
    )


async def begin_verification(session: AsyncSession, contact: StoredContact) -> Verification | None:
    """A token to send to an unverified contact; None when it is verified, disabled, or was
    sent a token within the last hour."""
    if contact.verified:
        return None
    token = secrets.token_urlsafe(32)
    row = (
        await session.execute(
            sql.BEGIN_VERIFICATION,
            {
                "contact_id": contact.id,
                "token_hash": token_hash(token),
                "expires_at": clock.now() + VERIFICATION_VALID_FOR,
            },
        )
    ).first()
    if row is None:
        return None
    return Verification(contact.id, ContactKind(row.kind), row.address, token)


async def verify(session: AsyncSession, token: str) -> StoredContact:
    """Mark the contact that was sent ``token`` as verified."""
    row = (
        await session.execute(sql.VERIFY, {"token_hash": token_hash(token), "at": clock.now()})
    ).first()
    if row is None:
        raise InvalidInput(
            "This verification link is unknown, already used or expired; ask for a new one",
            errors=[{"field": "token", "message": "unknown or expired", "type": "value_error"}],
        )
    return StoredContact(row.id, ContactKind(row.kind), row.address, row.display_name, True)


@dataclass(frozen=True)
class OwnContact:
    """A contact as its owner sees it."""

    id: int
    kind: str
    address: str
    display_name: str | None
    verified: bool
    disabled: bool
    purposes: tuple[str, ...]


async def of_user(session: AsyncSession, user_id: uuid.UUID) -> list[OwnContact]:
    """The signed-in person's own contacts, with what they agreed to hear about."""
    rows = await session.execute(sql.OF_USER, {"user_id": user_id})
    return [
        OwnContact(
            r.id, r.kind, r.address, r.display_name, r.verified, r.disabled, tuple(r.purposes)
        )
        for r in rows
    ]


async def forget(session: AsyncSession, user_id: uuid.UUID, contact_id: int) -> bool:
    """Delete one of the person's own contacts (and end what it was subscribed to)."""
    row = (
        await session.execute(
            sql.FORGET, {"contact_id": contact_id, "user_id": user_id, "at": clock.now()}
        )
    ).first()
    return row is not None


async def disable(session: AsyncSession, contact_id: int, reason: str) -> None:
    """Stop sending to a contact for good (a hard bounce, an unregistered token)."""
    await session.execute(
        sql.DISABLE, {"contact_id": contact_id, "reason": reason, "at": clock.now()}
    )


async def note_window_closed(session: AsyncSession, contact_id: int) -> None:
    """The platform refused a free message: the person's messaging window (from their last
    message, ``last_inbound_at``) is closed, whatever our clock thought."""
    await session.execute(sql.WINDOW_CLOSED, {"contact_id": contact_id})


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class LinkedContact:
    """An account the person linked for notices, as its owner sees it."""

    id: int
    kind: ContactKind
    handle: str | None
    linked_at: datetime
    evidence: Mapping[str, Any]


async def link(
    session: AsyncSession,
    user_id: uuid.UUID,
    spec: ContactSpec,
    *,
    how: str,
    via: Mapping[str, Any],
) -> StoredContact | None:
    """The person's own account ``spec`` (proven by the platform: OAuth, a signed referral)
    becomes their contact for notices, with the consent's evidence: when, how (``how``:
    "oauth:mastodon"), for what ("notices"), and where notices go (``via``: the city account,
    its base URL and its secrets' variable names). None: the account is another person's."""
    stored = await remember(session, spec, user_id=user_id)
    owner = (await session.execute(sql.OWNER, {"contact_id": stored.id})).scalar_one_or_none()
    if owner != user_id:
        return None
    at = clock.now()
    # Linked again (another city account, a new token): the newest consent says where.
    await withdraw_consent(session, stored.id, how="linked_again", purpose=Purpose.notices)
    await give_consent(
        session,
        stored.id,
        Consent(
            Purpose.notices,
            ConsentMethod.linked_account,
            evidence={"how": how, "for": "notices", "at": at.isoformat(), "via": dict(via)},
        ),
        at=at,
    )
    return stored


async def linked(session: AsyncSession, user_id: uuid.UUID) -> list[LinkedContact]:
    """The person's linked accounts."""
    rows = await session.execute(sql.LINKED_OF_USER, {"user_id": user_id})
    return [
        LinkedContact(r.id, ContactKind(r.kind), r.handle, r.given_at, r.evidence or {})
        for r in rows
    ]


async def unlink(session: AsyncSession, user_id: uuid.UUID, contact_id: int) -> bool:
    """Stop notices on one of the person's linked accounts: its consents end and it leaves
    the person; False when it is not one of theirs."""
    row = (
        await session.execute(
            sql.UNLINK, {"contact_id": contact_id, "user_id": user_id, "at": clock.now()}
        )
    ).first()
    return row is not None
