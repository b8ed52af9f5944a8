"""Several jurisdictions in one deployment: staff and crews of one never see or change
another's data, on every staff and crew route of the route table.

Two cities, Alpha and Bravo, each with tickets, a crew with a work order, a rule, a template,
an API key and a report with a contact. For every route gated at crew, staff or admin (walked
from the app's own route table, so a new route fails here until it has a case), Alpha's staff
or crew aim a request at Bravo's objects. Each answer must be the refusal the route's style
gives (docs/auth.md, "Several jurisdictions"), must not carry any of Bravo's private markers,
and Bravo's state must be unchanged afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.api_keys import issue_api_key
from app.auth.models import Role
from app.jurisdictions.models import Jurisdiction
from app.main import create_app
from geo.city import make_city
from tests.factories import (
    CITY,
    bearer_headers,
    make_crew,
    make_jurisdiction,
    make_service,
    make_ticket,
    make_user,
)
from tests.test_route_security import _calls, _routes

BRAVO_CITY = make_city(center=(4.8952, 52.3702), seed=7)
# Words only Bravo's private data holds; no answer to Alpha's staff may contain one.
MARKERS = (
    "Bravo night crew",
    "bravo-template-body",
    "bravo-key",
    "bravo@example.org",
    "bravo-dead-letter",
    "bravo-social-post",
)


@dataclass
class World:
    alpha: Jurisdiction
    bravo: Jurisdiction
    staff: dict[str, str]  # Alpha's staff
    crew: dict[str, str]  # a member of Alpha's crew
    alpha_ticket: str
    alpha_crew: int
    alpha_area: int
    alpha_key: str  # an Alpha API key (citizen role, as an Open311 app holds)
    bravo_ticket: str
    bravo_ticket_2: str
    bravo_work_order: str
    bravo_crew: int
    bravo_area: int
    bravo_service: int
    bravo_rule: int
    bravo_template: int
    bravo_key: int
    bravo_report: str
    bravo_notification: int
    bravo_broadcast: str
    bravo_post: int
    bravo_alert: int
    # Alpha's, but another Alpha crew's work order, outside Alpha's crew's territory.
    alpha_elsewhere: str = ""

    def fill(self, path: str) -> str:
        values = {
            "broadcast_id": self.bravo_broadcast,
            "alert_id": str(self.bravo_alert),
            "reference": self.bravo_ticket,
            "crew_id": str(self.bravo_crew),
            "rule_id": str(self.bravo_rule),
            "template_id": str(self.bravo_template),
            "key_id": str(self.bravo_key),
            "notification_id": str(self.bravo_notification),
            "social_post_id": str(self.bravo_post),
            "slug": self.bravo.slug,
            "kind": "district",
            # Valid codes of Bravo's: an invalid one would be a 422 before any check.
            "code": "graffiti" if "/services/" in path else "BRAVO",
        }
        return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


@pytest.fixture
async def world(client: httpx.AsyncClient, db: AsyncSession, settings: Any) -> World:
    alpha = await make_jurisdiction(db, slug="alpha")
    bravo = await make_jurisdiction(db, city=BRAVO_CITY, slug="bravo")
    for city in (alpha, bravo):
        await make_service(db, city, "pothole")
    a_service = await make_service(db, alpha, "graffiti")
    b_service = await make_service(db, bravo, "graffiti")
    a_area = (
        await db.execute(
            text("SELECT id FROM area WHERE jurisdiction_id = :j LIMIT 1"), {"j": alpha.id}
        )
    ).scalar_one()
    b_area = (
        await db.execute(
            text(
                "INSERT INTO area (jurisdiction_id, kind, code, name, geom)"
                " SELECT :j, 'district', 'BRAVO', 'Bravo ward', geom FROM area"
                " WHERE jurisdiction_id = :j ORDER BY id LIMIT 1 RETURNING id"
            ),
            {"j": bravo.id},
        )
    ).scalar_one()
    a_crew = await make_crew(db, alpha, name="Alpha day crew")
    b_crew = await make_crew(db, bravo, name="Bravo night crew")
    crew_member = await make_user(db, role=Role.crew, jurisdiction=alpha, crew=a_crew)
    staff = await make_user(db, role=Role.staff, jurisdiction=alpha)
    await make_user(db, role=Role.crew, jurisdiction=bravo, crew=b_crew, email="bravo@example.org")
    lon, lat = CITY.center
    a_ticket = await make_ticket(db, alpha, a_service, lon, lat, crew=a_crew)
    other_crew = await make_crew(db, alpha, name="Alpha other crew")
    elsewhere = await make_ticket(db, alpha, a_service, lon + 0.002, lat, crew=other_crew)
    b_lon, b_lat = BRAVO_CITY.center
    b_ticket = await make_ticket(db, bravo, b_service, b_lon, b_lat)
    b_ticket_2 = await make_ticket(db, bravo, b_service, b_lon + 0.01, b_lat)
    b_work = await make_ticket(db, bravo, b_service, b_lon, b_lat + 0.01, crew=b_crew)
    rule = (
        await db.execute(
            text(
                "INSERT INTO assignment_rule (jurisdiction_id, area_id, service_id, crew_id)"
                " VALUES (:j, :a, :s, :c) RETURNING id"
            ),
            {"j": bravo.id, "a": b_area, "s": b_service.id, "c": b_crew.id},
        )
    ).scalar_one()
    template = (
        await db.execute(
            text(
                "INSERT INTO response_template (jurisdiction_id, status, language, body)"
                " VALUES (:j, 'fixed', 'en', 'bravo-template-body {reference}') RETURNING id"
            ),
            {"j": bravo.id},
        )
    ).scalar_one()
    b_key = await issue_api_key(db, jurisdiction_id=bravo.id, name="bravo-key", role=Role.staff)
    a_key = await issue_api_key(db, jurisdiction_id=alpha.id, name="alpha-app", role=Role.citizen)
    report = await client.post(
        "/v1/reports",
        json={
            "service_code": "pothole",
            "location": {"lon": b_lon + 0.002, "lat": b_lat},
            "contact": {"email": "bravo@example.org", "updates": True},
        },
    )
    assert report.status_code == 201, report.text
    # A message that gave up, for staff of Bravo to retry.
    notification = (
        await db.execute(
            text(
                "INSERT INTO notification (contact_id, ticket_id, event_kind, channel, status,"
                " last_error) SELECT c.id, :t, 'status_changed', 'email', 'dead',"
                " 'bravo-dead-letter' FROM contact c WHERE c.address = 'bravo@example.org'"
                " RETURNING id"
            ),
            {"t": b_ticket.id},
        )
    ).scalar_one()
    broadcast = (
        await db.execute(
            text(
                "INSERT INTO broadcast (jurisdiction_id, polygon, area_description, headline,"
                " body, event, category, severity, urgency, certainty, language, created_by)"
                " SELECT :j, boundary, 'all of Bravo', 'Bravo notice', 'x', 'x', 'Safety',"
                " 'Minor', 'Expected', 'Likely', 'en', 'test' FROM jurisdiction WHERE id = :j"
                " RETURNING public_id"
            ),
            {"j": bravo.id},
        )
    ).scalar_one()
    # A post addressed to Bravo's account, for its webcare team only.
    post = (
        await db.execute(
            text(
                "INSERT INTO social_post (platform, post_id, account, jurisdiction_id, author_id,"
                " text, raw, posted_at, status) VALUES ('x', 'bravo-1', 'bravo', :j, '42',"
                " 'bravo-social-post', '{}', now(), 'needs_human') RETURNING id"
            ),
            {"j": bravo.id},
        )
    ).scalar_one()
    alert = (
        await db.execute(
            text(
                "INSERT INTO talk_alert (jurisdiction_id, service_id, threshold, radius_m,"
                " centroid, polygon, opened_at, last_signal_at)"
                " SELECT :j, :s, 10, 200, ST_PointOnSurface(boundary),"
                " ST_Buffer(CAST(ST_PointOnSurface(boundary) AS geography), 200)::geometry,"
                " now(), now() FROM jurisdiction WHERE id = :j RETURNING id"
            ),
            {"j": bravo.id, "s": b_service.id},
        )
    ).scalar_one()
    return World(
        alpha=alpha,
        bravo=bravo,
        staff=await bearer_headers(settings, staff),
        crew=await bearer_headers(settings, crew_member),
        alpha_ticket=a_ticket.reference,
        alpha_crew=a_crew.id,
        alpha_area=a_area,
        alpha_key=a_key.secret,
        bravo_ticket=b_ticket.reference,
        bravo_ticket_2=b_ticket_2.reference,
        bravo_work_order=b_work.reference,
        bravo_crew=b_crew.id,
        bravo_area=b_area,
        bravo_service=b_service.id,
        bravo_rule=rule,
        bravo_template=template,
        bravo_key=b_key.api_key.id,
        bravo_report=report.json()["report"]["id"],
        bravo_notification=notification,
        bravo_broadcast=str(broadcast),
        alpha_elsewhere=elsewhere.reference,
        bravo_post=post,
        bravo_alert=alert,
    )


async def bravo_state(db: AsyncSession, bravo: int) -> bytes:
    """Everything of Bravo's that a request could change, in one comparable value."""
    queries = {
        "tickets": "SELECT id, status, priority, crew_id, work_status, merged_into_id, area_id,"
        " report_count, updated_at FROM ticket WHERE jurisdiction_id = :j ORDER BY id",
        "events": "SELECT count(*) FROM ticket_event e JOIN ticket t ON t.id = e.ticket_id"
        " WHERE t.jurisdiction_id = :j",
        "reports": "SELECT id, ticket_id FROM report WHERE jurisdiction_id = :j ORDER BY id",
        "crews": "SELECT id, name, active FROM crew WHERE jurisdiction_id = :j ORDER BY id",
        "territories": "SELECT ca.crew_id, ca.area_id FROM crew_area ca JOIN crew c"
        " ON c.id = ca.crew_id WHERE c.jurisdiction_id = :j ORDER BY 1, 2",
        "rules": "SELECT id, area_id, service_id, crew_id FROM assignment_rule"
        " WHERE jurisdiction_id = :j ORDER BY id",
        "templates": "SELECT id, body FROM response_template WHERE jurisdiction_id = :j",
        "keys": "SELECT id, revoked_at FROM api_key WHERE jurisdiction_id = :j ORDER BY id",
        "areas": "SELECT id, code, name, ST_AsEWKB(geom) FROM area WHERE jurisdiction_id = :j",
        "services": "SELECT code, active, names FROM service WHERE jurisdiction_id = :j",
        "jurisdiction": "SELECT name, timezone FROM jurisdiction WHERE id = :j",
        "notifications": "SELECT n.id, n.status, n.attempts FROM notification n JOIN ticket t"
        " ON t.id = n.ticket_id WHERE t.jurisdiction_id = :j ORDER BY n.id",
        "broadcasts": "SELECT id, status FROM broadcast WHERE jurisdiction_id = :j ORDER BY id",
        "social": "SELECT id, status, assigned_to, answered_at, closed_at FROM social_post"
        " WHERE jurisdiction_id = :j ORDER BY id",
        "alerts": "SELECT id, status, acknowledged_at FROM talk_alert WHERE jurisdiction_id = :j",
    }
    state = {}
    for name, sql in queries.items():
        rows = await db.execute(text(sql), {"j": bravo})
        state[name] = [[str(v) for v in row] for row in rows]
    return orjson.dumps(state)


# -- the cases: one per gated route ------------------------------------------------------------

# A request aimed at Bravo: who sends it (Alpha's "staff" or "crew"), and its parts.
Case = Callable[[World], dict[str, Any]]
REFUSED = "refused"  # 403 or 404, as the route's style is (see ANSWERS)
HIDDEN = "hidden"  # 200, with none of Bravo's data


def at(path: str, **kw: Any) -> Case:
    return lambda w: {"url": w.fill(path), **kw}


def body(path: str, make: Callable[[World], Any], **kw: Any) -> Case:
    return lambda w: {"url": w.fill(path), "json": make(w), **kw}


def _step(step: str) -> Case:
    def case(w: World) -> dict[str, Any]:
        needs_text = step in ("done", "unable")
        return {
            "url": f"/v1/workorders/{w.bravo_work_order}/{step}",
            "json": {"note": "x", "reason": "x"} if needs_text else {},
        }

    return case


# (method, path) → (who, what, expected). Expected statuses follow docs/auth.md: a Bravo
# object addressed in the URL by a private id (crew, rule, template, key, work order) is 404,
# as if it did not exist; a public one (a ticket by reference, a jurisdiction by slug) is
# 403; a Bravo object named in a body is refused like an unknown one (404 or 422).
CASES: dict[tuple[str, str], tuple[str, Case, set[int] | str]] = {
    ("DELETE", "/v1/api-keys/{key_id}"): ("staff", at("/v1/api-keys/{key_id}"), {404}),
    ("GET", "/v1/api-keys"): ("staff", at("/v1/api-keys"), HIDDEN),
    ("POST", "/v1/api-keys"): (
        "staff",
        body("/v1/api-keys", lambda w: {"name": "x", "jurisdiction_id": w.bravo.id}),
        {403},
    ),
    ("DELETE", "/v1/assignment-rules/{rule_id}"): (
        "staff",
        at("/v1/assignment-rules/{rule_id}"),
        {404},
    ),
    ("GET", "/v1/assignment-rules"): ("staff", at("/v1/assignment-rules"), HIDDEN),
    ("PATCH", "/v1/assignment-rules/{rule_id}"): (
        "staff",
        body("/v1/assignment-rules/{rule_id}", lambda w: {"crew_id": w.alpha_crew}),
        {404},
    ),
    ("POST", "/v1/assignment-rules"): (
        "staff",
        body(
            "/v1/assignment-rules",
            lambda w: {"crew_id": w.bravo_crew, "area_id": w.bravo_area},
        ),
        {404, 422},
    ),
    ("GET", "/v1/areas"): ("staff", at("/v1/areas"), HIDDEN),
    ("GET", "/v1/social/posts"): ("staff", at("/v1/social/posts"), HIDDEN),
    ("POST", "/v1/social/posts/{social_post_id}/assign"): (
        "staff",
        body("/v1/social/posts/{social_post_id}/assign", lambda w: {"user_id": None}),
        {404},
    ),
    ("POST", "/v1/social/posts/{social_post_id}/answer"): (
        "staff",
        body("/v1/social/posts/{social_post_id}/answer", lambda w: {"text": "x"}),
        {404},
    ),
    ("POST", "/v1/social/posts/{social_post_id}/close"): (
        "staff",
        body("/v1/social/posts/{social_post_id}/close", lambda w: {"reason": "x"}),
        {404},
    ),
    ("POST", "/v1/social/posts/{social_post_id}/suggestion"): (
        "staff",
        body("/v1/social/posts/{social_post_id}/suggestion", lambda w: {"decision": "new"}),
        {404},
    ),
    ("GET", "/v1/crews"): ("staff", at("/v1/crews"), HIDDEN),
    ("POST", "/v1/crews"): (
        "staff",
        body("/v1/crews", lambda w: {"name": "Mine", "area_ids": [w.bravo_area]}),
        {404, 422},
    ),
    ("GET", "/v1/crews/{crew_id}"): ("staff", at("/v1/crews/{crew_id}"), {404}),
    ("PATCH", "/v1/crews/{crew_id}"): (
        "staff",
        body("/v1/crews/{crew_id}", lambda w: {"active": False}),
        {404},
    ),
    ("DELETE", "/v1/crews/{crew_id}"): ("staff", at("/v1/crews/{crew_id}"), {404}),
    ("GET", "/v1/crews/{crew_id}/members"): ("staff", at("/v1/crews/{crew_id}/members"), {404}),
    ("PUT", "/v1/crews/{crew_id}/areas"): (
        "staff",
        body("/v1/crews/{crew_id}/areas", lambda w: {"area_ids": []}),
        {404},
    ),
    ("GET", "/v1/response-templates"): ("staff", at("/v1/response-templates"), HIDDEN),
    ("PUT", "/v1/response-templates"): (
        "staff",
        body(
            "/v1/response-templates",
            lambda w: {"status": "fixed", "language": "en", "body": "x"},
            params={"jurisdiction_id": "{bravo}"},
        ),
        {403},
    ),
    ("DELETE", "/v1/response-templates/{template_id}"): (
        "staff",
        at("/v1/response-templates/{template_id}"),
        {404},
    ),
    ("POST", "/v1/imports"): (
        "staff",
        lambda w: {
            "url": "/v1/imports",
            "params": {"jurisdiction": "bravo"},
            "content": b"service,lon,lat\npothole,4.8952,52.3702\n",
            "headers": {"Content-Type": "text/csv"},
        },
        {403},
    ),
    ("GET", "/v1/tickets/{reference}/internal"): (
        "staff",
        at("/v1/tickets/{reference}/internal"),
        {403},
    ),
    ("POST", "/v1/tickets/{reference}/assign"): (
        "staff",
        body("/v1/tickets/{reference}/assign", lambda w: {"crew_id": w.alpha_crew}),
        {403},
    ),
    ("POST", "/v1/tickets/{reference}/comments"): (
        "staff",
        body("/v1/tickets/{reference}/comments", lambda w: {"note": "hello"}),
        {403},
    ),
    ("POST", "/v1/tickets/{reference}/information-request"): (
        "staff",
        body("/v1/tickets/{reference}/information-request", lambda w: {"question": "Where?"}),
        {403},
    ),
    ("POST", "/v1/tickets/{reference}/merge"): (
        "staff",
        body("/v1/tickets/{reference}/merge", lambda w: {"into": w.bravo_ticket_2}),
        {403},
    ),
    ("POST", "/v1/tickets/{reference}/priority"): (
        "staff",
        body("/v1/tickets/{reference}/priority", lambda w: {"priority": 1}),
        {403},
    ),
    ("POST", "/v1/tickets/{reference}/split"): (
        "staff",
        body("/v1/tickets/{reference}/split", lambda w: {"report_id": w.bravo_report}),
        {403},
    ),
    ("POST", "/v1/tickets/{reference}/status"): (
        "staff",
        body("/v1/tickets/{reference}/status", lambda w: {"status": "acknowledged"}),
        {403},
    ),
    ("GET", "/v1/notifications"): ("staff", at("/v1/notifications"), HIDDEN),
    ("POST", "/v1/notifications/{notification_id}/retry"): (
        "staff",
        at("/v1/notifications/{notification_id}/retry"),
        {404},
    ),
    ("GET", "/v1/demo/outbox"): ("staff", at("/v1/demo/outbox"), HIDDEN),
    ("POST", "/v1/broadcasts"): (
        "staff",
        body(
            "/v1/broadcasts",
            lambda w: {
                "jurisdiction": w.bravo.slug,
                "polygon": {
                    "type": "Polygon",
                    "coordinates": [[[4.8, 52.3], [5.0, 52.3], [5.0, 52.45], [4.8, 52.3]]],
                },
                "area_description": "x",
                "headline": "x",
                "body": "x",
            },
        ),
        {403},
    ),
    ("GET", "/v1/broadcasts/{broadcast_id}"): ("staff", at("/v1/broadcasts/{broadcast_id}"), {404}),
    ("GET", "/v1/alerts"): ("staff", at("/v1/alerts"), HIDDEN),
    ("GET", "/v1/alerts/{alert_id}"): ("staff", at("/v1/alerts/{alert_id}"), {404}),
    ("POST", "/v1/alerts/{alert_id}/acknowledge"): (
        "staff",
        at("/v1/alerts/{alert_id}/acknowledge"),
        {404},
    ),
    ("GET", "/v1/talk/trends"): (
        "staff",
        at("/v1/talk/trends", params={"jurisdiction": "bravo"}),
        {403},
    ),
    ("GET", "/v1/talk/sentiment"): (
        "staff",
        at("/v1/talk/sentiment", params={"jurisdiction": "bravo"}),
        {403},
    ),
    ("GET", "/v1/talk/answering"): (
        "staff",
        at("/v1/talk/answering", params={"jurisdiction": "bravo"}),
        {403},
    ),
    ("GET", "/v1/workorders"): ("crew", at("/v1/workorders"), HIDDEN),
    ("POST", "/v1/workorders/search"): (
        "crew",
        lambda w: {
            "url": "/v1/workorders/search",
            "json": {
                "type": "Polygon",
                "coordinates": [
                    [[4.8, 52.3], [5.0, 52.3], [5.0, 52.45], [4.8, 52.45], [4.8, 52.3]]
                ],
            },
        },
        HIDDEN,
    ),
    ("GET", "/v1/workorders/route"): (
        "crew",
        lambda w: {"url": "/v1/workorders/route", "params": {"start": "4.8952,52.3702"}},
        HIDDEN,
    ),
    ("GET", "/v1/workorders/{reference}"): (
        "crew",
        lambda w: {"url": f"/v1/workorders/{w.bravo_work_order}"},
        {404},
    ),
    **{
        ("POST", f"/v1/workorders/{{reference}}/{step}"): ("crew", _step(step), {404})
        for step in ("accept", "en-route", "on-site", "done", "unable")
    },
    # The admin API: Bravo's slug in the URL.
    ("GET", "/v1/admin/jurisdictions"): ("staff", at("/v1/admin/jurisdictions"), HIDDEN),
    ("POST", "/v1/admin/jurisdictions"): (
        "staff",
        body("/v1/admin/jurisdictions", lambda w: {}),
        {403},
    ),
    **{
        (method, path): ("staff", body(path, lambda w: {}), {403})
        for method, path in (
            ("GET", "/v1/admin/jurisdictions/{slug}"),
            ("PUT", "/v1/admin/jurisdictions/{slug}"),
            ("GET", "/v1/admin/jurisdictions/{slug}/city"),
            ("PUT", "/v1/admin/jurisdictions/{slug}/city"),
            ("GET", "/v1/admin/jurisdictions/{slug}/areas"),
            ("GET", "/v1/admin/jurisdictions/{slug}/areas/{kind}/{code}"),
            ("PUT", "/v1/admin/jurisdictions/{slug}/areas/{kind}/{code}"),
            ("DELETE", "/v1/admin/jurisdictions/{slug}/areas/{kind}/{code}"),
            ("GET", "/v1/admin/jurisdictions/{slug}/services"),
            ("POST", "/v1/admin/jurisdictions/{slug}/services"),
            ("GET", "/v1/admin/jurisdictions/{slug}/services/{code}"),
            ("PUT", "/v1/admin/jurisdictions/{slug}/services/{code}"),
            ("DELETE", "/v1/admin/jurisdictions/{slug}/services/{code}"),
        )
    },
}
# Routes gated at crew or above that are about the caller, not a jurisdiction.
ABOUT_THE_CALLER: dict[tuple[str, str], str] = {}

_GATES = {"require_crew", "require_staff", "require_admin"}


def _gated_routes() -> set[tuple[str, str]]:
    return {
        (method, path)
        for method, path, route in _routes(create_app())
        if any(getattr(call, "__name__", "") in _GATES for call in _calls(route))
    }


def test_every_crew_and_staff_route_has_an_isolation_case() -> None:
    gated = _gated_routes()
    assert gated - set(CASES) - set(ABOUT_THE_CALLER) == set(), "add a case for these routes"
    assert set(CASES) - gated == set(), "these cases name routes that are gone or ungated"


def _filled(value: Any, w: World) -> Any:
    if isinstance(value, dict):
        return {k: _filled(v, w) for k, v in value.items()}
    if value == "{bravo}":
        return str(w.bravo.id)
    return value


@pytest.mark.parametrize(("method", "path"), sorted(CASES))
async def test_alphas_staff_and_crew_never_see_or_change_bravo(
    client: httpx.AsyncClient, db: AsyncSession, world: World, method: str, path: str
) -> None:
    who, case, expected = CASES[(method, path)]
    request = _filled(case(world), world)
    headers = {**(world.staff if who == "staff" else world.crew), **request.pop("headers", {})}
    before = await bravo_state(db, world.bravo.id)
    response = await client.request(method, request.pop("url"), headers=headers, **request)
    if expected == HIDDEN:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code in expected, response.text
        assert response.headers["content-type"] == "application/problem+json"
    # A list must not hold Bravo's tickets; a refusal may echo the reference it was sent.
    markers = (
        (*MARKERS, world.bravo_ticket, world.bravo_work_order) if expected == HIDDEN else MARKERS
    )
    for marker in markers:
        assert marker not in response.text, marker
    assert await bravo_state(db, world.bravo.id) == before


async def test_list_routes_answer_403_when_staff_name_another_jurisdiction(
    client: httpx.AsyncClient, world: World
) -> None:
    for url in (
        "/v1/api-keys",
        "/v1/assignment-rules",
        "/v1/areas",
        "/v1/crews",
        "/v1/response-templates",
        "/v1/workorders",
    ):
        response = await client.get(
            url, params={"jurisdiction_id": world.bravo.id}, headers=world.staff
        )
        assert response.status_code == 403, (url, response.text)


async def test_their_own_objects_may_not_point_at_another_jurisdictions(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    """Alpha's staff acting on Alpha's own ticket, crew or rule, naming Bravo's objects."""
    before = await bravo_state(db, world.bravo.id)
    attempts = [
        ("POST", f"/v1/tickets/{world.alpha_ticket}/assign", {"crew_id": world.bravo_crew}),
        ("POST", f"/v1/tickets/{world.alpha_ticket}/merge", {"into": world.bravo_ticket}),
        ("POST", f"/v1/tickets/{world.alpha_ticket}/split", {"report_id": world.bravo_report}),
        ("PUT", f"/v1/crews/{world.alpha_crew}/areas", {"area_ids": [world.bravo_area]}),
        (
            "POST",
            "/v1/assignment-rules",
            {"crew_id": world.alpha_crew, "area_id": world.bravo_area},
        ),
        (
            "POST",
            "/v1/assignment-rules",
            {"crew_id": world.alpha_crew, "service_id": world.bravo_service},
        ),
    ]
    for method, url, payload in attempts:
        response = await client.request(method, url, json=payload, headers=world.staff)
        assert response.status_code in (403, 404, 409, 422), (url, payload, response.text)
    for url, params in (
        ("/v1/workorders", {"crew": world.bravo_crew}),
        ("/v1/workorders/route", {"crew": world.bravo_crew, "start": "4.8952,52.3702"}),
    ):
        response = await client.get(url, params=params, headers=world.staff)
        assert response.status_code in (403, 404), (url, response.text)
    # An import into their own city with a row in Bravo's: the row is refused, not filed there.
    lon, lat = BRAVO_CITY.center
    imported = await client.post(
        "/v1/imports",
        content=f"service_code,lon,lat,reported_at\npothole,{lon},{lat},2026-01-05T10:00:00Z\n",
        headers={**world.staff, "Content-Type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["rejected"]["by_reason"] == {"outside_jurisdiction": 1}
    assert await bravo_state(db, world.bravo.id) == before


async def test_staff_of_one_city_see_another_citys_tickets_and_reports_as_the_public_does(
    client: httpx.AsyncClient, world: World
) -> None:
    report = await client.get(f"/v1/reports/{world.bravo_report}", headers=world.staff)
    assert report.status_code == 200
    assert "bravo@example.org" not in report.text
    mine = await client.get("/v1/tickets.geojson", headers=world.staff)
    public = await client.get("/v1/tickets.geojson")
    theirs = [
        f for f in mine.json()["features"] if f["properties"]["reference"] == world.bravo_ticket
    ]
    seen_by_public = [
        f for f in public.json()["features"] if f["properties"]["reference"] == world.bravo_ticket
    ]
    # Staff maps show their own city only; another's tickets at most as the public sees them.
    assert seen_by_public
    assert theirs in ([], seen_by_public)


async def test_references_are_unique_across_jurisdictions_with_the_same_prefix(
    client: httpx.AsyncClient, world: World
) -> None:
    assert world.alpha.reference_prefix == world.bravo.reference_prefix
    references = []
    for city in (CITY, BRAVO_CITY):
        lon, lat = city.center
        filed = await client.post(
            "/v1/reports",
            json={"service_code": "graffiti", "location": {"lon": lon + 0.003, "lat": lat}},
        )
        assert filed.status_code == 201, filed.text
        references.append(filed.json()["ticket"]["reference"])
    assert len(set(references)) == 2


async def test_an_api_key_files_and_reads_in_its_own_jurisdiction_only(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    key = {"X-API-Key": world.alpha_key}
    lon, lat = BRAVO_CITY.center
    before = await bravo_state(db, world.bravo.id)
    elsewhere = await client.post(
        "/v1/reports",
        json={"service_code": "pothole", "location": {"lon": lon + 0.004, "lat": lat}},
        headers=key,
    )
    assert elsewhere.status_code == 403, elsewhere.text
    assert elsewhere.headers["content-type"] == "application/problem+json"
    assert await bravo_state(db, world.bravo.id) == before
    home_lon, home_lat = CITY.center
    home = await client.post(
        "/v1/reports",
        json={"service_code": "pothole", "location": {"lon": home_lon + 0.004, "lat": home_lat}},
        headers=key,
    )
    assert home.status_code == 201, home.text
    report = await client.get(f"/v1/reports/{world.bravo_report}", headers=key)
    assert "bravo@example.org" not in report.text


async def test_an_open311_key_files_in_its_own_jurisdiction_only(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    lon, lat = BRAVO_CITY.center
    before = await bravo_state(db, world.bravo.id)
    base = {"api_key": world.alpha_key, "service_code": "pothole"}
    for extra in (
        {"jurisdiction_id": world.bravo.slug, "lat": lat, "long": lon + 0.004},
        {"lat": lat, "long": lon + 0.004},  # Bravo's street, the key's own city by default
    ):
        refused = await client.post("/open311/v2/requests.json", data={**base, **extra})
        assert refused.status_code in (400, 403), refused.text
        assert refused.headers["content-type"] == "application/json; charset=utf-8"
        assert refused.json()[0]["code"] == refused.status_code
    assert await bravo_state(db, world.bravo.id) == before
    home_lon, home_lat = CITY.center
    home = await client.post(
        "/open311/v2/requests.json",
        data={**base, "lat": home_lat, "long": home_lon + 0.004},
    )
    assert home.status_code == 200, home.text
    listed = await client.get(
        "/open311/v2/requests.json",
        params={"jurisdiction_id": world.alpha.slug, "extensions": "true"},
    )
    assert listed.status_code == 200
    for marker in (*MARKERS, world.bravo_ticket):
        assert marker not in listed.text, marker


async def test_an_open311_key_comments_on_its_own_jurisdictions_tickets_only(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    before = await bravo_state(db, world.bravo.id)
    update = {
        "api_key": world.alpha_key,
        "service_request_id": world.bravo_ticket,
        "update_id": "77",
        "status": "CLOSED",
        "updated_datetime": "2026-12-04T10:00:00Z",
        "description": "Fixed, close it",
    }
    for extra in ({}, {"jurisdiction_id": world.bravo.slug}):
        refused = await client.post(
            "/open311/v2/servicerequestupdates.json", data={**update, **extra}
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()[0]["code"] == 403
    assert await bravo_state(db, world.bravo.id) == before


async def test_staff_report_in_another_city_as_anyone_does_without_staffs_trust(
    client: httpx.AsyncClient, world: World
) -> None:
    long_ago = (datetime.now(UTC) - timedelta(days=20)).isoformat()
    for city, expected in ((CITY, 201), (BRAVO_CITY, 422)):
        lon, lat = city.center
        filed = await client.post(
            "/v1/reports",
            json={
                "service_code": "pothole",
                "location": {"lon": lon - 0.004, "lat": lat},
                "reported_at": long_ago,
            },
            headers=world.staff,
        )
        assert filed.status_code == expected, filed.text
    assert "7 days" in filed.text


# -- crews: their territory only -----------------------------------------------------------------


def _crew_routes() -> list[tuple[str, str]]:
    return sorted(
        (method, path)
        for method, path, route in _routes(create_app())
        if "require_crew" in {getattr(call, "__name__", "") for call in _calls(route)}
    )


async def _ticket_state(db: AsyncSession, reference: str) -> list[str]:
    row = (
        await db.execute(
            text(
                "SELECT t.status, t.work_status, t.crew_id, t.priority,"
                " (SELECT count(*) FROM ticket_event e WHERE e.ticket_id = t.id)"
                " FROM ticket t WHERE t.reference = :r"
            ),
            {"r": reference},
        )
    ).one()
    return [str(v) for v in row]


def test_every_crew_route_is_in_the_territory_matrix() -> None:
    """Crew-gated routes come from the route table; each needs a case in CASES (above)."""
    routes = _crew_routes()
    assert len(routes) >= 10
    assert set(routes) - set(CASES) == set()


@pytest.mark.parametrize(("method", "path"), _crew_routes())
async def test_a_crew_sees_and_changes_only_its_territory(
    client: httpx.AsyncClient, db: AsyncSession, world: World, method: str, path: str
) -> None:
    """Alpha's crew aims every crew route at a work order of its own city that another crew
    holds, outside its territory (``app.crews.sql.territory_sql``): lists leave it out, the
    rest refuse it, and it stays as it was."""
    _who, case, expected = CASES[(method, path)]
    target = world.alpha_elsewhere
    aimed = replace(world, bravo_ticket=target, bravo_work_order=target, bravo_ticket_2=target)
    request = _filled(case(aimed), aimed)
    headers = {**world.crew, **request.pop("headers", {})}
    before = await _ticket_state(db, target)
    response = await client.request(method, request.pop("url"), headers=headers, **request)
    if expected == HIDDEN:
        assert response.status_code == 200, response.text
        assert target not in response.text
    else:
        assert response.status_code in (403, 404), response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert await _ticket_state(db, target) == before


async def test_a_crews_list_shows_its_own_work_order_and_not_its_neighbours(
    client: httpx.AsyncClient, world: World
) -> None:
    """The positive side of the territory matrix above: the list the crew gets is not empty."""
    listed = await client.get("/v1/workorders", headers=world.crew)
    assert listed.status_code == 200, listed.text
    assert world.alpha_ticket in listed.text
    assert world.alpha_elsewhere not in listed.text
    own = await client.get(f"/v1/workorders/{world.alpha_ticket}", headers=world.crew)
    assert own.status_code == 200, own.text
