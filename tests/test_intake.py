"""Report intake: clustering into tickets, its edges, bad input, idempotency, privacy, photos."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.jurisdictions.models import Jurisdiction, Service
from geo.distance import haversine_m, offset_lonlat
from tests.factories import CITY, PASSWORD, make_jurisdiction, make_service, make_user
from tests.images import image_bytes, jpeg

CENTER = CITY.center
PROBLEM = "application/problem+json"


@pytest.fixture
async def city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="testville")


@pytest.fixture
async def pothole(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(
        db,
        city,
        "pothole",
        duplicate_radius_m=30.0,
        duplicate_window=timedelta(days=3),
        attributes=[
            {"code": "depth_cm", "datatype": "number", "required": False, "variable": True},
            {
                "code": "lane",
                "datatype": "singlevaluelist",
                "required": False,
                "variable": True,
                "values": [{"key": "road", "name": "Road"}, {"key": "cycle", "name": "Cycle lane"}],
            },
        ],
    )


@pytest.fixture
async def streetlight(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(db, city, "streetlight", duplicate_radius_m=25.0)


def body(lon: float = CENTER[0], lat: float = CENTER[1], **extra: Any) -> dict[str, Any]:
    return {"service_code": "pothole", "location": {"lon": lon, "lat": lat}, **extra}


async def post(client: httpx.AsyncClient, payload: Any, **kw: Any) -> httpx.Response:
    return await client.post("/v1/reports", json=payload, **kw)


async def login(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await client.post(
        "/v1/auth/jwt/login", data={"username": email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


# -- clustering ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("pothole")
async def test_first_report_opens_a_ticket_in_its_district(client: httpx.AsyncClient) -> None:
    response = await post(client, body(description="Deep one in the cycle lane"))
    assert response.status_code == 201, response.text
    data = response.json()
    ticket = data["ticket"]
    assert re.fullmatch(r"K-\d{4}-\d{6,}", ticket["reference"])
    assert data["joined_existing"] is False
    assert data["match"] is None
    assert data["explanation"].startswith(f"Opened {ticket['reference']}")
    assert ticket["area"] == {"code": "D01", "name": "Old Town"}
    assert ticket["status"] == "open"
    assert ticket["report_count"] == 1
    assert ticket["description"] == "Deep one in the cycle lane"
    reported = datetime.fromisoformat(data["report"]["reported_at"])
    assert datetime.fromisoformat(ticket["acknowledge_due_at"]) == reported + timedelta(days=2)
    assert datetime.fromisoformat(ticket["resolve_due_at"]) == reported + timedelta(days=14)
    assert data["report"]["location_source"] == "device"
    assert response.headers["location"].endswith(f"/v1/reports/{data['report']['id']}")
    assert data["report"]["reported_at"].endswith("Z")


@pytest.mark.usefixtures("pothole")
async def test_nearby_report_joins_and_says_why(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    first = (await post(client, body())).json()
    near = offset_lonlat(*CENTER, 12.0, 16.0)  # 20 m away
    second = await post(client, body(*near))
    assert second.status_code == 201
    data = second.json()
    assert data["joined_existing"] is True
    assert data["ticket"]["reference"] == first["ticket"]["reference"]
    assert data["ticket"]["report_count"] == 2
    assert data["match"]["distance_m"] == pytest.approx(20.0, abs=0.5)
    assert data["match"]["radius_m"] == 30.0
    assert data["match"]["window_seconds"] == 3 * 86400
    assert "20 m away" in data["explanation"]
    # The ticket keeps its first location; both reports keep their own.
    assert data["ticket"]["location"] == pytest.approx({"lon": CENTER[0], "lat": CENTER[1]})
    kinds = (
        (
            await db.execute(
                text(
                    "SELECT e.kind FROM ticket_event e JOIN ticket t ON t.id = e.ticket_id"
                    " WHERE t.reference = :r ORDER BY e.id"
                ),
                {"r": first["ticket"]["reference"]},
            )
        )
        .scalars()
        .all()
    )
    assert kinds == ["ticket_opened", "report_attached"]


@pytest.mark.usefixtures("pothole")
@pytest.mark.parametrize(("metres", "joins"), [(29.0, True), (31.0, False)])
async def test_radius_edge(client: httpx.AsyncClient, metres: float, joins: bool) -> None:
    first = (await post(client, body())).json()
    point = offset_lonlat(*CENTER, 0.0, metres)
    assert haversine_m(*CENTER, *point) == pytest.approx(metres, abs=0.2)
    second = (await post(client, body(*point))).json()
    assert second["joined_existing"] is joins
    same = second["ticket"]["reference"] == first["ticket"]["reference"]
    assert same is joins


@pytest.mark.usefixtures("pothole")
@pytest.mark.parametrize(
    ("gap", "joins"), [(timedelta(days=3, minutes=-1), True), (timedelta(days=3, minutes=1), False)]
)
async def test_time_window_edge_measured_from_report_time(
    client: httpx.AsyncClient, db: AsyncSession, gap: timedelta, joins: bool
) -> None:
    staff = await make_user(db, role=Role.staff, jurisdiction=None)
    headers = await login(client, staff.email)
    start = datetime.now(UTC) - timedelta(days=10)
    first = await post(client, body(reported_at=start.isoformat()), headers=headers)
    assert first.status_code == 201, first.text
    second = (
        await post(client, body(reported_at=(start + gap).isoformat()), headers=headers)
    ).json()
    assert second["joined_existing"] is joins


@pytest.mark.usefixtures("pothole", "streetlight")
async def test_other_services_and_closed_tickets_do_not_take_reports(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    first = (await post(client, body())).json()
    light = (await post(client, {**body(), "service_code": "streetlight"})).json()
    assert light["joined_existing"] is False
    await db.execute(
        text("UPDATE ticket SET status = 'fixed' WHERE reference = :r"),
        {"r": first["ticket"]["reference"]},
    )
    again = (await post(client, body())).json()
    assert again["joined_existing"] is False
    assert again["ticket"]["reference"] != first["ticket"]["reference"]


# -- bad input ------------------------------------------------------------------------------------


def _fields(response: httpx.Response) -> set[str]:
    assert response.headers["content-type"] == PROBLEM, response.text
    return {e["field"] for e in response.json().get("errors", [])}


@pytest.mark.usefixtures("pothole", "streetlight")
async def test_unknown_service_lists_valid_codes(client: httpx.AsyncClient) -> None:
    response = await post(client, {**body(), "service_code": "graffiti"})
    assert response.status_code == 422
    assert _fields(response) == {"service_code"}
    assert response.json()["valid"] == ["pothole", "streetlight"]
    assert "pothole, streetlight" in response.json()["detail"]


@pytest.mark.usefixtures("pothole")
async def test_outside_every_jurisdiction_and_swapped_hint(client: httpx.AsyncClient) -> None:
    outside = await post(client, body(10.0, 10.0))
    assert outside.status_code == 422
    assert _fields(outside) == {"location"}
    assert "swapped" not in outside.json()["detail"]
    swapped = await post(client, body(CENTER[1], CENTER[0]))
    assert swapped.status_code == 422
    assert "swapped" in swapped.json()["detail"]


@pytest.mark.usefixtures("pothole")
@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"service_code": "pothole", "location": {"lon": NaN, "lat": 51.45}}', "location.lon"),
        ('{"service_code": "pothole", "location": {"lon": -2.58, "lat": 1e400}}', "location.lat"),
        ('{"service_code": "pothole", "location": {"lon": -2.58, "lat": 91}}', "location.lat"),
        ('{"service_code": "pothole", "location": {"lon": 181, "lat": 51.4}}', "location.lon"),
        ('{"service_code": "pothole", "location": {"lon": "west", "lat": 51.4}}', "location.lon"),
        ('{"service_code": "pothole", "location": {"lon": 0, "lat": 0}}', "location.lon"),
        ('{"service_code": "pothole"}', "location"),
        ('{"location": {"lon": -2.58, "lat": 51.45}}', "service_code"),
        ('{"service_code": "pothole", "location": {"lon": -2.58, "lat": 51.45}, "x": 1}', "x"),
        ('{"service_code": "pothole", "location": [1, 2]}', "location"),
        ('{"service_code": "pothole", "contact": {"email": "not-an-email"}}', "contact.email"),
        ('{"service_code": "pothole", "contact": {"phone": "0117 123"}}', "contact.phone"),
        ('{"service_code": "pothole",', ""),
    ],
)
async def test_malformed_reports_are_rejected_with_the_field(
    client: httpx.AsyncClient, db: AsyncSession, raw: str, field: str
) -> None:
    response = await client.post(
        "/v1/reports", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    if field:
        assert field in _fields(response)
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 0


@pytest.mark.usefixtures("pothole")
async def test_text_limits(client: httpx.AsyncClient) -> None:
    response = await post(client, body(description="x" * 5001))
    assert response.status_code == 422
    assert _fields(response) == {"description"}
    response = await post(client, body(address="a" * 501))
    assert _fields(response) == {"address"}
    fine = await post(client, body(description="x" * 5000))
    assert fine.status_code == 201


@pytest.mark.usefixtures("pothole")
async def test_wrong_content_types(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/reports", content=b"pothole!", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM
    empty = await client.post(
        "/v1/reports", content=b"", headers={"content-type": "application/json"}
    )
    assert empty.status_code == 422  # invalid input, as FastAPI answers a missing body


@pytest.mark.usefixtures("pothole")
async def test_attributes_are_checked_against_the_service(client: httpx.AsyncClient) -> None:
    unknown = await post(client, body(attributes={"colour": "red"}))
    assert unknown.status_code == 422
    assert _fields(unknown) == {"attributes.colour"}
    wrong = await post(client, body(attributes={"depth_cm": "deep", "lane": "pavement"}))
    assert _fields(wrong) == {"attributes.depth_cm", "attributes.lane"}
    ok = await post(client, body(attributes={"depth_cm": 12, "lane": "cycle"}))
    assert ok.status_code == 201
    assert ok.json()["report"]["attributes"] == {"depth_cm": 12, "lane": "cycle"}


@pytest.mark.usefixtures("pothole")
async def test_a_number_beyond_floating_point_is_refused_not_stored_as_null(
    client: httpx.AsyncClient,
) -> None:
    # 1e400 parses as infinity, which JSON (and the stored JSONB) cannot hold.
    for number in ("1e400", "-1e400"):
        lon, lat = CENTER
        raw = f'{{"service_code": "pothole", "location": {{"lon": {lon}, "lat": {lat}}},'
        raw += f' "attributes": {{"depth_cm": {number}}}}}'
        response = await client.post(
            "/v1/reports", content=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert _fields(response) == {"attributes.depth_cm"}


@pytest.mark.usefixtures("pothole")
async def test_backdating_and_future_times(client: httpx.AsyncClient) -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    assert _fields(await post(client, body(reported_at=future.isoformat()))) == {"reported_at"}
    old = datetime.now(UTC) - timedelta(days=8)
    assert _fields(await post(client, body(reported_at=old.isoformat()))) == {"reported_at"}
    naive = await post(client, body(reported_at="2026-11-20T10:00:00"))
    assert naive.status_code == 422
    recent = datetime.now(UTC) - timedelta(days=2)
    response = await post(client, body(reported_at=recent.isoformat()))
    assert response.status_code == 201
    assert datetime.fromisoformat(response.json()["report"]["reported_at"]) == recent


@pytest.mark.usefixtures("pothole")
async def test_a_backfill_dates_its_receipt_and_opening_lines_live_reports_cannot(
    db: AsyncSession,
) -> None:
    # The demo seed replays months of reports: their timelines must not all read "today".
    from app.core.errors import InvalidInput
    from app.jurisdictions.catalog import Catalog
    from app.reports.intake import Place, Submission, Submitter
    from app.reports.models import Channel, LocationSource
    from app.reports.service import submit_report

    trusted = Submitter(label="demo-seed", trusted=True, identified=True)
    then = datetime.now(UTC) - timedelta(days=40)

    def report(who: Submitter, at: datetime, received: datetime | None, east: float) -> Submission:
        return Submission(
            channel=Channel.app,
            submitter=who,
            service_code="pothole",
            place=Place(*offset_lonlat(*CENTER, east, 0), LocationSource.device),
            reported_at=at,
            received_at=received,
        )

    yesterday = datetime.now(UTC) - timedelta(days=1)
    citizen = Submitter(label="user:someone", identified=True)
    for refused in (
        report(citizen, yesterday, yesterday, 0),  # only trusted sources backfill
        report(trusted, then, then - timedelta(hours=1), 0),  # received before it was made
        report(trusted, then, datetime.now(UTC) + timedelta(hours=1), 0),  # in the future
    ):
        with pytest.raises(InvalidInput) as caught:
            await submit_report(db, Catalog(), refused)
        assert caught.value.errors[0]["field"] == "received_at"

    old = await submit_report(db, Catalog(), report(trusted, then, then, 0))
    again = await submit_report(db, Catalog(), report(trusted, then, then + timedelta(hours=2), 5))
    live = await submit_report(db, Catalog(), report(trusted, then, None, 500))
    assert again.joined
    assert again.ticket_id == old.ticket_id
    assert old.received_at == then
    rows = (
        await db.execute(
            text(
                "SELECT e.ticket_id, e.kind, e.created_at, t.created_at AS ticket_created,"
                " t.updated_at FROM ticket_event e JOIN ticket t ON t.id = e.ticket_id"
                " WHERE e.ticket_id IN (:old, :live) ORDER BY e.id"
            ),
            {"old": old.ticket_id, "live": live.ticket_id},
        )
    ).all()
    backfilled = [(r.kind, r.created_at) for r in rows if r.ticket_id == old.ticket_id]
    assert backfilled == [
        ("ticket_opened", then),
        ("report_attached", then + timedelta(hours=2)),
    ]
    assert {(r.ticket_created, r.updated_at) for r in rows if r.ticket_id == old.ticket_id} == {
        (then, then + timedelta(hours=2))
    }
    # A report without received_at is received now, whenever it was made.
    assert datetime.now(UTC) - live.received_at < timedelta(minutes=1)
    assert [r.created_at for r in rows if r.ticket_id == live.ticket_id] == [live.received_at]


# -- idempotency ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("pothole")
async def test_retry_with_same_key_replays_without_a_second_report(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await post(client, body(description="one"), headers=key)
    # Same body, different key order and spacing: still the same request.
    raw = (
        b'{ "description": "one", "location": {"lat": %r, "lon": %r}, "service_code": "pothole"}'
        % (
            CENTER[1],
            CENTER[0],
        )
    )
    second = await client.post(
        "/v1/reports", content=raw, headers={**key, "content-type": "application/json"}
    )
    assert first.status_code == 201
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 1
    other = await post(client, body(description="two"), headers=key)
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 1


@pytest.mark.usefixtures("pothole")
async def test_client_id_makes_retries_safe_without_a_header(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    payload = body(client_id="app-7f3c")
    first = await post(client, payload)
    second = await post(client, payload)
    assert first.json()["report"]["id"] == second.json()["report"]["id"]
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 1


@pytest.mark.usefixtures("pothole")
async def test_idempotency_keys_are_kept_at_least_a_day(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await post(client, body(), headers={"Idempotency-Key": "k1"})
    kept = (
        await db.execute(
            text("SELECT expires_at - created_at FROM idempotency_record WHERE key = 'k1'")
        )
    ).scalar_one()
    assert kept >= timedelta(hours=24)


# -- who reports, who sees what -------------------------------------------------------------------


async def test_anonymous_reports_need_the_jurisdictions_consent(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    closed = await make_jurisdiction(db, slug="closedtown", allow_anonymous=False)
    await make_service(db, closed, "pothole")
    response = await post(client, body())
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    citizen = await make_user(db)
    signed_in = await post(client, body(), headers=await login(client, citizen.email))
    assert signed_in.status_code == 201
    mine = await client.get("/v1/me/reports", headers=await login(client, citizen.email))
    assert [r["id"] for r in mine.json()] == [signed_in.json()["report"]["id"]]


@pytest.mark.usefixtures("pothole")
async def test_staff_see_that_a_push_token_exists_never_its_value(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction
) -> None:
    token = "fcm-registration-token-0123456789-abcdefghijklmnop"
    citizen = await make_user(db)
    mine = await login(client, citizen.email)
    created = await post(client, body(contact={"push_token": token, "updates": True}), headers=mine)
    assert created.status_code == 201, created.text
    report_id = created.json()["report"]["id"]
    # The reporter sees their own token as given.
    own = (await client.get(f"/v1/reports/{report_id}", headers=mine)).json()
    assert [c["address"] for c in own["contacts"]] == [token]
    staff = await make_user(db, role=Role.staff, jurisdiction=city)
    seen = await client.get(f"/v1/reports/{report_id}", headers=await login(client, staff.email))
    assert seen.status_code == 200
    assert token not in seen.text
    (contact,) = seen.json()["contacts"]
    assert contact["kind"] == "fcm"
    assert contact["address"] == "fcm-re…mnop"


@pytest.mark.usefixtures("pothole")
async def test_contact_details_only_for_reporter_and_staff(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction
) -> None:
    citizen = await make_user(db)
    mine = await login(client, citizen.email)
    contact = {
        "name": "Robin Reporter",
        "email": "Robin@Example.org",
        "phone": "+447700900123",
        "updates": True,
    }
    created = await post(client, body(contact=contact), headers=mine)
    assert created.status_code == 201, created.text
    report_id = created.json()["report"]["id"]
    reference = created.json()["ticket"]["reference"]

    public = await client.get(f"/v1/reports/{report_id}")
    assert public.status_code == 200
    assert "contacts" not in public.json()
    for secret in ("robin@example.org", "Robin Reporter", "+447700900123"):
        assert secret not in public.text

    own = (await client.get(f"/v1/reports/{report_id}", headers=mine)).json()
    assert {c["kind"]: c["address"] for c in own["contacts"]} == {
        "email": "robin@example.org",
        "phone": "+447700900123",
    }
    staff = await make_user(db, role=Role.staff, jurisdiction=city)
    seen = (
        await client.get(f"/v1/reports/{report_id}", headers=await login(client, staff.email))
    ).json()
    assert seen["reporter_name"] == "Robin Reporter"
    other_city = await make_jurisdiction(db, slug="elsewhere")
    outsider = await make_user(db, role=Role.staff, jurisdiction=other_city)
    hidden = await client.get(
        f"/v1/reports/{report_id}", headers=await login(client, outsider.email)
    )
    assert "contacts" not in hidden.json()

    ticket = await client.get(f"/v1/tickets/{reference}")
    assert ticket.status_code == 200
    for secret in ("robin@example.org", "Robin", "+447700900123", str(citizen.id)):
        assert secret not in ticket.text
    # The reporter and the contact both follow the ticket, once each.
    subs = (
        await db.execute(
            text(
                "SELECT reason, user_id IS NOT NULL, contact_id IS NOT NULL FROM subscription s"
                " JOIN ticket t ON t.id = s.ticket_id WHERE t.reference = :r ORDER BY s.id"
            ),
            {"r": reference},
        )
    ).all()
    assert [tuple(s) for s in subs] == [
        ("reporter", True, False),
        ("reporter", False, True),
        ("reporter", False, True),
    ]


@pytest.mark.usefixtures("pothole")
async def test_contact_without_consent_is_kept_but_not_subscribed(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    created = await post(client, body(contact={"email": "quiet@example.org"}))
    assert created.status_code == 201
    assert (await db.execute(text("SELECT count(*) FROM subscription"))).scalar_one() == 0
    assert (await db.execute(text("SELECT count(*) FROM report_contact"))).scalar_one() == 1


# -- reads, nearby, support -----------------------------------------------------------------------


@pytest.mark.usefixtures("pothole", "streetlight")
async def test_nearby_lists_open_tickets_of_the_service_nearest_first(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    far = (await post(client, body(*offset_lonlat(*CENTER, 80.0, 0.0)))).json()["ticket"][
        "reference"
    ]
    near = (await post(client, body(*offset_lonlat(*CENTER, 40.0, 0.0)))).json()["ticket"][
        "reference"
    ]
    await post(client, {**body(), "service_code": "streetlight"})
    closed = (await post(client, body(*offset_lonlat(*CENTER, -50.0, 0.0)))).json()["ticket"][
        "reference"
    ]
    await db.execute(
        text("UPDATE ticket SET status = 'closed' WHERE reference = :r"), {"r": closed}
    )
    response = await client.get(
        "/v1/tickets/nearby", params={"service_code": "pothole", "lon": CENTER[0], "lat": CENTER[1]}
    )
    assert response.status_code == 200
    found = response.json()
    assert [t["reference"] for t in found] == [near, far]
    assert found[0]["distance_m"] == pytest.approx(40.0, abs=0.5)
    bad = await client.get(
        "/v1/tickets/nearby", params={"service_code": "x", "lon": CENTER[0], "lat": CENTER[1]}
    )
    assert bad.status_code == 422
    too_far = await client.get(
        "/v1/tickets/nearby",
        params={"service_code": "pothole", "lon": CENTER[0], "lat": CENTER[1], "radius_m": 5000},
    )
    assert too_far.status_code == 422


@pytest.mark.usefixtures("pothole")
async def test_support_counts_each_person_once(client: httpx.AsyncClient, db: AsyncSession) -> None:
    reporter = await make_user(db)
    reporter_auth = await login(client, reporter.email)
    reference = (await post(client, body(), headers=reporter_auth)).json()["ticket"]["reference"]
    url = f"/v1/tickets/{reference}/support"

    nobody = await client.post(url)
    assert nobody.status_code == 422
    first = await client.post(url, json={"email": "fan@example.org"})
    assert first.json() == {
        "reference": reference,
        "supporter_count": 1,
        "subscribed": True,
        "already": False,
    }
    again = await client.post(url, json={"email": "FAN@example.org"})
    assert again.json()["already"] is True
    assert again.json()["supporter_count"] == 1
    fan = await make_user(db)
    fan_auth = await login(client, fan.email)
    followed = await client.post(f"/v1/tickets/{reference}/follow", headers=fan_auth)
    assert followed.json()["supporter_count"] == 1
    upgraded = await client.post(url, headers=fan_auth)
    assert upgraded.json()["supporter_count"] == 2
    own = await client.post(url, headers=reporter_auth)
    assert own.json() == {
        "reference": reference,
        "supporter_count": 2,
        "subscribed": True,
        "already": True,
    }
    # Supporting is not reporting.
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 1
    detail = (await client.get(f"/v1/tickets/{reference}")).json()
    assert detail["supporter_count"] == 2
    assert "fan@example.org" not in str(detail)
    await db.execute(
        text("UPDATE ticket SET status = 'fixed' WHERE reference = :r"), {"r": reference}
    )
    late = await client.post(url, json={"email": "late@example.org"})
    assert late.status_code == 409


async def test_unknown_ticket_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/tickets/K-2026-999999")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.usefixtures("pothole")
async def test_discovery_lists_jurisdictions_and_services(client: httpx.AsyncClient) -> None:
    places = (await client.get("/v1/jurisdictions")).json()
    assert "testville" in [p["slug"] for p in places]
    services = (await client.get("/v1/jurisdictions/testville/services")).json()
    assert [s["code"] for s in services] == ["pothole"]
    assert services[0]["duplicate_radius_m"] == 30.0
    assert (await client.get("/v1/jurisdictions/nowhere/services")).status_code == 404


# -- photos ---------------------------------------------------------------------------------------


def multipart(report: dict[str, Any], photos: list[tuple[str, bytes, str]]) -> dict[str, Any]:
    files: list[tuple[str, tuple[str | None, Any, str]]] = [
        ("report", (None, orjson.dumps(report), "application/json"))
    ]
    files += [("photos", (name, data, ctype)) for name, data, ctype in photos]
    return {"files": files}


@pytest.mark.usefixtures("pothole")
async def test_photo_first_report_takes_location_from_exif_and_strips_it(
    client: httpx.AsyncClient, app: FastAPI, db: AsyncSession
) -> None:
    lon, lat = offset_lonlat(*CENTER, 100.0, 100.0)
    upload = jpeg((1200, 900), lon=lon, lat=lat, orientation=6)
    response = await client.post(
        "/v1/reports",
        **multipart({"service_code": "pothole"}, [("pothole.jpg", upload, "image/jpeg")]),
    )
    assert response.status_code == 201, response.text
    report = response.json()["report"]
    assert report["location_source"] == "exif"
    assert report["location"]["lon"] == pytest.approx(lon, abs=1e-6)
    assert report["location"]["lat"] == pytest.approx(lat, abs=1e-6)
    photo = report["photos"][0]
    assert (photo["width"], photo["height"]) == (900, 1200)  # orientation 6 applied
    # Accepted, not processed yet (docs/intake.md, "Photos"): its job makes the files.
    assert photo["status"] == "pending"
    assert await app.state.photos.process_one(db, uuid.UUID(photo["id"])) == "ready"
    stored = await client.get(photo["url"].replace("http://127.0.0.1:8000", ""))
    assert stored.status_code == 200
    assert stored.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(stored.content))
    assert image.size == (900, 1200)
    assert not image.getexif()
    assert "exif" not in image.info
    assert b"KerbCam" not in stored.content
    thumb = await client.get(photo["thumbnail_url"].replace("http://127.0.0.1:8000", ""))
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 400
    cached = await client.get(
        photo["url"].replace("http://127.0.0.1:8000", ""),
        headers={"If-None-Match": stored.headers["etag"]},
    )
    assert cached.status_code == 304
    ticket = (await client.get(f"/v1/tickets/{report['ticket_reference']}")).json()
    assert ticket["reports"][0]["photos"][0]["id"] == photo["id"]
    assert ticket["reports"][0]["photos"][0]["status"] == "ready"


@pytest.mark.usefixtures("pothole")
@pytest.mark.parametrize(
    ("upload", "status", "code"),
    [
        (b"just some text, not a picture", 422, "not_an_image"),
        (jpeg()[:400], 422, "corrupt_image"),
        (image_bytes("GIF"), 415, "unsupported_format"),
        (image_bytes("PNG", (8, 8)), 422, "too_small"),
    ],
)
async def test_bad_photos_are_rejected_and_nothing_is_stored(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Any,
    upload: bytes,
    status: int,
    code: str,
) -> None:
    before = sorted(p for p in settings.media_dir.rglob("*") if p.is_file())
    response = await client.post(
        "/v1/reports",
        **multipart(
            body(), [("good.jpg", jpeg(), "image/jpeg"), ("bad.bin", upload, "image/jpeg")]
        ),
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"] == [
        {"field": "photos[1]", "message": response.json()["errors"][0]["message"], "type": code}
    ]
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 0
    assert sorted(p for p in settings.media_dir.rglob("*") if p.is_file()) == before


@pytest.mark.usefixtures("pothole")
async def test_photo_count_and_size_limits(client: httpx.AsyncClient, settings: Any) -> None:
    many = [
        (f"{i}.jpg", jpeg((32, 32)), "image/jpeg")
        for i in range(settings.max_photos_per_report + 1)
    ]
    response = await client.post("/v1/reports", **multipart(body(), many))
    assert response.status_code == 422
    assert _fields(response) == {"photos"}
    missing = await client.post("/v1/reports", files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))])
    assert missing.status_code == 422
    assert _fields(missing) == {"report"}


@pytest.mark.usefixtures("pothole")
async def test_failed_transaction_leaves_no_photo_files(
    client: httpx.AsyncClient, settings: Any
) -> None:
    before = sorted(p for p in settings.media_dir.rglob("*") if p.is_file())
    # A valid photo but an unknown service: the photo is processed, then the report fails.
    response = await client.post(
        "/v1/reports",
        **multipart({**body(), "service_code": "nope"}, [("a.jpg", jpeg(), "image/jpeg")]),
    )
    assert response.status_code == 422
    assert sorted(p for p in settings.media_dir.rglob("*") if p.is_file()) == before
