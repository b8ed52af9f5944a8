"""A linking in progress: the server's half of an OAuth ``state`` or a Messenger ``ref``."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Identity, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, CreatedAt, check_in


class LinkPlatform(StrEnum):
    """Where a citizen can link an account for notices (docs/notifications.md)."""

    mastodon = "mastodon"  # OAuth 2 authorization code + PKCE on the city's instance
    messenger = "messenger"  # an m.me link whose ref comes back in the referral webhook
    x = "x"  # OAuth 2 authorization code + PKCE; the notice is a direct message


class LinkAttempt(CreatedAt, Base):
    """One started linking: who started it, for which city account, until when, and (for
    OAuth) the PKCE verifier, which never leaves the server. Used once: ``used_at``."""

    __tablename__ = "link_attempt"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = mapped_column(String(16))
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id", ondelete="CASCADE"))
    account: Mapped[str] = mapped_column(String(200))  # the city account's handle
    # SHA-256 of the random part of the state, so a database dump cannot finish a linking.
    nonce_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code_verifier: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(check_in("platform", tuple(LinkPlatform)), name="platform_known"),
    )
