"""The application shell: health, problem+json errors, limits, settings, schema, OpenAPI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from alembic import command
from fastapi import FastAPI
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.jobs.tasks import periodic_task_names, purge_expired_idempotency_records
from app.migrations import alembic_config, head_revision
from app.openapi_doc import openapi_json
from app.settings import PROJECT_ROOT, Settings, to_libpq_url, to_sqlalchemy_url
from tests.factories import make_jurisdiction

PROBLEM = "application/problem+json"


class _Body(BaseModel):
    name: str = Field(max_length=5)
    count: int


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_readyz_reports_postgis_and_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["postgis"].startswith("3.")
    assert body["migration"] == head_revision() == body["migration_head"]


async def test_readyz_says_when_schema_is_behind(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await db.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    await db.flush()
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert "kerbside migrate" in response.json()["detail"]


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    hostile = await client.get("/healthz", headers={"X-Request-ID": "bad id\r\n"})
    assert hostile.headers["x-request-id"] != "bad id"


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"].endswith("/not-found")
    assert body["status"] == 404
    assert "/no/such/thing" in body["detail"]


async def test_wrong_method_is_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.delete("/healthz")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("/method-not-allowed")


async def test_validation_errors_have_field_detail(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.post("/_test/validate")
    async def validate(body: _Body) -> dict[str, str]:
        return {"ok": body.name}

    response = await client.post("/_test/validate", json={"name": "too long name", "count": "x"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    errors = {e["field"]: e for e in response.json()["errors"]}
    assert set(errors) == {"name", "count"}
    assert errors["count"]["in"] == "body"
    assert "5" in errors["name"]["message"]


async def test_domain_errors_and_crashes(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.get("/_test/missing")
    async def missing() -> None:
        raise NotFound("No ticket K-2026-000001")

    @app.get("/_test/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    response = await client.get("/_test/missing")
    assert response.status_code == 404
    assert response.json()["detail"] == "No ticket K-2026-000001"
    response = await client.get("/_test/crash", headers={"X-Request-ID": "req42"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert response.json()["request_id"] == "req42"


async def test_body_size_limit(app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
    @app.post("/_test/echo")
    async def echo(body: dict[str, str]) -> dict[str, int]:
        return {"keys": len(body)}

    big = b'{"a": "' + b"x" * (settings.max_request_bytes + 10) + b'"}'
    response = await client.post(
        "/_test/echo", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(settings.max_request_bytes // 65536 + 2):
            yield b"x" * 65536

    streamed = await client.post(
        "/_test/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_production_refuses_default_secret() -> None:
    with pytest.raises(ValidationError, match="KERBSIDE_SECRET_KEY"):
        Settings(env="production", database_url="postgresql://x@db/kerbside")
    with pytest.raises(ValidationError, match="KERBSIDE_DATABASE_URL"):
        Settings(env="production", secret_key="s" * 40)
    ok = Settings(env="production", secret_key="s" * 40, database_url="postgres://x@db/k")
    assert ok.async_database_url == "postgresql+psycopg://x@db/k"


def test_database_url_forms() -> None:
    assert to_sqlalchemy_url("postgresql://u:p@h:1/d") == "postgresql+psycopg://u:p@h:1/d"
    assert to_libpq_url("postgresql+psycopg://u@h/d") == "postgresql://u@h/d"
    with pytest.raises(ValueError, match="unsupported"):
        to_sqlalchemy_url("mysql://u@h/d")


def test_models_and_migrations_agree(database_url: str) -> None:
    # `alembic check` fails if autogenerate would write any operation.
    command.check(alembic_config(database_url))


def test_migrations_downgrade_and_upgrade_again(database_url: str) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "base")
    command.upgrade(config, "head")


async def test_area_parts_follow_area_geometry(db: AsyncSession) -> None:
    jurisdiction = await make_jurisdiction(db)
    parts = await db.execute(
        text(
            "SELECT a.code, count(p.id) FROM area a JOIN area_part p ON p.area_id = a.id "
            "WHERE a.jurisdiction_id = :j GROUP BY a.code"
        ),
        {"j": jurisdiction.id},
    )
    counts = dict(parts.tuples().all())
    assert len(counts) == 8
    assert all(n >= 1 for n in counts.values())
    # Point-in-polygon through the pieces agrees with the whole polygon.
    agree = await db.execute(
        text(
            "SELECT bool_and(a.id = (SELECT p.area_id FROM area_part p "
            "  WHERE ST_Intersects(p.geom, ST_PointOnSurface(a.geom)) LIMIT 1)) "
            "FROM area a WHERE a.jurisdiction_id = :j"
        ),
        {"j": jurisdiction.id},
    )
    assert agree.scalar_one() is True
    await db.execute(
        text(
            "UPDATE area SET geom = ST_Multi(ST_Buffer(ST_Centroid(geom), 0.001)) "
            "WHERE jurisdiction_id = :j"
        ),
        {"j": jurisdiction.id},
    )
    single = await db.execute(
        text(
            "SELECT count(*) FROM area_part p JOIN area a ON a.id = p.area_id "
            "WHERE a.jurisdiction_id = :j"
        ),
        {"j": jurisdiction.id},
    )
    assert single.scalar_one() == 8


async def test_worker_purges_only_expired_idempotency_records(db: AsyncSession) -> None:
    await db.execute(
        text(
            "INSERT INTO idempotency_record (principal, key, request_hash, expires_at) VALUES "
            "('anon', 'old', 'h', now() - interval '1 minute'),"
            "('anon', 'new', 'h', now() + interval '1 day')"
        )
    )
    assert await purge_expired_idempotency_records(db) == 1
    left = await db.execute(text("SELECT key FROM idempotency_record"))
    assert left.scalars().all() == ["new"]
    assert "purge_idempotency" in periodic_task_names()


def test_openapi_document_is_current() -> None:
    committed = (PROJECT_ROOT / "openapi" / "openapi.json").read_text()
    assert committed == openapi_json(), "run `kerbside openapi` and commit openapi/openapi.json"


def test_every_reference_in_the_openapi_document_resolves() -> None:
    # Bodies that routes read themselves (app.core.bodies) are referenced by name: their
    # schemas must be in the components too, or clients generated from the document break.
    document = json.loads(openapi_json())
    schemas = document["components"]["schemas"]
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
    assert {"ReportIn", "SearchArea", "PolygonIn", "MultiPolygonIn"} <= refs
    assert refs - set(schemas) == set()


def test_cli_fails_fast_on_unreachable_database() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        env={
            "KERBSIDE_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("kerbside: error: cannot reach the database at 127.0.0.1:9")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_stops_a_domain_command_with_one_line(tmp_path: Path) -> None:
    # `kerbside import` raises app.core.cli.CommandError; `-m app.cli` runs app/cli.py as
    # __main__, whose main() must still catch it (one line, exit 2, no traceback).
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "import",
            str(tmp_path / "gone.csv"),
            "--jurisdiction",
            "x",
        ],
        env={
            "KERBSIDE_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"kerbside: error: {tmp_path / 'gone.csv'}: no such file\n"


def test_cli_fails_fast_when_port_in_use(database_url: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env={"KERBSIDE_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"port {port}" in result.stderr
    assert "in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_database_check_reports_postgis(database_url: str) -> None:
    from app.database_setup import DatabaseUnavailable, check_database

    assert check_database(database_url).startswith("3.")
    with pytest.raises(DatabaseUnavailable, match="cannot reach"):
        check_database("postgresql://nobody@127.0.0.1:9/none")
