"""notification: the outbox, filled by the event stream in the transaction of each change

``kerbside_ticket_event()`` (the one trigger every timeline line passes, migration 0006) now
writes one ``notification`` row per reachable, consenting contact for the events the public
hears about, and defers its delivery job (procrastinate, ``deliver_notification``) in the
same transaction:

- ``ticket_opened`` / ``report_attached``: the new report's own reporter (the
  acknowledgement);
- ``status_changed`` and public ``comment``: every live subscriber of the ticket;
- ``merged`` on the ticket that was merged away: its subscribers (their subscriptions moved in
  the same transaction, ended at the event's time), told once, about the surviving ticket.

A contact is reachable when verified and not disabled; it consents with a live
``ticket_updates`` consent for the ticket, or as a signed-in subscriber (the account's own
contacts). ``(contact_id, event_id)`` is unique: nobody hears twice about one thing. The
delivery job is locked per contact and ticket, so one person's messages about one ticket go
out one at a time, in order.

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-04 16:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT_STREAM = """
CREATE OR REPLACE FUNCTION kerbside_ticket_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queued int := 0;
BEGIN
    IF NOT NEW.public THEN
        RETURN NULL;
    END IF;
    WITH recipients AS (
        -- The acknowledgement: the new report's own reporter.
        SELECT c.id AS contact_id, 'reporter' AS why
        FROM report_contact rc JOIN contact c ON c.id = rc.contact_id
        JOIN subscription s ON s.ticket_id = NEW.ticket_id AND s.contact_id = c.id
                           AND s.ended_at IS NULL
        WHERE NEW.kind IN ('ticket_opened', 'report_attached') AND rc.report_id = NEW.report_id
        UNION
        SELECT c.id, 'reporter'
        FROM report r JOIN contact c ON c.user_id = r.reporter_id
        JOIN subscription s ON s.ticket_id = NEW.ticket_id AND s.user_id = r.reporter_id
                           AND s.ended_at IS NULL
        WHERE NEW.kind IN ('ticket_opened', 'report_attached') AND r.id = NEW.report_id
        UNION
        -- Progress: every live subscriber.
        SELECT c.id, s.reason
        FROM subscription s
        JOIN contact c ON c.id = s.contact_id OR (s.user_id IS NOT NULL AND c.user_id = s.user_id)
        WHERE NEW.kind IN ('status_changed', 'comment') AND s.ticket_id = NEW.ticket_id
          AND s.ended_at IS NULL
        UNION
        -- Merged away: the subscribers this merge moved to the surviving ticket.
        SELECT c.id, s.reason
        FROM subscription s
        JOIN contact c ON c.id = s.contact_id OR (s.user_id IS NOT NULL AND c.user_id = s.user_id)
        WHERE NEW.kind = 'merged' AND NEW.data ? 'into' AND s.ticket_id = NEW.ticket_id
          AND s.ended_at = NEW.created_at
    ),
    reachable AS (
        SELECT DISTINCT r.contact_id, c.kind
        FROM recipients r JOIN contact c ON c.id = r.contact_id
        WHERE c.verified_at IS NOT NULL AND c.disabled_at IS NULL
          AND (c.user_id IS NOT NULL AND EXISTS (
                   SELECT 1 FROM subscription s
                   WHERE s.ticket_id = NEW.ticket_id AND s.user_id = c.user_id)
               OR EXISTS (
                   SELECT 1 FROM contact_consent k
                   WHERE k.contact_id = c.id AND k.purpose = 'ticket_updates'
                     AND k.ticket_id = NEW.ticket_id AND k.withdrawn_at IS NULL))
    ),
    queued_rows AS (
        INSERT INTO notification (contact_id, ticket_id, event_id, event_kind, channel)
        SELECT contact_id, NEW.ticket_id, NEW.id, NEW.kind, kind FROM reachable
        ON CONFLICT (contact_id, event_id) DO NOTHING
        RETURNING id, contact_id
    ),
    jobs AS (
        SELECT procrastinate_defer_jobs_v1(array_agg(ROW(
            'notify', 'deliver_notification', 0,
            'notify:' || contact_id || ':' || NEW.ticket_id, NULL,
            jsonb_build_object('notification_id', id), NULL
        )::procrastinate_job_to_defer_v1 ORDER BY id)) AS ids
        FROM queued_rows
        HAVING count(*) > 0
    )
    SELECT count(*) INTO queued FROM jobs;
    IF queued = 0 AND EXISTS (
        SELECT 1 FROM subscription s WHERE s.ticket_id = NEW.ticket_id AND s.ended_at IS NULL
    ) THEN
        -- Nothing to send, but somebody follows: listeners still hear of the change.
        PERFORM pg_notify('kerbside_ticket_event',
                          NEW.ticket_id::text || ':' || NEW.id::text || ':' || NEW.kind);
    ELSIF queued > 0 THEN
        PERFORM pg_notify('kerbside_ticket_event',
                          NEW.ticket_id::text || ':' || NEW.id::text || ':' || NEW.kind);
    END IF;
    RETURN NULL;
END
$$;
"""

PREVIOUS_EVENT_STREAM = """
CREATE OR REPLACE FUNCTION kerbside_ticket_event() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("ticket_id", sa.BigInteger(), nullable=True),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("event_kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("provider_id", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'retrying', 'sent', 'failed', 'dead', 'suppressed')",
            name=op.f("ck_notification_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_notification_contact_id_contact"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["ticket.id"],
            name=op.f("fk_notification_ticket_id_ticket"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["ticket_event.id"],
            name=op.f("fk_notification_event_id_ticket_event"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint(
            "contact_id", "event_id", name=op.f("uq_notification_contact_id_event_id")
        ),
    )
    op.create_index(op.f("ix_notification_ticket_id"), "notification", ["ticket_id"], unique=False)
    op.create_index(
        "ix_notification_undelivered",
        "notification",
        ["contact_id", "ticket_id", "id"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'retrying')"),
    )
    op.create_index(
        "ix_notification_dead",
        "notification",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('dead', 'failed')"),
    )
    op.execute(EVENT_STREAM)


def downgrade() -> None:
    op.execute(PREVIOUS_EVENT_STREAM)
    op.drop_table("notification")
