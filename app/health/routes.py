"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from app.core.errors import RETRY_AFTER_SECONDS, problem
from app.db import SessionDep
from app.migrations import head_revision

log = logging.getLogger("kerbside.health")
router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database is reachable, PostGIS present and migrations at head",
    responses={503: {"description": "Not ready", "content": {"application/problem+json": {}}}},
)
async def readyz(session: SessionDep) -> Response:
    try:
        row = (
            await session.execute(
                text(
                    "SELECT current_setting('server_version') AS pg, postgis_lib_version() AS "
                    "postgis, (SELECT version_num FROM alembic_version LIMIT 1) AS revision"
                )
            )
        ).one()
    except Exception:  # any failure means not ready
        # The driver's text names hosts, ports and users: it goes to the log, not to
        # whoever asks.
        log.warning("readiness check failed", exc_info=True)
        with contextlib.suppress(Exception):
            await session.rollback()
        return problem(
            503,
            "The database is not reachable",
            slug="unavailable",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    head = head_revision()
    checks: dict[str, Any] = {
        "database": "ok",
        "postgresql": row.pg,
        "postgis": row.postgis,
        "migration": row.revision,
        "migration_head": head,
    }
    if row.revision != head:
        return problem(
            503,
            f"database schema is at {row.revision}, code expects {head}: run `kerbside migrate`",
            checks=checks,
        )
    return JSONResponse({"status": "ready", **checks})
