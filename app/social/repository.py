"""The SQL of the social pipeline and the webcare inbox. Bound parameters only."""

from __future__ import annotations

from sqlalchemy import text

from app.db import HotStatement

# Keep a page of posts in one statement, each once: the ids of the new ones, by post id.
STORE_MANY = text(
    """
    INSERT INTO social_post (platform, post_id, account, jurisdiction_id, author_id,
                             author_handle, conversation_id, in_reply_to_id, text, hints, raw,
                             posted_at, due_at)
    SELECT v.platform, v.post_id, v.account, v.jurisdiction_id, v.author_id, v.author_handle,
           v.conversation_id, v.in_reply_to_id, v.text, v.hints, v.raw, v.posted_at,
           now() + make_interval(secs => v.respond_within)
    FROM unnest(CAST(:platform AS varchar[]), CAST(:post_id AS varchar[]),
                CAST(:account AS varchar[]), CAST(:jurisdiction_id AS int4[]),
                CAST(:author_id AS varchar[]), CAST(:author_handle AS varchar[]),
                CAST(:conversation_id AS varchar[]), CAST(:in_reply_to_id AS varchar[]),
                CAST(:text AS text[]), CAST(:hints AS jsonb[]), CAST(:raw AS jsonb[]),
                CAST(:posted_at AS timestamptz[]), CAST(:respond_within AS float8[]))
         WITH ORDINALITY AS v(platform, post_id, account, jurisdiction_id, author_id,
                              author_handle, conversation_id, in_reply_to_id, text, hints,
                              raw, posted_at, respond_within, n)
    ORDER BY v.n
    ON CONFLICT (platform, post_id) DO NOTHING
    RETURNING id, platform, post_id
    """
)

# Keep a post once: overlapping polls, webhook retries and replays insert nothing.
STORE = text(
    """
    INSERT INTO social_post (platform, post_id, account, jurisdiction_id, author_id,
                             author_handle, conversation_id, in_reply_to_id, text, hints, raw,
                             posted_at, due_at)
    VALUES (:platform, :post_id, :account, :jurisdiction_id, :author_id, :author_handle,
            :conversation_id, :in_reply_to_id, :text, CAST(:hints AS jsonb),
            CAST(:raw AS jsonb), :posted_at, now() + make_interval(secs => :respond_within))
    ON CONFLICT (platform, post_id) DO NOTHING
    RETURNING id
    """
)

# A stored post still to be processed, locked so two workers never process it both.
CLAIM = text(
    """
    SELECT id, platform, post_id, account, jurisdiction_id, author_id, author_handle,
           conversation_id, in_reply_to_id, text, hints, raw, posted_at
    FROM social_post WHERE id = :id AND status = 'received'
    FOR UPDATE SKIP LOCKED
    """
)

OUTCOME = HotStatement(
    """
    UPDATE social_post SET
        status = :status, reason = :reason, link_rule = :link_rule,
        service_code = coalesce(:service_code, service_code),
        confidence = coalesce(:confidence, confidence),
        language = coalesce(:language, language),
        sentiment = coalesce(:sentiment, sentiment),
        sensitive = sensitive OR :sensitive,
        location = CASE WHEN CAST(:lon AS float8) IS NULL THEN location
                        ELSE ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) END,
        location_source = coalesce(:location_source, location_source),
        ticket_id = coalesce(:ticket_id, ticket_id),
        report_id = coalesce(:report_id, report_id),
        contact_id = coalesce(:contact_id, contact_id),
        resumed_by_id = coalesce(:resumed_by_id, resumed_by_id),
        -- A suggestion names its ticket; any other outcome ends the suggestion.
        candidate_ticket_id = CAST(:candidate_ticket_id AS bigint),
        answered_at = CASE WHEN :answered THEN coalesce(answered_at, now()) ELSE answered_at END,
        closed_at = CASE WHEN :closed THEN coalesce(closed_at, now()) ELSE closed_at END,
        close_reason = CASE WHEN :closed THEN coalesce(close_reason, :reason)
                            ELSE close_reason END
    WHERE id = :id
    """
)

# Rule 1: the post replied to is one of ours on a ticket: a post linked to it, or the
# city's own reply about it (the provider's id of a sent notification).
# The post (at most two rows) is found first, then its ticket by key: a backlog grows the
# tables faster than their statistics, and a plan that scans the jurisdiction's tickets for
# each reply would cost more with every ticket. Unprepared, for the same reason: a generic
# plan made while the tables were nearly empty scans them (1.1 ms a reply at 10,000 posts).
REPLIED_TICKET = HotStatement(
    """
    WITH found AS MATERIALIZED (
        SELECT p.ticket_id FROM social_post p
        WHERE p.platform = :platform AND p.post_id = :in_reply_to AND p.ticket_id IS NOT NULL
        UNION ALL
        SELECT n.ticket_id FROM notification n
        WHERE n.provider_id = :in_reply_to AND n.reason IN ('reporter', 'subscriber', 'reply')
          AND n.channel = :platform AND n.ticket_id IS NOT NULL
    )
    SELECT coalesce(t.merged_into_id, t.id) AS ticket_id
    FROM found JOIN ticket t ON t.id = found.ticket_id
    WHERE t.jurisdiction_id = :jurisdiction_id
    LIMIT 1
    """,
    prepared=False,
)

# Rule 2: the same conversation, the same author, a ticket still open, or fixed or closed
# (the reopen policy decides what a post on it does).
CONVERSATION_TICKET = HotStatement(
    """
    WITH p AS MATERIALIZED (
        SELECT p.id, p.ticket_id FROM social_post p
        WHERE p.platform = :platform AND p.conversation_id = :conversation_id
          AND p.author_id = :author_id AND p.ticket_id IS NOT NULL
    )
    SELECT coalesce(t.merged_into_id, t.id) AS ticket_id
    FROM p JOIN ticket t ON t.id = p.ticket_id
    WHERE t.jurisdiction_id = :jurisdiction_id
      AND t.status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened',
                       'fixed', 'closed')
    ORDER BY p.id DESC LIMIT 1
    """
)

# Rule 4: the same author's open ticket, updated within the window, from a post in another
# conversation; the one of the same service first, then the nearest.
AUTHOR_TICKET = HotStatement(
    """
    SELECT t.id, t.reference, s.code AS service_code,
           CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL
                ELSE ST_Distance(t.location::geography,
                                 ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography)
           END AS distance_m
    FROM (SELECT DISTINCT p.ticket_id FROM social_post p
          WHERE p.platform = :platform AND p.author_id = :author_id
            AND p.ticket_id IS NOT NULL AND p.id <> :id
            AND p.conversation_id IS DISTINCT FROM CAST(:conversation_id AS varchar)
          OFFSET 0) AS p  -- the author's few posts first (OFFSET 0: planned on their own)
    -- Then each one's ticket by its key. Joined plainly, a plan made while the ticket table
    -- grows faster than its statistics reads every recent open ticket instead (11 ms at
    -- 10,000 posts, against 0.1).
    CROSS JOIN LATERAL (
        SELECT t.id, t.reference, t.location, t.service_id, t.updated_at FROM ticket t
        WHERE t.id = p.ticket_id AND t.jurisdiction_id = :jurisdiction_id
          AND t.status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')
          AND t.updated_at >= now() - make_interval(secs => :within)
        OFFSET 0) AS t
    JOIN service s ON s.id = t.service_id
    ORDER BY s.code = CAST(:service_code AS varchar) DESC, distance_m NULLS LAST,
             t.updated_at DESC
    LIMIT 1
    """,
)

# Which of a page's authors have an open ticket from a post (rule 4 asks only about them).
AUTHORS_WITH_TICKETS = text(
    """
    SELECT DISTINCT p.platform, p.author_id
    FROM social_post p JOIN ticket t ON t.id = p.ticket_id
    WHERE (p.platform, p.author_id) IN (
              SELECT * FROM unnest(CAST(:platforms AS varchar[]), CAST(:authors AS varchar[])))
      AND p.ticket_id IS NOT NULL
      AND t.status IN ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')
    """
)

# A linked ticket as the reopen policy sees it.
LINKED = HotStatement(
    """
    SELECT t.id, t.reference, t.status, t.jurisdiction_id, coalesce(t.fixed_at, t.closed_at)
           AS done_at, s.code AS service_code, ST_X(t.location) AS lon, ST_Y(t.location) AS lat,
           t.address
    FROM ticket t JOIN service s ON s.id = t.service_id
    WHERE t.id = (SELECT coalesce(m.merged_into_id, m.id) FROM ticket m WHERE m.id = :id)
    """
)

# The author's first post on a ticket: their original mention, where X's 2026 rule lets the
# city answer when a later post of theirs (not mentioning it) may not be answered.
FIRST_MENTION = HotStatement(
    """
    SELECT post_id FROM social_post
    WHERE platform = :platform AND author_id = :author_id AND ticket_id = :ticket_id
    ORDER BY id LIMIT 1
    """
)

# Rule 3: a reference named in the text, of this jurisdiction.
REFERENCED_TICKET = HotStatement(
    """
    SELECT coalesce(t.merged_into_id, t.id) AS ticket_id
    FROM ticket t
    WHERE t.reference = ANY(CAST(:references AS varchar[]))
      AND t.jurisdiction_id = :jurisdiction_id
    ORDER BY t.id LIMIT 1
    """
)

# Resuming: the author's post that waits for a location and that this post answers.
AWAITING = HotStatement(
    """
    SELECT p.id FROM social_post p
    WHERE p.platform = :platform AND p.author_id = :author_id
      AND p.status = 'awaiting_location' AND p.id <> :id
      AND (p.post_id = :in_reply_to
           OR (CAST(:conversation_id AS varchar) IS NOT NULL
               AND p.conversation_id = :conversation_id)
           OR EXISTS (SELECT 1 FROM notification n
                      WHERE n.social_post_id = p.id AND n.provider_id = :in_reply_to))
    ORDER BY p.id DESC LIMIT 1
    FOR UPDATE
    """
)

SUBSCRIBE = HotStatement(
    """
    INSERT INTO subscription (ticket_id, contact_id, reason)
    VALUES (:ticket_id, :contact_id, 'follower')
    ON CONFLICT (ticket_id, contact_id) WHERE contact_id IS NOT NULL DO NOTHING
    """
)

CURSOR = text(
    "SELECT since_id, retry_at FROM social_cursor WHERE platform = :platform AND account = :account"
)

# Returns the error of the poll before (the CTE reads the row as it was), so a lasting fault
# is logged once, not every minute.
MOVE_CURSOR = text(
    """
    WITH before AS (
        SELECT last_error FROM social_cursor WHERE platform = :platform AND account = :account
    )
    INSERT INTO social_cursor (platform, account, since_id, retry_at, polled_at, last_error)
    VALUES (:platform, :account, :since_id, :retry_at, now(), :error)
    ON CONFLICT (platform, account) DO UPDATE
        SET since_id = coalesce(EXCLUDED.since_id, social_cursor.since_id),
            retry_at = EXCLUDED.retry_at, polled_at = EXCLUDED.polled_at,
            last_error = EXCLUDED.last_error
    RETURNING (SELECT last_error FROM before) AS previous_error
    """
)

WAITING = text(
    """
    SELECT id, platform, post_id, account, jurisdiction_id, author_id, author_handle,
           conversation_id, in_reply_to_id, text, hints, raw, posted_at, service_code, language
    FROM social_post WHERE id = :id
    """
)

TICKET_OF = text("SELECT ticket_id, contact_id FROM social_post WHERE id = :id")

# The person's newest message in a chat with an account: where a dialogue's closing line goes.
LAST_PRIVATE_POST = text(
    """
    SELECT id, platform, post_id, account, jurisdiction_id, author_id, author_handle,
           conversation_id, in_reply_to_id, text, hints, raw, posted_at, contact_id
    FROM social_post
    WHERE platform = :platform AND account = :account AND author_id = :author_id
      AND status = 'in_dialogue' AND contact_id IS NOT NULL
    ORDER BY posted_at DESC, id DESC LIMIT 1
    """
)

FIRST_LANGUAGE = text("SELECT languages[1] FROM jurisdiction WHERE id = :id")

# -- the photos of filed posts (app.social.photos) -----------------------------------------------

PHOTOS_PENDING = text("UPDATE social_post SET photos_state = 'pending' WHERE id = :id")

# A filed post's photos, then those of the author's answer that gave its place (the photo
# of "where is it?" answered with a location and a picture).
PHOTOS_TO_FETCH = text(
    """
    SELECT p.id, p.platform, p.account, p.report_id,
           coalesce(p.hints->'media', '[]'::jsonb)
               || coalesce(a.hints->'media', '[]'::jsonb) AS media
    FROM social_post p LEFT JOIN social_post a ON a.id = p.resumed_by_id
    WHERE p.id = :id AND p.photos_state = 'pending' AND p.report_id IS NOT NULL
    """
)

# The job's result, once (two tries of one post's job never both attach: the second finds
# the state changed).
PHOTOS_DONE = text(
    """
    UPDATE social_post SET photos_state = :state, photos_failure = :failure
    WHERE id = :id AND photos_state = 'pending'
    RETURNING report_id
    """
)
