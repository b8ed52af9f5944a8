"""duplicate rules per service: radius, same address, never

- ``service.duplicate_strategy``: ``radius`` (the rule so far, the default), ``same_address``
  or ``never``; ``service.duplicate_street_within_m``: for ``same_address``, how close another
  house on the same street must be to be the same job (0 = the same address only).
- ``ticket.address_key`` and ``ticket.street_key``: the ticket's address as the rule compares
  it (``geo.address.address_key``), with partial indexes on (service_id, street_key) for open
  and for fixed/closed tickets, so the lookup is an index probe.

Existing tickets with an address get their keys here, computed by the same Python function the
intake uses; a later change to that function needs a migration that recomputes them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 15:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from geo.address import address_key

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')"
DONE = "status IN ('fixed', 'closed')"
BATCH = 5000


def upgrade() -> None:
    op.add_column(
        "service",
        sa.Column(
            "duplicate_strategy", sa.String(length=16), server_default="radius", nullable=False
        ),
    )
    op.add_column(
        "service",
        sa.Column(
            "duplicate_street_within_m", sa.Float(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.create_check_constraint(
        op.f("ck_service_duplicate_strategy_known"),
        "service",
        "duplicate_strategy IN ('radius', 'same_address', 'never')",
    )
    op.create_check_constraint(
        op.f("ck_service_street_within_range"),
        "service",
        "duplicate_street_within_m >= 0 AND duplicate_street_within_m <= 2000",
    )
    op.add_column("ticket", sa.Column("address_key", sa.Text(), nullable=True))
    op.add_column("ticket", sa.Column("street_key", sa.Text(), nullable=True))
    _backfill()
    op.create_index(
        "ix_ticket_open_service_street",
        "ticket",
        ["service_id", "street_key"],
        unique=False,
        postgresql_where=sa.text(f"{OPEN} AND street_key IS NOT NULL"),
    )
    op.create_index(
        "ix_ticket_done_service_street",
        "ticket",
        ["service_id", "street_key"],
        unique=False,
        postgresql_where=sa.text(f"{DONE} AND street_key IS NOT NULL"),
    )


def _backfill() -> None:
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT id, address FROM ticket WHERE id > :after AND address IS NOT NULL"
                " ORDER BY id LIMIT :n"
            ),
            {"after": after, "n": BATCH},
        ).all()
        if not rows:
            return
        keyed = []
        for row in rows:
            key = address_key(row.address)
            if key is not None:
                keyed.append({"id": row.id, "a": key.address, "s": key.street})
        if keyed:
            conn.execute(
                sa.text("UPDATE ticket SET address_key = :a, street_key = :s WHERE id = :id"),
                keyed,
            )
        after = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_ticket_done_service_street", table_name="ticket")
    op.drop_index("ix_ticket_open_service_street", table_name="ticket")
    op.drop_column("ticket", "street_key")
    op.drop_column("ticket", "address_key")
    op.drop_constraint(op.f("ck_service_street_within_range"), "service", type_="check")
    op.drop_constraint(op.f("ck_service_duplicate_strategy_known"), "service", type_="check")
    op.drop_column("service", "duplicate_street_within_m")
    op.drop_column("service", "duplicate_strategy")
