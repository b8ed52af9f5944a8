"""Daily digests of followed places: one message per subscription with news since its last.

Written by the daily ``send_area_digests`` job in one transaction with moving each
subscription's mark (``digest_through``), so a digest is never written twice nor skipped; the
delivery job is deferred in the same statement, as the event stream does for single events.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_WRITE = text(
    """
    WITH due AS (
        SELECT s.id, s.contact_id, s.label, s.topics, s.geom, s.digest_through, c.kind
        FROM area_subscription s JOIN contact c ON c.id = s.contact_id
        WHERE s.mode = 'digest' AND s.ended_at IS NULL AND s.digest_through < :until
          AND c.verified_at IS NOT NULL AND c.disabled_at IS NULL
          AND EXISTS (SELECT 1 FROM contact_consent k
                      WHERE k.contact_id = c.id AND k.purpose = 'area_updates'
                        AND k.withdrawn_at IS NULL)
        FOR UPDATE OF s SKIP LOCKED
    ),
    news AS (
        SELECT due.id AS subscription_id,
               coalesce(jsonb_agg(DISTINCT t.reference) FILTER (
                   WHERE e.kind = 'ticket_opened' AND 'new_tickets' = ANY (due.topics)),
                   '[]') AS new,
               coalesce(jsonb_agg(DISTINCT t.reference) FILTER (
                   WHERE e.kind = 'status_changed' AND e.data->>'to' = 'fixed'
                     AND 'fixes' = ANY (due.topics)), '[]') AS fixed
        FROM due
        JOIN ticket t ON ST_Covers(due.geom, t.location)
        JOIN ticket_event e ON e.ticket_id = t.id AND e.public
         AND e.created_at > due.digest_through AND e.created_at <= :until
         AND (e.kind = 'ticket_opened'
              OR (e.kind = 'status_changed' AND e.data->>'to' = 'fixed'))
        GROUP BY due.id
    ),
    written AS (
        INSERT INTO notification (contact_id, event_kind, channel, reason, digest)
        SELECT due.contact_id, 'digest', due.kind, 'area',
               jsonb_build_object('label', due.label, 'new', news.new, 'fixed', news.fixed)
        FROM due JOIN news ON news.subscription_id = due.id
        WHERE jsonb_array_length(news.new) + jsonb_array_length(news.fixed) > 0
        RETURNING id, contact_id
    ),
    jobs AS (
        SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(
            'notify', 'deliver_notifications', 0, NULL, NULL, '{}'::jsonb, NULL
        )::procrastinate_job_to_defer_v1]) FROM (SELECT 1 FROM written LIMIT 1) AS any_row
    ),
    moved AS (
        UPDATE area_subscription s SET digest_through = :until FROM due WHERE s.id = due.id
    )
    SELECT (SELECT count(*) FROM written) AS written, (SELECT count(*) FROM jobs) AS deferred
    """
)


async def write_digests(session: AsyncSession, until: datetime) -> int:
    """Write every due digest up to ``until``; returns how many messages were written."""
    return int((await session.execute(_WRITE, {"until": until})).scalar_one())
