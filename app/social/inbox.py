"""The webcare team's inbox: every post ends answered or explicitly closed, within the city's
response time (``social.respond_within_hours``; flagged ``warn_before_hours`` ahead)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal, ensure_own_object
from app.contacts import service as contacts
from app.contacts.models import ContactKind
from app.contacts.service import ContactSpec
from app.core import clock
from app.core.errors import Conflict, InvalidInput, NotFound
from app.notify import replies
from app.settings import Settings
from app.social import config as social_config
from app.social.config import AccountOf
from app.social.models import PostStatus
from app.social.polling import pipeline_for
from app.social.schemas import InboxState, ServiceLevel, SocialPostOut, SocialPostPage
from app.social.service import CONTACT_OF, decide_suggestion, post_of, reply_target

_STATES: dict[str, str] = {
    "unanswered": "p.answered_at IS NULL AND p.closed_at IS NULL",
    "awaiting_location": "p.status = 'awaiting_location'",
    "needs_human": "p.status = 'needs_human' AND p.closed_at IS NULL",
    "sensitive": "p.status = 'communications' AND p.closed_at IS NULL",
    "suggest_merge": "p.status = 'suggest_merge' AND p.closed_at IS NULL",
    "could_not_answer": "p.answer_failed_at IS NOT NULL AND p.closed_at IS NULL",
    "closed": "p.closed_at IS NOT NULL",
    "all": "true",
}

_COLUMNS = """
    p.id, p.platform, p.account, p.post_id, p.author_handle, p.author_id, p.text, p.posted_at,
    p.received_at, p.status, p.reason, p.link_rule, p.service_code, p.confidence, p.language,
    p.sentiment, p.sensitive, p.location_source, t.reference AS ticket_reference, p.assigned_to,
    p.due_at, p.answered_at, p.closed_at, p.close_reason, p.jurisdiction_id, p.ticket_id,
    p.contact_id, p.conversation_id, p.in_reply_to_id, p.hints, p.raw,
    p.candidate_ticket_id, ct.reference AS candidate_reference, p.answer_failed_at,
    p.answer_failure
"""
_FROM = (
    " FROM social_post p LEFT JOIN ticket t ON t.id = p.ticket_id"
    " LEFT JOIN ticket ct ON ct.id = p.candidate_ticket_id"
)


def _list_sql(state: str) -> Any:
    return text(
        f"SELECT {_COLUMNS}{_FROM}"
        f" WHERE p.jurisdiction_id = :j AND {_STATES[state]}"
        " AND (CAST(:account AS varchar) IS NULL OR lower(p.account) = lower(:account))"
        " AND (CAST(:sentiment_below AS float8) IS NULL OR p.sentiment < :sentiment_below)"
        " AND (CAST(:assigned_to AS uuid) IS NULL OR p.assigned_to = :assigned_to)"
        " AND (CAST(:before AS bigint) IS NULL OR p.id < :before)"
        " ORDER BY p.id DESC LIMIT :limit"
    )


_ONE = text(f"SELECT {_COLUMNS}{_FROM} WHERE p.id = :id FOR UPDATE OF p")


def service_level(row: Any, warn: timedelta, now: datetime) -> ServiceLevel:
    if row.answered_at is not None or row.closed_at is not None:
        return "met"
    if row.due_at is None:
        return "ok"
    if now > row.due_at:
        return "overdue"
    return "due_soon" if now > row.due_at - warn else "ok"


def _out(row: Any, warn: timedelta, now: datetime) -> SocialPostOut:
    return SocialPostOut(
        id=row.id,
        platform=row.platform,
        account=row.account,
        post_id=row.post_id,
        author_handle=row.author_handle,
        text=row.text,
        posted_at=row.posted_at,
        received_at=row.received_at,
        status=row.status,
        reason=row.reason,
        link_rule=row.link_rule,
        service_code=row.service_code,
        confidence=row.confidence,
        language=row.language,
        sentiment=row.sentiment,
        sensitive=row.sensitive,
        location_source=row.location_source,
        ticket_reference=row.ticket_reference,
        assigned_to=row.assigned_to,
        due_at=row.due_at,
        answered_at=row.answered_at,
        closed_at=row.closed_at,
        close_reason=row.close_reason,
        candidate_reference=row.candidate_reference,
        answer_failure=row.answer_failure,
        service_level=service_level(row, warn, now),
    )


async def _warn(session: AsyncSession, jurisdiction_id: int) -> timedelta:
    return timedelta(hours=(await social_config.read(session, jurisdiction_id)).warn_before_hours)


async def list_posts(
    session: AsyncSession,
    jurisdiction_id: int,
    *,
    state: InboxState,
    account: str | None,
    sentiment_below: float | None,
    assigned_to: uuid.UUID | None,
    before: int | None,
    limit: int,
) -> SocialPostPage:
    rows = (
        await session.execute(
            _list_sql(state),
            {
                "j": jurisdiction_id,
                "account": account,
                "sentiment_below": sentiment_below,
                "assigned_to": assigned_to,
                "before": before,
                "limit": limit + 1,
            },
        )
    ).all()
    warn = await _warn(session, jurisdiction_id)
    now = clock.now()
    items = [_out(r, warn, now) for r in rows[:limit]]
    return SocialPostPage(items=items, next_before=items[-1].id if len(rows) > limit else None)


async def _post(session: AsyncSession, staff: Principal, post_id: int) -> Any:
    row = (await session.execute(_ONE, {"id": post_id})).first()
    missing = f"No social post {post_id}"
    if row is None or row.jurisdiction_id is None:
        raise NotFound(missing)
    ensure_own_object(staff, row.jurisdiction_id, missing)
    return row


async def _reload(session: AsyncSession, post_id: int) -> SocialPostOut:
    row = (await session.execute(_ONE, {"id": post_id})).one()
    return _out(row, await _warn(session, row.jurisdiction_id), clock.now())


async def assign(
    session: AsyncSession, staff: Principal, post_id: int, user_id: uuid.UUID | None
) -> SocialPostOut:
    row = await _post(session, staff, post_id)
    if user_id is not None:
        agent = (
            await session.execute(
                text(
                    "SELECT id FROM app_user WHERE id = :u AND is_active"
                    " AND (role = 'admin' OR (role = 'staff' AND jurisdiction_id = :j))"
                ),
                {"u": user_id, "j": row.jurisdiction_id},
            )
        ).first()
        if agent is None:
            raise InvalidInput(
                "Assign the post to a staff member of its city",
                errors=[{"field": "user_id", "message": "not staff here", "type": "value_error"}],
            )
    await session.execute(
        text("UPDATE social_post SET assigned_to = :u WHERE id = :id"),
        {"u": user_id, "id": post_id},
    )
    return await _reload(session, post_id)


async def answer(session: AsyncSession, staff: Principal, post_id: int, words: str) -> int | None:
    """A webcare agent's own answer, in the post's thread through the outbox."""
    row = await _post(session, staff, post_id)
    known = await social_config.accounts(session)
    of: AccountOf | None = social_config.find(known, row.platform, row.account)
    if of is None:
        raise InvalidInput(
            f"The account {row.account} is no longer configured; answer on the platform itself",
            errors=[{"field": "text", "message": "unknown account", "type": "value_error"}],
        )
    post = post_of(row)
    contact_id = row.contact_id
    if contact_id is None:
        contact_id = (
            await contacts.remember(
                session,
                ContactSpec(CONTACT_OF.get(row.platform, ContactKind.x), row.author_id),
            )
        ).id
    queued = await replies.queue_reply(
        session,
        contact_id=contact_id,
        post_id=post_id,
        kind=replies.ANSWER,
        words=words,
        reply_to=reply_target(post, of),
        ticket_id=row.ticket_id,
    )
    await session.execute(
        text(
            "UPDATE social_post SET answered_at = coalesce(answered_at, now()),"
            " contact_id = coalesce(contact_id, :c) WHERE id = :id"
        ),
        {"id": post_id, "c": contact_id},
    )
    return queued


async def decide(
    session: AsyncSession, settings: Settings, staff: Principal, post_id: int, link: bool
) -> SocialPostOut:
    """Webcare's answer to a suggested merge (rule 4): link the post to the suggested ticket,
    or file it as a new one. 409 once it is decided (or was never a suggestion)."""
    row = await _post(session, staff, post_id)
    if row.status != PostStatus.suggest_merge.value:
        raise Conflict(
            f"Post {post_id} is {row.status.replace('_', ' ')}, not a suggested merge",
            code="not_a_suggestion",
        )
    async with pipeline_for(settings) as pipeline:
        await decide_suggestion(session, pipeline, row, link)
    await session.execute(
        text("UPDATE social_post SET assigned_to = coalesce(assigned_to, :u) WHERE id = :id"),
        {"u": staff.user_id, "id": post_id},
    )
    return await _reload(session, post_id)


async def close(
    session: AsyncSession, staff: Principal, post_id: int, reason: str
) -> SocialPostOut:
    """No answer needed, and why."""
    await _post(session, staff, post_id)
    await session.execute(
        text(
            "UPDATE social_post SET closed_at = coalesce(closed_at, now()),"
            " close_reason = :reason WHERE id = :id"
        ),
        {"id": post_id, "reason": f"{reason} ({staff.label})"},
    )
    return await _reload(session, post_id)
