"""The contract the OpenAPI document states (app/core/contract.py): every error answer of
every operation is documented as a problem, from what the route declares, for routes written
by people who never heard of the mechanism; and ``Allow`` on a 405 names the resource's
methods. schemathesis holds the live API to it (tests/test_contract_fuzz.py)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from app.auth.principal import OptionalPrincipal, StaffPrincipal
from app.cities.schema import format_span
from app.core.contract import install_contract
from app.core.errors import install_error_handlers
from app.core.models import IsoDatetime
from app.core.ratelimit import rate_limit
from app.crews.schemas import CrewPatch
from app.main import create_app
from app.maps.http import SinceParam
from app.reports.routes import _REPORT
from app.settings import Settings
from app.tickets.schemas import CommentIn

PROBLEM = {"schema": {"$ref": "#/components/schemas/Problem"}}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings(database_url="postgresql://unused@localhost/unused")).openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def _error_forms(operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["content"] for s, r in operation["responses"].items() if int(s) >= 400]


def test_every_error_answer_is_a_documented_problem(document: dict[str, Any]) -> None:
    """Every error answer has a documented body: a problem, or, where a route declares an
    error body of its own (Open311's ``errors`` document), that body on every error answer
    of the route, never a mix."""
    undocumented = []
    for method, path, operation in _operations(document):
        forms = _error_forms(operation)
        own = [f for f in forms if "application/problem+json" not in f]
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            content = response["content"]
            if own:
                if content != own[0] or not all(m.get("schema") for m in content.values()):
                    undocumented.append((method, path, status))
            elif content.get("application/problem+json") != PROBLEM:
                undocumented.append((method, path, status))
        assert {"422", "503"} <= operation["responses"].keys(), (method, path)
    assert undocumented == []
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert "ErrorModel" not in document["components"]["schemas"]
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])


def test_open311_errors_are_documented_in_open311s_form_and_the_routes_format(
    document: dict[str, Any],
) -> None:
    """Open311 answers its errors as ``[{"code", "description"}]`` / ``<errors>`` in the
    route's format (app/open311/errors.py), never as problems: ``.json`` in JSON, ``.xml``
    in XML, the extensionless route in either (by Accept)."""
    errors_ref = {"$ref": "#/components/schemas/Open311Errors"}
    seen = 0
    for method, path, operation in _operations(document):
        if not path.startswith("/open311/"):
            continue
        last = path.rsplit("/", 1)[-1]
        for content in _error_forms(operation):
            seen += 1
            if last.endswith(".json"):
                assert content == {"application/json": {"schema": errors_ref}}, (method, path)
            elif last.endswith(".xml"):
                assert set(content) == {"text/xml"}, (method, path)
            else:
                assert set(content) == {"application/json", "text/xml"}, (method, path)
                assert content["application/json"] == {"schema": errors_ref}
    assert seen > 100


def test_a_jurisdiction_looked_up_by_slug_documents_404(document: dict[str, Any]) -> None:
    """These answer 404 for a slug no city has (schemathesis: undocumented status 404)."""
    for path in ("/v1/alerts", "/v1/talk/trends", "/v1/talk/sentiment", "/v1/social/posts"):
        assert "404" in document["paths"][path]["get"]["responses"], path


def test_what_a_route_declares_comes_out_in_its_answers(document: dict[str, Any]) -> None:
    paths = document["paths"]
    staff_only = paths["/v1/crews/{crew_id}"]["patch"]["responses"]
    assert {"401", "403", "404", "413", "415", "422", "503"} <= staff_only.keys()
    assert "WWW-Authenticate" in staff_only["401"]["headers"]
    limited = paths["/v1/auth/jwt/login"]["post"]["responses"]["429"]
    assert limited["headers"]["Retry-After"]["required"] is True
    # Anonymous callers welcome, credentials read when sent: the empty requirement is there.
    assert {} in paths["/v1/reports/{report_id}"]["get"]["security"]
    assert {} not in paths["/v1/crews/{crew_id}"]["patch"]["security"]
    # A comma-separated list is an array of its values.
    status = next(p for p in paths["/v1/tiles.json"]["get"]["parameters"] if p["name"] == "status")
    assert (status["style"], status["explode"], status["schema"]["type"]) == (
        "form",
        False,
        "array",
    )
    assert "open" in status["schema"]["items"]["enum"]


def test_a_new_route_is_documented_without_its_author_listing_anything() -> None:
    """Rooms built in parallel (Open311, inboxes) get the contract from their declarations;
    a status they document themselves, with a body of their own, is kept as they wrote it."""
    router = APIRouter()

    @router.post("/v1/rooms/{room_id}", dependencies=[Depends(rate_limit("rooms", 10))])
    async def knock(room_id: int, body: dict[str, int], staff: StaffPrincipal) -> None: ...

    @router.get(
        "/v1/open/{thing}.xml",
        responses={400: {"content": {"text/xml": {}}, "description": "XML error"}},
    )
    async def thing(thing: str, who: OptionalPrincipal) -> None: ...

    app = FastAPI()
    app.include_router(router)
    install_contract(app)
    paths = app.openapi()["paths"]
    knocked = paths["/v1/rooms/{room_id}"]["post"]["responses"]
    assert set(knocked) == {"200", "401", "403", "404", "413", "415", "422", "429", "503"}
    assert all(
        knocked[s]["content"] == {"application/problem+json": PROBLEM}
        for s in knocked
        if s != "200"
    )
    opened = paths["/v1/open/{thing}.xml"]["get"]
    assert opened["responses"]["400"]["content"] == {"text/xml": {}}
    # Its other error answers come in the form it chose for its errors.
    assert opened["responses"]["422"]["content"] == {"text/xml": {}}
    assert {"401", "404", "422", "503"} <= opened["responses"].keys()
    assert "403" not in opened["responses"]
    assert {} in opened["security"]


def _app() -> FastAPI:
    return create_app(Settings(database_url="postgresql://unused@localhost/unused"))


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/crews", "GET, POST"),  # two routes: Starlette named only the first's
        ("/v1/admin/jurisdictions", "GET, POST"),
        ("/v1/users/me", "GET, PATCH"),  # not the methods of /v1/users/{id}
        ("/v1/workorders/search", "POST"),  # not those of /v1/workorders/{reference}
    ],
)
async def test_allow_on_a_405_names_every_method_of_the_resource(path: str, allowed: str) -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.request("TRACE", path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_body_that_cannot_be_decoded_is_invalid_input_not_a_bad_request() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(body: dict[str, int]) -> dict[str, int]:
        return body

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/echo", content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "body"


def test_a_span_is_documented_as_what_the_api_writes(document: dict[str, Any]) -> None:
    """Service levels are written "1d", "36h" (``format_span``); the document said an ISO
    8601 duration, which "1d" is not (schemathesis: the response violates its schema)."""
    field = document["components"]["schemas"]["Service"]["properties"]["acknowledge_within"]
    branches = [b for option in field["anyOf"] for b in option.get("anyOf", [option])]
    patterns = [b["pattern"] for b in branches if "pattern" in b]
    for span in (timedelta(days=1), timedelta(hours=36), timedelta(seconds=90)):
        assert any(re.search(p, format_span(span)) for p in patterns), format_span(span)


def test_booleans_in_bodies_are_booleans() -> None:
    """The document says boolean; "yes" or 1 was taken as true (schemathesis: a
    schema-violating request accepted)."""
    for model, field in ((CommentIn, "public"), (CrewPatch, "active")):
        with pytest.raises(ValidationError):
            model.model_validate({"note": "x", field: "yes"})
        with pytest.raises(ValidationError):
            model.model_validate({"note": "x", field: 1})


def test_a_date_time_is_iso_8601_text_not_a_number_of_seconds() -> None:
    """pydantic read "-262" as seconds since 1970; the document says date-time (schemathesis:
    a schema-violating request accepted, on /v1/tickets.geojson?updated_since=-262)."""
    for kind in (IsoDatetime, SinceParam):
        adapter: TypeAdapter[Any] = TypeAdapter(kind)
        with pytest.raises(ValidationError):
            adapter.validate_python("-262")
        assert adapter.validate_python("2026-11-24T08:00:00Z").year == 2026


def test_a_json_body_is_read_strictly() -> None:
    """The intake took "8" for a number (schemathesis: a schema-violating request accepted,
    location.accuracy_m as a string); JSON bodies we read ourselves are validated strictly."""
    good = b'{"service_code": "pothole", "location": {"lon": 4.9, "lat": 52.4, "accuracy_m": 8}}'
    assert _REPORT.parse(good).location is not None
    with pytest.raises(RequestValidationError):
        _REPORT.parse(good.replace(b"8}", b'"8"}'))
