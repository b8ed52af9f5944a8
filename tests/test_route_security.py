"""The role matrix, generated from the route table: every route either is deliberately public
or answers 401 to anonymous callers, and 403 to callers whose role ranks below its gate.

A new route must take a side: a role gate (``CurrentPrincipal`` and stronger, which the
walk below finds in its dependencies), or a place in ``PUBLIC`` with the reason it is open.
Forgetting both fails this test, so no staff or crew route can ship unguarded. Tenants
(staff only their jurisdiction, crews only their territory) are checked route by route in
``tests/test_jurisdiction_isolation.py``, on the same walk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.api_keys import issue_api_key
from app.auth.models import ROLE_RANK, Role
from app.auth.principal import get_current_principal
from app.main import create_app
from tests.factories import bearer_headers, make_crew, make_jurisdiction, make_user

# (method, path) open to anyone, and why.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "load balancer probe",
    ("GET", "/readyz"): "load balancer probe",
    ("GET", "/v1/jurisdictions"): "what a city takes: apps read it before reporting",
    ("GET", "/v1/jurisdictions/{slug}/services"): "the same, per city",
    ("POST", "/v1/reports"): "anonymous reports, where the city allows them",
    ("GET", "/v1/reports/{report_id}"): "public view; contacts only for reporter and staff",
    ("GET", "/v1/tickets/nearby"): '"already reported?" before submitting',
    ("GET", "/v1/tickets/{reference}"): "tickets are public (no personal data)",
    ("POST", "/v1/tickets/{reference}/support"): '"me too" without an account',
    ("POST", "/v1/tickets/{reference}/follow"): "follow by e-mail without an account",
    ("POST", "/v1/tickets/{reference}/information"): "a reporter's answer: their account or"
    " the signed link of the message that asked (checked in the handler)",
    ("GET", "/v1/tickets/{reference}/information"): "the page behind a question's signed"
    " answer link",
    ("POST", "/v1/tickets/{reference}/information/form"): "that page's form, signed the same",
    ("GET", "/v1/contacts/verify"): "the page behind the link mailed to an address",
    ("POST", "/v1/contacts/verify"): "the token mailed to the address is the proof",
    ("GET", "/v1/notifications/{notification_id}/unsubscribe"): "the link in every message",
    ("GET", "/v1/broadcasts/{broadcast_id}.cap"): "public alerts (CAP 1.2)",
    ("GET", "/v1/broadcasts.cap"): "public alerts feed",
    ("POST", "/v1/notifications/{notification_id}/unsubscribe"): "one-click (RFC 8058), signed",
    ("GET", "/v1/satisfaction/{notification_id}"): "the fix message's signed link: two buttons",
    ("POST", "/v1/satisfaction/{notification_id}"): '"was it fixed?" answered, signed',
    ("GET", "/v1/photos/{photo_id}.jpg"): "stripped photos behind random ids",
    ("GET", "/v1/social/x/webhook"): "X's CRC challenge, answered with the app's secret",
    ("POST", "/v1/social/x/webhook"): "X's deliveries, signed over the raw body",
    ("GET", "/demo/x/2/users/{user_id}/mentions"): "the demo's own X (404 in production)",
    ("GET", "/demo/mastodon/api/v1/notifications"): "the demo's own Mastodon (404 in production)",
    ("GET", "/v1/social/facebook/webhook"): "Meta's subscription check (our verify token)",
    ("POST", "/v1/social/facebook/webhook"): "Facebook deliveries, signed over the raw body",
    ("GET", "/v1/social/whatsapp/webhook"): "Meta's subscription check (our verify token)",
    ("POST", "/v1/social/whatsapp/webhook"): "WhatsApp deliveries, signed over the raw body",
    ("GET", "/v1/photos/{photo_id}/thumbnail.jpg"): "the same, small",
    ("GET", "/v1/tickets.geojson"): "open data; staff see more when signed in",
    ("GET", "/v1/tickets/clusters"): "open data",
    ("GET", "/v1/tiles/{z}/{x}/{y}.mvt"): "open data",
    ("GET", "/v1/tiles.json"): "open data",
    ("GET", "/v1/areas.geojson"): "district outlines",
    ("GET", "/v1/stats"): "transparency",
    ("GET", "/v1/export/tickets.csv"): "open data",
    ("GET", "/v1/export/tickets.geojson"): "open data",
    ("GET", "/v1/ogc"): "OGC API - Features, open data",
    ("GET", "/v1/ogc/conformance"): "OGC API - Features",
    ("GET", "/v1/ogc/collections"): "OGC API - Features",
    ("GET", "/v1/ogc/collections/{collection_id}"): "OGC API - Features",
    ("GET", "/v1/ogc/collections/{collection_id}/items"): "OGC API - Features",
    ("GET", "/v1/ogc/collections/{collection_id}/items/{feature_id}"): "OGC API - Features",
    ("GET", "/maps"): "the public dashboard page",
    ("GET", "/maps/static/{name}"): "its bundled scripts and styles",
    ("GET", "/maps/config.json"): "its settings (the basemap style)",
    ("GET", "/"): "the landing page",
    ("GET", "/docs"): "API documentation",
    ("GET", "/docs/oauth2-redirect"): "Swagger UI's sign-in return page",
    ("GET", "/redoc"): "API documentation",
    ("GET", "/static/docs/{name}"): "the documentation's bundled scripts and styles",
}
# Open311 GeoReport v2: reads are public by the spec (public fields only); POST requests
# checks its api_key itself and answers Open311's 403, not 401, without one.
for _suffix in (".json", ".xml", ""):
    for _path, _why in (
        ("discovery", "Open311 discovery"),
        ("services", "Open311 service list"),
        ("services/{service_code}", "Open311 service definition"),
        ("requests", "Open311 requests (public fields only)"),
        ("requests/{service_request_id}", "Open311 request (public fields only)"),
        ("tokens/{token}", "Open311 token lookup"),
        ("servicerequestupdates", "FixMyStreet status updates (public timeline)"),
    ):
        PUBLIC[("GET", f"/open311/v2/{_path}{_suffix}")] = _why
    PUBLIC[("POST", f"/open311/v2/requests{_suffix}")] = "api_key checked by the route (403)"
    PUBLIC[("POST", f"/open311/v2/servicerequestupdates{_suffix}")] = (
        "api_key checked by the route (403)"
    )
PUBLIC[("GET", "/open311/v2")] = "Open311 discovery at the base URL"
# fastapi-users' own routers guard themselves (sign-up and sign-in are open by nature).
FASTAPI_USERS = re.compile(r"^/v1/(auth|users)/")

_PLACEHOLDERS = {
    "reference": "K-2026-000001",
    "report_id": "00000000-0000-4000-8000-000000000000",
    "photo_id": "00000000-0000-4000-8000-000000000000",
}


def _routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, APIRoute]]:
        for route in routes:
            if hasattr(route, "original_router"):  # an included router (FastAPI >= 0.120)
                context = route.include_context
                yield from walk(route.original_router.routes, prefix + context.prefix)
            elif isinstance(route, APIRoute):
                yield prefix + route.path, route

    for path, route in walk(list(app.routes), ""):
        for method in sorted(route.methods):
            yield method, path, route


def _calls(route: APIRoute) -> set[Callable[..., Any]]:
    found: set[Callable[..., Any]] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        if dependency.call is not None:
            found.add(dependency.call)
        stack.extend(dependency.dependencies)
    return found


ROUTES = sorted((m, p) for m, p, _ in _routes(create_app()) if not FASTAPI_USERS.match(p))


def test_every_route_is_either_guarded_or_deliberately_public() -> None:
    guarded = {
        (m, p) for m, p, route in _routes(create_app()) if get_current_principal in _calls(route)
    }
    unguarded = {(m, p) for m, p in ROUTES if (m, p) not in guarded}
    assert unguarded - set(PUBLIC) == set(), "guard these routes or list them in PUBLIC"
    assert set(PUBLIC) - unguarded == set(), "PUBLIC lists routes that no longer exist/are open"


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r not in PUBLIC])
async def test_guarded_routes_answer_401_problem_to_anonymous_callers(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    url = re.sub(r"\{(\w+)\}", lambda m: _PLACEHOLDERS.get(m.group(1), "1"), path)
    response = await client.request(method, url, json={})
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"


def _gate_names(route: APIRoute) -> set[str]:
    return {getattr(call, "__name__", "") for call in _calls(route)}


def test_the_admin_api_reads_for_staff_and_writes_for_admins_only() -> None:
    """Staff read their own jurisdiction's configuration; only admins change any."""
    admin_routes = [
        (m, p, route) for m, p, route in _routes(create_app()) if p.startswith("/v1/admin/")
    ]
    assert len(admin_routes) >= 15
    for method, path, route in admin_routes:
        gates = _gate_names(route)
        wanted = "require_staff" if method == "GET" else "require_admin"
        assert wanted in gates, (method, path, gates)


def required_role(route: APIRoute) -> Role | None:
    """The lowest role a route lets in (``None``: public), from the gates it depends on."""
    names = _gate_names(route)
    for role in (Role.admin, Role.staff, Role.crew, Role.citizen):
        if f"require_{role}" in names:
            return role
    return Role.citizen if get_current_principal in _calls(route) else None


_GATED = sorted(
    (m, p, role)
    for m, p, route in _routes(create_app())
    if not FASTAPI_USERS.match(p) and (role := required_role(route)) not in (None, Role.citizen)
)


def test_the_matrix_covers_every_gate() -> None:
    roles = {role for _, _, role in _GATED}
    assert roles == {Role.crew, Role.staff, Role.admin}
    assert len(_GATED) >= 50


async def test_gated_routes_answer_403_to_every_role_below_their_gate(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    """People and API keys of each lower role (keys are never admin, so a staff key meets
    every admin route), in the route's own city: one city for the whole matrix (made once,
    it is most of the cost)."""
    settings = app.state.settings
    city = await make_jurisdiction(db)
    crew = await make_crew(db, city)
    people: dict[Role, list[tuple[str, dict[str, str]]]] = {}
    for role in (Role.citizen, Role.crew, Role.staff):
        user = await make_user(
            db, role=role, jurisdiction=city, crew=crew if role == Role.crew else None
        )
        key = await issue_api_key(db, jurisdiction_id=city.id, name=f"k-{role}", role=role)
        people[role] = [
            (f"user {role}", await bearer_headers(settings, user)),
            (f"api key {role}", {"X-API-Key": key.secret}),
        ]
    violations = []
    calls = 0
    for method, path, gate in _GATED:
        url = re.sub(r"\{(\w+)\}", lambda m: _PLACEHOLDERS.get(m.group(1), "1"), path)
        for role, callers in people.items():
            if ROLE_RANK[role] >= ROLE_RANK[gate]:
                continue
            for who, headers in callers:
                response = await client.request(method, url, json={}, headers=headers)
                calls += 1
                if (
                    response.status_code != 403
                    or response.headers["content-type"] != "application/problem+json"
                ):
                    violations.append((method, path, who, response.status_code))
    assert violations == []
    assert calls >= 150
