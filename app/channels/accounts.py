"""A city's own channel accounts: the ``channels:`` section of the city file.

A deployment may serve several cities, each sending from its own address, SMS account and
push project. The section names each account, and every credential by the NAME of an
environment variable (``password_env: KERBSIDE_GRONINGEN_SMTP_PASSWORD``), never its value:
the city file is exported, diffed and kept in version control, so a secret must not be in it.

``settings_for`` turns a section into the deployment's ``Settings`` with that account's
values in place, so each adapter is built exactly as for the deployment's own account. A
missing variable is a ``Problem`` (a sentence naming the city, the field and the variable,
never a value): the city file's apply refuses to plan with it, and the worker gives every
message for that channel the reason instead of sending (``app.channels.registry``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from app.contacts.models import ContactKind
from app.settings import Settings

EnvName = Annotated[
    str,
    Field(
        pattern=r"^[A-Z_][A-Z0-9_]{0,127}$",
        description="The NAME of an environment variable that holds the secret (never the "
        "secret itself)",
        examples=["KERBSIDE_GRONINGEN_SMTP_PASSWORD"],
    ),
]

# Which section of ``channels:`` serves each contact kind.
SECTION_OF_KIND = {
    ContactKind.email.value: "email",
    ContactKind.phone.value: "sms",
    ContactKind.fcm.value: "fcm",
    ContactKind.webpush.value: "webpush",
    ContactKind.webhook.value: "webhooks",
}


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_mode_override="validation"
    )


class EmailAccount(_Section):
    """The city's sender and mail server for email notifications."""

    sender: Annotated[str, Field(min_length=3, max_length=200)] = Field(
        description='The From: of every message, e.g. "Gemeente Groningen <meldingen@groningen.nl>"'
    )
    reply_to: Annotated[str, Field(min_length=3, max_length=200)] | None = None
    smtp_url: Annotated[str, Field(max_length=500)] = Field(
        description="smtp://user@host:587 (STARTTLS unless starttls: false) or smtps://… "
        "(TLS from the start); no password here: see password_env",
        examples=["smtp://meldingen@smtp.groningen.nl:587"],
    )
    password_env: EnvName | None = None
    starttls: bool = True

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("must be smtp://[user@]host[:port] or smtps://…")
        if parts.password is not None:
            raise ValueError(
                "no password in the URL: name its environment variable in password_env"
            )
        if parts.path not in {"", "/"} or parts.query or parts.fragment:
            raise ValueError("host, port and user only")
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
        return value


class SmsAccount(_Section):
    """The city's account at a Twilio-compatible SMS provider."""

    account_sid: Annotated[str, Field(pattern=r"^AC[0-9a-fA-F]{32}$")]
    auth_token_env: EnvName
    sender: Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$")] | None = Field(
        default=None, description="The sending number (E.164), or give messaging_service_sid"
    )
    messaging_service_sid: Annotated[str, Field(pattern=r"^MG[0-9a-fA-F]{32}$")] | None = None
    base_url: Annotated[str, Field(pattern=r"^https?://", max_length=500)] | None = Field(
        default=None, description="The provider's API (default: the deployment's)"
    )

    @model_validator(mode="after")
    def _one_sender(self) -> SmsAccount:
        if (self.sender is None) == (self.messaging_service_sid is None):
            raise ValueError("give exactly one of sender or messaging_service_sid")
        return self


class FcmAccount(_Section):
    """The city's Firebase project for mobile push."""

    project_id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{4,61}[a-z0-9]$")] | None = Field(
        default=None, description="Default: the service account's project"
    )
    service_account_env: EnvName = Field(
        description="The variable holding the service account's JSON key (its text)"
    )


class WebPushAccount(_Section):
    """The city's VAPID identity for Web Push."""

    vapid_subject: Annotated[str, Field(pattern=r"^(mailto:|https://)", max_length=200)]
    vapid_private_key_env: EnvName = Field(
        description="The variable holding the VAPID private key (PEM, or base64url of the raw key)"
    )


class PartnerWebhook(_Section):
    """A partner system's endpoint: webhook contacts at this URL are signed with the secret
    from the environment (``whsec_…``), so a partner's secret never sits in the database."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    url: Annotated[str, Field(pattern=r"^https?://", max_length=2000)]
    secret_env: EnvName


class CityChannels(_Section):
    """The city's own accounts per channel; a channel left out uses the deployment's
    (``KERBSIDE_SMTP_*``, ``KERBSIDE_SMS_*``, …)."""

    email: EmailAccount | None = None
    sms: SmsAccount | None = None
    fcm: FcmAccount | None = None
    webpush: WebPushAccount | None = None
    webhooks: list[PartnerWebhook] = Field(default_factory=list)

    @field_validator("webhooks")
    @classmethod
    def _unique_webhooks(cls, value: list[PartnerWebhook]) -> list[PartnerWebhook]:
        for what in ("name", "url"):
            seen = [getattr(w, what) for w in value]
            if len(set(seen)) != len(seen):
                raise ValueError(f"each webhook {what} once")
        return value

    def env_names(self) -> list[tuple[str, str]]:
        """Every environment variable the section names, with its field's path."""
        found: list[tuple[str, str]] = []
        if self.email and self.email.password_env:
            found.append(("channels.email.password_env", self.email.password_env))
        if self.sms:
            found.append(("channels.sms.auth_token_env", self.sms.auth_token_env))
        if self.fcm:
            found.append(("channels.fcm.service_account_env", self.fcm.service_account_env))
        if self.webpush:
            found.append(
                ("channels.webpush.vapid_private_key_env", self.webpush.vapid_private_key_env)
            )
        for i, hook in enumerate(self.webhooks):
            found.append((f"channels.webhooks[{i}].secret_env", hook.secret_env))
        return found


@dataclass(frozen=True)
class Problem:
    """Why a city's channel cannot be used (no secret value in it)."""

    field: str
    message: str


def missing(channels: CityChannels, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """The variables the section names that are not set (or empty) here."""
    env = os.environ if environ is None else environ
    return [
        Problem(path, f"environment variable {name} is not set")
        for path, name in channels.env_names()
        if not env.get(name)
    ]


@dataclass(frozen=True)
class Account:
    """The deployment's settings with one city's account in place, and what the adapter
    needs beyond them."""

    settings: Settings
    extra: Mapping[str, Any]


def account_for(
    kind: str,
    slug: str,
    channels: CityChannels,
    base: Settings,
    environ: Mapping[str, str] | None = None,
) -> Account | Problem | None:
    """The city's account for contacts of ``kind``; None when the city has none (use the
    deployment's)."""
    env = os.environ if environ is None else environ

    def secret(path: str, name: str) -> SecretStr | Problem:
        value = env.get(name)
        if not value:
            return Problem(
                path, f"city {slug}: {path} names {name}, which is not set in the environment"
            )
        return SecretStr(value)

    if kind == ContactKind.email.value and channels.email:
        return _email(channels.email, base, secret)
    if kind == ContactKind.phone.value and channels.sms:
        sms = channels.sms
        token = secret("channels.sms.auth_token_env", sms.auth_token_env)
        if isinstance(token, Problem):
            return token
        update = {
            "sms_account_sid": sms.account_sid,
            "sms_auth_token": token,
            "sms_from": sms.sender,
            "sms_messaging_service_sid": sms.messaging_service_sid,
            "sms_base_url": (sms.base_url or base.sms_base_url).rstrip("/"),
        }
        return Account(base.model_copy(update=update), {})
    if kind == ContactKind.fcm.value and channels.fcm:
        key = secret("channels.fcm.service_account_env", channels.fcm.service_account_env)
        if isinstance(key, Problem):
            return key
        update = {
            "fcm_service_account_json": key,
            "fcm_service_account_file": None,
            "fcm_project_id": channels.fcm.project_id,
        }
        return Account(base.model_copy(update=update), {})
    if kind == ContactKind.webpush.value and channels.webpush:
        push = channels.webpush
        key = secret("channels.webpush.vapid_private_key_env", push.vapid_private_key_env)
        if isinstance(key, Problem):
            return key
        update = {"webpush_vapid_private_key": key, "webpush_vapid_subject": push.vapid_subject}
        return Account(base.model_copy(update=update), {})
    if kind == ContactKind.webhook.value and channels.webhooks:
        secrets: dict[str, SecretStr | Problem] = {
            hook.url: secret(f"channels.webhooks[{i}].secret_env", hook.secret_env)
            for i, hook in enumerate(channels.webhooks)
        }
        return Account(base, {"secrets": secrets})
    return None


def _email(email: EmailAccount, base: Settings, secret: Any) -> Account | Problem:
    parts = urlsplit(email.smtp_url)
    implicit_tls = parts.scheme == "smtps"
    password: SecretStr | None = None
    if email.password_env:
        found = secret("channels.email.password_env", email.password_env)
        if isinstance(found, Problem):
            return found
        password = found
    update = {
        "smtp_host": parts.hostname,
        "smtp_port": parts.port or (465 if implicit_tls else 587),
        "smtp_username": unquote(parts.username) if parts.username else None,
        "smtp_password": password,
        "smtp_starttls": email.starttls and not implicit_tls,
        "email_from": email.sender,
    }
    return Account(
        base.model_copy(update=update),
        {"reply_to": email.reply_to, "implicit_tls": implicit_tls},
    )
