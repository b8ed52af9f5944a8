"""The outbound channel adapters, each against a local fake speaking its provider's wire format:
a real SMTP server, a fake FCM with its OAuth token endpoint, a Web Push service that decrypts,
a Twilio-style API, a partner's webhook receiver. All on 127.0.0.1; no database."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr, ValidationError

from app.channels import sink, transport
from app.channels.base import Delivered, Failed, Message, RetryLater
from app.channels.email import EmailChannel, message_id
from app.channels.fcm import FcmChannel
from app.channels.registry import channels_for, close_all, unavailable
from app.channels.sink import SinkChannel
from app.channels.sms import SmsChannel
from app.channels.threads import ThreadChannel
from app.channels.webhook import WebhookChannel, refusal, sign
from app.channels.webpush import WebPushChannel, load_vapid_key, topic_of
from app.contacts.models import ContactKind
from app.core import clock
from app.settings import Settings
from tests.fakes import fcm as fake_fcm
from tests.fakes import smtp as fake_smtp
from tests.fakes import twilio as fake_twilio
from tests.fakes.http import FakeServer, Reply, dead_address, serving
from tests.fakes.webhooks import WebhookReceiver, verify
from tests.fakes.webpush import Browser, FakePushService, b64url, public_bytes

REFERENCE = "K-2026-000123"


def make_settings(**changes: Any) -> Settings:
    return Settings(
        env="test",
        channels_connect_timeout_seconds=2,
        channels_read_timeout_seconds=5,
        **changes,
    )


def make_message(**changes: Any) -> Message:
    message = Message(
        id=42,
        kind="email",
        address="resident@example.org",
        contact_data={},
        subject=f"{REFERENCE}: fixed",
        body="The pothole you reported on Kerkstraat is fixed. Thank you!",
        link=f"https://city.example/tickets/{REFERENCE}",
        unsubscribe_url="https://city.example/unsubscribe?token=abc",
        ticket_reference=REFERENCE,
        event="fixed",
        data={"status": "fixed"},
    )
    return dataclasses.replace(message, **changes)


def retry_after_reply(status: int, seconds: str = "30", body: str = "{}") -> Reply:
    return Reply.json(status, body, **{"Retry-After": seconds})


# --- email ----------------------------------------------------------------------------------


def email_settings(port: int, **changes: Any) -> Settings:
    return make_settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_from="City of Example <noreply@city.example>",
        email_message_id_domain="city.example",
        **changes,
    )


async def test_email_is_delivered_with_a_stable_message_id_and_one_click_unsubscribe() -> None:
    with fake_smtp.mail_server() as (server, port):
        channel = EmailChannel(email_settings(port))
        first = await channel.deliver(make_message())
        again = await channel.deliver(make_message())  # a retry after an unknown outcome
        other = await channel.deliver(make_message(id=43))

    assert first == again == Delivered(provider_id="<kerbside.notification.42@city.example>")
    assert other == Delivered(provider_id=message_id("city.example", 43))
    mail = server.messages[0]
    assert mail["To"] == "resident@example.org"
    assert mail["From"] == "City of Example <noreply@city.example>"
    assert mail["Subject"] == f"{REFERENCE}: fixed"
    assert mail["Message-ID"] == server.messages[1]["Message-ID"]
    assert mail["Message-ID"] != server.messages[2]["Message-ID"]
    assert mail["List-Unsubscribe"] == "<https://city.example/unsubscribe?token=abc>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert not mail.is_multipart()
    text = mail.get_content()
    assert mail.get_content_type() == "text/plain"
    assert "is fixed" in text
    assert f"https://city.example/tickets/{REFERENCE}" in text
    assert "https://city.example/unsubscribe?token=abc" in text


async def test_email_body_does_not_repeat_a_link_already_in_it() -> None:
    with fake_smtp.mail_server() as (server, port):
        channel = EmailChannel(email_settings(port))
        body = f"Fixed: https://city.example/tickets/{REFERENCE}"
        assert isinstance(await channel.deliver(make_message(body=body)), Delivered)
    assert server.messages[0].get_content().count(f"tickets/{REFERENCE}") == 1


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (fake_smtp.UNKNOWN, Failed("smtp 550: no such mailbox", disable_contact=True)),
        (fake_smtp.FULL, RetryLater("smtp recipient 452")),
        (fake_smtp.REFUSED, Failed("smtp 554")),
    ],
)
async def test_email_classifies_smtp_replies(address: str, expected: object) -> None:
    with fake_smtp.mail_server() as (server, port):
        outcome = await EmailChannel(email_settings(port)).deliver(make_message(address=address))
    assert outcome == expected
    assert server.messages == []


async def test_email_to_a_mail_server_that_is_down_is_retried() -> None:
    port = fake_smtp.free_port()  # nothing listens there
    outcome = await EmailChannel(email_settings(port)).deliver(make_message())
    assert isinstance(outcome, RetryLater)
    assert outcome.reason.startswith("smtp unavailable")


async def test_email_logs_in_when_configured_and_retries_when_the_login_is_refused() -> None:
    with fake_smtp.mail_server(login=True) as (server, port):
        good = EmailChannel(
            email_settings(
                port,
                smtp_username=fake_smtp.USERNAME,
                smtp_password=SecretStr(fake_smtp.PASSWORD),
            )
        )
        assert isinstance(await good.deliver(make_message()), Delivered)
        wrong = EmailChannel(
            email_settings(port, smtp_username=fake_smtp.USERNAME, smtp_password=SecretStr("wrong"))
        )
        refused = await wrong.deliver(make_message(id=43))
    assert server.logins == [fake_smtp.USERNAME]
    assert len(server.messages) == 1
    # A refused login is our configuration, not the message: it waits for the fix.
    assert refused == RetryLater("smtp login refused (535)")


# --- FCM ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fcm_server(rsa_key: rsa.RSAPrivateKey) -> Iterator[tuple[FakeServer, fake_fcm.FakeFcm]]:
    fake = fake_fcm.FakeFcm(public_key=rsa_key.public_key())
    with serving(fake) as server:
        fake.base_url = server.url
        yield server, fake


def fcm_settings(base_url: str, account: str, **changes: Any) -> Settings:
    return make_settings(
        fcm_base_url=base_url, fcm_service_account_json=SecretStr(account), **changes
    )


@pytest.fixture
async def fcm(
    fcm_server: tuple[FakeServer, fake_fcm.FakeFcm], rsa_key: rsa.RSAPrivateKey
) -> AsyncIterator[FcmChannel]:
    server, fake = fcm_server
    channel = FcmChannel(
        fcm_settings(server.url, fake_fcm.service_account(rsa_key, fake.token_url))
    )
    yield channel
    await channel.close()


def fcm_message(**changes: Any) -> Message:
    return make_message(**{"kind": "fcm", "address": "fEx4mpleT0ken:APA91bH", **changes})


async def test_fcm_delivers_with_a_verified_service_account_token_and_collapses_per_ticket(
    fcm: FcmChannel, fcm_server: tuple[FakeServer, fake_fcm.FakeFcm]
) -> None:
    server, fake = fcm_server
    first = await fcm.deliver(fcm_message())
    second = await fcm.deliver(fcm_message(id=43, data={"step": 2}))

    assert isinstance(first, Delivered)
    assert first.provider_id is not None
    assert first.provider_id.startswith(f"projects/{fake_fcm.PROJECT}/messages/")
    assert isinstance(second, Delivered)
    # One token, fetched once with an RS256 assertion the token endpoint verified, reused.
    tokens = server.to("/token")
    assert [r.notes["jwt"] for r in tokens] == ["verified"]
    assert len(fake.issued) == 1
    sent = fake.sent[0]
    assert sent["token"] == "fEx4mpleT0ken:APA91bH"
    assert sent["notification"] == {"title": f"{REFERENCE}: fixed", "body": make_message().body}
    assert sent["android"]["collapse_key"] == REFERENCE
    assert sent["apns"]["headers"]["apns-collapse-id"] == REFERENCE
    assert sent["apns"]["payload"]["aps"]["sound"] == "default"
    assert sent["data"]["ticket"] == REFERENCE
    assert sent["data"]["notification_id"] == "42"
    assert fake.sent[1]["data"]["step"] == "2"  # FCM data values are strings


async def test_fcm_unregistered_token_disables_and_invalid_argument_fails(
    fcm: FcmChannel,
) -> None:
    dead = await fcm.deliver(fcm_message(address=fake_fcm.DEAD_TOKEN))
    bad = await fcm.deliver(fcm_message(address=fake_fcm.BAD_TOKEN))
    assert dead == Failed("fcm 404 UNREGISTERED", disable_contact=True)
    assert bad == Failed("fcm 400 INVALID_ARGUMENT")


async def test_fcm_honours_retry_after_on_429_and_retries_5xx(
    fcm: FcmChannel, fcm_server: tuple[FakeServer, fake_fcm.FakeFcm]
) -> None:
    server, fake = fcm_server
    assert isinstance(await fcm.deliver(fcm_message()), Delivered)  # the token is cached now
    quota = fake_fcm.error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
    quota.headers["Retry-After"] = "30"
    server.fail_next(quota, retry_after_reply(503, "5"), Reply(500))
    assert await fcm.deliver(fcm_message(id=43)) == RetryLater("fcm 429 QUOTA_EXCEEDED", after=30)
    assert await fcm.deliver(fcm_message(id=44)) == RetryLater("fcm 503", after=5)
    assert await fcm.deliver(fcm_message(id=45)) == RetryLater("fcm 500", after=None)
    assert len(fake.sent) == 1
    assert isinstance(await fcm.deliver(fcm_message(id=46)), Delivered)


async def test_fcm_fetches_a_new_token_once_after_401(
    fcm: FcmChannel, fcm_server: tuple[FakeServer, fake_fcm.FakeFcm]
) -> None:
    _, fake = fcm_server
    assert isinstance(await fcm.deliver(fcm_message()), Delivered)
    fake.revoked.add(fake.issued[0])
    assert isinstance(await fcm.deliver(fcm_message(id=43)), Delivered)
    assert len(fake.issued) == 2

    # Every token refused: one renewal, then the message waits.
    fake.revoked.update(fake.issued)
    original = fake.token

    def revoking_token(request: Any) -> Reply:
        reply = original(request)
        fake.revoked.update(fake.issued)
        return reply

    fake.token = revoking_token  # type: ignore[method-assign]
    outcome = await fcm.deliver(fcm_message(id=44))
    assert outcome == RetryLater(
        "fcm 401 THIRD_PARTY_AUTH_ERROR: a fresh access token was refused too"
    )
    assert len(fake.issued) == 3


async def test_fcm_renews_the_token_before_it_expires(
    fcm: FcmChannel, fcm_server: tuple[FakeServer, fake_fcm.FakeFcm]
) -> None:
    _, fake = fcm_server
    fake.token_lifetime = 60  # shorter than the renewal margin: every send takes a new one
    assert isinstance(await fcm.deliver(fcm_message()), Delivered)
    assert isinstance(await fcm.deliver(fcm_message(id=43)), Delivered)
    assert len(fake.issued) == 2


async def test_fcm_token_signed_with_another_key_is_refused_and_nothing_is_sent(
    fcm_server: tuple[FakeServer, fake_fcm.FakeFcm],
) -> None:
    server, fake = fcm_server
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = fake_fcm.service_account(stranger, fake.token_url)
    channel = FcmChannel(fcm_settings(server.url, account))
    try:
        outcome = await channel.deliver(fcm_message())
    finally:
        await channel.close()
    assert outcome == RetryLater("fcm token endpoint 400 invalid_grant")
    assert "Signature" in server.received[0].notes["jwt"]
    assert fake.sent == []


async def test_fcm_unreachable_is_retried(rsa_key: rsa.RSAPrivateKey) -> None:
    dead = dead_address()
    channel = FcmChannel(fcm_settings(dead, fake_fcm.service_account(rsa_key, f"{dead}/token")))
    try:
        outcome = await channel.deliver(fcm_message())
    finally:
        await channel.close()
    assert isinstance(outcome, RetryLater)
    assert outcome.reason == "fcm token endpoint network error (ConnectError)"


def test_fcm_refuses_to_start_without_a_project(rsa_key: rsa.RSAPrivateKey) -> None:
    account = json.loads(fake_fcm.service_account(rsa_key, "http://127.0.0.1:9/token"))
    del account["project_id"]
    with pytest.raises(ValueError, match="FCM_PROJECT_ID"):
        FcmChannel(fcm_settings("http://127.0.0.1:9", json.dumps(account)))
    with pytest.raises(ValueError, match="not a service account") as raised:
        FcmChannel(fcm_settings("http://127.0.0.1:9", '{"private_key": "SECRET-PEM"}'))
    assert "SECRET-PEM" not in str(raised.value)


# --- Web Push -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vapid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def push_service(
    vapid_key: ec.EllipticCurvePrivateKey,
) -> Iterator[tuple[FakeServer, FakePushService]]:
    fake = FakePushService(application_server_key=b64url(public_bytes(vapid_key)))
    with serving(fake) as server:
        yield server, fake


@pytest.fixture
async def webpush(vapid_key: ec.EllipticCurvePrivateKey) -> AsyncIterator[WebPushChannel]:
    pem = vapid_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    channel = WebPushChannel(
        make_settings(
            webpush_vapid_private_key=SecretStr(pem),
            webpush_vapid_subject="mailto:ops@city.example",
            webpush_ttl_seconds=3600,
        )
    )
    yield channel
    await channel.close()


def subscribe(server: FakeServer, fake: FakePushService, path: str = "/push/v1/sub-1") -> Message:
    """A browser subscribes; the message carries its subscription as a contact would."""
    browser = Browser()
    fake.browsers[path] = browser
    subscription = browser.subscription(server.url + path)
    return make_message(kind="webpush", address=subscription["endpoint"], contact_data=subscription)


async def test_webpush_payload_is_decrypted_by_the_browser_keys_with_a_valid_vapid_token(
    webpush: WebPushChannel, push_service: tuple[FakeServer, FakePushService]
) -> None:
    server, fake = push_service
    message = subscribe(server, fake)
    outcome = await webpush.deliver(message)

    assert outcome == Delivered(provider_id="/push/v1/sub-1/messages/1")
    [delivery] = fake.deliveries
    assert delivery.payload["title"] == f"{REFERENCE}: fixed"
    assert delivery.payload["body"] == message.body
    assert delivery.payload["url"] == message.link
    assert delivery.payload["id"] == 42
    assert delivery.ttl == "3600"
    assert delivery.urgency == "normal"
    assert delivery.topic == REFERENCE
    assert delivery.claims["aud"] == server.url
    assert delivery.claims["sub"] == "mailto:ops@city.example"

    # Flat keys (as some clients store them) work too, and a broadcast is urgent.
    flat = dataclasses.replace(
        message, id=43, event="broadcast", contact_data=dict(message.contact_data["keys"])
    )
    assert isinstance(await webpush.deliver(flat), Delivered)
    assert fake.deliveries[1].urgency == "high"


async def test_webpush_gone_subscriptions_disable_the_contact(
    webpush: WebPushChannel, push_service: tuple[FakeServer, FakePushService]
) -> None:
    server, fake = push_service
    message = subscribe(server, fake, "/push/v1/expired")
    fake.gone.add("/push/v1/expired")
    assert await webpush.deliver(message) == Failed(
        "webpush 410: subscription gone", disable_contact=True
    )
    unknown = dataclasses.replace(message, address=server.url + "/push/v1/unknown")
    assert await webpush.deliver(unknown) == Failed(
        "webpush 404: subscription gone", disable_contact=True
    )


async def test_webpush_faults(
    webpush: WebPushChannel, push_service: tuple[FakeServer, FakePushService]
) -> None:
    server, fake = push_service
    message = subscribe(server, fake)
    server.fail_next(retry_after_reply(429, "120"), Reply(413), Reply(502))
    assert await webpush.deliver(message) == RetryLater("webpush 429", after=120)
    assert await webpush.deliver(message) == Failed("webpush 413")
    assert await webpush.deliver(message) == RetryLater("webpush 502")
    assert fake.deliveries == []
    assert isinstance(await webpush.deliver(message), Delivered)

    keyless = dataclasses.replace(message, contact_data={"endpoint": message.address})
    assert await webpush.deliver(keyless) == Failed(
        "webpush subscription without usable keys", disable_contact=True
    )
    dead = dataclasses.replace(message, address=dead_address() + "/push/v1/sub-1")
    outcome = await webpush.deliver(dead)
    assert isinstance(outcome, RetryLater)


def test_vapid_key_loads_from_raw_base64url(vapid_key: ec.EllipticCurvePrivateKey) -> None:
    raw = vapid_key.private_numbers().private_value.to_bytes(32, "big")
    loaded = load_vapid_key(b64url(raw))
    assert loaded.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    ) == public_bytes(vapid_key)


def test_webpush_topic_is_within_the_rfc_8030_alphabet() -> None:
    assert topic_of(make_message()) == REFERENCE
    long = topic_of(make_message(ticket_reference="Gemeente Groningen / K-2026-000123 (oud)"))
    assert len(long) == 32
    assert all(c.isalnum() or c in "-_" for c in long)
    assert topic_of(make_message(ticket_reference=None)) == "kerbside-42"


def test_webpush_key_needs_a_subject_and_a_real_key() -> None:
    with pytest.raises(ValidationError, match="VAPID_SUBJECT"):
        make_settings(webpush_vapid_private_key=SecretStr("x"))
    not_a_key = "-----BEGIN PRIVATE KEY-----\nU0VDUkVULUtFWS1URVhU\n-----END PRIVATE KEY-----"
    with pytest.raises(ValueError, match="not a P-256 private key") as raised:
        WebPushChannel(
            make_settings(
                webpush_vapid_private_key=SecretStr(not_a_key),
                webpush_vapid_subject="mailto:ops@city.example",
            )
        )
    assert "U0VDUkVU" not in str(raised.value)


# --- SMS ------------------------------------------------------------------------------------


def sms_settings(base_url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "sms_base_url": base_url,
        "sms_account_sid": fake_twilio.ACCOUNT_SID,
        "sms_auth_token": SecretStr(fake_twilio.AUTH_TOKEN),
        "sms_from": fake_twilio.SENDER,
        "sms_status_callback_url": "https://api.city.example/webhooks/sms/status",
    }
    return make_settings(**{**values, **changes})


def sms_message(**changes: Any) -> Message:
    return make_message(**{"kind": "phone", "address": "+31612345678", **changes})


@pytest.fixture
def twilio() -> Iterator[tuple[FakeServer, fake_twilio.FakeTwilio]]:
    fake = fake_twilio.FakeTwilio()
    with serving(fake) as server:
        yield server, fake


async def test_sms_is_sent_form_encoded_with_basic_auth(
    twilio: tuple[FakeServer, fake_twilio.FakeTwilio],
) -> None:
    server, fake = twilio
    channel = SmsChannel(sms_settings(server.url))
    try:
        outcome = await channel.deliver(sms_message())
    finally:
        await channel.close()
    assert outcome == Delivered(provider_id=f"SM{1:032x}")
    assert fake.sent == [
        {
            "To": "+31612345678",
            "From": fake_twilio.SENDER,
            "Body": f"{make_message().body} https://city.example/tickets/{REFERENCE}",
            "StatusCallback": "https://api.city.example/webhooks/sms/status",
        }
    ]


async def test_sms_through_a_messaging_service(
    twilio: tuple[FakeServer, fake_twilio.FakeTwilio],
) -> None:
    server, fake = twilio
    channel = SmsChannel(
        sms_settings(server.url, sms_from=None, sms_messaging_service_sid="MG" + "1" * 32)
    )
    try:
        assert isinstance(await channel.deliver(sms_message()), Delivered)
    finally:
        await channel.close()
    assert fake.sent[0]["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in fake.sent[0]


async def test_sms_errors_by_twilio_code_and_status(
    twilio: tuple[FakeServer, fake_twilio.FakeTwilio],
) -> None:
    server, fake = twilio
    channel = SmsChannel(sms_settings(server.url))
    wrong = SmsChannel(sms_settings(server.url, sms_auth_token=SecretStr("wrong")))
    try:
        invalid = await channel.deliver(sms_message(address=fake_twilio.INVALID_NUMBER))
        stopped = await channel.deliver(sms_message(address=fake_twilio.UNSUBSCRIBED))
        server.fail_next(
            retry_after_reply(429, "7", '{"code": 20429, "message": "Too Many Requests"}'),
            Reply(500),
        )
        limited = await channel.deliver(sms_message())
        broken = await channel.deliver(sms_message())
        refused = await wrong.deliver(sms_message())
    finally:
        await channel.close()
        await wrong.close()
    assert invalid == Failed("sms 400 code 21211", disable_contact=True)
    assert stopped == Failed("sms 400 code 21610", disable_contact=True)
    assert limited == RetryLater("sms 429 code 20429", after=7)
    assert broken == RetryLater("sms 500")
    assert refused == RetryLater("sms 401 code 20003: credentials refused")
    assert fake.sent == []


async def test_sms_api_unreachable_is_retried() -> None:
    channel = SmsChannel(sms_settings(dead_address()))
    try:
        outcome = await channel.deliver(sms_message())
    finally:
        await channel.close()
    assert outcome == RetryLater("sms network error (ConnectError)")


def test_sms_settings_must_be_complete() -> None:
    with pytest.raises(ValueError, match="SMS_FROM"):
        SmsChannel(sms_settings("http://127.0.0.1:9", sms_from=None))
    with pytest.raises(ValueError, match="AUTH_TOKEN"):
        channels_for(make_settings(sms_account_sid=fake_twilio.ACCOUNT_SID))


# --- kept connections (every HTTP channel's transport) ---------------------------------------


class KeepAliveServer:
    """An HTTP/1.1 server that keeps connections open, counting the connections it accepts;
    ``close_idle()`` hangs up on every connection that is not answering (as a server's
    keep-alive timeout does)."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> KeepAliveServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self.close_idle()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def close_idle(self) -> None:
        for writer in list(self._writers):
            writer.close()


async def test_kept_connections_are_reused_and_dropped_when_the_server_hangs_up() -> None:
    client = transport.client(make_settings())
    async with KeepAliveServer() as server:
        try:
            for _ in range(3):
                assert (await client.post(server.url, content=b"{}")).text == "ok"
            assert server.connections == 1  # one connection, kept

            # A batch at once opens as many as are in flight, and the next batch reuses them.
            for _ in range(2):
                answers = await asyncio.gather(
                    *(client.post(server.url, content=b"{}") for _ in range(8))
                )
                assert [a.status_code for a in answers] == [200] * 8
            assert server.connections == 8

            # The server hangs up on idle connections: they are not used again.
            server.close_idle()
            await asyncio.sleep(0.05)
            assert (await client.post(server.url, content=b"{}")).text == "ok"
            assert server.connections == 9

            # An answer not read to the end ends its connection (its bytes would be the
            # start of the next answer).
            async with client.stream("POST", server.url, content=b"{}") as answer:
                assert answer.status_code == 200
            assert (await client.post(server.url, content=b"{}")).text == "ok"
            assert server.connections == 10
            assert server.requests == 3 + 16 + 1 + 2
        finally:
            await client.aclose()


# --- webhooks -------------------------------------------------------------------------------

SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0zMi1ieXRlcyEhISE="


@pytest.fixture
def receiver() -> Iterator[tuple[FakeServer, WebhookReceiver]]:
    fake = WebhookReceiver(secret=SECRET)
    with serving(fake) as server:
        yield server, fake


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookChannel]:
    channel = WebhookChannel(make_settings(webhook_allow_loopback=True))
    yield channel
    await channel.close()


def webhook_message(url: str, **changes: Any) -> Message:
    return make_message(
        **{"kind": "webhook", "address": url, "contact_data": {"secret": SECRET}, **changes}
    )


def test_webhook_signature_matches_the_standard_webhooks_sample() -> None:
    # From the reference samples (generic_webhook_outbound.json), signed by another implementation.
    body = (
        b'{"type":"ticket.status_changed","timestamp":"2025-11-18T07:45:00Z","data":'
        b'{"ticket_id":"TCK-2025-000123","old_status":"in_progress","new_status":"resolved",'
        b'"channel":"x"}}'
    )
    expected = "v1,if6QN4Xj0YEACCKF0LQxpEx/aJDhLF24V96gSjRGZzY="
    assert sign(SECRET, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1763451900, body) == expected


async def test_webhook_is_signed_over_the_raw_body_and_verified_by_the_receiver(
    webhook: WebhookChannel, receiver: tuple[FakeServer, WebhookReceiver]
) -> None:
    server, fake = receiver
    outcome = await webhook.deliver(webhook_message(server.url + "/hooks/kerbside"))
    again = await webhook.deliver(webhook_message(server.url + "/hooks/kerbside"))

    assert outcome == again == Delivered(provider_id="42")
    assert fake.seen_ids == ["42", "42"]  # the receiver's idempotency key, stable over retries
    event = fake.events[0]
    assert event["type"] == "ticket.fixed"
    assert event["data"]["ticket"] == REFERENCE
    assert event["data"]["status"] == "fixed"
    request = server.received[0]
    assert request.notes["signature"] == "valid"
    assert request.headers["content-type"] == "application/json"

    # One changed byte, or a replay long after, fails verification.
    tampered = request.body.replace(b"fixed", b"fixes", 1)
    assert tampered != request.body
    assert not verify(SECRET, request.headers, tampered)
    assert not verify(SECRET, request.headers, request.body, now=clock.now().timestamp() + 3600)
    assert verify(SECRET, request.headers, request.body)
    # Re-serialised JSON is not the signed text.
    reserialised = json.dumps(json.loads(request.body)).encode()
    assert not verify(SECRET, request.headers, reserialised)


async def test_webhook_faults(
    webhook: WebhookChannel, receiver: tuple[FakeServer, WebhookReceiver]
) -> None:
    server, fake = receiver
    url = server.url + "/hooks/kerbside"
    server.fail_next(retry_after_reply(429, "12"), Reply(503), Reply(400), Reply(301))
    assert await webhook.deliver(webhook_message(url)) == RetryLater("webhook 429", after=12)
    assert await webhook.deliver(webhook_message(url)) == RetryLater("webhook 503")
    assert await webhook.deliver(webhook_message(url)) == Failed("webhook 400")
    assert await webhook.deliver(webhook_message(url)) == Failed("webhook 301")
    assert await webhook.deliver(webhook_message(server.url + "/gone")) == Failed(
        "webhook 410: endpoint gone", disable_contact=True
    )
    wrong_secret = webhook_message(url, contact_data={"secret": "whsec_" + "QUFBQUFBQUE="})
    assert await webhook.deliver(wrong_secret) == Failed("webhook 401")
    assert await webhook.deliver(webhook_message(url, contact_data={})) == Failed(
        "webhook without a whsec_ secret", disable_contact=True
    )
    assert fake.events == []
    dead = await webhook.deliver(webhook_message(dead_address() + "/hooks"))
    assert dead == RetryLater("webhook network error (ConnectError)")
    # A host name that is not ASCII is encoded (IDNA), then fails like any unknown host.
    unknown = await webhook.deliver(webhook_message("http://bücher.invalid/hooks"))
    assert unknown == RetryLater("webhook network error (ConnectError)")


async def test_webhook_refuses_loopback_targets_unless_allowed(
    receiver: tuple[FakeServer, WebhookReceiver],
) -> None:
    server, _ = receiver
    channel = WebhookChannel(make_settings())
    try:
        by_address = await channel.deliver(webhook_message(server.url + "/hooks"))
        by_name = await channel.deliver(webhook_message(f"http://localhost:{server.port}/hooks"))
    finally:
        await channel.close()
    assert by_address == Failed("webhook host resolves to a loopback address")
    assert by_name == Failed("webhook host resolves to a loopback address")
    assert server.received == []


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.10", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("100.64.0.1", "not public"),  # carrier-grade NAT
        ("0.0.0.0", "private"),
        ("224.0.0.1", "not public"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
    ],
)
def test_webhook_target_rules(address: str, why: str | None) -> None:
    assert refusal(ipaddress.ip_address(address), allow_loopback=False) == why
    if why == "loopback":
        assert refusal(ipaddress.ip_address(address), allow_loopback=True) is None


def test_loopback_webhooks_are_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_ALLOW_LOOPBACK"):
        Settings(
            env="production",
            secret_key=SecretStr("x" * 40),
            database_url="postgresql://kerbside@db/kerbside",
            webhook_allow_loopback=True,
        )


# --- the sink and the registry --------------------------------------------------------------


async def test_sink_records_what_each_contact_received(tmp_path: Path) -> None:
    path = tmp_path / "sink" / "messages.jsonl"
    channel = SinkChannel("email", path)
    secret = {"secret": "whsec_c2VjcmV0"}
    assert await channel.deliver(make_message(contact_data=secret)) == Delivered("sink-42")
    await channel.deliver(make_message(id=43, address="other@example.org"))
    await channel.deliver(make_message(id=44))

    mine = sink.read(path, address="resident@example.org")
    assert [r["id"] for r in mine] == [42, 44]
    assert mine[0]["subject"] == f"{REFERENCE}: fixed"
    assert mine[0]["kind"] == "email"
    assert [r["id"] for r in sink.read(path, limit=2)] == [43, 44]
    assert "whsec_" not in path.read_text()
    assert sink.read(tmp_path / "nothing.jsonl") == []


async def test_registry_uses_the_sink_only_outside_production(tmp_path: Path) -> None:
    development = channels_for(make_settings(channels_sink_file=tmp_path / "sink.jsonl"))
    try:
        assert set(development) == {kind.value for kind in ContactKind}
        assert isinstance(development["webhook"], WebhookChannel)
        # Social answers name their account; without a base URL they go to the sink there.
        threads = {"facebook", "whatsapp", "mastodon", "bluesky"}
        assert all(isinstance(development[kind], ThreadChannel) for kind in threads)
        assert all(
            isinstance(channel, SinkChannel) == (kind not in {"webhook", *threads})
            for kind, channel in development.items()
        )
        assert unavailable(development) == []
    finally:
        await close_all(development)

    production = channels_for(
        Settings(
            env="production",
            secret_key=SecretStr("x" * 40),
            database_url="postgresql://kerbside@db/kerbside",
            smtp_host="mail.city.example",
            sms_account_sid=fake_twilio.ACCOUNT_SID,
            sms_auth_token=SecretStr(fake_twilio.AUTH_TOKEN),
            sms_from=fake_twilio.SENDER,
        )
    )
    try:
        assert isinstance(production["email"], EmailChannel)
        assert isinstance(production["phone"], SmsChannel)
        assert not any(isinstance(c, SinkChannel) for c in production.values())
        assert "fcm" in unavailable(production)
        assert "webpush" in unavailable(production)
    finally:
        await close_all(production)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert transport.retry_after(answer("120")) == 120
    later = format_datetime(clock.now() + timedelta(seconds=90), usegmt=True)
    after = transport.retry_after(answer(later))
    assert after is not None
    assert 80 <= after <= 90
    assert transport.retry_after(answer("soon")) is None
    assert transport.retry_after(httpx.Response(429)) is None
