"""The gazetteer's street list of a jurisdiction.

It is written in the city file's ``social.streets`` (where it first served posts) and
stored with that section (``social_settings``); read here so that every channel placing an
address uses the same list.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.geocoding.service import Street

_STREETS = text(
    """
    SELECT s->>'name' AS name, (s->>'lon')::float8 AS lon, (s->>'lat')::float8 AS lat
    FROM social_settings, jsonb_array_elements(coalesce(config->'streets', '[]'::jsonb)) s
    WHERE jurisdiction_id = :j
    """
)


async def streets(session: AsyncSession, jurisdiction_id: int) -> list[Street]:
    rows = await session.execute(_STREETS, {"j": jurisdiction_id})
    return [Street(r.name, r.lon, r.lat) for r in rows if r.name]
