"""area subscriptions and broadcasts: hearing about a place, and the city's emergency notices

- ``area_subscription``: a contact follows a place (an area of the city, or a radius around a
  point: "my street"): new tickets and/or fixes there, at once or in a daily digest.
- ``broadcast``: an emergency notice from staff to every subscriber inside a polygon, across
  all their channels, queued in resumable batches; published as CAP 1.2.
- ``notification`` gains ``reason`` (why this person hears: reporter, subscriber, area,
  broadcast) and ``broadcast_id``; one row per contact and broadcast.
- The event stream also tells immediate area subscribers about new tickets and fixes in
  their place (with a live ``area_updates`` consent).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 16:10:00+00:00
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT_STREAM = """
CREATE OR REPLACE FUNCTION kerbside_ticket_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queued int := 0;
    place geometry;
BEGIN
    IF NOT NEW.public THEN
        RETURN NULL;
    END IF;
    IF NEW.kind = 'ticket_opened'
       OR (NEW.kind = 'status_changed' AND NEW.data->>'to' = 'fixed') THEN
        SELECT location INTO place FROM ticket WHERE id = NEW.ticket_id;
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
        SELECT c.id, 'subscriber'
        FROM subscription s
        JOIN contact c ON c.id = s.contact_id OR (s.user_id IS NOT NULL AND c.user_id = s.user_id)
        WHERE NEW.kind IN ('status_changed', 'comment') AND s.ticket_id = NEW.ticket_id
          AND s.ended_at IS NULL
        UNION
        -- Merged away: the subscribers this merge moved to the surviving ticket.
        SELECT c.id, 'subscriber'
        FROM subscription s
        JOIN contact c ON c.id = s.contact_id OR (s.user_id IS NOT NULL AND c.user_id = s.user_id)
        WHERE NEW.kind = 'merged' AND NEW.data ? 'into' AND s.ticket_id = NEW.ticket_id
          AND s.ended_at = NEW.created_at
        UNION
        -- A place followed at once: new tickets, or fixes, there.
        SELECT a.contact_id, 'area'
        FROM area_subscription a
        WHERE place IS NOT NULL AND a.ended_at IS NULL AND a.mode = 'immediate'
          AND ST_Covers(a.geom, place)
          AND (CASE WHEN NEW.kind = 'ticket_opened' THEN 'new_tickets' ELSE 'fixes' END)
              = ANY (a.topics)
    ),
    reachable AS (
        SELECT DISTINCT ON (r.contact_id) r.contact_id, c.kind, r.why
        FROM recipients r JOIN contact c ON c.id = r.contact_id
        WHERE c.verified_at IS NOT NULL AND c.disabled_at IS NULL
          AND CASE WHEN r.why = 'area' THEN EXISTS (
                   SELECT 1 FROM contact_consent k
                   WHERE k.contact_id = c.id AND k.purpose = 'area_updates'
                     AND k.withdrawn_at IS NULL)
              ELSE (c.user_id IS NOT NULL AND EXISTS (
                   SELECT 1 FROM subscription s
                   WHERE s.ticket_id = NEW.ticket_id AND s.user_id = c.user_id)
               OR EXISTS (
                   SELECT 1 FROM contact_consent k
                   WHERE k.contact_id = c.id AND k.purpose = 'ticket_updates'
                     AND k.ticket_id = NEW.ticket_id AND k.withdrawn_at IS NULL)) END
        ORDER BY r.contact_id, r.why = 'area'
    ),
    queued_rows AS (
        INSERT INTO notification (contact_id, ticket_id, event_id, event_kind, channel, reason)
        SELECT contact_id, NEW.ticket_id, NEW.id, NEW.kind, kind, why FROM reachable
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
    IF queued > 0 OR EXISTS (
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
        "area_subscription",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("area_id", sa.Integer(), nullable=True),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="MULTIPOLYGON", srid=4326, spatial_index=False
            ),
            nullable=False,
        ),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("topics", postgresql.ARRAY(sa.String(length=16)), nullable=False),
        sa.Column("mode", sa.String(length=16), server_default="immediate", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "mode IN ('immediate', 'digest')", name=op.f("ck_area_subscription_mode_known")
        ),
        sa.CheckConstraint(
            "topics <@ ARRAY['new_tickets', 'fixes']::varchar[] AND cardinality(topics) > 0",
            name=op.f("ck_area_subscription_topics_known"),
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_area_subscription_contact_id_contact"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_area_subscription_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["area_id"],
            ["area.id"],
            name=op.f("fk_area_subscription_area_id_area"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_area_subscription")),
    )
    op.create_index(
        op.f("ix_area_subscription_contact_id"), "area_subscription", ["contact_id"], unique=False
    )
    op.create_index(
        "ix_area_subscription_live_geom",
        "area_subscription",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.create_table(
        "broadcast",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "public_id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False
        ),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column(
            "polygon",
            geoalchemy2.types.Geometry(
                geometry_type="MULTIPOLYGON", srid=4326, spatial_index=False
            ),
            nullable=False,
        ),
        sa.Column("area_description", sa.String(length=500), nullable=False),
        sa.Column("headline", sa.String(length=160), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("event", sa.String(length=100), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("certainty", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="queueing", nullable=False),
        sa.Column("queued_through_contact", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "counts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queueing', 'queued', 'cancelled')", name=op.f("ck_broadcast_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_broadcast_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast")),
        sa.UniqueConstraint("public_id", name=op.f("uq_broadcast_public_id")),
    )
    op.create_index(
        op.f("ix_broadcast_jurisdiction_id"), "broadcast", ["jurisdiction_id"], unique=False
    )
    op.add_column(
        "notification",
        sa.Column("reason", sa.String(length=16), server_default="subscriber", nullable=False),
    )
    op.add_column("notification", sa.Column("broadcast_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_notification_broadcast_id_broadcast"),
        "notification",
        "broadcast",
        ["broadcast_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_unique_constraint(
        op.f("uq_notification_contact_id_broadcast_id"),
        "notification",
        ["contact_id", "broadcast_id"],
    )
    op.create_check_constraint(
        op.f("ck_notification_reason_known"),
        "notification",
        "reason IN ('reporter', 'subscriber', 'area', 'broadcast')",
    )
    op.execute(EVENT_STREAM)


def downgrade() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("2026_12_04_1600-notifications.py")
    spec = importlib.util.spec_from_file_location("notifications_0014", path)
    assert spec is not None
    assert spec.loader is not None
    previous = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(previous)
    op.execute(previous.EVENT_STREAM)
    op.drop_constraint(op.f("ck_notification_reason_known"), "notification", type_="check")
    op.drop_constraint(
        op.f("uq_notification_contact_id_broadcast_id"), "notification", type_="unique"
    )
    op.drop_constraint(
        op.f("fk_notification_broadcast_id_broadcast"), "notification", type_="foreignkey"
    )
    op.drop_column("notification", "broadcast_id")
    op.drop_column("notification", "reason")
    op.drop_table("broadcast")
    op.drop_table("area_subscription")
