"""The SQL of contacts and consent. Bound parameters only."""

from __future__ import annotations

from sqlalchemy import text

from app.db import HotStatement

# Insert or refresh a contact. A self-verifying kind (a device's token, a platform account) is
# verified at once and revived if it had been disabled: the device or platform just handed it
# to us again. An email address is verified when it is the signed-in person's own, already
# verified, account address.
_UPSERT = """
    INSERT INTO contact (kind, address, display_name, user_id, data, verified_at)
    VALUES (:kind, :address, :display_name, :user_id, CAST(:data AS jsonb),
            CASE WHEN :self_verifying OR EXISTS (
                     SELECT 1 FROM app_user u
                     WHERE u.id = CAST(:user_id AS uuid) AND u.is_verified
                       AND CAST(:kind AS varchar) = 'email' AND lower(u.email) = :address)
                 THEN statement_timestamp() END)
    ON CONFLICT (kind, address) DO UPDATE
        SET display_name = coalesce(EXCLUDED.display_name, contact.display_name),
            user_id = coalesce(contact.user_id, EXCLUDED.user_id),
            data = contact.data || EXCLUDED.data,
            verified_at = coalesce(contact.verified_at, EXCLUDED.verified_at),
            disabled_at = CASE WHEN :self_verifying THEN NULL ELSE contact.disabled_at END,
            disabled_reason = CASE WHEN :self_verifying THEN NULL
                                   ELSE contact.disabled_reason END
    RETURNING id, verified_at IS NOT NULL AS verified, disabled_at IS NOT NULL AS disabled
"""

# On the intake's path (every report with a contact, every social post answered): hot.
UPSERT = HotStatement(_UPSERT)

# A live consent is recorded once; giving it again keeps the first (its date is the evidence).
_CONSENT = """
    INSERT INTO contact_consent (contact_id, purpose, ticket_id, method, evidence, given_at)
    {values}
    ON CONFLICT (contact_id, purpose, ticket_id) WHERE withdrawn_at IS NULL DO NOTHING
"""
CONSENT = HotStatement(
    _CONSENT.format(
        values="VALUES (:contact_id, :purpose, :ticket_id, :method, CAST(:evidence AS jsonb), :at)"
    )
)

# Both in one round trip: the contact, and the consent its owner gives with it.
UPSERT_CONSENTING = HotStatement(
    f"""
    WITH stored AS ({_UPSERT}),
    consent AS ({
        _CONSENT.format(
            values="SELECT id, :purpose, :ticket_id, :method, CAST(:evidence AS jsonb), :at"
            " FROM stored"
        )
    })
    SELECT id, verified, disabled FROM stored
    """  # noqa: S608 (formats code constants only)
)

WITHDRAW = text(
    """
    UPDATE contact_consent SET withdrawn_at = :at, withdrawn_how = :how
    WHERE contact_id = :contact_id AND withdrawn_at IS NULL
      AND (CAST(:purpose AS varchar) IS NULL OR purpose = :purpose)
      AND (CAST(:ticket_id AS bigint) IS NULL OR ticket_id = :ticket_id)
    """
)

# Consents to hear about one ticket follow its people to another (a merge, a split), with
# where they came from as evidence; the given time stays the original one.
CARRY_CONSENTS = text(
    """
    INSERT INTO contact_consent (contact_id, purpose, ticket_id, method, evidence, given_at)
    SELECT k.contact_id, k.purpose, :to, k.method,
           k.evidence || jsonb_build_object('carried_from', CAST(:from AS bigint)), k.given_at
    FROM contact_consent k
    WHERE k.ticket_id = :from AND k.purpose = 'ticket_updates' AND k.withdrawn_at IS NULL
      AND (CAST(:report_id AS bigint) IS NULL OR k.contact_id IN (
               SELECT contact_id FROM report_contact WHERE report_id = :report_id))
    ON CONFLICT (contact_id, purpose, ticket_id) WHERE withdrawn_at IS NULL DO NOTHING
    """
)

# A new verification token, unless one was sent within the last hour (so that following
# tickets with somebody else's address cannot flood their inbox).
BEGIN_VERIFICATION = text(
    """
    UPDATE contact SET verify_token_hash = :token_hash, verify_expires_at = :expires_at
    WHERE id = :contact_id AND verified_at IS NULL AND disabled_at IS NULL
      AND (verify_expires_at IS NULL
           OR verify_expires_at < CAST(:expires_at AS timestamptz) - interval '1 hour')
    RETURNING kind, address
    """
)

VERIFY = text(
    """
    UPDATE contact SET verified_at = :at, verify_token_hash = NULL, verify_expires_at = NULL
    WHERE verify_token_hash = :token_hash AND verify_expires_at > :at
    RETURNING id, kind, address, display_name
    """
)

OF_USER = text(
    """
    SELECT c.id, c.kind, c.address, c.display_name, c.verified_at IS NOT NULL AS verified,
           c.disabled_at IS NOT NULL AS disabled,
           coalesce(array_agg(DISTINCT k.purpose) FILTER (WHERE k.id IS NOT NULL), '{}')
               AS purposes
    FROM contact c
    LEFT JOIN contact_consent k ON k.contact_id = c.id AND k.withdrawn_at IS NULL
    WHERE c.user_id = :user_id
    GROUP BY c.id ORDER BY c.id
    """
)

# Erasure at the person's request: their consents end, their subscriptions end, and the
# contact (with its links to reports and its queued messages) is deleted.
FORGET = text(
    """
    WITH mine AS (SELECT id FROM contact WHERE id = :contact_id AND user_id = :user_id),
    ended AS (
        UPDATE subscription SET ended_at = :at
        WHERE contact_id IN (SELECT id FROM mine) AND ended_at IS NULL
    )
    DELETE FROM contact WHERE id IN (SELECT id FROM mine) RETURNING id
    """
)

DISABLE = text(
    """
    UPDATE contact SET disabled_at = :at, disabled_reason = :reason
    WHERE id = :contact_id AND disabled_at IS NULL
    """
)

# A messaging platform said the window opened by the person's last message is closed: until
# they write again (a new last_inbound_at), answers go the way that needs no window.
WINDOW_CLOSED = text(
    """
    UPDATE contact SET data = data || jsonb_build_object('window_closed_for',
                                                          data -> 'last_inbound_at')
    WHERE id = :contact_id AND data ? 'last_inbound_at'
    """
)

# The condition for telling a contact anything beyond the verification message itself.
REACHABLE = "{c}.verified_at IS NOT NULL AND {c}.disabled_at IS NULL"


def reachable_sql(alias: str) -> str:
    """SQL: the contact ``alias`` may be sent messages (verified, not disabled)."""
    return REACHABLE.format(c=alias)


# The person's linked accounts: their contacts with a live consent to notices.
LINKED_OF_USER = text(
    """
    SELECT c.id, c.kind, c.data->>'handle' AS handle, k.given_at, k.evidence
    FROM contact c
    JOIN contact_consent k ON k.contact_id = c.id AND k.purpose = 'notices'
                          AND k.withdrawn_at IS NULL
    WHERE c.user_id = :user_id
    ORDER BY c.id
    """
)

# Unlinking: the consent to notices ends and the contact no longer belongs to the person, so
# their subscriptions stop fanning out to it (the event stream joins contacts by user). The
# contact itself stays when it is also someone's way to be answered in a thread they wrote in
# (a post's consent); nothing else of the person is left on it.
UNLINK = text(
    """
    WITH mine AS (
        SELECT c.id FROM contact c
        WHERE c.id = :contact_id AND c.user_id = :user_id
          AND EXISTS (SELECT 1 FROM contact_consent k
                      WHERE k.contact_id = c.id AND k.purpose = 'notices'
                        AND k.withdrawn_at IS NULL)
        FOR UPDATE
    ),
    withdrawn AS (
        UPDATE contact_consent SET withdrawn_at = :at, withdrawn_how = 'unlinked'
        WHERE contact_id IN (SELECT id FROM mine) AND withdrawn_at IS NULL
          AND purpose = 'notices'
    )
    UPDATE contact SET user_id = NULL
    WHERE id IN (SELECT id FROM mine) RETURNING id
    """
)

OWNER = text("SELECT user_id FROM contact WHERE id = :contact_id")
