"""linked accounts: a citizen links a Mastodon, Messenger or X account for notices (issue 20):
``link_attempt`` (the server's half of an OAuth state or a Messenger ref), the consent
purpose ``notices`` and the method ``linked_account``

Revision ID: 0100
Revises: 0102
Create Date: 2026-12-04 19:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0100"
down_revision: str | None = "0102"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

METHODS = (
    "'report_form', 'support_form', 'follow_form', 'account', 'social_post', 'message',"
    " 'import', 'staff'"
)
PURPOSES = "'ticket_updates', 'area_updates', 'broadcasts'"


def _checks(methods: str, purposes: str) -> None:
    for name, column, values in (
        ("ck_contact_consent_method_known", "method", methods),
        ("ck_contact_consent_purpose_known", "purpose", purposes),
    ):
        op.drop_constraint(op.f(name), "contact_consent", type_="check")
        op.create_check_constraint(op.f(name), "contact_consent", f"{column} IN ({values})")


def upgrade() -> None:
    _checks(METHODS + ", 'linked_account'", PURPOSES + ", 'notices'")
    op.create_table(
        "link_attempt",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("nonce_hash", sa.String(length=64), nullable=False),
        sa.Column("code_verifier", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "platform IN ('mastodon', 'messenger', 'x')",
            name=op.f("ck_link_attempt_platform_known"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_link_attempt_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_link_attempt_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_attempt")),
        sa.UniqueConstraint("nonce_hash", name=op.f("uq_link_attempt_nonce_hash")),
    )
    op.create_index(op.f("ix_link_attempt_user_id"), "link_attempt", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_link_attempt_user_id"), table_name="link_attempt")
    op.drop_table("link_attempt")
    op.execute("DELETE FROM contact_consent WHERE purpose = 'notices' OR method = 'linked_account'")
    _checks(METHODS, PURPOSES)
