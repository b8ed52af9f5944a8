"""A real SMTP server (aiosmtpd) on a free loopback port that answers like a mail server does:
550 for an unknown mailbox, 452 for a full one, 554 for a refused message, optionally with
a login (AUTH PLAIN/LOGIN) checked."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

UNKNOWN = "nobody@example.org"  # 550 5.1.1
FULL = "full@example.org"  # 452 4.2.2
REFUSED = "refused@example.org"  # 554 5.7.1 at DATA (content refused)
USERNAME = "kerbside"
PASSWORD = "smtp-test-password"


class MailServer:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[str] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address == UNKNOWN:
            return "550 5.1.1 No such user here"
        if address == FULL:
            return "452 4.2.2 Mailbox full, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if REFUSED in envelope.rcpt_tos:
            return "554 5.7.1 Message refused"
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 2.0.0 OK queued"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USERNAME.encode()
            and auth_data.password == PASSWORD.encode()
        )
        if ok:
            self.logins.append(USERNAME)
        return AuthResult(success=ok, handled=False)  # the server answers 235 or 535


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def mail_server(*, login: bool = False) -> Iterator[tuple[MailServer, int]]:
    handler = MailServer()
    port = free_port()
    options: dict[str, Any] = (
        # Login offered without TLS: this server has no certificate (aiosmtpd warns when a
        # login is also required without TLS, so it is offered, not required).
        {"authenticator": handler.authenticate, "auth_require_tls": False} if login else {}
    )
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
