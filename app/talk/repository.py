"""The SQL of talk: copying reports into signals, finding bursts, growing and closing alerts,
the trends and moods staff read. Hand-written, bound parameters; every read is bounded by a
jurisdiction and a time range (``ix_talk_signal_jurisdiction_id_at``)."""

from __future__ import annotations

from sqlalchemy import text

from app.jurisdictions.sql import area_at_sql

# -- signals ------------------------------------------------------------------------------------

# Where the copy of reports resumes. Reports commit out of id order (concurrent intakes), so
# the copy looks back a margin of ids and skips those it has (the unique report_id). A fresh
# install starts with the last four weeks (the trends' baseline), found once by a scan.
RESUME_AFTER = text(
    """
    SELECT coalesce(
        (SELECT max(report_id) - :margin FROM talk_signal),
        (SELECT min(id) - 1 FROM report WHERE received_at > now() - interval '28 days'),
        (SELECT max(id) FROM report),
        0)
    """
)

NEW_REPORTS = text(
    """
    SELECT r.id, r.jurisdiction_id, r.ticket_id, r.service_id, r.channel, r.received_at,
           r.description, t.area_id, j.languages,
           ST_X(r.location) AS lon, ST_Y(r.location) AS lat
    FROM report r
    JOIN ticket t ON t.id = r.ticket_id
    JOIN jurisdiction j ON j.id = r.jurisdiction_id
    WHERE r.id > :after
      AND NOT EXISTS (SELECT 1 FROM talk_signal s WHERE s.report_id = r.id)
    ORDER BY r.id
    LIMIT :batch
    """
)

_INSERT_SIGNAL = f"""
    INSERT INTO talk_signal (jurisdiction_id, source, report_id, post_id, ticket_id, service_id,
                             channel, area_id, location, at, language, sentiment, terms, reply)
    SELECT CAST(:jurisdiction_id AS integer), CAST(:source AS text), :report_id, :post_id,
           :ticket_id, :service_id, :channel,
           coalesce(CAST(:area_id AS integer), CASE WHEN here.g IS NOT NULL THEN
                    {area_at_sql("here.g", "CAST(:jurisdiction_id AS integer)")} END),
           here.g, :at, :language, :sentiment, CAST(:terms AS text[]), :reply
    FROM (SELECT CASE WHEN CAST(:lon AS float8) IS NOT NULL
                 THEN ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) END AS g) here
"""  # noqa: S608 (formats code only)
INSERT_SIGNAL = text(_INSERT_SIGNAL + " ON CONFLICT DO NOTHING RETURNING id")
INSERT_SIGNALS = text(_INSERT_SIGNAL + " ON CONFLICT DO NOTHING")  # many rows (no RETURNING)

# A post that filed a report and that report are one signal: the post takes the report's
# signal over (its platform, the classifier's language and mood, its words), or, when the
# report is not copied yet, brings the report's id with it so the report is never copied.
# The report's point, area and ticket stay. Only the first post of a report takes it.
MERGE_POST_SIGNAL = text(
    _INSERT_SIGNAL
    + """
    ON CONFLICT (report_id) DO UPDATE SET
        source = EXCLUDED.source, post_id = EXCLUDED.post_id, channel = EXCLUDED.channel,
        language = EXCLUDED.language,
        sentiment = coalesce(EXCLUDED.sentiment, talk_signal.sentiment),
        terms = EXCLUDED.terms, reply = EXCLUDED.reply
    WHERE talk_signal.post_id IS NULL
    RETURNING id
    """
)

# Where the copy of posts resumes (as for reports: a margin of ids looked back, because a
# post is copied once processed, and posts are processed out of id order).
RESUME_POSTS_AFTER = text(
    """
    SELECT coalesce(
        (SELECT max(post_id) - :margin FROM talk_signal WHERE post_id IS NOT NULL),
        (SELECT min(id) - 1 FROM social_post WHERE received_at > now() - interval '28 days'),
        (SELECT max(id) FROM social_post),
        0)
    """
)

# Processed posts of a jurisdiction not copied yet. Ignored posts (the city's own, reposts,
# spam, blocked authors) are not talk; a post still being processed waits for its outcome.
# A post linked to a ticket without a service of its own takes the ticket's service and area.
NEW_POSTS = text(
    """
    SELECT p.id, p.jurisdiction_id, p.platform, p.text, p.posted_at, p.language, p.sentiment,
           p.ticket_id, p.report_id, p.link_rule, j.languages,
           coalesce(sv.id, t.service_id) AS service_id, t.area_id,
           ST_X(p.location) AS lon, ST_Y(p.location) AS lat
    FROM social_post p
    JOIN jurisdiction j ON j.id = p.jurisdiction_id
    LEFT JOIN service sv ON sv.jurisdiction_id = p.jurisdiction_id AND sv.code = p.service_code
    LEFT JOIN ticket t ON t.id = p.ticket_id
    WHERE p.id > :after AND p.status NOT IN ('received', 'ignored')
      AND NOT EXISTS (SELECT 1 FROM talk_signal s WHERE s.post_id = p.id)
    ORDER BY p.id
    LIMIT :batch
    """
)

SERVICE_ID = text("SELECT id FROM service WHERE jurisdiction_id = :j AND code = :code")
LANGUAGES = text("SELECT languages FROM jurisdiction WHERE id = :j")

# -- spikes -------------------------------------------------------------------------------------

JURISDICTIONS = text("SELECT id, slug, name, talk FROM jurisdiction ORDER BY id")

# Bursts: DBSCAN over the window's located signals per service. A core point has at least
# ``minpoints`` signals (itself included) within ``eps``: "N within R metres". Web Mercator
# stretches distances by 1/cos(latitude), so the radius is stretched alike.
BURSTS = text(
    """
    WITH recent AS (
        SELECT s.id, s.service_id, s.source, s.location, s.at
        FROM talk_signal s
        WHERE s.jurisdiction_id = :j AND s.location IS NOT NULL
          AND s.at > CAST(:now AS timestamptz) - make_interval(mins => :window)
          AND s.at <= :now
    ),
    stretch AS (SELECT 1 / cos(radians(avg(ST_Y(location)))) AS f FROM recent),
    clustered AS (
        SELECT r.*, ST_ClusterDBSCAN(ST_Transform(r.location, 3857),
                                     eps := :radius * (SELECT f FROM stretch),
                                     minpoints := :min) OVER (PARTITION BY r.service_id) AS cid
        FROM recent r
    )
    SELECT service_id, array_agg(id ORDER BY id) AS ids, count(*) AS n,
           ST_X(ST_Centroid(ST_Collect(location))) AS lon,
           ST_Y(ST_Centroid(ST_Collect(location))) AS lat
    FROM clustered
    WHERE cid IS NOT NULL
    GROUP BY service_id, cid
    """
)

# What this place usually sees at this hour of the week: the signals of the service within
# the radius in the same stretch of the week (the window, widened by ``slack`` minutes each
# side) over the past ``weeks`` weeks, this week left out. Reports come from ``report``
# itself (a year of history), posts from their signals. The degree box lets the GiST index
# prune; the geography distance decides.
BASELINE = text(
    """
    WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g,
                      CAST(:radius AS float8) / (111320 * cos(radians(:lat))) AS box,
                      CAST(:now AS timestamptz) AS now,
                      make_interval(days => 7 * :weeks, mins => :slack) AS back)
    SELECT (
        SELECT count(*) FROM report r, p
        WHERE r.jurisdiction_id = :j AND r.service_id IS NOT DISTINCT FROM :service
          AND ST_DWithin(r.location, p.g, p.box)
          AND ST_DWithin(r.location::geography, p.g::geography, :radius)
          AND r.received_at > p.now - p.back AND r.received_at < p.now - interval '6 days'
          AND (mod(CAST(extract(epoch FROM p.now - r.received_at) AS numeric), 604800)
                 <= (:window + :slack) * 60
               OR mod(CAST(extract(epoch FROM p.now - r.received_at) AS numeric), 604800)
                 >= 604800 - :slack * 60)
    ) + (
        SELECT count(*) FROM talk_signal s, p
        WHERE s.jurisdiction_id = :j AND s.source = 'post' AND s.report_id IS NULL
          AND s.service_id IS NOT DISTINCT FROM :service
          AND ST_DWithin(s.location, p.g, p.box)
          AND ST_DWithin(s.location::geography, p.g::geography, :radius)
          AND s.at > p.now - p.back AND s.at < p.now - interval '6 days'
          AND (mod(CAST(extract(epoch FROM p.now - s.at) AS numeric), 604800)
                 <= (:window + :slack) * 60
               OR mod(CAST(extract(epoch FROM p.now - s.at) AS numeric), 604800)
                 >= 604800 - :slack * 60)
    ) AS seen
    """
)

# The open alert a burst belongs to: same service, overlapping suggested polygon, or
# sharing a signal.
OPEN_ALERT_FOR = text(
    """
    SELECT a.id FROM talk_alert a
    WHERE a.jurisdiction_id = :j AND a.status = 'open'
      AND a.service_id IS NOT DISTINCT FROM :service
      AND (ST_Intersects(a.polygon, ST_Buffer(CAST(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)
                                                   AS geography), :radius)::geometry)
           OR EXISTS (SELECT 1 FROM talk_alert_member m
                      WHERE m.alert_id = a.id AND m.signal_id = ANY(:ids)))
    ORDER BY a.opened_at
    LIMIT 1
    """
)

NEW_ALERT = text(
    """
    INSERT INTO talk_alert (jurisdiction_id, service_id, status, expected, threshold, radius_m,
                            centroid, polygon, opened_at, last_signal_at, updated_at)
    VALUES (:j, :service, 'open', :expected, :threshold, :radius,
            ST_SetSRID(ST_MakePoint(:lon, :lat), 4326),
            ST_Buffer(CAST(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS geography),
                      :radius)::geometry, :now, :now, :now)
    RETURNING id
    """
)

ADD_MEMBERS = text(
    "INSERT INTO talk_alert_member (alert_id, signal_id)"
    " SELECT :alert, unnest(CAST(:ids AS bigint[])) ON CONFLICT DO NOTHING"
)

# The burst goes on at a lower pace: the window's signals of the service inside an open
# alert's polygon join it.
JOIN_OPEN_ALERTS = text(
    """
    INSERT INTO talk_alert_member (alert_id, signal_id)
    SELECT a.id, s.id
    FROM talk_alert a
    JOIN talk_signal s ON s.jurisdiction_id = a.jurisdiction_id
     AND s.service_id IS NOT DISTINCT FROM a.service_id
     AND s.at > CAST(:now AS timestamptz) - make_interval(mins => :window) AND s.at <= :now
     AND ST_Intersects(s.location, a.polygon)
    WHERE a.jurisdiction_id = :j AND a.status = 'open'
    ON CONFLICT DO NOTHING
    RETURNING alert_id
    """
)

# Counts, centre, hull and the area of an alert, from its members.
RESHAPE = text(
    f"""
    WITH m AS (
        SELECT (SELECT jurisdiction_id FROM talk_alert WHERE id = :alert) AS j,
               count(*) AS n, count(*) FILTER (WHERE s.source = 'report') AS reports,
               count(*) FILTER (WHERE s.source = 'post') AS posts, max(s.at) AS last_at,
               ST_Centroid(ST_Collect(s.location)) AS centre,
               ST_Buffer(CAST(ST_ConvexHull(ST_Collect(s.location)) AS geography),
                         :radius)::geometry AS polygon
        FROM talk_alert_member am JOIN talk_signal s ON s.id = am.signal_id
        WHERE am.alert_id = :alert
    )
    UPDATE talk_alert a SET
        signal_count = m.n, report_count = m.reports, post_count = m.posts,
        last_signal_at = greatest(a.last_signal_at, m.last_at),
        centroid = m.centre, polygon = ST_SetSRID(m.polygon, 4326), updated_at = :now,
        area_id = {area_at_sql("m.centre", "m.j")}
    FROM m
    WHERE a.id = :alert
    RETURNING a.signal_count
    """  # noqa: S608 (formats code only)
)

# A burst is over when nothing joined its alert for a whole window.
CLOSE_QUIET = text(
    """
    UPDATE talk_alert SET status = 'closed', closed_at = :now, updated_at = :now
    WHERE jurisdiction_id = :j AND status = 'open'
      AND last_signal_at <= CAST(:now AS timestamptz) - make_interval(mins => :window)
    RETURNING id
    """
)

# Staff of the jurisdiction (and admins who act for it) with a live contact of a kind that
# carries an alert; and those without one, whom the account's address reaches by mail.
STAFF_CONTACTS = text(
    """
    INSERT INTO notification (contact_id, event_kind, channel, reason, subject, body)
    SELECT c.id, 'spike_alert', c.kind, 'staff', :subject, :body
    FROM app_user u JOIN contact c ON c.user_id = u.id
    WHERE u.jurisdiction_id = :j AND u.role IN ('staff', 'admin') AND u.is_active
      AND c.verified_at IS NOT NULL AND c.disabled_at IS NULL
      AND c.kind IN ('email', 'fcm', 'webpush', 'webhook')
    RETURNING id, contact_id
    """
)

STAFF_WITHOUT_CONTACTS = text(
    """
    SELECT u.email FROM app_user u
    WHERE u.jurisdiction_id = :j AND u.role IN ('staff', 'admin') AND u.is_active
      AND NOT EXISTS (SELECT 1 FROM contact c WHERE c.user_id = u.id
                      AND c.verified_at IS NOT NULL AND c.disabled_at IS NULL
                      AND c.kind IN ('email', 'fcm', 'webpush', 'webhook'))
    ORDER BY u.email
    """
)

SERVICE_NAMES = text("SELECT code, names FROM service WHERE id = :id")
AREA_NAME = text("SELECT code, name FROM area WHERE id = :id")

# -- alerts over HTTP ---------------------------------------------------------------------------

_ALERT_COLUMNS = """
    a.id, a.jurisdiction_id, j.slug AS jurisdiction, sv.code AS service, ar.code AS area,
    ar.name AS area_name, a.status, a.signal_count, a.report_count, a.post_count,
    a.expected, a.threshold, a.radius_m, ST_X(a.centroid) AS lon, ST_Y(a.centroid) AS lat,
    ST_AsGeoJSON(a.polygon, 6) AS polygon, a.opened_at, a.last_signal_at, a.closed_at,
    a.acknowledged_at, a.acknowledged_by
"""
_ALERT_FROM = """
    FROM talk_alert a JOIN jurisdiction j ON j.id = a.jurisdiction_id
    LEFT JOIN service sv ON sv.id = a.service_id LEFT JOIN area ar ON ar.id = a.area_id
"""

LIST_ALERTS = text(
    f"""
    SELECT {_ALERT_COLUMNS} {_ALERT_FROM}
    WHERE a.jurisdiction_id = :j AND (CAST(:status AS text) IS NULL OR a.status = :status)
      AND (CAST(:before AS bigint) IS NULL OR a.id < :before)
    ORDER BY a.id DESC
    LIMIT :limit
    """
)

GET_ALERT = text(f"SELECT {_ALERT_COLUMNS} {_ALERT_FROM} WHERE a.id = :id")

ALERT_MEMBERS = text(
    """
    SELECT s.id, s.source, s.channel, s.report_id, s.post_id, s.at, s.sentiment,
           t.reference AS ticket, ST_X(s.location) AS lon, ST_Y(s.location) AS lat
    FROM talk_alert_member m JOIN talk_signal s ON s.id = m.signal_id
    LEFT JOIN report r ON r.id = s.report_id
    LEFT JOIN ticket t ON t.id = coalesce(r.ticket_id, s.ticket_id)
    WHERE m.alert_id = :id
    ORDER BY s.at, s.id
    LIMIT 1000
    """
)

ACKNOWLEDGE = text(
    "UPDATE talk_alert SET acknowledged_at = coalesce(acknowledged_at, :now),"
    " acknowledged_by = coalesce(acknowledged_by, :by), updated_at = :now WHERE id = :id"
)

ALERT_JURISDICTION = text("SELECT jurisdiction_id FROM talk_alert WHERE id = :id")
JURISDICTION_BY_SLUG = text("SELECT id, slug FROM jurisdiction WHERE slug = :slug")
JURISDICTIONS_BY_ID = text("SELECT id, slug FROM jurisdiction WHERE id = :id")

# -- trends and sentiment -----------------------------------------------------------------------

# Terms of the last day against their daily mean over the baseline days before it. The lift
# is smoothed (+1 each side) so a term new today needs a few mentions to lead.
TERM_TRENDS = text(
    """
    WITH today AS (
        SELECT term, count(*) AS n FROM talk_signal s, unnest(s.terms) AS term
        WHERE s.jurisdiction_id = :j AND s.at > :since AND s.at <= :now
          AND (CAST(:area AS integer) IS NULL OR s.area_id = :area)
        GROUP BY term
    ),
    before AS (
        SELECT term, count(*) AS n FROM talk_signal s, unnest(s.terms) AS term
        WHERE s.jurisdiction_id = :j AND s.at > :base_from AND s.at <= :since
          AND (CAST(:area AS integer) IS NULL OR s.area_id = :area)
          AND term IN (SELECT term FROM today)
        GROUP BY term
    )
    SELECT t.term, t.n AS today, coalesce(b.n, 0)::float8 / :days AS per_day,
           (t.n + 1) / (coalesce(b.n, 0)::float8 / :days + 1) AS lift
    FROM today t LEFT JOIN before b USING (term)
    WHERE t.n >= :min_count
    ORDER BY lift DESC, t.n DESC, t.term
    LIMIT :limit
    """
)

SERVICE_TRENDS = text(
    """
    WITH counts AS (
        SELECT s.service_id,
               count(*) FILTER (WHERE s.at > :since) AS today,
               count(*) FILTER (WHERE s.at <= :since) AS before
        FROM talk_signal s
        WHERE s.jurisdiction_id = :j AND s.at > :base_from AND s.at <= :now
          AND s.service_id IS NOT NULL
          AND (CAST(:area AS integer) IS NULL OR s.area_id = :area)
        GROUP BY s.service_id
    )
    SELECT sv.code AS term, c.today, c.before::float8 / :days AS per_day,
           (c.today + 1) / (c.before::float8 / :days + 1) AS lift
    FROM counts c JOIN service sv ON sv.id = c.service_id
    WHERE c.today >= :min_count
    ORDER BY lift DESC, c.today DESC, sv.code
    LIMIT :limit
    """
)

# Daily mentions of given terms over the baseline days and today (the trend lines).
TERM_SERIES = text(
    """
    SELECT term, floor(extract(epoch FROM :now - s.at) / 86400)::int AS days_ago, count(*) AS n
    FROM talk_signal s, unnest(s.terms) AS term
    WHERE s.jurisdiction_id = :j AND s.at > :base_from AND s.at <= :now
      AND term = ANY(:terms)
      AND (CAST(:area AS integer) IS NULL OR s.area_id = :area)
    GROUP BY term, days_ago
    """
)

SERVICE_SERIES = text(
    """
    SELECT sv.code, floor(extract(epoch FROM :now - s.at) / 86400)::int AS days_ago,
           count(*) AS n
    FROM talk_signal s JOIN service sv ON sv.id = s.service_id
    WHERE s.jurisdiction_id = :j AND s.at > :base_from AND s.at <= :now
      AND sv.code = ANY(:codes)
      AND (CAST(:area AS integer) IS NULL OR s.area_id = :area)
    GROUP BY sv.code, days_ago
    """
)

AREA_BY_CODE = text("SELECT id FROM area WHERE jurisdiction_id = :j AND code = :code")

SENTIMENT = text(
    """
    SELECT date_bin(make_interval(days => :days), s.at, TIMESTAMPTZ '2001-01-01') AS bucket,
           CASE :by WHEN 'service' THEN sv.code WHEN 'area' THEN ar.code
                    WHEN 'channel' THEN s.channel ELSE NULL END AS key,
           count(*) AS n, avg(s.sentiment) AS mean,
           avg(CASE WHEN s.sentiment < -0.05 THEN 1.0 ELSE 0.0 END) AS negative,
           avg(CASE WHEN s.sentiment > 0.05 THEN 1.0 ELSE 0.0 END) AS positive
    FROM talk_signal s
    LEFT JOIN service sv ON sv.id = s.service_id
    LEFT JOIN area ar ON ar.id = s.area_id
    WHERE s.jurisdiction_id = :j AND s.at > :since AND s.at <= :now
      AND s.sentiment IS NOT NULL
      AND (CAST(:service AS text) IS NULL OR sv.code = :service)
      AND (CAST(:area AS text) IS NULL OR ar.code = :area)
      AND (CAST(:channel AS text) IS NULL OR s.channel = :channel)
      AND (NOT CAST(:replies AS boolean) OR s.reply)
    GROUP BY bucket, key
    ORDER BY bucket, key NULLS FIRST
    LIMIT 5000
    """
)

# -- the service level of answering posts --------------------------------------------------------

# Posts that asked for an answer, per bucket of their arrival, platform and city account: how
# many, how many answered, how many within the target. A post closed without an answer
# ("no answer needed", and every ignored post) asks for none; a post not answered and not due
# yet is pending, outside the share. Answered means a first answer or acknowledgement was
# queued (``social_post.answered_at``); the clock starts when the post was received.
ANSWERING = text(
    """
    SELECT date_bin(make_interval(days => :days), p.received_at, TIMESTAMPTZ '2001-01-01')
               AS bucket,
           p.platform, p.account, count(*) AS posts,
           count(*) FILTER (WHERE p.answered_at IS NOT NULL) AS answered,
           count(*) FILTER (WHERE p.answered_at
                            <= p.received_at + make_interval(secs => :within)) AS on_time,
           count(*) FILTER (WHERE p.answered_at IS NULL
                            AND p.received_at + make_interval(secs => :within) > :now)
               AS pending,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM p.answered_at - p.received_at))
               FILTER (WHERE p.answered_at IS NOT NULL) AS median_s
    FROM social_post p
    WHERE p.jurisdiction_id = :j AND p.received_at > :since AND p.received_at <= :now
      AND p.status <> 'ignored'
      AND (p.answered_at IS NOT NULL OR p.closed_at IS NULL)
      AND (CAST(:account AS text) IS NULL OR p.account = :account)
    GROUP BY bucket, p.platform, p.account
    ORDER BY bucket, p.platform, p.account
    LIMIT 5000
    """
)


# A batch of one jurisdiction's signals older than the cutoff (its (jurisdiction_id, at)
# index finds them); members of an alert still open are kept with their alert.
PRUNE_SIGNALS = text(
    """
    DELETE FROM talk_signal
    WHERE id IN (
        SELECT s.id FROM talk_signal s
        WHERE s.jurisdiction_id = :jurisdiction_id AND s.at < :cutoff
          AND NOT EXISTS (
              SELECT 1 FROM talk_alert_member m JOIN talk_alert a ON a.id = m.alert_id
              WHERE m.signal_id = s.id AND a.status = 'open')
        LIMIT :batch)
    """
)
JURISDICTIONS_WITH_SIGNALS = text(
    "SELECT id FROM jurisdiction j"
    " WHERE EXISTS (SELECT 1 FROM talk_signal s WHERE s.jurisdiction_id = j.id AND s.at < :cutoff)"
)
