"""Linking a citizen's own account for notices: start, finish, list, unlink.

A linking is started by the signed-in person (``start``): a row in ``link_attempt`` and a
``state`` for the platform to hand back, ``<id>.<nonce>.<mac>``, where the MAC (HMAC-SHA256
with the deployment's secret key) covers the id, the nonce, the person, the platform and the
expiry. A state is refused when its MAC does not match (forged or altered), when it has
expired (``KERBSIDE_LINKING_STATE_MINUTES``), when it was used (single use), or when
another person or platform presents it. What the state proves is only "the person who
started this"; who the account belongs to is proven by the platform: Mastodon's token
endpoint and ``verify_credentials`` (OAuth 2 code + PKCE, the verifier never leaving the
server; on the city account's server, or on the resident's own, ``app.linking.servers``,
which the attempt keeps and the MAC covers, so the code is exchanged where it was issued),
X's token endpoint and ``/2/users/me`` the same way, Meta's signed webhook for
Messenger (the PSID of whoever opened our ``m.me`` link).

The account becomes a contact of the person (``app.contacts.service.link``) with a consent
to ``notices`` whose evidence says when, how and through which city account. The outbox
then sends it, for every ticket the person follows, a notice with no personal data
(``app.notify``). ``unlink`` ends the consent, detaches the contact from the person and
cancels what was queued for it, in one transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.channels import mastodon, transport, x
from app.channels.facebook import Referral
from app.channels.oauth import Identity, LinkRefused, pkce_pair
from app.contacts import service as contacts
from app.contacts.models import ContactKind
from app.contacts.service import ContactSpec, LinkedContact
from app.core import clock
from app.core.errors import Conflict, InvalidInput, NotFound
from app.linking import repository as sql
from app.linking import servers
from app.linking.models import LinkPlatform
from app.settings import Settings

log = logging.getLogger("kerbside.linking")

STATE = re.compile(r"^(?P<id>[0-9]{1,18})\.(?P<nonce>[A-Za-z0-9_-]{24})\.(?P<mac>[0-9a-f]{32})$")
STATE_PATTERN = STATE.pattern
# Which city accounts serve each platform, and the contact kind a linked account becomes.
_ACCOUNT_PLATFORMS = {
    LinkPlatform.mastodon: ("mastodon",),
    LinkPlatform.messenger: ("facebook",),
    LinkPlatform.x: ("x",),
}
OAUTH_PLATFORMS = frozenset({LinkPlatform.mastodon, LinkPlatform.x})
KIND_OF = {
    LinkPlatform.mastodon: ContactKind.mastodon,
    LinkPlatform.messenger: ContactKind.facebook,
    LinkPlatform.x: ContactKind.x,
}
PLATFORM_OF = {kind: platform for platform, kind in KIND_OF.items()}


@dataclass(frozen=True)
class Started:
    platform: LinkPlatform
    authorize_url: str
    state: str
    expires_at: datetime


@dataclass(frozen=True)
class _CityAccount:
    """What linking needs of one account in the city file's ``social`` section."""

    handle: str
    id: str | None
    base_url: str | None
    credentials: Mapping[str, str]
    options: Mapping[str, Any]

    def secret(self, name: str) -> str | None:
        # Read when used, in the process that uses it: secrets by variable name only.
        variable = self.credentials.get(name)
        return os.environ.get(variable) if variable else None


def _accounts(config: Any, platform: LinkPlatform) -> list[_CityAccount]:
    wanted = _ACCOUNT_PLATFORMS[platform]
    found = []
    for item in (config or {}).get("accounts", []) if isinstance(config, Mapping) else []:
        if not isinstance(item, Mapping) or item.get("platform") not in wanted:
            continue
        credentials = item.get("credentials")
        found.append(
            _CityAccount(
                handle=str(item.get("handle") or ""),
                id=str(item["id"]) if item.get("id") else None,
                base_url=str(item["base_url"]).rstrip("/") if item.get("base_url") else None,
                credentials=dict(credentials) if isinstance(credentials, Mapping) else {},
                options={k: item[k] for k in ("update_tag", "human_agent") if item.get(k)},
            )
        )
    return found


def _usable(account: _CityAccount, platform: LinkPlatform, settings: Settings) -> bool:
    if platform == LinkPlatform.mastodon:
        needed: tuple[str, ...] = ("client_id", "client_secret", "access_token")
        return account.base_url is not None and all(n in account.credentials for n in needed)
    if platform == LinkPlatform.x:
        # X has no out-of-band code: a redirect page of the city's is needed.
        needed = ("client_id", "user_token")
        return settings.linking_redirect_uri is not None and all(
            n in account.credentials for n in needed
        )
    return account.id is not None and "access_token" in account.credentials


def _mac(
    settings: Settings,
    attempt_id: int,
    nonce: str,
    user_id: uuid.UUID,
    platform: str,
    expires_at: datetime,
    server: str | None,
) -> str:
    key = settings.secret_key.get_secret_value().encode()
    text = f"link:{attempt_id}:{nonce}:{user_id}:{platform}:{int(expires_at.timestamp())}"
    if server is not None:
        text += f":{server}"
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


def _digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


OAuthClient = mastodon.OAuthClient | x.OAuthClient


def _redirect_uri(settings: Settings, platform: LinkPlatform) -> str | None:
    """The city's page the platform sends the person back to (``{platform}`` filled in)."""
    uri = settings.linking_redirect_uri
    return uri.replace("{platform}", platform.value) if uri else None


def _oauth_client(settings: Settings, platform: LinkPlatform, account: _CityAccount) -> OAuthClient:
    client_id, client_secret = account.secret("client_id"), account.secret("client_secret")
    if platform == LinkPlatform.mastodon and client_id and client_secret and account.base_url:
        return mastodon.OAuthClient(
            base_url=account.base_url,
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=_redirect_uri(settings, platform) or mastodon.OUT_OF_BAND,
        )
    if platform != LinkPlatform.x or not client_id:
        # Named by variable, never by value: the operator sets it and tries again.
        log.warning(
            "linking needs the city app's client credentials",
            extra={
                "platform": platform.value,
                "account": account.handle,
                "variables": sorted(account.credentials.values()),
            },
        )
        raise NotFound(f"Linking a {platform.value} account is not available here yet")
    api = x.base_url(settings, account.base_url)
    # A fake (tests, the demo) serves the authorization page beside its API.
    page = x.AUTHORIZE_URL if api == x.DEFAULT_BASE_URL else f"{api}/i/oauth2/authorize"
    return x.OAuthClient(
        api_base=api,
        authorize_base=page,
        client_id=client_id,
        redirect_uri=str(_redirect_uri(settings, platform)),
        client_secret=client_secret,
    )


async def _city_account(
    session: AsyncSession,
    settings: Settings,
    platform: LinkPlatform,
    *,
    slug: str | None = None,
    jurisdiction_id: int | None = None,
    handle: str | None = None,
) -> tuple[int, _CityAccount]:
    statement, key = (
        (sql.CITY, {"slug": slug}) if slug else (sql.CITY_BY_ID, {"id": jurisdiction_id})
    )
    row = (await session.execute(statement, key)).first()
    if row is None:
        raise NotFound(f"No jurisdiction {slug}")
    offered = [a for a in _accounts(row.config, platform) if _usable(a, platform, settings)]
    if handle is not None:
        offered = [a for a in offered if a.handle.lower() == handle.lower().lstrip("@")]
    if not offered:
        raise NotFound(f"{row.slug} offers no {platform.value} account to link")
    return row.id, offered[0]


def _bad_server(reason: str) -> InvalidInput:
    return InvalidInput(
        f"We cannot link an account on that server: {reason}",
        errors=[{"field": "server", "message": reason, "type": "value_error", "in": "body"}],
    )


async def _resident_server(
    session: AsyncSession,
    settings: Settings,
    platform: LinkPlatform,
    city_account: _CityAccount,
    given: str | None,
) -> tuple[str | None, mastodon.OAuthClient | None]:
    """The resident's own Mastodon server (its base URL) and our app there, registered now
    if it is our first linking there; (None, None) for the city account's own server."""
    if given is None:
        return None, None
    if platform != LinkPlatform.mastodon:
        raise _bad_server(f"a {platform.value} account is linked on {platform.value} itself")
    try:
        # The city account's own server is linked on as without one, whatever its address.
        named = servers.base_url(given, allow_loopback=True)
        if servers.same_server(named, city_account.base_url):
            return None, None
        server = servers.base_url(given, allow_loopback=settings.linking_allow_loopback)
    except servers.ServerRefused as refused:
        raise _bad_server(str(refused)) from None
    redirect = _redirect_uri(settings, platform) or mastodon.OUT_OF_BAND
    try:
        oauth = await servers.oauth_client(session, settings, server, redirect, register=True)
    except LinkRefused as refused:
        log.info("mastodon server refused", extra={"reason": str(refused)})
        raise _bad_server(str(refused)) from None
    assert oauth is not None
    return server, oauth


async def start(
    session: AsyncSession,
    settings: Settings,
    user_id: uuid.UUID,
    platform: LinkPlatform,
    jurisdiction: str,
    account: str | None = None,
    server: str | None = None,
) -> Started:
    """Begin linking: where to send the person (the Mastodon server's or X's authorization
    page, or the Page's ``m.me`` link) with a state bound to them, valid for
    ``linking_state_minutes``. Mastodon: on ``server`` (a host name, the resident's own
    server) when given and not the city account's, our app registered there at first use."""
    jurisdiction_id, city_account = await _city_account(
        session, settings, platform, slug=jurisdiction, handle=account
    )
    home, on_home = await _resident_server(session, settings, platform, city_account, server)
    oauth: OAuthClient | None = on_home
    now = clock.now()
    await session.execute(sql.FORGET_OLD, {"user_id": user_id, "now": now})
    expires_at = (now + timedelta(minutes=settings.linking_state_minutes)).replace(microsecond=0)
    nonce = secrets.token_urlsafe(18)
    if oauth is None and platform in OAUTH_PLATFORMS:
        oauth = _oauth_client(settings, platform, city_account)
    verifier, challenge = pkce_pair() if oauth is not None else (None, "")
    attempt_id = (
        await session.execute(
            sql.START,
            {
                "user_id": user_id,
                "platform": platform.value,
                "jurisdiction_id": jurisdiction_id,
                "account": city_account.handle,
                "server": home,
                "nonce_hash": _digest(nonce),
                "code_verifier": verifier,
                "expires_at": expires_at,
            },
        )
    ).scalar_one()
    mac = _mac(settings, attempt_id, nonce, user_id, platform.value, expires_at, home)
    state = f"{attempt_id}.{nonce}.{mac}"
    if isinstance(oauth, x.OAuthClient):
        url = x.authorize_url(oauth, state, challenge)
    elif oauth is not None:
        url = mastodon.authorize_url(oauth, state, challenge)
    else:
        url = f"https://m.me/{city_account.handle}?ref={state}"
    return Started(platform, url, state, expires_at)


class _Refused(Exception):
    pass


async def _take(
    session: AsyncSession,
    settings: Settings,
    state: str,
    platform: LinkPlatform,
    user_id: uuid.UUID | None,
) -> Any:
    """The attempt ``state`` names, marked used; ``_Refused`` with the reason otherwise."""
    match = STATE.match(state)
    if match is None:
        raise _Refused("not a state we issued")
    row = (await session.execute(sql.ATTEMPT, {"id": int(match["id"])})).first()
    if row is None:
        raise _Refused("unknown")
    wanted = _mac(
        settings, row.id, match["nonce"], row.user_id, row.platform, row.expires_at, row.server
    )
    if not hmac.compare_digest(wanted, match["mac"]) or not hmac.compare_digest(
        row.nonce_hash, _digest(match["nonce"])
    ):
        raise _Refused("does not match")
    if row.platform != platform.value or (user_id is not None and row.user_id != user_id):
        raise _Refused("was started for another linking")
    if row.used_at is not None:
        raise _Refused("was already used")
    now = clock.now()
    if row.expires_at <= now:
        raise _Refused("has expired")
    await session.execute(sql.USE, {"id": row.id, "now": now})
    return row


def _bad_state(reason: str) -> InvalidInput:
    return InvalidInput(
        f"This linking's state {reason}; start again",
        errors=[{"field": "state", "message": reason, "type": "value_error", "in": "body"}],
    )


async def finish_oauth(
    session: AsyncSession,
    settings: Settings,
    user_id: uuid.UUID,
    platform: LinkPlatform,
    code: str,
    state: str,
) -> LinkedContact:
    """The code the platform handed back: exchanged (with the PKCE verifier) at its token
    endpoint, the account read ("who am I"), the token revoked, and the account linked to
    the person who started."""
    try:
        attempt = await _take(session, settings, state, platform, user_id)
    except _Refused as refused:
        raise _bad_state(str(refused)) from None
    _, account = await _city_account(
        session,
        settings,
        platform,
        jurisdiction_id=attempt.jurisdiction_id,
        handle=attempt.account,
    )
    try:
        identity = await _identity(session, settings, platform, account, attempt, code)
    except LinkRefused as refused:
        log.info("linking refused", extra={"platform": platform.value, "reason": str(refused)})
        raise InvalidInput(
            f"The {platform.value} server did not accept this code; start again",
            errors=[
                {"field": "code", "message": str(refused), "type": "value_error", "in": "body"}
            ],
        ) from None
    via: dict[str, Any] = {"platform": platform.value, "account": account.handle, "notice": True}
    if platform == LinkPlatform.x:
        via["credentials"] = account.credentials["user_token"]  # the variable's name
        if account.base_url:
            via["base_url"] = account.base_url
    else:
        via |= {"base_url": account.base_url, "env": dict(account.credentials)}
        via["mention"] = identity.handle
    spec = ContactSpec(KIND_OF[platform], identity.address, data={"handle": identity.handle})
    stored = await contacts.link(session, user_id, spec, how=f"oauth:{platform.value}", via=via)
    if stored is None:
        raise Conflict(f"That {platform.value} account is linked to another person")
    return next(c for c in await contacts.linked(session, user_id) if c.id == stored.id)


async def _identity(
    session: AsyncSession,
    settings: Settings,
    platform: LinkPlatform,
    account: _CityAccount,
    attempt: Any,
    code: str,
) -> Identity:
    """Who signed in, from the server the attempt was started on (``LinkRefused``)."""
    if attempt.server is None:
        oauth = _oauth_client(settings, platform, account)
        async with transport.client(settings) as http:
            if isinstance(oauth, x.OAuthClient):
                return await x.link_identity(http, oauth, code, attempt.code_verifier)
            return await mastodon.link_identity(http, oauth, code, attempt.code_verifier)
    redirect = _redirect_uri(settings, platform) or mastodon.OUT_OF_BAND
    home = await servers.oauth_client(session, settings, attempt.server, redirect, register=False)
    if home is None:  # the redirect URI changed since the start: our app there is another
        raise _bad_state("was started for a redirect page we no longer use")
    async with servers.client(settings) as http:
        # Three requests at most: the token, verify_credentials, the revocation.
        linking = mastodon.link_identity(http, home, code, attempt.code_verifier)
        return await servers.bounded(settings, 3, linking)


@dataclass(frozen=True)
class MessengerLinked:
    """A conversation linked: the contact, where its messages go, the person's language."""

    contact_id: int
    via: Mapping[str, Any]
    language: str


async def link_messenger(
    session: AsyncSession, settings: Settings, referral: Referral
) -> MessengerLinked | None:
    """A person opened the city Page's conversation from a linking's ``m.me`` link: their
    page-scoped id becomes the contact of the person who started it. None (and nothing
    linked) for a ref that is not a live state of ours, or another Page's."""
    try:
        attempt = await _take(session, settings, referral.ref, LinkPlatform.messenger, None)
    except _Refused as refused:
        log.info("messenger referral not linked", extra={"reason": str(refused)})
        return None
    try:
        _, account = await _city_account(
            session,
            settings,
            LinkPlatform.messenger,
            jurisdiction_id=attempt.jurisdiction_id,
            handle=attempt.account,
        )
    except NotFound:
        return None
    if account.id != referral.page_id:
        log.info("messenger referral for another page not linked")
        return None
    via: dict[str, Any] = {
        "platform": "messenger",
        "account": account.id,
        "env": dict(account.credentials),
        "notice": True,
        **account.options,
    }
    if account.base_url:
        via["base_url"] = account.base_url
    # The person just wrote to the Page: the messaging window is open from now.
    spec = ContactSpec(
        ContactKind.facebook, referral.psid, data={"last_inbound_at": referral.at.isoformat()}
    )
    stored = await contacts.link(session, attempt.user_id, spec, how="messenger:referral", via=via)
    if stored is None:
        log.info("messenger referral for an account linked to another person")
        return None
    locale = (await session.execute(sql.LOCALE, {"user_id": attempt.user_id})).scalar_one()
    return MessengerLinked(stored.id, via, str(locale or "en"))


async def linked(session: AsyncSession, user_id: uuid.UUID) -> list[LinkedContact]:
    return await contacts.linked(session, user_id)


async def unlink(session: AsyncSession, user_id: uuid.UUID, contact_id: int) -> None:
    """Stop notices on one linked account at once: the consent ends, the contact leaves the
    person, and its queued notices are cancelled, all in the caller's transaction."""
    if not await contacts.unlink(session, user_id, contact_id):
        raise NotFound(f"No linked account {contact_id} of yours")
    await session.execute(sql.CANCEL_NOTICES, {"contact_id": contact_id})
