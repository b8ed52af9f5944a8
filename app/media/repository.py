"""The SQL of photo processing: claim a pending photo, then mark it ready or failed.

A claim is a lease, not a held lock: it commits ``attempts + 1`` and ``lease_until`` at once,
so decoding runs outside any transaction, and a process that dies mid-way only delays the
photo until the lease runs out. ``FOR UPDATE SKIP LOCKED`` lets any number of processes claim
at the same time without waiting for each other or taking the same photo. The finishing
statements only touch the photo while its ``attempts`` is still the claim's own, so a try that
outlived its lease never overwrites the one that took over.
"""

from __future__ import annotations

from sqlalchemy import text

# The oldest pending photo nobody holds (or the one named by :public_id).
CLAIM_PHOTO = text(
    """
    WITH next AS (
        SELECT id FROM photo
        WHERE status = 'pending'
          AND (CAST(:public_id AS uuid) IS NULL OR public_id = CAST(:public_id AS uuid))
          AND (lease_until IS NULL OR lease_until < statement_timestamp())
        ORDER BY id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    UPDATE photo SET attempts = photo.attempts + 1,
                     lease_until = statement_timestamp() + CAST(:lease AS interval)
    FROM next WHERE photo.id = next.id
    RETURNING photo.id, photo.public_id, photo.original_key, photo.storage_key,
              photo.thumbnail_key, photo.content_type, photo.attempts
    """
)

MARK_READY = text(
    """
    UPDATE photo SET status = 'ready', width = :width, height = :height, bytes = :bytes,
                     sha256 = :sha256, lease_until = NULL
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
        UPDATE photo SET status = 'failed', failure = :failure, lease_until = NULL
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
