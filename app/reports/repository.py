"""The SQL of report intake. Hand-written, bound parameters only, few round trips.

The benchmark (``bench/``) replays these same statements through pgbench for the database
ceiling, so keep them module-level constants.
"""

from __future__ import annotations

from sqlalchemy import text

from app.core.idempotency import CLAIM_SQL
from app.core.models import check_in
from app.db import HotStatement
from app.jurisdictions.sql import area_at_sql
from app.tickets.models import DONE_STATUSES, OPEN_STATUSES
from app.tickets.sla import expected_by_sql, sla_state_sql
from app.tickets.sql import reference_sql

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

# The ticket a new report joins: the nearest open ticket of the service within the radius and
# time window; failing that, the nearest one fixed (or closed) within the service's reopen
# window before the report, which the report reopens ("it is back"). `location && box` uses
# the partial GiST indexes (service_id, location) on open, and on fixed/closed, tickets; the
# status lists are spelled out so the planner can prove their predicates. The second branch
# runs only when the first finds nothing (Append under LIMIT stops at the first row).
_NEAR = """
    SELECT t.id, t.reference, t.status, t.first_reported_at, t.last_reported_at, t.fixed_at,
           ST_Distance(t.location::geography,
                       ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS distance_m
    FROM ticket t
    WHERE t.service_id = CAST(:service_id AS int4)
      AND t.location && ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326)
      AND ST_DWithin(t.location::geography,
                     ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :radius_m)
"""
_MATCH = f"""
    SELECT * FROM (
        ({_NEAR}
          AND {check_in("t.status", OPEN_STATUSES)}
          AND t.first_reported_at <= CAST(:reported_at AS timestamptz) + CAST(:window AS interval)
          AND t.last_reported_at >= CAST(:reported_at AS timestamptz) - CAST(:window AS interval)
         ORDER BY distance_m, t.id LIMIT 1)
        UNION ALL
        ({_NEAR}
          AND {check_in("t.status", DONE_STATUSES)}
          AND t.fixed_at <= CAST(:reported_at AS timestamptz)
          AND t.fixed_at >= CAST(:reported_at AS timestamptz) - CAST(:reopen_within AS interval)
         ORDER BY distance_m, t.id LIMIT 1)
    ) AS candidate
    LIMIT 1
"""  # noqa: S608 (formats code constants only, never input)

# The duplicate check alone (the benchmark's EXPLAIN and the tests read it).
FIND_DUPLICATE = text(_MATCH)

# The `same_address` rule (service.duplicate_strategy): an open ticket of the service on the
# same street (street key, geo/address.py) with the same address key, or within
# :street_within_m of the report when that is above 0; failing that, one fixed or closed
# within the reopen window, as above. The same address is preferred to a nearer neighbour.
# An address key names one place only nearby: beyond :address_within_m (geocoders disagree by
# a few hundred metres, not kilometres) it is another place with the same name. The partial
# btree indexes (service_id, street_key) on open, and on fixed/closed, tickets answer it.
_ON_STREET = """
    SELECT t.id, t.reference, t.status, t.first_reported_at, t.last_reported_at, t.fixed_at,
           ST_Distance(t.location::geography,
                       ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS distance_m,
           t.address_key = CAST(:address_key AS text) AS same_address
    FROM ticket t
    WHERE t.service_id = CAST(:service_id AS int4)
      AND t.street_key = CAST(:street_key AS text)
      AND CASE WHEN t.address_key = CAST(:address_key AS text)
               THEN ST_DWithin(t.location::geography,
                               ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography,
                               :address_within_m)
               ELSE CAST(:street_within_m AS float8) > 0
                    AND ST_DWithin(t.location::geography,
                                   ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography,
                                   :street_within_m)
          END
"""
_MATCH_SAME_ADDRESS = f"""
    SELECT id, reference, status, first_reported_at, last_reported_at, fixed_at, distance_m
    FROM (
        ({_ON_STREET}
          AND {check_in("t.status", OPEN_STATUSES)}
          AND t.street_key IS NOT NULL
          AND t.first_reported_at <= CAST(:reported_at AS timestamptz) + CAST(:window AS interval)
          AND t.last_reported_at >= CAST(:reported_at AS timestamptz) - CAST(:window AS interval)
         ORDER BY same_address DESC, distance_m, t.id LIMIT 1)
        UNION ALL
        ({_ON_STREET}
          AND {check_in("t.status", DONE_STATUSES)}
          AND t.street_key IS NOT NULL
          AND t.fixed_at <= CAST(:reported_at AS timestamptz)
          AND t.fixed_at >= CAST(:reported_at AS timestamptz) - CAST(:reopen_within AS interval)
         ORDER BY same_address DESC, distance_m, t.id LIMIT 1)
    ) AS candidate
    LIMIT 1
"""  # noqa: S608 (formats code constants only, never input)

# The `never` rule: no ticket matches, every report opens its own.
_MATCH_NEVER = """
    SELECT t.id, t.reference, t.status, t.first_reported_at, t.last_reported_at, t.fixed_at,
           CAST(NULL AS float8) AS distance_m
    FROM ticket t WHERE false
"""

# The `same_address` duplicate check alone (the tests read its plan).
FIND_SAME_ADDRESS = text(_MATCH_SAME_ADDRESS)


# One statement files the report: it looks for the matching open ticket and either attaches the
# report to it or opens a new ticket (reference K-YYYY-NNNNNN from its id), then writes the
# report, its timeline line and the signed-in reporter's subscription. Running after the lock
# statement, its snapshot sees every ticket committed by reports that held the lock before us.
# One statement per duplicate rule (`match` is the rule), so each keeps its own plan.
# Its times are the database's now, or `:received_at` for a backfill (the demo seed): that
# dates the report's receipt, its timeline lines and a ticket it opens in the past.
def _file_report(match: str) -> HotStatement:
    return HotStatement(
        f"""
    WITH match AS ({match}),
    reopening AS (SELECT {check_in("match.status", DONE_STATUSES)} AS yes FROM match),
    attached AS (
        UPDATE ticket SET
            report_count = ticket.report_count + 1,
            first_reported_at = least(ticket.first_reported_at, :reported_at),
            last_reported_at = greatest(ticket.last_reported_at, :reported_at),
            status = CASE WHEN reopening.yes THEN 'reopened' ELSE ticket.status END,
            reopened_count = ticket.reopened_count + CAST(reopening.yes AS int),
            fixed_at = CASE WHEN reopening.yes THEN NULL ELSE ticket.fixed_at END,
            closed_at = CASE WHEN reopening.yes THEN NULL ELSE ticket.closed_at END,
            resolve_due_at = CASE WHEN reopening.yes THEN :resolve_due_at
                                  ELSE ticket.resolve_due_at END,
            resolve_warn_at = CASE WHEN reopening.yes THEN :resolve_warn_at
                                   ELSE ticket.resolve_warn_at END,
            sla_flags = CASE WHEN reopening.yes THEN ticket.sla_flags & ~12
                             ELSE ticket.sla_flags END,
            sla_next_at = CASE WHEN reopening.yes THEN CAST(:resolve_warn_at AS timestamptz)
                               ELSE ticket.sla_next_at END,
            work_status = CASE WHEN reopening.yes AND ticket.crew_id IS NOT NULL
                               THEN 'assigned' ELSE ticket.work_status END,
            updated_at = coalesce(CAST(:received_at AS timestamptz), now())
        FROM match, reopening WHERE ticket.id = match.id
        RETURNING ticket.*
    ),
    new_id AS (
        SELECT nextval(pg_get_serial_sequence('ticket', 'id')) AS id
        WHERE NOT EXISTS (SELECT 1 FROM match)
    ),
    opened AS (
        INSERT INTO ticket (
            id, reference, jurisdiction_id, service_id, area_id, crew_id, work_status,
            assigned_at, location, address, address_key, street_key, description, status,
            priority, report_count,
            first_reported_at, last_reported_at, acknowledge_due_at, acknowledge_warn_at,
            resolve_due_at, resolve_warn_at, sla_next_at, created_at, updated_at)
        SELECT new_id.id, {reference_sql("new_id.id", ":reported_at")},
               :jurisdiction_id, :service_id, place.area_id, rule.crew_id,
               CASE WHEN rule.crew_id IS NOT NULL THEN 'assigned' END,
               CASE WHEN rule.crew_id IS NOT NULL
                    THEN coalesce(CAST(:received_at AS timestamptz), now()) END,
               ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :address, :address_key,
               :street_key, :description, 'open',
               :priority, 1, :reported_at, :reported_at, :acknowledge_due_at,
               :acknowledge_warn_at, :resolve_due_at, :resolve_warn_at,
               least(CAST(:acknowledge_warn_at AS timestamptz),
                     CAST(:resolve_warn_at AS timestamptz)),
               coalesce(CAST(:received_at AS timestamptz), now()),
               coalesce(CAST(:received_at AS timestamptz), now())
        FROM new_id
        CROSS JOIN LATERAL (
            SELECT {area_at_sql("ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)", ":jurisdiction_id")}
                AS area_id) AS place
        -- Automatic assignment: the most specific rule for this area and service.
        LEFT JOIN LATERAL (
            SELECT r.crew_id FROM assignment_rule r JOIN crew c ON c.id = r.crew_id AND c.active
            WHERE r.jurisdiction_id = :jurisdiction_id
              AND (r.area_id = place.area_id OR r.area_id IS NULL)
              AND (r.service_id = :service_id OR r.service_id IS NULL)
            ORDER BY r.area_id IS NULL, r.service_id IS NULL LIMIT 1) AS rule ON true
        RETURNING *
    ),
    ticket AS (SELECT * FROM attached UNION ALL SELECT * FROM opened),
    decision AS (
        SELECT match.id IS NOT NULL AS joined,
               coalesce({check_in("match.status", DONE_STATUSES)}, false) AS reopened,
               match.status AS previous_status,
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
               decision.distance_m,
               coalesce(CAST(:received_at AS timestamptz), statement_timestamp())
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
    reopened AS (
        INSERT INTO ticket_event (ticket_id, kind, public, actor_user_id, actor_label, report_id,
                                  note, data, created_at)
        SELECT ticket.id, 'status_changed', true, :reporter_id, :actor_label, report.id,
               'Reported again after the fix: reopened',
               jsonb_build_object('from', decision.previous_status, 'to', 'reopened',
                                  'channel', CAST(:channel AS text)),
               report.received_at
        FROM ticket, report, decision
        WHERE decision.reopened
    ),
    auto_assigned AS (
        INSERT INTO ticket_event (ticket_id, kind, public, actor_label, report_id, data,
                                  created_at)
        SELECT opened.id, 'assigned', false, 'system', report.id,
               jsonb_build_object('crew_id', opened.crew_id, 'rule', true), report.received_at
        FROM opened, report
        WHERE opened.crew_id IS NOT NULL
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
           ticket.priority, {sla_state_sql("ticket")} AS sla_state,
           {expected_by_sql("ticket")} AS expected_by, CAST(NULL AS text) AS merged_into,
           report.id AS report_id, report.public_id, report.received_at,
           decision.joined, decision.reopened, CAST(decision.distance_m AS float8) AS distance_m,
           CAST(decision.age_seconds AS float8) AS age_seconds
    FROM ticket CROSS JOIN report CROSS JOIN decision LEFT JOIN area ON area.id = ticket.area_id
    """  # noqa: S608 (formats code constants only, never input)
    )


# `radius`, the default rule: the benchmarked hot path (bench/intake.py replays it).
FILE_REPORT = _file_report(_MATCH)
FILE_REPORT_SAME_ADDRESS = _file_report(_MATCH_SAME_ADDRESS)
FILE_REPORT_NEVER = _file_report(_MATCH_NEVER)

LINK_CONTACT = HotStatement(
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

# Accepted, not yet processed: app.media.service makes the stored files after the commit.
# The ticket a report belongs to now (a merged ticket's report moved with it).
REPORT_TICKET = text("SELECT id AS report_id, ticket_id FROM report WHERE id = :id")

INSERT_PHOTO = text(
    """
    INSERT INTO photo (ticket_id, report_id, kind, status, storage_key, thumbnail_key,
                       original_key, content_type, width, height, taken_at)
    VALUES (:ticket_id, :report_id, :kind, 'pending', :storage_key, :thumbnail_key,
            :original_key, :content_type, :width, :height, :taken_at)
    RETURNING public_id
    """
)
