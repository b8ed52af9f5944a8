"""open311: ``media_url`` photos fetched after filing (``open311_media``), and FixMyStreet's
pushed updates once per ``update_id`` and ticket (a unique partial index on ``ticket_event``)

Revision ID: 0111
Revises: 0101
Create Date: 2026-12-04 21:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0111"
down_revision: str | None = "0101"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "open311_media",
        sa.Column("report_id", sa.BigInteger(), nullable=False),
        sa.Column("urls", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("state", sa.String(16), server_default="pending", nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'fetched', 'failed')", name=op.f("ck_open311_media_state_known")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["report.id"],
            name=op.f("fk_open311_media_report_id_report"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", name=op.f("pk_open311_media")),
    )
    op.create_index(
        "uq_ticket_event_open311_update",
        "ticket_event",
        ["ticket_id", sa.text("(data ->> 'open311_update_id')")],
        unique=True,
        postgresql_where=sa.text("data ? 'open311_update_id'"),
    )


def downgrade() -> None:
    op.drop_index("uq_ticket_event_open311_update", table_name="ticket_event")
    op.drop_table("open311_media")
