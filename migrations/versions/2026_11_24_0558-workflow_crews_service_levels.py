"""workflow, crews and work orders, service levels

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 05:58:49.888309+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_EVENT_KINDS = (
    "'ticket_opened', 'report_attached', 'supporter_added', 'follower_added', 'status_changed',"
    " 'comment', 'assigned', 'priority_changed', 'merged', 'split', 'photo_added',"
    " 'inbound_message', 'notification_sent', 'notification_failed', 'sla_warning',"
    " 'sla_breached'"
)
NEW_EVENT_KINDS = OLD_EVENT_KINDS + ", 'work_progress'"
OPEN_STATUSES = "'open', 'acknowledged', 'scheduled', 'in_progress', 'reopened'"
WORK_STATUSES = "'assigned', 'accepted', 'en_route', 'on_site', 'done', 'unable'"


def upgrade() -> None:
    op.create_table(
        "assignment_rule",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("area_id", sa.Integer(), nullable=True),
        sa.Column("service_id", sa.Integer(), nullable=True),
        sa.Column("crew_id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["area_id"],
            ["area.id"],
            name=op.f("fk_assignment_rule_area_id_area"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["crew_id"],
            ["crew.id"],
            name=op.f("fk_assignment_rule_crew_id_crew"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_assignment_rule_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["service.id"],
            name=op.f("fk_assignment_rule_service_id_service"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_rule")),
    )
    op.create_index(
        op.f("ix_assignment_rule_crew_id"), "assignment_rule", ["crew_id"], unique=False
    )
    op.create_index(
        op.f("ix_assignment_rule_jurisdiction_id"),
        "assignment_rule",
        ["jurisdiction_id"],
        unique=False,
    )
    op.create_index(
        "uq_assignment_rule_scope",
        "assignment_rule",
        ["jurisdiction_id", "area_id", "service_id"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "response_template",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'fixed', 'closed', 'duplicate', 'not_our_responsibility', 'rejected', 'reopened')",
            name=op.f("ck_response_template_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_response_template_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["service.id"],
            name=op.f("fk_response_template_service_id_service"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_response_template")),
    )
    op.create_index(
        "uq_response_template_scope",
        "response_template",
        ["jurisdiction_id", "service_id", "status", "language"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.add_column(
        "jurisdiction",
        sa.Column(
            "business_hours",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text(
                '\'{"mon": [["08:00", "18:00"]], "tue": [["08:00", "18:00"]], "wed": [["08:00", "18:00"]], "thu": [["08:00", "18:00"]], "fri": [["08:00", "18:00"]]}\''
            ),
            nullable=False,
        ),
    )
    op.add_column(
        "jurisdiction",
        sa.Column(
            "holidays",
            postgresql.ARRAY(sa.Date()),
            server_default=sa.text("ARRAY[]::date[]"),
            nullable=False,
        ),
    )
    op.add_column(
        "service",
        sa.Column(
            "completion_photo_required",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
    )
    op.add_column(
        "service",
        sa.Column(
            "reopen_within",
            sa.Interval(),
            server_default=sa.text("interval '14 days'"),
            nullable=False,
        ),
    )
    op.add_column(
        "service",
        sa.Column(
            "public_location_snap_m", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.add_column(
        "ticket",
        sa.Column("priority_manual", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "ticket", sa.Column("acknowledge_warn_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("ticket", sa.Column("resolve_warn_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "ticket",
        sa.Column("sla_flags", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "ticket",
        sa.Column("sla_next_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "ticket",
        sa.Column("reopened_count", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("ticket", sa.Column("work_status", sa.String(length=16), nullable=True))
    op.add_column("ticket", sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("ticket", sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_ticket_done_service_location",
        "ticket",
        ["service_id", "location"],
        unique=False,
        postgresql_using="gist",
        postgresql_where=sa.text("status IN ('fixed', 'closed')"),
    )
    op.create_index(
        "ix_ticket_open_priority_due",
        "ticket",
        ["priority", "resolve_due_at", "id"],
        unique=False,
        postgresql_where=sa.text(
            "status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')"
        ),
    )
    op.create_index(
        "ix_ticket_open_sla_next",
        "ticket",
        ["sla_next_at"],
        unique=False,
        postgresql_where=sa.text(
            "status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')"
        ),
    )
    # Work orders (app/workorders/models.py): due-time order, and the tickets crews hold.
    op.create_index(
        "ix_ticket_open_due",
        "ticket",
        ["resolve_due_at", "id"],
        unique=False,
        postgresql_where=sa.text(f"status IN ({OPEN_STATUSES})"),
    )
    op.create_index(
        "ix_ticket_open_held",
        "ticket",
        ["priority", "resolve_due_at", "id"],
        unique=False,
        postgresql_where=sa.text(f"status IN ({OPEN_STATUSES}) AND work_status IS NOT NULL"),
    )
    op.drop_constraint(op.f("ck_ticket_event_kind_known"), "ticket_event", type_="check")
    op.create_check_constraint(
        op.f("ck_ticket_event_kind_known"), "ticket_event", f"kind IN ({NEW_EVENT_KINDS})"
    )
    op.create_check_constraint(
        op.f("ck_ticket_work_status_known"),
        "ticket",
        f"work_status IS NULL OR work_status IN ({WORK_STATUSES})",
    )
    op.create_check_constraint(
        op.f("ck_service_public_location_snap_range"),
        "service",
        "public_location_snap_m BETWEEN 0 AND 5000",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_service_public_location_snap_range"), "service", type_="check")
    op.drop_constraint(op.f("ck_ticket_work_status_known"), "ticket", type_="check")
    op.execute("DELETE FROM ticket_event WHERE kind = 'work_progress'")
    op.drop_constraint(op.f("ck_ticket_event_kind_known"), "ticket_event", type_="check")
    op.create_check_constraint(
        op.f("ck_ticket_event_kind_known"), "ticket_event", f"kind IN ({OLD_EVENT_KINDS})"
    )
    op.drop_index("ix_ticket_open_held", table_name="ticket")
    op.drop_index("ix_ticket_open_due", table_name="ticket")
    op.drop_index(
        "ix_ticket_open_sla_next",
        table_name="ticket",
        postgresql_where=sa.text(
            "status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')"
        ),
    )
    op.drop_index(
        "ix_ticket_open_priority_due",
        table_name="ticket",
        postgresql_where=sa.text(
            "status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')"
        ),
    )
    op.drop_index(
        "ix_ticket_done_service_location",
        table_name="ticket",
        postgresql_using="gist",
        postgresql_where=sa.text("status IN ('fixed', 'closed')"),
    )
    op.drop_column("ticket", "scheduled_for")
    op.drop_column("ticket", "assigned_at")
    op.drop_column("ticket", "work_status")
    op.drop_column("ticket", "reopened_count")
    op.drop_column("ticket", "sla_next_at")
    op.drop_column("ticket", "sla_flags")
    op.drop_column("ticket", "resolve_warn_at")
    op.drop_column("ticket", "acknowledge_warn_at")
    op.drop_column("ticket", "priority_manual")
    op.drop_column("service", "public_location_snap_m")
    op.drop_column("service", "reopen_within")
    op.drop_column("service", "completion_photo_required")
    op.drop_column("jurisdiction", "holidays")
    op.drop_column("jurisdiction", "business_hours")
    op.drop_index(
        "uq_response_template_scope",
        table_name="response_template",
        postgresql_nulls_not_distinct=True,
    )
    op.drop_table("response_template")
    op.drop_index(
        "uq_assignment_rule_scope", table_name="assignment_rule", postgresql_nulls_not_distinct=True
    )
    op.drop_index(op.f("ix_assignment_rule_jurisdiction_id"), table_name="assignment_rule")
    op.drop_index(op.f("ix_assignment_rule_crew_id"), table_name="assignment_rule")
    op.drop_table("assignment_rule")
