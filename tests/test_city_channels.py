"""A city's own channel accounts (the city file's ``channels:``): two cities in one deployment
send through their own SMTP servers and senders and their own SMS accounts; every secret is
named by its environment variable, checked when the file is applied and never stored; a
variable missing at delivery is a dead letter with the reason, not a crash and not the
deployment's account."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels.registry import channels_for, close_all
from app.cities import service as cities
from app.cities.service import CityFileError
from app.contacts.models import ContactKind
from app.contacts.service import ContactSpec
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.settings import Settings
from app.tickets.models import TicketStatus
from tests.factories import CITY, make_jurisdiction, make_service
from tests.fakes import twilio as fake_twilio
from tests.fakes.http import serving
from tests.fakes.smtp import mail_server
from tests.jobs_support import drain
from tests.test_city_file import as_yaml, town
from tests.test_notify import change, file, statuses

NORTH_SID = "AC" + "1" * 32
SOUTH_SID = "AC" + "2" * 32
NORTH_TOKEN = "north-token-0123456789"
SOUTH_TOKEN = "south-token-9876543210"


def section(
    smtp_port: int, sms_sid: str, sender: str, number: str, token_env: str
) -> dict[str, Any]:
    return {
        "email": {
            "sender": sender,
            "reply_to": "Desk <desk@city.example>",
            "smtp_url": f"smtp://127.0.0.1:{smtp_port}",
            "starttls": False,
        },
        "sms": {"account_sid": sms_sid, "auth_token_env": token_env, "sender": number},
    }


# -- the file ------------------------------------------------------------------------------------


CHANNELS = {
    "email": {
        "sender": "Squareton <meldingen@squareton.example>",
        "smtp_url": "smtps://meldingen@smtp.squareton.example",
        "password_env": "KERBSIDE_SQUARETON_SMTP_PASSWORD",
    },
    "sms": {
        "account_sid": NORTH_SID,
        "auth_token_env": "KERBSIDE_SQUARETON_SMS_TOKEN",
        "messaging_service_sid": "MG" + "3" * 32,
    },
    "fcm": {"project_id": "squareton-app", "service_account_env": "KERBSIDE_SQUARETON_FCM"},
    "webpush": {
        "vapid_subject": "mailto:web@squareton.example",
        "vapid_private_key_env": "KERBSIDE_SQUARETON_VAPID",
    },
    "webhooks": [
        {"name": "roads", "url": "https://roads.example/in", "secret_env": "KERBSIDE_ROADS"}
    ],
}
ENV = {
    "KERBSIDE_SQUARETON_SMTP_PASSWORD": "never-in-the-file",
    "KERBSIDE_SQUARETON_SMS_TOKEN": "never-in-the-file-either",
    "KERBSIDE_SQUARETON_FCM": "{}",
    "KERBSIDE_SQUARETON_VAPID": "x",
    "KERBSIDE_ROADS": "whsec_eA==",
}


async def test_channels_apply_export_and_apply_again_with_secrets_named_never_stored(
    db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    first = await cities.apply(db, cities.load(as_yaml(town(channels=CHANNELS))))
    assert ("channels", "squareton", "create") in [(c.what, c.key, c.action) for c in first.changes]
    stored = (
        await db.execute(text("SELECT channels FROM jurisdiction WHERE slug = 'squareton'"))
    ).scalar_one()
    assert stored == CHANNELS
    assert not any(value in json.dumps(stored) for value in ENV.values() if len(value) > 5)

    exported = cities.dump(await cities.export(db, "squareton"))
    assert "password_env: KERBSIDE_SQUARETON_SMTP_PASSWORD" in exported
    assert "never-in-the-file" not in exported
    again = await cities.apply(db, cities.load(exported))
    assert not again.changed
    assert ("channels", "squareton", "unchanged") in [
        (c.what, c.key, c.action) for c in again.changes
    ]

    moved = {**CHANNELS, "email": {**CHANNELS["email"], "sender": "Other <o@squareton.example>"}}
    later = await cities.apply(db, cities.load(as_yaml(town(channels=moved))))
    assert [c.line() for c in later.changes if c.what == "channels"] == [
        "~ channels squareton (email)"
    ]


async def test_a_missing_variable_stops_the_plan_with_its_field_and_name(
    db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KERBSIDE_SQUARETON_SMS_TOKEN")
    monkeypatch.setenv("KERBSIDE_ROADS", "")
    with pytest.raises(CityFileError) as refused:
        await cities.apply(db, cities.load(as_yaml(town(channels=CHANNELS))))
    assert str(refused.value) == (
        "channels.sms.auth_token_env: environment variable KERBSIDE_SQUARETON_SMS_TOKEN is not"
        " set (and 1 more)"
    )
    assert [e["field"] for e in refused.value.errors] == [
        "channels.sms.auth_token_env",
        "channels.webhooks[0].secret_env",
    ]
    assert (
        await db.execute(text("SELECT count(*) FROM jurisdiction WHERE slug = 'squareton'"))
    ).scalar_one() == 0


def test_secrets_cannot_be_written_into_the_file() -> None:
    def error(channels: dict[str, Any]) -> dict[str, str]:
        with pytest.raises(CityFileError) as refused:
            cities.load(as_yaml(town(channels=channels)))
        return {e["field"]: e["message"] for e in refused.value.errors}

    email = CHANNELS["email"]
    assert error({"email": {**email, "smtp_url": "smtp://u:hunter2@mail.example"}}) == {
        "channels.email.smtp_url": "no password in the URL: name its environment variable in"
        " password_env"
    }
    assert error({"email": {**email, "password": "hunter2"}}) == {
        "channels.email.password": "unknown key"
    }
    assert "channels.sms.auth_token_env" in error(
        {"sms": {**CHANNELS["sms"], "auth_token_env": "the-token-itself"}}
    )
    assert error({"sms": {**CHANNELS["sms"], "sender": "+3197010000001"}}) == {
        "channels.sms": "give exactly one of sender or messaging_service_sid"
    }


# -- delivery ------------------------------------------------------------------------------------


async def two_cities(
    committed_db: async_sessionmaker[AsyncSession], north: dict[str, Any], south: dict[str, Any]
) -> None:
    async with committed_db() as session, session.begin():
        for slug, channels in (("north", north), ("south", south)):
            city = await make_jurisdiction(session, slug=slug, channels=channels)
            await make_service(session, city, "pothole")


async def report_and_fix(
    committed_db: async_sessionmaker[AsyncSession], city: str, email: str, phone: str
) -> None:
    filed = await file(
        committed_db,
        Submission(
            channel=Channel.app,
            submitter=Submitter(),
            service_code="pothole",
            place=Place(*CITY.center, LocationSource.device),
            contacts=[ContactSpec(ContactKind.email, email), ContactSpec(ContactKind.phone, phone)],
            updates=True,
            jurisdiction=city,
        ),
    )
    async with committed_db() as session, session.begin():
        await session.execute(
            text("UPDATE contact SET verified_at = now() WHERE address IN (:e, :p)"),
            {"e": email, "p": phone},
        )
    await change(committed_db, filed.ticket_id, TicketStatus.fixed)


async def test_two_cities_send_through_their_own_mail_servers_and_sms_accounts(
    committed_db: async_sessionmaker[AsyncSession],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KERBSIDE_NORTH_SMS_TOKEN", NORTH_TOKEN)
    monkeypatch.setenv("KERBSIDE_SOUTH_SMS_TOKEN", SOUTH_TOKEN)
    fake = fake_twilio.FakeTwilio(accounts={NORTH_SID: NORTH_TOKEN, SOUTH_SID: SOUTH_TOKEN})
    with (
        mail_server() as (north_mail, north_port),
        mail_server() as (south_mail, south_port),
        serving(fake) as twilio,
    ):
        await two_cities(
            committed_db,
            section(
                north_port,
                NORTH_SID,
                "North <n@north.example>",
                "+3197010000001",
                "KERBSIDE_NORTH_SMS_TOKEN",
            ),
            section(
                south_port,
                SOUTH_SID,
                "South <s@south.example>",
                "+4670000000002",
                "KERBSIDE_SOUTH_SMS_TOKEN",
            ),
        )
        await report_and_fix(committed_db, "north", "ann@example.org", "+31612345671")
        await report_and_fix(committed_db, "south", "sven@example.org", "+46701234562")
        # The deployment's own accounts point nowhere useful: a city that falls back to them
        # would fail here.
        deployment = settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": 9, "sms_base_url": twilio.url}
        )
        channels = channels_for(deployment)
        try:
            await drain(deployment, queues=["notify"], channels=channels)
        finally:
            await close_all(channels)
    assert [(m["From"], m["To"], m["Reply-To"]) for m in north_mail.messages] == [
        ("North <n@north.example>", "ann@example.org", "Desk <desk@city.example>")
    ]
    assert [(m["From"], m["To"]) for m in south_mail.messages] == [
        ("South <s@south.example>", "sven@example.org")
    ]
    sent = sorted(zip(fake.by_account, fake.sent, strict=True), key=lambda pair: pair[0])
    assert [(sid, form["From"], form["To"]) for sid, form in sent] == [
        (NORTH_SID, "+3197010000001", "+31612345671"),
        (SOUTH_SID, "+4670000000002", "+46701234562"),
    ]
    assert set(await statuses(committed_db)) == {("status_changed", "sent")}


async def test_a_variable_missing_at_delivery_is_a_dead_letter_with_the_reason(
    committed_db: async_sessionmaker[AsyncSession],
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KERBSIDE_NORTH_SMS_TOKEN", raising=False)
    fake = fake_twilio.FakeTwilio(accounts={NORTH_SID: NORTH_TOKEN})
    with mail_server() as (mail, port), serving(fake) as twilio:
        north = section(
            port, NORTH_SID, "North <n@north.example>", "+3197010000001", "KERBSIDE_NORTH_SMS_TOKEN"
        )
        await two_cities(committed_db, north, {})
        await report_and_fix(committed_db, "north", "ann@example.org", "+31612345671")
        once = settings.model_copy(
            update={
                "notify_max_attempts": 1,
                "sms_base_url": twilio.url,
                "channels_sink_file": tmp_path / "sink.jsonl",
            }
        )
        channels = channels_for(once)
        try:
            await drain(once, queues=["notify"], channels=channels)
        finally:
            await close_all(channels)
    assert len(mail.messages) == 1  # email has its account; SMS waits for its variable
    assert fake.sent == []  # and never goes out through another account
    async with committed_db() as session:
        dead = (
            await session.execute(
                text(
                    "SELECT c.kind, n.status, n.last_error FROM notification n"
                    " JOIN contact c ON c.id = n.contact_id WHERE c.kind = 'phone'"
                )
            )
        ).one()
    assert tuple(dead) == (
        "phone",
        "dead",
        "city north: channels.sms.auth_token_env names KERBSIDE_NORTH_SMS_TOKEN, which is not set"
        " in the environment",
    )


async def test_a_partner_webhook_is_signed_with_the_secret_from_the_environment() -> None:
    from app.channels.base import Delivered
    from app.channels.registry import Unusable
    from tests.fakes.webhooks import WebhookReceiver
    from tests.test_channels import SECRET, make_settings, webhook_message

    fake = WebhookReceiver(secret=SECRET)
    with serving(fake) as server:
        partner = server.url + "/partner"
        city = {"webhooks": [{"name": "roads", "url": partner, "secret_env": "ROADS_SECRET"}]}
        channels = channels_for(
            make_settings(webhook_allow_loopback=True), environ={"ROADS_SECRET": SECRET}
        )
        try:
            hook = channels.for_city("webhook", "north", city)
            assert hook is not None
            assert hook is channels.for_city("webhook", "north", city)  # built once
            # The contact holds no secret (or a stale one): the environment's signs.
            sent = await hook.deliver(
                webhook_message(partner, contact_data={"secret": "whsec_c3RhbGU="})
            )
            other = await hook.deliver(webhook_message(server.url + "/other"))
            assert channels.for_city("webhook", "south", {}) is channels["webhook"]
            # Its FCM key's variable is not in this environment: an adapter that says so.
            push = channels.for_city("fcm", "north", {"fcm": CHANNELS["fcm"]})
            assert isinstance(push, Unusable)
            assert "KERBSIDE_SQUARETON_FCM, which is not set" in push.reason
        finally:
            await close_all(channels)
    assert [r.notes["signature"] for r in server.received] == ["valid", "valid"]
    assert sent == other == Delivered(provider_id="42")
