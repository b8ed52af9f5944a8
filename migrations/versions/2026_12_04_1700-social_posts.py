"""social posts: the social intake pipeline (issue 18)

- ``social_post``: every post addressed to a city account, verbatim, unique by (platform,
  post id), with its outcome (ticket created, linked and how, ignored and why, awaiting
  location, communications, needs a human) and the webcare inbox's state.
- ``social_settings``: a jurisdiction's ``social`` section of the city file.
- ``social_cursor``: where polling each account stands (``since_id``, a 429's reset).
- ``notification`` gains ``social_post_id`` and ``reply_to`` (answers in a thread) and the
  reason ``reply``.

Revision ID: 0030
Revises: 0019
Create Date: 2026-12-04 17:00:00+00:00
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0030"
down_revision: str | None = "0070"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "social_post",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("post_id", sa.String(length=200), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.String(length=200), nullable=False),
        sa.Column("author_handle", sa.String(length=200), nullable=True),
        sa.Column("conversation_id", sa.String(length=200), nullable=True),
        sa.Column("in_reply_to_id", sa.String(length=200), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "hints",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("raw", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=24), server_default="received", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("link_rule", sa.String(length=16), nullable=True),
        sa.Column("service_code", sa.String(length=64), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("sentiment", sa.Float(), nullable=True),
        sa.Column("sensitive", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "location",
            geoalchemy2.types.Geometry(geometry_type="POINT", srid=4326, spatial_index=False),
            nullable=True,
        ),
        sa.Column("location_source", sa.String(length=16), nullable=True),
        sa.Column("ticket_id", sa.BigInteger(), nullable=True),
        sa.Column("report_id", sa.BigInteger(), nullable=True),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column("resumed_by_id", sa.BigInteger(), nullable=True),
        sa.Column("assigned_to", sa.UUID(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('received', 'ticket_created', 'linked', 'ignored', 'awaiting_location',"
            " 'communications', 'needs_human')",
            name=op.f("ck_social_post_status_known"),
        ),
        sa.CheckConstraint(
            "link_rule IS NULL OR link_rule IN ('reply', 'conversation', 'reference', 'intake',"
            " 'resumed')",
            name=op.f("ck_social_post_link_rule_known"),
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_social_post_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["ticket.id"],
            name=op.f("fk_social_post_ticket_id_ticket"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["report.id"],
            name=op.f("fk_social_post_report_id_report"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_social_post_contact_id_contact"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["resumed_by_id"],
            ["social_post.id"],
            name=op.f("fk_social_post_resumed_by_id_social_post"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["assigned_to"],
            ["app_user.id"],
            name=op.f("fk_social_post_assigned_to_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_social_post")),
        sa.UniqueConstraint("platform", "post_id", name=op.f("uq_social_post_platform_post_id")),
    )
    op.create_index(
        "ix_social_post_conversation",
        "social_post",
        ["platform", "conversation_id", "author_id"],
        unique=False,
        postgresql_where=sa.text("ticket_id IS NOT NULL"),
    )
    op.create_index(
        "ix_social_post_awaiting",
        "social_post",
        ["platform", "author_id"],
        unique=False,
        postgresql_where=sa.text("status = 'awaiting_location'"),
    )
    op.create_index(
        "ix_social_post_inbox",
        "social_post",
        ["jurisdiction_id", "id"],
        unique=False,
        postgresql_where=sa.text("answered_at IS NULL AND closed_at IS NULL"),
    )
    op.create_index("ix_social_post_ticket_id", "social_post", ["ticket_id"], unique=False)
    op.create_table(
        "social_settings",
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column(
            "config",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_social_settings_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("jurisdiction_id", name=op.f("pk_social_settings")),
    )
    op.create_table(
        "social_cursor",
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("since_id", sa.String(length=200), nullable=True),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("platform", "account", name=op.f("pk_social_cursor")),
    )
    op.add_column("notification", sa.Column("social_post_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "notification",
        sa.Column("reply_to", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.create_foreign_key(
        op.f("fk_notification_social_post_id_social_post"),
        "notification",
        "social_post",
        ["social_post_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "uq_notification_social_post_id_event_kind",
        "notification",
        ["social_post_id", "event_kind"],
        unique=True,
        postgresql_where=sa.text(
            "social_post_id IS NOT NULL AND event_kind IN ('post_linked', 'location_asked')"
        ),
    )
    op.drop_constraint(op.f("ck_notification_reason_known"), "notification", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_reason_known"),
        "notification",
        "reason IN ('reporter', 'subscriber', 'area', 'broadcast', 'reply')",
    )
    op.create_index(
        "ix_notification_provider_id",
        "notification",
        ["provider_id"],
        unique=False,
        postgresql_where=sa.text(
            "provider_id IS NOT NULL AND reason IN ('reporter', 'subscriber', 'reply')"
        ),
    )


def downgrade() -> None:
    op.drop_index("ix_notification_provider_id", table_name="notification")
    op.execute("DELETE FROM notification WHERE reason = 'reply'")
    op.drop_constraint(op.f("ck_notification_reason_known"), "notification", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_reason_known"),
        "notification",
        "reason IN ('reporter', 'subscriber', 'area', 'broadcast')",
    )
    op.drop_index("uq_notification_social_post_id_event_kind", table_name="notification")
    op.drop_constraint(
        op.f("fk_notification_social_post_id_social_post"), "notification", type_="foreignkey"
    )
    op.drop_column("notification", "reply_to")
    op.drop_column("notification", "social_post_id")
    op.drop_table("social_cursor")
    op.drop_table("social_settings")
    op.drop_index("ix_social_post_ticket_id", table_name="social_post")
    op.drop_index("ix_social_post_inbox", table_name="social_post")
    op.drop_index("ix_social_post_awaiting", table_name="social_post")
    op.drop_index("ix_social_post_conversation", table_name="social_post")
    op.drop_table("social_post")
