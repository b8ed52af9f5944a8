"""HTTP for places: citizens follow an area or "my street" (area subscriptions); staff
broadcast an emergency notice to everyone following a place inside a polygon, which is also
published as CAP 1.2 (a feed, and one document per notice)."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import text

from app.auth.principal import CurrentPrincipal, StaffPrincipal, ensure_same_jurisdiction
from app.contacts import service as contacts
from app.contacts.models import ConsentMethod, Purpose
from app.contacts.service import Consent
from app.core.errors import BadRequest, InvalidInput, NotFound
from app.core.jobs import QUEUE_BROADCAST, defer
from app.db import SessionDep
from app.notify.broadcasts import CAP_NS, cap_alert

router = APIRouter(tags=["places"])

CAP_XML = "application/cap+xml"
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Position = Annotated[
    list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=2, max_length=3)
]


Topic = Literal["new_tickets", "fixes"]
TOPICS: tuple[Topic, ...] = ("new_tickets", "fixes")


class PointIn(BaseModel):
    lon: Longitude
    lat: Latitude


class AreaSubscriptionIn(BaseModel):
    """Follow a place: one of the city's areas (``area``), or a circle around a point."""

    # One of the caller's own contacts (GET /v1/me/contacts). Bounded by what JSON numbers
    # carry exactly (2**53 - 1): a bigint id never gets near it.
    contact_id: int = Field(ge=1, le=2**53 - 1)
    jurisdiction: Annotated[str, Field(min_length=1, max_length=100)]
    area: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    point: PointIn | None = None
    radius_m: float = Field(default=250.0, gt=0, le=2000)
    label: Annotated[str, Field(max_length=200)] | None = None
    topics: list[Topic] = Field(default_factory=lambda: list(TOPICS), min_length=1, max_length=2)
    mode: Literal["immediate", "digest"] = Field(
        default="immediate",
        description="immediate: a message per ticket; digest: one message each morning",
    )

    @model_validator(mode="after")
    def _one_place(self) -> AreaSubscriptionIn:
        if (self.area is None) == (self.point is None):
            raise ValueError("give exactly one of area or point")
        return self


class AreaSubscriptionOut(BaseModel):
    id: int
    contact_id: int
    jurisdiction: str
    area: str | None
    label: str | None
    topics: list[str]
    mode: str
    created_at: datetime


class PolygonIn(BaseModel):
    type: Literal["Polygon", "MultiPolygon"]
    coordinates: list[Any] = Field(min_length=1, max_length=100)


class BroadcastIn(BaseModel):
    """An emergency notice (the CAP 1.2 ``info`` block's words and value sets)."""

    jurisdiction: Annotated[str, Field(min_length=1, max_length=100)]
    polygon: PolygonIn
    area_description: Annotated[str, Field(min_length=1, max_length=500)]
    headline: Annotated[str, Field(min_length=1, max_length=160)]
    body: Annotated[str, Field(min_length=1, max_length=2000)]
    event: Annotated[str, Field(min_length=1, max_length=100)] = "Emergency notice"
    category: Literal[
        "Geo",
        "Met",
        "Safety",
        "Security",
        "Rescue",
        "Fire",
        "Health",
        "Env",
        "Transport",
        "Infra",
        "CBRNE",
        "Other",
    ] = "Safety"
    severity: Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"] = "Severe"
    urgency: Literal["Immediate", "Expected", "Future", "Past", "Unknown"] = "Immediate"
    certainty: Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"] = "Observed"
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")] = "en"
    expires_at: datetime | None = None


class BroadcastOut(BaseModel):
    id: uuid.UUID
    jurisdiction: str
    headline: str
    status: str = Field(description="queueing while messages are being queued; then queued")
    counts: dict[str, int] = Field(description="Messages queued per channel so far")
    created_at: datetime
    queued_at: datetime | None
    cap_url: str


def _person(principal: Any) -> Any:
    if principal.user_id is None:
        raise BadRequest("API keys follow no places; sign in as a person")
    return principal.user_id


_JURISDICTION = text("SELECT id, name FROM jurisdiction WHERE slug = :slug")


async def _jurisdiction(session: SessionDep, slug: str) -> Any:
    row = (await session.execute(_JURISDICTION, {"slug": slug})).first()
    if row is None:
        raise InvalidInput(
            f"Unknown jurisdiction {slug!r}",
            errors=[{"field": "jurisdiction", "message": "unknown", "type": "value_error"}],
        )
    return row


@router.post(
    "/v1/me/area-subscriptions",
    response_model=AreaSubscriptionOut,
    status_code=201,
    summary="Follow a place: new tickets and fixes in an area, or around a point",
)
async def follow_place(
    given: AreaSubscriptionIn, principal: CurrentPrincipal, session: SessionDep
) -> AreaSubscriptionOut:
    user_id = _person(principal)
    mine = {c.id for c in await contacts.of_user(session, user_id)}
    if given.contact_id not in mine:
        raise InvalidInput(
            "contact_id is not one of your contacts (see GET /v1/me/contacts)",
            errors=[{"field": "contact_id", "message": "not yours", "type": "value_error"}],
        )
    jurisdiction = await _jurisdiction(session, given.jurisdiction)
    if given.area is not None:
        geom_sql = "SELECT id, geom FROM area WHERE jurisdiction_id = :j AND code = :code"
        area = (
            await session.execute(text(geom_sql), {"j": jurisdiction.id, "code": given.area})
        ).first()
        if area is None:
            raise InvalidInput(
                f"No area {given.area!r} in {given.jurisdiction}",
                errors=[{"field": "area", "message": "unknown", "type": "value_error"}],
            )
        place = {"area_id": area.id, "lon": None, "lat": None}
    else:
        assert given.point is not None
        place = {"area_id": None, "lon": given.point.lon, "lat": given.point.lat}
    row = (
        await session.execute(
            text(
                """
                INSERT INTO area_subscription (contact_id, jurisdiction_id, area_id, geom, label,
                                               topics, mode)
                SELECT :contact_id, :j, CAST(:area_id AS int),
                       CASE WHEN CAST(:area_id AS int) IS NOT NULL
                            THEN (SELECT geom FROM area WHERE id = :area_id)
                            ELSE ST_Multi(ST_Buffer(
                                ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography,
                                :radius_m)::geometry) END,
                       :label, :topics, :mode
                RETURNING id, created_at
                """
            ),
            {
                **place,
                "contact_id": given.contact_id,
                "j": jurisdiction.id,
                "radius_m": given.radius_m,
                "label": given.label,
                "topics": list(given.topics),
                "mode": given.mode,
            },
        )
    ).one()
    await contacts.give_consent(
        session,
        given.contact_id,
        Consent(Purpose.area_updates, ConsentMethod.account, evidence={"place": row.id}),
    )
    return AreaSubscriptionOut(
        id=row.id,
        contact_id=given.contact_id,
        jurisdiction=given.jurisdiction,
        area=given.area,
        label=given.label,
        topics=list(given.topics),
        mode=given.mode,
        created_at=row.created_at,
    )


@router.get(
    "/v1/me/area-subscriptions",
    response_model=list[AreaSubscriptionOut],
    summary="The places the signed-in person follows",
)
async def my_places(principal: CurrentPrincipal, session: SessionDep) -> list[AreaSubscriptionOut]:
    rows = await session.execute(
        text(
            "SELECT s.id, s.contact_id, j.slug, a.code, s.label, s.topics, s.mode, s.created_at"
            " FROM area_subscription s JOIN contact c ON c.id = s.contact_id"
            " JOIN jurisdiction j ON j.id = s.jurisdiction_id LEFT JOIN area a ON a.id = s.area_id"
            " WHERE c.user_id = :user AND s.ended_at IS NULL ORDER BY s.id"
        ),
        {"user": _person(principal)},
    )
    return [
        AreaSubscriptionOut(
            id=r.id,
            contact_id=r.contact_id,
            jurisdiction=r.slug,
            area=r.code,
            label=r.label,
            topics=list(r.topics),
            mode=r.mode,
            created_at=r.created_at,
        )
        for r in rows
    ]


@router.delete(
    "/v1/me/area-subscriptions/{subscription_id}",
    status_code=204,
    summary="Stop following a place",
    responses={404: {"description": "Not one of yours"}},
)
async def unfollow_place(
    subscription_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    principal: CurrentPrincipal,
    session: SessionDep,
) -> Response:
    ended = await session.execute(
        text(
            "UPDATE area_subscription s SET ended_at = now() FROM contact c"
            " WHERE s.id = :id AND c.id = s.contact_id AND c.user_id = :user"
            " AND s.ended_at IS NULL RETURNING s.id"
        ),
        {"id": subscription_id, "user": _person(principal)},
    )
    if ended.first() is None:
        raise NotFound(f"No place {subscription_id} of yours")
    return Response(status_code=204)


# -- broadcasts -------------------------------------------------------------------------------

_BROADCAST_ROW = """
    SELECT b.id, b.public_id, b.jurisdiction_id, j.slug, j.name AS jurisdiction_name,
           b.headline, b.body, b.event, b.category, b.severity, b.urgency, b.certainty,
           b.language, b.expires_at, b.area_description, b.status, b.counts, b.created_at,
           b.queued_at, ST_AsGeoJSON(b.polygon, 6) AS geojson
    FROM broadcast b JOIN jurisdiction j ON j.id = b.jurisdiction_id
"""


def _out(request: Request, row: Any) -> BroadcastOut:
    base = request.app.state.settings.public_base_url
    return BroadcastOut(
        id=row.public_id,
        jurisdiction=row.slug,
        headline=row.headline,
        status=row.status,
        counts=dict(row.counts),
        created_at=row.created_at,
        queued_at=row.queued_at,
        cap_url=f"{base}/v1/broadcasts/{row.public_id}.cap",
    )


@router.post(
    "/v1/broadcasts",
    response_model=BroadcastOut,
    status_code=202,
    summary="Broadcast an emergency notice to everyone following a place inside a polygon",
    description=(
        "Queues one message per channel of every person whose followed place meets the "
        "polygon (and who consents to area updates or broadcasts), in resumable batches; "
        "quiet hours do not apply. Progress and counts per channel: `GET "
        "/v1/broadcasts/{id}`. Published as CAP 1.2 at `/v1/broadcasts/{id}.cap`."
    ),
)
async def broadcast(
    given: BroadcastIn, staff: StaffPrincipal, request: Request, session: SessionDep
) -> BroadcastOut:
    jurisdiction = await _jurisdiction(session, given.jurisdiction)
    ensure_same_jurisdiction(staff, jurisdiction.id)
    valid = (
        await session.execute(
            text(
                "SELECT ST_IsValid(g) AND NOT ST_IsEmpty(g) AS ok, ST_IsValidReason(g) AS reason"
                " FROM (SELECT ST_SetSRID(ST_GeomFromGeoJSON(:g), 4326) AS g) x"
            ),
            {"g": json.dumps(given.polygon.model_dump())},
        )
    ).one()
    if not valid.ok:
        raise InvalidInput(
            f"The polygon is not valid: {valid.reason}",
            errors=[{"field": "polygon", "message": valid.reason, "type": "value_error"}],
        )
    row = (
        await session.execute(
            text(
                """
                INSERT INTO broadcast (jurisdiction_id, polygon, area_description, headline,
                    body, event, category, severity, urgency, certainty, language, expires_at,
                    created_by)
                VALUES (:j, ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(:g), 4326)), :area,
                    :headline, :body, :event, :category, :severity, :urgency, :certainty,
                    :language, :expires_at, :by)
                RETURNING id
                """
            ),
            {
                "j": jurisdiction.id,
                "g": json.dumps(given.polygon.model_dump()),
                "area": given.area_description,
                "headline": given.headline,
                "body": given.body,
                "event": given.event,
                "category": given.category,
                "severity": given.severity,
                "urgency": given.urgency,
                "certainty": given.certainty,
                "language": given.language,
                "expires_at": given.expires_at,
                "by": staff.label,
            },
        )
    ).one()
    await defer(session, QUEUE_BROADCAST, {"broadcast_id": row.id}, queue="notify")
    created = (
        await session.execute(text(_BROADCAST_ROW + " WHERE b.id = :id"), {"id": row.id})
    ).one()
    return _out(request, created)


def _cap_response(element: ET.Element) -> Response:
    body = ET.tostring(element, encoding="utf-8", xml_declaration=True)
    return Response(body, media_type=CAP_XML)


@router.get(
    "/v1/broadcasts/{broadcast_id}.cap",
    response_class=Response,
    summary="One broadcast as a CAP 1.2 alert",
    responses={200: {"content": {CAP_XML: {}}}, 404: {"description": "No such broadcast"}},
)
async def cap_document(broadcast_id: uuid.UUID, request: Request, session: SessionDep) -> Response:
    row = (
        await session.execute(
            text(_BROADCAST_ROW + " WHERE b.public_id = :id"), {"id": broadcast_id}
        )
    ).first()
    if row is None:
        raise NotFound(f"No broadcast {broadcast_id}")
    return _cap_response(
        cap_alert(row, sender=_sender(request, row), sender_name=row.jurisdiction_name)
    )


@router.get(
    "/v1/broadcasts/{broadcast_id}",
    response_model=BroadcastOut,
    summary="A broadcast's progress: messages queued per channel",
    responses={404: {"description": "No such broadcast"}},
)
async def broadcast_progress(
    broadcast_id: uuid.UUID, staff: StaffPrincipal, request: Request, session: SessionDep
) -> BroadcastOut:
    row = (
        await session.execute(
            text(_BROADCAST_ROW + " WHERE b.public_id = :id"), {"id": broadcast_id}
        )
    ).first()
    if row is None or not (staff.is_admin or staff.jurisdiction_id == row.jurisdiction_id):
        raise NotFound(f"No broadcast {broadcast_id}")
    return _out(request, row)


def _sender(request: Request, row: Any) -> str:
    host = request.app.state.settings.public_base_url.split("://", 1)[-1].split("/")[0]
    return f"{row.slug}@{host.split(':')[0]}"


@router.get(
    "/v1/broadcasts.cap",
    response_class=Response,
    summary="The latest broadcasts as a feed of CAP 1.2 alerts (an Atom feed)",
    responses={200: {"content": {"application/atom+xml": {}}}},
)
async def cap_feed(
    request: Request,
    session: SessionDep,
    jurisdiction: Annotated[str, Query(min_length=1, max_length=100)] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    rows = (
        await session.execute(
            text(
                _BROADCAST_ROW + " WHERE (CAST(:slug AS varchar) IS NULL OR j.slug = :slug)"
                " ORDER BY b.id DESC LIMIT :limit"
            ),
            {"slug": jurisdiction, "limit": limit},
        )
    ).all()
    atom = "http://www.w3.org/2005/Atom"
    base = request.app.state.settings.public_base_url
    feed = ET.Element("feed", xmlns=atom)
    ET.SubElement(feed, "id").text = f"{base}/v1/broadcasts.cap"
    ET.SubElement(feed, "title").text = "Kerbside broadcasts"
    ET.SubElement(feed, "updated").text = (
        rows[0].created_at.isoformat() if rows else "1970-01-01T00:00:00+00:00"
    )
    for row in rows:
        entry = ET.SubElement(feed, "entry")
        ET.SubElement(entry, "id").text = f"urn:uuid:{row.public_id}"
        ET.SubElement(entry, "title").text = row.headline
        ET.SubElement(entry, "updated").text = row.created_at.isoformat()
        ET.SubElement(entry, "link", href=f"{base}/v1/broadcasts/{row.public_id}.cap", type=CAP_XML)
        content = ET.SubElement(entry, "content", type=CAP_XML)
        content.append(
            cap_alert(row, sender=_sender(request, row), sender_name=row.jurisdiction_name)
        )
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return Response(body, media_type="application/atom+xml")


__all__ = ["CAP_NS", "router"]
