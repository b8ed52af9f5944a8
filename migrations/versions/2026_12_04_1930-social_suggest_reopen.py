"""social: suggest a merge (rule 4), follow-up tickets, and answers the platform refused

- ``social_post.status`` ``suggest_merge``: a post by an author whose ticket was updated
  recently, about the same service or nearby; ``candidate_ticket_id`` is that ticket, and
  webcare links the post to it or files it as new.
- ``social_post.link_rule`` ``author`` (the same author's ticket, same service and nearby),
  ``suggested`` (webcare confirmed) and ``follow_up`` (a new ticket after the old one's
  reopen window).
- ``answer_failed_at``, ``answer_failure``: every way to answer was refused (X's 2026 reply
  rule, replies limited by the author, no direct messages): webcare answers by hand.

Revision ID: 0101
Revises: 0100
Create Date: 2026-12-04 19:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0101"
down_revision: str | None = "0100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS = (
    "'received', 'ticket_created', 'linked', 'ignored', 'awaiting_location', 'communications',"
    " 'needs_human', 'in_dialogue'"
)
_RULES = "'reply', 'conversation', 'reference', 'intake', 'resumed'"


def _checks(status: str, rules: str) -> None:
    op.drop_constraint(op.f("ck_social_post_status_known"), "social_post", type_="check")
    op.create_check_constraint(
        op.f("ck_social_post_status_known"), "social_post", f"status IN ({status})"
    )
    op.drop_constraint(op.f("ck_social_post_link_rule_known"), "social_post", type_="check")
    op.create_check_constraint(
        op.f("ck_social_post_link_rule_known"),
        "social_post",
        f"link_rule IS NULL OR link_rule IN ({rules})",
    )


def upgrade() -> None:
    _checks(f"{_STATUS}, 'suggest_merge'", f"{_RULES}, 'author', 'suggested', 'follow_up'")
    op.add_column("social_post", sa.Column("candidate_ticket_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_social_post_candidate_ticket_id_ticket"),
        "social_post",
        "ticket",
        ["candidate_ticket_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column(
        "social_post", sa.Column("answer_failed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("social_post", sa.Column("answer_failure", sa.Text(), nullable=True))
    op.create_index(
        "ix_social_post_author_ticket",
        "social_post",
        ["platform", "author_id", "id"],
        postgresql_where="ticket_id IS NOT NULL",
    )
    op.create_index("ix_social_post_candidate_ticket_id", "social_post", ["candidate_ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_social_post_candidate_ticket_id", table_name="social_post")
    op.drop_index("ix_social_post_author_ticket", table_name="social_post")
    op.drop_column("social_post", "answer_failure")
    op.drop_column("social_post", "answer_failed_at")
    op.drop_constraint(
        op.f("fk_social_post_candidate_ticket_id_ticket"), "social_post", type_="foreignkey"
    )
    op.drop_column("social_post", "candidate_ticket_id")
    op.execute("UPDATE social_post SET status = 'needs_human' WHERE status = 'suggest_merge'")
    op.execute(
        "UPDATE social_post SET link_rule = CASE link_rule WHEN 'follow_up' THEN 'intake'"
        " ELSE 'reference' END WHERE link_rule IN ('author', 'suggested', 'follow_up')"
    )
    _checks(_STATUS, _RULES)
