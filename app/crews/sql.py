"""What other domains use of crews in their own SQL: the territory and a crew's jurisdiction.

``territory_sql`` is the one definition of "a ticket a crew may see": every query that
narrows tickets to a crew (work orders, the day route, a single work order, the workflow's
crew gate) uses it. The text is part of hot statements: change it knowingly (bench/ replays
them).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import HotStatement

# The crew's jurisdiction, for read-pool connections as well as sessions (work-order scopes).
CREW_JURISDICTION = HotStatement("SELECT jurisdiction_id FROM crew WHERE id = :id")


def territory_sql(alias: str = "t", param: str = "crew_id") -> str:
    """SQL: ticket ``alias`` is assigned to crew ``:param`` or lies in one of its areas.

    ``alias`` and ``param`` are code constants, never input; the crew id is bound.
    """
    return (
        f"({alias}.crew_id = :{param} OR {alias}.area_id IN"  # noqa: S608
        f" (SELECT ca.area_id FROM crew_area ca WHERE ca.crew_id = :{param}))"
    )


async def ticket_in_territory(session: AsyncSession, ticket_id: int, crew_id: int) -> bool:
    """Whether the ticket is the crew's: assigned to it or in one of its areas."""
    row = await session.execute(
        text("SELECT 1 FROM ticket t WHERE t.id = :ticket_id AND " + territory_sql()),  # noqa: S608
        {"ticket_id": ticket_id, "crew_id": crew_id},
    )
    return row.first() is not None
