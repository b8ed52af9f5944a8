"""The contract: every answer an operation can give, completed from what its route declares.

FastAPI documents a route's success and its validation error (as plain JSON, which we never
send). Everything else a route can answer comes from machinery around it: middleware, role
gates, rate limits, the database. ``install_contract`` completes each operation of the
OpenAPI document from the route table, so a route comes out right without its author
listing the usual answers:

- every route: 422 (the NUL guard, validation) and 503 (database unreachable,
  ``Retry-After``);
- a path parameter: 404 (nothing with that id);
- a request body: 413 (too large) and 415 (not a media type it reads);
- a dependency marked with ``answers(...)``, however deep: its statuses (401 for
  credentials, 403 for role gates, 429 with ``Retry-After`` for rate limits);
- ``responses={...}`` of its own: kept; an error response without content gets the
  problem schema.

Every error response is ``application/problem+json`` with the ``Problem`` schema, unless the
route declared its own content for that status (an XML error body, say); the route's other
error answers then take that same form. A dependency that
accepts anonymous callers but reads credentials (``credentials="optional"``) adds the empty
security requirement, so the document says that no credentials are needed there.

``problems(404, 409, ...)`` spells out a route's own error answers where a description helps;
the mechanism fills in their content either way.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any, Literal, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from app.core.errors import PROBLEM_MEDIA_TYPE
from app.core.routing import api_routes

F = TypeVar("F", bound=Callable[..., Any])

_ANSWERS = "__kerbside_answers__"
_COMMAS = "x-kerbside-comma-separated"
_CREDENTIALS = "__kerbside_credentials__"

PROBLEM_REF = "#/components/schemas/Problem"
# Error schemas of FastAPI and fastapi-users that our error handlers answer as problems.
_REWRITTEN = ("HTTPValidationError", "ErrorModel")
_PROBLEM_CONTENT = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}


class ProblemFieldError(BaseModel):
    """One invalid input: where it is and what is wrong with it."""

    model_config = ConfigDict(title="ProblemFieldError")

    field: str = Field(description="Dotted path of the field (`location.lat`, `photos.0`)")
    message: str
    type: str = Field(description="A stable machine code for the kind of error")
    in_: Literal["body", "query", "path", "header", "cookie"] | None = Field(
        default=None, alias="in", description="Where the field was sent"
    )


class Problem(BaseModel):
    """An RFC 9457 problem. Further members may follow (`code`, `allowed`, `retry_after`, …)."""

    model_config = ConfigDict(title="Problem", extra="allow")

    type: str = Field(description="A URI naming the kind of problem; stable, for programs")
    title: str
    status: int = Field(ge=400, le=599, description="The HTTP status of this answer")
    detail: str = Field(description="What went wrong, for people")
    instance: str | None = Field(default=None, description="The path that was asked for")
    errors: list[ProblemFieldError] | None = Field(
        default=None, description="Each invalid input (422)"
    )
    code: str | None = Field(default=None, description="A machine code (sign-in and sign-up)")
    request_id: str | None = Field(default=None, description="Quote it when reporting a 500")


# Headers that go with a status, whichever route answers it.
_RETRY_AFTER = {
    "description": "Seconds to wait before trying again",
    "schema": {"type": "string", "pattern": r"^[0-9]+$"},
}
_STATUS_HEADERS: dict[int, dict[str, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": "How to authenticate (`Bearer`)",
            "schema": {"type": "string"},
        }
    },
    429: {"Retry-After": {**_RETRY_AFTER, "required": True}},
    503: {"Retry-After": _RETRY_AFTER},
}
_DESCRIPTIONS: dict[int, str] = {
    401: "No credentials, or wrong or expired ones",
    403: "Your role or jurisdiction may not do this",
    404: "Nothing with this id (or not one you may see)",
    413: "The request body is too large",
    415: "The body is not of a media type this operation reads",
    422: "Invalid input: each error's field in `errors`",
    429: "Too many requests; see `Retry-After`",
    503: "The database is unreachable (`Retry-After`), or a dependency is not ready",
}


def answers(
    *statuses: int, credentials: Literal["optional", "required"] | None = None
) -> Callable[[F], F]:
    """Mark a dependency with the error statuses it answers (and, for one that reads the
    caller's credentials, whether it requires them). Every route that depends on it, however
    deep, documents them."""

    def mark(call: F) -> F:
        setattr(call, _ANSWERS, frozenset(statuses) | getattr(call, _ANSWERS, frozenset()))
        if credentials is not None:
            setattr(call, _CREDENTIALS, credentials)
        return call

    return mark


def comma_separated(items: dict[str, Any], max_items: int = 50) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` for a query parameter read as a comma-separated list: the
    document says an array of ``items`` (OpenAPI ``style: form, explode: false``), which is
    what the parameter is, rather than a string of any shape."""

    def schema(field: dict[str, Any]) -> None:
        field.clear()
        field.update(
            {"type": "array", "items": items, "minItems": 1, "maxItems": max_items, _COMMAS: True}
        )

    return schema


def problems(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's own error answers: ``problems(404, (409, "Why"))``."""
    out: dict[int | str, dict[str, Any]] = {}
    for item in statuses:
        status, description = item if isinstance(item, tuple) else (item, None)
        out[status] = {
            "description": description or _description(status),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
        }
    return out


def _description(status: int) -> str:
    return _DESCRIPTIONS.get(status) or HTTPStatus(status).phrase


def _dependencies(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    stack = list(dependant.dependencies)
    while stack:
        dependency = stack.pop()
        if dependency.call is not None:
            yield dependency.call
        stack.extend(dependency.dependencies)


def _complete(operation: dict[str, Any], route: APIRoute, path: str) -> None:
    statuses = {422, 503}
    credentials: set[str] = set()
    for call in _dependencies(route.dependant):
        statuses |= getattr(call, _ANSWERS, frozenset())
        if (needed := getattr(call, _CREDENTIALS, None)) is not None:
            credentials.add(needed)
    if "{" in path:
        statuses.add(404)
    if "requestBody" in operation:
        statuses |= {413, 415}

    for parameter in operation.get("parameters", ()):
        if parameter.get("schema", {}).pop(_COMMAS, False):
            parameter["style"], parameter["explode"] = "form", False

    responses: dict[str, Any] = operation.setdefault("responses", {})
    # FastAPI's own 422 (HTTPValidationError) and fastapi-users' errors (ErrorModel) are
    # declared as plain JSON; the error handlers send them as problems.
    for response in responses.values():
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        if schema.get("$ref", "").rsplit("/", 1)[-1] in _REWRITTEN:
            del response["content"]
    for status in statuses:
        responses.setdefault(str(status), {"description": _description(status)})
    # A route whose errors have a body of their own (Open311's XML, say) declares one of them;
    # its other error answers are documented in the same form.
    errors = [(int(k), r) for k, r in responses.items() if k.isdigit() and int(k) >= 400]
    own = next(
        (
            r["content"]
            for _, r in errors
            if r.get("content") and PROBLEM_MEDIA_TYPE not in r["content"]
        ),
        None,
    )
    for status, response in errors:
        if not response.get("content"):
            response["content"] = copy.deepcopy(own or _PROBLEM_CONTENT)
        else:
            problem = response["content"].get(PROBLEM_MEDIA_TYPE)
            if problem is not None and not problem.get("schema"):
                problem["schema"] = {"$ref": PROBLEM_REF}
        if response.get("description") in (None, "", "Validation Error"):
            response["description"] = _description(status)
        for name, header in _STATUS_HEADERS.get(status, {}).items():
            response.setdefault("headers", {}).setdefault(name, header)
    operation["responses"] = dict(sorted(responses.items()))

    # Anonymous callers welcome: the empty requirement says credentials are optional.
    security = operation.get("security")
    if security and credentials == {"optional"} and {} not in security:
        security.append({})


def install_contract(app: FastAPI) -> None:
    """Make ``app.openapi()`` document every answer of every operation (see the module)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        paths = document.get("paths", {})
        for path, route in api_routes(app):
            if not route.include_in_schema or path not in paths:
                continue
            for method in route.methods or ():
                operation = paths[path].get(method.lower())
                if operation is not None:
                    _complete(operation, route, path)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
        for unused in (*_REWRITTEN, "ValidationError"):
            if f'"#/components/schemas/{unused}"' not in json.dumps(document):
                schemas.pop(unused, None)
        document["components"]["schemas"] = dict(sorted(schemas.items()))
        app.openapi_schema = document
        return document

    install: Callable[[], dict[str, Any]] = openapi
    app.openapi = install  # type: ignore[method-assign]
