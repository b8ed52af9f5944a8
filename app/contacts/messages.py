"""The one message an unverified contact is sent: a link to confirm the address.

Queued as a job in the transaction that asked for it (``app.core.jobs.defer``), so it is sent
by the worker once that transaction has committed, retried if the mail server is down, and
never sent for a change that rolled back.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.contacts.models import ContactKind
from app.contacts.service import Verification
from app.core.jobs import SEND_MAIL, defer
from app.settings import Settings


def verification_link(settings: Settings, token: str) -> str:
    return f"{settings.public_base_url}/v1/contacts/verify?token={token}"


async def queue_verifications(
    session: AsyncSession,
    settings: Settings,
    verifications: Sequence[Verification],
    reference: str,
) -> None:
    """Ask each contact to confirm its address before it hears about ``reference``."""
    for verification in verifications:
        if verification.kind != ContactKind.email:
            continue  # text messages come with the SMS channel; until then they stay unverified
        await defer(
            session,
            SEND_MAIL,
            {
                "to": verification.address,
                "subject": f"Confirm updates about {reference}",
                "body": (
                    f"Someone asked for updates about {reference} to be sent to this address.\n"
                    "If that was you, confirm it here:\n\n"
                    f"{verification_link(settings, verification.token)}\n\n"
                    "If it was not, ignore this message: you will not hear from us again."
                ),
            },
            queue="mail",
        )
