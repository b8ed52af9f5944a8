"""open311: public status changes by time, for FixMyStreet's ``servicerequestupdates``

FixMyStreet polls the status changes of the last two hours, city-wide, every few minutes;
without this index each poll read the whole timeline. Partial: only public status changes.

Revision ID: 0050
Revises: 0019
Create Date: 2026-12-04 17:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0050"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_ticket_event_public_status_created",
        "ticket_event",
        ["created_at", "id"],
        unique=False,
        postgresql_where=sa.text("kind = 'status_changed' AND public"),
    )


def downgrade() -> None:
    op.drop_index("ix_ticket_event_public_status_created", table_name="ticket_event")
