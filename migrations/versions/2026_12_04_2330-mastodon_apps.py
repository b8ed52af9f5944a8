"""mastodon apps: linking a resident's account on any Mastodon server: Kerbside's app
registered there once (``mastodon_app``), and the server a linking was started for
(``link_attempt.server``)

Revision ID: 0112
Revises: 0111
Create Date: 2026-12-04 23:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0112"
down_revision: str | None = "0111"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mastodon_app",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("base_url", sa.String(length=300), nullable=False),
        sa.Column("redirect_uri", sa.String(length=500), nullable=False),
        sa.Column("client_id", sa.String(length=256), nullable=False),
        sa.Column("client_secret", sa.String(length=256), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mastodon_app")),
        sa.UniqueConstraint(
            "base_url", "redirect_uri", name=op.f("uq_mastodon_app_base_url_redirect_uri")
        ),
    )
    op.add_column("link_attempt", sa.Column("server", sa.String(length=300), nullable=True))


def downgrade() -> None:
    op.drop_column("link_attempt", "server")
    op.drop_table("mastodon_app")
