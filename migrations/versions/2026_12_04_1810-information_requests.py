"""needs more information: staff ask a ticket's reporters a question (a public
``information_requested`` line, which the event stream sends to the reporters and supporters),
and a reporter's answer (an internal ``information_given`` line) returns the ticket to staff.
``ticket.information_requested_at`` / ``information_answered_at`` say where the ticket waits.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 18:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_EVENT_KINDS = (
    "'ticket_opened', 'report_attached', 'supporter_added', 'follower_added', 'status_changed',"
    " 'comment', 'assigned', 'priority_changed', 'merged', 'split', 'photo_added',"
    " 'inbound_message', 'notification_sent', 'notification_failed', 'sla_warning',"
    " 'sla_breached', 'work_progress'"
)
NEW_EVENT_KINDS = OLD_EVENT_KINDS + ", 'information_requested', 'information_given'"

EVENT_STREAM = """
CREATE OR REPLACE FUNCTION kerbside_ticket_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queued int := 0;
    place geometry;
BEGIN
    IF NOT NEW.public THEN
        RETURN NULL;
    END IF;
    IF NEW.kind = 'ticket_opened'
       OR (NEW.kind = 'status_changed' AND NEW.data->>'to' = 'fixed') THEN
        SELECT location INTO place FROM ticket WHERE id = NEW.ticket_id;
    END IF;
    WITH recipients AS (
        -- The acknowledgement: the new report's own reporter.
        SELECT c.id AS contact_id, 'reporter' AS why
        FROM report_contact rc JOIN contact c ON c.id = rc.contact_id
        JOIN subscription s ON s.ticket_id = NEW.ticket_id AND s.contact_id = c.id
                           AND s.ended_at IS NULL
        WHERE NEW.kind IN ('ticket_opened', 'report_attached') AND rc.report_id = NEW.report_id
        UNION
        SELECT c.id, 'reporter'
        FROM report r JOIN contact c ON c.user_id = r.reporter_id
        JOIN subscription s ON s.ticket_id = NEW.ticket_id AND s.user_id = r.reporter_id
                           AND s.ended_at IS NULL
        WHERE NEW.kind IN ('ticket_opened', 'report_attached') AND r.id = NEW.report_id
        UNION
        -- Progress: every live subscriber.
        SELECT c.id, 'subscriber'
        FROM subscription s
        JOIN contact c ON c.id = s.contact_id OR (s.user_id IS NOT NULL AND c.user_id = s.user_id)
        WHERE NEW.kind IN ('status_changed', 'comment') AND s.ticket_id = NEW.ticket_id
          AND s.ended_at IS NULL
        UNION
        -- A question from staff: the people who reported or supported it (not followers),
        -- who are the ones asked to answer.
        SELECT c.id, 'reporter'
        FROM subscription s
        JOIN contact c ON c.id = s.contact_id OR (s.user_id IS NOT NULL AND c.user_id = s.user_id)
        WHERE NEW.kind = 'information_requested' AND s.ticket_id = NEW.ticket_id
          AND s.ended_at IS NULL AND s.reason IN ('reporter', 'supporter')
        UNION
        -- Merged away: the subscribers this merge moved to the surviving ticket.
        SELECT c.id, 'subscriber'
        FROM subscription s
        JOIN contact c ON c.id = s.contact_id OR (s.user_id IS NOT NULL AND c.user_id = s.user_id)
        WHERE NEW.kind = 'merged' AND NEW.data ? 'into' AND s.ticket_id = NEW.ticket_id
          AND s.ended_at = NEW.created_at
        UNION
        -- A place followed at once: new tickets, or fixes, there.
        SELECT a.contact_id, 'area'
        FROM area_subscription a
        WHERE place IS NOT NULL AND a.ended_at IS NULL AND a.mode = 'immediate'
          AND ST_Covers(a.geom, place)
          AND (CASE WHEN NEW.kind = 'ticket_opened' THEN 'new_tickets' ELSE 'fixes' END)
              = ANY (a.topics)
    ),
    reachable AS (
        SELECT DISTINCT ON (r.contact_id) r.contact_id, c.kind, r.why
        FROM recipients r JOIN contact c ON c.id = r.contact_id
        WHERE c.verified_at IS NOT NULL AND c.disabled_at IS NULL
          AND CASE WHEN r.why = 'area' THEN EXISTS (
                   SELECT 1 FROM contact_consent k
                   WHERE k.contact_id = c.id AND k.purpose = 'area_updates'
                     AND k.withdrawn_at IS NULL)
              ELSE (c.user_id IS NOT NULL AND EXISTS (
                   SELECT 1 FROM subscription s
                   WHERE s.ticket_id = NEW.ticket_id AND s.user_id = c.user_id)
               OR EXISTS (
                   SELECT 1 FROM contact_consent k
                   WHERE k.contact_id = c.id AND k.purpose = 'ticket_updates'
                     AND k.ticket_id = NEW.ticket_id AND k.withdrawn_at IS NULL)) END
        ORDER BY r.contact_id, r.why = 'area'
    ),
    queued_rows AS (
        INSERT INTO notification (contact_id, ticket_id, event_id, event_kind, channel, reason)
        SELECT contact_id, NEW.ticket_id, NEW.id, NEW.kind, kind, why FROM reachable
        ON CONFLICT (contact_id, event_id) DO NOTHING
        RETURNING id, contact_id
    ),
    -- One delivery job for the whole change, however many rows it queued: the job claims
    -- the due rows in batches (app/notify/service.py).
    jobs AS (
        SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(
            'notify', 'deliver_notifications', 0, NULL, NULL, '{}'::jsonb, NULL
        )::procrastinate_job_to_defer_v1]) AS ids
        FROM (SELECT 1 FROM queued_rows LIMIT 1) AS any_row
    )
    SELECT count(*) INTO queued FROM jobs;
    IF queued > 0 OR EXISTS (
        SELECT 1 FROM subscription s WHERE s.ticket_id = NEW.ticket_id AND s.ended_at IS NULL
    ) THEN
        PERFORM pg_notify('kerbside_ticket_event',
                          NEW.ticket_id::text || ':' || NEW.id::text || ':' || NEW.kind);
    END IF;
    RETURN NULL;
END
$$;
"""

# As revision 0020 left it.
PREVIOUS_EVENT_STREAM = """
CREATE OR REPLACE FUNCTION kerbside_ticket_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queued int := 0;
    place geometry;
BEGIN
    IF NOT NEW.public THEN
        RETURN NULL;
    END IF;
    IF NEW.kind = 'ticket_opened'
       OR (NEW.kind = 'status_changed' AND NEW.data->>'to' = 'fixed') THEN
        SELECT location INTO place FROM ticket WHERE id = NEW.ticket_id;
    END IF;
    WITH recipients AS (
        -- The acknowledgement: the new report's own reporter.
        SELECT c.id AS contact_id, 'reporter' AS why
        FROM report_contact rc JOIN contact c ON c.id = rc.contact_id
        JOIN subscription s ON s.ticket_id = NEW.ticket_id AND s.contact_id = c.id
                           AND s.ended_at IS NULL
        WHERE NEW.kind IN ('ticket_opened', 'report_attached') AND rc.report_id = NEW.report_id
        UNION
        SELECT c.id, 'reporter'
        FROM report r JOIN contact c ON c.user_id = r.reporter_id
        JOIN subscription s ON s.ticket_id = NEW.ticket_id AND s.user_id = r.reporter_id
                           AND s.ended_at IS NULL
        WHERE NEW.kind IN ('ticket_opened', 'report_attached') AND r.id = NEW.report_id
        UNION
        -- Progress: every live subscriber.
        SELECT c.id, 'subscriber'
        FROM subscription s
        JOIN contact c ON c.id = s.contact_id OR (s.user_id IS NOT NULL AND c.user_id = s.user_id)
        WHERE NEW.kind IN ('status_changed', 'comment') AND s.ticket_id = NEW.ticket_id
          AND s.ended_at IS NULL
        UNION
        -- Merged away: the subscribers this merge moved to the surviving ticket.
        SELECT c.id, 'subscriber'
        FROM subscription s
        JOIN contact c ON c.id = s.contact_id OR (s.user_id IS NOT NULL AND c.user_id = s.user_id)
        WHERE NEW.kind = 'merged' AND NEW.data ? 'into' AND s.ticket_id = NEW.ticket_id
          AND s.ended_at = NEW.created_at
        UNION
        -- A place followed at once: new tickets, or fixes, there.
        SELECT a.contact_id, 'area'
        FROM area_subscription a
        WHERE place IS NOT NULL AND a.ended_at IS NULL AND a.mode = 'immediate'
          AND ST_Covers(a.geom, place)
          AND (CASE WHEN NEW.kind = 'ticket_opened' THEN 'new_tickets' ELSE 'fixes' END)
              = ANY (a.topics)
    ),
    reachable AS (
        SELECT DISTINCT ON (r.contact_id) r.contact_id, c.kind, r.why
        FROM recipients r JOIN contact c ON c.id = r.contact_id
        WHERE c.verified_at IS NOT NULL AND c.disabled_at IS NULL
          AND CASE WHEN r.why = 'area' THEN EXISTS (
                   SELECT 1 FROM contact_consent k
                   WHERE k.contact_id = c.id AND k.purpose = 'area_updates'
                     AND k.withdrawn_at IS NULL)
              ELSE (c.user_id IS NOT NULL AND EXISTS (
                   SELECT 1 FROM subscription s
                   WHERE s.ticket_id = NEW.ticket_id AND s.user_id = c.user_id)
               OR EXISTS (
                   SELECT 1 FROM contact_consent k
                   WHERE k.contact_id = c.id AND k.purpose = 'ticket_updates'
                     AND k.ticket_id = NEW.ticket_id AND k.withdrawn_at IS NULL)) END
        ORDER BY r.contact_id, r.why = 'area'
    ),
    queued_rows AS (
        INSERT INTO notification (contact_id, ticket_id, event_id, event_kind, channel, reason)
        SELECT contact_id, NEW.ticket_id, NEW.id, NEW.kind, kind, why FROM reachable
        ON CONFLICT (contact_id, event_id) DO NOTHING
        RETURNING id, contact_id
    ),
    -- One delivery job for the whole change, however many rows it queued: the job claims
    -- the due rows in batches (app/notify/service.py).
    jobs AS (
        SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(
            'notify', 'deliver_notifications', 0, NULL, NULL, '{}'::jsonb, NULL
        )::procrastinate_job_to_defer_v1]) AS ids
        FROM (SELECT 1 FROM queued_rows LIMIT 1) AS any_row
    )
    SELECT count(*) INTO queued FROM jobs;
    IF queued > 0 OR EXISTS (
        SELECT 1 FROM subscription s WHERE s.ticket_id = NEW.ticket_id AND s.ended_at IS NULL
    ) THEN
        PERFORM pg_notify('kerbside_ticket_event',
                          NEW.ticket_id::text || ':' || NEW.id::text || ':' || NEW.kind);
    END IF;
    RETURN NULL;
END
$$;
"""


def upgrade() -> None:
    op.drop_constraint(op.f("ck_ticket_event_kind_known"), "ticket_event", type_="check")
    op.create_check_constraint(
        op.f("ck_ticket_event_kind_known"), "ticket_event", f"kind IN ({NEW_EVENT_KINDS})"
    )
    op.add_column(
        "ticket", sa.Column("information_requested_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "ticket", sa.Column("information_answered_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(EVENT_STREAM)


def downgrade() -> None:
    op.execute(PREVIOUS_EVENT_STREAM)
    op.drop_column("ticket", "information_answered_at")
    op.drop_column("ticket", "information_requested_at")
    op.execute(
        "DELETE FROM ticket_event WHERE kind IN ('information_requested', 'information_given')"
    )
    op.drop_constraint(op.f("ck_ticket_event_kind_known"), "ticket_event", type_="check")
    op.create_check_constraint(
        op.f("ck_ticket_event_kind_known"), "ticket_event", f"kind IN ({OLD_EVENT_KINDS})"
    )
