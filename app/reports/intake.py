"""The channel-neutral intake's input and result: what any channel hands to ``submit_report``
and what it gets back. No wire schema, no URLs, no prose: each channel (the app's HTTP route,
Open311, a social post, the importer, the seed) maps its own input to a ``Submission`` and
builds its own answer from a ``Filed``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.contacts.models import ConsentMethod
from app.contacts.service import ContactSpec, StoredContact, Verification
from app.jurisdictions.catalog import ServiceInfo
from app.media.service import AcceptedPhoto
from app.reports.models import Channel, LocationSource


@dataclass(frozen=True)
class Submitter:
    """Who submits: a signed-in person, an API client, or nobody we know."""

    user_id: uuid.UUID | None = None
    label: str = "anonymous"  # for the timeline: "user:<id>", "api-key:<name>", "import"
    trusted: bool = False  # staff, admin, trusted API keys, imports: may backdate freely
    identified: bool = False  # signed in, a known API client, or a platform's account
    # The one jurisdiction a staff or crew account or an API key acts for: trust holds there
    # only, and an API key (``bound``) files nowhere else (docs/auth.md, several jurisdictions).
    jurisdiction_id: int | None = None
    bound: bool = False

    @property
    def idempotency_principal(self) -> str:
        return self.label if self.identified else "anonymous"


@dataclass(frozen=True)
class Place:
    """Where the problem is (WGS84) and how we know: the device, a photo, an address, a post."""

    lon: float
    lat: float
    source: LocationSource
    accuracy_m: float | None = None


# How a reporter gave their consent, by the channel they reported on.
CONSENT_BY_CHANNEL: Mapping[Channel, ConsentMethod] = {
    Channel.x: ConsentMethod.social_post,
    Channel.facebook: ConsentMethod.social_post,
    Channel.mastodon: ConsentMethod.social_post,
    Channel.bluesky: ConsentMethod.social_post,
    Channel.whatsapp: ConsentMethod.message,
    Channel.import_: ConsentMethod.import_,
    Channel.staff: ConsentMethod.staff,
    Channel.phone: ConsentMethod.staff,
}


@dataclass(frozen=True)
class Submission:
    """One report from any channel.

    ``place`` may be None when a photo carries GPS in its EXIF (the intake reads it from
    ``media``). Several contacts of different kinds may reach one reporter. ``external_id`` is
    the channel's own id for the report (the app's client id, a post's id, an import row's
    id): unique per jurisdiction and channel, so filing it twice fails instead of filing twice.
    """

    channel: Channel
    submitter: Submitter
    service_code: str
    place: Place | None
    jurisdiction: str | None = None  # slug; found from the place when None
    description: str | None = None
    address: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    contacts: Sequence[ContactSpec] = ()
    # Whether the reporter asked to hear about the ticket's progress (on ``contacts``, and as
    # the signed-in person). None: signed-in reporters do, anonymous ones cannot.
    updates: bool | None = None
    reporter_name: str | None = None
    external_id: str | None = None
    reported_at: datetime | None = None
    # When the city received it, for a record filed after the fact by a trusted source (the
    # demo seed replaying its history): the report and its ticket's opening lines are dated
    # then. None, as for every live channel: now.
    received_at: datetime | None = None
    locale: str | None = None
    media: Sequence[AcceptedPhoto] = ()
    # False: a report after a fix opens a new ticket instead of reopening it (a history
    # import: the legacy system opened a new case there).
    reopen: bool = True
    # False: no neighbourhood locks. Only for a caller that is the one writer of its
    # jurisdiction for the whole transaction (an import's dry run, rolled back at the end),
    # where locks would only pile up; never with an idempotency claim.
    serialise: bool = True
    # More evidence for the reporter's consent, recorded with it: a social post's channel
    # puts the post to answer in here (``reply_to``), which its replies then go to.
    consent_evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def consent_method(self) -> ConsentMethod:
        return CONSENT_BY_CHANNEL.get(self.channel, ConsentMethod.report_form)


@dataclass(frozen=True)
class FiledPhoto:
    public_id: uuid.UUID
    width: int
    height: int


@dataclass(frozen=True)
class Filed:
    """What filing a report did. ``ticket`` is the ticket as it stands after filing, a row with
    the columns of a ticket summary (see ``app.tickets.schemas.summary_fields``)."""

    report_id: int
    report_public_id: uuid.UUID
    received_at: datetime
    reported_at: datetime
    ticket_id: int
    reference: str
    ticket: Any
    service: ServiceInfo
    channel: Channel
    place: Place
    description: str | None
    address: str | None
    attributes: dict[str, Any]
    reporter_name: str | None
    joined: bool
    reopened: bool
    distance_m: float | None  # from the ticket it joined
    age_seconds: float | None  # since that ticket was last reported (negative: before)
    contacts: tuple[StoredContact, ...] = ()
    # Messages that ask an unverified contact to confirm it; send them after the commit.
    verifications: tuple[Verification, ...] = ()
    photos: tuple[FiledPhoto, ...] = ()
