"""Every table, imported in one place so metadata (Alembic, tests) sees the whole schema."""

from app.auth.models import ApiKey, Role, User
from app.core.models import Base
from app.crews.models import Crew, crew_area
from app.jurisdictions.models import Area, AreaPart, Jurisdiction, Service
from app.media.models import Photo
from app.reports.models import Contact, IdempotencyRecord, Report, report_contact
from app.tickets.models import Subscription, Ticket, TicketEvent

__all__ = [
    "ApiKey",
    "Area",
    "AreaPart",
    "Base",
    "Contact",
    "Crew",
    "IdempotencyRecord",
    "Jurisdiction",
    "Photo",
    "Report",
    "Role",
    "Service",
    "Subscription",
    "Ticket",
    "TicketEvent",
    "User",
    "crew_area",
    "report_contact",
]
