"""jurisdiction.notifications: quiet hours and rate limits (the city file's ``notifications``)

Non-urgent messages wait for the end of the city's quiet hours (in its time zone) and for the
contact's hourly allowance; broadcasts do not wait. Per channel when the city says so.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 16:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jurisdiction",
        sa.Column(
            "notifications",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_notification_sent_recently",
        "notification",
        ["contact_id", "sent_at"],
        unique=False,
        postgresql_where=sa.text("status = 'sent'"),
    )


def downgrade() -> None:
    op.drop_index("ix_notification_sent_recently", table_name="notification")
    op.drop_column("jurisdiction", "notifications")
