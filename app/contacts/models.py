"""Contacts, the consent each one gave, and the link from a report to its reporter's contacts."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, CreatedAt, check_in


class ContactKind(StrEnum):
    """The channels a person can be reached on; the address's form depends on the kind."""

    email = "email"  # an address, lower-cased
    phone = "phone"  # E.164, for SMS
    fcm = "fcm"  # a Firebase Cloud Messaging registration token
    webpush = "webpush"  # a Web Push subscription's endpoint (keys in ``data``)
    x = "x"  # an X user id (answers go in the thread of their post)
    facebook = "facebook"  # a page-scoped user id
    whatsapp = "whatsapp"  # a WhatsApp id (the phone number, digits only)
    mastodon = "mastodon"  # an account URI
    bluesky = "bluesky"  # a DID
    webhook = "webhook"  # a partner system's URL


# Kinds whose address the platform or the device itself vouches for: a push token or
# subscription handed to us by the device, or the account a post came from. The others
# (an email address, a phone number, a URL typed into a form) could be anyone's until the
# person proves they hold it.
SELF_VERIFYING = frozenset(
    {
        ContactKind.fcm,
        ContactKind.webpush,
        ContactKind.x,
        ContactKind.facebook,
        ContactKind.whatsapp,
        ContactKind.mastodon,
        ContactKind.bluesky,
    }
)


class Purpose(StrEnum):
    """What a person agreed to hear about."""

    ticket_updates = "ticket_updates"  # the progress of one ticket (``ticket_id``)
    area_updates = "area_updates"  # new tickets and fixes in an area or near a place
    broadcasts = "broadcasts"  # the city's emergency notices
    # A short "there is news about your report" on an account the person linked
    # (``app.linking``): no ticket, no details, a link to their own page.
    notices = "notices"


class ConsentMethod(StrEnum):
    """How the consent was given: the evidence a data-protection officer asks for."""

    report_form = "report_form"  # "tell me about progress" ticked with a report
    support_form = "support_form"  # "me too" with an address
    follow_form = "follow_form"  # "follow" with an address
    account = "account"  # a signed-in person's own settings
    social_post = "social_post"  # the person addressed the city on a public platform
    message = "message"  # the person wrote to the city in a messaging app
    import_ = "import"  # carried over from the city's previous system
    staff = "staff"  # recorded by staff (e.g. on the phone), with a note
    # A signed-in person linked an account of theirs (OAuth, a Messenger opt-in); the
    # evidence says how ("oauth:mastodon", "messenger:referral") and where notices go.
    linked_account = "linked_account"


class Contact(CreatedAt, Base):
    """A way to reach one person on one channel. Personal data: never on public endpoints."""

    __tablename__ = "contact"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(Text)  # email, E.164 phone, token, handle, URL
    display_name: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("app_user.id", ondelete="SET NULL"), index=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    # Proven to be the person's: clicked the link we sent, or a self-verifying kind.
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The pending verification: the SHA-256 of the token we sent, and until when it holds.
    verify_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    verify_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Unreachable for good (a hard bounce, an unregistered token): nothing more is sent.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("kind", "address"),
        CheckConstraint(check_in("kind", tuple(ContactKind)), name="kind_known"),
    )


class ContactConsent(Base):
    """One consent: what a contact agreed to hear about, when and how; and its withdrawal.

    Rows are never updated except to record the withdrawal, so the history stays readable.
    """

    __tablename__ = "contact_consent"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    # The ticket a ``ticket_updates`` consent is about (NULL for the other purposes).
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("ticket.id", ondelete="CASCADE"), index=True
    )
    method: Mapped[str] = mapped_column(String(16))
    # What shows it: the report's public id, the post's id, the staff member's note.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    given_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    withdrawn_how: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        CheckConstraint(check_in("purpose", tuple(Purpose)), name="purpose_known"),
        CheckConstraint(check_in("method", tuple(ConsentMethod)), name="method_known"),
        CheckConstraint(
            "(purpose = 'ticket_updates') = (ticket_id IS NOT NULL)", name="ticket_scoped"
        ),
        # One live consent per contact, purpose and ticket; a new one after a withdrawal.
        Index(
            "uq_contact_consent_live",
            "contact_id",
            "purpose",
            "ticket_id",
            unique=True,
            postgresql_where=text("withdrawn_at IS NULL"),
            postgresql_nulls_not_distinct=True,
        ),
    )


report_contact = Table(
    "report_contact",
    Base.metadata,
    Column("report_id", ForeignKey("report.id", ondelete="CASCADE"), primary_key=True),
    Column("contact_id", ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True),
)
