"""What other domains use of jurisdictions in their own SQL: the area at a point.

The text is part of hot statements (the intake's find-and-file CTE embeds it): change it
knowingly, bench/ replays them.
"""

from __future__ import annotations


def area_at_sql(point_expr: str, jurisdiction_expr: str) -> str:
    """The area containing a point: a district first, then any other kind (on ``area_part``)."""
    return f"""(SELECT a.id FROM area_part p JOIN area a ON a.id = p.area_id
                WHERE a.jurisdiction_id = {jurisdiction_expr}
                  AND ST_Intersects(p.geom, {point_expr})
                ORDER BY (a.kind = 'district') DESC, a.id LIMIT 1)"""  # noqa: S608 (code only)
