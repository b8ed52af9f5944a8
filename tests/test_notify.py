"""Every reporter hears back: the outbox written by the event stream in the change's own
transaction, and its delivery by a real worker (retries, order, dead letters, disabling,
unsubscribing). The channel here is a recording stand-in for a provider; the real adapters
are tested against local fakes of the providers in tests/test_channels.py."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Role
from app.auth.principal import Principal
from app.channels.base import Delivered, Failed, Message, Outcome, RetryLater
from app.contacts.models import ContactKind
from app.contacts.service import ContactSpec
from app.jurisdictions.catalog import Catalog
from app.jurisdictions.models import Jurisdiction
from app.notify.service import unsubscribe_signature
from app.notify.templates import Facts, render
from app.reports.intake import Filed, Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.settings import Settings
from app.tickets import service as tickets
from app.tickets import workflow
from app.tickets.models import TicketStatus
from geo.distance import offset_lonlat
from tests.factories import CITY, bearer_headers, make_jurisdiction, make_service, make_user
from tests.jobs_support import drain

CENTER = CITY.center
STAFF = Principal(kind="user", role=Role.admin, label="test-staff")


@dataclass
class Recorder:
    """A provider that records what it is sent and answers from a script (then Delivered)."""

    kind: str = "x"
    script: list[Outcome] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    tries: int = 0

    async def deliver(self, message: Message) -> Outcome:
        self.tries += 1
        outcome = self.script.pop(0) if self.script else Delivered(f"rec-{message.id}")
        if isinstance(outcome, Delivered):
            self.sent.append(message)
        return outcome

    async def close(self) -> None:
        return None


def post(lon: float, lat: float, *, handle: str | None = "4242", locale: str = "en") -> Submission:
    return Submission(
        channel=Channel.x,
        submitter=Submitter(label=f"x:{handle}", identified=True),
        service_code="pothole",
        place=Place(lon, lat, LocationSource.post),
        contacts=[ContactSpec(ContactKind.x, handle)] if handle else [],
        updates=handle is not None,
        locale=locale,
    )


async def outbox(db: AsyncSession) -> list[tuple[str, str]]:
    rows = await db.execute(
        text(
            "SELECT c.address, n.event_kind FROM notification n JOIN contact c"
            " ON c.id = n.contact_id ORDER BY n.id"
        )
    )
    return [(r.address, r.event_kind) for r in rows]


@pytest.fixture
async def pothole(db: AsyncSession) -> None:
    city = await make_jurisdiction(db, slug="hearback")
    await make_service(db, city, "pothole", duplicate_radius_m=30.0)


async def as_at_commit(db: AsyncSession) -> None:
    """Run the event stream's deferred trigger now, as COMMIT would (the test's transaction is
    rolled back at its end, and a savepoint does not fire deferred triggers)."""
    await db.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    await db.execute(text("SET CONSTRAINTS ALL DEFERRED"))


# -- the outbox, in the change's own transaction ----------------------------------------------


@pytest.mark.usefixtures("pothole")
async def test_the_outbox_is_written_with_the_change_for_consenting_reachable_people(
    db: AsyncSession,
) -> None:
    catalog = Catalog()
    first = await submit_report(db, catalog, post(*CENTER, handle="alice"))
    await as_at_commit(db)
    assert await outbox(db) == [("alice", "ticket_opened")]
    # One delivery job for the change (not one per row), unlocked: it claims due rows.
    jobs = (
        await db.execute(
            text(
                "SELECT lock, queue_name, args FROM procrastinate_jobs"
                " WHERE task_name = 'deliver_notifications'"
            )
        )
    ).all()
    assert [tuple(job) for job in jobs] == [(None, "notify", {})]

    # A second reporter joins; an anonymous one without a contact hears nothing.
    await submit_report(db, catalog, post(*offset_lonlat(*CENTER, 5, 0), handle="bob"))
    await submit_report(db, catalog, post(*offset_lonlat(*CENTER, 8, 0), handle=None))
    await as_at_commit(db)
    assert await outbox(db) == [("alice", "ticket_opened"), ("bob", "report_attached")]

    # Internal lines say nothing to anyone; a public status change reaches every subscriber.
    await workflow.change_status(db, first.ticket_id, TicketStatus.acknowledged, actor=STAFF)
    await as_at_commit(db)
    assert await outbox(db) == [
        ("alice", "ticket_opened"),
        ("bob", "report_attached"),
        ("alice", "status_changed"),
        ("bob", "status_changed"),
    ]


@pytest.mark.usefixtures("pothole")
async def test_unverified_and_unconsenting_contacts_are_not_queued(db: AsyncSession) -> None:
    catalog = Catalog()
    email = Submission(
        channel=Channel.app,
        submitter=Submitter(),
        service_code="pothole",
        place=Place(*CENTER, LocationSource.device),
        contacts=[ContactSpec(ContactKind.email, "eve@example.org")],
        updates=True,
    )
    filed = await submit_report(db, catalog, email)
    quiet = await submit_report(
        db,
        catalog,
        Submission(
            channel=Channel.x,
            submitter=Submitter(label="x:quiet", identified=True),
            service_code="pothole",
            place=Place(*offset_lonlat(*CENTER, 3, 0), LocationSource.post),
            contacts=[ContactSpec(ContactKind.x, "quiet")],
            updates=False,  # a contact kept for staff, no consent
        ),
    )
    assert quiet.ticket_id == filed.ticket_id
    await workflow.change_status(db, filed.ticket_id, TicketStatus.acknowledged, actor=STAFF)
    await as_at_commit(db)
    assert await outbox(db) == []  # eve is unverified, quiet never consented
    await db.execute(
        text("UPDATE contact SET verified_at = now() WHERE address = 'eve@example.org'")
    )
    await workflow.change_status(db, filed.ticket_id, TicketStatus.scheduled, actor=STAFF)
    await as_at_commit(db)
    assert await outbox(db) == [("eve@example.org", "status_changed")]


# -- delivery by a real worker ----------------------------------------------------------------


@pytest.fixture
async def town(committed_db: async_sessionmaker[AsyncSession]) -> None:
    async with committed_db() as session, session.begin():
        city = await make_jurisdiction(session, slug="hearback")
        await make_service(
            session, city, "pothole", duplicate_radius_m=30.0, resolve_within=timedelta(days=14)
        )


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"notify_backoff_seconds": 0.01, "notify_backoff_max_seconds": 0.05}
    )


async def file(committed_db: async_sessionmaker[AsyncSession], submission: Submission) -> Filed:
    async with committed_db() as session, session.begin():
        return await submit_report(session, Catalog(), submission)


async def change(
    committed_db: async_sessionmaker[AsyncSession], ticket_id: int, to: TicketStatus
) -> None:
    async with committed_db() as session, session.begin():
        await workflow.change_status(session, ticket_id, to, actor=STAFF)


async def drain_all(settings: Settings, recorder: Recorder, rounds: int = 20) -> None:
    """Run the notify queue until nothing is due (retries come due within milliseconds)."""
    import asyncio

    for _ in range(rounds):
        await drain(settings, queues=["notify"], channels={"x": recorder})
        await asyncio.sleep(0.06)


async def statuses(committed_db: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    async with committed_db() as session:
        rows = await session.execute(
            text("SELECT event_kind, status FROM notification ORDER BY id")
        )
        return [(r.event_kind, r.status) for r in rows]


@pytest.mark.usefixtures("town")
async def test_a_status_change_reaches_the_reporter_once_in_their_language_and_is_archived(
    committed_db: async_sessionmaker[AsyncSession], quick: Settings
) -> None:
    filed = await file(committed_db, post(*CENTER, handle="anna", locale="nl-NL"))
    await change(committed_db, filed.ticket_id, TicketStatus.scheduled)
    recorder = Recorder()
    await drain_all(quick, recorder, rounds=2)
    assert [m.event for m in recorder.sent] == ["ticket_opened", "scheduled"]
    opened, scheduled = recorder.sent
    assert opened.subject == f"We hebben uw melding ontvangen: {filed.reference}"
    assert scheduled.subject == f"{filed.reference} is ingepland"
    assert "We verwachten het klaar te hebben op" in scheduled.body
    assert scheduled.unsubscribe_url in scheduled.body
    assert scheduled.address == "anna"
    assert "anna" not in scheduled.body  # no personal data in a message to a public channel
    assert await statuses(committed_db) == [
        ("ticket_opened", "sent"),
        ("status_changed", "sent"),
    ]
    # Delivering again sends nothing: a sent row is never sent twice.
    await drain_all(quick, recorder, rounds=1)
    from app.notify.service import deliver

    async with committed_db() as session:
        ids = [r.id for r in await session.execute(text("SELECT id FROM notification"))]
    for notification_id in ids:
        attempt = await deliver(committed_db, {"x": recorder}, quick, notification_id)
        assert attempt.status == "sent"
    assert len(recorder.sent) == 2
    async with committed_db() as session:
        archived = (
            await session.execute(
                text(
                    "SELECT kind, public, data->>'channel' FROM ticket_event"
                    " WHERE ticket_id = :t AND kind LIKE 'notification_%' ORDER BY id"
                ),
                {"t": filed.ticket_id},
            )
        ).all()
    assert [tuple(a) for a in archived] == [
        ("notification_sent", False, "x"),
        ("notification_sent", False, "x"),
    ]


@pytest.mark.usefixtures("town")
async def test_transient_failures_retry_in_order_and_permanent_ones_disable_the_contact(
    committed_db: async_sessionmaker[AsyncSession], quick: Settings
) -> None:
    filed = await file(committed_db, post(*CENTER, handle="ben"))
    await change(committed_db, filed.ticket_id, TicketStatus.acknowledged)
    await change(committed_db, filed.ticket_id, TicketStatus.scheduled)
    # The provider is down for two tries, asks to wait once, then takes everything.
    recorder = Recorder(
        script=[RetryLater("503"), RetryLater("503"), RetryLater("429", after=0.02)]
    )
    await drain_all(quick, recorder)
    assert [m.event for m in recorder.sent] == ["ticket_opened", "acknowledged", "scheduled"]
    assert await statuses(committed_db) == [
        ("ticket_opened", "sent"),
        ("status_changed", "sent"),
        ("status_changed", "sent"),
    ]
    async with committed_db() as session:
        attempts = (
            (await session.execute(text("SELECT attempts FROM notification ORDER BY id")))
            .scalars()
            .all()
        )
    assert attempts == [4, 1, 1]

    # A dead address: the contact is disabled and hears nothing more.
    await change(committed_db, filed.ticket_id, TicketStatus.in_progress)
    await change(committed_db, filed.ticket_id, TicketStatus.fixed)
    gone = Recorder(script=[Failed("unregistered", disable_contact=True)])
    await drain_all(quick, gone, rounds=3)
    assert gone.sent == []
    assert (await statuses(committed_db))[3:] == [
        ("status_changed", "failed"),
        ("status_changed", "suppressed"),
    ]
    async with committed_db() as session:
        disabled = (
            await session.execute(text("SELECT disabled_reason FROM contact WHERE address = 'ben'"))
        ).scalar_one()
    assert disabled == "unregistered"


@pytest.mark.usefixtures("town")
async def test_a_message_that_keeps_failing_is_dead_and_staff_can_retry_it(
    committed_db: async_sessionmaker[AsyncSession],
    quick: Settings,
    settings: Settings,
    client: httpx.AsyncClient,
    db: AsyncSession,
) -> None:
    settings = quick.model_copy(update={"notify_max_attempts": 2})
    await file(committed_db, post(*CENTER, handle="cat"))
    down = Recorder(script=[RetryLater("down")] * 5)
    await drain_all(settings, down, rounds=4)
    assert await statuses(committed_db) == [("ticket_opened", "dead")]
    assert down.tries == 2

    staff = await make_user(db, role=Role.staff, jurisdiction=await _jurisdiction(db))
    headers = await bearer_headers(settings, staff)
    listed = await client.get("/v1/notifications", params={"status": "dead"}, headers=headers)
    assert listed.status_code == 200, listed.text
    [dead] = listed.json()
    assert (dead["channel"], dead["attempts"], dead["last_error"]) == ("x", 2, "down")
    assert "cat" not in listed.text  # staff see the channel, not the address
    anonymous = await client.post(f"/v1/notifications/{dead['id']}/retry")
    assert anonymous.status_code == 401
    retried = await client.post(f"/v1/notifications/{dead['id']}/retry", headers=headers)
    assert retried.status_code == 202
    again = await client.post(f"/v1/notifications/{dead['id']}/retry", headers=headers)
    assert again.status_code == 409


async def _jurisdiction(db: AsyncSession) -> Jurisdiction:
    from sqlalchemy import select

    return (
        await db.execute(select(Jurisdiction).where(Jurisdiction.slug == "hearback"))
    ).scalar_one()


@pytest.mark.usefixtures("town")
async def test_a_merge_tells_the_merged_tickets_reporters_once_about_the_surviving_ticket(
    committed_db: async_sessionmaker[AsyncSession], quick: Settings
) -> None:
    keep = await file(committed_db, post(*CENTER, handle="dora"))
    far = offset_lonlat(*CENTER, 200, 0)
    gone = await file(committed_db, post(*far, handle="ed"))
    async with committed_db() as session, session.begin():
        await tickets.merge(session, gone.ticket_id, keep.ticket_id, actor=STAFF)
    await change(committed_db, keep.ticket_id, TicketStatus.acknowledged)
    recorder = Recorder()
    await drain_all(quick, recorder, rounds=2)
    heard = [(m.address, m.event, m.ticket_reference) for m in recorder.sent]
    assert heard == [
        ("dora", "ticket_opened", keep.reference),
        ("ed", "ticket_opened", gone.reference),
        ("ed", "merged", keep.reference),
        ("dora", "acknowledged", keep.reference),
        ("ed", "acknowledged", keep.reference),
    ]


@pytest.mark.usefixtures("pothole")
async def test_one_click_unsubscribe_stops_the_messages(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    filed = await submit_report(db, Catalog(), post(*CENTER, handle="fay"))
    await as_at_commit(db)
    notification_id = (await db.execute(text("SELECT id FROM notification"))).scalar_one()
    url = f"/v1/notifications/{notification_id}/unsubscribe"
    assert (await client.post(url, params={"sig": "0" * 32})).status_code == 404
    sig = unsubscribe_signature(settings, notification_id)
    page = await client.get(url, params={"sig": sig})
    assert "<form method=post" in page.text
    done = await client.post(url, params={"sig": sig}, content=b"List-Unsubscribe=One-Click")
    assert done.json() == {"unsubscribed": True, "ticket_reference": filed.reference}
    await workflow.change_status(db, filed.ticket_id, TicketStatus.acknowledged, actor=STAFF)
    await as_at_commit(db)
    assert await outbox(db) == [("fay", "ticket_opened")]


def test_messages_exist_in_english_dutch_and_swedish() -> None:
    facts = Facts(
        reference="K-2026-000123",
        service="pothole",
        status="fixed",
        note="Repaired with hot asphalt.",
        expected=None,
        link="https://city.example/v1/tickets/K-2026-000123",
        jurisdiction="Groningen",
    )
    subjects = {
        language: render("status_changed", facts, language, "https://u")[0]
        for language in ("en", "nl", "sv")
    }
    assert subjects == {
        "en": "K-2026-000123 is fixed",
        "nl": "K-2026-000123 is opgelost",
        "sv": "K-2026-000123 är åtgärdad",
    }
    body = render("status_changed", facts, "en", "https://u")[1]
    assert "Repaired with hot asphalt." in body
    assert body.endswith("To stop these messages: https://u")


async def test_citizens_list_add_and_remove_their_own_contacts(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    me = await make_user(db, email="gus@example.org")
    other = await make_user(db)
    headers = await bearer_headers(settings, me)
    assert (await client.get("/v1/me/contacts")).status_code == 401
    push = await client.post(
        "/v1/me/contacts",
        headers=headers,
        json={"kind": "fcm", "address": "fcm-token-0123456789", "broadcasts": True},
    )
    assert push.status_code == 201, push.text
    assert push.json()["verified"] is True
    assert push.json()["purposes"] == ["broadcasts"]
    own_email = await client.post(
        "/v1/me/contacts", headers=headers, json={"kind": "email", "address": "gus@example.org"}
    )
    assert own_email.json()["verified"] is True  # the account's own verified address
    work = await client.post(
        "/v1/me/contacts", headers=headers, json={"kind": "email", "address": "gus@work.example"}
    )
    assert work.json()["verified"] is False
    queued = await db.execute(
        text(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'send_mail'"
            " AND args->>'to' = 'gus@work.example'"
        )
    )
    assert queued.scalar_one() == 1
    bad = await client.post(
        "/v1/me/contacts", headers=headers, json={"kind": "webpush", "address": "https://push"}
    )
    assert bad.status_code == 422
    listed = (await client.get("/v1/me/contacts", headers=headers)).json()
    assert [c["kind"] for c in listed] == ["fcm", "email", "email"]
    theirs = await client.post(
        "/v1/me/contacts",
        headers=await bearer_headers(settings, other),
        json={"kind": "email", "address": "gus@work.example"},
    )
    assert theirs.status_code == 409
    gone = await client.delete(f"/v1/me/contacts/{work.json()['id']}", headers=headers)
    assert gone.status_code == 204
    again = await client.delete(f"/v1/me/contacts/{work.json()['id']}", headers=headers)
    assert again.status_code == 404
    assert len((await client.get("/v1/me/contacts", headers=headers)).json()) == 2


@pytest.mark.usefixtures("town")
async def test_end_to_end_a_status_change_arrives_by_email_with_one_click_unsubscribe(
    committed_db: async_sessionmaker[AsyncSession], quick: Settings
) -> None:
    from app.channels.registry import channels_for, close_all
    from tests.fakes.smtp import mail_server

    filed = await file(
        committed_db,
        Submission(
            channel=Channel.app,
            submitter=Submitter(),
            service_code="pothole",
            place=Place(*CENTER, LocationSource.device),
            contacts=[ContactSpec(ContactKind.email, "hana@example.org")],
            updates=True,
            locale="sv",
        ),
    )
    async with committed_db() as session, session.begin():
        # Hana followed the confirmation link (tests/test_contacts.py covers that path).
        await session.execute(
            text("UPDATE contact SET verified_at = now() WHERE address = 'hana@example.org'")
        )
    await change(committed_db, filed.ticket_id, TicketStatus.fixed)
    with mail_server() as (server, port):
        settings = quick.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False}
        )
        channels = channels_for(settings)
        try:
            await drain(settings, queues=["notify"], channels=channels)
        finally:
            await close_all(channels)
    [mail] = server.messages  # the acknowledgement went before she confirmed: only the fix
    assert mail["To"] == "hana@example.org"
    assert mail["Subject"] == f"{filed.reference} är åtgärdad"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/unsubscribe?sig=" in mail["List-Unsubscribe"]
    assert await statuses(committed_db) == [("status_changed", "sent")]


def test_quiet_hours_and_hourly_limits_say_how_long_a_message_waits() -> None:
    from datetime import UTC, datetime

    from app.notify.policy import wait_for

    policy = {
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "channels": {"phone": {"quiet_hours": {"start": "20:00", "end": "09:00"}}},
        "max_per_contact_per_hour": 2,
    }
    late = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)  # 23:30 in London (GMT in December)
    assert wait_for(policy, "x", "Europe/London", late, sent_last_hour=0, oldest_in_hour=None) == (
        7.5 * 3600
    )
    evening = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)
    assert (
        wait_for(policy, "x", "Europe/London", evening, sent_last_hour=0, oldest_in_hour=None)
        is None
    )
    assert (
        wait_for(policy, "phone", "Europe/London", evening, sent_last_hour=0, oldest_in_hour=None)
        == 12 * 3600
    )
    # Amsterdam is an hour ahead: 21:30 UTC is 22:30 there.
    assert (
        wait_for(
            policy,
            "x",
            "Europe/Amsterdam",
            datetime(2026, 12, 4, 21, 30, tzinfo=UTC),
            sent_last_hour=0,
            oldest_in_hour=None,
        )
        == 8.5 * 3600
    )
    noon = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    first = noon - timedelta(minutes=40)
    assert (
        wait_for(policy, "x", "Europe/London", noon, sent_last_hour=2, oldest_in_hour=first)
        == 20 * 60
    )
    assert (
        wait_for(policy, "x", "Europe/London", noon, sent_last_hour=1, oldest_in_hour=first) is None
    )
    assert wait_for({}, "x", "UTC", late, sent_last_hour=99, oldest_in_hour=first) is None


@pytest.mark.usefixtures("town")
async def test_a_non_urgent_message_waits_for_the_end_of_the_quiet_hours(
    committed_db: async_sessionmaker[AsyncSession],
    quick: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    from app.core import clock
    from app.notify.service import deliver

    async with committed_db() as session, session.begin():
        await session.execute(
            text(
                "UPDATE jurisdiction SET timezone = 'Europe/London', notifications ="
                ' \'{"quiet_hours": {"start": "22:00", "end": "07:00"}}\''
                " WHERE slug = 'hearback'"
            )
        )
    await file(committed_db, post(*CENTER, handle="ivy"))
    async with committed_db() as session:
        [notification_id] = (await session.execute(text("SELECT id FROM notification"))).scalars()
    recorder = Recorder()
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 12, 4, 23, 0, tzinfo=UTC))
    attempt = await deliver(committed_db, {"x": recorder}, quick, notification_id)
    assert attempt.status == "pending"
    assert attempt.retry_in == 8 * 3600
    assert recorder.sent == []
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 12, 5, 7, 0, tzinfo=UTC))
    attempt = await deliver(committed_db, {"x": recorder}, quick, notification_id)
    assert attempt.status == "sent"
    async with committed_db() as session:
        attempts = (
            await session.execute(
                text("SELECT attempts FROM notification WHERE id = :id"), {"id": notification_id}
            )
        ).scalar_one()
    assert attempts == 1  # waiting is not an attempt


def test_a_city_says_its_messages_in_its_own_words() -> None:
    facts = Facts(
        reference="GR-2026-000042",
        service="kuil",
        status="fixed",
        note="Gerepareerd met warm asfalt.",
        expected=None,
        link="https://groningen.example/v1/tickets/GR-2026-000042",
        jurisdiction="Groningen",
    )
    templates = [
        {"message": "status", "language": "nl", "subject": "{reference}: {status}", "body": "Alg."},
        {
            "message": "status",
            "status": "fixed",
            "language": "nl",
            "subject": "Opgelost: {reference}",
            "body": "Dank voor uw melding. {note}",
        },
    ]
    subject, body = render("status_changed", facts, "nl", "https://u", templates=templates)
    assert subject == "Opgelost: GR-2026-000042"
    assert body.startswith("Dank voor uw melding. Gerepareerd met warm asfalt.")
    assert body.endswith("Geen berichten meer ontvangen: https://u")  # always a way out
    other = Facts(**{**facts.__dict__, "status": "scheduled"})
    assert render("status_changed", other, "nl", "https://u", templates=templates)[0] == (
        "GR-2026-000042: is ingepland"
    )
    # Another language falls back to the built-in words.
    assert render("status_changed", facts, "en", "https://u", templates=templates)[0] == (
        "GR-2026-000042 is fixed"
    )


# A worker whose provider never answers: the test kills it in the middle of a delivery.
_HANGING_WORKER = """
import asyncio, sys
from pathlib import Path
from app.channels import registry
from app.channels.base import Delivered
from app.jobs.worker import run_worker
from app.settings import Settings

class Hanging:
    kind = "x"
    async def deliver(self, message):
        Path(sys.argv[2]).touch()  # the message is in hand
        await asyncio.sleep(3600)
        return Delivered()
    async def close(self):
        return None

registry.channels_for = lambda settings: {"x": Hanging()}
import app.jobs.worker as worker_module
worker_module.channels_for = registry.channels_for
settings = Settings(
    env="test", database_url=sys.argv[1], log_json=False, log_level="WARNING",
    worker_heartbeat_seconds=0.2,
)
asyncio.run(run_worker(settings, concurrency=1))
"""


@pytest.mark.slow
@pytest.mark.usefixtures("town")
async def test_a_worker_killed_mid_delivery_loses_nothing_and_sends_nothing_twice(
    committed_db: async_sessionmaker[AsyncSession], quick: Settings, tmp_path: Path
) -> None:
    import asyncio
    import sys

    from procrastinate.exceptions import AlreadyEnqueued

    from app.jobs import tasks
    from app.jobs.worker import open_queue
    from app.settings import PROJECT_ROOT

    await file(committed_db, post(*CENTER, handle="jo"))
    in_hand = tmp_path / "in-hand"
    assert quick.database_url is not None
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HANGING_WORKER, quick.database_url, str(in_hand), cwd=PROJECT_ROOT
    )
    try:
        for _ in range(300):
            if in_hand.exists() or worker.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert in_hand.exists(), "the worker never took the message"
    finally:
        worker.kill()  # SIGKILL: the delivery's transaction dies with it
        await worker.wait()
    assert await statuses(committed_db) == [("ticket_opened", "pending")]

    await asyncio.sleep(1.2)
    stalled = quick.model_copy(update={"worker_stalled_after_seconds": 1.0})
    async with open_queue(stalled):
        with contextlib.suppress(AlreadyEnqueued):
            await tasks.retry_stalled_jobs.defer_async(timestamp=0)
    recorder = Recorder()
    await drain(stalled, channels={"x": recorder})
    await drain(stalled, queues=["notify"], channels={"x": recorder})
    assert await statuses(committed_db) == [("ticket_opened", "sent")]
    assert len(recorder.sent) == 1


@pytest.mark.usefixtures("town")
async def test_the_fixed_message_carries_the_crews_after_photo(
    committed_db: async_sessionmaker[AsyncSession], quick: Settings
) -> None:
    from app.workorders.repository import insert_completion_photos

    filed = await file(committed_db, post(*CENTER, handle="fleur", locale="nl"))
    other = await file(committed_db, post(*offset_lonlat(*CENTER, 400, 0), handle="olle"))
    await change(committed_db, filed.ticket_id, TicketStatus.in_progress)
    async with committed_db() as session, session.begin():
        # The crew finishes the work order with an after-photo (app.workorders.service.advance
        # stores it so, in the transaction that marks the ticket fixed).
        [public_id] = await insert_completion_photos(
            session,
            filed.ticket_id,
            [
                {
                    "storage_key": "photos/after.jpg",
                    "thumbnail_key": "photos/after-thumb.jpg",
                    "content_type": "image/jpeg",
                    "width": 800,
                    "height": 600,
                    "bytes": 1000,
                    "sha256": "0" * 64,
                    "taken_at": None,
                }
            ],
        )
        await workflow.change_status(session, filed.ticket_id, TicketStatus.fixed, actor=STAFF)
    await change(committed_db, other.ticket_id, TicketStatus.fixed)  # no photo: no line
    recorder = Recorder()
    await drain_all(quick, recorder, rounds=2)
    fixed = {m.address: m for m in recorder.sent if m.event == "fixed"}
    link = f"{quick.public_base_url}/v1/photos/{public_id}.jpg"
    assert f"Zo ziet het er nu uit: {link}" in fixed["fleur"].body.splitlines()
    assert fixed["fleur"].data["photo"] == link  # push data and the webhook's payload
    in_progress = next(m for m in recorder.sent if m.event == "in_progress")
    assert "photo" not in in_progress.data
    assert link not in in_progress.body
    assert "photo" not in fixed["olle"].data
    assert "See it now" not in fixed["olle"].body


def test_a_city_template_places_the_after_photo_where_it_wants() -> None:
    facts = Facts(
        reference="K-1",
        service="pothole",
        status="fixed",
        note=None,
        expected=None,
        link="https://x/v1/tickets/K-1",
        jurisdiction="Town",
        photo="https://x/v1/photos/p.jpg",
    )
    own = [{"message": "status", "status": "fixed", "subject": "Done", "body": "Look: {photo}"}]
    subject, body = render("status_changed", facts, "en", "https://x/u", templates=own)
    assert (subject, body.splitlines()[0]) == ("Done", "Look: https://x/v1/photos/p.jpg")
    _, sv = render("status_changed", facts, "sv", "https://x/u")
    assert "Så här ser det ut nu: https://x/v1/photos/p.jpg" in sv.splitlines()
