"""Reading reports back. Contact details only for the report's own reporter and staff."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.auth.principal import Principal
from app.core.errors import NotFound
from app.media.links import photos_of_reports
from app.reports.schemas import ContactOut, LocationOut, ReportOut

_REPORTS = """
    SELECT r.id, r.public_id, r.reporter_id, r.reporter_name, r.jurisdiction_id, r.channel,
           ST_X(r.location) AS lon, ST_Y(r.location) AS lat, r.location_accuracy_m,
           r.location_source, r.address, r.description, r.attributes, r.reported_at,
           r.received_at, s.code AS service_code, t.reference
    FROM report r JOIN service s ON s.id = r.service_id JOIN ticket t ON t.id = r.ticket_id
"""


def can_see_contacts(viewer: Principal | None, reporter_id: Any, jurisdiction_id: int) -> bool:
    if viewer is None:
        return False
    if viewer.user_id is not None and viewer.user_id == reporter_id:
        return True
    return viewer.at_least(Role.staff) and (
        viewer.is_admin or viewer.jurisdiction_id == jurisdiction_id
    )


async def report_by_id(
    session: AsyncSession, public_id: uuid.UUID, *, viewer: Principal | None, base_url: str
) -> ReportOut:
    row = (
        await session.execute(text(_REPORTS + " WHERE r.public_id = :id"), {"id": public_id})
    ).first()
    if row is None:
        raise NotFound(f"No report {public_id}")
    private = can_see_contacts(viewer, row.reporter_id, row.jurisdiction_id)
    own = viewer is not None and viewer.user_id is not None and viewer.user_id == row.reporter_id
    built = await _build(
        session, [row], base_url, private_ids={row.id} if private else set(), mask_tokens=not own
    )
    return built[0]


async def reports_of_user(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    base_url: str,
    limit: int,
    before: uuid.UUID | None,
) -> list[ReportOut]:
    sql = _REPORTS + " WHERE r.reporter_id = :user_id"
    params: dict[str, Any] = {"user_id": user_id, "limit": limit}
    if before is not None:
        sql += " AND r.id < (SELECT id FROM report WHERE public_id = :before)"
        params["before"] = before
    rows = (await session.execute(text(sql + " ORDER BY r.id DESC LIMIT :limit"), params)).all()
    return await _build(session, rows, base_url, private_ids={r.id for r in rows})


# Device push addresses: a token lets whoever holds it send to the phone. Staff need to know
# that one exists (the reporter will hear back), never its value.
_PUSH_KINDS = frozenset({"fcm", "webpush"})


def _masked(kind: str, address: str) -> str:
    if kind not in _PUSH_KINDS or len(address) <= 12:
        return address if kind not in _PUSH_KINDS else "…"
    return f"{address[:6]}…{address[-4:]}"


async def _build(
    session: AsyncSession,
    rows: Any,
    base_url: str,
    *,
    private_ids: set[int],
    mask_tokens: bool = False,
) -> list[ReportOut]:
    """Reports as answered; contacts only for ``private_ids``, push tokens masked unless the
    viewer is the reporter (``mask_tokens`` False)."""
    ids = [r.id for r in rows]
    photos = await photos_of_reports(session, ids, base_url)
    contacts: dict[int, list[ContactOut]] = defaultdict(list)
    if private_ids:
        for c in await session.execute(
            text(
                "SELECT rc.report_id, c.kind, c.address, c.display_name FROM report_contact rc"
                " JOIN contact c ON c.id = rc.contact_id WHERE rc.report_id = ANY(:ids)"
                " ORDER BY c.id"
            ),
            {"ids": list(private_ids)},
        ):
            address = _masked(c.kind, c.address) if mask_tokens else c.address
            contacts[c.report_id].append(
                ContactOut(kind=c.kind, address=address, display_name=c.display_name)
            )
    return [
        ReportOut(
            id=r.public_id,
            service_code=r.service_code,
            channel=r.channel,
            location=LocationOut(lon=r.lon, lat=r.lat, accuracy_m=r.location_accuracy_m),
            location_source=r.location_source,
            address=r.address,
            description=r.description,
            attributes=r.attributes,
            reported_at=r.reported_at,
            received_at=r.received_at,
            photos=photos.get(r.id, []),
            ticket_reference=r.reference,
            contacts=contacts.get(r.id, []) if r.id in private_ids else None,
            reporter_name=r.reporter_name if r.id in private_ids else None,
        )
        for r in rows
    ]
