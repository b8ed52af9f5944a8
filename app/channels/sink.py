"""The local sink: where messages go outside production when a channel has no credentials.

It appends each message as one JSON line to ``KERBSIDE_CHANNELS_SINK_FILE`` and answers
``Delivered("sink-<id>")``, so the demo (README command 1) runs the whole path, outbox to
"delivered", and a staff page can show what each reporter received (``read``). Contact
data (Web Push keys, webhook secrets) is not written. Each line is one ``write`` to a file
opened for appending, so workers in several processes do not interleave their lines.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from pathlib import Path
from typing import Any

from app.channels import transport
from app.channels.base import Delivered, Message, Outcome
from app.core import clock
from app.settings import Settings


def record_of(message: Message) -> dict[str, Any]:
    return {
        "at": transport.as_utc_text(clock.now()),
        "id": message.id,
        "kind": message.kind,
        "address": message.address,
        "event": message.event,
        "ticket": message.ticket_reference,
        "language": message.language,
        "subject": message.subject,
        "body": message.body,
        "link": message.link,
        "unsubscribe": message.unsubscribe_url,
        "data": dict(message.data),
    }


class SinkChannel:
    """Stands in for the channel of ``kind``; every kind may share one file."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path

    @classmethod
    def from_settings(cls, kind: str, settings: Settings) -> SinkChannel:
        return cls(kind, settings.channels_sink_file)

    async def deliver(self, message: Message) -> Outcome:
        line = json.dumps(record_of(message), ensure_ascii=False, default=str) + "\n"
        await asyncio.to_thread(self._append, line.encode())
        return Delivered(provider_id=f"sink-{message.id}")

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)

    async def close(self) -> None:
        return None


def read(path: Path, *, address: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The last ``limit`` messages the sink recorded, oldest first; to ``address`` if given."""
    if not path.exists():
        return []
    kept: deque[dict[str, Any]] = deque(maxlen=limit)
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if address is None or record.get("address") == address:
                kept.append(record)
    return list(kept)
