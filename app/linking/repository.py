"""The SQL of linked accounts. Bound parameters only.

A city's accounts are read from ``social_settings`` by table name (``app.social`` owns the
section and sits above this package: it hands Messenger's referrals down to it).
"""

from __future__ import annotations

from sqlalchemy import text

CITY = text(
    "SELECT j.id, j.slug, s.config FROM jurisdiction j"
    " LEFT JOIN social_settings s ON s.jurisdiction_id = j.id WHERE j.slug = :slug"
)
CITY_BY_ID = text(
    "SELECT j.id, j.slug, s.config FROM jurisdiction j"
    " LEFT JOIN social_settings s ON s.jurisdiction_id = j.id WHERE j.id = :id"
)

# A person's finished or expired linkings are forgotten when they start another.
FORGET_OLD = text(
    "DELETE FROM link_attempt WHERE user_id = :user_id"
    " AND (used_at IS NOT NULL OR expires_at < :now)"
)

START = text(
    """
    INSERT INTO link_attempt
        (user_id, platform, jurisdiction_id, account, server, nonce_hash, code_verifier,
         expires_at)
    VALUES (:user_id, :platform, :jurisdiction_id, :account, :server, :nonce_hash,
            :code_verifier, :expires_at)
    RETURNING id
    """
)

# Locked while it is checked, so two callbacks with one state cannot both pass.
ATTEMPT = text(
    """
    SELECT id, user_id, platform, jurisdiction_id, account, server, nonce_hash, code_verifier,
           expires_at, used_at
    FROM link_attempt WHERE id = :id FOR UPDATE
    """
)
USE = text("UPDATE link_attempt SET used_at = :now WHERE id = :id")

# Our app on a resident's Mastodon server. Two first linkings there at once both register;
# the first to insert wins and the other takes its row (the other registration is unused).
MASTODON_APP = text(
    "SELECT client_id, client_secret FROM mastodon_app"
    " WHERE base_url = :base_url AND redirect_uri = :redirect_uri"
)
# The server forgot our app (Mastodon deletes unused ones): registered anew.
FORGET_MASTODON_APP = text(
    "DELETE FROM mastodon_app"
    " WHERE base_url = :base_url AND redirect_uri = :redirect_uri AND client_id = :client_id"
)
KEEP_MASTODON_APP = text(
    """
    INSERT INTO mastodon_app (base_url, redirect_uri, client_id, client_secret)
    VALUES (:base_url, :redirect_uri, :client_id, :client_secret)
    ON CONFLICT (base_url, redirect_uri) DO NOTHING
    RETURNING client_id, client_secret
    """
)

# Unlinking cancels what was queued for the account and not yet sent. Rows a delivery job
# holds right now are being sent as we speak (skipped, not waited for); should that send fail,
# its retry finds no consent and is suppressed. Answers in a thread the person wrote in (a
# post's own consent) are not notices and stay.
CANCEL_NOTICES = text(
    """
    UPDATE notification SET status = 'suppressed', last_error = 'the account was unlinked'
    WHERE id IN (
        SELECT n.id FROM notification n
        WHERE n.contact_id = :contact_id AND n.status IN ('pending', 'retrying')
          AND n.reason <> 'reply'
          AND NOT EXISTS (
              SELECT 1 FROM contact_consent k
              WHERE k.contact_id = n.contact_id AND k.ticket_id = n.ticket_id
                AND k.purpose = 'ticket_updates' AND k.withdrawn_at IS NULL
                AND k.evidence ? 'reply_to')
        FOR UPDATE OF n SKIP LOCKED)
    """
)

LOCALE = text("SELECT locale FROM app_user WHERE id = :user_id")
