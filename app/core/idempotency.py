"""Idempotency keys: a retried request replays the first answer instead of acting twice.

The claim (``CLAIM_SQL``) is a row inserted in the *same transaction* as the work it guards.
A concurrent retry with the same key blocks on that row's unique index until the first
transaction ends: if it committed, the retry replays its stored answer; if it rolled back,
the retry does the work itself. Nothing is ever half-claimed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import anyio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.core.errors import Conflict, KerbsideError
from app.db import HotStatement

KEEP_FOR = timedelta(hours=48)  # at least 24 h, as mobile apps retry after long outages

# Claims a key for the current transaction; returns a row only when it did. A concurrent claim
# of the same key waits on the unique index until the other transaction ends. Used as a CTE by
# the statement that starts the guarded work (e.g. intake's LOCK_NEIGHBOURHOOD).
CLAIM_SQL = """
    INSERT INTO idempotency_record (principal, key, request_hash, expires_at)
    SELECT CAST(:principal AS varchar), CAST(:key AS varchar), CAST(:request_hash AS varchar),
           now() + CAST(:keep AS interval)
    WHERE CAST(:key AS varchar) IS NOT NULL
    ON CONFLICT (principal, key) DO UPDATE
        SET request_hash = EXCLUDED.request_hash, status_code = NULL, response_body = NULL,
            report_id = NULL, created_at = now(), expires_at = EXCLUDED.expires_at
        WHERE idempotency_record.expires_at < now()
    RETURNING 1
"""
_READ = text(
    "SELECT request_hash, status_code, response_body FROM idempotency_record"
    " WHERE principal = :principal AND key = :key AND expires_at >= now()"
)
FINISH = HotStatement(
    "UPDATE idempotency_record SET status_code = :status, response_body = :body,"
    " report_id = :report_id WHERE principal = :principal AND key = :key"
)


class IdempotencyKeyReused(KerbsideError):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency key reused"


@dataclass(frozen=True)
class Claim:
    """A request's key, to claim in the transaction that does its work."""

    principal: str
    key: str
    request_hash: str


class AlreadyClaimed(Exception):
    """An earlier request holds this key: replay its answer instead of acting."""


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: bytes


@dataclass(frozen=True)
class Answer:
    """What a guarded request answered, stored for its retries."""

    status_code: int
    body: bytes
    report_id: int | None = None


# Hashing megabytes of photos releases the GIL: past this size it runs in a thread.
_THREAD_FROM_BYTES = 256 * 1024


async def claim_for(
    principal: str, key: str | None, canonical: bytes, attachments: Sequence[bytes] = ()
) -> Claim | None:
    """The claim of a request with ``key`` (None without one): the key and a fingerprint of
    the request (its canonical form, e.g. the JSON body re-encoded with sorted keys, and any
    attached files), so that reusing a key for a different request is refused."""
    if not key:
        return None
    if sum(map(len, attachments)) > _THREAD_FROM_BYTES:
        fingerprint = await anyio.to_thread.run_sync(request_fingerprint, canonical, *attachments)
    else:
        fingerprint = request_fingerprint(canonical, *attachments)
    return Claim(principal, key, fingerprint)


async def once(
    session: AsyncSession,
    claim: Claim | None,
    work: Callable[[Claim | None], Awaitable[Answer]],
) -> Answer | Replay:
    """Run ``work`` at most once per key: it must claim ``claim`` in its transaction's first
    statement (raising ``AlreadyClaimed`` when an earlier request holds the key); its answer is
    stored in the same transaction, and a retry gets that answer back as a ``Replay``.

    Every HTTP caller that files something (the app's intake, Open311, webhooks) goes through
    here, so the protocol lives in one place.
    """
    try:
        answer = await work(claim)
    except AlreadyClaimed:
        assert claim is not None
        return await replay(session, claim.principal, claim.key, claim.request_hash)
    if claim:
        await finish(
            session, claim.principal, claim.key, answer.status_code, answer.body, answer.report_id
        )
    return answer


def replayed(replay: Replay, media_type: str = "application/json") -> Response:
    """The HTTP response that replays an earlier request's answer."""
    return Response(
        replay.body,
        status_code=replay.status_code,
        media_type=media_type,
        headers={"Idempotent-Replayed": "true"},
    )


def request_fingerprint(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def peek(session: AsyncSession, principal: str, key: str, request_hash: str) -> Replay | None:
    """A cheap look before expensive work (photo processing); ``claim`` stays authoritative."""
    row = (await session.execute(_READ, {"principal": principal, "key": key})).first()
    if row is None or row.status_code is None:
        return None
    if row.request_hash != request_hash:
        raise _reused()
    return Replay(row.status_code, bytes(row.response_body))


async def replay(session: AsyncSession, principal: str, key: str, request_hash: str) -> Replay:
    """The stored answer for a key that another, committed transaction claimed."""
    row = (await session.execute(_READ, {"principal": principal, "key": key})).first()
    if row is None:
        raise Conflict("That Idempotency-Key expired a moment ago; send the request again")
    if row.request_hash != request_hash:
        raise _reused()
    if row.status_code is None:
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry shortly"
        )
    return Replay(row.status_code, bytes(row.response_body))


async def finish(
    session: AsyncSession,
    principal: str,
    key: str,
    status_code: int,
    body: bytes,
    report_id: int | None = None,
) -> None:
    await FINISH.one(
        session,
        {
            "principal": principal,
            "key": key,
            "status": status_code,
            "body": body,
            "report_id": report_id,
        },
    )


def _reused() -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        "This Idempotency-Key was already used for a different request; "
        "use a new key for a new report"
    )
