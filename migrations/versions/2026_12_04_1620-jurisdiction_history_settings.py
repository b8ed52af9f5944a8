"""jurisdiction.history: how the city's legacy exports read (the city file's ``history``)

The column mapping, the legacy categories' service codes, the date format and whether legacy
statuses are imported: ``kerbside import`` and ``POST /v1/imports`` use them unless told
otherwise.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 16:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jurisdiction",
        sa.Column(
            "history",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("jurisdiction", "history")
