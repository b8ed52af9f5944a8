"""The SQL of report intake. Hand-written, bound parameters only, one round trip per step.

The benchmark (``bench/``) replays these same statements through pgbench for the database
ceiling, so keep them module-level constants.
"""

from __future__ import annotations

from sqlalchemy import text

from app.core.models import check_in
from app.tickets.models import OPEN_STATUSES

# Serialise reports of one service in one neighbourhood (see geo/grid.py).
LOCK_NEIGHBOURHOOD = text(
    "SELECT pg_advisory_xact_lock(CAST(:service_id AS int4), k)"
    " FROM unnest(CAST(:keys AS int4[])) AS k"
)

# The nearest open ticket of the service within the radius and time window.
# `location && box` uses the partial GiST index (service_id, location) WHERE status is open;
# the status list is spelled out so the planner can prove the index's predicate.
# (The f-string formats code constants only, never input.)
FIND_DUPLICATE = text(
    f"""
    SELECT t.id, t.reference, t.first_reported_at, t.last_reported_at,
           ST_Distance(t.location::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography)
               AS distance_m
    FROM ticket t
    WHERE t.service_id = :service_id
      AND {check_in("t.status", OPEN_STATUSES)}
      AND t.location && ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326)
      AND ST_DWithin(t.location::geography,
                     ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :radius_m)
      AND t.first_reported_at <= CAST(:reported_at AS timestamptz) + CAST(:window AS interval)
      AND t.last_reported_at >= CAST(:reported_at AS timestamptz) - CAST(:window AS interval)
    ORDER BY distance_m, t.id
    LIMIT 1
    """  # noqa: S608
)

_REPORT_AND_EVENT = """
    report AS (
        INSERT INTO report (
            ticket_id, jurisdiction_id, service_id, channel, location, location_accuracy_m,
            location_source, address, description, attributes, reporter_id, reporter_name,
            notify, locale, external_id, reported_at, joined_existing, match_distance_m,
            received_at)
        SELECT ticket.id, :jurisdiction_id, :service_id, :channel,
               ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :accuracy_m, :location_source,
               :address, :description, CAST(:attributes AS jsonb), :reporter_id, :reporter_name,
               :notify, :locale, :external_id, :reported_at, :joined, :distance_m,
               statement_timestamp()
        FROM ticket
        RETURNING id, public_id, received_at
    ),
    event AS (
        INSERT INTO ticket_event (ticket_id, kind, public, actor_user_id, actor_label, report_id,
                                  data, created_at)
        SELECT ticket.id, :event_kind, true, :reporter_id, :actor_label, report.id,
               CAST(:event_data AS jsonb), report.received_at
        FROM ticket, report
    ),
    reporter AS (
        INSERT INTO subscription (ticket_id, user_id, reason)
        SELECT ticket.id, :reporter_id, 'reporter' FROM ticket
        WHERE CAST(:reporter_id AS uuid) IS NOT NULL AND :notify
        ON CONFLICT DO NOTHING
    )
    SELECT ticket.id AS ticket_id, ticket.reference, ticket.status, ticket.description AS
           ticket_description, ST_X(ticket.location) AS ticket_lon,
           ST_Y(ticket.location) AS ticket_lat, ticket.report_count, ticket.supporter_count,
           ticket.first_reported_at, ticket.last_reported_at, ticket.acknowledge_due_at,
           ticket.resolve_due_at, area.code AS area_code, area.name AS area_name,
           report.id AS report_id, report.public_id, report.received_at
    FROM ticket CROSS JOIN report LEFT JOIN area ON area.id = ticket.area_id
"""

# A new ticket (reference K-YYYY-NNNNNN from its id), its first report and its timeline line.
OPEN_TICKET = text(
    """
    WITH new_id AS (SELECT nextval(pg_get_serial_sequence('ticket', 'id')) AS id),
    found_area AS (
        SELECT a.id FROM area_part p JOIN area a ON a.id = p.area_id
        WHERE a.jurisdiction_id = :jurisdiction_id
          AND ST_Intersects(p.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
        ORDER BY (a.kind = 'district') DESC, a.id
        LIMIT 1
    ),
    ticket AS (
        INSERT INTO ticket (
            id, reference, jurisdiction_id, service_id, area_id, location, address,
            description, status, report_count, first_reported_at, last_reported_at,
            acknowledge_due_at, resolve_due_at, created_at, updated_at)
        SELECT new_id.id,
               :prefix || '-' || to_char(CAST(:reported_at AS timestamptz) AT TIME ZONE 'UTC',
                                         'YYYY')
                   || '-' || lpad(new_id.id::text, greatest(6, length(new_id.id::text)), '0'),
               :jurisdiction_id, :service_id, (SELECT id FROM found_area),
               ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :address, :description, 'open', 1,
               :reported_at, :reported_at, :acknowledge_due_at, :resolve_due_at, now(), now()
        FROM new_id
        RETURNING *
    ),
"""  # noqa: S608 (two constant strings)
    + _REPORT_AND_EVENT
)

# The report joins an existing ticket: counts and first/last times move, location stays.
ATTACH_TO_TICKET = text(
    """
    WITH ticket AS (
        UPDATE ticket SET
            report_count = report_count + 1,
            first_reported_at = least(first_reported_at, :reported_at),
            last_reported_at = greatest(last_reported_at, :reported_at),
            updated_at = now()
        WHERE id = :ticket_id
        RETURNING *
    ),
"""
    + _REPORT_AND_EVENT
)

UPSERT_CONTACT = text(
    """
    INSERT INTO contact (kind, address, display_name, user_id)
    VALUES (:kind, :address, :display_name, :user_id)
    ON CONFLICT (kind, address) DO UPDATE
        SET display_name = coalesce(EXCLUDED.display_name, contact.display_name),
            user_id = coalesce(contact.user_id, EXCLUDED.user_id)
    RETURNING id
    """
)

LINK_CONTACT = text(
    """
    WITH link AS (
        INSERT INTO report_contact (report_id, contact_id) VALUES (:report_id, :contact_id)
        ON CONFLICT DO NOTHING
    )
    INSERT INTO subscription (ticket_id, contact_id, reason)
    SELECT :ticket_id, :contact_id, 'reporter' WHERE :subscribe
    ON CONFLICT DO NOTHING
    """
)

INSERT_PHOTO = text(
    """
    INSERT INTO photo (ticket_id, report_id, kind, storage_key, thumbnail_key, content_type,
                       width, height, bytes, sha256, taken_at)
    VALUES (:ticket_id, :report_id, 'report', :storage_key, :thumbnail_key, :content_type,
            :width, :height, :bytes, :sha256, :taken_at)
    RETURNING public_id
    """
)
