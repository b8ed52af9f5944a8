"""Faults on real processes (issue 22): ``kerbside serve`` killed with SIGKILL under
concurrent intake, photo storage full or read-only (a real tmpfs), and slow clients that
hold connections open while others are served.

Each test runs the API as its own process (real uvicorn, the production protocol) on the
suite's database, with committed data (``committed_db`` empties it afterwards). The worker
and the database restarted under the worker have their own tests (``test_jobs``,
``test_database_outage``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from geo.distance import offset_lonlat
from tests.factories import CITY, make_jurisdiction, make_service
from tests.images import jpeg
from tests.live import kerbside_process

PROBLEM = "application/problem+json"
# No per-address limit on reports: every client here is 127.0.0.1.
NO_LIMITS = {"KERBSIDE_RATE_LIMIT_REPORTS_PER_MINUTE": "0"}


@pytest.fixture
async def city(committed_db: async_sessionmaker[AsyncSession]) -> None:
    async with committed_db() as session:
        jurisdiction = await make_jurisdiction(session)
        # Reports 50 m apart never join one ticket: one report, one ticket, easy to count.
        await make_service(session, jurisdiction, "pothole", duplicate_radius_m=5.0)
        await session.commit()


def _body(n: int) -> dict[str, Any]:
    lon, lat = offset_lonlat(*CITY.center, 50.0 * (n % 40 - 20), 50.0 * (n // 40 % 40 - 20))
    return {
        "service_code": "pothole",
        "location": {"lon": lon, "lat": lat},
        "description": f"fault test report {n}",
    }


async def _count(database_url: str, sql: str, *params: Any) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        row = await (await connection.execute(sql, params)).fetchone()
    return int(row[0]) if row else 0


# -- an API process killed under concurrent intake ---------------------------------------------


@pytest.mark.usefixtures("city")
async def test_sigkill_under_intake_loses_no_accepted_report_and_retries_file_nothing_twice(
    database_url: str, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    env = {**NO_LIMITS, "KERBSIDE_MEDIA_DIR": str(media)}
    photo = jpeg()

    async def post(http: httpx.AsyncClient, key: str, n: int) -> httpx.Response:
        """Report ``n``: odd ones with a photo (multipart), even ones as JSON."""
        headers = {"Idempotency-Key": key}
        if n % 2:
            return await http.post("/v1/reports", **_photo_form(n, photo), headers=headers)
        return await http.post("/v1/reports", json=_body(n), headers=headers)

    with kerbside_process(database_url, tmp_path / "serve.log", **env) as server:
        accepted: dict[str, tuple[str, bytes]] = {}  # key -> (report id, answer bytes)
        sent: dict[str, int] = {}  # key -> report number
        failed: set[str] = set()
        killed = asyncio.Event()

        async def client(lane: int) -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                for i in range(10_000):
                    key, n = f"sigkill-{lane}-{i}", lane * 1000 + i
                    sent[key] = n
                    try:
                        answer = await post(http, key, n)
                    except httpx.TransportError:
                        failed.add(key)  # the answer was lost: the client cannot know
                        return
                    assert answer.status_code == 201, answer.text
                    accepted[key] = (answer.json()["report"]["id"], answer.content)
                    if killed.is_set():
                        return

        lanes = [asyncio.create_task(client(lane)) for lane in range(8)]
        deadline = time.monotonic() + 60
        while len(accepted) < 60:
            if all(lane.done() for lane in lanes) or time.monotonic() > deadline:
                await asyncio.gather(*lanes)  # a lane's own failure, if it has one
                pytest.fail(f"intake stalled at {len(accepted)} reports before the kill")
            await asyncio.sleep(0.01)
        await asyncio.to_thread(server.kill)  # mid-flight: eight requests were on their way
        killed.set()
        await asyncio.gather(*lanes)
        assert failed, "the kill should have cut some requests short"

        server.start()  # the same port, as a supervisor would restart it
        ids = [report_id for report_id, _ in accepted.values()]
        kept = "SELECT count(*) FROM report WHERE public_id = ANY(%s::uuid[])"
        assert await _count(database_url, kept, ids) == len(ids)
        # Their photos too: a row each, and the original the worker will process.
        with_photo = [accepted[key][0] for key in accepted if sent[key] % 2]
        assert with_photo
        for original in await _originals(database_url, with_photo):
            assert (media / original).is_file(), original

        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            # Every client retries what it sent, with the same key: accepted ones are replayed
            # byte for byte; cut ones are filed now, or replayed when they had committed.
            for key, n in sent.items():
                again = await post(http, key, n)
                assert again.status_code == 201, again.text
                if key in accepted:
                    assert again.headers.get("idempotent-replayed") == "true"
                    assert again.content == accepted[key][1]
                else:
                    accepted[key] = (again.json()["report"]["id"], again.content)
            # A second round changes nothing: one report per key, whatever happened.
            for key, n in sent.items():
                again = await post(http, key, n)
                assert again.headers.get("idempotent-replayed") == "true", key
                assert again.json()["report"]["id"] == accepted[key][0]
    assert await _count(database_url, "SELECT count(*) FROM report") == len(sent)
    assert len({report_id for report_id, _ in accepted.values()}) == len(sent)
    photos = sum(1 for n in sent.values() if n % 2)
    assert await _count(database_url, "SELECT count(*) FROM photo") == photos


async def _originals(database_url: str, report_ids: list[str]) -> list[str]:
    """The original photo keys of these reports, one per report (each sent one photo)."""
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        rows = await (
            await connection.execute(
                "SELECT p.original_key FROM photo p JOIN report r ON r.id = p.report_id"
                " WHERE r.public_id = ANY(%s::uuid[])",
                (report_ids,),
            )
        ).fetchall()
    assert len(rows) == len(report_ids), rows
    return [row[0] for row in rows]


# -- photo storage full, then read-only --------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real, small filesystem (tmpfs) at ``path``: root only."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the suite runs as root in CI)")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)
    return filler


async def _remount(path: Path, mode: str) -> None:
    await asyncio.to_thread(
        subprocess.run, ["mount", "-o", f"remount,{mode}", str(path)], check=True
    )


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {"filler"}


def _photo_form(n: int, photo: bytes) -> dict[str, Any]:
    return {
        "files": [
            ("report", (None, orjson.dumps(_body(n)), "application/json")),
            ("photos", ("photo.jpg", photo, "image/jpeg")),
        ]
    }


@pytest.mark.usefixtures("city")
async def test_full_or_read_only_photo_storage_is_a_clear_503_and_keeps_nothing_half_stored(
    database_url: str, tmp_path: Path
) -> None:
    photo = jpeg((1200, 900))
    with (
        _tmpfs(tmp_path / "media", "2m") as media,
        kerbside_process(
            database_url, tmp_path / "serve.log", KERBSIDE_MEDIA_DIR=str(media), **NO_LIMITS
        ) as server,
    ):
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            stored = await http.post("/v1/reports", **_photo_form(1, photo))
            assert stored.status_code == 201, stored.text
            files_before = _files(media)
            assert files_before  # the original waits for the worker
            reports = "SELECT count(*) FROM report"
            photos = "SELECT count(*) FROM photo"
            counts = (await _count(database_url, reports), await _count(database_url, photos))

            async def refused(why: str) -> None:
                answer = await http.post(
                    "/v1/reports", **_photo_form(2, photo), headers={"Idempotency-Key": "full-1"}
                )
                assert answer.status_code == 503, (why, answer.text)
                assert answer.headers["content-type"] == PROBLEM
                assert int(answer.headers["retry-after"]) > 0
                problem = answer.json()
                assert "photo storage" in problem["detail"], problem
                assert str(media) not in answer.text  # the path is for the log
                # Nothing half-stored: no report, no photo row, no file, no temporary file.
                assert (
                    await _count(database_url, reports),
                    await _count(database_url, photos),
                ) == counts, why
                assert _files(media) == files_before, why

            filler = _fill(media)
            await refused("disk full")
            filler.unlink()
            await _remount(media, "ro")
            await refused("read-only")
            await _remount(media, "rw")

            # Storage back: the same retry (same key) is filed; the refusals kept no key.
            again = await http.post(
                "/v1/reports", **_photo_form(2, photo), headers={"Idempotency-Key": "full-1"}
            )
            assert again.status_code == 201, again.text
            assert "idempotent-replayed" not in again.headers
    log = (tmp_path / "serve.log").read_text()
    assert "No space left on device" in log
    assert "Read-only file system" in log


# -- slow clients ------------------------------------------------------------------------------


async def _slow_headers(port: int, stop: asyncio.Event, cut: list[int]) -> None:
    """Slowloris: request headers a byte every 0.3 s, reconnecting whenever cut off."""
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"POST /v1/reports HTTP/1.1\r\nHost: kerbside\r\nX-Slow: ")
            while not stop.is_set():
                await writer.drain()
                if reader.at_eof() or writer.is_closing():
                    break
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1), 0.3) == b"":
                        cut.append(1)  # the server closed it: the header deadline
                        break
                writer.write(b"a")
        except (ConnectionError, OSError):
            cut.append(1)
        finally:
            writer.close()


async def _slow_body(port: int, stop: asyncio.Event, open_at_end: list[int]) -> None:
    """A photo upload whose headers arrive at once and whose body trickles (1 KB / 0.3 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    boundary = "slowboundary"
    head = (
        f"POST /v1/reports HTTP/1.1\r\nHost: kerbside\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: 4000000\r\n\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="photos"; filename="p.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    writer.write(head.encode())
    try:
        while not stop.is_set():
            writer.write(b"\xff" * 1024)
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1), 0.3) == b"":
                    return  # cut off
        open_at_end.append(1)
    except (ConnectionError, OSError):
        return
    finally:
        writer.close()


async def _latencies(http: httpx.AsyncClient, rounds: int) -> list[float]:
    """Seconds per request of an ordinary client: a map page and a report, in turn."""
    bbox = "{},{},{},{}".format(
        *offset_lonlat(*CITY.center, -500, -500), *offset_lonlat(*CITY.center, 500, 500)
    )
    seconds = []
    for n in range(rounds):
        started = time.monotonic()
        if n % 2:
            answer = await http.post("/v1/reports", json=_body(5000 + n))
            assert answer.status_code == 201, answer.text
        else:
            answer = await http.get("/v1/tickets.geojson", params={"bbox": bbox})
            assert answer.status_code == 200, answer.text
        seconds.append(time.monotonic() - started)
    return seconds


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


@pytest.mark.usefixtures("city")
async def test_slow_clients_holding_connections_do_not_starve_the_others(
    database_url: str, tmp_path: Path
) -> None:
    # Two database connections only: a slow upload holding one would starve everyone.
    env = {
        **NO_LIMITS,
        "KERBSIDE_MEDIA_DIR": str(tmp_path / "media"),
        "KERBSIDE_DATABASE_POOL_SIZE": "2",
        "KERBSIDE_DATABASE_MAX_OVERFLOW": "0",
        "KERBSIDE_DATABASE_POOL_TIMEOUT_SECONDS": "2",
        "KERBSIDE_HTTP_HEADER_TIMEOUT_SECONDS": "2",
    }
    with kerbside_process(database_url, tmp_path / "serve.log", **env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            quiet = await _latencies(http, 20)
            stop = asyncio.Event()
            cut: list[int] = []
            open_at_end: list[int] = []
            slow = [asyncio.create_task(_slow_headers(server.port, stop, cut)) for _ in range(30)]
            slow += [
                asyncio.create_task(_slow_body(server.port, stop, open_at_end)) for _ in range(30)
            ]
            await asyncio.sleep(3)  # past the header deadline: slowloris cycles by now
            busy = await _latencies(http, 40)
            stop.set()
            await asyncio.gather(*slow)
    # The attack was real: 30 uploads still open at the end (bodies are not timed), and the
    # slow headers were cut at their deadline and came back.
    assert len(open_at_end) == 30
    assert len(cut) >= 30
    # Nobody else waited on them: every request answered, and quickly.
    assert _p95(busy) < max(1.0, 10 * _p95(quiet)), (quiet, busy)
