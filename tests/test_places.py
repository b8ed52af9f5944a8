"""Following a place and the city's broadcasts: area subscriptions in the event stream, a
broadcast queued in resumable batches across every channel of every follower, and CAP 1.2."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # our own answers, not untrusted input

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Role
from app.jurisdictions.catalog import Catalog
from app.notify import broadcasts
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.settings import Settings
from app.tickets import workflow
from app.tickets.models import TicketStatus
from geo.distance import offset_lonlat
from tests.factories import CITY, bearer_headers, make_jurisdiction, make_service, make_user
from tests.jobs_support import drain
from tests.test_notify import STAFF, Recorder, as_at_commit, outbox

CENTER = CITY.center
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"


def square(lon: float, lat: float, metres: float) -> dict[str, object]:
    (x0, y0), (x1, y1) = (
        offset_lonlat(lon, lat, -metres, -metres),
        offset_lonlat(lon, lat, metres, metres),
    )
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


async def anonymous_report(db: AsyncSession, lon: float, lat: float) -> int:
    filed = await submit_report(
        db,
        Catalog(),
        Submission(
            channel=Channel.app,
            submitter=Submitter(),
            service_code="pothole",
            place=Place(lon, lat, LocationSource.device),
        ),
    )
    return filed.ticket_id


async def follower(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, **place: object
) -> dict[str, str]:
    return await following(client, await make_user(db), settings, **place)


async def following(
    client: httpx.AsyncClient, user: object, settings: Settings, **place: object
) -> dict[str, str]:
    headers = await bearer_headers(settings, user)  # type: ignore[arg-type]
    push = await client.post(
        "/v1/me/contacts",
        headers=headers,
        json={"kind": "fcm", "address": f"token-{user.id}"},  # type: ignore[attr-defined]
    )
    followed = await client.post(
        "/v1/me/area-subscriptions",
        headers=headers,
        json={"contact_id": push.json()["id"], "jurisdiction": "placeton", **place},
    )
    assert followed.status_code == 201, followed.text
    return headers


@pytest.fixture
async def placeton(db: AsyncSession) -> None:
    city = await make_jurisdiction(db, slug="placeton")
    await make_service(db, city, "pothole", duplicate_radius_m=20.0)


@pytest.mark.usefixtures("placeton")
async def test_people_following_a_place_hear_of_new_tickets_and_fixes_there(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    near = {"point": {"lon": CENTER[0], "lat": CENTER[1]}, "radius_m": 200, "label": "My street"}
    await follower(client, db, settings, **near)
    await follower(client, db, settings, **near, topics=["fixes"])
    inside = await anonymous_report(db, *offset_lonlat(*CENTER, 120, 0))
    await anonymous_report(db, *offset_lonlat(*CENTER, 400, 0))  # outside the circle
    await as_at_commit(db)
    reasons = (
        await db.execute(text("SELECT reason, event_kind FROM notification ORDER BY id"))
    ).all()
    assert [tuple(r) for r in reasons] == [("area", "ticket_opened")]
    await workflow.change_status(db, inside, TicketStatus.fixed, actor=STAFF)
    await as_at_commit(db)
    assert [e for _a, e in await outbox(db)] == [
        "ticket_opened",
        "status_changed",
        "status_changed",
    ]

    bad = await client.post(
        "/v1/me/area-subscriptions",
        headers=await bearer_headers(settings, await make_user(db)),
        json={"contact_id": 1, "jurisdiction": "placeton", "point": {"lon": 0, "lat": 0}},
    )
    assert bad.status_code == 422  # not the caller's contact


@pytest.fixture
async def committed_town(committed_db: async_sessionmaker[AsyncSession]) -> None:
    async with committed_db() as session, session.begin():
        city = await make_jurisdiction(session, slug="placeton")
        await make_service(session, city, "pothole")


# Queueing walks the city's followers in contact order, a batch at a time: with batches of
# one, a batch that walks past the follower outside the polygon queues nothing and the walk
# goes on.
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.usefixtures("committed_town")
async def test_a_broadcast_reaches_every_channel_of_every_follower_inside_its_polygon_once(
    committed_db: async_sessionmaker[AsyncSession],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    batch: int,
) -> None:
    from app.main import create_app

    app = create_app(settings)
    app.state.sessionmaker = committed_db
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        committed_db() as session,
    ):
        staff = await make_user(session, role=Role.staff, jurisdiction=await _placeton(session))
        outsider = await make_user(session, role=Role.staff, jurisdiction=await _other(session))
        await session.commit()
        staff_headers = await bearer_headers(settings, staff)
        people = [await make_user(session) for _ in range(3)]
        await session.commit()
        headers = [
            await following(
                client,
                person,
                settings,
                point={"lon": offset_lonlat(*CENTER, metres, 0)[0], "lat": CENTER[1]},
                radius_m=100,
            )
            for person, metres in zip(people, (0, 50, 900), strict=True)
        ]
        # The first follower has a second device: the notice goes there too.
        await client.post(
            "/v1/me/contacts",
            headers=headers[0],
            json={"kind": "fcm", "address": "second-device-token"},
        )
        notice = {
            "jurisdiction": "placeton",
            "polygon": square(*CENTER, 300),
            "area_description": "Old Town, around the market",
            "headline": "Water main burst: avoid the market square",
            "body": "Roads around the market are closed until 18:00.",
            "category": "Infra",
        }
        refused = await client.post(
            "/v1/broadcasts", json=notice, headers=await bearer_headers(settings, outsider)
        )
        assert refused.status_code == 403
        sent = await client.post("/v1/broadcasts", json=notice, headers=staff_headers)
        assert sent.status_code == 202, sent.text
        assert sent.json()["status"] == "queueing"

        monkeypatch.setattr(broadcasts, "BATCH", batch)  # several, as a crash would resume
        fcm = Recorder(kind="fcm")
        await drain(settings, queues=["notify"], channels={"fcm": fcm})
        await drain(settings, queues=["notify"], channels={"fcm": fcm})
        progress = await client.get(f"/v1/broadcasts/{sent.json()['id']}", headers=staff_headers)
        assert progress.json()["status"] == "queued"
        assert progress.json()["counts"] == {"fcm": 3}
        assert sorted(m.address for m in fcm.sent)[0] == "second-device-token"
        assert len(fcm.sent) == 3  # two followers inside (one with two devices); not the third
        assert {m.event for m in fcm.sent} == {"broadcast"}
        assert fcm.sent[0].subject == notice["headline"]

        cap = await client.get(f"/v1/broadcasts/{sent.json()['id']}.cap")
        assert cap.headers["content-type"] == "application/cap+xml"
        alert = ET.fromstring(cap.content)  # noqa: S314
        assert alert.tag == f"{CAP}alert"
        assert alert.findtext(f"{CAP}status") == "Actual"
        assert alert.findtext(f"{CAP}identifier") == sent.json()["id"]
        info = alert.find(f"{CAP}info")
        assert info is not None
        assert info.findtext(f"{CAP}category") == "Infra"
        assert info.findtext(f"{CAP}headline") == notice["headline"]
        polygon = info.findtext(f"{CAP}area/{CAP}polygon")
        assert polygon is not None
        first = polygon.split(" ")[0].split(",")
        assert float(first[0]) == pytest.approx(CENTER[1], abs=0.01)  # latitude first
        assert polygon.split(" ")[0] == polygon.split(" ")[-1]
        feed = await client.get("/v1/broadcasts.cap")
        entries = ET.fromstring(feed.content).findall(  # noqa: S314
            "{http://www.w3.org/2005/Atom}entry"
        )
        assert len(entries) == 1


async def _placeton(session: AsyncSession) -> object:
    from sqlalchemy import select

    from app.jurisdictions.models import Jurisdiction

    return (
        await session.execute(select(Jurisdiction).where(Jurisdiction.slug == "placeton"))
    ).scalar_one()


async def _other(session: AsyncSession) -> object:
    return await make_jurisdiction(session, slug="elsewhere")


@pytest.mark.usefixtures("placeton")
async def test_a_place_followed_as_a_digest_hears_once_a_day_in_one_message(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    from datetime import timedelta

    from app.core import clock
    from app.notify.digests import write_digests

    await follower(
        client,
        db,
        settings,
        point={"lon": CENTER[0], "lat": CENTER[1]},
        radius_m=300,
        label="Market square",
        mode="digest",
    )
    first = await anonymous_report(db, *offset_lonlat(*CENTER, 50, 0))
    second = await anonymous_report(db, *offset_lonlat(*CENTER, 0, 120))
    await workflow.change_status(db, first, TicketStatus.fixed, actor=STAFF)
    await as_at_commit(db)
    assert await outbox(db) == []  # nothing at once for a digest
    until = clock.now() + timedelta(seconds=5)
    assert await write_digests(db, until) == 1
    assert await write_digests(db, until) == 0  # never twice for the same news
    digest = (await db.execute(text("SELECT reason, event_kind, digest FROM notification"))).one()
    rows = await db.execute(
        text("SELECT id, reference FROM ticket WHERE id = ANY(:ids)"), {"ids": [first, second]}
    )
    references = {row.id: row.reference for row in rows}
    assert (digest.reason, digest.event_kind) == ("area", "digest")
    assert sorted(digest.digest["new"]) == sorted(references.values())
    assert digest.digest["fixed"] == [references[first]]
    assert digest.digest["label"] == "Market square"
