"""The SQL of report intake. Hand-written, bound parameters only, few round trips.

The benchmark (``bench/``) replays these same statements through pgbench for the database
ceiling, so keep them module-level constants.
"""

from __future__ import annotations

from sqlalchemy import text

from app.core.idempotency import CLAIM_SQL
from app.core.models import check_in
from app.db import HotStatement
from app.tickets.models import OPEN_STATUSES

# Serialise reports of one service in one neighbourhood (see geo/grid.py). The same round trip
# claims the request's idempotency key when it has one (see app/core/idempotency.py): `claimed`
# is false when an earlier request with that key already committed. The claim runs first (an
# InitPlan, evaluated before any row of `locks`), so two requests with one key never hold a
# cell lock while waiting for the key: no deadlock.
LOCK_NEIGHBOURHOOD = HotStatement(
    """
    WITH claim AS ("""  # noqa: S608 (joins constant strings)
    + CLAIM_SQL
    + """),
    locks AS (
        SELECT count(pg_advisory_xact_lock(CAST(:service_id AS int4), k)) AS n
        FROM unnest(CAST(:keys AS int4[])) AS k
        WHERE (SELECT count(*) FROM claim) >= 0
    )
    SELECT CAST(:key AS varchar) IS NULL OR EXISTS (SELECT 1 FROM claim) AS claimed, locks.n
    FROM locks
    """
)

# The nearest open ticket of the service within the radius and time window.
# `location && box` uses the partial GiST index (service_id, location) WHERE status is open;
# the status list is spelled out so the planner can prove the index's predicate.
_MATCH = f"""
    SELECT t.id, t.reference, t.first_reported_at, t.last_reported_at,
           ST_Distance(t.location::geography,
                       ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS distance_m
    FROM ticket t
    WHERE t.service_id = CAST(:service_id AS int4)
      AND {check_in("t.status", OPEN_STATUSES)}
      AND t.location && ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326)
      AND ST_DWithin(t.location::geography,
                     ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :radius_m)
      AND t.first_reported_at <= CAST(:reported_at AS timestamptz) + CAST(:window AS interval)
      AND t.last_reported_at >= CAST(:reported_at AS timestamptz) - CAST(:window AS interval)
    ORDER BY distance_m, t.id
    LIMIT 1
"""  # noqa: S608 (formats code constants only, never input)

# The duplicate check alone (the benchmark's EXPLAIN and the tests read it).
FIND_DUPLICATE = text(_MATCH)

# One statement files the report: it looks for the matching open ticket and either attaches the
# report to it or opens a new ticket (reference K-YYYY-NNNNNN from its id), then writes the
# report, its timeline line and the signed-in reporter's subscription. Running after the lock
# statement, its snapshot sees every ticket committed by reports that held the lock before us.
FILE_REPORT = HotStatement(
    f"""
    WITH match AS ({_MATCH}),
    attached AS (
        UPDATE ticket SET
            report_count = ticket.report_count + 1,
            first_reported_at = least(ticket.first_reported_at, :reported_at),
            last_reported_at = greatest(ticket.last_reported_at, :reported_at),
            updated_at = now()
        FROM match WHERE ticket.id = match.id
        RETURNING ticket.*
    ),
    new_id AS (
        SELECT nextval(pg_get_serial_sequence('ticket', 'id')) AS id
        WHERE NOT EXISTS (SELECT 1 FROM match)
    ),
    opened AS (
        INSERT INTO ticket (
            id, reference, jurisdiction_id, service_id, area_id, location, address,
            description, status, report_count, first_reported_at, last_reported_at,
            acknowledge_due_at, resolve_due_at, created_at, updated_at)
        SELECT new_id.id,
               :prefix || '-' || to_char(CAST(:reported_at AS timestamptz) AT TIME ZONE 'UTC',
                                         'YYYY')
                   || '-' || lpad(new_id.id::text, greatest(6, length(new_id.id::text)), '0'),
               :jurisdiction_id, :service_id,
               (SELECT a.id FROM area_part p JOIN area a ON a.id = p.area_id
                WHERE a.jurisdiction_id = :jurisdiction_id
                  AND ST_Intersects(p.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
                ORDER BY (a.kind = 'district') DESC, a.id LIMIT 1),
               ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :address, :description, 'open', 1,
               :reported_at, :reported_at, :acknowledge_due_at, :resolve_due_at, now(), now()
        FROM new_id
        RETURNING *
    ),
    ticket AS (SELECT * FROM attached UNION ALL SELECT * FROM opened),
    decision AS (
        SELECT match.id IS NOT NULL AS joined,
               round(CAST(match.distance_m AS numeric), 1) AS distance_m,
               round(CAST(extract(epoch FROM CAST(:reported_at AS timestamptz)
                                              - match.last_reported_at) AS numeric), 1)
                   AS age_seconds
        FROM (SELECT 1) AS one LEFT JOIN match ON true
    ),
    report AS (
        INSERT INTO report (
            ticket_id, jurisdiction_id, service_id, channel, location, location_accuracy_m,
            location_source, address, description, attributes, reporter_id, reporter_name,
            notify, locale, external_id, reported_at, joined_existing, match_distance_m,
            received_at)
        SELECT ticket.id, :jurisdiction_id, :service_id, :channel,
               ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :accuracy_m, :location_source,
               :address, :description, CAST(:attributes AS jsonb), :reporter_id, :reporter_name,
               :notify, :locale, :external_id, :reported_at, decision.joined,
               decision.distance_m, statement_timestamp()
        FROM ticket, decision
        RETURNING id, public_id, received_at
    ),
    event AS (
        INSERT INTO ticket_event (ticket_id, kind, public, actor_user_id, actor_label, report_id,
                                  data, created_at)
        SELECT ticket.id,
               CASE WHEN decision.joined THEN 'report_attached' ELSE 'ticket_opened' END,
               true, :reporter_id, :actor_label, report.id,
               jsonb_build_object('channel', CAST(:channel AS text),
                                  'photos', CAST(:photos AS int))
                   || CASE WHEN decision.joined
                           THEN jsonb_build_object('distance_m', decision.distance_m,
                                                   'age_seconds', decision.age_seconds)
                           ELSE '{{}}'::jsonb END,
               report.received_at
        FROM ticket, report, decision
    ),
    reporter AS (
        INSERT INTO subscription (ticket_id, user_id, reason)
        SELECT ticket.id, :reporter_id, 'reporter' FROM ticket
        WHERE CAST(:reporter_id AS uuid) IS NOT NULL AND :notify
        ON CONFLICT DO NOTHING
    )
    SELECT ticket.id AS ticket_id, ticket.reference, ticket.status, ticket.description,
           ST_X(ticket.location) AS lon, ST_Y(ticket.location) AS lat,
           ticket.report_count, ticket.supporter_count,
           ticket.first_reported_at, ticket.last_reported_at, ticket.acknowledge_due_at,
           ticket.resolve_due_at, area.code AS area_code, area.name AS area_name,
           report.id AS report_id, report.public_id, report.received_at,
           decision.joined, CAST(decision.distance_m AS float8) AS distance_m,
           CAST(decision.age_seconds AS float8) AS age_seconds
    FROM ticket CROSS JOIN report CROSS JOIN decision LEFT JOIN area ON area.id = ticket.area_id
    """  # noqa: S608 (formats code constants only, never input)
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
