"""Kerbside through Debian's PgBouncer (1.18) in transaction mode, as docs/scaling.md
recommends: with ``KERBSIDE_DATABASE_TRANSACTION_POOLER`` every request succeeds; without
it, server-side prepared statements collide on the shared server connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from app.embedded import SERVICE_USER, free_port
from app.main import create_app
from app.settings import Settings, to_sqlalchemy_url
from geo.distance import offset_lonlat
from geo.tiles import tile_of
from tests.factories import make_jurisdiction, make_service
from tests.live import serve
from tests.maps_data import CENTER, add_ticket


def _pgbouncer() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        if os.geteuid() == 0 or os.environ.get("CI"):
            pytest.fail("pgbouncer is missing: scripts/bootstrap installs it (Debian pgbouncer)")
        pytest.skip("pgbouncer is not installed (scripts/bootstrap installs it as root)")
    return found


@pytest.fixture(scope="module")
def bouncer(database_url: str) -> Iterator[str]:
    """PgBouncer in transaction mode in front of the test cluster, with ONE server
    connection, so that every client connection's statements share it."""
    binary = _pgbouncer()
    server = urlsplit(database_url)
    user = server.username or "postgres"
    database = server.path.lstrip("/")
    port = free_port()
    # PgBouncer refuses to run as root: as root it runs as the embedded cluster's user,
    # which must read its files (pytest's own temporary directory is private to root).
    where = Path(tempfile.mkdtemp(prefix="kerbside-pgbouncer-"))
    account = pwd.getpwnam(SERVICE_USER) if os.geteuid() == 0 else None
    (where / "users.txt").write_text(f'"{user}" ""\n')
    (where / "pgbouncer.ini").write_text(
        f"""[databases]
{database} = host={server.hostname} port={server.port} dbname={database} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {where}/users.txt
pool_mode = transaction
default_pool_size = 1
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
server_reset_query =
; libpq's startup `options` are not supported by PgBouncer 1.18: accept and drop them, so
; that the run without the setting fails on prepared statements, not on the startup.
ignore_startup_parameters = options
logfile = {where}/pgbouncer.log
"""
    )
    if account is not None:
        for path in (where, *where.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)
    process = subprocess.Popen(
        [binary, str(where / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                log = (
                    (where / "pgbouncer.log").read_text()
                    if (where / "pgbouncer.log").exists()
                    else ""
                )
                raise RuntimeError(f"pgbouncer did not start: {log[-2000:]}")
            time.sleep(0.1)
        yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture(scope="module")
async def city(database_url: str) -> AsyncIterator[str]:
    engine = create_async_engine(to_sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as db:
            place = await make_jurisdiction(db, slug="pooledcity")
            pothole = await make_service(db, place, "pothole")
            made = await add_ticket(db, place, pothole, *CENTER)
            await db.commit()
        yield made.reference
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "TRUNCATE jurisdiction, app_user, contact, idempotency_record "
                    "RESTART IDENTITY CASCADE"
                )
            )
        await engine.dispose()


def _settings(bouncer: str, media: Path, pooler: bool) -> Settings:
    return Settings(
        env="test",
        database_url=bouncer,
        database_transaction_pooler=pooler,
        media_dir=media,
        log_json=False,
        log_level="CRITICAL",
        database_pool_size=4,
        database_max_overflow=0,
        rate_limit_reports_per_minute=0,
    )


async def _traffic(url: str, reference: str) -> Counter[int]:
    """Reports, map pages, tiles, a ticket and an API key lookup, eight at a time."""
    west, south = offset_lonlat(*CENTER, -500, -500)
    east, north = offset_lonlat(*CENTER, 500, 500)
    tile = tile_of(*CENTER, 16)
    calls = []
    for i in range(48):
        kind = i % 6
        if kind == 0:
            lon, lat = offset_lonlat(*CENTER, 40.0 * i, 300)
            calls.append(
                (
                    "POST",
                    "/v1/reports",
                    {
                        "json": {
                            "service_code": "pothole",
                            "location": {"lon": lon, "lat": lat},
                            "description": f"through the pooler {i}",
                        }
                    },
                )
            )
        elif kind == 1:
            calls.append(("GET", f"/v1/tickets/{reference}", {}))
        elif kind == 2:
            calls.append(("GET", f"/v1/tiles/16/{tile.x}/{tile.y}.mvt", {}))
        elif kind == 3:
            calls.append(
                (
                    "GET",
                    "/v1/tickets/clusters",
                    {"params": {"bbox": f"{west},{south},{east},{north}", "zoom": 16}},
                )
            )
        elif kind == 4:
            calls.append(
                (
                    "GET",
                    "/v1/tickets.geojson",
                    {"params": {"bbox": f"{west},{south},{east},{north}", "limit": 5 + i}},
                )
            )
        else:
            calls.append(("GET", "/v1/tickets.geojson", {"headers": {"X-API-Key": "ks_nope"}}))
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for start in range(0, len(calls), 8):
            answers = await asyncio.gather(
                *(client.request(m, p, **kw) for m, p, kw in calls[start : start + 8]),
                return_exceptions=True,
            )
            # A connection the server dropped counts as BROKEN.
            statuses.update(
                a.status_code if isinstance(a, httpx.Response) else BROKEN for a in answers
            )
    return statuses


BROKEN = -1


EXPECTED = {201: 8, 200: 32, 401: 8}


def test_kerbside_through_pgbouncer_in_transaction_mode(
    bouncer: str, city: str, tmp_path: Path
) -> None:
    with serve(create_app(_settings(bouncer, tmp_path, pooler=True))) as url:
        statuses = asyncio.run(_traffic(url, city))
    assert dict(statuses) == EXPECTED


def test_without_the_setting_prepared_statements_break(
    bouncer: str, city: str, tmp_path: Path
) -> None:
    """The failure the setting prevents (so the test above proves something)."""
    with serve(create_app(_settings(bouncer, tmp_path, pooler=False))) as url:
        statuses = asyncio.run(_traffic(url, city))
    assert statuses[500] + statuses[BROKEN] > 0, statuses
