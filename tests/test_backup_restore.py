"""Backup and restore end to end (docs/operations.md): reports with photos filed through a
real ``kerbside serve``, photos made by ``kerbside worker --once``, ``scripts/backup``,
``scripts/restore`` into a fresh cluster and an empty photo directory, and the restored API
serves the same tickets and the same photo bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.embedded import throwaway_cluster
from app.settings import PROJECT_ROOT
from geo.distance import offset_lonlat
from tests.factories import CITY, make_jurisdiction, make_service
from tests.images import jpeg
from tests.live import kerbside_process


def _run(argv: list[str], **env: str) -> str:
    result = subprocess.run(
        argv,
        env={**os.environ, "KERBSIDE_ENV": "test", **env},
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _form(n: int, photo: bytes | None) -> dict[str, Any]:
    lon, lat = offset_lonlat(*CITY.center, 200.0 * n, 0.0)
    report = orjson.dumps(
        {"service_code": "pothole", "location": {"lon": lon, "lat": lat}, "description": f"#{n}"}
    )
    files: list[tuple[str, Any]] = [("report", (None, report, "application/json"))]
    if photo is not None:
        files.append(("photos", ("photo.jpg", photo, "image/jpeg")))
    return {"files": files}


async def _snapshot(http: httpx.AsyncClient, references: list[str]) -> dict[str, Any]:
    """What the API says about each ticket, and the bytes of every photo it links."""
    seen: dict[str, Any] = {}
    for reference in references:
        ticket = await http.get(f"/v1/tickets/{reference}")
        assert ticket.status_code == 200, ticket.text
        seen[reference] = ticket.json()
        photos = [p for report in ticket.json()["reports"] for p in report["photos"]]
        for photo in photos:
            assert photo["status"] == "ready", photo
            for link in (photo["url"], photo["thumbnail_url"]):
                answer = await http.get(link)
                assert answer.status_code == 200, (link, answer.text)
                seen[link] = answer.content
    return seen


async def test_a_backup_restored_into_a_fresh_cluster_serves_the_same_tickets_and_photos(
    committed_db: async_sessionmaker[AsyncSession], database_url: str, tmp_path: Path
) -> None:
    async with committed_db() as session:
        city = await make_jurisdiction(session)
        await make_service(session, city, "pothole", duplicate_radius_m=5.0)
        await session.commit()
    media = tmp_path / "media"
    env = {"KERBSIDE_MEDIA_DIR": str(media), "KERBSIDE_PUBLIC_BASE_URL": "http://kerbside.test"}
    with kerbside_process(database_url, tmp_path / "serve.log", **env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            references = []
            for n, photo in enumerate([jpeg((800, 600)), jpeg((600, 800)), None]):
                filed = await http.post("/v1/reports", **_form(n, photo))
                assert filed.status_code == 201, filed.text
                references.append(filed.json()["ticket"]["reference"])
            worker = [sys.executable, "-m", "app.cli", "worker", "--once"]
            _run(worker, KERBSIDE_DATABASE_URL=database_url, **env)
            before = await _snapshot(_local(http), references)
    photos = [link for link in before if link.endswith(".jpg")]
    assert len(photos) == 4, before  # two photos, each with its thumbnail, all ready

    backup = tmp_path / "backup"
    _run(["scripts/backup", str(backup)], KERBSIDE_DATABASE_URL=database_url, **env)
    assert {p.name for p in backup.iterdir()} == {"kerbside.dump", "media.tar", "MANIFEST"}

    fresh = throwaway_cluster()
    try:
        url = fresh.ensure_running()  # an empty database with PostGIS, as `kerbside db` makes
        restored_env = {**env, "KERBSIDE_MEDIA_DIR": str(tmp_path / "restored-media")}
        _run(["scripts/restore", str(backup)], KERBSIDE_DATABASE_URL=url, **restored_env)
        with kerbside_process(url, tmp_path / "restored.log", **restored_env) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
                after = await _snapshot(_local(http), references)
                # The restored queue and schema work: a new report is filed after the last.
                filed = await http.post("/v1/reports", **_form(9, None))
                assert filed.status_code == 201, filed.text
                assert filed.json()["ticket"]["reference"] not in references
        assert after == before
        # Restoring over a restored database is refused (it would mix two histories).
        refused = subprocess.run(  # noqa: ASYNC221 (a short script; nothing else runs)
            ["scripts/restore", str(backup)],
            env={**os.environ, "KERBSIDE_DATABASE_URL": url, **restored_env},
            capture_output=True,
            text=True,
            check=False,
            cwd=PROJECT_ROOT,
        )
        assert refused.returncode != 0
        assert "already holds Kerbside tables" in refused.stderr
    finally:
        fresh.destroy()


def _local(http: httpx.AsyncClient) -> httpx.AsyncClient:
    """Links carry the public base URL; follow them on this server instead."""

    async def rebase(request: httpx.Request) -> None:
        if request.url.host == "kerbside.test":
            request.url = request.url.copy_with(
                scheme=http.base_url.scheme, host=http.base_url.host, port=http.base_url.port
            )

    http.event_hooks["request"] = [rebase]
    return http
