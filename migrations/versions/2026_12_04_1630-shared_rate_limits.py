"""rate_limit_hit: per-client hit counts shared by every API process and host

Used when KERBSIDE_RATE_LIMIT_STORE=postgres (app/core/ratelimit.py). One row per limit,
client key and one-minute window; a sliding window is estimated from the current and the
previous minute. UNLOGGED: counters need no crash safety or replication, and skip the WAL.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 16:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_hit",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("window_no", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("carried", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("name", "key", "window_no", name=op.f("pk_rate_limit_hit")),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("rate_limit_hit")
