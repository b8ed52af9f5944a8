"""talk: signals (reports and posts as talk), spike alerts and their members; spike
thresholds per jurisdiction (``jurisdiction.talk``); staff as a notification reason

Revision ID: 0090
Revises: 0040
Create Date: 2026-12-04 18:00:00+00:00
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0090"
down_revision: str | None = "0050"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_REASONS = "reason IN ('reporter', 'subscriber', 'area', 'broadcast', 'reply')"
NEW_REASONS = "reason IN ('reporter', 'subscriber', 'area', 'broadcast', 'reply', 'staff')"


def upgrade() -> None:
    op.add_column(
        "jurisdiction",
        sa.Column(
            "talk",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.create_table(
        "talk_signal",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("report_id", sa.BigInteger(), nullable=True),
        sa.Column("post_id", sa.BigInteger(), nullable=True),
        sa.Column("ticket_id", sa.BigInteger(), nullable=True),
        sa.Column("service_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("area_id", sa.Integer(), nullable=True),
        sa.Column(
            "location",
            geoalchemy2.types.Geometry(
                geometry_type="POINT", srid=4326, spatial_index=False, from_text="ST_GeomFromEWKT"
            ),
            nullable=True,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("language", sa.String(length=8), server_default="und", nullable=False),
        sa.Column("sentiment", sa.Float(), nullable=True),
        sa.Column(
            "terms", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.CheckConstraint(
            "source IN ('report', 'post')", name=op.f("ck_talk_signal_source_known")
        ),
        sa.ForeignKeyConstraint(
            ["area_id"], ["area.id"], name=op.f("fk_talk_signal_area_id_area"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_talk_signal_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["report.id"],
            name=op.f("fk_talk_signal_report_id_report"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["service.id"],
            name=op.f("fk_talk_signal_service_id_service"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["ticket.id"],
            name=op.f("fk_talk_signal_ticket_id_ticket"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_talk_signal")),
        sa.UniqueConstraint("report_id", name=op.f("uq_talk_signal_report_id")),
    )
    op.create_index(
        "ix_talk_signal_jurisdiction_id_at", "talk_signal", ["jurisdiction_id", "at"], unique=False
    )
    op.create_index(
        "ix_talk_signal_location",
        "talk_signal",
        ["location"],
        unique=False,
        postgresql_using="gist",
    )
    op.create_index(
        "uq_talk_signal_post_id",
        "talk_signal",
        ["post_id"],
        unique=True,
        postgresql_where=sa.text("post_id IS NOT NULL"),
    )
    op.create_table(
        "talk_alert",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=True),
        sa.Column("area_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("signal_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("report_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("post_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("expected", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("radius_m", sa.Float(), nullable=False),
        sa.Column(
            "centroid",
            geoalchemy2.types.Geometry(
                geometry_type="POINT", srid=4326, spatial_index=False, from_text="ST_GeomFromEWKT"
            ),
            nullable=False,
        ),
        sa.Column(
            "polygon",
            geoalchemy2.types.Geometry(
                geometry_type="POLYGON", srid=4326, spatial_index=False, from_text="ST_GeomFromEWKT"
            ),
            nullable=False,
        ),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_signal_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=100), nullable=True),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_talk_alert_status_known")),
        sa.ForeignKeyConstraint(
            ["area_id"], ["area.id"], name=op.f("fk_talk_alert_area_id_area"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_talk_alert_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["service.id"],
            name=op.f("fk_talk_alert_service_id_service"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_talk_alert")),
    )
    op.create_index(
        "ix_talk_alert_jurisdiction_id_opened_at",
        "talk_alert",
        ["jurisdiction_id", "opened_at"],
        unique=False,
    )
    op.create_index(
        "ix_talk_alert_open",
        "talk_alert",
        ["jurisdiction_id", "service_id"],
        unique=False,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_table(
        "talk_alert_member",
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("signal_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["talk_alert.id"],
            name=op.f("fk_talk_alert_member_alert_id_talk_alert"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["talk_signal.id"],
            name=op.f("fk_talk_alert_member_signal_id_talk_signal"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alert_id", "signal_id", name=op.f("pk_talk_alert_member")),
    )
    op.create_index(
        "ix_talk_alert_member_signal_id", "talk_alert_member", ["signal_id"], unique=False
    )
    op.drop_constraint(op.f("ck_notification_reason_known"), "notification", type_="check")
    op.create_check_constraint(op.f("ck_notification_reason_known"), "notification", NEW_REASONS)


def downgrade() -> None:
    op.execute("DELETE FROM notification WHERE reason = 'staff'")
    op.drop_constraint(op.f("ck_notification_reason_known"), "notification", type_="check")
    op.create_check_constraint(op.f("ck_notification_reason_known"), "notification", OLD_REASONS)
    op.drop_index("ix_talk_alert_member_signal_id", table_name="talk_alert_member")
    op.drop_table("talk_alert_member")
    op.drop_index("ix_talk_alert_open", table_name="talk_alert")
    op.drop_index("ix_talk_alert_jurisdiction_id_opened_at", table_name="talk_alert")
    op.drop_table("talk_alert")
    op.drop_index("uq_talk_signal_post_id", table_name="talk_signal")
    op.drop_index("ix_talk_signal_location", table_name="talk_signal")
    op.drop_index("ix_talk_signal_jurisdiction_id_at", table_name="talk_signal")
    op.drop_table("talk_signal")
    op.drop_column("jurisdiction", "talk")
