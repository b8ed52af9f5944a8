"""The SQL of Open311's writes beside the intake: the ``media_url`` photos to fetch, and the
tickets FixMyStreet's updates comment on. (Reads on the read pool are in ``queries``.)"""

from __future__ import annotations

from sqlalchemy import text

# -- media_url ----------------------------------------------------------------------------------

INSERT_MEDIA = text(
    "INSERT INTO open311_media (report_id, urls) VALUES (:report_id, :urls)"
    " ON CONFLICT (report_id) DO NOTHING"
)
MEDIA_TO_FETCH = text(
    "SELECT m.urls, r.ticket_id FROM open311_media m JOIN report r ON r.id = m.report_id"
    " WHERE m.report_id = :report_id AND m.state = 'pending'"
)
# Only a pending row is finished, so two tries of the job never attach twice.
MEDIA_DONE = text(
    "UPDATE open311_media SET state = :state, failure = :failure, updated_at = now()"
    " WHERE report_id = :report_id AND state = 'pending' RETURNING report_id"
)

# -- servicerequestupdates ----------------------------------------------------------------------

# Locked: two pushes of one update_id take turns, and the second finds the first's comment.
TICKET_TO_UPDATE = text(
    "SELECT id, jurisdiction_id, reference FROM ticket WHERE reference = :reference FOR UPDATE"
)
UPDATE_RECORDED = text(
    "SELECT id FROM ticket_event"
    " WHERE ticket_id = :ticket_id AND data ? 'open311_update_id'"
    " AND data ->> 'open311_update_id' = :update_id"
)

# The photos of a pushed update: kept with its timeline line until the job fetched them.
INSERT_UPDATE_MEDIA = text(
    "INSERT INTO open311_update_media (event_id, ticket_id, urls)"
    " VALUES (:event_id, :ticket_id, :urls) ON CONFLICT (event_id) DO NOTHING"
)
UPDATE_MEDIA_TO_FETCH = text(
    "SELECT urls, ticket_id FROM open311_update_media"
    " WHERE event_id = :event_id AND state = 'pending'"
)
UPDATE_MEDIA_DONE = text(
    "UPDATE open311_update_media SET state = :state, failure = :failure, updated_at = now()"
    " WHERE event_id = :event_id AND state = 'pending' RETURNING ticket_id"
)
