"""area digests: a daily message per followed place instead of one per ticket

``area_subscription.digest_through`` is the time up to which a digest subscription has been
told; the daily ``send_area_digests`` job writes one notification per subscription that has
news since (new tickets and/or fixes in its place), in the same transaction as moving the mark.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 16:50:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "area_subscription",
        sa.Column(
            "digest_through",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.add_column(
        "notification",
        sa.Column("digest", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("notification", "digest")
    op.drop_column("area_subscription", "digest_through")
