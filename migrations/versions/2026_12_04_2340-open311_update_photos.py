"""open311: the photos of FixMyStreet's pushed updates (``media_url``), fetched after the
update is recorded (``open311_update_media``) and kept on the ticket as ``update`` photos

Revision ID: 0113
Revises: 0112
Create Date: 2026-12-04 23:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0113"
down_revision: str | None = "0112"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_photo_kind_known"), "photo", type_="check")
    op.create_check_constraint(
        op.f("ck_photo_kind_known"), "photo", "kind IN ('report', 'completion', 'update')"
    )
    op.create_table(
        "open311_update_media",
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("urls", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("state", sa.String(16), server_default="pending", nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'fetched', 'failed')",
            name=op.f("ck_open311_update_media_state_known"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["ticket_event.id"],
            name=op.f("fk_open311_update_media_event_id_ticket_event"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["ticket.id"],
            name=op.f("fk_open311_update_media_ticket_id_ticket"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_open311_update_media")),
    )


def downgrade() -> None:
    op.drop_table("open311_update_media")
    op.execute("DELETE FROM photo WHERE kind = 'update'")
    op.drop_constraint(op.f("ck_photo_kind_known"), "photo", type_="check")
    op.create_check_constraint(
        op.f("ck_photo_kind_known"), "photo", "kind IN ('report', 'completion')"
    )
