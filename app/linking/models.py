"""A linking in progress: the server's half of an OAuth ``state`` or a Messenger ``ref``."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, CreatedAt, check_in


class LinkPlatform(StrEnum):
    """Where a citizen can link an account for notices (docs/notifications.md)."""

    mastodon = "mastodon"  # OAuth 2 authorization code + PKCE on the resident's server
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
    # Mastodon: the resident's own server (``https://host``) when it is not the city
    # account's; the code is exchanged there, with our app registered there (``MastodonApp``).
    server: Mapped[str | None] = mapped_column(String(300))
    # SHA-256 of the random part of the state, so a database dump cannot finish a linking.
    nonce_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code_verifier: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(check_in("platform", tuple(LinkPlatform)), name="platform_known"),
    )


class MastodonApp(CreatedAt, Base):
    """Kerbside's application on a resident's Mastodon server, registered at the first
    linking there (``POST /api/v1/apps``) and used for every later one. One per server and
    redirect URI: a redirect URI changed by the operator is a new registration."""

    __tablename__ = "mastodon_app"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    base_url: Mapped[str] = mapped_column(String(300))  # https://host[:port]
    redirect_uri: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(256))
    # Good for nothing without a resident's approval (scope ``profile``, codes with PKCE).
    client_secret: Mapped[str] = mapped_column(String(256))

    __table_args__ = (UniqueConstraint("base_url", "redirect_uri"),)
