"""jurisdiction.channels: the city's own channel accounts (the city file's ``channels``:
sender, SMTP URL, SMS account, FCM project, VAPID subject, partner webhooks; every secret by
the name of an environment variable, never its value)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 18:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | None = "0085"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jurisdiction",
        sa.Column(
            "channels",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("jurisdiction", "channels")
