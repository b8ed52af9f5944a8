"""Broadcasts: the city's emergency notice to every subscriber inside a polygon, on all their
channels, and its CAP 1.2 (Common Alerting Protocol) form.

Queueing runs as a job in batches by contact id, each batch committed with its progress, so a
worker that dies mid-way resumes after the last contact queued; ``(contact, broadcast)`` is
unique, so nobody is queued twice. Recipients: the contacts of every live area subscription
whose place meets the polygon, and every other verified channel of the same person, that
are reachable and consent to area updates or broadcasts.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import clock

BATCH = 10_000
CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"

_QUEUE_BATCH = text(
    """
    WITH b AS (SELECT id, jurisdiction_id, polygon FROM broadcast WHERE id = :id),
    -- The next contacts following a place in the city, in contact order: each batch tests
    -- only the subscriptions in its own range of contacts against the polygon. (Testing first
    -- and then taking the first 10,000 tested every later subscription again for each batch,
    -- and so does the spatial index in a city-wide broadcast: quadratic.)
    walked AS (
        SELECT DISTINCT a.contact_id FROM area_subscription a
        WHERE a.contact_id > :after AND a.ended_at IS NULL
          AND a.jurisdiction_id = (SELECT jurisdiction_id FROM b)
        ORDER BY a.contact_id LIMIT :batch
    ),
    -- Those with a place that meets the polygon: one range of the contact index (``IS
    -- TRUE`` keeps the planner from testing through the spatial index instead). The polygon
    -- goes first: PostGIS prepares the argument that repeats, and this way round the test
    -- takes half the time.
    followers AS (
        SELECT DISTINCT a.contact_id FROM area_subscription a, b
        WHERE a.contact_id > :after AND a.contact_id <= (SELECT max(contact_id) FROM walked)
          AND a.ended_at IS NULL AND a.jurisdiction_id = b.jurisdiction_id
          AND ST_Intersects(b.polygon, a.geom) IS TRUE
    ),
    -- Them, and every other channel of the same people (queued once, whichever batch
    -- meets them first: (contact, broadcast) is unique).
    candidates AS (
        SELECT contact_id AS id FROM followers
        UNION
        SELECT c.id FROM contact f JOIN contact c ON c.user_id = f.user_id
        WHERE f.id IN (SELECT contact_id FROM followers) AND f.user_id IS NOT NULL
    ),
    people AS (
        SELECT c.id, c.kind FROM candidates JOIN contact c ON c.id = candidates.id
        WHERE c.verified_at IS NOT NULL AND c.disabled_at IS NULL
          -- The person consented, on this channel or on another of theirs (two lookups by
          -- index; one join with an OR between them reads every consent for each contact).
          AND (EXISTS (SELECT 1 FROM contact_consent k
                       WHERE k.contact_id = c.id AND k.withdrawn_at IS NULL
                         AND k.purpose IN ('area_updates', 'broadcasts'))
               OR c.user_id IS NOT NULL AND EXISTS (
                       SELECT 1 FROM contact kc JOIN contact_consent k ON k.contact_id = kc.id
                       WHERE kc.user_id = c.user_id AND k.withdrawn_at IS NULL
                         AND k.purpose IN ('area_updates', 'broadcasts')))
    ),
    queued AS (
        INSERT INTO notification (contact_id, broadcast_id, event_kind, channel, reason)
        SELECT people.id, :id, 'broadcast', people.kind, 'broadcast' FROM people
        ON CONFLICT (contact_id, broadcast_id) DO NOTHING
        RETURNING id, contact_id, channel
    ),
    jobs AS (
        SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(
            'notify', 'deliver_notifications', 0, NULL, NULL, '{}'::jsonb, NULL
        )::procrastinate_job_to_defer_v1]) FROM (SELECT 1 FROM queued LIMIT 1) AS any_row
    )
    SELECT (SELECT max(contact_id) FROM walked) AS through,
           (SELECT count(*) FROM walked) AS seen,
           (SELECT coalesce(jsonb_object_agg(channel, n), '{}') FROM (
                SELECT channel, count(*) AS n FROM queued GROUP BY channel) c) AS counts,
           (SELECT count(*) FROM jobs) AS deferred
    """
)

_PROGRESS = text(
    """
    UPDATE broadcast SET queued_through_contact = :through,
        counts = (SELECT coalesce(jsonb_object_agg(key, total), '{}') FROM (
            SELECT key, sum(value::int) AS total
            FROM (SELECT * FROM jsonb_each_text(broadcast.counts)
                  UNION ALL SELECT * FROM jsonb_each_text(CAST(:counts AS jsonb))) x
            GROUP BY key) y),
        status = CASE WHEN :done THEN 'queued' ELSE status END,
        queued_at = CASE WHEN :done THEN :at ELSE queued_at END
    WHERE id = :id
    RETURNING counts
    """
)


async def queue_batch(session: AsyncSession, broadcast_id: int) -> tuple[bool, dict[str, int]]:
    """Queue the next batch of recipients (in the caller's transaction); returns whether the
    broadcast is fully queued, and its counts per channel so far."""
    state = (
        await session.execute(
            text("SELECT status, queued_through_contact FROM broadcast WHERE id = :id FOR UPDATE"),
            {"id": broadcast_id},
        )
    ).one()
    if state.status != "queueing":
        counts = (
            await session.execute(
                text("SELECT counts FROM broadcast WHERE id = :id"), {"id": broadcast_id}
            )
        ).scalar_one()
        return True, dict(counts)
    row = (
        await session.execute(
            _QUEUE_BATCH,
            {"id": broadcast_id, "after": state.queued_through_contact, "batch": BATCH},
        )
    ).one()
    done = row.seen < BATCH
    counts = (
        await session.execute(
            _PROGRESS,
            {
                "id": broadcast_id,
                "through": row.through or state.queued_through_contact,
                "counts": orjson.dumps(row.counts).decode(),
                "done": done,
                "at": clock.now(),
            },
        )
    ).scalar_one()
    return done, dict(counts)


# -- CAP 1.2 ----------------------------------------------------------------------------------


def _cap_time(at: datetime) -> str:
    """CAP's dateTime: ``2026-12-04T14:00:00+00:00`` (no ``Z``, no fractions)."""
    return at.astimezone(UTC).replace(microsecond=0).isoformat()


def _cap_polygons(geojson: dict[str, Any]) -> list[str]:
    """Each exterior ring as CAP wants it: ``lat,lon`` pairs, space separated, closed."""
    polygons = (
        geojson["coordinates"] if geojson["type"] == "MultiPolygon" else [geojson["coordinates"]]
    )
    return [" ".join(f"{lat:.6f},{lon:.6f}" for lon, lat in polygon[0]) for polygon in polygons]


def cap_alert(row: Any, *, sender: str, sender_name: str) -> ET.Element:
    """One broadcast as a CAP 1.2 ``alert`` element."""
    alert = ET.Element("alert", xmlns=CAP_NS)
    for tag, value in (
        ("identifier", str(row.public_id)),
        ("sender", sender),
        ("sent", _cap_time(row.created_at)),
        ("status", "Actual"),
        ("msgType", "Alert"),
        ("scope", "Public"),
    ):
        ET.SubElement(alert, tag).text = value
    info = ET.SubElement(alert, "info")
    for tag, value in (
        ("language", row.language),
        ("category", row.category),
        ("event", row.event),
        ("urgency", row.urgency),
        ("severity", row.severity),
        ("certainty", row.certainty),
    ):
        ET.SubElement(info, tag).text = value
    if row.expires_at is not None:
        ET.SubElement(info, "expires").text = _cap_time(row.expires_at)
    ET.SubElement(info, "senderName").text = sender_name
    ET.SubElement(info, "headline").text = row.headline
    ET.SubElement(info, "description").text = row.body
    area = ET.SubElement(info, "area")
    ET.SubElement(area, "areaDesc").text = row.area_description
    for ring in _cap_polygons(orjson.loads(row.geojson)):
        ET.SubElement(area, "polygon").text = ring
    return alert
