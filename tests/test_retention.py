"""Retention: personal data is dropped from tickets closed long enough ago (``app.privacy``).

Reports filed through the API with a name, an email, a phone and a push token, a follower by
email; the tickets then closed at chosen times. The job drops what ties a closed ticket to
people and nothing else, per the city's retention or the default, once.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cities import service
from app.core import clock
from app.jurisdictions.models import Jurisdiction
from app.privacy.service import Dropped, drop_expired_personal_data
from geo.city import make_city
from tests.factories import CITY, make_jurisdiction, make_service, make_ticket

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OTHER_CITY = make_city(center=(4.8952, 52.3702), seed=11)


async def _file(client: httpx.AsyncClient, lon: float, lat: float, who: str, **contact: Any) -> str:
    answer = await client.post(
        "/v1/reports",
        json={
            "service_code": "pothole",
            "location": {"lon": lon, "lat": lat},
            "contact": {"name": f"{who} Reporter", "email": f"{who}@example.org", **contact},
        },
    )
    assert answer.status_code == 201, answer.text
    reference: str = answer.json()["ticket"]["reference"]
    return reference


async def _close(db: AsyncSession, reference: str, days_ago: float) -> None:
    await db.execute(
        text("UPDATE ticket SET status = 'closed', closed_at = :at WHERE reference = :r"),
        {"at": clock.now() - timedelta(days=days_ago), "r": reference},
    )


async def _personal(db: AsyncSession, reference: str) -> dict[str, int]:
    row = (
        await db.execute(
            text(
                """
                SELECT
                  (SELECT count(*) FROM report_contact rc JOIN report r ON r.id = rc.report_id
                   WHERE r.ticket_id = t.id) AS report_contacts,
                  (SELECT count(*) FROM report r
                   WHERE r.ticket_id = t.id AND r.reporter_name IS NOT NULL) AS names,
                  (SELECT count(*) FROM subscription s
                   WHERE s.ticket_id = t.id AND s.contact_id IS NOT NULL) AS subscriptions,
                  (SELECT count(*) FROM contact_consent c WHERE c.ticket_id = t.id) AS consents,
                  (SELECT count(*) FROM notification n WHERE n.ticket_id = t.id) AS notifications,
                  (SELECT count(*) FROM report r WHERE r.ticket_id = t.id) AS reports
                FROM ticket t WHERE t.reference = :r
                """
            ),
            {"r": reference},
        )
    ).one()
    return dict(row._mapping)


async def _contacts(db: AsyncSession) -> set[str]:
    return {a for (a,) in await db.execute(text("SELECT address FROM contact"))}


@pytest.fixture
async def cities(db: AsyncSession) -> tuple[Jurisdiction, Jurisdiction]:
    default = await make_jurisdiction(db, slug="keeps-default")
    short = await make_jurisdiction(db, city=OTHER_CITY, slug="keeps-30-days")
    short.privacy = {"contact_retention_days": 30}
    for city in (default, short):
        await make_service(db, city, "pothole")
    await db.flush()
    return default, short


async def test_personal_data_of_long_closed_tickets_is_dropped_once(
    client: httpx.AsyncClient,
    db: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    cities: tuple[Jurisdiction, Jurisdiction],
    caplog: pytest.LogCaptureFixture,
) -> None:
    lon, lat = CITY.center
    token = "fcm-token-of-ann-0123456789"
    old = await _file(
        client, lon, lat, "ann", phone="+447700900123", push_token=token, updates=True
    )
    followed = await client.post(
        f"/v1/tickets/{old}/follow", json={"email": "follower@example.org"}
    )
    assert followed.status_code in (200, 201), followed.text
    # Bob reported on the old ticket and on one still open: his contact must stay.
    bob_old = await _file(client, lon + 0.00001, lat, "bob", updates=True)
    assert bob_old == old
    still_open = await _file(client, lon + 0.01, lat, "bob", updates=True)
    recent = await _file(client, lon - 0.01, lat, "cid", updates=True)
    o_lon, o_lat = OTHER_CITY.center
    short_city = await _file(client, o_lon, o_lat, "dee", updates=True)
    await _close(db, old, days_ago=181)  # past the default (180)
    await _close(db, recent, days_ago=179)  # not yet
    await _close(db, short_city, days_ago=31)  # past its city's 30 days
    before = {r: await _personal(db, r) for r in (old, recent, still_open, short_city)}
    assert before[old]["report_contacts"] >= 2
    assert before[old]["names"] == 2
    assert before[old]["consents"] >= 1
    assert before[old]["subscriptions"] >= 3

    progress: list[tuple[int, int]] = []
    with caplog.at_level(logging.INFO, logger="kerbside.privacy"):
        dropped = await drop_expired_personal_data(
            sessionmaker,
            now=clock.now(),
            default_days=180,
            batch=1,
            progress=lambda done, total: progress.append((done, total)),
        )
    assert dropped.tickets == 2
    assert dropped.reporter_names == 3
    assert dropped.contacts >= 3
    assert progress[0] == (0, 2)
    assert progress[-1] == (2, 2)

    for reference in (old, short_city):
        after = await _personal(db, reference)
        assert after == {
            "report_contacts": 0,
            "names": 0,
            "subscriptions": 0,
            "consents": 0,
            "notifications": 0,
            "reports": before[reference]["reports"],  # the record stays
        }
    # Open, and recently closed, tickets keep everything.
    for reference in (recent, still_open):
        assert await _personal(db, reference) == before[reference]
    addresses = await _contacts(db)
    assert {"ann@example.org", "+447700900123", token, "follower@example.org"} & addresses == set()
    assert "dee@example.org" not in addresses
    assert {"bob@example.org", "cid@example.org"} <= addresses
    # The ticket itself is still public.
    assert (await client.get(f"/v1/tickets/{old}")).status_code == 200

    # Logged with counts only.
    logged = " ".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert caplog.records
    assert "tickets" in caplog.records[-1].__dict__
    for secret in ("ann@example.org", "Ann Reporter", "+447700900123", token, old):
        assert secret not in logged

    # Idempotent: a second run finds nothing to do.
    again = await drop_expired_personal_data(
        sessionmaker, now=clock.now(), default_days=180, batch=10
    )
    assert again == Dropped()


async def test_a_ticket_closed_again_after_being_reopened_is_due_again(
    client: httpx.AsyncClient,
    db: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    cities: tuple[Jurisdiction, Jurisdiction],
) -> None:
    lon, lat = CITY.center
    reference = await _file(client, lon, lat, "eve", updates=True)
    await _close(db, reference, days_ago=400)
    first = await drop_expired_personal_data(
        sessionmaker, now=clock.now() - timedelta(days=200), default_days=180, batch=10
    )
    assert first.tickets == 1
    # Reopened, a new report with a contact, closed again long ago enough.
    await db.execute(
        text("UPDATE ticket SET status = 'reopened', closed_at = NULL WHERE reference = :r"),
        {"r": reference},
    )
    assert await _file(client, lon, lat, "fay", updates=True) == reference
    await _close(db, reference, days_ago=190)
    second = await drop_expired_personal_data(
        sessionmaker, now=clock.now(), default_days=180, batch=10
    )
    assert second.tickets == 1
    assert second.reporter_names == 1
    assert "fay@example.org" not in await _contacts(db)


async def test_kerbside_privacy_anonymise_runs_the_job_with_progress(
    database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    async with committed_db() as session, session.begin():
        city = await make_jurisdiction(session, slug="by-hand")
        service = await make_service(session, city, "pothole")
        contact = (
            await session.execute(
                text(
                    "INSERT INTO contact (kind, address) VALUES ('email', 'gus@example.org')"
                    " RETURNING id"
                )
            )
        ).scalar_one()
        ticket = await make_ticket(session, city, service, *CITY.center, status="closed")
        await session.execute(
            text("UPDATE ticket SET closed_at = now() - interval '200 days' WHERE id = :t"),
            {"t": ticket.id},
        )
        await session.execute(
            text(
                "INSERT INTO subscription (ticket_id, contact_id, reason)"
                " VALUES (:t, :c, 'follower')"
            ),
            {"t": ticket.id, "c": contact},
        )
    result = subprocess.run(  # noqa: ASYNC221  (the command must end before we look)
        [sys.executable, "-m", "app.cli", "privacy", "anonymise", "--batch-size", "5"],
        env={**os.environ, "KERBSIDE_DATABASE_URL": database_url, "KERBSIDE_LOG_JSON": "false"},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["tickets"] == 1
    assert summary["contacts"] == 1
    assert "1/1 rows" in result.stderr  # the progress line
    async with committed_db() as session:
        left = await session.execute(text("SELECT count(*) FROM contact"))
        assert left.scalar_one() == 0


async def test_the_city_file_sets_its_retention_and_exports_it(db: AsyncSession) -> None:
    from tests.test_city_file import apply_data, town

    created = await apply_data(db, {**town(), "privacy": {"contact_retention_days": 30}})
    assert ("privacy", "create") in {(c.what, c.action) for c in created.changes}
    slug = town()["jurisdiction"]["slug"]
    stored = await db.execute(text("SELECT privacy FROM jurisdiction WHERE slug = :s"), {"s": slug})
    assert stored.scalar_one() == {"contact_retention_days": 30}
    exported = await service.export(db, slug)
    assert exported.privacy.contact_retention_days == 30
    # Applying the export again changes nothing; a file without the section goes back to the
    # default.
    assert not (await service.apply(db, exported)).changed
    await apply_data(db, town())
    stored = await db.execute(text("SELECT privacy FROM jurisdiction WHERE slug = :s"), {"s": slug})
    assert stored.scalar_one() == {}
