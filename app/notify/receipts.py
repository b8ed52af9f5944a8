"""What a platform says about a message after it took it: WhatsApp's delivery receipts
(``value.statuses[]`` of a Cloud API webhook: sent, delivered, read, failed).

Each receipt names the message by the id the platform gave it when we sent it, which the
outbox row keeps (``provider_id``). ``delivered`` and ``read`` are recorded on the row
(``delivered_at``, ``read_at``) and as an internal line on the ticket's timeline, the
attempt's outcome. ``failed`` is the send refused after all, and is handled as the delivery
handles a refusal (``whatsapp.receipt_outcome``): the contact disabled for an unreachable
number (131026), a retry for throttling; a closed customer-service window (131047) sends a
ticket's update again by the approved template, since the person's window is noted closed
on their contact. Every change is made once: a replayed receipt finds the row already
marked and changes nothing. A receipt for a message we do not know (sent by another system
on the same number, or its row dropped by the retention) is counted and logged without
its id, which encodes the person's number.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.channels import whatsapp
from app.channels.base import Failed, RetryLater
from app.contacts import service as contacts
from app.core import clock
from app.core.jobs import DELIVER_NOTIFICATIONS, defer
from app.notify.models import NotificationStatus
from app.notify.service import backoff, disable_contact
from app.settings import Settings
from app.tickets.events import add_event
from app.tickets.models import EventKind

log = logging.getLogger("kerbside.notify")

_FIND = text(
    """
    SELECT id, contact_id, ticket_id, reason, status, attempts, delivered_at, read_at
    FROM notification
    WHERE channel = 'whatsapp' AND provider_id = :provider_id
    ORDER BY id LIMIT 1
    FOR UPDATE
    """
)
_SEEN = text(
    """
    UPDATE notification SET delivered_at = coalesce(delivered_at, :delivered_at),
                            read_at = coalesce(read_at, :read_at)
    WHERE id = :id
    """
)
_REFUSED = text(
    """
    UPDATE notification SET status = :status, last_error = :error, next_attempt_at = :next_at
    WHERE id = :id AND status = 'sent'
    """
)


@dataclass
class Receipts:
    """What one delivery's receipts came to."""

    recorded: int = 0  # changed a row
    replayed: int = 0  # known, already recorded (or nothing to record: "sent")
    unknown: int = 0  # no outbox row has that message id
    statuses: dict[str, int] = field(default_factory=dict)


async def record_whatsapp(
    session: AsyncSession, settings: Settings, receipts: Sequence[whatsapp.Receipt]
) -> Receipts:
    """Mark the outbox rows the receipts name, in the caller's transaction."""
    counts = Receipts()
    retry_at = None
    for receipt in receipts:
        counts.statuses[receipt.status] = counts.statuses.get(receipt.status, 0) + 1
        row = (await session.execute(_FIND, {"provider_id": receipt.message_id})).first()
        if row is None:
            counts.unknown += 1
            continue
        at = receipt.at or clock.now()
        if receipt.status in {"delivered", "read"}:
            changed = await _seen(session, row, receipt.status, at)
        elif receipt.status == "failed" and row.status == NotificationStatus.sent.value:
            due = await _refused(session, settings, row, receipt)
            retry_at = min(retry_at, due) if retry_at and due else (retry_at or due)
            changed = True
        else:
            changed = False
        if changed:
            counts.recorded += 1
        else:
            counts.replayed += 1
    if retry_at is not None:
        await defer(session, DELIVER_NOTIFICATIONS, queue="notify", scheduled_at=retry_at)
    if counts.unknown:
        log.info(
            "whatsapp receipts for messages we do not know",
            extra={"count": counts.unknown, "statuses": counts.statuses},
        )
    return counts


async def _seen(session: AsyncSession, row: Any, status: str, at: datetime) -> bool:
    delivered = at if row.delivered_at is None else None
    read = at if status == "read" and row.read_at is None else None
    if delivered is None and read is None:
        return False  # a replay, or "delivered" after "read"
    await session.execute(_SEEN, {"id": row.id, "delivered_at": delivered, "read_at": read})
    await _archive(
        session, row, EventKind.notification_sent, {"receipt": status, "at": at.isoformat()}
    )
    return True


async def _refused(
    session: AsyncSession, settings: Settings, row: Any, receipt: whatsapp.Receipt
) -> datetime | None:
    """A failed receipt, handled as a refused send; says when the row is due again."""
    outcome = whatsapp.receipt_outcome(receipt)
    assert outcome is not None
    now = clock.now()
    data: dict[str, Any] = {"receipt": "failed", "codes": list(receipt.errors)}
    # A ticket's update refused for the window goes again, by template; the dialogue's
    # questions and other answers have no template to fall back on.
    if whatsapp.window_closed(receipt) and row.reason != "reply" and row.ticket_id is not None:
        await contacts.note_window_closed(session, row.contact_id)
        reason = f"{outcome.reason if isinstance(outcome, Failed) else ''}; again by template"
        await _set(session, row, NotificationStatus.retrying, reason, now)
        await _archive(
            session,
            row,
            EventKind.notification_failed,
            data | {"reason": reason, "retry_at": now.isoformat()},
        )
        return now
    if isinstance(outcome, RetryLater):
        if row.attempts >= settings.notify_max_attempts:
            await _set(session, row, NotificationStatus.dead, outcome.reason, None)
            await _archive(
                session,
                row,
                EventKind.notification_failed,
                data | {"reason": outcome.reason, "dead": True},
            )
            return None
        at = now + backoff(settings, row.attempts, outcome.after)
        await _set(session, row, NotificationStatus.retrying, outcome.reason, at)
        await _archive(
            session,
            row,
            EventKind.notification_failed,
            data | {"reason": outcome.reason, "retry_at": at.isoformat()},
        )
        return at
    assert isinstance(outcome, Failed)
    await _set(session, row, NotificationStatus.failed, outcome.reason, None)
    if outcome.disable_contact:
        await disable_contact(session, row.contact_id, outcome.reason)
    await _archive(
        session,
        row,
        EventKind.notification_failed,
        data | {"reason": outcome.reason, "contact_disabled": outcome.disable_contact},
    )
    return None


async def _set(
    session: AsyncSession,
    row: Any,
    status: NotificationStatus,
    error: str,
    next_at: datetime | None,
) -> None:
    await session.execute(
        _REFUSED, {"id": row.id, "status": status.value, "error": error, "next_at": next_at}
    )


async def _archive(session: AsyncSession, row: Any, kind: EventKind, data: dict[str, Any]) -> None:
    """The attempt's outcome on the ticket's timeline (internal), as the delivery writes it."""
    if row.ticket_id is None:
        return
    await add_event(
        session,
        row.ticket_id,
        kind,
        at=clock.now(),
        public=False,
        actor_label="notify",
        data={"notification": row.id, "channel": "whatsapp", "attempt": row.attempts} | data,
    )
