"""talk: social posts as signals: ``talk_signal.post_id`` references ``social_post``
(ON DELETE SET NULL), and ``talk_signal.reply`` marks a reply to the city's answer

Revision ID: 0095
Revises: 0090
Create Date: 2026-12-04 18:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0095"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Signals recorded before the posts' table had ids of their own point nowhere.
    op.execute(
        "UPDATE talk_signal s SET post_id = NULL WHERE post_id IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM social_post p WHERE p.id = s.post_id)"
    )
    op.create_foreign_key(
        op.f("fk_talk_signal_post_id_social_post"),
        "talk_signal",
        "social_post",
        ["post_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column(
        "talk_signal",
        sa.Column("reply", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("talk_signal", "reply")
    op.drop_constraint(
        op.f("fk_talk_signal_post_id_social_post"), "talk_signal", type_="foreignkey"
    )
