"""Accounts, mail, principals and role gates, API keys, rate limits and the auth CLI."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi_users.authentication import JWTStrategy
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.api_keys import issue_api_key
from app.auth.models import ApiKey, Role, User
from app.auth.principal import (
    AdminPrincipal,
    CitizenPrincipal,
    CrewPrincipal,
    CurrentPrincipal,
    OptionalPrincipal,
    StaffPrincipal,
    ensure_same_jurisdiction,
)
from app.cli import main as cli_main
from app.core.ratelimit import RateLimits, SlidingWindow
from app.jurisdictions.models import Jurisdiction
from app.mail import Mail, send_mail
from app.main import create_app
from app.settings import Settings, get_settings
from tests.factories import PASSWORD, make_crew, make_jurisdiction, make_user
from tests.mailbox import Inbox, configure, token_in

PROBLEM = "application/problem+json"
NEW_PASSWORD = "a quite different passphrase"


# -- helpers -----------------------------------------------------------------------------------


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/v1/auth/jwt/login", data={"username": email, "password": password})


async def token_for(settings: Settings, user: User) -> str:
    strategy: JWTStrategy[User, uuid.UUID] = JWTStrategy(
        settings.secret_key.get_secret_value(), settings.jwt_lifetime_seconds
    )
    return await strategy.write_token(user)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    return body


# -- registration, sign-in, profile ------------------------------------------------------------


async def test_register_login_and_me(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/register",
        json={"email": "ada@example.org", "password": PASSWORD, "full_name": "Ada"},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["role"] == "citizen"
    assert created["is_verified"] is False
    assert "password" not in created
    assert "hashed_password" not in created

    signed_in = await login(client, "ada@example.org")
    assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["access_token"]
    assert signed_in.json()["token_type"] == "bearer"

    me = await client.get("/v1/users/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["id"] == created["id"]
    assert me.json()["full_name"] == "Ada"

    # People may change their name, not their role.
    patched = await client.patch(
        "/v1/users/me",
        json={"full_name": "Ada L.", "role": "admin", "is_superuser": True, "jurisdiction_id": 1},
        headers=bearer(token),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["full_name"] == "Ada L."
    assert patched.json()["role"] == "citizen"
    assert patched.json()["is_superuser"] is False
    assert patched.json()["jurisdiction_id"] is None

    # JWTs cannot be revoked: signing out is the app forgetting its token.
    assert (await client.post("/v1/auth/jwt/logout", headers=bearer(token))).status_code == 204
    assert_problem(await client.post("/v1/auth/jwt/logout"), 401)


async def test_registration_never_grants_privileges(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    jurisdiction = await make_jurisdiction(db)
    crew = await make_crew(db, jurisdiction)
    response = await client.post(
        "/v1/auth/register",
        json={
            "email": "mallory@example.org",
            "password": PASSWORD,
            "role": "admin",
            "is_superuser": True,
            "is_verified": True,
            "is_active": False,
            "jurisdiction_id": jurisdiction.id,
            "crew_id": crew.id,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["role"] == "citizen"
    assert body["is_superuser"] is False
    assert body["is_verified"] is False
    assert body["is_active"] is True
    assert body["jurisdiction_id"] is None
    assert body["crew_id"] is None
    stored = (
        await db.execute(select(User).where(User.email == "mallory@example.org"))
    ).scalar_one()
    assert (stored.role, stored.is_superuser, stored.jurisdiction_id) == ("citizen", False, None)


async def test_weak_passwords_are_422_with_the_reason(client: httpx.AsyncClient) -> None:
    short = await client.post(
        "/v1/auth/register", json={"email": "bob@example.org", "password": "short"}
    )
    body = assert_problem(short, 422)
    assert body["code"] == "REGISTER_INVALID_PASSWORD"
    assert "10 characters" in body["detail"]

    own_name = await client.post(
        "/v1/auth/register", json={"email": "roberta@example.org", "password": "Roberta-2026!"}
    )
    body = assert_problem(own_name, 422)
    assert "email" in body["detail"]


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("1111111111", "different characters"),
        ("abababababab", "different characters"),
        ("1234567890", "common"),
        ("abcdefghijkl", "run"),
        ("zyxwvutsrqp", "run"),
        ("Password123", "common"),
        ("qwertyuiop", "common"),
    ],
)
async def test_repeated_runs_and_common_passwords_are_refused(
    client: httpx.AsyncClient, password: str, reason: str
) -> None:
    response = await client.post(
        "/v1/auth/register", json={"email": "carol@example.org", "password": password}
    )
    body = assert_problem(response, 422)
    assert body["code"] == "REGISTER_INVALID_PASSWORD"
    assert reason in body["detail"]


async def test_duplicate_email_is_400(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await make_user(db, email="taken@example.org")
    response = await client.post(
        "/v1/auth/register", json={"email": "Taken@Example.org", "password": PASSWORD}
    )
    body = assert_problem(response, 400)
    assert body["code"] == "REGISTER_USER_ALREADY_EXISTS"
    assert body["detail"] == "An account with this email address already exists"


async def test_bad_login_is_a_problem_with_a_code(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await make_user(db)
    for email, password in ((user.email, "wrong password!"), ("nobody@example.org", PASSWORD)):
        body = assert_problem(await login(client, email, password), 400)
        assert body["code"] == "LOGIN_BAD_CREDENTIALS"
        assert body["detail"] == "Wrong email or password"


async def test_inactive_user_is_401(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, app: FastAPI
) -> None:
    app.include_router(gate_router)
    user = await make_user(db)
    token = await token_for(settings, user)
    user.is_active = False
    await db.flush()
    assert_problem(await client.get("/_test/gates/current", headers=bearer(token)), 401)
    body = assert_problem(await client.get("/_test/gates/optional", headers=bearer(token)), 401)
    assert "deactivated" in body["detail"]
    assert_problem(await client.get("/v1/users/me", headers=bearer(token)), 401)
    # And it cannot sign in again.
    assert_problem(await login(client, user.email), 400)


async def test_user_admin_routes_are_for_admins(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    jurisdiction = await make_jurisdiction(db)
    citizen = await make_user(db)
    admin = await make_user(db, role=Role.admin)
    citizen_token = await token_for(settings, citizen)
    admin_token = await token_for(settings, admin)

    body = assert_problem(
        await client.get(f"/v1/users/{citizen.id}", headers=bearer(citizen_token)), 403
    )
    assert body["type"].endswith("/forbidden")
    assert_problem(await client.get(f"/v1/users/{citizen.id}"), 401)
    found = await client.get(f"/v1/users/{citizen.id}", headers=bearer(admin_token))
    assert found.status_code == 200
    assert found.json()["email"] == citizen.email
    assert_problem(await client.get(f"/v1/users/{uuid.uuid4()}", headers=bearer(admin_token)), 404)

    # Staff need a jurisdiction; the role decides superuser.
    no_place = await client.patch(
        f"/v1/users/{citizen.id}", json={"role": "staff"}, headers=bearer(admin_token)
    )
    assert_problem(no_place, 422)
    # A jurisdiction that does not exist is invalid input (was a foreign-key 500), and a
    # boolean is a boolean.
    nowhere = await client.patch(
        f"/v1/users/{citizen.id}",
        json={"role": "staff", "jurisdiction_id": 2**31 - 1},
        headers=bearer(admin_token),
    )
    assert assert_problem(nowhere, 422)["errors"][0]["field"] == "jurisdiction_id"
    assert_problem(
        await client.patch(
            f"/v1/users/{citizen.id}", json={"is_verified": 0}, headers=bearer(admin_token)
        ),
        422,
    )
    promoted = await client.patch(
        f"/v1/users/{citizen.id}",
        json={"role": "staff", "jurisdiction_id": jurisdiction.id},
        headers=bearer(admin_token),
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "staff"
    assert promoted.json()["is_superuser"] is False
    made_admin = await client.patch(
        f"/v1/users/{citizen.id}", json={"role": "admin"}, headers=bearer(admin_token)
    )
    assert made_admin.json()["is_superuser"] is True


async def test_the_last_admin_cannot_be_deleted_demoted_or_deactivated(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    jurisdiction = await make_jurisdiction(db)
    admin = await make_user(db, role=Role.admin)
    headers = bearer(await token_for(settings, admin))
    me = f"/v1/users/{admin.id}"
    for call in (
        client.delete(me, headers=headers),
        client.patch(
            me, json={"role": "staff", "jurisdiction_id": jurisdiction.id}, headers=headers
        ),
        client.patch(me, json={"is_active": False}, headers=headers),
    ):
        body = assert_problem(await call, 409)
        assert "last active admin" in body["detail"]
    assert (await client.get("/v1/users/me", headers=headers)).json()["role"] == "admin"
    # With a second admin, the first may go.
    await make_user(db, role=Role.admin)
    assert (await client.delete(me, headers=headers)).status_code == 204


async def test_a_crew_member_joins_only_a_crew_of_their_jurisdiction(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    # auth checks the crew by table (app/auth/repository.py), not through app.crews.
    home, elsewhere = await make_jurisdiction(db), await make_jurisdiction(db)
    ours, theirs = await make_crew(db, home), await make_crew(db, elsewhere)
    member = await make_user(db)
    admin = bearer(await token_for(settings, await make_user(db, role=Role.admin)))

    for crew_id in (theirs.id, theirs.id + 1000):
        refused = await client.patch(
            f"/v1/users/{member.id}",
            json={"role": "crew", "jurisdiction_id": home.id, "crew_id": crew_id},
            headers=admin,
        )
        body = assert_problem(refused, 422)
        assert f"Crew {crew_id} is not a crew of jurisdiction {home.id}" in body["detail"]
    joined = await client.patch(
        f"/v1/users/{member.id}",
        json={"role": "crew", "jurisdiction_id": home.id, "crew_id": ours.id},
        headers=admin,
    )
    assert joined.status_code == 200, joined.text
    assert (joined.json()["role"], joined.json()["crew_id"]) == ("crew", ours.id)


# -- mail: password reset and verification -----------------------------------------------------


async def test_forgot_and_reset_password_by_mail(
    client: httpx.AsyncClient, db: AsyncSession, inbox: Inbox
) -> None:
    user = await make_user(db, email="forgetful@example.org")
    response = await client.post("/v1/auth/forgot-password", json={"email": user.email})
    assert response.status_code == 202
    (message,) = inbox.to(user.email)
    assert message["Subject"] == "Reset your Kerbside password"
    assert "/reset-password?token=" in message.get_body().get_content()  # type: ignore[union-attr]
    token = token_in(message)

    # Unknown addresses get the same answer and no mail.
    response = await client.post("/v1/auth/forgot-password", json={"email": "ghost@example.org"})
    assert response.status_code == 202
    assert inbox.to("ghost@example.org") == []

    weak = await client.post("/v1/auth/reset-password", json={"token": token, "password": "abc"})
    assert assert_problem(weak, 422)["code"] == "RESET_PASSWORD_INVALID_PASSWORD"
    reset = await client.post(
        "/v1/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert reset.status_code == 200, reset.text
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200
    assert (await login(client, user.email, PASSWORD)).status_code == 400
    # A reset link works once: the password it was made for has changed.
    again = await client.post(
        "/v1/auth/reset-password", json={"token": token, "password": "yet another passphrase"}
    )
    assert assert_problem(again, 400)["code"] == "RESET_PASSWORD_BAD_TOKEN"


async def test_registration_mails_a_verification_link(
    client: httpx.AsyncClient, inbox: Inbox
) -> None:
    response = await client.post(
        "/v1/auth/register", json={"email": "newbie@example.org", "password": PASSWORD}
    )
    assert response.status_code == 201
    (message,) = inbox.to("newbie@example.org")
    assert "/verify?token=" in message.get_body().get_content()  # type: ignore[union-attr]

    verified = await client.post("/v1/auth/verify", json={"token": token_in(message)})
    assert verified.status_code == 200, verified.text
    assert verified.json()["is_verified"] is True
    again = await client.post("/v1/auth/verify", json={"token": token_in(message)})
    assert assert_problem(again, 400)["code"] == "VERIFY_USER_ALREADY_VERIFIED"
    bad = await client.post("/v1/auth/verify", json={"token": "not-a-token"})
    assert assert_problem(bad, 400)["code"] == "VERIFY_USER_BAD_TOKEN"

    # A verified address gets no further mail when asking again.
    await client.post("/v1/auth/request-verify-token", json={"email": "newbie@example.org"})
    assert len(inbox.to("newbie@example.org")) == 1


async def test_request_verify_token_sends_a_new_link(
    client: httpx.AsyncClient, db: AsyncSession, inbox: Inbox
) -> None:
    user = await make_user(db, email="unverified@example.org")
    user.is_verified = False
    await db.flush()
    response = await client.post("/v1/auth/request-verify-token", json={"email": user.email})
    assert response.status_code == 202
    (message,) = inbox.to(user.email)
    assert message["Subject"] == "Confirm your email address for Kerbside"
    verified = await client.post("/v1/auth/verify", json={"token": token_in(message)})
    assert verified.json()["is_verified"] is True


async def test_without_smtp_mail_is_logged_for_developers(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="kerbside.mail"):
        response = await client.post(
            "/v1/auth/register", json={"email": "dev@example.org", "password": PASSWORD}
        )
    assert response.status_code == 201
    (record,) = [r for r in caplog.records if r.name == "kerbside.mail"]
    assert record.levelno == logging.WARNING
    assert "mail is not configured" in record.getMessage()
    assert "/verify?token=" in record.getMessage()


async def test_without_smtp_in_production_mail_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    production = Settings(env="production", secret_key="s" * 40, database_url="postgres://x@h/k")
    with caplog.at_level(logging.WARNING, logger="kerbside.mail"):
        sent = await send_mail(production, Mail(to="a@example.org", subject="Hi", body="secret"))
    assert sent is False
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "secret" not in record.getMessage()


async def test_unreachable_smtp_server_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broken = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_timeout_seconds": 2}
    )
    with caplog.at_level(logging.ERROR, logger="kerbside.mail"):
        sent = await send_mail(broken, Mail(to="a@example.org", subject="Hi", body="x"))
    assert sent is False
    assert "could not send mail" in caplog.records[0].getMessage()


# -- rate limits -------------------------------------------------------------------------------


async def test_login_is_rate_limited(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    configure(app, rate_limit_login_per_minute=3)
    user = await make_user(db)
    for _ in range(3):
        assert (await login(client, user.email, "wrong password!")).status_code == 400
    blocked = await login(client, user.email, PASSWORD)
    body = assert_problem(blocked, 429)
    assert body["type"].endswith("/rate-limited")
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    assert body["retry_after"] == int(blocked.headers["retry-after"])
    # The budget is per address and account: another account from here may still sign in.
    other = await make_user(db)
    assert (await login(client, other.email)).status_code == 200
    # The budget lives in the database (the default store): a new application (a restart,
    # another process or host) still counts it.
    again = create_app(app.state.settings)
    again.state.engine, again.state.sessionmaker = app.state.engine, app.state.sessionmaker
    transport = httpx.ASGITransport(app=again, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        assert_problem(await login(other, user.email), 429)


async def test_register_and_mail_routes_are_rate_limited(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    configure(app, rate_limit_register_per_minute=1, rate_limit_account_mail_per_minute=1)
    first = await client.post(
        "/v1/auth/register", json={"email": "one@example.org", "password": PASSWORD}
    )
    assert first.status_code == 201
    second = await client.post(
        "/v1/auth/register", json={"email": "two@example.org", "password": PASSWORD}
    )
    assert_problem(second, 429)
    assert (
        await client.post("/v1/auth/forgot-password", json={"email": "one@example.org"})
    ).status_code == 202
    # forgot-password and request-verify-token share one budget.
    assert_problem(
        await client.post("/v1/auth/request-verify-token", json={"email": "one@example.org"}),
        429,
    )


def test_sliding_window_counts_the_last_minute() -> None:
    now = [1000.0]
    window = SlidingWindow(60, clock=lambda: now[0])
    assert window.hit("k", 2) is None
    now[0] += 10
    assert window.hit("k", 2) is None
    assert window.hit("k", 2) == pytest.approx(50)  # the first hit ages out at t=1060
    assert window.hit("other", 2) is None
    now[0] += 50
    assert window.hit("k", 2) is None
    assert window.hit("k", 2) == pytest.approx(10)
    now[0] += 3600
    window.hit("fresh", 1)
    assert len(window) == 1  # quiet keys are swept


def test_sliding_window_memory_is_bounded() -> None:
    window = SlidingWindow(60, max_keys=100, clock=lambda: 0.0)
    for n in range(1000):
        window.hit(f"client-{n}", 5)
    assert len(window) <= 100
    limits = RateLimits()
    assert limits.window("a") is limits.window("a")


# -- principals and role gates -----------------------------------------------------------------

gate_router = APIRouter(prefix="/_test/gates")


@gate_router.get("/optional")
async def gate_optional(principal: OptionalPrincipal) -> dict[str, str | None]:
    return {"label": principal.label if principal else None}


@gate_router.get("/current")
async def gate_current(principal: CurrentPrincipal) -> dict[str, str]:
    return {"label": principal.label}


@gate_router.get("/citizen")
async def gate_citizen(principal: CitizenPrincipal) -> dict[str, str]:
    return {"label": principal.label}


@gate_router.get("/crew")
async def gate_crew(principal: CrewPrincipal) -> dict[str, str]:
    return {"label": principal.label}


@gate_router.get("/staff")
async def gate_staff(principal: StaffPrincipal) -> dict[str, str]:
    return {"label": principal.label}


@gate_router.get("/admin")
async def gate_admin(principal: AdminPrincipal) -> dict[str, str]:
    return {"label": principal.label}


@gate_router.get("/jurisdiction/{jurisdiction_id}")
async def gate_jurisdiction(jurisdiction_id: int, principal: StaffPrincipal) -> dict[str, str]:
    ensure_same_jurisdiction(principal, jurisdiction_id)
    return {"label": principal.label}


GATES = ("optional", "current", "citizen", "crew", "staff", "admin")
# Who passes which gate, by design: every role acts as a citizen; staff also act for crews.
EXPECTED = {
    "anonymous": (200, 401, 401, 401, 401, 401),
    "citizen": (200, 200, 200, 403, 403, 403),
    "crew": (200, 200, 200, 200, 403, 403),
    "staff": (200, 200, 200, 200, 200, 403),
    "admin": (200, 200, 200, 200, 200, 200),
    "citizen key": (200, 200, 200, 403, 403, 403),
    "crew key": (200, 200, 200, 200, 403, 403),
    "staff key": (200, 200, 200, 200, 200, 403),
    "bad token": (401, 401, 401, 401, 401, 401),
    "bad key": (401, 401, 401, 401, 401, 401),
}


async def test_role_gate_matrix(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    app.include_router(gate_router)
    jurisdiction = await make_jurisdiction(db)
    crew = await make_crew(db, jurisdiction)
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    labels: dict[str, str] = {}
    for role in Role:
        user = await make_user(
            db,
            role=role,
            jurisdiction=jurisdiction if role in (Role.crew, Role.staff) else None,
            crew=crew if role == Role.crew else None,
        )
        headers[role.value] = bearer(await token_for(settings, user))
        labels[role.value] = f"user:{user.id}"
    for role in (Role.citizen, Role.crew, Role.staff):
        issued = await issue_api_key(
            db, jurisdiction_id=jurisdiction.id, name=f"{role} app", role=role
        )
        headers[f"{role} key"] = {"X-API-Key": issued.secret}
        labels[f"{role} key"] = f"api-key:{issued.api_key.id}"
    headers["bad token"] = bearer("not.a.token")
    headers["bad key"] = {"X-API-Key": "ks_000000000000_nope"}

    seen: dict[str, tuple[int, ...]] = {}
    for who, sent in headers.items():
        codes = []
        for gate in GATES:
            response = await client.get(f"/_test/gates/{gate}", headers=sent)
            codes.append(response.status_code)
            if response.status_code == 200 and who in labels:
                assert response.json()["label"] == labels[who]
            elif response.status_code != 200:
                assert response.headers["content-type"] == PROBLEM
            if response.status_code == 401:
                assert "www-authenticate" in response.headers
        seen[who] = tuple(codes)
    assert seen == EXPECTED


async def test_jurisdiction_guard(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    app.include_router(gate_router)
    mine = await make_jurisdiction(db)
    theirs = await make_jurisdiction(db)
    staff = bearer(
        await token_for(settings, await make_user(db, role=Role.staff, jurisdiction=mine))
    )
    admin = bearer(await token_for(settings, await make_user(db, role=Role.admin)))
    key = await issue_api_key(db, jurisdiction_id=mine.id, name="integration", role=Role.staff)

    assert (
        await client.get(f"/_test/gates/jurisdiction/{mine.id}", headers=staff)
    ).status_code == 200
    body = assert_problem(
        await client.get(f"/_test/gates/jurisdiction/{theirs.id}", headers=staff), 403
    )
    assert "jurisdiction" in body["detail"]
    assert (
        await client.get(f"/_test/gates/jurisdiction/{theirs.id}", headers=admin)
    ).status_code == 200
    assert_problem(
        await client.get(
            f"/_test/gates/jurisdiction/{theirs.id}", headers={"X-API-Key": key.secret}
        ),
        403,
    )


# -- API keys ----------------------------------------------------------------------------------


@pytest.fixture
async def two_cities(db: AsyncSession, settings: Settings) -> dict[str, Any]:
    a = await make_jurisdiction(db)
    b = await make_jurisdiction(db)
    return {
        "a": a,
        "b": b,
        "staff_a": bearer(
            await token_for(settings, await make_user(db, role=Role.staff, jurisdiction=a))
        ),
        "staff_b": bearer(
            await token_for(settings, await make_user(db, role=Role.staff, jurisdiction=b))
        ),
        "admin": bearer(await token_for(settings, await make_user(db, role=Role.admin))),
        "crew_a": bearer(
            await token_for(settings, await make_user(db, role=Role.crew, jurisdiction=a))
        ),
    }


async def test_api_key_lifecycle(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession, two_cities: dict[str, Any]
) -> None:
    app.include_router(gate_router)
    city = two_cities
    created = await client.post(
        "/v1/api-keys",
        json={"name": "Open311 app", "role": "crew", "scopes": ["reports:write"]},
        headers=city["staff_a"],
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["key"]
    assert re.fullmatch(r"ks_[0-9a-f]{12}_[\w-]{40,}", secret)
    assert secret.split("_")[1] == body["prefix"]
    assert body["jurisdiction_id"] == city["a"].id
    assert body["role"] == "crew"
    assert body["scopes"] == ["reports:write"]
    stored = await db.get(ApiKey, body["id"])
    assert stored is not None
    assert secret not in (stored.key_hash, stored.prefix)

    listed = await client.get("/v1/api-keys", headers=city["staff_a"])
    assert listed.status_code == 200
    (item,) = listed.json()
    assert item["id"] == body["id"]
    assert "key" not in item
    assert "key_hash" not in item
    assert secret not in listed.text
    assert (await client.get("/v1/api-keys", headers=city["staff_b"])).json() == []

    # The key works in the header and as ?api_key=, and records when it was used.
    by_header = await client.get("/_test/gates/crew", headers={"X-API-Key": secret})
    assert by_header.status_code == 200
    assert by_header.json()["label"] == f"api-key:{body['id']}"
    by_query = await client.get("/_test/gates/crew", params={"api_key": secret})
    assert by_query.status_code == 200
    await db.refresh(stored)
    first_use = stored.last_used_at
    assert first_use is not None
    await client.get("/_test/gates/crew", headers={"X-API-Key": secret})
    await db.refresh(stored)
    assert stored.last_used_at == first_use  # written at most once a minute

    # A tampered secret with a real prefix is refused.
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert_problem(await client.get("/_test/gates/crew", headers={"X-API-Key": forged}), 401)

    revoked = await client.delete(f"/v1/api-keys/{body['id']}", headers=city["staff_a"])
    assert revoked.status_code == 204
    again = await client.delete(f"/v1/api-keys/{body['id']}", headers=city["staff_a"])
    assert again.status_code == 204
    refused = assert_problem(
        await client.get("/_test/gates/crew", headers={"X-API-Key": secret}), 401
    )
    assert "revoked" in refused["detail"]
    assert_problem(await client.delete("/v1/api-keys/999999", headers=city["staff_a"]), 404)


async def test_expired_api_key_is_401(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    app.include_router(gate_router)
    jurisdiction = await make_jurisdiction(db)
    issued = await issue_api_key(
        db,
        jurisdiction_id=jurisdiction.id,
        name="temporary",
        role=Role.citizen,
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    ok = await client.get("/_test/gates/citizen", headers={"X-API-Key": issued.secret})
    assert ok.status_code == 200
    issued.api_key.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    await db.flush()
    body = assert_problem(
        await client.get("/_test/gates/citizen", headers={"X-API-Key": issued.secret}), 401
    )
    assert "expired" in body["detail"]


async def test_api_keys_stay_in_their_jurisdiction(
    client: httpx.AsyncClient, db: AsyncSession, two_cities: dict[str, Any]
) -> None:
    city = two_cities
    other = {"name": "sneaky", "jurisdiction_id": city["b"].id}
    assert_problem(await client.post("/v1/api-keys", json=other, headers=city["staff_a"]), 403)
    assert_problem(
        await client.get(
            "/v1/api-keys", params={"jurisdiction_id": city["b"].id}, headers=city["staff_a"]
        ),
        403,
    )
    theirs = await issue_api_key(db, jurisdiction_id=city["b"].id, name="b app", role=Role.citizen)
    # Another jurisdiction's key does not exist for staff (docs/auth.md): 404, as unknown.
    assert_problem(
        await client.delete(f"/v1/api-keys/{theirs.api_key.id}", headers=city["staff_a"]), 404
    )
    # Crew and citizens manage no keys; neither do keys themselves.
    assert_problem(
        await client.post("/v1/api-keys", json={"name": "x"}, headers=city["crew_a"]), 403
    )
    assert_problem(await client.post("/v1/api-keys", json={"name": "x"}), 401)
    staff_key = await issue_api_key(db, jurisdiction_id=city["a"].id, name="ops", role=Role.staff)
    body = assert_problem(
        await client.post(
            "/v1/api-keys", json={"name": "x"}, headers={"X-API-Key": staff_key.secret}
        ),
        403,
    )
    assert "API keys" in body["detail"]


async def test_api_key_role_is_capped(
    client: httpx.AsyncClient, two_cities: dict[str, Any]
) -> None:
    city = two_cities
    higher = await client.post(
        "/v1/api-keys", json={"name": "root", "role": "admin"}, headers=city["staff_a"]
    )
    assert "more than your own role" in assert_problem(higher, 403)["detail"]
    # Admins choose the jurisdiction, and even they get no admin keys.
    assert_problem(
        await client.post("/v1/api-keys", json={"name": "x"}, headers=city["admin"]), 422
    )
    admin_key = await client.post(
        "/v1/api-keys",
        json={"name": "root", "role": "admin", "jurisdiction_id": city["b"].id},
        headers=city["admin"],
    )
    assert_problem(admin_key, 422)
    made = await client.post(
        "/v1/api-keys",
        json={"name": "b ops", "role": "staff", "jurisdiction_id": city["b"].id},
        headers=city["admin"],
    )
    assert made.status_code == 201
    assert made.json()["jurisdiction_id"] == city["b"].id
    everything = await client.get("/v1/api-keys", headers=city["admin"])
    assert [k["id"] for k in everything.json()] == [made.json()["id"]]
    past = await client.post(
        "/v1/api-keys",
        json={"name": "old", "expires_at": "2000-01-01T00:00:00Z"},
        headers=city["staff_a"],
    )
    assert_problem(past, 422)
    bad_scope = await client.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["DROP TABLE"]}, headers=city["staff_a"]
    )
    assert_problem(bad_scope, 422)


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
async def cli_database(
    committed_db: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    monkeypatch.setenv("KERBSIDE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    async with committed_db() as session, session.begin():
        await make_jurisdiction(session, slug="cli-city")
    yield committed_db
    get_settings.cache_clear()


def test_cli_creates_users_and_keys(
    cli_database: async_sessionmaker[AsyncSession], capsys: pytest.CaptureFixture[str]
) -> None:
    # A plain (not async) test: the CLI runs its own event loop, in the main thread.
    def run(*argv: str) -> str:
        cli_main(list(argv))
        return capsys.readouterr().out.strip()

    out = run(
        "users", "create", "--email", "boss@cli.example", "--password", PASSWORD,
        "--role", "staff", "--jurisdiction", "cli-city", "--full-name", "Boss",
    )  # fmt: skip
    assert '"role": "staff"' in out
    secret = run("api-keys", "create", "--jurisdiction", "cli-city", "--name", "importer")
    assert secret.startswith("ks_")

    async def stored() -> tuple[User, ApiKey, Jurisdiction]:
        async with cli_database() as session:
            user = (
                await session.execute(select(User).where(User.email == "boss@cli.example"))
            ).scalar_one()
            key = (
                await session.execute(select(ApiKey).where(ApiKey.name == "importer"))
            ).scalar_one()
            city = (
                await session.execute(select(Jurisdiction).where(Jurisdiction.slug == "cli-city"))
            ).scalar_one()
            return user, key, city

    user, key, city = asyncio.run(stored())
    assert (user.role, user.is_verified, user.jurisdiction_id) == ("staff", True, city.id)
    assert key.revoked_at is None
    run("api-keys", "revoke", str(key.id))
    assert asyncio.run(stored())[1].revoked_at is not None

    with pytest.raises(SystemExit) as stopped:
        run(
            "users", "create", "--email", "c@cli.example", "--password", "short",
            "--role", "citizen",
        )  # fmt: skip
    assert stopped.value.code == 2
    assert "10 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(
            "users", "create", "--email", "d@cli.example", "--password", PASSWORD,
            "--role", "crew",
        )  # fmt: skip
    assert "--jurisdiction" in capsys.readouterr().err


def test_cli_puts_a_crew_member_in_a_crew_of_their_jurisdiction(
    cli_database: async_sessionmaker[AsyncSession], capsys: pytest.CaptureFixture[str]
) -> None:
    async def crews() -> tuple[int, int]:
        async with cli_database() as session, session.begin():
            city = (
                await session.execute(select(Jurisdiction).where(Jurisdiction.slug == "cli-city"))
            ).scalar_one()
            other = await make_jurisdiction(session, slug="cli-other")
            ours = await make_crew(session, city, name="Night shift")
            await make_crew(session, other, name="Day shift")
            return city.id, ours.id

    city_id, crew_id = asyncio.run(crews())

    def create(email: str, crew: str) -> str:
        cli_main(
            [
                "users", "create", "--email", email, "--password", PASSWORD,
                "--role", "crew", "--jurisdiction", "cli-city", "--crew", crew,
            ]
        )  # fmt: skip
        return capsys.readouterr().out.strip()

    create("night@cli.example", "Night shift")

    async def stored(email: str) -> User:
        async with cli_database() as session:
            return (await session.execute(select(User).where(User.email == email))).scalar_one()

    user = asyncio.run(stored("night@cli.example"))
    assert (user.role, user.jurisdiction_id, user.crew_id) == ("crew", city_id, crew_id)
    with pytest.raises(SystemExit) as stopped:
        create("day@cli.example", "Day shift")  # a crew, but of another jurisdiction
    assert stopped.value.code == 2
    assert "jurisdiction 'cli-city' has no crew 'Day shift'" in capsys.readouterr().err


def test_cli_accounts_are_ones_the_api_can_read(
    cli_database: async_sessionmaker[AsyncSession],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An address the API would refuse (a reserved top-level domain) is refused here too,
    # with a sentence, rather than stored and then answered with a 500 on /v1/users/me.
    with pytest.raises(SystemExit) as stopped:
        cli_main(
            [
                "users", "create", "--email", "ops@city.test", "--password", PASSWORD,
                "--role", "staff", "--jurisdiction", "cli-city",
            ]
        )  # fmt: skip
    assert stopped.value.code == 2
    assert "ops@city.test" in capsys.readouterr().err
    # An admin acts for every jurisdiction: no --jurisdiction needed, and no traceback.
    cli_main(
        [
            "users", "create", "--email", "root@cli.example", "--password", PASSWORD,
            "--role", "admin",
        ]
    )  # fmt: skip
    assert '"role": "admin"' in capsys.readouterr().out
