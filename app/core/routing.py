"""The application's route table, walked the same way by whoever needs all of it: the
contract (``app.core.contract``) and the ``Allow`` header of a 405 (``app.core.errors``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route, compile_path


def api_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """Every API route with its full path (routers included into routers too)."""
    for path, route in _walk(list(app.routes), ""):
        if isinstance(route, APIRoute):
            yield path, route


def _walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, Route]]:
    for route in routes:
        if hasattr(route, "original_router"):  # an included router (FastAPI >= 0.120)
            yield from _walk(route.original_router.routes, prefix + route.include_context.prefix)
        elif isinstance(route, Route):
            yield prefix + route.path, route


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods of the resource at ``path``, for the ``Allow`` header of a 405.

    Starlette names only the methods of the first route whose path matched, and FastAPI
    makes one route per path and method group, so ``GET`` and ``POST`` of one resource
    are two routes; this asks every route. Of the templates that match, the most literal
    ones name the resource: ``/v1/users/me`` is not ``/v1/users/{id}``.
    """
    table: list[tuple[re.Pattern[str], int, frozenset[str]]] | None = getattr(
        app.state, "allow_table", None
    )
    if table is None:
        table = [
            (compile_path(full)[0], full.count("{"), frozenset(route.methods or ()))
            for full, route in _walk(list(app.routes), "")
        ]
        app.state.allow_table = table
    matching = [(params, methods) for pattern, params, methods in table if pattern.match(path)]
    if not matching:
        return []
    fewest = min(params for params, _ in matching)
    return sorted({m for params, methods in matching if params == fewest for m in methods})
