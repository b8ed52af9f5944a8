"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 04:00:00+00:00
"""

from collections.abc import Sequence

import fastapi_users_db_sqlalchemy.generics
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


AREA_PARTS_TRIGGER = """
CREATE FUNCTION area_refresh_parts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Keep small pieces of every area for fast point-in-polygon (mapit's GeometrySubdivided).
    DELETE FROM area_part WHERE area_id = NEW.id;
    INSERT INTO area_part (area_id, geom)
    SELECT NEW.id, part
    FROM ST_Subdivide(ST_MakeValid(NEW.geom), 64) AS pieces(part)
    WHERE ST_Dimension(part) = 2;
    RETURN NULL;
END
$$;
CREATE TRIGGER area_refresh_parts
    AFTER INSERT OR UPDATE OF geom ON area
    FOR EACH ROW EXECUTE FUNCTION area_refresh_parts();
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")  # (service_id, location) GiST index
    op.create_geospatial_table(
        "jurisdiction",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "boundary",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column(
            "languages",
            postgresql.ARRAY(sa.String(length=16)),
            server_default=sa.text("ARRAY['en']::varchar[]"),
            nullable=False,
        ),
        sa.Column("reference_prefix", sa.String(length=8), server_default="K", nullable=False),
        sa.Column("allow_anonymous", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "reference_prefix ~ '^[A-Z]{1,8}$'",
            name=op.f("ck_jurisdiction_reference_prefix_format"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jurisdiction")),
        sa.UniqueConstraint("slug", name=op.f("uq_jurisdiction_slug")),
    )
    op.create_geospatial_index(
        "ix_jurisdiction_boundary",
        "jurisdiction",
        ["boundary"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_geospatial_table(
        "area",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), server_default="district", nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_area_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_area")),
        sa.UniqueConstraint(
            "jurisdiction_id", "kind", "code", name=op.f("uq_area_jurisdiction_id_kind_code")
        ),
    )
    op.create_geospatial_index(
        "ix_area_geom", "area", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_index(op.f("ix_area_jurisdiction_id"), "area", ["jurisdiction_id"], unique=False)
    op.create_table(
        "crew",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_crew_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crew")),
        sa.UniqueConstraint("jurisdiction_id", "name", name=op.f("uq_crew_jurisdiction_id_name")),
    )
    op.create_index(op.f("ix_crew_jurisdiction_id"), "crew", ["jurisdiction_id"], unique=False)
    op.create_table(
        "service",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("names", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "descriptions",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("group", sa.String(length=100), nullable=True),
        sa.Column(
            "keywords",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("duplicate_radius_m", sa.Float(), server_default=sa.text("50"), nullable=False),
        sa.Column(
            "duplicate_window",
            sa.Interval(),
            server_default=sa.text("interval '30 days'"),
            nullable=False,
        ),
        sa.Column("acknowledge_within", sa.Interval(), nullable=True),
        sa.Column("resolve_within", sa.Interval(), nullable=True),
        sa.Column("business_hours", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("hazard_level", sa.SmallInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "description_required", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("code ~ '^[a-z0-9_.-]{1,64}$'", name=op.f("ck_service_code_format")),
        sa.CheckConstraint(
            "duplicate_radius_m >= 0 AND duplicate_radius_m <= 2000",
            name=op.f("ck_service_radius_range"),
        ),
        sa.CheckConstraint("hazard_level BETWEEN 1 AND 5", name=op.f("ck_service_hazard_range")),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_service_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service")),
        sa.UniqueConstraint(
            "jurisdiction_id", "code", name=op.f("uq_service_jurisdiction_id_code")
        ),
    )
    op.create_index(
        op.f("ix_service_jurisdiction_id"), "service", ["jurisdiction_id"], unique=False
    )
    op.create_table(
        "app_user",
        sa.Column("full_name", sa.String(length=200), nullable=True),
        sa.Column("role", sa.String(length=16), server_default="citizen", nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=True),
        sa.Column("crew_id", sa.Integer(), nullable=True),
        sa.Column("locale", sa.String(length=16), server_default="en", nullable=False),
        sa.Column("id", fastapi_users_db_sqlalchemy.generics.GUID(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("hashed_password", sa.String(length=1024), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_superuser", sa.Boolean(), nullable=False),
        sa.Column("is_verified", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "role IN ('citizen', 'crew', 'staff', 'admin')", name=op.f("ck_app_user_role_known")
        ),
        sa.ForeignKeyConstraint(
            ["crew_id"], ["crew.id"], name=op.f("fk_app_user_crew_id_crew"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_app_user_jurisdiction_id_jurisdiction"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
    )
    op.create_index(op.f("ix_app_user_crew_id"), "app_user", ["crew_id"], unique=False)
    op.create_index(op.f("ix_app_user_email"), "app_user", ["email"], unique=True)
    op.create_index(
        op.f("ix_app_user_jurisdiction_id"), "app_user", ["jurisdiction_id"], unique=False
    )
    op.create_geospatial_table(
        "area_part",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("area_id", sa.Integer(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["area_id"], ["area.id"], name=op.f("fk_area_part_area_id_area"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_area_part")),
    )
    op.create_index(op.f("ix_area_part_area_id"), "area_part", ["area_id"], unique=False)
    op.create_geospatial_index(
        "ix_area_part_geom",
        "area_part",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_table(
        "crew_area",
        sa.Column("crew_id", sa.Integer(), nullable=False),
        sa.Column("area_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["area_id"], ["area.id"], name=op.f("fk_crew_area_area_id_area"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["crew_id"], ["crew.id"], name=op.f("fk_crew_area_crew_id_crew"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("crew_id", "area_id", name=op.f("pk_crew_area")),
    )
    op.create_index(op.f("ix_crew_area_area_id"), "crew_area", ["area_id"], unique=False)
    op.create_geospatial_table(
        "ticket",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("area_id", sa.Integer(), nullable=True),
        sa.Column("crew_id", sa.Integer(), nullable=True),
        sa.Column(
            "location",
            Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=32), server_default="open", nullable=False),
        sa.Column("priority", sa.SmallInteger(), server_default=sa.text("3"), nullable=False),
        sa.Column("report_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("supporter_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("first_reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledge_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolve_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fixed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("merged_into_id", sa.BigInteger(), nullable=True),
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
            name=op.f("ck_ticket_status_known"),
        ),
        sa.CheckConstraint("priority BETWEEN 1 AND 5", name=op.f("ck_ticket_priority_range")),
        sa.CheckConstraint(
            "report_count >= 0 AND supporter_count >= 0", name=op.f("ck_ticket_counts_positive")
        ),
        sa.ForeignKeyConstraint(
            ["area_id"], ["area.id"], name=op.f("fk_ticket_area_id_area"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["crew_id"], ["crew.id"], name=op.f("fk_ticket_crew_id_crew"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_ticket_jurisdiction_id_jurisdiction"),
        ),
        sa.ForeignKeyConstraint(
            ["merged_into_id"],
            ["ticket.id"],
            name=op.f("fk_ticket_merged_into_id_ticket"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_ticket_service_id_service")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket")),
        sa.UniqueConstraint("reference", name=op.f("uq_ticket_reference")),
    )
    op.create_index(op.f("ix_ticket_area_id"), "ticket", ["area_id"], unique=False)
    op.create_index(op.f("ix_ticket_crew_id"), "ticket", ["crew_id"], unique=False)
    op.create_index(op.f("ix_ticket_jurisdiction_id"), "ticket", ["jurisdiction_id"], unique=False)
    op.create_index(
        "ix_ticket_jurisdiction_updated",
        "ticket",
        ["jurisdiction_id", "updated_at", "id"],
        unique=False,
    )
    op.create_geospatial_index(
        "ix_ticket_location",
        "ticket",
        ["location"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_ticket_open_service_location",
        "ticket",
        ["service_id", "location"],
        unique=False,
        postgresql_using="gist",
        postgresql_where=sa.text(
            "status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')"
        ),
    )
    op.create_index("ix_ticket_status_service", "ticket", ["status", "service_id"], unique=False)
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), server_default="citizen", nullable=False),
        sa.Column(
            "scopes",
            postgresql.ARRAY(sa.String(length=32)),
            server_default=sa.text("'{}'::varchar[]"),
            nullable=False,
        ),
        sa.Column("created_by_id", fastapi_users_db_sqlalchemy.generics.GUID(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "role IN ('citizen', 'crew', 'staff', 'admin')", name=op.f("ck_api_key_role_known")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["app_user.id"],
            name=op.f("fk_api_key_created_by_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_api_key_jurisdiction_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_key_prefix")),
    )
    op.create_index(
        op.f("ix_api_key_jurisdiction_id"), "api_key", ["jurisdiction_id"], unique=False
    )
    op.create_table(
        "contact",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("user_id", fastapi_users_db_sqlalchemy.generics.GUID(), nullable=True),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('email', 'phone', 'fcm', 'webpush', 'x', 'facebook', 'webhook')",
            name=op.f("ck_contact_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_contact_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact")),
        sa.UniqueConstraint("kind", "address", name=op.f("uq_contact_kind_address")),
    )
    op.create_index(op.f("ix_contact_user_id"), "contact", ["user_id"], unique=False)
    op.create_geospatial_table(
        "report",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "public_id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False
        ),
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column(
            "location",
            Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("location_accuracy_m", sa.Float(), nullable=True),
        sa.Column("location_source", sa.String(length=16), server_default="device", nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("reporter_id", fastapi_users_db_sqlalchemy.generics.GUID(), nullable=True),
        sa.Column("reporter_name", sa.String(length=200), nullable=True),
        sa.Column("notify", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("joined_existing", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("match_distance_m", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "channel IN ('app', 'web', 'open311', 'x', 'facebook', 'email', 'phone', 'staff', 'import')",
            name=op.f("ck_report_channel_known"),
        ),
        sa.CheckConstraint(
            "location_source IN ('device', 'exif', 'address', 'post', 'import')",
            name=op.f("ck_report_location_source_known"),
        ),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"],
            ["jurisdiction.id"],
            name=op.f("fk_report_jurisdiction_id_jurisdiction"),
        ),
        sa.ForeignKeyConstraint(
            ["reporter_id"],
            ["app_user.id"],
            name=op.f("fk_report_reporter_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_report_service_id_service")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_report_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report")),
        sa.UniqueConstraint("public_id", name=op.f("uq_report_public_id")),
    )
    op.create_geospatial_index(
        "ix_report_location",
        "report",
        ["location"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(op.f("ix_report_reporter_id"), "report", ["reporter_id"], unique=False)
    op.create_index(op.f("ix_report_ticket_id"), "report", ["ticket_id"], unique=False)
    op.create_index(
        "uq_report_channel_external_id",
        "report",
        ["jurisdiction_id", "channel", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_table(
        "idempotency_record",
        sa.Column("principal", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("report_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["report.id"],
            name=op.f("fk_idempotency_record_report_id_report"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("principal", "key", name=op.f("pk_idempotency_record")),
    )
    op.create_index(
        op.f("ix_idempotency_record_expires_at"), "idempotency_record", ["expires_at"], unique=False
    )
    op.create_table(
        "photo",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "public_id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False
        ),
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("report_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=16), server_default="report", nullable=False),
        sa.Column("storage_key", sa.String(length=255), nullable=False),
        sa.Column("thumbnail_key", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("public", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("kind IN ('report', 'completion')", name=op.f("ck_photo_kind_known")),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["report.id"],
            name=op.f("fk_photo_report_id_report"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_photo_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photo")),
        sa.UniqueConstraint("public_id", name=op.f("uq_photo_public_id")),
    )
    op.create_index(op.f("ix_photo_report_id"), "photo", ["report_id"], unique=False)
    op.create_index(op.f("ix_photo_ticket_id"), "photo", ["ticket_id"], unique=False)
    op.create_table(
        "report_contact",
        sa.Column("report_id", sa.BigInteger(), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_report_contact_contact_id_contact"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["report.id"],
            name=op.f("fk_report_contact_report_id_report"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", "contact_id", name=op.f("pk_report_contact")),
    )
    op.create_table(
        "subscription",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", fastapi_users_db_sqlalchemy.generics.GUID(), nullable=True),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "reason IN ('reporter', 'follower', 'supporter')",
            name=op.f("ck_subscription_reason_known"),
        ),
        sa.CheckConstraint(
            "user_id IS NOT NULL OR contact_id IS NOT NULL",
            name=op.f("ck_subscription_has_someone"),
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_subscription_contact_id_contact"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["ticket.id"],
            name=op.f("fk_subscription_ticket_id_ticket"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_subscription_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription")),
    )
    op.create_index(
        op.f("ix_subscription_contact_id"), "subscription", ["contact_id"], unique=False
    )
    op.create_index(op.f("ix_subscription_user_id"), "subscription", ["user_id"], unique=False)
    op.create_index(
        "uq_subscription_ticket_contact",
        "subscription",
        ["ticket_id", "contact_id"],
        unique=True,
        postgresql_where=sa.text("contact_id IS NOT NULL"),
    )
    op.create_index(
        "uq_subscription_ticket_user",
        "subscription",
        ["ticket_id", "user_id"],
        unique=True,
        postgresql_where=sa.text("user_id IS NOT NULL"),
    )
    op.create_table(
        "ticket_event",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("public", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("actor_user_id", fastapi_users_db_sqlalchemy.generics.GUID(), nullable=True),
        sa.Column("actor_label", sa.String(length=100), nullable=True),
        sa.Column("report_id", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('ticket_opened', 'report_attached', 'supporter_added', 'follower_added', 'status_changed', 'comment', 'assigned', 'priority_changed', 'merged', 'split', 'photo_added', 'inbound_message', 'notification_sent', 'notification_failed', 'sla_warning', 'sla_breached')",
            name=op.f("ck_ticket_event_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_user_id"],
            ["app_user.id"],
            name=op.f("fk_ticket_event_actor_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["report.id"],
            name=op.f("fk_ticket_event_report_id_report"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["ticket.id"],
            name=op.f("fk_ticket_event_ticket_id_ticket"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_event")),
    )
    op.create_index(
        "ix_ticket_event_ticket_id_id", "ticket_event", ["ticket_id", "id"], unique=False
    )
    op.execute(AREA_PARTS_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS area_refresh_parts ON area")
    op.execute("DROP FUNCTION IF EXISTS area_refresh_parts()")
    op.drop_index("ix_ticket_event_ticket_id_id", table_name="ticket_event")
    op.drop_table("ticket_event")
    op.drop_index(
        "uq_subscription_ticket_user",
        table_name="subscription",
        postgresql_where=sa.text("user_id IS NOT NULL"),
    )
    op.drop_index(
        "uq_subscription_ticket_contact",
        table_name="subscription",
        postgresql_where=sa.text("contact_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_subscription_user_id"), table_name="subscription")
    op.drop_index(op.f("ix_subscription_contact_id"), table_name="subscription")
    op.drop_table("subscription")
    op.drop_table("report_contact")
    op.drop_index(op.f("ix_photo_ticket_id"), table_name="photo")
    op.drop_index(op.f("ix_photo_report_id"), table_name="photo")
    op.drop_table("photo")
    op.drop_index(op.f("ix_idempotency_record_expires_at"), table_name="idempotency_record")
    op.drop_table("idempotency_record")
    op.drop_index(
        "uq_report_channel_external_id",
        table_name="report",
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_report_ticket_id"), table_name="report")
    op.drop_index(op.f("ix_report_reporter_id"), table_name="report")
    op.drop_geospatial_index(
        "ix_report_location", table_name="report", postgresql_using="gist", column_name="location"
    )
    op.drop_geospatial_table("report")
    op.drop_index(op.f("ix_contact_user_id"), table_name="contact")
    op.drop_table("contact")
    op.drop_index(op.f("ix_api_key_jurisdiction_id"), table_name="api_key")
    op.drop_table("api_key")
    op.drop_index("ix_ticket_status_service", table_name="ticket")
    op.drop_index(
        "ix_ticket_open_service_location",
        table_name="ticket",
        postgresql_using="gist",
        postgresql_where=sa.text(
            "status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')"
        ),
    )
    op.drop_geospatial_index(
        "ix_ticket_location", table_name="ticket", postgresql_using="gist", column_name="location"
    )
    op.drop_index("ix_ticket_jurisdiction_updated", table_name="ticket")
    op.drop_index(op.f("ix_ticket_jurisdiction_id"), table_name="ticket")
    op.drop_index(op.f("ix_ticket_crew_id"), table_name="ticket")
    op.drop_index(op.f("ix_ticket_area_id"), table_name="ticket")
    op.drop_geospatial_table("ticket")
    op.drop_index(op.f("ix_crew_area_area_id"), table_name="crew_area")
    op.drop_table("crew_area")
    op.drop_geospatial_index(
        "ix_area_part_geom", table_name="area_part", postgresql_using="gist", column_name="geom"
    )
    op.drop_index(op.f("ix_area_part_area_id"), table_name="area_part")
    op.drop_geospatial_table("area_part")
    op.drop_index(op.f("ix_app_user_jurisdiction_id"), table_name="app_user")
    op.drop_index(op.f("ix_app_user_email"), table_name="app_user")
    op.drop_index(op.f("ix_app_user_crew_id"), table_name="app_user")
    op.drop_table("app_user")
    op.drop_index(op.f("ix_service_jurisdiction_id"), table_name="service")
    op.drop_table("service")
    op.drop_index(op.f("ix_crew_jurisdiction_id"), table_name="crew")
    op.drop_table("crew")
    op.drop_index(op.f("ix_area_jurisdiction_id"), table_name="area")
    op.drop_geospatial_index(
        "ix_area_geom", table_name="area", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("area")
    op.drop_geospatial_index(
        "ix_jurisdiction_boundary",
        table_name="jurisdiction",
        postgresql_using="gist",
        column_name="boundary",
    )
    op.drop_geospatial_table("jurisdiction")
