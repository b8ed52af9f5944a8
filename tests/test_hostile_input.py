"""Hostile input on every route of the route table: a NUL character in any parameter or body,
and ids past the range of their columns, are a 422 (or 404) problem, never a 500 (issue 22,
defects 1 and 2).

The walk reads the OpenAPI document, so a new route or parameter is fuzzed without being
listed here. Calls are made as an admin, so they get past the role gates to the code (and the
database) behind them.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.settings import Settings
from tests.factories import bearer_headers, make_jurisdiction, make_user
from tests.test_route_security import _PLACEHOLDERS

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1
PATH_VALUES = {**_PLACEHOLDERS, "z": "14", "x": "8073", "y": "5448", "collection_id": "tickets"}
NUL_DETAIL = "NUL"


def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    document = app.openapi()
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _url(path: str, **values: str) -> str:
    return re.sub(
        r"\{(\w+)\}", lambda m: values.get(m.group(1), PATH_VALUES.get(m.group(1), "1")), path
    )


def _parameters(operation: dict[str, Any], where: str) -> list[dict[str, Any]]:
    return [p for p in operation.get("parameters", ()) if p["in"] == where]


def _is_integer(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(option.get("type") == "integer" for option in options)


def _body_media(operation: dict[str, Any]) -> set[str]:
    return set(operation.get("requestBody", {}).get("content", {}))


@pytest.fixture
async def admin_headers(db: AsyncSession, settings: Settings) -> dict[str, str]:
    city = await make_jurisdiction(db)
    admin = await make_user(db, role=Role.admin, jurisdiction=city)
    return await bearer_headers(settings, admin)


def _refused_for_nul(response: httpx.Response) -> bool:
    if response.request.url.path.startswith("/open311/"):
        # Open311's own error document (docs/open311.md): invalid input is its 400.
        return (
            response.status_code == 400
            and response.headers["content-type"].startswith(("application/json", "text/xml"))
            and NUL_DETAIL in response.text
        )
    return (
        response.status_code == 422
        and response.headers["content-type"] == "application/problem+json"
        and NUL_DETAIL in response.json()["detail"]
    )


async def test_a_nul_in_any_path_parameter_is_a_422_problem(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    failures = []
    for method, path, operation in _operations(app):
        for parameter in _parameters(operation, "path"):
            name = parameter["name"]
            url = _url(path, **{name: PATH_VALUES.get(name, "1") + "%00"})
            response = await client.request(method, url, headers=admin_headers)
            if not _refused_for_nul(response):
                failures.append((method, url, response.status_code))
    assert failures == []
    # The issue's own example, on a route with no parameter declared as such.
    response = await client.get("/v1/tickets/K-2026-000001%00")
    assert _refused_for_nul(response), response.text


async def test_a_nul_in_any_query_parameter_is_a_422_problem(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    failures = []
    checked = 0
    for method, path, operation in _operations(app):
        for parameter in _parameters(operation, "query"):
            checked += 1
            response = await client.request(
                method,
                _url(path),
                params={parameter["name"]: "a\x00b"},
                headers=admin_headers,
            )
            if not _refused_for_nul(response):
                failures.append((method, path, parameter["name"], response.status_code))
    assert checked > 50
    assert failures == []


async def test_a_nul_in_any_body_is_a_422_problem(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    failures = []
    for method, path, operation in _operations(app):
        media = _body_media(operation)
        url = _url(path)
        if "application/json" in media:
            # Raw JSON text, as a client would send it: the escape is what arrives.
            body = b'{"name": "a\\u0000b", "comment": "x\\u0000", "status": "\\u0000"}'
            response = await client.request(
                method,
                url,
                content=body,
                headers={**admin_headers, "Content-Type": "application/json"},
            )
        elif "application/x-www-form-urlencoded" in media:
            response = await client.request(
                method,
                url,
                content=b"username=a%00b%40example.org&password=x%00yyyyyyyyyy",
                headers={**admin_headers, "Content-Type": "application/x-www-form-urlencoded"},
            )
        else:
            continue
        if not _refused_for_nul(response):
            failures.append((method, path, response.status_code, response.text[:200]))
    assert failures == []


async def test_a_nul_in_a_multipart_text_part_is_a_422_problem(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/reports",
        files={"report": (None, '{"description": "a\\u0000b"}', "application/json")},
        headers=admin_headers,
    )
    assert _refused_for_nul(response), response.text
    response = await client.post(
        "/v1/reports",
        files={"report": (None, b"a\x00b", "text/plain")},
        headers=admin_headers,
    )
    assert _refused_for_nul(response), response.text


async def test_text_that_only_looks_like_nul_passes(client: httpx.AsyncClient) -> None:
    # "%2500" is the text "%00", not a NUL; the guard must not refuse it.
    response = await client.get("/v1/tickets.geojson", params={"q": "100%00"})
    assert response.status_code != 422 or NUL_DETAIL not in response.json()["detail"]
    response = await client.get("/v1/tickets/" + quote("K-2026-%00", safe=""))
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("value", [str(INT4_MAX + 1), str(2**63), "1" + "0" * 30])
async def test_ids_beyond_their_column_in_any_path_are_404_or_422(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str], value: str
) -> None:
    failures = []
    checked = 0
    for method, path, operation in _operations(app):
        for parameter in _parameters(operation, "path"):
            if not _is_integer(parameter["schema"]):
                continue
            checked += 1
            url = _url(path, **{parameter["name"]: value})
            response = await client.request(method, url, headers=admin_headers, json={})
            if response.status_code not in (404, 422):
                failures.append((method, url, response.status_code))
    assert checked >= 8
    assert failures == []


async def test_large_integers_in_any_query_parameter_are_never_a_server_error(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    failures = []
    for method, path, operation in _operations(app):
        for parameter in _parameters(operation, "query"):
            if not _is_integer(parameter["schema"]):
                continue
            for value in (str(INT4_MAX + 1), str(2**63)):
                response = await client.request(
                    method, _url(path), params={parameter["name"]: value}, headers=admin_headers
                )
                if response.status_code >= 500:
                    failures.append((method, path, parameter["name"], value))
    assert failures == []


def _integer_ids(schema: dict[str, Any], schemas: dict[str, Any]) -> list[tuple[str, Any]]:
    """(property, declared maximum) of every id-like integer property of a body schema."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    found = []
    for name, prop in schema.get("properties", {}).items():
        if not (name == "id" or name.endswith(("_id", "_ids"))):
            continue
        options = prop.get("anyOf", [prop])
        for option in options:
            item = option.get("items", option) if option.get("type") == "array" else option
            if item.get("type") == "integer":
                found.append((name, item.get("maximum")))
    return found


def test_every_id_a_request_body_takes_declares_its_range(app: FastAPI) -> None:
    document = app.openapi()
    schemas = document["components"]["schemas"]
    unbounded = []
    checked = 0
    for method, path, operation in _operations(app):
        content = operation.get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema")
        if schema is None:
            continue
        for name, maximum in _integer_ids(schema, schemas):
            checked += 1
            # Int4Id (integer columns) or Int8Id (bigint columns): a maximum either way.
            if maximum is None or maximum > INT8_MAX:
                unbounded.append((method, path, name))
    assert checked >= 5
    assert unbounded == []
