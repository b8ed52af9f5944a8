"""Delivering the outbox in batches: claim the due rows, send them at once, record every outcome.

A delivery job (``deliver_notifications``, deferred once per change by the event stream, see
migration 0020) claims up to ``KERBSIDE_NOTIFY_BATCH_SIZE`` due rows with ``FOR UPDATE SKIP
LOCKED``, so any number of jobs in any number of workers share a backlog without waiting for
each other. It renders them, sends them through the channel adapters
(``KERBSIDE_NOTIFY_SEND_CONCURRENCY`` at a time, one shared HTTP client per channel), and
records the outcomes with a few set-based statements in the same transaction, then claims
again until nothing is due.

At least once, and never twice where we can help it: a row stays locked while it is sent and
is marked in the transaction that locked it, so a row marked ``sent`` is never sent again; a
worker killed between the provider's answer and the commit sends it once more, with the row
id as the provider's idempotency or collapse key. One person's messages about one ticket go
out in order: only the oldest undelivered row of a (contact, ticket) is ever claimed, so a
later one waits while an earlier one is being sent or waits for its retry. Transient failures
back off exponentially with jitter (the provider's ``Retry-After`` honoured); after the last
attempt the row is dead, for staff to see and retry. Every attempt and its outcome is a line
on the ticket's internal timeline. Rows that wait (a retry, quiet hours, the hourly limit)
have a delivery job scheduled for when the first of them is due.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels.base import Channel, Delivered, Failed, Message, Outcome, RetryLater
from app.channels.registry import pick
from app.contacts import service as contacts
from app.core import clock
from app.core.jobs import DELIVER_NOTIFICATIONS, defer
from app.notify import replies
from app.notify.models import UNDELIVERED, NotificationStatus
from app.notify.policy import wait_for
from app.notify.templates import (
    Facts,
    language_of,
    render,
    render_broadcast,
    render_digest,
    render_notice,
)
from app.settings import Settings
from app.tickets.information import answer_signature
from app.tickets.sla import expected_by_sql

log = logging.getLogger("kerbside.notify")

_ROW = """
    n.id, n.contact_id, n.ticket_id, n.event_id, n.event_kind, n.status, n.attempts,
    n.subject, n.body, n.reason, n.broadcast_id, n.digest, n.reply_to
"""

# The oldest undelivered row of each thread that is due, oldest first, skipping rows other
# jobs hold. A thread is one contact's messages about one ticket, a ticket merged away
# continuing in the one it was merged into ("merged into K-…" before news of K-…); each
# broadcast is its own thread, and a contact's digests are one.
_DUE = f"""
    SELECT {_ROW} FROM notification n LEFT JOIN ticket nt ON nt.id = n.ticket_id
    WHERE n.status IN ('pending', 'retrying')
      AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= :now)
      AND NOT EXISTS (
          SELECT 1 FROM notification o LEFT JOIN ticket ot ON ot.id = o.ticket_id
          WHERE o.contact_id = n.contact_id AND o.status IN ('pending', 'retrying')
            AND o.id < n.id AND o.broadcast_id IS NOT DISTINCT FROM n.broadcast_id
            AND (o.ticket_id IS NOT DISTINCT FROM n.ticket_id
                 OR coalesce(ot.merged_into_id, ot.id) = coalesce(nt.merged_into_id, nt.id)))
    ORDER BY n.id
    LIMIT :limit
    FOR UPDATE OF n SKIP LOCKED
"""  # noqa: S608 (code constants only)

# One row by id, waiting for its lock (staff retries, tests).
_ONE = f"SELECT {_ROW} FROM notification n WHERE n.id = :id FOR UPDATE OF n"  # noqa: S608

# Everything a claimed row needs to be sent, in one statement: the contact, whether it still
# consents, the city's policy and the contact's messages in the last hour, the ticket's facts
# or the broadcast. The row's own columns come from the locking subquery (the version locked,
# not the statement's snapshot).
_CLAIM = f"""
    WITH n AS MATERIALIZED ({{rows}})
    SELECT n.*, c.kind, c.address, c.data AS contact_data,
           c.disabled_at IS NOT NULL AS disabled,
           -- A social author's consent names the post to answer in (app.social).
           (SELECT k.evidence->'reply_to' FROM contact_consent k
            WHERE k.contact_id = c.id AND k.purpose = 'ticket_updates'
              AND k.ticket_id = n.ticket_id AND k.withdrawn_at IS NULL
              AND k.evidence ? 'reply_to'
            ORDER BY k.id LIMIT 1) AS consent_reply_to,
           -- An account the person linked for notices (app.linking): where they go.
           (SELECT k.evidence->'via' FROM contact_consent k
            WHERE k.contact_id = c.id AND k.purpose = 'notices' AND k.withdrawn_at IS NULL
            ORDER BY k.id DESC LIMIT 1) AS notice_via,
           CASE n.reason
             -- An answer to what the person addressed to the city, in its thread.
             WHEN 'reply' THEN true
             WHEN 'area' THEN EXISTS (
                SELECT 1 FROM contact_consent k
                WHERE k.contact_id = c.id AND k.purpose = 'area_updates'
                  AND k.withdrawn_at IS NULL)
             WHEN 'staff' THEN EXISTS (
                SELECT 1 FROM app_user u WHERE u.id = c.user_id
                  AND u.role IN ('staff', 'admin') AND u.is_active)
             WHEN 'broadcast' THEN EXISTS (
                SELECT 1 FROM contact_consent k
                WHERE k.contact_id = c.id AND k.purpose IN ('area_updates', 'broadcasts')
                  AND k.withdrawn_at IS NULL)
              OR c.user_id IS NOT NULL AND EXISTS (
                SELECT 1 FROM contact kc JOIN contact_consent k ON k.contact_id = kc.id
                WHERE kc.user_id = c.user_id AND k.purpose IN ('area_updates', 'broadcasts')
                  AND k.withdrawn_at IS NULL)
             ELSE (c.user_id IS NOT NULL AND EXISTS (
                SELECT 1 FROM subscription s
                WHERE s.ticket_id = n.ticket_id AND s.user_id = c.user_id
                  AND (s.ended_at IS NULL OR n.event_kind = 'merged'))
              OR EXISTS (
                SELECT 1 FROM contact_consent k
                WHERE k.contact_id = c.id AND k.purpose = 'ticket_updates'
                  AND k.ticket_id = n.ticket_id AND k.withdrawn_at IS NULL)) END AS consenting,
           j.timezone, j.notifications AS policy, j.name AS jurisdiction, j.languages,
           j.slug AS jurisdiction_slug, j.channels AS channel_settings,
           recent.sent_last_hour, recent.oldest_in_hour,
           t.reference, t.status AS ticket_status, {expected_by_sql("t")} AS expected_by,
           s.names AS service_names, e.note, e.data AS event_data,
           CASE WHEN n.ticket_id IS NOT NULL THEN (
               SELECT r.locale FROM report r JOIN report_contact rc ON rc.report_id = r.id
               WHERE r.ticket_id = t.id AND rc.contact_id = n.contact_id
                 AND r.locale IS NOT NULL
               ORDER BY r.id DESC LIMIT 1) END AS locale,
           CASE WHEN e.kind = 'status_changed' AND e.data ->> 'to' = 'fixed' THEN (
               SELECT p.public_id FROM photo p
               WHERE p.ticket_id = t.id AND p.kind = 'completion' AND p.public
                 AND p.status <> 'failed'
               ORDER BY p.id DESC LIMIT 1) END AS after_photo,
           b.public_id AS broadcast_public_id, b.headline AS broadcast_headline,
           b.body AS broadcast_body, b.language AS broadcast_language,
           b.event AS broadcast_event
    FROM n JOIN contact c ON c.id = n.contact_id
    LEFT JOIN ticket t ON t.id = n.ticket_id
    LEFT JOIN service s ON s.id = t.service_id
    LEFT JOIN ticket_event e ON e.id = n.event_id
    LEFT JOIN broadcast b ON b.id = n.broadcast_id
    LEFT JOIN jurisdiction j ON j.id = coalesce(t.jurisdiction_id, b.jurisdiction_id)
    LEFT JOIN LATERAL (
        SELECT count(*) AS sent_last_hour, min(r.sent_at) AS oldest_in_hour
        FROM notification r
        WHERE n.reason <> 'broadcast' AND j.notifications <> '{{{{}}}}'
          AND r.contact_id = n.contact_id AND r.status = 'sent'
          AND r.sent_at > CAST(:now AS timestamptz) - interval '1 hour'
    ) AS recent ON true
    ORDER BY n.id
"""  # noqa: S608 (code constants only)

_CLAIM_DUE = text(_CLAIM.format(rows=_DUE))
_CLAIM_ONE = text(_CLAIM.format(rows=_ONE))

# What one batch came to, in one statement per kind of change.
_FINISH = text(
    """
    UPDATE notification n SET status = v.status, attempts = n.attempts + 1,
        next_attempt_at = v.next_attempt_at, last_error = v.error, provider_id = v.provider_id,
        sent_at = v.sent_at, subject = coalesce(v.subject, n.subject),
        body = coalesce(v.body, n.body)
    FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]),
                CAST(:next_attempt_at AS timestamptz[]), CAST(:errors AS text[]),
                CAST(:provider_ids AS text[]), CAST(:sent_at AS timestamptz[]),
                CAST(:subjects AS text[]), CAST(:bodies AS text[]))
         AS v(id, status, next_attempt_at, error, provider_id, sent_at, subject, body)
    WHERE n.id = v.id
    """
)

_WAIT = text(
    """
    UPDATE notification n SET next_attempt_at = v.at
    FROM unnest(CAST(:ids AS bigint[]), CAST(:ats AS timestamptz[])) AS v(id, at)
    WHERE n.id = v.id
    """
)

_ARCHIVE = text(
    """
    INSERT INTO ticket_event (ticket_id, kind, public, actor_label, data, created_at)
    SELECT v.ticket_id, v.kind, false, 'notify', v.data, :at
    FROM unnest(CAST(:ticket_ids AS bigint[]), CAST(:kinds AS text[]),
                CAST(:data AS jsonb[])) AS v(ticket_id, kind, data)
    """
)

# The contact's other waiting rows; rows another job holds are skipped (they are suppressed
# when claimed, since the contact is disabled by then), so two jobs never wait for each other.
_SUPPRESS_CONTACT = text(
    """
    UPDATE notification SET status = 'suppressed', last_error = :reason
    WHERE id IN (SELECT id FROM notification
                 WHERE contact_id = :contact_id AND status IN ('pending', 'retrying')
                 FOR UPDATE SKIP LOCKED)
    """
)

# When the first waiting row comes due, and whether a delivery job already runs by then.
_NEXT_DUE = text(
    """
    SELECT min(next_attempt_at) FROM notification
    WHERE status IN ('pending', 'retrying') AND next_attempt_at > :now
    """
)
_JOB_BY = text(
    """
    SELECT EXISTS (SELECT 1 FROM procrastinate_jobs
                   WHERE task_name = :task AND status = 'todo'
                     AND (scheduled_at IS NULL OR scheduled_at <= :at))
    """
)
_JOBS_LIVE = text(
    """
    SELECT count(*) FROM procrastinate_jobs
    WHERE task_name = :task AND status IN ('todo', 'doing')
      AND (scheduled_at IS NULL OR scheduled_at <= :now)
    """
)


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to: the notification's status, and when it is due again."""

    status: str
    retry_in: float | None = None  # seconds, for a retry or a wait


@dataclass
class _Batch:
    """The changes one claimed batch makes, gathered and then written set-based."""

    now: datetime
    finished: dict[str, list[Any]] = field(
        default_factory=lambda: {
            key: []
            for key in (
                "ids",
                "statuses",
                "next_attempt_at",
                "errors",
                "provider_ids",
                "sent_at",
                "subjects",
                "bodies",
            )
        }
    )
    waits: dict[int, datetime] = field(default_factory=dict)
    archive: list[tuple[int, str, str]] = field(default_factory=list)
    disable: list[tuple[int, str]] = field(default_factory=list)
    # Social posts the platform refused every answer to: (platform, post id, why).
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    # Social posts webcare's own answer reached: (platform, post id).
    answered: list[tuple[str, str]] = field(default_factory=list)
    attempts: dict[int, Attempt] = field(default_factory=dict)

    def finish(
        self,
        row: Any,
        status: NotificationStatus,
        *,
        message: Message | None = None,
        provider: str | None = None,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> None:
        f = self.finished
        f["ids"].append(row.id)
        f["statuses"].append(status.value)
        f["next_attempt_at"].append(next_at)
        f["errors"].append(error)
        f["provider_ids"].append(provider)
        f["sent_at"].append(self.now if status == NotificationStatus.sent else None)
        f["subjects"].append(message.subject if message else None)
        f["bodies"].append(message.body if message else None)
        retry_in = (next_at - self.now).total_seconds() if next_at is not None else None
        self.attempts[row.id] = Attempt(status.value, retry_in)

    def wait(self, row: Any, seconds: float) -> None:
        self.waits[row.id] = self.now + timedelta(seconds=seconds)
        self.attempts[row.id] = Attempt(str(row.status), seconds)

    def note(self, row: Any, kind: str, data: dict[str, Any]) -> None:
        if row.ticket_id is not None:  # a broadcast's or digest's own row keeps its outcome
            self.archive.append((row.ticket_id, kind, orjson.dumps(data).decode()))

    async def write(self, session: AsyncSession) -> None:
        if self.finished["ids"]:
            await session.execute(_FINISH, self.finished)
        if self.waits:
            await session.execute(
                _WAIT, {"ids": list(self.waits), "ats": list(self.waits.values())}
            )
        if self.archive:
            ticket_ids, kinds, data = zip(*self.archive, strict=True)
            await session.execute(
                _ARCHIVE,
                {
                    "ticket_ids": list(ticket_ids),
                    "kinds": list(kinds),
                    "data": list(data),
                    "at": self.now,
                },
            )
        if self.refused:
            await replies.could_not_answer(session, self.refused)
        if self.answered:
            await replies.answered(session, self.answered)
        for contact_id, reason in self.disable:
            await disable_contact(session, contact_id, reason)


async def disable_contact(session: AsyncSession, contact_id: int, reason: str) -> None:
    """The address is dead: disable the contact and suppress what still waits for it."""
    await contacts.disable(session, contact_id, reason)
    await session.execute(
        _SUPPRESS_CONTACT, {"contact_id": contact_id, "reason": "the contact was disabled"}
    )


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


async def deliver_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: Mapping[str, Channel],
    settings: Settings,
) -> int:
    """Deliver every row that is due, batch after batch; returns how many were attempted.

    A full batch asks for a helper job (up to ``notify_parallel_jobs`` at once), so a
    backlog spreads over every worker; at the end, rows that wait get a job for when the
    first of them is due.
    """
    attempted = 0
    while True:
        async with sessionmaker() as session, session.begin():
            now = clock.now()
            rows = (
                await session.execute(_CLAIM_DUE, {"now": now, "limit": settings.notify_batch_size})
            ).all()
            if not rows:
                await _schedule_next(session, now)
                return attempted
            if len(rows) == settings.notify_batch_size:
                await _call_for_help(session, settings, now)
            await _attempt(session, channels, settings, rows, now)
        attempted += len(rows)


async def deliver(
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: Mapping[str, Channel],
    settings: Settings,
    notification_id: int,
) -> Attempt:
    """One attempt at one notification (whatever its place in its thread), committed."""
    async with sessionmaker() as session, session.begin():
        now = clock.now()
        row = (await session.execute(_CLAIM_ONE, {"id": notification_id, "now": now})).first()
        if row is None or row.status not in UNDELIVERED:
            return Attempt(str(row.status) if row is not None else "gone")
        batch = await _attempt(session, channels, settings, [row], now)
        await _schedule_next(session, now)  # a retry or a wait is due again later
        return batch.attempts[row.id]


async def _attempt(
    session: AsyncSession,
    channels: Mapping[str, Channel],
    settings: Settings,
    rows: Sequence[Any],
    now: datetime,
) -> _Batch:
    """Send the claimed rows that may go now and record what became of each."""
    batch = _Batch(now)
    planned: Counter[int] = Counter()  # messages this batch sends each contact
    sending: list[tuple[Any, Message]] = []
    for row in rows:
        if row.disabled or not row.consenting:
            why = "the contact is disabled" if row.disabled else "consent withdrawn"
            batch.finish(row, NotificationStatus.suppressed, error=why)
            continue
        if _notice_only(row) and not _about_a_report(row):
            # A linked account hears that there is news about a report, nothing else.
            batch.finish(
                row, NotificationStatus.suppressed, error="a linked account takes report notices"
            )
            continue
        if row.reason != "broadcast" and row.policy:
            wait = wait_for(
                row.policy,
                row.kind,
                row.timezone or "UTC",
                now,
                sent_last_hour=(row.sent_last_hour or 0) + planned[row.contact_id],
                oldest_in_hour=row.oldest_in_hour or (now if planned[row.contact_id] else None),
            )
            if wait is not None:  # quiet hours, or the hourly limit: later, not a failure
                batch.wait(row, wait)
                continue
        planned[row.contact_id] += 1
        sending.append((row, _message(settings, row)))

    gate = asyncio.Semaphore(settings.notify_send_concurrency)

    async def send(row: Any, message: Message) -> Outcome:
        channel = pick(channels, row.kind, row.jurisdiction_slug, row.channel_settings)
        if channel is None:
            return Failed(f"no channel is configured for {row.kind} contacts")
        async with gate:
            try:
                return await channel.deliver(message)
            except Exception as exc:  # an adapter's own bug: retried, and logged
                log.exception("channel %s failed", row.kind)
                return RetryLater(f"{type(exc).__name__} in the {row.kind} adapter")

    outcomes = await asyncio.gather(*(send(row, message) for row, message in sending))
    for (row, message), outcome in zip(sending, outcomes, strict=True):
        _record(batch, settings, row, message, outcome)
    await batch.write(session)
    return batch


def _record(
    batch: _Batch, settings: Settings, row: Any, message: Message, outcome: Outcome
) -> None:
    attempt = row.attempts + 1
    archive: dict[str, Any] = {"notification": row.id, "channel": row.kind, "attempt": attempt}
    if isinstance(outcome, Delivered):
        batch.finish(row, NotificationStatus.sent, message=message, provider=outcome.provider_id)
        batch.note(row, "notification_sent", archive | {"provider_id": outcome.provider_id})
        target = message.data.get("reply_to")
        if row.event_kind == replies.ANSWER and isinstance(target, Mapping) and target.get("post"):
            batch.answered.append((str(target.get("platform") or row.kind), str(target["post"])))
    elif isinstance(outcome, RetryLater):
        if attempt >= settings.notify_max_attempts:
            batch.finish(row, NotificationStatus.dead, message=message, error=outcome.reason)
            batch.note(
                row, "notification_failed", archive | {"reason": outcome.reason, "dead": True}
            )
            return
        at = batch.now + backoff(settings, attempt, outcome.after)
        batch.finish(
            row, NotificationStatus.retrying, message=message, error=outcome.reason, next_at=at
        )
        batch.note(
            row,
            "notification_failed",
            archive | {"reason": outcome.reason, "retry_at": at.isoformat()},
        )
    else:
        batch.finish(row, NotificationStatus.failed, message=message, error=outcome.reason)
        target = message.data.get("reply_to")
        if outcome.refused and isinstance(target, Mapping) and target.get("post"):
            batch.refused.append(
                (str(target.get("platform") or row.kind), str(target["post"]), outcome.reason)
            )
        if outcome.disable_contact:
            batch.disable.append((row.contact_id, outcome.reason))
        batch.note(
            row,
            "notification_failed",
            archive | {"reason": outcome.reason, "contact_disabled": outcome.disable_contact},
        )


async def _call_for_help(session: AsyncSession, settings: Settings, now: datetime) -> None:
    """A full batch: more is likely waiting, so let another worker slot join in."""
    live = (
        await session.execute(_JOBS_LIVE, {"task": DELIVER_NOTIFICATIONS, "now": now})
    ).scalar_one()
    if live < settings.notify_parallel_jobs:
        await defer(session, DELIVER_NOTIFICATIONS, queue="notify")


async def _schedule_next(session: AsyncSession, now: datetime) -> None:
    """A delivery job for when the first waiting row is due, unless one runs by then."""
    at = (await session.execute(_NEXT_DUE, {"now": now})).scalar_one()
    if at is None:
        return
    if not (await session.execute(_JOB_BY, {"task": DELIVER_NOTIFICATIONS, "at": at})).scalar_one():
        await defer(session, DELIVER_NOTIFICATIONS, queue="notify", scheduled_at=at)


# -- the words -----------------------------------------------------------------------------------


def _notice_only(row: Any) -> bool:
    """The row goes to an account the person linked for notices (not a thread they wrote in)."""
    return row.notice_via is not None and row.consent_reply_to is None and row.reason != "reply"


def _about_a_report(row: Any) -> bool:
    return (
        row.ticket_id is not None
        and row.broadcast_id is None
        and row.digest is None
        and row.reason in ("reporter", "subscriber")
    )


def _message(settings: Settings, row: Any) -> Message:
    if _notice_only(row):
        return _notice_message(settings, row)
    if row.reason == "reply":
        return _reply_message(settings, row)
    if row.reason == "staff":
        return _staff_message(settings, row)
    if row.broadcast_id is not None:
        return _broadcast_message(settings, row)
    if row.digest is not None:
        return _digest_message(settings, row)
    return _ticket_message(settings, row)


def _notice_message(settings: Settings, row: Any) -> Message:
    """A notice on a linked account: there is news about your report, and your page; no
    reference, no place, no status (docs/notifications.md, "Notices on your own account")."""
    language = language_of(row.locale, tuple(row.languages or ()))
    page = settings.citizen_page_url or f"{settings.public_base_url}/v1/me/reports"
    subject, body = render_notice(language, page)
    return Message(
        id=row.id,
        kind=row.kind,
        address=row.address,
        contact_data=row.contact_data or {},
        subject=row.subject or subject,
        body=row.body or body,
        link=page,
        unsubscribe_url=unsubscribe_url(settings, row.id),
        ticket_reference=None,
        event="notice",
        language=language,
        data={"reply_to": row.notice_via, "event": "notice"},
    )


def _broadcast_message(settings: Settings, row: Any) -> Message:
    unsubscribe = unsubscribe_url(settings, row.id)
    language = language_of(row.broadcast_language)
    subject, body = render_broadcast(
        row.broadcast_headline, row.broadcast_body, language, unsubscribe
    )
    link = f"{settings.public_base_url}/v1/broadcasts/{row.broadcast_public_id}.cap"
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
        data={"broadcast": str(row.broadcast_public_id), "event": row.broadcast_event},
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


def _reply_message(settings: Settings, row: Any) -> Message:
    """An answer in a social thread (``app.social`` wrote its words)."""
    text = row.body or row.subject or ""
    return Message(
        id=row.id,
        kind=row.kind,
        address=row.address,
        contact_data=row.contact_data or {},
        subject=row.subject or text,
        body=text,
        link=None,
        unsubscribe_url=unsubscribe_url(settings, row.id),
        ticket_reference=None,
        event=row.event_kind,
        data={"reply_to": row.reply_to or {}, "event": row.event_kind},
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


def _ticket_message(settings: Settings, row: Any) -> Message:
    data = row.event_data or {}
    language = language_of(row.locale, tuple(row.languages or ()))
    names = row.service_names or {}
    into = data.get("into") if row.event_kind == "merged" else None
    status = data.get("to") or row.ticket_status
    reference = into or row.reference
    link = f"{settings.public_base_url}/v1/tickets/{reference}"
    # The crew's after-photo (a work order finished with photos), public like the ticket.
    photo = (
        f"{settings.public_base_url}/v1/photos/{row.after_photo}.jpg"
        if row.after_photo is not None
        else None
    )
    answer = (
        f"{settings.public_base_url}/v1/tickets/{reference}/information"
        f"?notification={row.id}&sig={answer_signature(settings, row.id)}"
        if row.event_kind == "information_requested"
        else None
    )
    facts = Facts(
        reference=row.reference,
        service=(names.get(language) or names.get("en") or next(iter(names.values()), "")).lower(),
        status=status,
        note=row.note,
        expected=row.expected_by.date() if row.expected_by else None,
        link=link,
        jurisdiction=row.jurisdiction,
        into=into,
        # One line (templates.py "fixed?"): the reporter's one-tap answer (app/talk).
        satisfaction=satisfaction_url(settings, row.id)
        if row.event_kind == "status_changed" and status == "fixed" and row.reason != "area"
        else None,
        photo=photo,
        answer=answer,
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
        data={"reference": reference, "event": row.event_kind, "status": status}
        | ({"reply_to": row.consent_reply_to} if row.consent_reply_to else {})
        | ({"photo": photo} if photo else {})
        | ({"question": row.note, "answer_url": answer} if answer else {}),
    )
