"""Every route either is deliberately public or answers 401 to anonymous callers.

A new route must take a side: a role gate (``CurrentPrincipal`` and stronger, which the
walk below finds in its dependencies), or a place in ``PUBLIC`` with the reason it is open.
Forgetting both fails this test, so no staff or crew route can ship unguarded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.auth.principal import get_current_principal
from app.main import create_app

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
    ("GET", "/v1/photos/{photo_id}.jpg"): "stripped photos behind random ids",
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
