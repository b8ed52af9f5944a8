"""The outbound contract every channel adapter fulfils: deliver one message to one contact.

The notification worker (``app.notify``) owns retries, ordering, dead letters and the timeline
archive; an adapter only says what happened to one attempt:

- ``Delivered``: the provider took it (with the provider's id for the message, when it gives one);
- ``RetryLater``: a transient failure (network, 5xx, 429); ``after`` is the provider's
  ``Retry-After`` in seconds, when it sent one;
- ``Failed``: a permanent failure; ``disable_contact`` when the address itself is dead
  (Web Push 404/410, FCM ``UNREGISTERED``, a hard bounce), so nothing more is sent to it;
  ``refused`` when a platform refused every way to answer a social post (a person must).

Adapters never raise for a provider's answer; they raise only for their own bugs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Message:
    """One notification for one contact, ready to send.

    ``id`` is the outbox row's id: adapters send it as the provider's idempotency or collapse
    key where one exists (``webhook-id``, the email ``Message-ID``, FCM's collapse key), so a
    retry after an unknown outcome is not shown twice.
    """

    id: int
    kind: str  # the contact's kind (``app.contacts.models.ContactKind``)
    address: str  # email, E.164 phone, FCM token, Web Push endpoint, webhook URL
    contact_data: Mapping[str, Any]  # e.g. a Web Push subscription's keys, a webhook's secret
    subject: str
    body: str  # plain text, already in the contact's language
    link: str | None  # the ticket's public page
    unsubscribe_url: str  # one click stops these messages (RFC 8058 for email)
    ticket_reference: str | None
    event: str  # what happened: acknowledged, fixed, broadcast, …
    language: str = "en"
    data: Mapping[str, Any] = field(default_factory=dict)  # structured payload (webhooks, push)


@dataclass(frozen=True)
class Delivered:
    provider_id: str | None = None


@dataclass(frozen=True)
class RetryLater:
    reason: str
    after: float | None = None  # seconds, from the provider's Retry-After


@dataclass(frozen=True)
class Failed:
    reason: str
    disable_contact: bool = False
    # The platform refused every way the adapter had to answer this person in their thread
    # (X's 2026 reply rule, replies limited by the author, no direct messages): the post it
    # answers goes back to the webcare inbox ("could not answer").
    refused: bool = False


Outcome = Delivered | RetryLater | Failed


class Channel(Protocol):
    """An outbound adapter for one contact kind."""

    kind: str

    async def deliver(self, message: Message) -> Outcome: ...

    async def close(self) -> None: ...
