"""The SQL of photo processing: claim a pending photo, then mark it ready or failed.

Each pending photo has a ``process_photo`` job (deferred by the ``photo_defer_processing``
trigger when its row is inserted, migration 0008). The job's lock, ``photo:<public_id>``,
keeps two tries of one photo from running at once, so a claim is only a count: it commits
``attempts + 1`` before decoding, which then runs outside any transaction. A try that dies
(its worker killed) has still counted, so a photo that keeps killing workers is given up.
"""

from __future__ import annotations

from sqlalchemy import text

# The named photo, while it is still pending.
CLAIM_PHOTO = text(
    """
    UPDATE photo SET attempts = attempts + 1
    WHERE public_id = :public_id AND status = 'pending'
    RETURNING id, public_id, original_key, storage_key, thumbnail_key, content_type, attempts
    """
)

# Pending photos with no job waiting or running (their job failed for good, or predates the
# queue): one new job each, as the trigger defers it. The job lock index is small (only
# jobs waiting or running).
DEFER_LEFT_PENDING = text(
    """
    WITH left_pending AS (
        SELECT p.public_id FROM photo p
        WHERE p.status = 'pending'
          AND NOT EXISTS (
              SELECT 1 FROM procrastinate_jobs j
              WHERE j.lock = 'photo:' || p.public_id AND j.status IN ('todo', 'doing'))
        ORDER BY p.id
        LIMIT :limit
    )
    SELECT coalesce(cardinality(procrastinate_defer_jobs_v1(array_agg(ROW(
        'photos', 'process_photo', 0, 'photo:' || public_id, 'photo:' || public_id,
        jsonb_build_object('public_id', CAST(public_id AS text)), NULL
    )::procrastinate_job_to_defer_v1))), 0)
    FROM left_pending
    """
)

MARK_READY = text(
    """
    UPDATE photo SET status = 'ready', width = :width, height = :height, bytes = :bytes,
                     sha256 = :sha256
    WHERE id = :id AND status = 'pending' AND attempts = :attempts
    RETURNING id
    """
)

# A try that failed for a reason outside the photo (storage trouble) is not counted.
UNCOUNT_ATTEMPT = text(
    """
    UPDATE photo SET attempts = attempts - 1
    WHERE id = :id AND status = 'pending' AND attempts = :attempts
    """
)

# Failed photos get an internal line on the ticket's timeline saying why (staff only).
MARK_FAILED = text(
    """
    WITH failed AS (
        UPDATE photo SET status = 'failed', failure = :failure
        WHERE id = :id AND status = 'pending' AND attempts = :attempts
        RETURNING id, public_id, ticket_id, report_id
    )
    INSERT INTO ticket_event (ticket_id, kind, public, actor_label, report_id, note, data)
    SELECT ticket_id, 'photo_added', false, 'system', report_id, :failure,
           jsonb_build_object('photo', CAST(public_id AS text), 'status', 'failed',
                              'reason', CAST(:code AS text))
    FROM failed
    RETURNING id
    """
)

FORGET_ORIGINAL = text(
    "UPDATE photo SET original_key = NULL WHERE id = :id AND status <> 'pending'"
)

# Originals of finished photos whose deletion did not happen (a crash, a storage error).
LEFTOVER_ORIGINALS = text(
    """
    SELECT id, original_key FROM photo
    WHERE original_key IS NOT NULL AND status <> 'pending'
    ORDER BY id
    LIMIT :limit
    """
)
