"""Delivering the outbox: one attempt at one notification, and what follows from its outcome.

At least once, and never twice where we can help it: the row is locked while it is sent and
marked in the same transaction, so a row marked ``sent`` is never sent again; a worker killed
between the provider's answer and the commit sends it once more, with the row id as the
provider's idempotency or collapse key. One person's messages about one ticket go out in
order: their jobs share a procrastinate lock, which runs jobs of one lock one at a time in
the order they were deferred, and a retry is the same job rescheduled (``Attempt.retry_in``),
so it keeps its place. Transient failures back off exponentially with jitter (the provider's
``Retry-After`` honoured); after the last attempt the row is dead, for staff to see and retry.
Every attempt and its outcome is a line on the ticket's internal timeline.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels.base import Channel, Delivered, Failed, Message, Outcome, RetryLater
from app.contacts import service as contacts
from app.core import clock
from app.notify.models import NotificationStatus
from app.notify.policy import wait_for
from app.notify.templates import Facts, language_of, render, render_broadcast, render_digest
from app.settings import Settings
from app.tickets.sla import expected_by_sql

log = logging.getLogger("kerbside.notify")

_CLAIM = text(
    """
    SELECT n.id, n.contact_id, n.ticket_id, n.event_id, n.event_kind, n.status, n.attempts,
           n.subject, n.body, n.reason, n.broadcast_id, n.digest, c.kind, c.address,
           c.data AS contact_data, c.user_id, c.disabled_at IS NOT NULL AS disabled,
           CASE n.reason
             WHEN 'area' THEN EXISTS (
                SELECT 1 FROM contact_consent k
                WHERE k.contact_id = c.id AND k.purpose = 'area_updates'
                  AND k.withdrawn_at IS NULL)
             WHEN 'staff' THEN EXISTS (
                SELECT 1 FROM app_user u WHERE u.id = c.user_id
                  AND u.role IN ('staff', 'admin') AND u.is_active)
             WHEN 'broadcast' THEN EXISTS (
                SELECT 1 FROM contact_consent k JOIN contact kc ON kc.id = k.contact_id
                WHERE (kc.id = c.id OR (c.user_id IS NOT NULL AND kc.user_id = c.user_id))
                  AND k.purpose IN ('area_updates', 'broadcasts') AND k.withdrawn_at IS NULL)
             ELSE (c.user_id IS NOT NULL AND EXISTS (
                SELECT 1 FROM subscription s
                WHERE s.ticket_id = n.ticket_id AND s.user_id = c.user_id
                  AND (s.ended_at IS NULL OR n.event_kind = 'merged'))
              OR EXISTS (
                SELECT 1 FROM contact_consent k
                WHERE k.contact_id = c.id AND k.purpose = 'ticket_updates'
                  AND k.ticket_id = n.ticket_id AND k.withdrawn_at IS NULL)) END AS consenting,
           j.timezone, j.notifications AS policy,
           recent.sent_last_hour, recent.oldest_in_hour
    FROM notification n JOIN contact c ON c.id = n.contact_id
    LEFT JOIN ticket t ON t.id = n.ticket_id
    LEFT JOIN broadcast b ON b.id = n.broadcast_id
    LEFT JOIN jurisdiction j ON j.id = coalesce(t.jurisdiction_id, b.jurisdiction_id)
    CROSS JOIN LATERAL (
        SELECT count(*) AS sent_last_hour, min(r.sent_at) AS oldest_in_hour
        FROM notification r
        WHERE r.contact_id = n.contact_id AND r.status = 'sent'
          AND r.sent_at > CAST(:now AS timestamptz) - interval '1 hour'
    ) AS recent
    WHERE n.id = :id
    FOR UPDATE OF n
    """
)

_WAIT = text("UPDATE notification SET next_attempt_at = :at WHERE id = :id")

_FACTS = text(
    f"""
    SELECT t.reference, t.status, {expected_by_sql("t")} AS expected_by,
           j.name AS jurisdiction, j.languages, s.names AS service_names,
           e.kind AS event_kind, e.note, e.data AS event_data,
           (SELECT r.locale FROM report r JOIN report_contact rc ON rc.report_id = r.id
            WHERE r.ticket_id = t.id AND rc.contact_id = :contact_id AND r.locale IS NOT NULL
            ORDER BY r.id DESC LIMIT 1) AS locale
    FROM ticket t
    JOIN jurisdiction j ON j.id = t.jurisdiction_id
    JOIN service s ON s.id = t.service_id
    LEFT JOIN ticket_event e ON e.id = :event_id
    WHERE t.id = :ticket_id
    """  # noqa: S608 (code constants only)
)

_FINISH = text(
    """
    UPDATE notification SET status = :status, attempts = attempts + 1,
        next_attempt_at = :next_attempt_at, last_error = :error, provider_id = :provider_id,
        sent_at = :sent_at, subject = :subject, body = :body
    WHERE id = :id
    """
)

_EVENT = text(
    """
    INSERT INTO ticket_event (ticket_id, kind, public, actor_label, data, created_at)
    VALUES (:ticket_id, :kind, false, 'notify', CAST(:data AS jsonb), :at)
    """
)

_SUPPRESS_CONTACT = text(
    """
    UPDATE notification SET status = 'suppressed', last_error = :reason
    WHERE contact_id = :contact_id AND status IN ('pending', 'retrying') AND id <> :id
    """
)


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to: the notification's status, and when to try again."""

    status: str
    retry_in: float | None = None  # seconds; the job is rescheduled (keeping its order)


def unsubscribe_signature(settings: Settings, notification_id: int) -> str:
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"unsubscribe:{notification_id}".encode(), hashlib.sha256).hexdigest()[:32]


def satisfaction_signature(settings: Settings, notification_id: int) -> str:
    """Signs the "was it fixed?" link of one fix message (answered in app/talk)."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"satisfied:{notification_id}".encode(), hashlib.sha256).hexdigest()[:32]


def satisfaction_url(settings: Settings, notification_id: int) -> str:
    signature = satisfaction_signature(settings, notification_id)
    return f"{settings.public_base_url}/v1/satisfaction/{notification_id}?sig={signature}"


def unsubscribe_url(settings: Settings, notification_id: int) -> str:
    signature = unsubscribe_signature(settings, notification_id)
    return (
        f"{settings.public_base_url}/v1/notifications/{notification_id}/unsubscribe?sig={signature}"
    )


def backoff(settings: Settings, attempts: int, retry_after: float | None) -> timedelta:
    """Exponential from ``notify_backoff_seconds``, capped, with ±25 % jitter; never sooner
    than the provider asked."""
    base = min(
        settings.notify_backoff_seconds * 2 ** max(attempts - 1, 0),
        settings.notify_backoff_max_seconds,
    )
    wait = base * random.uniform(0.75, 1.25)
    return timedelta(seconds=max(wait, retry_after or 0.0))


async def deliver(
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: Mapping[str, Channel],
    settings: Settings,
    notification_id: int,
) -> Attempt:
    """One attempt at one notification, committed; says what became of it."""
    async with sessionmaker() as session, session.begin():
        now = clock.now()
        row = (await session.execute(_CLAIM, {"id": notification_id, "now": now})).first()
        if row is None or row.status not in (
            NotificationStatus.pending,
            NotificationStatus.retrying,
        ):
            return Attempt(str(row.status) if row is not None else "gone")
        if row.disabled or not row.consenting:
            why = "the contact is disabled" if row.disabled else "consent withdrawn"
            await _finish(session, row, NotificationStatus.suppressed, now, error=why)
            return Attempt(NotificationStatus.suppressed.value)
        if row.reason != "broadcast" and row.policy:
            wait = wait_for(
                row.policy,
                row.kind,
                row.timezone or "UTC",
                now,
                sent_last_hour=row.sent_last_hour,
                oldest_in_hour=row.oldest_in_hour,
            )
            if wait is not None:  # quiet hours, or the hourly limit: later, not a failure
                await session.execute(_WAIT, {"id": row.id, "at": now + timedelta(seconds=wait)})
                return Attempt(str(row.status), wait)
        message = await _message(session, settings, row)
        channel = channels.get(row.kind)
        outcome: Outcome
        if channel is None:
            outcome = Failed(f"no channel is configured for {row.kind} contacts")
        else:
            try:
                outcome = await channel.deliver(message)
            except Exception as exc:  # an adapter's own bug: retried, and logged
                log.exception("channel %s failed", row.kind)
                outcome = RetryLater(f"{type(exc).__name__} in the {row.kind} adapter")
        return await _record(session, settings, row, message, outcome, now)


_BROADCAST = text(
    "SELECT b.public_id, b.headline, b.body, b.language, b.event FROM broadcast b WHERE b.id = :id"
)


async def _broadcast_message(session: AsyncSession, settings: Settings, row: Any) -> Message:
    found = (await session.execute(_BROADCAST, {"id": row.broadcast_id})).one()
    unsubscribe = unsubscribe_url(settings, row.id)
    language = language_of(found.language)
    subject, body = render_broadcast(found.headline, found.body, language, unsubscribe)
    link = f"{settings.public_base_url}/v1/broadcasts/{found.public_id}.cap"
    return Message(
        id=row.id,
        kind=row.kind,
        address=row.address,
        contact_data=row.contact_data or {},
        subject=row.subject or subject,
        body=row.body or body,
        link=link,
        unsubscribe_url=unsubscribe,
        ticket_reference=None,
        event="broadcast",
        language=language,
        data={"broadcast": str(found.public_id), "event": found.event},
    )


def _digest_message(settings: Settings, row: Any) -> Message:
    digest = row.digest
    unsubscribe = unsubscribe_url(settings, row.id)
    language = language_of((row.contact_data or {}).get("locale"))
    label = digest.get("label") or {"nl": "uw buurt", "sv": "ditt område"}.get(
        language, "your area"
    )
    subject, body = render_digest(
        label, digest["new"], digest["fixed"], language, unsubscribe, settings.public_base_url
    )
    return Message(
        id=row.id,
        kind=row.kind,
        address=row.address,
        contact_data=row.contact_data or {},
        subject=row.subject or subject,
        body=row.body or body,
        link=None,
        unsubscribe_url=unsubscribe,
        ticket_reference=None,
        event="digest",
        language=language,
        data={"new": digest["new"], "fixed": digest["fixed"]},
    )


def _staff_message(settings: Settings, row: Any) -> Message:
    """A message to staff (a spike alert, app/talk): written when it was queued."""
    unsubscribe = unsubscribe_url(settings, row.id)
    return Message(
        id=row.id,
        kind=row.kind,
        address=row.address,
        contact_data=row.contact_data or {},
        subject=row.subject or "",
        body=row.body or "",
        link=None,
        unsubscribe_url=unsubscribe,
        ticket_reference=None,
        event=row.event_kind,
        data={"event": row.event_kind},
    )


async def _message(session: AsyncSession, settings: Settings, row: Any) -> Message:
    if row.broadcast_id is not None:
        return await _broadcast_message(session, settings, row)
    if row.digest is not None:
        return _digest_message(settings, row)
    if row.reason == "staff":
        return _staff_message(settings, row)
    facts_row = (
        await session.execute(
            _FACTS,
            {"ticket_id": row.ticket_id, "event_id": row.event_id, "contact_id": row.contact_id},
        )
    ).one()
    data = facts_row.event_data or {}
    language = language_of(facts_row.locale, tuple(facts_row.languages or ()))
    names = facts_row.service_names or {}
    into = data.get("into") if row.event_kind == "merged" else None
    status = data.get("to") or facts_row.status
    reference = into or facts_row.reference
    link = f"{settings.public_base_url}/v1/tickets/{reference}"
    facts = Facts(
        reference=facts_row.reference,
        service=(names.get(language) or names.get("en") or next(iter(names.values()), "")).lower(),
        status=status,
        note=facts_row.note,
        expected=facts_row.expected_by.date() if facts_row.expected_by else None,
        link=link,
        jurisdiction=facts_row.jurisdiction,
        into=into,
        # One line (templates.py "fixed?"): the reporter's one-tap answer (app/talk).
        satisfaction=satisfaction_url(settings, row.id)
        if row.event_kind == "status_changed" and status == "fixed" and row.reason != "area"
        else None,
    )
    unsubscribe = unsubscribe_url(settings, row.id)
    if row.subject is not None and row.body is not None:
        subject, body = row.subject, row.body  # a retry sends the same words
    else:
        subject, body = render(
            row.event_kind,
            facts,
            language,
            unsubscribe,
            reason=row.reason,
            templates=(row.policy or {}).get("templates", ()),
        )
    return Message(
        id=row.id,
        kind=row.kind,
        address=row.address,
        contact_data=row.contact_data or {},
        subject=subject,
        body=body,
        link=link,
        unsubscribe_url=unsubscribe,
        ticket_reference=reference,
        event=status if row.event_kind == "status_changed" else row.event_kind,
        language=language,
        data={"reference": reference, "event": row.event_kind, "status": status},
    )


async def _record(
    session: AsyncSession,
    settings: Settings,
    row: Any,
    message: Message,
    outcome: Outcome,
    now: datetime,
) -> Attempt:
    attempt = row.attempts + 1
    archive: dict[str, Any] = {"notification": row.id, "channel": row.kind, "attempt": attempt}
    if isinstance(outcome, Delivered):
        await _finish(
            session,
            row,
            NotificationStatus.sent,
            now,
            message=message,
            provider=outcome.provider_id,
        )
        await _archive(
            session, row, "notification_sent", now, archive | {"provider_id": outcome.provider_id}
        )
        return Attempt(NotificationStatus.sent.value)
    if isinstance(outcome, RetryLater):
        if attempt >= settings.notify_max_attempts:
            await _finish(
                session, row, NotificationStatus.dead, now, message=message, error=outcome.reason
            )
            await _archive(
                session,
                row,
                "notification_failed",
                now,
                archive | {"reason": outcome.reason, "dead": True},
            )
            return Attempt(NotificationStatus.dead.value)
        at = now + backoff(settings, attempt, outcome.after)
        await _finish(
            session,
            row,
            NotificationStatus.retrying,
            now,
            message=message,
            error=outcome.reason,
            next_at=at,
        )
        await _archive(
            session,
            row,
            "notification_failed",
            now,
            archive | {"reason": outcome.reason, "retry_at": at.isoformat()},
        )
        return Attempt(NotificationStatus.retrying.value, (at - now).total_seconds())
    await _finish(
        session, row, NotificationStatus.failed, now, message=message, error=outcome.reason
    )
    if outcome.disable_contact:
        await contacts.disable(session, row.contact_id, outcome.reason)
        await session.execute(
            _SUPPRESS_CONTACT,
            {"contact_id": row.contact_id, "id": row.id, "reason": "the contact was disabled"},
        )
    await _archive(
        session,
        row,
        "notification_failed",
        now,
        archive | {"reason": outcome.reason, "contact_disabled": outcome.disable_contact},
    )
    return Attempt(NotificationStatus.failed.value)


async def _finish(
    session: AsyncSession,
    row: Any,
    status: NotificationStatus,
    now: datetime,
    *,
    message: Message | None = None,
    provider: str | None = None,
    error: str | None = None,
    next_at: datetime | None = None,
) -> None:
    await session.execute(
        _FINISH,
        {
            "id": row.id,
            "status": status.value,
            "next_attempt_at": next_at,
            "error": error,
            "provider_id": provider,
            "sent_at": now if status == NotificationStatus.sent else None,
            "subject": message.subject if message else row.subject,
            "body": message.body if message else row.body,
        },
    )


async def _archive(
    session: AsyncSession, row: Any, kind: str, now: datetime, data: dict[str, Any]
) -> None:
    if row.ticket_id is None:
        return  # a broadcast: its own row keeps the outcome (status, attempts, last_error)
    await session.execute(
        _EVENT,
        {"ticket_id": row.ticket_id, "kind": kind, "data": orjson.dumps(data).decode(), "at": now},
    )
