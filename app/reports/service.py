"""Report intake: the one write path every channel uses.

validate → jurisdiction and service → lock the neighbourhood → nearest open ticket of the
service within its radius and window → attach or open → contacts and subscriptions → photos
→ timeline event; all in the caller's transaction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.contacts import service as contacts
from app.contacts.models import Purpose
from app.contacts.service import Consent, StoredContact, Verification
from app.core import clock, idempotency
from app.core.errors import Forbidden, InvalidInput, NotAuthenticated
from app.db import HotStatement
from app.jurisdictions.catalog import Catalog, JurisdictionInfo, ServiceInfo
from app.jurisdictions.models import DuplicateStrategy
from app.media.service import AcceptedPhoto
from app.reports import repository as sql
from app.reports.intake import Filed, FiledPhoto, Place, Submission
from app.reports.models import LocationSource
from app.tickets.events import add_event
from app.tickets.models import EventKind
from app.tickets.priority import priority_for
from app.tickets.sla import deadline
from geo.address import AddressKey, address_key
from geo.address import lock_key as street_lock_key
from geo.distance import near_params
from geo.grid import lock_keys
from geo.validation import check_lonlat, swapped

# How far back a citizen's offline app may date a report; staff and imports may go further.
CITIZEN_BACKDATE_LIMIT = timedelta(days=7)
CLOCK_SKEW = timedelta(minutes=5)


# The longest texts a report keeps (the app's schema says the same to its clients).
LIMITS: Mapping[str, int] = {
    "service_code": 64,
    "jurisdiction": 100,
    "description": 5000,
    "address": 500,
    "reporter_name": 200,
    "external_id": 200,
    "locale": 16,
}
MAX_ATTRIBUTES = 50
# The `same_address` rule: one address text names one place only this close (geocoders put
# one address a few hundred metres apart at most; farther, it is a namesake elsewhere).
SAME_ADDRESS_WITHIN_M = 1000.0


async def submit_report(
    session: AsyncSession,
    catalog: Catalog,
    submission: Submission,
    *,
    now: datetime | None = None,
    claim: idempotency.Claim | None = None,
) -> Filed:
    """File ``submission`` and say what that did: the report, its ticket, joined or opened.

    With ``claim``, the idempotency key is claimed in the same transaction; if an earlier
    request already holds it, ``idempotency.AlreadyClaimed`` is raised before anything is
    written, and the caller replays that request's answer.
    """
    now = now or clock.now()
    submitter = submission.submitter
    _check_texts(submission)
    place = _place(submission.place, submission.media)
    jurisdiction = await _jurisdiction(session, catalog, submission.jurisdiction, place)
    if not submitter.identified and not jurisdiction.allow_anonymous:
        raise NotAuthenticated(f"{jurisdiction.name} takes reports from signed-in people only")
    if submitter.jurisdiction_id not in (None, jurisdiction.id):
        if submitter.bound:
            raise Forbidden(
                f"This API key files reports in its own jurisdiction only, not in"
                f" {jurisdiction.name}"
            )
        # Staff of one city report in another as anyone does, without staff's trust.
        submitter = replace(submitter, trusted=False)
    jurisdiction, service = await _service(session, catalog, jurisdiction, submission.service_code)
    description = _stripped(submission.description)
    address = _stripped(submission.address)
    if service.description_required and not description:
        raise _invalid("description", f"{service.name()} reports need a description")
    attributes = _check_attributes(service, submission.attributes)
    reported_at = _reported_at(submission.reported_at, now, trusted=submitter.trusted)
    received_at = _received_at(submission.received_at, reported_at, now, submitter.trusted)
    wants_updates = (
        submission.updates if submission.updates is not None else submitter.user_id is not None
    )

    calendar = jurisdiction.calendar if service.counts_business_hours else None
    acknowledge = deadline(reported_at, service.acknowledge_within, calendar)
    resolve = deadline(reported_at, service.resolve_within, calendar)
    address_keys = address_key(address)
    rule = _duplicate_rule(service, address_keys)
    # Serialise with every concurrent report of this service nearby (and claim the key); by
    # address, also with every report of the service on the same street, however far apart
    # the geocoder put them. Keys are sorted, so two reports never wait for each other in turn.
    keys = lock_keys(place.lon, place.lat, service.duplicate_radius_m, service.lock_cell_deg)
    if rule is sql.FILE_REPORT_SAME_ADDRESS and address_keys is not None:
        keys = sorted({*keys, street_lock_key(address_keys.street)})
    if submission.serialise or claim is not None:
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
    row = await rule.one(
        session,
        {
            **near_params(place.lon, place.lat, service.duplicate_radius_m),
            "service_id": service.id,
            "window": service.duplicate_window,
            "street_within_m": service.duplicate_street_within_m,
            "address_within_m": SAME_ADDRESS_WITHIN_M,
            "jurisdiction_id": jurisdiction.id,
            "prefix": jurisdiction.reference_prefix,
            "acknowledge_due_at": acknowledge.due_at if acknowledge else None,
            "acknowledge_warn_at": acknowledge.warn_at if acknowledge else None,
            "resolve_due_at": resolve.due_at if resolve else None,
            "resolve_warn_at": resolve.warn_at if resolve else None,
            "priority": priority_for(service.hazard_level * 10),
            "reopen_within": service.reopen_within if submission.reopen else timedelta(0),
            "channel": submission.channel.value,
            "accuracy_m": place.accuracy_m,
            "location_source": place.source.value,
            "address": address,
            "address_key": address_keys.address if address_keys else None,
            "street_key": address_keys.street if address_keys else None,
            "description": description,
            "attributes": orjson.dumps(attributes).decode(),
            "reporter_id": submitter.user_id,
            "reporter_name": submission.reporter_name,
            "notify": wants_updates,
            "locale": submission.locale,
            "external_id": submission.external_id,
            "reported_at": reported_at,
            "received_at": received_at,
            "actor_label": submitter.label,
            "photos": len(submission.media),
        },
    )
    stored, verifications = await _store_contacts(session, submission, row, wants_updates, now)
    photos = await _store_photos(session, submission.media, row.ticket_id, row.report_id)
    return Filed(
        report_id=int(row.report_id),
        report_public_id=row.public_id,
        received_at=row.received_at,
        reported_at=reported_at,
        ticket_id=int(row.ticket_id),
        reference=row.reference,
        ticket=row,
        service=service,
        channel=submission.channel,
        place=place,
        description=description,
        address=address,
        attributes=attributes,
        reporter_name=submission.reporter_name,
        joined=bool(row.joined),
        reopened=bool(row.reopened),
        distance_m=row.distance_m if row.joined else None,
        age_seconds=row.age_seconds if row.joined else None,
        contacts=stored,
        verifications=verifications,
        photos=photos,
    )


def explain(filed: Filed) -> str:
    """Why the report joined its ticket or opened a new one, in a sentence for people."""
    service = filed.service
    kind = service.name().lower()
    if service.duplicate_strategy == DuplicateStrategy.never:
        return f"Opened {filed.reference}: every {kind} report is a case of its own"
    if service.duplicate_strategy == DuplicateStrategy.same_address and address_key(filed.address):
        return _explain_by_address(filed, kind)
    radius = f"{service.duplicate_radius_m:g} m"
    if filed.reopened:
        return (
            f"Reopened {filed.reference}: a {kind} ticket fixed within the last "
            f"{_human(service.reopen_within)}, {filed.distance_m:g} m away (within {radius});"
            " the problem is back"
        )
    if filed.joined:
        age = filed.age_seconds or 0.0
        return (
            f"Joined {filed.reference}: an open {kind} ticket {filed.distance_m:g} m away "
            f"(within {radius}), last reported {_human(timedelta(seconds=abs(age)))} "
            f"{'before' if age >= 0 else 'after'} this report "
            f"(window {_human(service.duplicate_window)})"
        )
    return (
        f"Opened {filed.reference}: no open {kind} ticket within {radius} was reported within "
        f"{_human(service.duplicate_window)} of this report"
    )


def _explain_by_address(filed: Filed, kind: str) -> str:
    service = filed.service
    street = service.duplicate_street_within_m
    where = "at the same address" + (
        f" or on the same street within {street:g} m" if street else ""
    )
    if filed.reopened:
        return (
            f"Reopened {filed.reference}: a {kind} ticket {where}, fixed within the last "
            f"{_human(service.reopen_within)} ({filed.distance_m:g} m away); the problem is back"
        )
    if filed.joined:
        return (
            f"Joined {filed.reference}: an open {kind} ticket {where} ({filed.distance_m:g} m "
            f"away), reported within {_human(service.duplicate_window)} of this report"
        )
    return (
        f"Opened {filed.reference}: no open {kind} ticket {where} was reported within "
        f"{_human(service.duplicate_window)} of this report"
    )


# -- steps ------------------------------------------------------------------------------------


def _duplicate_rule(service: ServiceInfo, keys: AddressKey | None) -> HotStatement:
    """The statement that files a report under the service's duplicate rule.

    ``same_address`` needs an address that names a street; without one, the report is
    clustered by ``radius``, like a GPS report.
    """
    if service.duplicate_strategy == DuplicateStrategy.never:
        return sql.FILE_REPORT_NEVER
    if service.duplicate_strategy == DuplicateStrategy.same_address and keys is not None:
        return sql.FILE_REPORT_SAME_ADDRESS
    return sql.FILE_REPORT


def _check_texts(submission: Submission) -> None:
    errors = []
    for name, limit in LIMITS.items():
        value = getattr(submission, name)
        if value is not None and len(value) > limit:
            errors.append(_err(name, f"at most {limit} characters", "too_long"))
        if value is not None and "\x00" in value:
            errors.append(_err(name, "must not contain NUL characters"))
    if len(submission.attributes) > MAX_ATTRIBUTES:
        errors.append(_err("attributes", f"at most {MAX_ATTRIBUTES} attributes", "too_long"))
    if errors:
        raise InvalidInput(f"{errors[0]['field']}: {errors[0]['message']}", errors=errors)


def _stripped(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip() or None


def _place(given: Place | None, photos: Sequence[AcceptedPhoto]) -> Place:
    if given is None:
        fix = next((p.gps for p in photos if p.gps is not None), None)
        if fix is None:
            raise _invalid(
                "location",
                "Send a location, or a photo whose EXIF carries GPS coordinates",
                type_="missing",
            )
        given = Place(fix.lon, fix.lat, LocationSource.exif, fix.accuracy_m)
    problems = check_lonlat(given.lon, given.lat)
    if problems:
        raise InvalidInput(
            problems[0].message,
            errors=[
                {"field": f"location.{p.field}", "message": p.message, "type": "value_error"}
                for p in problems
            ],
        )
    return given


async def _jurisdiction(
    session: AsyncSession, catalog: Catalog, slug: str | None, place: Place
) -> JurisdictionInfo:
    lon, lat = place.lon, place.lat
    if slug:
        jurisdiction = await catalog.by_slug(session, slug)
        if jurisdiction is None:
            known = sorted(j.slug for j in await catalog.jurisdictions(session))
            raise _invalid(
                "jurisdiction",
                f"Unknown jurisdiction {slug!r}; known: {', '.join(known)}",
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


def _check_attributes(service: ServiceInfo, given: Mapping[str, Any]) -> dict[str, Any]:
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
        elif kind == "number" and not math.isfinite(value):
            # 1e400 parses as infinity, which JSON cannot hold: it would be stored as null.
            errors.append(_err(f"attributes.{code}", "must be a finite number"))
        elif kind in ("string", "text") and not isinstance(value, str):
            errors.append(_err(f"attributes.{code}", "must be text"))
        elif kind == "datetime" and not _is_zoned_datetime(value):
            errors.append(
                _err(f"attributes.{code}", "must be an ISO 8601 date-time with a time zone")
            )
        elif kind == "singlevaluelist" and value not in allowed:
            errors.append(_err(f"attributes.{code}", f"must be one of {allowed}"))
        elif kind == "multivaluelist" and (
            not isinstance(value, list) or any(v not in allowed for v in value)
        ):
            errors.append(_err(f"attributes.{code}", f"must be a list of {allowed}"))
    if errors:
        raise InvalidInput(errors[0]["message"], errors=errors)
    return dict(given)


def _is_zoned_datetime(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 40:
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _reported_at(given: datetime | None, now: datetime, *, trusted: bool) -> datetime:
    if given is None:
        return now
    if given.tzinfo is None:
        raise _invalid("reported_at", "reported_at needs a timezone (e.g. 2026-11-24T09:30:00Z)")
    given = given.astimezone(UTC)
    if given > now + CLOCK_SKEW:
        raise _invalid("reported_at", "reported_at is in the future")
    if not trusted and given < now - CITIZEN_BACKDATE_LIMIT:
        raise _invalid("reported_at", "reported_at may be at most 7 days ago")
    return given


def _received_at(
    given: datetime | None, reported_at: datetime, now: datetime, trusted: bool
) -> datetime | None:
    """A backfill's time of receipt; None (the database's now) for every live report."""
    if given is None:
        return None
    if not trusted:
        raise _invalid("received_at", "only trusted sources file reports received in the past")
    if given.tzinfo is None:
        raise _invalid("received_at", "received_at needs a timezone")
    given = given.astimezone(UTC)
    if given < reported_at or given > now + CLOCK_SKEW:
        raise _invalid("received_at", "received_at lies between reported_at and now")
    return given


async def _store_contacts(
    session: AsyncSession, submission: Submission, row: Any, updates: bool, now: datetime
) -> tuple[tuple[StoredContact, ...], tuple[Verification, ...]]:
    """The reporter's contacts (through ``app.contacts``), linked to the report; those that
    asked for updates subscribe to the ticket with their consent recorded."""
    stored = []
    verifications = []
    for spec in submission.contacts:
        consent = (
            Consent(
                Purpose.ticket_updates,
                submission.consent_method,
                ticket_id=row.ticket_id,
                evidence={
                    **submission.consent_evidence,
                    "report": str(row.public_id),
                    "channel": submission.channel.value,
                },
            )
            if updates
            else None
        )
        contact = await contacts.remember(
            session, spec, user_id=submission.submitter.user_id, consent=consent, at=now
        )
        await sql.LINK_CONTACT.one(
            session,
            {
                "report_id": row.report_id,
                "contact_id": contact.id,
                "ticket_id": row.ticket_id,
                "subscribe": updates,
            },
        )
        if updates:
            verification = await contacts.begin_verification(session, contact)
            if verification is not None:
                verifications.append(verification)
        stored.append(contact)
    return tuple(stored), tuple(verifications)


async def attach_photos(
    session: AsyncSession, report_id: int, media: Sequence[AcceptedPhoto], *, actor_label: str
) -> tuple[FiledPhoto, ...]:
    """Add photos to a report already filed (a social post's, fetched after it was filed):
    pending rows like the intake's, processed by their jobs; an internal timeline line says
    how many came. Nothing when the report is gone."""
    row = (await session.execute(sql.REPORT_TICKET, {"id": report_id})).first()
    if row is None or not media:
        return ()
    photos = await _store_photos(session, media, row.ticket_id, report_id)
    await add_event(
        session,
        int(row.ticket_id),
        EventKind.photo_added,
        at=clock.now(),
        public=False,
        actor_label=actor_label,
        report_id=report_id,
        data={"photos": len(photos)},
    )
    return photos


async def attach_ticket_photos(
    session: AsyncSession, ticket_id: int, media: Sequence[AcceptedPhoto], *, kind: str
) -> tuple[FiledPhoto, ...]:
    """Photos of the ticket itself, of no report (``update``: sent with a citizen's later
    update): pending rows like the intake's, processed by their jobs."""
    return await _store_photos(session, media, ticket_id, None, kind=kind)


async def _store_photos(
    session: AsyncSession,
    media: Sequence[AcceptedPhoto],
    ticket_id: int,
    report_id: int | None,
    *,
    kind: str = "report",
) -> tuple[FiledPhoto, ...]:
    filed = []
    for photo in media:
        public_id = (
            await session.execute(
                sql.INSERT_PHOTO,
                {
                    "ticket_id": ticket_id,
                    "report_id": report_id,
                    "kind": kind,
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
        filed.append(FiledPhoto(public_id, photo.width, photo.height))
    return tuple(filed)


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
