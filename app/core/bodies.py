"""JSON bodies that a route reads itself, validated in one pass, and documented as if FastAPI
had read them.

Some routes take their body as bytes (the intake, which also accepts multipart and hashes the
body for idempotency; the polygon search, where parsing with the standard library and then
validating the parsed tree cost three times what pydantic-core's own JSON parser does). They
declare the body with ``JsonBody``: ``openapi`` (for ``openapi_extra``) names its schema, and
``install_schemas`` puts every such schema into the document's components, where FastAPI
would have put them had it read the body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from app.core.errors import UnsupportedMediaType

_REF = "#/components/schemas/{model}"
_DECLARED: dict[str, TypeAdapter[Any]] = {}
# Schemas written out as JSON Schema (documents a route builds itself, e.g. Open311's).
_WRITTEN: dict[str, dict[str, Any]] = {}
T = TypeVar("T")


class JsonBody(Generic[T]):
    """A JSON request body of type ``T``, published in the OpenAPI components as ``name``."""

    def __init__(self, name: str, type_: Any) -> None:
        if name in _DECLARED:
            raise ValueError(f"a body schema named {name} is declared already")
        self.name = name
        self.adapter: TypeAdapter[T] = TypeAdapter(type_)
        _DECLARED[name] = self.adapter

    def schema_ref(self) -> dict[str, str]:
        return {"$ref": _REF.format(model=self.name)}

    def openapi(self, description: str | None = None) -> dict[str, Any]:
        """The operation's ``requestBody`` (required, ``application/json``)."""
        body: dict[str, Any] = {
            "required": True,
            "content": {"application/json": {"schema": self.schema_ref()}},
        }
        if description:
            body["description"] = description
        return body

    def parse(self, raw: bytes) -> T:
        """``raw`` validated, or the 422 FastAPI gives a body that does not fit (``loc`` starts
        with ``body``)."""
        if not raw.strip():
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
            )
        try:
            return self.adapter.validate_json(raw, strict=True)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from None

    async def read(self, request: Request) -> T:
        """The request's body, which must be JSON (415 otherwise), validated."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and not (
            content_type == "application/json" or content_type.endswith("+json")
        ):
            raise UnsupportedMediaType(f"Send the body as application/json (got {content_type})")
        return self.parse(await request.body())


def declare_schema(name: str, schema: dict[str, Any]) -> dict[str, str]:
    """Publish ``schema`` in the document's components as ``name``; returns its ``$ref``, so
    operations that share a large schema name it once instead of repeating it."""
    if _WRITTEN.get(name, schema) != schema or name in _DECLARED:
        raise ValueError(f"a schema named {name} is declared already")
    _WRITTEN[name] = schema
    return {"$ref": _REF.format(model=name)}


def install_schemas(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the schema of every declared ``JsonBody`` and every
    ``declare_schema``."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()  # FastAPI's own, which it also keeps in app.openapi_schema
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, adapter in _DECLARED.items():
            schema = adapter.json_schema(mode="validation", ref_template=_REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
        schemas.update(_WRITTEN)
        document["components"]["schemas"] = dict(sorted(schemas.items()))
        app.openapi_schema = document
        return document

    install: Callable[[], dict[str, Any]] = openapi
    app.openapi = install  # type: ignore[method-assign]
