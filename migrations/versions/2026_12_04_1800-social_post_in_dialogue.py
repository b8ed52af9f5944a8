"""social post in dialogue: a WhatsApp or Messenger message the reporting dialogue answered

A private message in a chat is neither a ticket nor a webcare case while the dialogue asks for
what its report lacks: its own status, so the inbox does not count it as unanswered work.

Revision ID: 0085
Revises: 0030
Create Date: 2026-12-04 18:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0085"
down_revision: str | None = "0090"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = (
    "'received', 'ticket_created', 'linked', 'ignored', 'awaiting_location', 'communications',"
    " 'needs_human'"
)


def upgrade() -> None:
    op.drop_constraint(op.f("ck_social_post_status_known"), "social_post", type_="check")
    op.create_check_constraint(
        op.f("ck_social_post_status_known"),
        "social_post",
        f"status IN ({_BEFORE}, 'in_dialogue')",
    )
    op.create_index(
        "ix_social_post_in_dialogue",
        "social_post",
        ["platform", "author_id"],
        postgresql_where="status = 'in_dialogue'",
    )


def downgrade() -> None:
    op.drop_index("ix_social_post_in_dialogue", table_name="social_post")
    op.execute("UPDATE social_post SET status = 'needs_human' WHERE status = 'in_dialogue'")
    op.drop_constraint(op.f("ck_social_post_status_known"), "social_post", type_="check")
    op.create_check_constraint(
        op.f("ck_social_post_status_known"), "social_post", f"status IN ({_BEFORE})"
    )
