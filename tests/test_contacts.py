"""The channel-neutral intake, contacts with consent and verification, and the event stream."""

from __future__ import annotations

import asyncio
import re

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Role
from app.auth.principal import Principal
from app.contacts.models import ContactKind
from app.contacts.service import ContactSpec
from app.jurisdictions.catalog import Catalog
from app.jurisdictions.models import Jurisdiction, Service
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.tickets import workflow
from app.tickets.models import TicketStatus
from geo.distance import offset_lonlat
from tests.factories import CITY, make_jurisdiction, make_service, make_user

CENTER = CITY.center


async def queued_mails(db: AsyncSession, to: str) -> list[dict[str, str]]:
    """The mails queued (in this test's transaction) for the worker to send to ``to``."""
    rows = await db.execute(
        text(
            "SELECT args FROM procrastinate_jobs WHERE task_name = 'send_mail'"
            " AND args->>'to' = :to ORDER BY id"
        ),
        {"to": to},
    )
    return [row.args for row in rows]


def token_of(mail: dict[str, str]) -> str:
    found = re.search(r"\?token=([\w.-]+)", mail["body"])
    assert found, mail["body"]
    return found.group(1)


@pytest.fixture
async def city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="contactville")


@pytest.fixture
async def pothole(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(db, city, "pothole", duplicate_radius_m=30.0)


def whatsapp_report(lon: float = CENTER[0], lat: float = CENTER[1]) -> Submission:
    return Submission(
        channel=Channel.whatsapp,
        submitter=Submitter(label="whatsapp:31612345678", identified=True),
        service_code="pothole",
        place=Place(lon, lat, LocationSource.post, accuracy_m=20.0),
        description="Gat in de weg bij de bushalte",
        contacts=[
            ContactSpec(ContactKind.whatsapp, "31612345678", display_name="Sanne"),
            ContactSpec(ContactKind.email, " Sanne@Example.org "),
        ],
        updates=True,
        reporter_name="Sanne",
        external_id="wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQzQTdF",
        locale="nl",
    )


@pytest.mark.usefixtures("pothole")
async def test_a_channel_files_through_the_input_type_with_two_contacts(
    db: AsyncSession,
) -> None:
    filed = await submit_report(db, Catalog(), whatsapp_report())

    assert filed.channel == Channel.whatsapp
    assert not filed.joined
    assert filed.reference.startswith("K-")
    assert filed.place.source == LocationSource.post
    report = (
        await db.execute(
            text(
                "SELECT channel, location_source, external_id, locale, reporter_name, notify"
                " FROM report WHERE id = :id"
            ),
            {"id": filed.report_id},
        )
    ).one()
    assert tuple(report) == (
        "whatsapp",
        "post",
        "wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQzQTdF",
        "nl",
        "Sanne",
        True,
    )
    contacts = {
        row.kind: row
        for row in await db.execute(
            text(
                "SELECT c.kind, c.address, c.verified_at IS NOT NULL AS verified,"
                " c.verify_token_hash IS NOT NULL AS token_sent, k.method, k.ticket_id,"
                " k.purpose, k.evidence"
                " FROM report_contact rc JOIN contact c ON c.id = rc.contact_id"
                " JOIN contact_consent k ON k.contact_id = c.id"
                " WHERE rc.report_id = :id"
            ),
            {"id": filed.report_id},
        )
    }
    assert set(contacts) == {"whatsapp", "email"}
    # The platform vouches for the WhatsApp account; the typed address must be confirmed.
    assert contacts["whatsapp"].verified
    assert not contacts["whatsapp"].token_sent
    assert not contacts["email"].verified
    assert contacts["email"].token_sent
    assert contacts["email"].address == "sanne@example.org"
    for row in contacts.values():
        assert (row.purpose, row.method, row.ticket_id) == (
            "ticket_updates",
            "message",
            filed.ticket_id,
        )
        assert row.evidence == {"report": str(filed.report_public_id), "channel": "whatsapp"}
    assert [v.kind for v in filed.verifications] == [ContactKind.email]
    subscribers = (
        await db.execute(
            text("SELECT count(*) FROM subscription WHERE ticket_id = :t AND reason = 'reporter'"),
            {"t": filed.ticket_id},
        )
    ).scalar_one()
    assert subscribers == 2

    # The same message delivered again is refused, not filed twice.
    with pytest.raises(Exception, match="uq_report_channel_external_id"):
        async with db.begin_nested():
            await submit_report(db, Catalog(), whatsapp_report())


@pytest.mark.usefixtures("pothole")
async def test_the_input_type_validates_what_no_wire_schema_checked(db: AsyncSession) -> None:
    from app.core.errors import InvalidInput

    base = whatsapp_report()
    too_long = Submission(**{**base.__dict__, "description": "x" * 5001})
    with pytest.raises(InvalidInput) as caught:
        await submit_report(db, Catalog(), too_long)
    assert caught.value.errors[0]["field"] == "description"
    nul = Submission(**{**base.__dict__, "address": "Vismarkt\x001"})
    with pytest.raises(InvalidInput) as caught:
        await submit_report(db, Catalog(), nul)
    assert caught.value.errors[0]["field"] == "address"
    nowhere = Submission(**{**base.__dict__, "place": None})
    with pytest.raises(InvalidInput) as caught:
        await submit_report(db, Catalog(), nowhere)
    assert caught.value.errors[0]["field"] == "location"


@pytest.mark.usefixtures("pothole")
async def test_following_by_email_sends_only_a_confirmation_until_confirmed(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    created = await client.post(
        "/v1/reports",
        json={"service_code": "pothole", "location": {"lon": CENTER[0], "lat": CENTER[1]}},
    )
    reference = created.json()["ticket"]["reference"]

    followed = await client.post(
        f"/v1/tickets/{reference}/follow", json={"email": "Fan@Example.org"}
    )
    assert followed.status_code == 200, followed.text
    subjects = [m["subject"] for m in await queued_mails(db, "fan@example.org")]
    assert subjects == [f"Confirm updates about {reference}"]
    contact = (
        await db.execute(
            text("SELECT id, verified_at FROM contact WHERE address = 'fan@example.org'")
        )
    ).one()
    assert contact.verified_at is None
    consent = (
        await db.execute(
            text("SELECT purpose, method FROM contact_consent WHERE contact_id = :c"),
            {"c": contact.id},
        )
    ).all()
    assert [tuple(c) for c in consent] == [("ticket_updates", "follow_form")]

    # Asking again within the hour sends nothing more (nobody floods someone else's inbox).
    await client.post(f"/v1/tickets/{reference}/support", json={"email": "fan@example.org"})
    mails = await queued_mails(db, "fan@example.org")
    assert len(mails) == 1

    token = token_of(mails[0])
    page = await client.get("/v1/contacts/verify", params={"token": token})
    assert page.status_code == 200
    assert "<form method=post" in page.text
    still = (
        await db.execute(text("SELECT verified_at FROM contact WHERE id = :c"), {"c": contact.id})
    ).scalar_one()
    assert still is None  # opening the link changes nothing
    confirmed = await client.post("/v1/contacts/verify", params={"token": token})
    assert confirmed.json() == {"verified": True, "kind": "email"}
    verified = (
        await db.execute(text("SELECT verified_at FROM contact WHERE id = :c"), {"c": contact.id})
    ).scalar_one()
    assert verified is not None
    again = await client.post("/v1/contacts/verify", params={"token": token})
    assert again.status_code == 422
    assert again.headers["content-type"] == "application/problem+json"
    bad = await client.post("/v1/contacts/verify", params={"token": "not a token!"})
    assert bad.status_code == 422


@pytest.mark.usefixtures("pothole")
async def test_a_reporters_own_verified_account_address_needs_no_confirmation(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    from tests.test_intake import login

    user = await make_user(db, email="ada@example.org")
    headers = await login(client, user.email)
    own = await client.post(
        "/v1/reports",
        headers=headers,
        json={
            "service_code": "pothole",
            "location": {"lon": CENTER[0], "lat": CENTER[1]},
            "contact": {"email": "ada@example.org", "updates": True},
        },
    )
    assert own.status_code == 201, own.text
    lon, lat = offset_lonlat(*CENTER, 200, 0)
    other = await client.post(
        "/v1/reports",
        json={
            "service_code": "pothole",
            "location": {"lon": lon, "lat": lat},
            "contact": {"email": "bo@example.org", "updates": True},
        },
    )
    assert other.status_code == 201, other.text
    assert await queued_mails(db, "ada@example.org") == []
    assert len(await queued_mails(db, "bo@example.org")) == 1
    rows = await db.execute(text("SELECT address, verified_at IS NOT NULL FROM contact"))
    verified = dict(rows.tuples().all())
    assert verified == {"ada@example.org": True, "bo@example.org": False}


# -- the event stream: every timeline line passes one trigger ---------------------------------


async def test_every_public_event_of_a_followed_ticket_is_announced_once_at_commit(
    database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    async with committed_db() as session, session.begin():
        city = await make_jurisdiction(session, slug="streamtown")
        await make_service(session, city, "pothole", duplicate_radius_m=30.0)
    listener = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    try:
        await listener.execute("LISTEN kerbside_ticket_event")
        catalog = Catalog()
        staff = Principal(kind="user", role=Role.admin, label="test-staff")
        async with committed_db() as session, session.begin():
            quiet = await submit_report(
                session,
                catalog,
                Submission(
                    channel=Channel.app,
                    submitter=Submitter(),
                    service_code="pothole",
                    place=Place(*CENTER, LocationSource.device),
                ),
            )
        lon, lat = offset_lonlat(*CENTER, 300, 0)
        followed = whatsapp_report(lon, lat)
        async with committed_db() as session, session.begin():
            first = await submit_report(session, catalog, followed)
        async with committed_db() as session, session.begin():
            joined = await submit_report(
                session,
                catalog,
                Submission(
                    channel=Channel.x,
                    submitter=Submitter(label="x:42", identified=True),
                    service_code="pothole",
                    place=Place(lon, lat, LocationSource.post),
                    contacts=[ContactSpec(ContactKind.x, "42")],
                    updates=True,
                ),
            )
            assert joined.joined
            assert joined.ticket_id == first.ticket_id
        async with committed_db() as session, session.begin():
            await workflow.change_status(
                session, first.ticket_id, TicketStatus.acknowledged, actor=staff
            )
            await workflow.change_status(
                session, quiet.ticket_id, TicketStatus.acknowledged, actor=staff
            )
        # A change that rolls back announces nothing.
        async with committed_db() as session:
            await workflow.change_status(
                session, first.ticket_id, TicketStatus.scheduled, actor=staff
            )
            await session.rollback()

        heard = []
        async with asyncio.timeout(5):
            async for note in listener.notifies(timeout=1.0):
                heard.append(note.payload)
        async with committed_db() as session:
            public = [
                f"{row.ticket_id}:{row.id}:{row.kind}"
                for row in await session.execute(
                    text(
                        "SELECT ticket_id, id, kind FROM ticket_event"
                        " WHERE ticket_id = :t AND public ORDER BY id"
                    ),
                    {"t": first.ticket_id},
                )
            ]
        assert [p.split(":")[2] for p in public] == [
            "ticket_opened",
            "report_attached",
            "status_changed",
        ]
        assert heard == public  # the followed ticket's lines, in order; the quiet one's: none
    finally:
        await listener.close()
