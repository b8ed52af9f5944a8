"""Email notifications over SMTP (aiosmtplib), through the server of ``KERBSIDE_SMTP_*``.

Each message has a ``Message-ID`` made from the outbox row's id, so a retry after an unknown
outcome carries the same id and mail systems that de-duplicate by it show the message once;
it also lets replies be linked later (``In-Reply-To``). Every message carries the one-click
way out of RFC 8058 (``List-Unsubscribe`` with ``List-Unsubscribe-Post``), which large
mailbox providers require of bulk senders, and ``Auto-Submitted`` (RFC 3834) so that
autoresponders do not answer.

SMTP replies: 4xx is transient; 550, 551 and 553 to the recipient mean the mailbox does not
exist (the contact is disabled); any other 5xx fails the message. A mail server that cannot
be reached, or that rejects our login, is our trouble, not the message's: retry later.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import urlsplit

import aiosmtplib

from app.channels.base import Delivered, Failed, Message, Outcome, RetryLater
from app.contacts.models import ContactKind
from app.settings import Settings

# "Mailbox unavailable", "user not local", "mailbox name not allowed": the address is dead.
DEAD_MAILBOX = frozenset({550, 551, 553})


def message_id(message_id_domain: str, outbox_id: int) -> str:
    """The stable ``Message-ID`` of one outbox row."""
    return f"<kerbside.notification.{outbox_id}@{message_id_domain}>"


def text_of(message: Message) -> str:
    """The plain-text body: the message, its link and the way out (unless already in it)."""
    parts = [message.body.rstrip()]
    if message.link and message.link not in message.body:
        parts.append(message.link)
    if message.unsubscribe_url not in message.body:
        parts.append(f"Stop these messages: {message.unsubscribe_url}")
    return "\n\n".join(parts) + "\n"


class EmailChannel:
    """Sends one message per SMTP session; the mail server queues, so sessions are short."""

    kind = ContactKind.email.value

    def __init__(
        self, settings: Settings, *, reply_to: str | None = None, implicit_tls: bool = False
    ) -> None:
        if not settings.smtp_host:
            raise ValueError("the email channel needs KERBSIDE_SMTP_HOST")
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._starttls = settings.smtp_starttls
        self._username = settings.smtp_username
        self._password = settings.smtp_password
        self._timeout = settings.smtp_timeout_seconds
        self._from = settings.email_from or settings.smtp_from
        self._reply_to = reply_to  # a city's own (the city file's channels.email)
        self._implicit_tls = implicit_tls  # smtps://: TLS from the first byte
        self._domain = (
            settings.email_message_id_domain
            or urlsplit(settings.public_base_url).hostname
            or "kerbside.localhost"
        )

    def compose(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self._from
        mail["To"] = message.address
        if self._reply_to:
            mail["Reply-To"] = self._reply_to
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = message_id(self._domain, message.id)
        mail["Auto-Submitted"] = "auto-generated"
        mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail["Content-Language"] = message.language
        mail.set_content(text_of(message))
        return mail

    async def deliver(self, message: Message) -> Outcome:
        mail = self.compose(message)
        password = self._password.get_secret_value() if self._password else None
        try:
            await aiosmtplib.send(
                mail,
                hostname=self._host,
                port=self._port,
                start_tls=self._starttls and not self._implicit_tls,
                use_tls=self._implicit_tls,
                username=self._username or None,
                password=password if self._username else None,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as refused:
            return classify_refusal(refused.recipients[0] if refused.recipients else None)
        except aiosmtplib.SMTPRecipientRefused as refused:
            return classify_refusal(refused)
        except aiosmtplib.SMTPAuthenticationError as error:
            return RetryLater(f"smtp login refused ({error.code})")
        except aiosmtplib.SMTPResponseException as error:
            return classify_reply(error.code, "smtp")
        except (aiosmtplib.SMTPException, OSError) as error:
            # Connection refused, timeouts, a server that hung up, STARTTLS not offered.
            return RetryLater(f"smtp unavailable ({type(error).__name__})")
        return Delivered(provider_id=mail["Message-ID"])

    async def close(self) -> None:
        return None


def classify_refusal(refused: aiosmtplib.SMTPRecipientRefused | None) -> Outcome:
    if refused is None:
        return RetryLater("smtp refused the recipient without a reply")
    if refused.code in DEAD_MAILBOX:
        return Failed(f"smtp {refused.code}: no such mailbox", disable_contact=True)
    return classify_reply(refused.code, "smtp recipient")


def classify_reply(code: int, what: str) -> Outcome:
    if 400 <= code < 500:
        return RetryLater(f"{what} {code}")
    return Failed(f"{what} {code}")
