"""notification delivery in batches: one delivery job per change instead of one per row

The event stream (``kerbside_ticket_event()``) queues its rows as before but defers a single
``deliver_notifications`` job for the change; the job claims due rows in batches with
``FOR UPDATE SKIP LOCKED``, only the oldest undelivered row of each (contact, ticket), which
keeps one person's messages about one ticket in order without a lock per job. Two partial
indexes serve it: the undelivered rows by id (the claim's order) and those that wait by when
they are due (the next wake-up). Waiting per-row jobs of the old task are replaced by one job.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 17:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0060"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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
    jobs AS (
        SELECT procrastinate_defer_jobs_v1(array_agg(ROW(
            'notify', 'deliver_notification', 0,
            'notify:' || contact_id || ':' || NEW.ticket_id, NULL,
            jsonb_build_object('notification_id', id), NULL
        )::procrastinate_job_to_defer_v1 ORDER BY id)) AS ids
        FROM queued_rows
        HAVING count(*) > 0
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
    op.execute(EVENT_STREAM)
    op.create_index(
        "ix_notification_queue",
        "notification",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'retrying')"),
    )
    op.create_index(
        "ix_notification_waiting",
        "notification",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text(
            "status IN ('pending', 'retrying') AND next_attempt_at IS NOT NULL"
        ),
    )
    op.execute(
        "DELETE FROM procrastinate_jobs"
        " WHERE task_name = 'deliver_notification' AND status = 'todo'"
    )
    op.execute(
        """
        SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(
            'notify', 'deliver_notifications', 0, NULL, NULL, '{}'::jsonb, NULL
        )::procrastinate_job_to_defer_v1])
        WHERE EXISTS (SELECT 1 FROM notification WHERE status IN ('pending', 'retrying'))
        """
    )


def downgrade() -> None:
    op.drop_index("ix_notification_waiting", table_name="notification")
    op.drop_index("ix_notification_queue", table_name="notification")
    op.execute(PREVIOUS_EVENT_STREAM)
    op.execute(
        """
        SELECT procrastinate_defer_jobs_v1(array_agg(ROW(
            'notify', 'deliver_notification', 0,
            'notify:' || contact_id || ':' || coalesce(ticket_id::text, 'b' || broadcast_id), NULL,
            jsonb_build_object('notification_id', id), NULL
        )::procrastinate_job_to_defer_v1 ORDER BY id))
        FROM notification WHERE status IN ('pending', 'retrying') HAVING count(*) > 0
        """
    )
