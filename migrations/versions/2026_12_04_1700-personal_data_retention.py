"""Retention of personal data: when a ticket's was dropped, and the city's retention period

``ticket.personal_data_dropped_at``: when the anonymisation job last dropped the contacts,
reporter names and consent evidence of this closed ticket (``app.privacy``); a ticket closed
again after that (reopened, closed anew) is due again. ``jurisdiction.privacy``: the city
file's ``privacy`` section (``contact_retention_days``).

Revision ID: 0070
Revises: 0019
Create Date: 2026-12-04 17:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0070"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ticket", sa.Column("personal_data_dropped_at", sa.DateTime(timezone=True), nullable=True)
    )
    # The job's scan: closed tickets whose personal data has not been dropped since.
    op.create_index(
        "ix_ticket_closed_personal_data",
        "ticket",
        ["closed_at"],
        unique=False,
        postgresql_where=sa.text(
            "closed_at IS NOT NULL AND (personal_data_dropped_at IS NULL"
            " OR personal_data_dropped_at < closed_at)"
        ),
    )
    op.add_column(
        "jurisdiction",
        sa.Column(
            "privacy",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("jurisdiction", "privacy")
    op.drop_index("ix_ticket_closed_personal_data", table_name="ticket")
    op.drop_column("ticket", "personal_data_dropped_at")
