"""The app's wire format at the edge of the channel-neutral intake: ``ReportIn`` becomes a
``Submission``, and a ``Filed`` becomes the app's answer (``ReportAccepted``, with links and
the explanation). Other channels (Open311, social posts) have edges of their own.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.contacts.models import ContactKind
from app.contacts.service import ContactSpec
from app.media.links import photo_ref
from app.media.service import AcceptedPhoto
from app.reports.intake import Filed, Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.schemas import ContactOut, LocationOut, Match, ReportAccepted, ReportIn, ReportOut
from app.reports.service import explain
from app.tickets.schemas import TicketSummary, summary_fields


def submission_of(
    report: ReportIn,
    submitter: Submitter,
    *,
    channel: Channel = Channel.app,
    photos: Sequence[AcceptedPhoto] = (),
) -> Submission:
    """The app's report as the intake takes it from any channel."""
    contact = report.contact
    specs = []
    if contact is not None:
        for kind, address in (
            (ContactKind.email, contact.email),
            (ContactKind.phone, contact.phone),
            (ContactKind.fcm, contact.push_token),
        ):
            if address:
                specs.append(ContactSpec(kind, address, display_name=contact.name))
    location = report.location
    return Submission(
        channel=channel,
        submitter=submitter,
        service_code=report.service_code,
        place=Place(location.lon, location.lat, LocationSource.device, location.accuracy_m)
        if location is not None
        else None,
        jurisdiction=report.jurisdiction,
        description=report.description,
        address=report.address,
        attributes=report.attributes,
        contacts=specs,
        updates=contact.updates if contact is not None else None,
        reporter_name=contact.name if contact is not None else None,
        external_id=report.client_id,
        reported_at=report.reported_at,
        locale=report.locale,
        media=photos,
    )


def accepted(filed: Filed, base_url: str) -> ReportAccepted:
    """The app's answer to a filed report."""
    service = filed.service
    place = filed.place
    return ReportAccepted(
        report=ReportOut(
            id=filed.report_public_id,
            service_code=service.code,
            channel=filed.channel.value,
            location=LocationOut(lon=place.lon, lat=place.lat, accuracy_m=place.accuracy_m),
            location_source=place.source.value,
            address=filed.address,
            description=filed.description,
            attributes=filed.attributes,
            reported_at=filed.reported_at,
            received_at=filed.received_at,
            photos=[
                photo_ref(base_url, p.public_id, p.width, p.height, status="pending")
                for p in filed.photos
            ],
            ticket_reference=filed.reference,
            contacts=[
                ContactOut(kind=c.kind.value, address=c.address, display_name=c.display_name)
                for c in filed.contacts
            ]
            if filed.contacts or filed.reporter_name
            else None,
            reporter_name=filed.reporter_name,
        ),
        ticket=TicketSummary(
            **summary_fields(
                filed.ticket, base_url, service_code=service.code, service_name=service.name()
            )
        ),
        joined_existing=filed.joined,
        reopened=filed.reopened,
        match=Match(
            distance_m=filed.distance_m or 0.0,
            age_seconds=filed.age_seconds or 0.0,
            radius_m=service.duplicate_radius_m,
            window_seconds=service.duplicate_window.total_seconds(),
        )
        if filed.joined
        else None,
        explanation=explain(filed),
    )
