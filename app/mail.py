"""Outgoing mail: account verification, password reset, staff alerts (sent by a job).

Messages go out over SMTP (``KERBSIDE_SMTP_HOST``) with the standard library's ``smtplib``,
run in a worker thread so the event loop never blocks on a slow mail server. Without a mail
server a developer still gets the message: it is logged at WARNING, link included. In
production a missing mail server is an error in the log, but the request that wanted the mail
still succeeds (a user must not learn about our configuration from a failed sign-up).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from app.settings import Settings

log = logging.getLogger("kerbside.mail")


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    body: str  # plain text


def build_message(settings: Settings, mail: Mail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="kerbside")
    message.set_content(mail.body)
    return message


def _send_over_smtp(settings: Settings, message: EmailMessage) -> None:
    assert settings.smtp_host is not None
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
    ) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_username, password)
        smtp.send_message(message)


async def deliver(settings: Settings, mail: Mail) -> bool:
    """Hand one message to the mail server; False when none is configured (it is logged).

    Raises ``OSError`` or ``smtplib.SMTPException`` when the server cannot take it: the job
    that sends staff mail (``app.jobs.tasks.send_mail``) is retried then.
    """
    if not settings.smtp_host:
        if settings.env == "production":
            log.error(
                "mail is not configured (KERBSIDE_SMTP_HOST is unset); dropped a message",
                extra={"subject": mail.subject},
            )
        else:
            log.warning(
                "mail is not configured (KERBSIDE_SMTP_HOST is unset); the message would be:\n"
                "To: %s\nSubject: %s\n\n%s",
                mail.to,
                mail.subject,
                mail.body,
            )
        return False
    await asyncio.to_thread(_send_over_smtp, settings, build_message(settings, mail))
    log.info("mail sent", extra={"subject": mail.subject})
    return True


async def send_mail(settings: Settings, mail: Mail) -> bool:
    """Send one message; return whether it was handed to a mail server.

    Never raises: a mail that cannot be sent is logged (with the reason) and dropped, because
    the callers (sign-up, password reset) have already answered the client.
    """
    try:
        return await deliver(settings, mail)
    except (OSError, smtplib.SMTPException) as exc:
        log.error(
            "could not send mail via %s:%s: %s: %s",
            settings.smtp_host,
            settings.smtp_port,
            type(exc).__name__,
            exc,
            extra={"subject": mail.subject},
        )
        return False
