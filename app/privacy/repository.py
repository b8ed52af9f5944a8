"""The retention job's SQL: which closed tickets are due, and what is dropped from them.

Every statement takes the batch's ticket ids (``:ids``) so that one batch is a handful of
set-based statements, whatever its size.
"""

from __future__ import annotations

from sqlalchemy import text

# Closed tickets past their jurisdiction's retention whose personal data is still there (never
# dropped, or closed again since). Locked, skipping tickets another run holds, so two runs at
# once split the work instead of waiting on each other.
DUE = text(
    """
    SELECT t.id FROM ticket t JOIN jurisdiction j ON j.id = t.jurisdiction_id
    WHERE t.closed_at IS NOT NULL
      AND (t.personal_data_dropped_at IS NULL OR t.personal_data_dropped_at < t.closed_at)
      AND t.closed_at < CAST(:now AS timestamptz) - make_interval(days =>
            coalesce((j.privacy ->> 'contact_retention_days')::int, :default_days))
    ORDER BY t.closed_at, t.id
    LIMIT :batch
    FOR UPDATE OF t SKIP LOCKED
    """
)

COUNT_DUE = text(
    """
    SELECT count(*) FROM ticket t JOIN jurisdiction j ON j.id = t.jurisdiction_id
    WHERE t.closed_at IS NOT NULL
      AND (t.personal_data_dropped_at IS NULL OR t.personal_data_dropped_at < t.closed_at)
      AND t.closed_at < CAST(:now AS timestamptz) - make_interval(days =>
            coalesce((j.privacy ->> 'contact_retention_days')::int, :default_days))
    """
)

# Every contact these tickets know of: reporters', followers', supporters', consents'.
CONTACTS_OF = text(
    """
    SELECT rc.contact_id FROM report_contact rc JOIN report r ON r.id = rc.report_id
    WHERE r.ticket_id = ANY(:ids)
    UNION
    SELECT s.contact_id FROM subscription s
    WHERE s.ticket_id = ANY(:ids) AND s.contact_id IS NOT NULL
    UNION
    SELECT cc.contact_id FROM contact_consent cc WHERE cc.ticket_id = ANY(:ids)
    """
)

UNLINK_REPORT_CONTACTS = text(
    "DELETE FROM report_contact rc USING report r"
    " WHERE r.id = rc.report_id AND r.ticket_id = ANY(:ids)"
)
CLEAR_REPORTER_NAMES = text(
    "UPDATE report SET reporter_name = NULL"
    " WHERE ticket_id = ANY(:ids) AND reporter_name IS NOT NULL"
)
# Signed-in users' subscriptions are their account's (gone with the account); contacts' go.
DROP_SUBSCRIPTIONS = text(
    "DELETE FROM subscription WHERE ticket_id = ANY(:ids) AND contact_id IS NOT NULL"
)
# The consent evidence (the report's id, the post, the staff member's note) of these tickets.
DROP_CONSENTS = text("DELETE FROM contact_consent WHERE ticket_id = ANY(:ids)")
# The outbox rows about these tickets: what was sent stays on the timeline (its events carry
# the notification's id and channel, no address); the rows tie a contact to the ticket.
DROP_NOTIFICATIONS = text("DELETE FROM notification WHERE ticket_id = ANY(:ids)")
# Contacts nothing refers to any more. A user's own contacts and those still used elsewhere
# (another ticket, a followed place, a standing consent) stay.
DROP_ORPHAN_CONTACTS = text(
    """
    DELETE FROM contact c
    WHERE c.id = ANY(:contacts) AND c.user_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM report_contact rc WHERE rc.contact_id = c.id)
      AND NOT EXISTS (SELECT 1 FROM subscription s WHERE s.contact_id = c.id)
      AND NOT EXISTS (SELECT 1 FROM contact_consent cc WHERE cc.contact_id = c.id)
      AND NOT EXISTS (SELECT 1 FROM area_subscription a WHERE a.contact_id = c.id)
      AND NOT EXISTS (SELECT 1 FROM notification n WHERE n.contact_id = c.id)
    """
)
MARK_DROPPED = text("UPDATE ticket SET personal_data_dropped_at = :now WHERE id = ANY(:ids)")
