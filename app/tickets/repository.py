"""The SQL of staff and crew actions on tickets. Bound parameters only."""

from __future__ import annotations

from sqlalchemy import text

from app.jurisdictions.sql import area_at_sql
from app.tickets.priority import priority_sql
from app.tickets.sql import reference_sql

# A new ticket for an existing report (split): same place, service and time as the report.
OPEN_TICKET_FOR_REPORT = text(
    f"""
    WITH r AS (SELECT * FROM report WHERE id = :report_id),
    new_id AS (SELECT nextval(pg_get_serial_sequence('ticket', 'id')) AS id)
    INSERT INTO ticket (id, reference, jurisdiction_id, service_id, area_id, location, address,
                        description, status, priority, report_count, first_reported_at,
                        last_reported_at, created_at, updated_at)
    SELECT new_id.id, {reference_sql("new_id.id", "r.reported_at")}, r.jurisdiction_id,
           r.service_id, {area_at_sql("r.location", "r.jurisdiction_id")}, r.location,
           r.address, r.description, 'open',
           (SELECT {priority_sql("s.hazard_level * 10")} FROM service s WHERE s.id = r.service_id),
           0, r.reported_at, r.reported_at, :now, :now
    FROM r, new_id
    RETURNING id, reference
    """  # noqa: S608 (formats code constants only, never input)
)

# Move one report (its photos, and its reporters' subscriptions) to another ticket. Reporters
# stop following the old ticket unless another of their reports stays on it.
MOVE_REPORT = text(
    """
    WITH moved AS (
        UPDATE report SET ticket_id = :to WHERE id = :report_id RETURNING id, reporter_id
    ),
    contacts AS (SELECT contact_id FROM report_contact WHERE report_id = :report_id),
    photos AS (UPDATE photo SET ticket_id = :to WHERE report_id = :report_id RETURNING id),
    theirs AS (
        SELECT s.id, s.user_id, s.contact_id FROM subscription s
        WHERE s.ticket_id = :from AND s.reason = 'reporter' AND s.ended_at IS NULL
          AND (s.user_id = (SELECT reporter_id FROM moved)
               OR s.contact_id IN (SELECT contact_id FROM contacts))
    ),
    subscribed AS (
        INSERT INTO subscription (ticket_id, user_id, contact_id, reason)
        SELECT :to, user_id, contact_id, 'reporter' FROM theirs
        ON CONFLICT DO NOTHING
        RETURNING id
    ),
    ended AS (
        UPDATE subscription s SET ended_at = :now
        FROM theirs
        WHERE s.id = theirs.id
          AND NOT EXISTS (
              SELECT 1 FROM report r2 LEFT JOIN report_contact rc ON rc.report_id = r2.id
              WHERE r2.ticket_id = :from AND r2.id <> :report_id
                AND (r2.reporter_id = theirs.user_id OR rc.contact_id = theirs.contact_id))
        RETURNING s.id
    ),
    grow AS (UPDATE ticket SET report_count = report_count + 1 WHERE id = :to),
    shrink AS (
        UPDATE ticket SET
            report_count = report_count - 1,
            first_reported_at = (SELECT min(reported_at) FROM report
                                 WHERE ticket_id = :from AND id <> :report_id),
            last_reported_at = (SELECT max(reported_at) FROM report
                                WHERE ticket_id = :from AND id <> :report_id),
            updated_at = :now
        WHERE id = :from
    )
    SELECT (SELECT count(*) FROM photos) AS photos,
           (SELECT count(*) FROM subscribed) AS subscribers,
           (SELECT count(*) FROM ended) AS unsubscribed
    """
)

# One ticket with what the workflow rules need, locked for the rest of the transaction.
LOCK_TICKET = text(
    """
    SELECT t.*, s.code AS service_code, s.names AS service_names,
           s.acknowledge_within, s.resolve_within, s.business_hours AS counts_business_hours,
           s.reopen_within, s.hazard_level, s.completion_photo_required,
           j.name AS jurisdiction_name, j.timezone, j.business_hours AS working_hours,
           j.holidays, j.languages, j.reference_prefix, a.code AS area_code, a.name AS area_name,
           c.name AS crew_name
    FROM ticket t
    JOIN service s ON s.id = t.service_id
    JOIN jurisdiction j ON j.id = t.jurisdiction_id
    LEFT JOIN area a ON a.id = t.area_id
    LEFT JOIN crew c ON c.id = t.crew_id
    WHERE t.id = :id
    FOR UPDATE OF t
    """
)

TICKET_ID_BY_REFERENCE = text("SELECT id FROM ticket WHERE reference = :ref")

# Is this person a reporter of the ticket (a report of theirs, or a reporter subscription)?
IS_REPORTER = text(
    """
    SELECT EXISTS (SELECT 1 FROM report WHERE ticket_id = :t AND reporter_id = :user_id)
        OR EXISTS (SELECT 1 FROM subscription WHERE ticket_id = :t AND user_id = :user_id
                   AND reason = 'reporter' AND ended_at IS NULL)
    """
)
