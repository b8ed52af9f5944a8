"""API keys for machine clients: issue, list, revoke, and check on each request.

A key reads ``ks_<prefix>_<secret>``. The prefix (12 hex characters, not secret) finds the
row; the SHA-256 of the whole key, compared in constant time, proves it. The secret is 256
random bits, so a fast hash is right here (passwords, with little entropy, get Argon2).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ROLE_RANK, ApiKey, Role
from app.core.errors import Forbidden, InvalidInput, NotAuthenticated, NotFound
from app.db import Db, HotStatement

KEY_PREFIX = "ks"
# Writing last_used_at on every call would turn each read into a write; once a minute is
# plenty to tell which keys are still in use.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Keys may act as these roles at most: an admin is always a person.
KEY_ROLES = (Role.citizen, Role.crew, Role.staff)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # the whole key, shown once


def generate_key() -> tuple[str, str]:
    """A new ``(prefix, key)`` pair."""
    prefix = secrets.token_hex(6)
    return prefix, f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _parse_prefix(raw: str) -> str | None:
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


async def issue_api_key(
    session: AsyncSession,
    *,
    jurisdiction_id: int,
    name: str,
    role: Role,
    scopes: Sequence[str] = (),
    expires_at: datetime | None = None,
    created_by_id: uuid.UUID | None = None,
    creator_role: Role | None = None,
) -> IssuedKey:
    """Create a key for a jurisdiction; the returned secret is never stored.

    ``creator_role`` (when a person asks) caps the key's role at the creator's own.
    """
    if creator_role is not None and ROLE_RANK[role] > ROLE_RANK[creator_role]:
        raise Forbidden(f"You cannot issue a {role} key: that is more than your own role")
    if role not in KEY_ROLES:
        raise InvalidInput(
            "An API key's role must be citizen, crew or staff",
            errors=[{"field": "role", "message": "admin keys do not exist", "type": "value_error"}],
        )
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidInput(
            "expires_at must be in the future",
            errors=[{"field": "expires_at", "message": "in the past", "type": "value_error"}],
        )
    prefix, secret = generate_key()
    api_key = ApiKey(
        jurisdiction_id=jurisdiction_id,
        name=name,
        prefix=prefix,
        key_hash=hash_key(secret),
        role=role.value,
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
        created_by_id=created_by_id,
    )
    session.add(api_key)
    await session.flush()
    await session.refresh(api_key)
    return IssuedKey(api_key=api_key, secret=secret)


async def list_api_keys(session: AsyncSession, jurisdiction_id: int | None) -> Sequence[ApiKey]:
    """Keys of one jurisdiction (or every key, for ``None``), newest first."""
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if jurisdiction_id is not None:
        query = query.where(ApiKey.jurisdiction_id == jurisdiction_id)
    return (await session.execute(query)).scalars().all()


async def get_api_key(session: AsyncSession, key_id: int) -> ApiKey:
    api_key = await session.get(ApiKey, key_id)
    if api_key is None:
        raise NotFound(f"No API key {key_id}")
    return api_key


async def revoke_api_key(session: AsyncSession, api_key: ApiKey) -> ApiKey:
    """Revoke a key; revoking it again keeps the first revocation time."""
    if api_key.revoked_at is None:
        api_key.revoked_at = datetime.now(UTC)
        await session.flush()
    return api_key


@dataclass(frozen=True, slots=True)
class LiveApiKey:
    """What a request learns about the valid key it came with."""

    id: int
    jurisdiction_id: int
    name: str
    role: str
    scopes: Sequence[str]


# On every request with a key: hand-written and prepared (app.db.HotStatement), one round trip.
# bench/workorders_sql.py replays it in the work-order search ceiling.
FIND_API_KEY = HotStatement(
    "SELECT id, jurisdiction_id, name, role, scopes, key_hash, last_used_at, expires_at,"
    " revoked_at FROM api_key WHERE prefix = :prefix"
)
# Conditional, so concurrent requests with one key write it once a minute, not each.
_TOUCH_KEY = HotStatement(
    "UPDATE api_key SET last_used_at = :now"
    " WHERE id = :id AND (last_used_at IS NULL OR last_used_at <= :stale)"
)


async def authenticate_api_key(db: Db, raw: str) -> LiveApiKey:
    """The live key that ``raw`` is, or 401 saying why not.

    Used for the ``X-API-Key`` header and the ``api_key`` query parameter alike.
    """
    prefix = _parse_prefix(raw.strip())
    row = await FIND_API_KEY.one(db, {"prefix": prefix}) if prefix is not None else None
    # Compare even when no row matched, so timing does not tell a known prefix apart.
    expected = row.key_hash if row is not None else "0" * 64
    if not hmac.compare_digest(hash_key(raw.strip()), expected) or row is None:
        raise NotAuthenticated("The API key is not valid", headers={"WWW-Authenticate": "ApiKey"})
    now = datetime.now(UTC)
    if row.revoked_at is not None:
        raise NotAuthenticated(
            f"This API key was revoked on {row.revoked_at:%Y-%m-%d}",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    if row.expires_at is not None and row.expires_at <= now:
        raise NotAuthenticated(
            f"This API key expired on {row.expires_at:%Y-%m-%d}",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        stale = now - LAST_USED_RESOLUTION
        await _TOUCH_KEY.one(db, {"id": row.id, "now": now, "stale": stale})
    return LiveApiKey(row.id, row.jurisdiction_id, row.name, row.role, tuple(row.scopes))
