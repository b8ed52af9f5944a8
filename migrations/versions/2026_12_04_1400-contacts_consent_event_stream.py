"""contacts with consent and verification; more channels; one event stream on ticket_event

- ``contact`` gains its verification state (``verified_at``, a pending token's hash and expiry)
  and ``disabled_at``/``disabled_reason`` for addresses that can no longer be reached, and the
  kinds of the coming channels (WhatsApp, Mastodon, Bluesky).
- ``contact_consent``: what each contact agreed to hear about, when and how, and its
  withdrawal. Existing contact subscriptions are carried over as consents given on the form
  that made them (report, support, follow), dated when the subscription was made.
- ``report.channel`` takes the coming channels.
- ``ticket_event_stream``: every line written to a ticket's timeline, by whichever statement,
  passes this one trigger. It is a constraint trigger deferred to the commit, so it sees the
  transaction as it ends (a reporter's contacts and subscriptions are written after the event
  that opened the ticket) and still runs inside it: what it writes commits or rolls back with
  the change. Today it announces public events of tickets that somebody follows on
  ``kerbside_ticket_event`` (``<ticket_id>:<event_id>:<kind>``), so a listener wakes without
  polling; the outbox hangs its rows off the same function. Announcing only where somebody
  listens keeps NOTIFY's commit-time lock off anonymous intake; ``ix_subscription_ticket_live``
  makes that look-up one index probe.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = "'email', 'phone', 'fcm', 'webpush', 'x', 'facebook', 'webhook'"
NEW_KINDS = (
    "'email', 'phone', 'fcm', 'webpush', 'x', 'facebook', 'whatsapp', 'mastodon', 'bluesky',"
    " 'webhook'"
)
OLD_CHANNELS = "'app', 'web', 'open311', 'x', 'facebook', 'email', 'phone', 'staff', 'import'"
NEW_CHANNELS = (
    "'app', 'web', 'open311', 'x', 'facebook', 'whatsapp', 'mastodon', 'bluesky', 'email',"
    " 'phone', 'staff', 'import'"
)

EVENT_STREAM = """
CREATE FUNCTION kerbside_ticket_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.public AND EXISTS (
        SELECT 1 FROM subscription s WHERE s.ticket_id = NEW.ticket_id AND s.ended_at IS NULL
    ) THEN
        PERFORM pg_notify('kerbside_ticket_event',
                          NEW.ticket_id::text || ':' || NEW.id::text || ':' || NEW.kind);
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER ticket_event_stream AFTER INSERT ON ticket_event
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION kerbside_ticket_event();
"""


def upgrade() -> None:
    op.add_column("contact", sa.Column("verified_at", sa.DateTime(timezone=True)))
    op.add_column("contact", sa.Column("verify_token_hash", sa.String(length=64)))
    op.add_column("contact", sa.Column("verify_expires_at", sa.DateTime(timezone=True)))
    op.add_column("contact", sa.Column("disabled_at", sa.DateTime(timezone=True)))
    op.add_column("contact", sa.Column("disabled_reason", sa.Text()))
    op.create_unique_constraint(
        op.f("uq_contact_verify_token_hash"), "contact", ["verify_token_hash"]
    )
    op.drop_constraint(op.f("ck_contact_kind_known"), "contact", type_="check")
    op.create_check_constraint(op.f("ck_contact_kind_known"), "contact", f"kind IN ({NEW_KINDS})")
    # Device tokens and subscriptions were handed to us by the device itself.
    op.execute("UPDATE contact SET verified_at = created_at WHERE kind IN ('fcm', 'webpush')")

    op.drop_constraint(op.f("ck_report_channel_known"), "report", type_="check")
    op.create_check_constraint(
        op.f("ck_report_channel_known"), "report", f"channel IN ({NEW_CHANNELS})"
    )

    op.create_table(
        "contact_consent",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("ticket_id", sa.BigInteger(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column(
            "evidence",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_how", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "method IN ('report_form', 'support_form', 'follow_form', 'account', 'social_post',"
            " 'message', 'import', 'staff')",
            name=op.f("ck_contact_consent_method_known"),
        ),
        sa.CheckConstraint(
            "purpose IN ('ticket_updates', 'area_updates', 'broadcasts')",
            name=op.f("ck_contact_consent_purpose_known"),
        ),
        sa.CheckConstraint(
            "(purpose = 'ticket_updates') = (ticket_id IS NOT NULL)",
            name=op.f("ck_contact_consent_ticket_scoped"),
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_contact_consent_contact_id_contact"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["ticket.id"],
            name=op.f("fk_contact_consent_ticket_id_ticket"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_consent")),
    )
    op.create_index(
        op.f("ix_contact_consent_ticket_id"), "contact_consent", ["ticket_id"], unique=False
    )
    op.create_index(
        "uq_contact_consent_live",
        "contact_consent",
        ["contact_id", "purpose", "ticket_id"],
        unique=True,
        postgresql_where=sa.text("withdrawn_at IS NULL"),
        postgresql_nulls_not_distinct=True,
    )
    op.execute(
        """
        INSERT INTO contact_consent (contact_id, purpose, ticket_id, method, given_at,
                                     withdrawn_at, withdrawn_how)
        SELECT contact_id, 'ticket_updates', ticket_id,
               CASE reason WHEN 'supporter' THEN 'support_form'
                           WHEN 'follower' THEN 'follow_form' ELSE 'report_form' END,
               created_at, ended_at, CASE WHEN ended_at IS NOT NULL THEN 'ended' END
        FROM subscription WHERE contact_id IS NOT NULL
        """
    )
    op.create_index(
        "ix_subscription_ticket_live",
        "subscription",
        ["ticket_id"],
        unique=False,
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.execute(EVENT_STREAM)


def downgrade() -> None:
    op.execute("DROP TRIGGER ticket_event_stream ON ticket_event")
    op.execute("DROP FUNCTION kerbside_ticket_event()")
    op.drop_index("ix_subscription_ticket_live", table_name="subscription")
    op.drop_table("contact_consent")
    op.drop_constraint(op.f("ck_report_channel_known"), "report", type_="check")
    op.create_check_constraint(
        op.f("ck_report_channel_known"), "report", f"channel IN ({OLD_CHANNELS})"
    )
    op.drop_constraint(op.f("ck_contact_kind_known"), "contact", type_="check")
    op.create_check_constraint(op.f("ck_contact_kind_known"), "contact", f"kind IN ({OLD_KINDS})")
    op.drop_constraint(op.f("uq_contact_verify_token_hash"), "contact", type_="unique")
    for column in (
        "disabled_reason",
        "disabled_at",
        "verify_expires_at",
        "verify_token_hash",
        "verified_at",
    ):
        op.drop_column("contact", column)
