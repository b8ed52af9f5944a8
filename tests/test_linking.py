"""Notices on a citizen's own account (issue 20, Karlstad): linking a Mastodon account by
OAuth 2 with PKCE and a Messenger conversation by a signed m.me ref, the notice the outbox
sends there (no personal data, no ticket details: "there is news about your report" and the
person's page), and unlinking, which stops it at once, queued notices included. Against
local fakes of a Mastodon server and the Graph API speaking their real payloads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Role, User
from app.auth.principal import Principal
from app.channels.threads import ThreadChannel
from app.channels.x import XChannel
from app.contacts import service as contacts
from app.contacts.models import ConsentMethod, Purpose
from app.contacts.service import Consent
from app.core import clock
from app.jurisdictions.models import Jurisdiction
from app.linking import servers
from app.notify import service as notify
from app.notify.templates import LANGUAGES, render_notice
from app.settings import Settings
from app.social import config as social_config
from app.social.config import Social, SocialAccount
from app.tickets import workflow
from app.tickets.models import TicketStatus
from tests.factories import CITY, bearer_headers, make_jurisdiction, make_service, make_user
from tests.fakes import facebook as fake_fb
from tests.fakes import mastodon as fake_masto
from tests.fakes import x as fake_x
from tests.fakes.http import FakeServer, Received, Reply, dead_address, serving

STAFF = Principal(kind="user", role=Role.admin, label="test-staff")
PAGE_URL = "https://karlstad.example/mina-sidor"
PSID = "7230000000000042"
EMAIL = "resident.linking@example.org"
ENV = {
    "KERBSIDE_TEST_LINK_MASTODON_TOKEN": fake_masto.TOKEN,
    "KERBSIDE_TEST_LINK_MASTODON_CLIENT": fake_masto.CLIENT_ID,
    "KERBSIDE_TEST_LINK_MASTODON_SECRET": fake_masto.CLIENT_SECRET,
    "KERBSIDE_TEST_LINK_FB_TOKEN": fake_fb.PAGE_TOKEN,
    "KERBSIDE_TEST_LINK_FB_SECRET": fake_fb.APP_SECRET,
    "KERBSIDE_TEST_LINK_FB_VERIFY": fake_fb.VERIFY_TOKEN,
    "KERBSIDE_TEST_LINK_X_USER": fake_x.USER_TOKEN,
    "KERBSIDE_TEST_LINK_X_CLIENT": fake_x.CLIENT_ID,
    "KERBSIDE_TEST_LINK_X_SECRET": fake_x.CLIENT_SECRET,
}


@dataclass
class Fakes:
    masto: fake_masto.FakeMastodon
    graph: fake_fb.FakeGraph
    masto_server: FakeServer
    graph_server: FakeServer
    x: fake_x.FakeX
    x_server: FakeServer


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    now = clock.now()
    masto, graph = fake_masto.FakeMastodon(now=now), fake_fb.FakeGraph(now=now)
    x = fake_x.FakeX()
    with serving(masto) as masto_server, serving(graph) as graph_server, serving(x) as x_server:
        masto.url = masto_server.url
        yield Fakes(masto, graph, masto_server, graph_server, x, x_server)


@pytest.fixture
def linking_settings(app: FastAPI, settings: Settings) -> Settings:
    changed = settings.model_copy(
        update={
            "linking_redirect_uri": "https://city.example/linked/{platform}",
            "citizen_page_url": PAGE_URL,
        }
    )
    app.state.settings = changed
    return changed


@pytest.fixture
async def city(db: AsyncSession, fakes: Fakes) -> Jurisdiction:
    city = await make_jurisdiction(db, slug="karlstad-link")
    await make_service(db, city, "pothole", names={"en": "Pothole", "sv": "Potthål"})
    accounts = [
        SocialAccount(
            platform="mastodon",
            handle="kommun",
            base_url=fakes.masto_server.url,
            credentials={
                "access_token": "KERBSIDE_TEST_LINK_MASTODON_TOKEN",
                "client_id": "KERBSIDE_TEST_LINK_MASTODON_CLIENT",
                "client_secret": "KERBSIDE_TEST_LINK_MASTODON_SECRET",
            },
            poll=False,
        ),
        SocialAccount(
            platform="facebook",
            handle="karlstadskommun",
            id=fake_fb.PAGE_ID,
            base_url=f"{fakes.graph_server.url}/v24.0",
            credentials={
                "access_token": "KERBSIDE_TEST_LINK_FB_TOKEN",
                "app_secret": "KERBSIDE_TEST_LINK_FB_SECRET",
                "verify_token": "KERBSIDE_TEST_LINK_FB_VERIFY",
            },
            poll=False,
        ),
        SocialAccount(
            platform="x",
            handle=fake_x.CITY_HANDLE,
            id=fake_x.CITY_ID,
            base_url=fakes.x_server.url,
            credentials={
                "user_token": "KERBSIDE_TEST_LINK_X_USER",
                "client_id": "KERBSIDE_TEST_LINK_X_CLIENT",
                "client_secret": "KERBSIDE_TEST_LINK_X_SECRET",
            },
            poll=False,
        ),
    ]
    await social_config.write(db, city.id, Social(accounts=accounts))
    return city


@pytest.fixture
async def citizen(db: AsyncSession) -> User:
    return await make_user(db, role=Role.citizen, email=EMAIL)


async def as_at_commit(db: AsyncSession) -> None:
    await db.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    await db.execute(text("SET CONSTRAINTS ALL DEFERRED"))


async def start(
    client: httpx.AsyncClient, headers: dict[str, str], platform: str, slug: str
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/me/linked-accounts/{platform}/start", json={"jurisdiction": slug}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def authorize(
    fakes: Fakes, authorize_url: str, redirect: str = fake_masto.REDIRECT_URI
) -> dict[str, str]:
    """The resident approves at their server, which redirects back with the code."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(authorize_url)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(redirect)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def link_mastodon(
    client: httpx.AsyncClient, fakes: Fakes, headers: dict[str, str], slug: str
) -> dict[str, Any]:
    started = await start(client, headers, "mastodon", slug)
    fakes.masto.resident("alice")
    back = await authorize(fakes, started["authorize_url"])
    done = await client.post(
        "/v1/me/linked-accounts/mastodon/callback",
        json={"code": back["code"], "state": back["state"]},
        headers=headers,
    )
    assert done.status_code == 201, done.text
    return dict(done.json())


async def file_and_change(
    client: httpx.AsyncClient, db: AsyncSession, headers: dict[str, str]
) -> tuple[str, int]:
    """The citizen files a report; staff acknowledge it. Returns its reference and ticket."""
    lon, lat = CITY.center
    filed = await client.post(
        "/v1/reports",
        json={"service_code": "pothole", "location": {"lon": lon, "lat": lat}},
        headers=headers,
    )
    assert filed.status_code == 201, filed.text
    reference = filed.json()["ticket"]["reference"]
    ticket_id = (
        await db.execute(text("SELECT id FROM ticket WHERE reference = :r"), {"r": reference})
    ).scalar_one()
    await workflow.change_status(db, ticket_id, TicketStatus.acknowledged, actor=STAFF)
    await as_at_commit(db)
    return reference, ticket_id


async def queued(db: AsyncSession, kind: str) -> list[Any]:
    rows = await db.execute(
        text(
            "SELECT n.id, n.event_kind, n.status, n.last_error FROM notification n"
            " JOIN contact c ON c.id = n.contact_id WHERE c.kind = :kind ORDER BY n.id"
        ),
        {"kind": kind},
    )
    return list(rows.all())


async def send(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, kind: str, row_id: int
) -> str:
    channel = ThreadChannel(kind, settings)
    try:
        attempt = await notify.deliver(sessionmaker, {kind: channel}, settings, row_id)
    finally:
        await channel.close()
    return str(attempt.status)


# -- Mastodon: the OAuth dance, then a notice as a direct status ----------------------------


async def test_a_mastodon_account_is_linked_by_oauth_with_pkce_and_gets_a_bare_notice(
    client: httpx.AsyncClient,
    db: AsyncSession,
    fakes: Fakes,
    city: Jurisdiction,
    citizen: User,
    linking_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = await bearer_headers(linking_settings, citizen)
    started = await start(client, headers, "mastodon", city.slug)
    asked = parse_qs(urlsplit(started["authorize_url"]).query)
    assert started["authorize_url"].startswith(f"{fakes.masto_server.url}/oauth/authorize?")
    assert asked["code_challenge_method"] == ["S256"]
    assert asked["scope"] == ["profile"]
    assert asked["state"] == [started["state"]]
    fakes.masto.resident("alice")
    back = await authorize(fakes, started["authorize_url"])
    assert back["state"] == started["state"]
    done = await client.post(
        "/v1/me/linked-accounts/mastodon/callback",
        json={"code": back["code"], "state": back["state"]},
        headers=headers,
    )
    assert done.status_code == 201, done.text
    host = urlsplit(fakes.masto_server.url).netloc
    linked = done.json()
    assert (linked["platform"], linked["handle"], linked["via"], linked["how"]) == (
        "mastodon",
        f"alice@{host}",
        "kommun",
        "oauth:mastodon",
    )
    # The token endpoint saw the PKCE verifier; the resident's token was revoked at once.
    (exchange,) = fakes.masto_server.to("/oauth/token")
    assert "code_verifier=" in exchange.body.decode()
    assert len(fakes.masto.revoked) == 1
    assert fakes.masto.tokens == {}
    # The consent's evidence: when, how, for what, and where (secrets by variable name).
    evidence = (
        await db.execute(
            text(
                "SELECT k.method, k.evidence FROM contact_consent k JOIN contact c"
                " ON c.id = k.contact_id WHERE c.id = :id AND k.purpose = 'notices'"
            ),
            {"id": linked["id"]},
        )
    ).one()
    assert evidence.method == "linked_account"
    assert evidence.evidence["how"] == "oauth:mastodon"
    assert evidence.evidence["for"] == "notices"
    stored = json.dumps(evidence.evidence)
    assert fake_masto.TOKEN not in stored
    assert fake_masto.CLIENT_SECRET not in stored
    listed = await client.get("/v1/me/linked-accounts", headers=headers)
    assert [a["id"] for a in listed.json()] == [linked["id"]]

    # A replayed callback (the same state and code) is refused.
    again = await client.post(
        "/v1/me/linked-accounts/mastodon/callback",
        json={"code": back["code"], "state": back["state"]},
        headers=headers,
    )
    assert again.status_code == 422
    assert again.json()["errors"][0]["field"] == "state"

    # Their report's news reaches the linked account as a direct status with nothing in it
    # but that there is news, and their page.
    reference, _ = await file_and_change(client, db, headers)
    rows = await queued(db, "mastodon")
    assert [r.event_kind for r in rows] == ["ticket_opened", "status_changed"]
    for row in rows:
        assert await send(sessionmaker, linking_settings, "mastodon", row.id) == "sent"
    assert len(fakes.masto.posted) == 2
    for posted in fakes.masto.posted:
        assert posted["visibility"] == "direct"
        assert "in_reply_to_id" not in posted
        assert posted["status"].startswith(f"@alice@{host} There is news about your report.")
        assert PAGE_URL in posted["status"]
        for private in (reference, "pothole", "Pothole", "acknowledged", EMAIL, "on our list"):
            assert private not in posted["status"]
    keys = [r.headers["idempotency-key"] for r in fakes.masto_server.to("/api/v1/statuses")]
    assert keys == [f"kerbside-outbox-{row.id}" for row in rows]


async def test_forged_expired_foreign_and_replayed_states_and_bad_codes_are_refused(
    client: httpx.AsyncClient,
    db: AsyncSession,
    fakes: Fakes,
    city: Jurisdiction,
    citizen: User,
    linking_settings: Settings,
) -> None:
    headers = await bearer_headers(linking_settings, citizen)
    other = await bearer_headers(linking_settings, await make_user(db, role=Role.citizen))
    fakes.masto.resident("alice")

    async def callback(code: str, state: str, who: dict[str, str] = headers) -> httpx.Response:
        return await client.post(
            "/v1/me/linked-accounts/mastodon/callback",
            json={"code": code, "state": state},
            headers=who,
        )

    started = await start(client, headers, "mastodon", city.slug)
    back = await authorize(fakes, started["authorize_url"])
    state = back["state"]
    forged = state[:-1] + ("0" if state[-1] != "0" else "1")
    attempt, nonce, mac = state.split(".")
    for bad in (forged, f"{int(attempt) + 1000}.{nonce}.{mac}"):
        refused = await callback(back["code"], bad)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["field"] == "state"
    # Another signed-in person cannot finish my linking.
    assert (await callback(back["code"], state, other)).status_code == 422
    # A wrong code (a mistyped out-of-band code): refused by the server, the state kept for
    # the right one, which is then spent.
    wrong = await callback("not-the-code", state)
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "code"
    assert (await callback(back["code"], state)).status_code == 201
    replayed = await callback(back["code"], state)
    assert replayed.status_code == 422
    assert "already used" in replayed.json()["detail"]
    # An expired state.
    late = await start(client, headers, "mastodon", city.slug)
    late_back = await authorize(fakes, late["authorize_url"])
    with clock.set_to(clock.now() + timedelta(minutes=linking_settings.linking_state_minutes + 1)):
        expired = await callback(late_back["code"], late_back["state"])
    assert expired.status_code == 422
    assert "expired" in expired.json()["detail"]
    assert len((await client.get("/v1/me/linked-accounts", headers=headers)).json()) == 1
    # No linking in a city without such an account.
    unknown = await client.post(
        "/v1/me/linked-accounts/mastodon/start", json={"jurisdiction": "nowhere"}, headers=headers
    )
    assert unknown.status_code == 404


# -- Messenger: the m.me ref comes back in the signed referral webhook ----------------------


async def test_a_messenger_referral_links_the_psid_and_the_notice_is_a_messenger_update(
    caplog: pytest.LogCaptureFixture,
    client: httpx.AsyncClient,
    db: AsyncSession,
    fakes: Fakes,
    city: Jurisdiction,
    citizen: User,
    linking_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    caplog.set_level(logging.DEBUG, logger="kerbside")
    headers = await bearer_headers(linking_settings, citizen)
    started = await start(client, headers, "messenger", city.slug)
    assert started["authorize_url"] == f"https://m.me/karlstadskommun?ref={started['state']}"
    at_ms = int(clock.now().timestamp() * 1000)

    async def deliver(body: bytes, signature: str) -> httpx.Response:
        return await client.post(
            "/v1/social/facebook/webhook",
            content=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
        )

    body = fake_fb.messages_delivery(
        fake_fb.referral_event(PSID, started["state"], at_ms=at_ms, how="postback")
    )
    # Forged: signed with another secret, or the body re-serialised after signing.
    assert (await deliver(body, fake_fb.sign(body, "not-the-app-secret"))).status_code == 401
    reserialised = json.dumps(json.loads(body), indent=1).encode()
    assert (await deliver(reserialised, fake_fb.sign(body))).status_code == 401
    # A ref that is not ours (altered), properly signed by Meta: nothing is linked.
    altered = started["state"][:-1] + ("0" if started["state"][-1] != "0" else "1")
    other = fake_fb.messages_delivery(fake_fb.referral_event(PSID, altered, at_ms=at_ms))
    assert (await deliver(other, fake_fb.sign(other))).status_code == 200
    assert (await client.get("/v1/me/linked-accounts", headers=headers)).json() == []

    assert (await deliver(body, fake_fb.sign(body))).status_code == 200, body
    (linked,) = (await client.get("/v1/me/linked-accounts", headers=headers)).json()
    assert (linked["platform"], linked["via"], linked["how"]) == (
        "messenger",
        fake_fb.PAGE_ID,
        "messenger:referral",
    )
    # Meta redelivers: the ref is spent, still one link.
    assert (await deliver(body, fake_fb.sign(body))).status_code == 200
    assert len((await client.get("/v1/me/linked-accounts", headers=headers)).json()) == 1
    # The Get Started tap that carried the ref is no report: no post kept, no dialogue.
    posts = await db.execute(text("SELECT count(*) FROM social_post WHERE platform = 'messenger'"))
    assert posts.scalar_one() == 0

    # The conversation is told at once that it is linked (inside the window it opened).
    fakes.graph.opened(PSID)
    (confirmation,) = await queued(db, "facebook")
    assert confirmation.event_kind == "linked"
    assert await send(sessionmaker, linking_settings, "facebook", confirmation.id) == "sent"
    (told,) = fakes.graph.sent
    assert told["recipient"] == {"id": PSID}
    assert told["messaging_type"] == "UPDATE"
    assert told["message"]["text"].startswith("Linked. You will get a short notice here")
    fakes.graph.sent.clear()

    reference, _ = await file_and_change(client, db, headers)
    rows = (await queued(db, "facebook"))[1:]
    assert [r.event_kind for r in rows] == ["ticket_opened", "status_changed"]
    for row in rows:
        assert await send(sessionmaker, linking_settings, "facebook", row.id) == "sent"
    assert len(fakes.graph.sent) == 2
    for sent in fakes.graph.sent:
        assert sent["recipient"] == {"id": PSID}
        assert sent["messaging_type"] == "UPDATE"  # inside the window the referral opened
        words = sent["message"]["text"]
        assert words.startswith("There is news about your report.")
        assert PAGE_URL in words
        assert reference not in words
        assert EMAIL not in words
    # The page-scoped id and the ref never reach a log line.
    assert caplog.records
    for record in caplog.records:
        line = record.getMessage() + " " + str(record.__dict__)
        assert PSID not in line
        assert started["state"] not in line


# -- X: OAuth 2 with PKCE, the notice a direct message ------------------------------------------


async def test_an_x_account_is_linked_by_oauth_and_the_notice_is_a_direct_message(
    client: httpx.AsyncClient,
    db: AsyncSession,
    fakes: Fakes,
    city: Jurisdiction,
    citizen: User,
    linking_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = await bearer_headers(linking_settings, citizen)
    started = await start(client, headers, "x", city.slug)
    assert started["authorize_url"].startswith(f"{fakes.x_server.url}/i/oauth2/authorize?")
    fakes.x.signed_in = {"id": "2244994945", "name": "A Resident", "username": "resident_ks"}
    back = await authorize(fakes, started["authorize_url"], fake_x.REDIRECT_URI)
    done = await client.post(
        "/v1/me/linked-accounts/x/callback",
        json={"code": back["code"], "state": back["state"]},
        headers=headers,
    )
    assert done.status_code == 201, done.text
    assert (done.json()["platform"], done.json()["handle"], done.json()["how"]) == (
        "x",
        "resident_ks",
        "oauth:x",
    )
    assert len(fakes.x.revoked) == 1
    assert fakes.x.tokens == {}
    # A Mastodon state does not finish an X linking, nor the other way round.
    masto = await start(client, headers, "mastodon", city.slug)
    crossed = await client.post(
        "/v1/me/linked-accounts/x/callback",
        json={"code": "whatever", "state": masto["state"]},
        headers=headers,
    )
    assert crossed.status_code == 422

    reference, _ = await file_and_change(client, db, headers)
    rows = await queued(db, "x")
    assert [r.event_kind for r in rows] == ["ticket_opened", "status_changed"]
    channel = XChannel(linking_settings)
    try:
        first = await notify.deliver(sessionmaker, {"x": channel}, linking_settings, rows[0].id)
        assert first.status == "sent"
        # The person stopped taking messages from the city: a permanent failure, not a retry.
        fakes.x.dm_closed.add("2244994945")
        second = await notify.deliver(sessionmaker, {"x": channel}, linking_settings, rows[1].id)
        assert second.status == "failed"
    finally:
        await channel.close()
    (dm,) = fakes.x.dms
    assert dm["to"] == "2244994945"
    assert dm["text"].startswith("There is news about your report.")
    assert PAGE_URL in dm["text"]
    assert reference not in dm["text"]
    assert "resident_ks" not in dm["text"]
    assert fakes.x.replies == []  # never a public reply


# -- unlinking: nothing more, queued notices included ---------------------------------------


async def test_unlinking_between_queueing_and_delivery_sends_nothing_afterwards(
    client: httpx.AsyncClient,
    db: AsyncSession,
    fakes: Fakes,
    city: Jurisdiction,
    citizen: User,
    linking_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = await bearer_headers(linking_settings, citizen)
    linked = await link_mastodon(client, fakes, headers, city.slug)
    _, ticket_id = await file_and_change(client, db, headers)
    rows = await queued(db, "mastodon")
    assert [r.status for r in rows] == ["pending", "pending"]

    gone = await client.delete(f"/v1/me/linked-accounts/{linked['id']}", headers=headers)
    assert gone.status_code == 204
    assert [(r.status, r.last_error) for r in await queued(db, "mastodon")] == [
        ("suppressed", "the account was unlinked")
    ] * 2
    assert (await client.get("/v1/me/linked-accounts", headers=headers)).json() == []
    again = await client.delete(f"/v1/me/linked-accounts/{linked['id']}", headers=headers)
    assert again.status_code == 404

    # A row the cancellation could not reach (a delivery held it) is refused when claimed.
    await db.execute(
        text("UPDATE notification SET status = 'pending' WHERE id = :id"), {"id": rows[0].id}
    )
    assert await send(sessionmaker, linking_settings, "mastodon", rows[0].id) == "suppressed"
    # Later news queues nothing for the account.
    await workflow.change_status(db, ticket_id, TicketStatus.scheduled, actor=STAFF)
    await as_at_commit(db)
    assert len(await queued(db, "mastodon")) == 2
    channel = ThreadChannel("mastodon", linking_settings)
    try:
        await notify.deliver_due(sessionmaker, {"mastodon": channel}, linking_settings)
    finally:
        await channel.close()
    assert fakes.masto.posted == []
    assert fakes.masto_server.to("/api/v1/statuses") == []


async def test_a_linked_account_of_another_person_is_refused(
    client: httpx.AsyncClient,
    db: AsyncSession,
    fakes: Fakes,
    city: Jurisdiction,
    citizen: User,
    linking_settings: Settings,
) -> None:
    await link_mastodon(client, fakes, await bearer_headers(linking_settings, citizen), city.slug)
    someone = await bearer_headers(linking_settings, await make_user(db, role=Role.citizen))
    started = await start(client, someone, "mastodon", city.slug)
    back = await authorize(fakes, started["authorize_url"])  # alice is still signed in there
    taken = await client.post(
        "/v1/me/linked-accounts/mastodon/callback",
        json={"code": back["code"], "state": back["state"]},
        headers=someone,
    )
    assert taken.status_code == 409, taken.text


def test_the_notice_names_no_ticket_in_any_language() -> None:
    for language in LANGUAGES:
        subject, body = render_notice(language, PAGE_URL)
        assert body.endswith(PAGE_URL)
        assert subject
        assert "{" not in body
    assert render_notice("sv", PAGE_URL)[1].startswith("Det finns nytt om din felanmälan")
    assert render_notice("nl", PAGE_URL)[1].startswith("Er is nieuws over uw melding")


async def test_a_linked_account_takes_report_notices_only(
    client: httpx.AsyncClient,
    db: AsyncSession,
    fakes: Fakes,
    city: Jurisdiction,
    citizen: User,
    linking_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """News of a followed place queued for a linked account (the person followed a place
    with it) is not sent: "there is news about your report" would be wrong, and more would
    say more than the person agreed to on that platform."""
    headers = await bearer_headers(linking_settings, citizen)
    linked = await link_mastodon(client, fakes, headers, city.slug)
    _, ticket_id = await file_and_change(client, db, headers)
    await contacts.give_consent(
        db, linked["id"], Consent(Purpose.area_updates, ConsentMethod.follow_form)
    )
    row_id = (
        await db.execute(
            text(
                "INSERT INTO notification (contact_id, ticket_id, event_kind, channel, reason)"
                " VALUES (:c, :t, 'ticket_opened', 'mastodon', 'area') RETURNING id"
            ),
            {"c": linked["id"], "t": ticket_id},
        )
    ).scalar_one()
    assert await send(sessionmaker, linking_settings, "mastodon", row_id) == "suppressed"
    assert fakes.masto.posted == []


# -- Mastodon on the resident's own server: our app registered there, the notice the city's --


@dataclass
class Home:
    """A second Mastodon server: the resident's own, not the city account's."""

    masto: fake_masto.FakeMastodon
    server: FakeServer

    @property
    def host(self) -> str:
        return urlsplit(self.server.url).netloc


@pytest.fixture
def home() -> Iterator[Home]:
    masto = fake_masto.FakeMastodon(now=clock.now())
    with serving(masto) as server:
        masto.url = server.url
        yield Home(masto, server)


@pytest.fixture
def loopback_settings(app: FastAPI, linking_settings: Settings) -> Settings:
    changed = linking_settings.model_copy(update={"linking_allow_loopback": True})
    app.state.settings = changed
    return changed


async def start_on(
    client: httpx.AsyncClient, headers: dict[str, str], slug: str, server: str
) -> httpx.Response:
    return await client.post(
        "/v1/me/linked-accounts/mastodon/start",
        json={"jurisdiction": slug, "server": server},
        headers=headers,
    )


async def test_an_account_on_the_residents_own_server_is_linked_there_and_noticed_from_the_city(
    client: httpx.AsyncClient,
    db: AsyncSession,
    fakes: Fakes,
    home: Home,
    city: Jurisdiction,
    citizen: User,
    loopback_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = await bearer_headers(loopback_settings, citizen)
    started = await start_on(client, headers, city.slug, home.host)
    assert started.status_code == 201, started.text
    authorize_url = started.json()["authorize_url"]
    assert authorize_url.startswith(f"{home.server.url}/oauth/authorize?")
    # Our app was registered on the resident's server, as a Mastodon client does.
    (registration,) = home.server.to("/api/v1/apps")
    form = {k: v[0] for k, v in parse_qs(registration.body.decode()).items()}
    assert form["redirect_uris"] == fake_masto.REDIRECT_URI
    assert form["scopes"] == "profile"
    assert form["website"] == loopback_settings.public_base_url
    assert form["client_name"].startswith("Kerbside")
    (issued,) = set(home.masto.apps) - {fake_masto.CLIENT_ID}
    assert parse_qs(urlsplit(authorize_url).query)["client_id"] == [issued]

    home.masto.resident("bob", account_id="110000000000000777")
    back = await authorize(fakes, authorize_url)
    done = await client.post(
        "/v1/me/linked-accounts/mastodon/callback",
        json={"code": back["code"], "state": back["state"]},
        headers=headers,
    )
    assert done.status_code == 201, done.text
    linked = done.json()
    assert (linked["handle"], linked["via"], linked["how"]) == (
        f"bob@{home.host}",
        "kommun",
        "oauth:mastodon",
    )
    # The code was exchanged at the resident's server with the app registered there, the
    # token revoked there; the city's server saw none of it.
    (exchange,) = home.server.to("/oauth/token")
    assert f"client_id={issued}" in exchange.body.decode()
    assert len(home.masto.revoked) == 1
    assert home.masto.tokens == {}
    assert fakes.masto_server.to("/oauth/") == []
    contact = (
        await db.execute(
            text(
                "SELECT c.address, k.method, k.evidence FROM contact c JOIN contact_consent k"
                " ON k.contact_id = c.id WHERE c.id = :id AND k.purpose = 'notices'"
            ),
            {"id": linked["id"]},
        )
    ).one()
    assert contact.address == f"{home.host}:110000000000000777"
    assert contact.method == "linked_account"
    assert contact.evidence["via"]["mention"] == f"bob@{home.host}"
    assert home.masto.apps[issued]["client_secret"] not in json.dumps(contact.evidence)

    # A second linking there uses the registration kept, once the server confirms it knows
    # the app (an app token, revoked at once): none is made again.
    again = await start_on(client, headers, city.slug, f"{home.host.upper()}")
    assert again.status_code == 201, again.text
    assert len(home.server.to("/api/v1/apps")) == 1
    assert home.masto.app_tokens == {}
    assert len(home.masto.revoked) == 2

    async def kept() -> list[str]:
        rows = await db.execute(
            text("SELECT client_id FROM mastodon_app WHERE base_url = :url"),
            {"url": home.server.url},
        )
        return list(rows.scalars())

    assert await kept() == [issued]
    # Mastodon deletes an app that holds no token a day after it was made (ours never keep
    # one): the next linking there registers it anew, and the new one is kept.
    del home.masto.apps[issued]
    anew = await start_on(client, headers, city.slug, home.host)
    assert anew.status_code == 201, anew.text
    assert len(home.server.to("/api/v1/apps")) == 2
    (reissued,) = set(home.masto.apps) - {fake_masto.CLIENT_ID}
    assert parse_qs(urlsplit(anew.json()["authorize_url"]).query)["client_id"] == [reissued]
    assert await kept() == [reissued]

    # The notice: a direct status from the city account on the city's server, mentioning
    # the resident's account on theirs.
    await file_and_change(client, db, headers)
    rows = await queued(db, "mastodon")
    assert [r.event_kind for r in rows] == ["ticket_opened", "status_changed"]
    for row in rows:
        assert await send(sessionmaker, loopback_settings, "mastodon", row.id) == "sent"
    assert len(fakes.masto.posted) == 2
    for posted in fakes.masto.posted:
        assert posted["visibility"] == "direct"
        assert posted["status"].startswith(f"@bob@{home.host} There is news about your report.")
    assert home.masto.posted == []


async def test_the_state_binds_the_server_the_linking_was_started_on(
    client: httpx.AsyncClient,
    db: AsyncSession,
    fakes: Fakes,
    home: Home,
    city: Jurisdiction,
    citizen: User,
    loopback_settings: Settings,
) -> None:
    headers = await bearer_headers(loopback_settings, citizen)
    other = fake_masto.FakeMastodon(now=clock.now())
    with serving(other) as other_server:
        other.url = other_server.url
        on_home = await start_on(client, headers, city.slug, home.host)
        on_other = await start_on(client, headers, city.slug, urlsplit(other.url).netloc)
        assert (on_home.status_code, on_other.status_code) == (201, 201)
        other.resident("carol")
        back = await authorize(fakes, on_other.json()["authorize_url"])

        async def callback(state: str) -> httpx.Response:
            return await client.post(
                "/v1/me/linked-accounts/mastodon/callback",
                json={"code": back["code"], "state": state},
                headers=headers,
            )

        # The other server's code with the home server's state: exchanged at the home
        # server (where the state was started), which never issued it.
        crossed = await callback(on_home.json()["state"])
        assert crossed.status_code == 422, crossed.text
        assert crossed.json()["errors"][0]["field"] == "code"
        assert other_server.to("/oauth/token") == []
        assert len(home.server.to("/oauth/token")) == 1
        # The server kept with an attempt is covered by the state's MAC: moved, it is refused.
        attempt_id = int(on_other.json()["state"].split(".")[0])
        await db.execute(
            text("UPDATE link_attempt SET server = :server WHERE id = :id"),
            {"server": home.server.url, "id": attempt_id},
        )
        moved = await callback(on_other.json()["state"])
        assert moved.status_code == 422
        assert moved.json()["errors"][0]["field"] == "state"
        await db.execute(
            text("UPDATE link_attempt SET server = :server WHERE id = :id"),
            {"server": other_server.url, "id": attempt_id},
        )
        done = await callback(on_other.json()["state"])
        assert done.status_code == 201, done.text
        assert done.json()["handle"] == f"carol@{urlsplit(other.url).netloc}"


async def test_a_server_we_do_not_link_on_is_a_422_on_server(
    client: httpx.AsyncClient,
    db: AsyncSession,
    app: FastAPI,
    fakes: Fakes,
    home: Home,
    city: Jurisdiction,
    citizen: User,
    linking_settings: Settings,
) -> None:
    headers = await bearer_headers(linking_settings, citizen)

    async def refused(server: str, platform: str = "mastodon") -> str:
        answer = await client.post(
            f"/v1/me/linked-accounts/{platform}/start",
            json={"jurisdiction": city.slug, "server": server},
            headers=headers,
        )
        assert answer.status_code == 422, (server, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        (error,) = answer.json()["errors"]
        assert error["field"] == "server"
        return str(error["message"])

    # Loopback without the setting (production never has it), private, link-local.
    assert "loopback" in await refused(home.host)
    assert home.server.received == []
    app.state.settings = linking_settings.model_copy(update={"linking_allow_loopback": True})
    assert "private" in await refused("10.1.2.3")
    assert "private" in await refused("192.168.0.10:8443")
    assert "link-local" in await refused("169.254.169.254")
    # More than a host name.
    for malformed in (
        "http://x/y",
        "https://mastodon.social",
        "mastodon.social/@alice",
        "a b",
        "alice@mastodon.social",
        "user:pass@mastodon.social",
        "mastodon.social?x=1",
        "mastodon.social:99999",
        "localhost",
        "-bad-.example",
        "0x7f.1",
        f"{'a' * 62}.{'b' * 62}.{'c' * 62}.{'d' * 62}.example",
        "[::1]:443",
    ):
        await refused(malformed)
    # Only Mastodon is linked on a server one names.
    await refused("mastodon.social", platform="x")
    # A server that does not answer, and one that is no Mastodon (no /api/v1/apps).
    assert "did not answer" in await refused(urlsplit(dead_address()).netloc)
    with serving(lambda _: Reply(404, b"<h1>Not Found</h1>", {"Content-Type": "text/html"})) as web:
        message = await refused(urlsplit(web.url).netloc)
        assert "not a Mastodon server" in message
        assert len(web.to("/api/v1/apps")) == 1
    # Mastodon before 4.3 knows no `profile` scope: it registers no app.
    home.masto.known_scopes.discard("profile")
    assert "Mastodon 4.3" in await refused(home.host)
    # The city account's own server named (here on loopback, the setting unset): linked
    # there as without a server.
    app.state.settings = linking_settings
    city_host = urlsplit(fakes.masto_server.url).netloc
    same = await client.post(
        "/v1/me/linked-accounts/mastodon/start",
        json={"jurisdiction": city.slug, "server": city_host},
        headers=headers,
    )
    assert same.status_code == 201, same.text
    asked = parse_qs(urlsplit(same.json()["authorize_url"]).query)
    assert asked["client_id"] == [fake_masto.CLIENT_ID]
    assert fakes.masto_server.to("/api/v1/apps") == []
    attempt_id = int(same.json()["state"].split(".")[0])
    kept = await db.execute(
        text("SELECT server FROM link_attempt WHERE id = :id"), {"id": attempt_id}
    )
    assert kept.scalar_one() is None


async def test_two_first_linkings_on_one_server_at_once_keep_one_registration(
    settings: Settings, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    both_asked = threading.Barrier(2, timeout=5)
    masto = fake_masto.FakeMastodon(now=clock.now())

    def slow_register(request: Received) -> Reply:
        if request.path == "/api/v1/apps":
            both_asked.wait()  # each registers before either keeps its registration
        return masto(request)

    loopback = settings.model_copy(update={"linking_allow_loopback": True})
    with serving(slow_register) as server:

        async def first_linking() -> str:
            async with committed_db() as session, session.begin():
                found = await servers.oauth_client(
                    session, loopback, server.url, fake_masto.REDIRECT_URI, register=True
                )
                assert found is not None
                return found.client_id

        try:
            ids = await asyncio.gather(first_linking(), first_linking())
            async with committed_db() as session:
                kept = (
                    await session.execute(
                        text("SELECT client_id FROM mastodon_app WHERE base_url = :url"),
                        {"url": server.url},
                    )
                ).scalars()
                assert list(kept) == [ids[0]] == [ids[1]]
        finally:
            async with committed_db() as session, session.begin():
                await session.execute(
                    text("DELETE FROM mastodon_app WHERE base_url = :url"), {"url": server.url}
                )
    assert len(server.to("/api/v1/apps")) == 2


def test_linking_on_loopback_is_refused_in_production(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="LINKING_ALLOW_LOOPBACK"):
        Settings(
            env="production",
            secret_key=SecretStr("p" * 40),
            database_url=settings.database_url,
            linking_allow_loopback=True,
        )
