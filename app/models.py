"""Every table, imported in one place so metadata (Alembic, tests) sees the whole schema."""

from app.auth.models import ApiKey, Role, User
from app.contacts.models import Contact, ContactConsent, report_contact
from app.core.models import Base, RateLimitHit
from app.crews.models import AssignmentRule, Crew, crew_area
from app.jurisdictions.models import Area, AreaPart, Jurisdiction, Service
from app.linking.models import LinkAttempt
from app.maps import models as _map_indexes  # noqa: F401  (indexes on ticket)
from app.media.models import Photo
from app.notify.models import AreaSubscription, Broadcast, Notification
from app.open311.models import Open311Media
from app.reports.models import IdempotencyRecord, Report
from app.social.dialogue_models import Dialogue
from app.social.models import SocialCursor, SocialPost, SocialSettings
from app.talk.models import Alert, AlertMember, Signal
from app.tickets.models import ResponseTemplate, Subscription, Ticket, TicketEvent
from app.workorders import models as _work_order_indexes  # noqa: F401  (indexes on ticket)

__all__ = [
    "Alert",
    "AlertMember",
    "ApiKey",
    "Area",
    "AreaPart",
    "AreaSubscription",
    "AssignmentRule",
    "Base",
    "Broadcast",
    "Contact",
    "ContactConsent",
    "Crew",
    "Dialogue",
    "IdempotencyRecord",
    "Jurisdiction",
    "LinkAttempt",
    "Notification",
    "Open311Media",
    "Photo",
    "RateLimitHit",
    "Report",
    "ResponseTemplate",
    "Role",
    "Service",
    "Signal",
    "SocialCursor",
    "SocialPost",
    "SocialSettings",
    "Subscription",
    "Ticket",
    "TicketEvent",
    "User",
    "crew_area",
    "report_contact",
]
