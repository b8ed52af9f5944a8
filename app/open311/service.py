"""Open311 GeoReport v2 over Kerbside: what each resource holds, and POST as one more channel
of the one intake.

A service request is a **ticket** (its public reference is the ``service_request_id``): POST
files a report through ``submit_report``, which clusters it, and answers with the ticket the
report opened or joined; GET reads tickets. Open311's ``status`` is open or closed; the
ticket's own status goes in the extensions (``detailed_status``).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.contacts.models import ContactKind
from app.contacts.service import ContactSpec
from app.core import clock
from app.core.errors import BadRequest, Forbidden, InvalidInput, NotFound
from app.geocoding.service import Bbox, Gazetteer, Geocoder, geocode_address
from app.jurisdictions.catalog import JurisdictionInfo
from app.media.links import photo_ref
from app.media.service import AcceptedPhoto
from app.open311 import media as open311_media
from app.open311 import repository as sql
from app.open311.formats import parse_datetime, timestamp
from app.open311.params import Params, invalid
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.tickets.events import add_event
from app.tickets.models import OPEN_STATUSES, EventKind, TicketStatus

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
MAX_DESCRIPTION = 4000  # the spec's limit
MAX_ADDRESS = 500  # of an address sent to the geocoder
MAX_RADIUS_M = 50_000.0
DEFAULT_RADIUS_M = 1_000.0

# FixMyStreet's extended update statuses (lower case in GET) for Kerbside's statuses.
FMS_STATUS: Mapping[str, str] = {
    TicketStatus.open: "open",
    TicketStatus.acknowledged: "investigating",
    TicketStatus.scheduled: "action_scheduled",
    TicketStatus.in_progress: "in_progress",
    TicketStatus.fixed: "fixed",
    TicketStatus.closed: "closed",
    TicketStatus.duplicate: "duplicate",
    TicketStatus.not_our_responsibility: "not_councils_responsibility",
    TicketStatus.rejected: "no_further_action",
    TicketStatus.reopened: "reopen",
}
# What a client is told each datatype takes, when the city file says nothing.
DATATYPE_HINTS: Mapping[str, str] = {
    "string": "a line of text",
    "number": "a number",
    "datetime": "a date and time, ISO 8601 (2026-11-24T09:30:00Z)",
    "text": "text, several lines allowed",
    "singlevaluelist": "one of the values' keys",
    "multivaluelist": "any of the values' keys, each as attribute[CODE][]",
}


def open_or_closed(status: str) -> str:
    return "open" if status in OPEN_STATUSES else "closed"


def language_of(params: Params) -> str:
    locale = params.get("locale") or "en"
    return locale.replace("-", "_").split("_")[0].lower()[:8] or "en"


# -- jurisdictions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JurisdictionRow:
    id: int
    slug: str
    name: str


def jurisdiction_of(
    known: Sequence[JurisdictionRow],
    given: str | None,
    *,
    required: bool,
    ignore_unknown: bool,
) -> JurisdictionRow | None:
    """The jurisdiction a request names. Unknown: 404 (or, with ``ignore_unknown`` and one
    jurisdiction only, that one). Missing: the only one; with several, None, or a 400 when
    the resource is per jurisdiction (``required``)."""
    if given is not None:
        for row in known:
            if row.slug == given:
                return row
        if ignore_unknown and len(known) == 1:
            return known[0]
        raise NotFound(
            f"jurisdiction_id {given!r} not found; this server serves "
            + (", ".join(r.slug for r in known) or "no jurisdiction yet")
        )
    if len(known) == 1:
        return known[0]
    if required:
        raise BadRequest(
            "jurisdiction_id is required: this server serves "
            + (", ".join(r.slug for r in known) or "no jurisdiction yet")
        )
    return None


# -- services -----------------------------------------------------------------------------------


def _text(per_language: Mapping[str, Any] | None, language: str) -> Any:
    if not per_language:
        return None
    return per_language.get(language) or per_language.get("en") or next(iter(per_language.values()))


def service_item(row: Any, language: str) -> dict[str, Any]:
    name = _text(row.names, language) or row.code
    keywords = _text(row.keywords, language) or []
    return {
        "service_code": row.code,
        "service_name": name,
        "description": _text(row.descriptions, language) or name,
        "metadata": bool(row.attributes),
        "type": "realtime",
        "keywords": ", ".join(keywords) if keywords else None,
        "group": row.group,
    }


def attribute_items(attributes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The city file's attributes as Open311 defines them: every field present, ``order``
    1, 2, 3... in the city's order, a datatype description a form can show."""
    ordered = sorted(
        enumerate(attributes),
        key=lambda pair: (pair[1].get("order") is None, pair[1].get("order") or 0, pair[0]),
    )
    items = []
    for position, (_, attribute) in enumerate(ordered, start=1):
        datatype = attribute.get("datatype", "string")
        items.append(
            {
                "variable": bool(attribute.get("variable", True)),
                "code": attribute["code"],
                "datatype": datatype,
                "required": bool(attribute.get("required", False)),
                "datatype_description": attribute.get("datatype_description")
                or DATATYPE_HINTS.get(datatype, datatype),
                "order": position,
                "description": attribute.get("description") or attribute["code"],
                "values": [
                    {"key": str(v.get("key")), "name": str(v.get("name") or v.get("key"))}
                    for v in attribute.get("values") or []
                ],
            }
        )
    return items


# -- requests -----------------------------------------------------------------------------------


def request_item(row: Any, base_url: str, *, extended: bool) -> dict[str, Any]:
    """One ticket as an Open311 request: public fields only."""
    item: dict[str, Any] = {
        "service_request_id": row.reference,
        "status": open_or_closed(row.status),
        "status_notes": row.status_notes,
        "service_name": row.service_name,
        "service_code": row.service_code,
        "description": row.description,
        "agency_responsible": row.agency,
        "service_notice": None,
        "requested_datetime": timestamp(row.first_reported_at),
        "updated_datetime": timestamp(row.updated_at),
        "expected_datetime": timestamp(row.expected_at),
        # Where, to the public: the district and the city (the street address is staff's).
        "address": ", ".join(p for p in (row.area_name, row.agency) if p),
        "address_id": None,
        "zipcode": None,
        "lat": round(row.lat, 7),
        "long": round(row.lon, 7),
        "media_url": _photo_url(base_url, row.photo),
    }
    if extended:
        item["extended_attributes"] = {
            "detailed_status": row.status,
            "reference": row.reference,
            "report_count": row.report_count,
            "supporter_count": row.supporter_count,
            "merged_into": row.merged_into,
            "acknowledged_datetime": timestamp(row.acknowledged_at),
            "fixed_datetime": timestamp(row.fixed_at),
            "closed_datetime": timestamp(row.closed_at),
            "media_urls": [_photo_url(base_url, p) for p in row.photos],
            "url": f"{base_url}/v1/tickets/{row.reference}",
        }
    return item


def _photo_url(base_url: str, public_id: Any) -> str | None:
    return photo_ref(base_url, public_id, 0, 0).url if public_id is not None else None


def update_item(row: Any) -> dict[str, Any]:
    status = row.status or TicketStatus.open
    return {
        "update_id": str(row.id),
        "service_request_id": row.reference,
        "status": FMS_STATUS.get(status, open_or_closed(status)),
        "updated_datetime": timestamp(row.created_at),
        "description": row.note or "",
        "media_url": "",
        "external_status_code": status,
    }


def window(
    start: datetime | None, end: datetime | None, *, now: datetime, days: int
) -> tuple[datetime | None, datetime | None]:
    """The spec's default: the most recent ``days`` days when neither end is given."""
    if start is None and end is None:
        return now - timedelta(days=days), None
    if start is not None and end is not None and end < start:
        raise invalid("end_date", "end_date is before start_date")
    return start, end


def bbox_of(raw: str | None) -> tuple[float, float, float, float] | None:
    """6aika's ``bbox``: ``long1,lat1,long2,lat2`` (``;`` also separates)."""
    if raw is None:
        return None
    parts = raw.replace(";", ",").split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise invalid("bbox", "four numbers: long1,lat1,long2,lat2") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise invalid("bbox", "four numbers: long1,lat1,long2,lat2")
    x0, y0, x1, y1 = values
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    if x0 < -180 or x1 > 180 or y0 < -90 or y1 > 90:
        raise invalid("bbox", "longitudes within ±180, latitudes within ±90")
    return x0, y0, x1, y1


# -- POST requests ------------------------------------------------------------------------------


def submitter_of(principal: Principal) -> Submitter:
    """An API key files as an identified client of its own jurisdiction (never trusted: an
    Open311 client cannot backdate)."""
    return Submitter(
        user_id=principal.user_id,
        label=principal.label,
        trusted=False,
        identified=True,
        jurisdiction_id=principal.jurisdiction_id,
        bound=principal.kind == "api_key",
    )


def answers(
    definitions: Sequence[Mapping[str, Any]], given: Mapping[str, list[str]]
) -> dict[str, Any]:
    """Form values of the service's questions as the intake takes them: numbers as numbers,
    a multivaluelist as a list (from ``attribute[C][]`` or a repeated ``attribute[C]``), one
    value otherwise; a datetime in UTC. Codes the service does not ask are let through by
    Open311 servers (open311-adapter) and dropped here; the intake checks the rest
    (required, list keys), so the rules are the app's."""
    out: dict[str, Any] = {}
    for definition in definitions:
        code = definition["code"]
        if not definition.get("variable", True) or code not in given or not given[code]:
            continue
        values = [v.strip() for v in given[code]]
        kind = definition.get("datatype", "string")
        name = f"attribute[{code}]"
        if kind == "multivaluelist":
            out[code] = list(dict.fromkeys(values))
        elif kind == "number":
            try:
                number = float(values[-1])
            except ValueError:
                raise invalid(name, f"must be a number, not {values[-1]!r}") from None
            if not math.isfinite(number):
                raise invalid(name, "must be a finite number")
            out[code] = int(number) if number.is_integer() and abs(number) < 2**53 else number
        elif kind == "datetime":
            try:
                out[code] = timestamp(parse_datetime(values[-1]))
            except ValueError:
                raise invalid(name, f"must be an ISO 8601 date-time, not {values[-1]!r}") from None
        else:
            out[code] = values[-1]
    return out


def address_of(params: Params) -> tuple[str, str] | None:
    """The address a request gives instead of coordinates: ``(field, text)``.
    ``address_string`` first; an ``address_id`` is looked up as text too, except
    FixMyStreet's ``#NOTPINPOINTED#``-style markers, which say there is no address."""
    text = params.get("address_string")
    if text is not None:
        return "address_string", text
    given = params.get("address_id")
    if given is not None and not given.startswith("#"):
        return "address_id", given
    return None


async def place_of(
    params: Params,
    jurisdiction: JurisdictionInfo,
    *,
    geocoder: Geocoder | None,
    gazetteer: Callable[[], Awaitable[Gazetteer]],
    has_photos: bool,
) -> Place | None:
    """Where a POST says the problem is: ``lat``/``long``; else its address, placed by the
    geocoder or the city's street gazetteer, inside the jurisdiction; else None when a photo
    may carry GPS in its EXIF (the intake reads it). 400 otherwise."""
    lat, lon = params.number("lat"), params.number("long")
    if (lat is None) != (lon is None):
        raise invalid("lat/long", "send both lat and long")
    if lat is not None and lon is not None:
        return Place(lon, lat, LocationSource.device)
    address = address_of(params)
    if address is not None:
        name, text = address
        bbox: Bbox = tuple(jurisdiction.boundary.bounds)
        found = await geocode_address(
            text[:MAX_ADDRESS], bbox, geocoder=geocoder, gazetteer=await gazetteer()
        )
        if found is not None:
            if not jurisdiction.contains(found.lon, found.lat):
                raise invalid(name, f"{text!r} is outside {jurisdiction.name}")
            return Place(found.lon, found.lat, LocationSource.address, found.accuracy_m)
    if has_photos:
        return None
    raise invalid(
        "lat/long",
        "send lat and long (WGS84), or a photo with GPS in its EXIF"
        + (
            f": {address[0]} {address[1]!r} could not be placed on the map"
            if address is not None
            else ""
        ),
    )


def submission_of(
    params: Params,
    submitter: Submitter,
    *,
    jurisdiction: str,
    service_code: str,
    definitions: Sequence[Mapping[str, Any]],
    photos: Sequence[AcceptedPhoto],
    place: Place | None,
) -> Submission:
    """An Open311 POST as the intake takes it from any channel (``place``: ``place_of``)."""
    title, description = params.get("title"), params.get("description")
    if title and description and title not in description:
        description = f"{title}\n\n{description}"
    description = description or title
    if description is not None:
        description = description.replace("\r\n", "\n")
        if len(description) > MAX_DESCRIPTION:
            raise invalid("description", f"at most {MAX_DESCRIPTION} characters")
    names = [n for n in (params.get("first_name"), params.get("last_name")) if n and n != "-"]
    name = " ".join(names) or None
    contacts = [
        ContactSpec(kind, address, display_name=name)
        for kind, address in (
            (ContactKind.email, params.get("email")),
            (ContactKind.phone, params.get("phone")),
        )
        if address
    ]
    alerts = (params.get("email_alerts_requested") or "").lower()
    return Submission(
        channel=Channel.open311,
        submitter=submitter,
        service_code=service_code,
        place=place,
        jurisdiction=jurisdiction,
        description=description,
        address=params.get("address_string"),
        attributes=answers(definitions, params.attributes()),
        contacts=contacts,
        updates=True if alerts == "true" and contacts else None,
        reporter_name=name,
        locale=params.get("locale"),
        media=photos,
    )


# -- POST servicerequestupdates (FixMyStreet's push of a citizen's update) --------------------

# The statuses FixMyStreet sends (upper case); with extended statuses on, the long list.
UPDATE_STATUSES = frozenset(
    {
        "OPEN",
        "CLOSED",
        "FIXED",
        "IN_PROGRESS",
        "ACTION_SCHEDULED",
        "INVESTIGATING",
        "DUPLICATE",
        "NOT_COUNCILS_RESPONSIBILITY",
        "NO_FURTHER_ACTION",
        "INTERNAL_REFERRAL",
        "FOR_TRIAGE",
        "CANCELLED",
        "REOPEN",
        "UNCHANGED",
        "PLANNED",
    }
)
# A citizen saying it is done: noted for staff, who decide (the ticket does not move).
SAYS_DONE = frozenset({"CLOSED", "FIXED", "CANCELLED", "NO_FURTHER_ACTION"})
MAX_UPDATE_ID = 100


@dataclass(frozen=True)
class CitizenUpdate:
    """A FixMyStreet update as posted: who and whose e-mail are not kept (FixMyStreet has
    them; Kerbside's retention could not reach a name inside a timeline line)."""

    service_request_id: str
    update_id: str
    status: str
    updated_at: datetime
    description: str
    media_urls: tuple[str, ...]

    @property
    def note(self) -> str:
        lines = [self.description] if self.description else []
        if self.status in SAYS_DONE:
            lines.append(
                f"(Marked {self.status} on FixMyStreet by the person who wrote this; the"
                " ticket's status is for staff to change.)"
            )
        if self.media_urls:
            lines.append("Photos: " + " ".join(self.media_urls))
        return "\n\n".join(lines)


def citizen_update_of(params: Params, media_urls: Sequence[str]) -> CitizenUpdate:
    """The parameters of ``POST servicerequestupdates``, checked (400 naming the field)."""
    missing = [
        name
        for name in ("service_request_id", "update_id", "status", "updated_datetime")
        if params.get(name) is None
    ]
    description = (params.get("description") or "").replace("\r\n", "\n")
    if not description and not media_urls:
        missing.append("description")
    if missing:
        raise InvalidInput(
            "Missing: " + ", ".join(missing),
            errors=[
                {"field": name, "message": "is required", "type": "missing"} for name in missing
            ],
        )
    reference = params.get("service_request_id") or ""
    update_id = params.get("update_id") or ""
    status = params.get("status") or ""
    when = params.time_of("updated_datetime") or clock.now()  # present: checked above
    if len(update_id) > MAX_UPDATE_ID:
        raise invalid("update_id", f"at most {MAX_UPDATE_ID} characters")
    if len(reference) > 100:
        raise invalid("service_request_id", "at most 100 characters")
    if status.upper() not in UPDATE_STATUSES:
        raise invalid("status", "OPEN, CLOSED, or one of FixMyStreet's extended statuses")
    if len(description) > MAX_DESCRIPTION:
        raise invalid("description", f"at most {MAX_DESCRIPTION} characters")
    return CitizenUpdate(
        reference.upper(), update_id, status.upper(), when, description, tuple(media_urls)
    )


async def record_update(session: AsyncSession, principal: Principal, update: CitizenUpdate) -> int:
    """A citizen's update as an internal comment on the ticket's timeline, once per
    ``update_id`` (a retried push answers the first comment's id). The key acts for its own
    jurisdiction only. The ticket's status never changes here: staff decide."""
    ticket = (
        await session.execute(sql.TICKET_TO_UPDATE, {"reference": update.service_request_id})
    ).first()
    if ticket is None:
        raise NotFound(f"service_request_id {update.service_request_id!r} not found")
    if ticket.jurisdiction_id != principal.jurisdiction_id:
        raise Forbidden("This api_key updates requests in its own jurisdiction only")
    known = (
        await session.execute(
            sql.UPDATE_RECORDED, {"ticket_id": ticket.id, "update_id": update.update_id}
        )
    ).scalar_one_or_none()
    if known is not None:
        return int(known)
    # Internal, as a social post linked to a ticket is: the words are the citizen's own (they
    # may carry personal details), FixMyStreet already shows them, and the ticket's
    # subscribers are not told of another person's comment. Staff answer in public.
    event_id = await add_event(
        session,
        ticket.id,
        EventKind.comment,
        at=clock.now(),
        public=False,
        actor=principal,
        note=update.note,
        data={
            "open311_update_id": update.update_id,
            "status": update.status,
            "updated_datetime": timestamp(update.updated_at),
            "media_url": list(update.media_urls),
        },
    )
    if update.media_urls:  # fetched onto the ticket after the commit, by a job
        await open311_media.ask_for_update(session, event_id, ticket.id, update.media_urls)
    return event_id
