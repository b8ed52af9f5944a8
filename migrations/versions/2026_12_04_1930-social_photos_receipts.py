"""social posts' photos fetched after filing (``social_post.photos_state``,
``photos_failure``), and WhatsApp's delivery receipts on the outbox rows
(``notification.delivered_at``, ``read_at``, found by ``provider_id``)

Revision ID: 0102
Revises: 0096
Create Date: 2026-12-04 19:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0102"
down_revision: str | None = "0096"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("social_post", sa.Column("photos_state", sa.String(16), nullable=True))
    op.add_column("social_post", sa.Column("photos_failure", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_social_post_photos_state_known"),
        "social_post",
        "photos_state IS NULL OR photos_state IN ('pending', 'fetched', 'failed')",
    )
    op.add_column(
        "notification", sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("notification", sa.Column("read_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_notification_whatsapp_provider_id",
        "notification",
        ["provider_id"],
        postgresql_where=sa.text("channel = 'whatsapp' AND provider_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_notification_whatsapp_provider_id", table_name="notification")
    op.drop_column("notification", "read_at")
    op.drop_column("notification", "delivered_at")
    op.drop_constraint(op.f("ck_social_post_photos_state_known"), "social_post", type_="check")
    op.drop_column("social_post", "photos_failure")
    op.drop_column("social_post", "photos_state")
