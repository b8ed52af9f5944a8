"""Report intake: the one write path every channel uses.

validate → jurisdiction and service → lock the neighbourhood → nearest open ticket of the
service within its radius and window → attach or open → contacts and subscriptions → photos
→ timeline event; all in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import idempotency
from app.core.errors import InvalidInput, NotAuthenticated
from app.jurisdictions.catalog import Catalog, JurisdictionInfo, ServiceInfo
from app.media.service import AcceptedPhoto
from app.reports import repository as sql
from app.reports.models import Channel, ContactKind, LocationSource
from app.reports.schemas import (
    ContactOut,
    LocationOut,
    Match,
    ReportAccepted,
    ReportIn,
    ReportOut,
)
from app.tickets.priority import priority_for
from app.tickets.schemas import PhotoRef, TicketSummary, summary_fields
from app.tickets.sla import deadline
from geo.distance import near_params
from geo.grid import lock_keys
from geo.validation import check_lonlat, swapped

# How far back a citizen's offline app may date a report; staff and imports may go further.
CITIZEN_BACKDATE_LIMIT = timedelta(days=7)
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Submitter:
    """Who submits: a signed-in person, an API client, or nobody we know."""

    user_id: uuid.UUID | None = None
    label: str = "anonymous"  # for the timeline: "user:<id>", "api-key:<name>", "import"
    trusted: bool = False  # staff, admin, trusted API keys, imports: may backdate freely
    identified: bool = False  # signed in or a known API client

    @property
    def idempotency_principal(self) -> str:
        return self.label if self.identified else "anonymous"


async def submit_report(
    session: AsyncSession,
    catalog: Catalog,
    submitter: Submitter,
    report: ReportIn,
    *,
    channel: Channel,
    base_url: str,
    photos: Sequence[AcceptedPhoto] = (),
    now: datetime | None = None,
    claim: idempotency.Claim | None = None,
) -> tuple[ReportAccepted, int]:
    """File ``report``; returns the answer for the client and the new report's id.

    With ``claim``, the idempotency key is claimed in the same transaction; if an earlier
    request already holds it, ``idempotency.AlreadyClaimed`` is raised before anything is
    written, and the caller replays that request's answer.
    """
    now = now or datetime.now(UTC)
    lon, lat, accuracy, source = _location(report, photos)
    jurisdiction = await _jurisdiction(session, catalog, report, lon, lat)
    if not submitter.identified and not jurisdiction.allow_anonymous:
        raise NotAuthenticated(f"{jurisdiction.name} takes reports from signed-in people only")
    jurisdiction, service = await _service(session, catalog, jurisdiction, report.service_code)
    if service.description_required and not report.description:
        raise _invalid("description", f"{service.name()} reports need a description")
    attributes = _check_attributes(service, report.attributes)
    reported_at = _reported_at(report.reported_at, now, trusted=submitter.trusted)

    contact = report.contact
    calendar = jurisdiction.calendar if service.counts_business_hours else None
    acknowledge = deadline(reported_at, service.acknowledge_within, calendar)
    resolve = deadline(reported_at, service.resolve_within, calendar)
    # Serialise with every concurrent report of this service nearby (and claim the key).
    keys = lock_keys(lon, lat, service.duplicate_radius_m, service.lock_cell_deg)
    claimed = (
        await sql.LOCK_NEIGHBOURHOOD.one(
            session,
            {
                "service_id": service.id,
                "keys": keys,
                "principal": claim.principal if claim else None,
                "key": claim.key if claim else None,
                "request_hash": claim.request_hash if claim else None,
                "keep": idempotency.KEEP_FOR,
            },
        )
    ).claimed
    if not claimed:
        raise idempotency.AlreadyClaimed
    row = await sql.FILE_REPORT.one(
        session,
        {
            **near_params(lon, lat, service.duplicate_radius_m),
            "service_id": service.id,
            "window": service.duplicate_window,
            "jurisdiction_id": jurisdiction.id,
            "prefix": jurisdiction.reference_prefix,
            "acknowledge_due_at": acknowledge.due_at if acknowledge else None,
            "acknowledge_warn_at": acknowledge.warn_at if acknowledge else None,
            "resolve_due_at": resolve.due_at if resolve else None,
            "resolve_warn_at": resolve.warn_at if resolve else None,
            "priority": priority_for(service.hazard_level * 10),
            "reopen_within": service.reopen_within,
            "channel": channel.value,
            "accuracy_m": accuracy,
            "location_source": source.value,
            "address": report.address,
            "description": report.description,
            "attributes": orjson.dumps(attributes).decode(),
            "reporter_id": submitter.user_id,
            "reporter_name": contact.name if contact else None,
            "notify": bool(contact.updates) if contact else submitter.user_id is not None,
            "locale": report.locale,
            "external_id": report.client_id,
            "reported_at": reported_at,
            "actor_label": submitter.label,
            "photos": len(photos),
        },
    )
    matched: Match | None = None
    if row.joined:
        matched = Match(
            distance_m=row.distance_m,
            age_seconds=row.age_seconds,
            radius_m=service.duplicate_radius_m,
            window_seconds=service.duplicate_window.total_seconds(),
        )
        age = row.age_seconds
        explanation = (
            f"Reopened {row.reference}: a {service.name().lower()} ticket fixed within the last "
            f"{_human(service.reopen_within)}, {matched.distance_m:g} m away (within "
            f"{service.duplicate_radius_m:g} m); the problem is back"
            if row.reopened
            else f"Joined {row.reference}: an open {service.name().lower()} ticket "
            f"{matched.distance_m:g} m away (within {service.duplicate_radius_m:g} m), "
            f"last reported {_human(timedelta(seconds=abs(age)))} "
            f"{'before' if age >= 0 else 'after'} this report "
            f"(window {_human(service.duplicate_window)})"
        )
    else:
        explanation = (
            f"Opened {row.reference}: no open {service.name().lower()} ticket within "
            f"{service.duplicate_radius_m:g} m was reported within "
            f"{_human(service.duplicate_window)} of this report"
        )

    contacts = await _store_contacts(session, report, row.ticket_id, row.report_id, submitter)
    photo_refs = []
    for photo in photos:
        public_id = (
            await session.execute(
                sql.INSERT_PHOTO,
                {
                    "ticket_id": row.ticket_id,
                    "report_id": row.report_id,
                    "storage_key": photo.storage_key,
                    "thumbnail_key": photo.thumbnail_key,
                    "original_key": photo.original_key,
                    "content_type": photo.content_type,
                    "width": photo.width,
                    "height": photo.height,
                    "taken_at": photo.taken_at,
                },
            )
        ).scalar_one()
        photo_refs.append(
            photo_ref(base_url, public_id, photo.width, photo.height, status="pending")
        )

    accepted = ReportAccepted(
        report=ReportOut(
            id=row.public_id,
            service_code=service.code,
            channel=channel.value,
            location=LocationOut(lon=lon, lat=lat, accuracy_m=accuracy),
            location_source=source.value,
            address=report.address,
            description=report.description,
            attributes=attributes,
            reported_at=reported_at,
            received_at=row.received_at,
            photos=photo_refs,
            ticket_reference=row.reference,
            contacts=contacts,
            reporter_name=contact.name if contact else None,
        ),
        ticket=TicketSummary(
            **summary_fields(row, base_url, service_code=service.code, service_name=service.name())
        ),
        joined_existing=matched is not None,
        reopened=bool(row.reopened),
        match=matched,
        explanation=explanation,
    )
    return accepted, int(row.report_id)


def photo_ref(
    base_url: str,
    public_id: uuid.UUID,
    width: int,
    height: int,
    *,
    status: Literal["pending", "ready", "failed"] = "ready",
) -> PhotoRef:
    return PhotoRef(
        id=public_id,
        url=f"{base_url}/v1/photos/{public_id}.jpg",
        thumbnail_url=f"{base_url}/v1/photos/{public_id}/thumbnail.jpg",
        width=width,
        height=height,
        status=status,
    )


# -- steps ------------------------------------------------------------------------------------


def _location(
    report: ReportIn, photos: Sequence[AcceptedPhoto]
) -> tuple[float, float, float | None, LocationSource]:
    if report.location is not None:
        lon, lat, accuracy = report.location.lon, report.location.lat, report.location.accuracy_m
        source = LocationSource.device
    else:
        fix = next((p.gps for p in photos if p.gps is not None), None)
        if fix is None:
            raise _invalid(
                "location",
                "Send a location, or a photo whose EXIF carries GPS coordinates",
                type_="missing",
            )
        lon, lat, accuracy, source = fix.lon, fix.lat, fix.accuracy_m, LocationSource.exif
    problems = check_lonlat(lon, lat)
    if problems:
        raise InvalidInput(
            problems[0].message,
            errors=[
                {"field": f"location.{p.field}", "message": p.message, "type": "value_error"}
                for p in problems
            ],
        )
    return lon, lat, accuracy, source


async def _jurisdiction(
    session: AsyncSession, catalog: Catalog, report: ReportIn, lon: float, lat: float
) -> JurisdictionInfo:
    if report.jurisdiction:
        jurisdiction = await catalog.by_slug(session, report.jurisdiction)
        if jurisdiction is None:
            known = sorted(j.slug for j in await catalog.jurisdictions(session))
            raise _invalid(
                "jurisdiction",
                f"Unknown jurisdiction {report.jurisdiction!r}; known: {', '.join(known)}",
                valid=known,
            )
        if not jurisdiction.contains(lon, lat):
            raise _outside(lon, lat, [jurisdiction], f"outside {jurisdiction.name}")
        return jurisdiction
    found = await catalog.by_point(session, lon, lat)
    if found is None:
        raise _outside(
            lon, lat, await catalog.jurisdictions(session), "outside every area we serve"
        )
    return found


def _outside(
    lon: float, lat: float, candidates: list[JurisdictionInfo], where: str
) -> InvalidInput:
    hint = ""
    flipped = swapped(lon, lat)
    if flipped and any(j.contains(*flipped) for j in candidates):
        hint = (
            f"; lon and lat look swapped: ({flipped[0]:g}, {flipped[1]:g}) is inside."
            " Send longitude first"
        )
    return _invalid(
        "location",
        f"The location ({lon:g}, {lat:g}) is {where}{hint}",
        type_="outside_jurisdiction",
    )


async def _service(
    session: AsyncSession, catalog: Catalog, jurisdiction: JurisdictionInfo, code: str
) -> tuple[JurisdictionInfo, ServiceInfo]:
    jurisdiction, service = await catalog.service(session, jurisdiction, code)
    if service is None:
        valid = sorted(jurisdiction.services)
        raise _invalid(
            "service_code",
            f"Unknown service {code!r} in {jurisdiction.name}; valid codes: {', '.join(valid)}",
            type_="unknown_service",
            valid=valid,
        )
    return jurisdiction, service


_NUMBER_TYPES = (int, float)


def _check_attributes(service: ServiceInfo, given: dict[str, Any]) -> dict[str, Any]:
    """Answers to the service's Open311 attributes: known codes, right types, required ones."""
    definitions = {a["code"]: a for a in service.attributes if a.get("variable", True)}
    errors = []
    for code in given:
        if code not in definitions:
            known = ", ".join(sorted(definitions)) or "none"
            errors.append(
                _err(
                    f"attributes.{code}",
                    f"{service.code} has no question {code!r} (known: {known})",
                )
            )
    for code, definition in definitions.items():
        value = given.get(code)
        if value is None or value == "":
            if definition.get("required"):
                errors.append(
                    _err(
                        f"attributes.{code}", definition.get("description") or "required", "missing"
                    )
                )
            continue
        kind = definition.get("datatype", "string")
        allowed = [v.get("key") for v in definition.get("values", [])]
        if kind == "number" and (isinstance(value, bool) or not isinstance(value, _NUMBER_TYPES)):
            errors.append(_err(f"attributes.{code}", "must be a number"))
        elif kind in ("string", "text") and not isinstance(value, str):
            errors.append(_err(f"attributes.{code}", "must be text"))
        elif kind == "singlevaluelist" and value not in allowed:
            errors.append(_err(f"attributes.{code}", f"must be one of {allowed}"))
        elif kind == "multivaluelist" and (
            not isinstance(value, list) or any(v not in allowed for v in value)
        ):
            errors.append(_err(f"attributes.{code}", f"must be a list of {allowed}"))
    if errors:
        raise InvalidInput(errors[0]["message"], errors=errors)
    return given


def _reported_at(given: datetime | None, now: datetime, *, trusted: bool) -> datetime:
    if given is None:
        return now
    given = given.astimezone(UTC)
    if given > now + CLOCK_SKEW:
        raise _invalid("reported_at", "reported_at is in the future")
    if not trusted and given < now - CITIZEN_BACKDATE_LIMIT:
        raise _invalid("reported_at", "reported_at may be at most 7 days ago")
    return given


async def _store_contacts(
    session: AsyncSession,
    report: ReportIn,
    ticket_id: int,
    report_id: int,
    submitter: Submitter,
) -> list[ContactOut] | None:
    contact = report.contact
    if contact is None:
        return None
    out = []
    for kind, address in (
        (ContactKind.email, contact.email.lower() if contact.email else None),
        (ContactKind.phone, contact.phone),
        (ContactKind.fcm, contact.push_token),
    ):
        if not address:
            continue
        contact_id = (
            await session.execute(
                sql.UPSERT_CONTACT,
                {
                    "kind": kind.value,
                    "address": address,
                    "display_name": contact.name,
                    "user_id": submitter.user_id,
                },
            )
        ).scalar_one()
        await session.execute(
            sql.LINK_CONTACT,
            {
                "report_id": report_id,
                "contact_id": contact_id,
                "ticket_id": ticket_id,
                "subscribe": contact.updates,
            },
        )
        out.append(ContactOut(kind=kind.value, address=address, display_name=contact.name))
    return out


def _human(span: timedelta) -> str:
    seconds = span.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{round(seconds)} seconds"


def _err(field: str, message: str, type_: str = "value_error") -> dict[str, str]:
    return {"field": field, "message": message, "type": type_}


def _invalid(field: str, message: str, *, type_: str = "value_error", **extra: Any) -> InvalidInput:
    return InvalidInput(message, errors=[_err(field, message, type_)], **extra)
