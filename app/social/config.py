"""The city file's ``social`` section: the city's accounts on each platform, the street list
of the local gazetteer, and the webcare team's service level.

Credentials are never in the file: an account names the environment variables that hold
them (``credentials: {bearer_token: KERBSIDE_X_PUBLICWORKS_BEARER}``), read when used. The
section is stored as it is written (``social_settings``), and exported back unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

Platform = Literal["x", "facebook", "messenger", "whatsapp", "mastodon", "bluesky"]
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_mode_override="validation"
    )


class SocialAccount(_Strict):
    """One city account on one platform (several per jurisdiction: news, public works)."""

    platform: Platform
    handle: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="The account's public name, without @ (e.g. stadsbeheer050)"
    )
    id: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="The platform's own id of the account (X: its user id; Facebook: the "
        "page id; WhatsApp: the phone_number_id; Bluesky: the DID, optional)",
    )
    credentials: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,64}$")], EnvName] = Field(
        default_factory=dict,
        description="Which environment variable holds each secret (X: bearer_token for "
        "reading mentions, "
        "user_token for replying and notices, and client_id, client_secret of the city's "
        "OAuth 2 app to let residents link their account; Facebook, WhatsApp: access_token, "
        "app_secret, verify_token; Mastodon: access_token, and client_id, client_secret of "
        "the city's application to let residents link their account for notices; Bluesky: "
        "app_password); never the secret itself",
    )
    base_url: Annotated[str, Field(max_length=500)] | None = Field(
        default=None,
        description="The platform's API for this account (a Mastodon instance, a local fake); "
        "unset: the platform's own (KERBSIDE_X_API_BASE_URL for X)",
    )
    poll: bool = Field(default=True, description="Poll its mentions (else webhooks only)")
    reports: bool = Field(
        default=True,
        description="Turn posts that tag it into tickets (a news account may only answer)",
    )
    update_tag: Annotated[str, Field(pattern=r"^[A-Z_]{1,40}$")] | None = Field(
        default=None,
        description="Messenger: the message tag for updates after the 24-hour window (e.g. "
        "ACCOUNT_UPDATE, a policy choice); unset: no update after the window without an opt-in",
    )
    human_agent: bool = Field(
        default=False, description="Messenger: an agent's answer may use HUMAN_AGENT (7 days)"
    )
    update_template: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,512}$")] | None = Field(
        default=None,
        description="WhatsApp: the approved template for updates after the 24-hour window "
        "({{1}} the ticket reference, {{2}} its link)",
    )
    template_languages: dict[
        Annotated[str, Field(pattern=r"^[a-z]{2,3}$")],
        Annotated[str, Field(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")],
    ] = Field(
        default_factory=dict,
        description="WhatsApp: the template's language code per message language (nl: nl_NL)",
    )
    media_hosts: list[Annotated[str, Field(pattern=r"^(\*\.)?[a-z0-9.-]{1,253}$")]] = Field(
        default_factory=list,
        max_length=20,
        description="Hosts the photos of posts may be downloaded from (HTTPS), besides "
        "base_url's and the platform's own CDN (e.g. a Mastodon server's media domain "
        "files.example.social; *.example.net for its subdomains)",
    )
    direct_messages: bool = Field(
        default=False,
        description="X: when X refuses an answer in the thread and on the person's original "
        "mention, send it as a direct message (the app has dm.write; X still refuses it "
        "when the person does not accept messages from the city)",
    )
    dialogue: bool = Field(
        default=True,
        description="WhatsApp, Messenger: private messages are answered by the reporting "
        "dialogue (asks for what is missing, confirms, files)",
    )

    @property
    def key(self) -> str:
        return self.id or self.handle

    def secret(self, name: str) -> str | None:
        """The secret ``name`` from the environment variable the file names (None: unset)."""
        variable = self.credentials.get(name)
        return os.environ.get(variable) if variable else None


class Street(_Strict):
    """A street of the local gazetteer: a name the text may use, and a point on it."""

    name: Annotated[str, Field(min_length=2, max_length=200)]
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)


class Social(_Strict):
    """Social intake for this jurisdiction (docs/social.md)."""

    accounts: list[SocialAccount] = Field(default_factory=list)
    streets: list[Street] = Field(
        default_factory=list, description="The local gazetteer: streets named in posts"
    )
    respond_within_hours: float = Field(
        default=24.0, gt=0, le=24 * 30, description="The webcare team answers every post within"
    )
    warn_before_hours: float = Field(
        default=4.0, ge=0, le=24 * 30, description="Flag posts this long before they are due"
    )
    place_max_m: float = Field(
        default=1000.0,
        gt=0,
        le=20_000,
        description="A place the platform attached locates a post only when its box is at "
        "most this wide (a neighbourhood, not the city)",
    )
    blocked_authors: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, description="Author ids or handles whose posts are ignored"
    )
    suggest_merge_within_hours: float = Field(
        default=48.0,
        gt=0,
        le=24 * 7,
        description="A new post (another conversation) by an author whose ticket was updated "
        "this recently, about the same service or within suggest_merge_within_m of it, is "
        "not filed: webcare is asked to link it or file it as new (both matching: linked)",
    )
    suggest_merge_within_m: float = Field(
        default=150.0, gt=0, le=5000, description="Near enough to the author's ticket to ask"
    )
    reopen_within_hours: float = Field(
        default=72.0,
        ge=0,
        le=24 * 90,
        description="A report linked to a ticket fixed or closed less than this long ago "
        "reopens it; later, it opens a follow-up ticket that names the old one",
    )
    report_form_url: Annotated[str, Field(max_length=500)] | None = Field(
        default=None,
        description="The report form we link to when asking for a location; unset: "
        "KERBSIDE_PUBLIC_BASE_URL/report",
    )

    @model_validator(mode="after")
    def _accounts_once(self) -> Social:
        keys = [(a.platform, a.key.lower()) for a in self.accounts]
        if len(set(keys)) != len(keys):
            raise ValueError("accounts: each platform account once")
        return self


# -- stored per jurisdiction -------------------------------------------------------------------

_READ = text("SELECT config FROM social_settings WHERE jurisdiction_id = :j")
_WRITE = text(
    "INSERT INTO social_settings (jurisdiction_id, config) VALUES (:j, CAST(:config AS jsonb))"
    " ON CONFLICT (jurisdiction_id) DO UPDATE SET config = EXCLUDED.config"
)
_ALL = text(
    "SELECT s.jurisdiction_id, j.slug, s.config FROM social_settings s"
    " JOIN jurisdiction j ON j.id = s.jurisdiction_id ORDER BY s.jurisdiction_id"
)


async def read(session: AsyncSession, jurisdiction_id: int) -> Social:
    found = (await session.execute(_READ, {"j": jurisdiction_id})).scalar_one_or_none()
    return Social.model_validate(found or {})


async def write(
    session: AsyncSession, jurisdiction_id: int, social: Social
) -> Literal["create", "update", "unchanged"]:
    """Store the section; says ``create``, ``update`` or ``unchanged`` (the plan's words)."""
    wanted = social.model_dump(mode="json", exclude_defaults=True)
    found = (await session.execute(_READ, {"j": jurisdiction_id})).scalar_one_or_none()
    if found is not None and found == wanted:
        return "unchanged"
    if found is None and not wanted:
        return "unchanged"
    await session.execute(_WRITE, {"j": jurisdiction_id, "config": json.dumps(wanted)})
    return "create" if found is None else "update"


@dataclass(frozen=True)
class AccountOf:
    """A configured account and the jurisdiction it belongs to."""

    jurisdiction_id: int
    jurisdiction: str  # slug
    account: SocialAccount
    social: Social


async def accounts(session: AsyncSession) -> list[AccountOf]:
    """Every configured account of every jurisdiction."""
    found: list[AccountOf] = []
    for row in await session.execute(_ALL):
        social = Social.model_validate(row.config or {})
        found.extend(AccountOf(row.jurisdiction_id, row.slug, a, social) for a in social.accounts)
    return found


# A Page's Messenger messages are addressed to its Facebook account.
_SAME_ACCOUNT = {"messenger": ("messenger", "facebook")}


def find(known: list[AccountOf], platform: str, account: str) -> AccountOf | None:
    """The configured account a post was addressed to (by the platform's id or handle)."""
    wanted = account.lower().lstrip("@")
    platforms = _SAME_ACCOUNT.get(platform, (platform,))
    for candidate in known:
        if candidate.account.platform not in platforms:
            continue
        if wanted in (candidate.account.handle.lower(), (candidate.account.id or "").lower()):
            return candidate
    return None


def as_json(social: Social) -> dict[str, Any]:
    return social.model_dump(mode="json", exclude_defaults=True)
