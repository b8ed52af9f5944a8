"""social dialogue: the state of a reporting conversation in WhatsApp or Messenger

One row per conversation with one person on one city account, kept in the database so a
conversation survives a restart; at most one open (collecting, confirming) per person and
account.

Revision ID: 0080
Revises: 0019
Create Date: 2026-12-04 17:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0080"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "state IN ('collecting', 'confirming')"


def upgrade() -> None:
    op.create_table(
        "social_dialogue",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("author_id", sa.Text(), nullable=False),
        sa.Column("jurisdiction", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="collecting", nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("service_code", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("location_source", sa.String(length=16), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column(
            "photos",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("photo_declined", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("asked", sa.String(length=16), nullable=True),
        sa.Column("asked_times", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "options", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "post_ids", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("report_id", sa.BigInteger(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('collecting', 'confirming', 'filed', 'stopped', 'expired', 'abandoned')",
            name=op.f("ck_social_dialogue_state"),
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["report.id"],
            name=op.f("fk_social_dialogue_report_id_report"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_social_dialogue")),
    )
    op.create_index(
        "ux_social_dialogue_open",
        "social_dialogue",
        ["platform", "account", "author_id"],
        unique=True,
        postgresql_where=sa.text(OPEN),
    )
    op.create_index(
        "ix_social_dialogue_person", "social_dialogue", ["platform", "account", "author_id"]
    )
    op.create_index(
        "ix_social_dialogue_open_age",
        "social_dialogue",
        ["updated_at"],
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_table("social_dialogue")
