"""Query strings of the busiest routes, validated in one step by a pydantic model.

FastAPI validates each declared query parameter on its own, and in the version we use that
costs about 15 µs per parameter per request (13 parameters: 200 µs, a sixth of the Python
time of a street-sized map page; measured in-process). A route that takes a ``QueryModel``
through ``query_of(Model)`` validates its whole query string with one pydantic call instead,
and declares the same parameters in its OpenAPI operation with
``openapi_extra=query_openapi(Model)``. Invalid values get the same 422 problem as any other
route's: the errors are raised as FastAPI's ``RequestValidationError`` with ``("query", name)``
locations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo


class QueryModel(BaseModel):
    """A route's query parameters; unknown ones are ignored, as FastAPI does."""

    model_config = ConfigDict(extra="ignore", frozen=True)


Q = TypeVar("Q", bound=QueryModel)


def query_of(model: type[Q]) -> Callable[[Request], Awaitable[Q]]:
    """A dependency that validates the request's query string as ``model``."""
    parse_query = query_parser(model)

    async def parse(request: Request) -> Q:
        return parse_query(request)

    parse.__name__ = f"query_of_{model.__name__}"
    return parse


def query_parser(model: type[Q]) -> Callable[[Request], Q]:
    """A function that validates a request's query string as ``model`` (for routes that
    resolve their own inputs). A list field takes every value of a repeated parameter; any
    other field the last one (as FastAPI's declared parameters do)."""
    lists = frozenset(
        field.alias or name for name, field in model.model_fields.items() if _is_list(field)
    )

    def parse(request: Request) -> Q:
        params = request.query_params
        values: dict[str, Any] = dict(params)
        for name in lists & values.keys():
            values[name] = params.getlist(name)
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            errors = [
                {**error, "loc": ("query", *error["loc"])}
                for error in exc.errors(include_url=False)
            ]
            raise RequestValidationError(errors) from None

    return parse


def _is_list(field: FieldInfo) -> bool:
    annotation = field.annotation
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    return any(get_origin(a) is list for a in (annotation, *options))


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with its ``$ref``s to ``defs`` (enums) written out in place."""
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return _inline({**defs[ref.removeprefix("#/$defs/")], **rest}, defs)
    return {key: _inline(value, defs) for key, value in schema.items()}


def query_openapi(model: type[QueryModel]) -> dict[str, Any]:
    """The ``parameters`` of an OpenAPI operation for ``model``'s fields, shaped as FastAPI
    writes its own query parameters, and its 422 answer (for ``openapi_extra``)."""
    schema = model.model_json_schema()
    schema = _inline(schema, schema.pop("$defs", {}))
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        field = {k: v for k, v in field.items() if not (k == "default" and v is None)}
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": field,
        }
        if "description" in field:
            parameter["description"] = field["description"]
        parameters.append(parameter)
    invalid = {
        "description": "Invalid query parameters (problem+json, one entry per field in `errors`)",
        "content": {"application/problem+json": {}},
    }
    return {"parameters": parameters, "responses": {"422": invalid}}
