"""photo processing off the request path

Report photos are accepted before they are processed: ``photo.status`` (pending → ready |
failed), the private upload under ``original_key`` until it is processed, the claim's
``attempts`` and ``lease_until``, and ``failure`` (internal). ``bytes`` and ``sha256`` describe
the stored file, so they are unknown while a photo is pending. Existing photos are ready.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "photo", sa.Column("status", sa.String(length=16), server_default="ready", nullable=False)
    )
    op.add_column("photo", sa.Column("original_key", sa.String(length=255), nullable=True))
    op.add_column(
        "photo",
        sa.Column("attempts", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("photo", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("photo", sa.Column("failure", sa.Text(), nullable=True))
    op.alter_column("photo", "bytes", existing_type=sa.Integer(), nullable=True)
    op.alter_column("photo", "sha256", existing_type=sa.String(length=64), nullable=True)
    op.create_check_constraint(
        op.f("ck_photo_status_known"), "photo", "status IN ('pending', 'ready', 'failed')"
    )
    op.create_index(
        "ix_photo_pending",
        "photo",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_photo_leftover_original",
        "photo",
        ["id"],
        unique=False,
        postgresql_where=sa.text("original_key IS NOT NULL AND status <> 'pending'"),
    )


def downgrade() -> None:
    # Photos that never got their stripped files cannot be served by the old schema.
    op.execute("DELETE FROM photo WHERE status <> 'ready'")
    op.drop_index("ix_photo_leftover_original", table_name="photo")
    op.drop_index("ix_photo_pending", table_name="photo")
    op.drop_constraint(op.f("ck_photo_status_known"), "photo", type_="check")
    op.alter_column("photo", "sha256", existing_type=sa.String(length=64), nullable=False)
    op.alter_column("photo", "bytes", existing_type=sa.Integer(), nullable=False)
    op.drop_column("photo", "failure")
    op.drop_column("photo", "lease_until")
    op.drop_column("photo", "attempts")
    op.drop_column("photo", "original_key")
    op.drop_column("photo", "status")
