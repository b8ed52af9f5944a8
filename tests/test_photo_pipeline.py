"""Photos are accepted at once and processed afterwards: pending → ready | failed.

The request only checks an upload and keeps it privately, and inserting its row defers a
``process_photo`` job in the report's transaction; ``kerbside worker`` makes the stored files
later. Most tests drive that processing directly (``PhotoPipeline.process_one``, what the job
runs) inside the test's rolled-back transaction; the last ones run real workers on committed
reports, and one kills a worker process in the middle of a photo.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import sys
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from PIL import Image, ImageFile
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from starlette.requests import Request

from app.core.jobs import PROCESS_PHOTO
from app.core.multipart import Part, read_parts
from app.jobs import tasks
from app.jobs.queue import queue
from app.jobs.worker import open_queue
from app.jurisdictions.models import Jurisdiction, Service
from app.main import create_app
from app.media.processing import ProcessedPhoto
from app.media.service import PhotoPipeline
from app.settings import PROJECT_ROOT, Settings, to_sqlalchemy_url
from geo.distance import offset_lonlat
from tests.factories import CITY, make_jurisdiction, make_service
from tests.images import jpeg, without_jpeg_segment
from tests.jobs_support import drain, jobs_of

CENTER = CITY.center
PROBLEM = "application/problem+json"
BASE = "http://127.0.0.1:8000"


@pytest.fixture
async def city(db: AsyncSession) -> Jurisdiction:
    return await make_jurisdiction(db, slug="photoville")


@pytest.fixture
async def pothole(db: AsyncSession, city: Jurisdiction) -> Service:
    return await make_service(db, city, "pothole", duplicate_radius_m=30.0)


def _form(photo: bytes, **report: Any) -> dict[str, Any]:
    payload = {"service_code": "pothole", **report}
    if "location" not in report:
        payload["location"] = {"lon": CENTER[0], "lat": CENTER[1]}
    return {
        "files": [
            ("report", (None, orjson.dumps(payload), "application/json")),
            ("photos", ("photo.jpg", photo, "image/jpeg")),
        ]
    }


async def _submit(client: httpx.AsyncClient, photo: bytes, **report: Any) -> dict[str, Any]:
    response = await client.post("/v1/reports", **_form(photo, **report))
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _row(db: AsyncSession, public_id: str) -> Any:
    return (
        await db.execute(
            text("SELECT * FROM photo WHERE public_id = :id"), {"id": uuid.UUID(public_id)}
        )
    ).one()


def _path(settings: Settings, key: str) -> Path:
    return settings.media_dir.joinpath(*key.split("/"))


def _local(url: str) -> str:
    return url.replace(BASE, "")


async def _process(app: FastAPI, db: AsyncSession) -> int:
    """Run what each pending photo's job runs; returns how many photos it finished."""
    pipeline: PhotoPipeline = app.state.photos
    pending = (
        await db.execute(text("SELECT public_id FROM photo WHERE status = 'pending' ORDER BY id"))
    ).scalars()
    return sum([await pipeline.process_one(db, public_id) is not None for public_id in pending])


# -- accepting ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("pothole")
async def test_upload_is_accepted_without_decoding_and_answers_pending(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lon, lat = offset_lonlat(*CENTER, 40.0, -30.0)
    upload = jpeg((4000, 3000), lon=lon, lat=lat, orientation=6)  # a 12 MP phone photo

    def must_not_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("the request decoded the photo")

    monkeypatch.setattr(ImageFile.ImageFile, "load", must_not_decode)
    response = await client.post("/v1/reports", **_form(upload, location=None))
    monkeypatch.undo()

    assert response.status_code == 201, response.text
    assert re.fullmatch(r"accept;dur=\d+\.\d", response.headers["server-timing"])
    report = response.json()["report"]
    assert report["location_source"] == "exif"  # GPS read from the header
    assert report["location"]["lon"] == pytest.approx(lon, abs=1e-6)
    photo = report["photos"][0]
    assert photo["status"] == "pending"
    # The stored size is promised now: 1/2-scale decode (2000x1500), then turned upright.
    assert (photo["width"], photo["height"]) == (1500, 2000)

    row = await _row(db, photo["id"])
    assert (row.status, row.attempts, row.bytes, row.sha256) == ("pending", 0, None, None)
    # Its job was deferred in the report's transaction (the photo trigger).
    job = (
        await db.execute(
            text("SELECT task_name, queue_name, args, lock, status FROM procrastinate_jobs")
        )
    ).one()
    task = queue.tasks[PROCESS_PHOTO]
    assert (job.task_name, job.queue_name, job.status) == (task.name, task.queue, "todo")
    assert job.args == {"public_id": photo["id"]}
    assert job.lock == f"photo:{photo['id']}"
    assert row.original_key.startswith("originals/")
    assert _path(settings, row.original_key).read_bytes() == upload  # kept as it came
    assert not _path(settings, row.storage_key).exists()

    for url in (photo["url"], photo["thumbnail_url"]):
        pending = await client.get(_local(url))
        assert pending.status_code == 503
        assert pending.headers["content-type"] == PROBLEM
        assert pending.headers["retry-after"] == "2"
        assert pending.headers["cache-control"] == "no-store"
        assert pending.json()["type"] == "https://kerbside.dev/problems/photo-processing"
        assert "still being processed" in pending.json()["detail"]

    seen = (await client.get(f"/v1/reports/{report['id']}")).json()
    assert seen["photos"][0]["status"] == "pending"
    ticket = (await client.get(f"/v1/tickets/{report['ticket_reference']}")).json()
    assert ticket["reports"][0]["photos"][0]["status"] == "pending"


# -- processing -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("pothole")
async def test_a_full_backlog_refuses_photos_before_storing_anything(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"photo_max_pending": 2})
    await _submit(client, jpeg())
    await _submit(client, jpeg())  # two photos pending: the limit
    originals = settings.media_dir / "originals"
    kept_before = {p for p in originals.rglob("*") if p.is_file()}
    reports_before = (await db.execute(text("SELECT count(*) FROM report"))).scalar_one()

    refused = await client.post("/v1/reports", **_form(jpeg()))
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "60"
    assert refused.json()["type"].endswith("/photo-backlog-full")
    # No new original was stored (processing may meanwhile remove some: a subset, then).
    assert {p for p in originals.rglob("*") if p.is_file()} <= kept_before
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == reports_before
    # A report without photos still goes in.
    plain = await client.post(
        "/v1/reports",
        json={"service_code": "pothole", "location": {"lon": CENTER[0], "lat": CENTER[1]}},
    )
    assert plain.status_code == 201, plain.text


@pytest.mark.usefixtures("pothole")
async def test_processing_makes_stripped_upright_files_and_deletes_the_original(
    client: httpx.AsyncClient, app: FastAPI, db: AsyncSession, settings: Settings
) -> None:
    upload = jpeg((1200, 900), lon=CENTER[0], lat=CENTER[1], orientation=6)
    headers = {"Idempotency-Key": "photo-1"}
    first = await client.post("/v1/reports", **_form(upload), headers=headers)
    assert first.status_code == 201
    photo = first.json()["report"]["photos"][0]
    original_key = (await _row(db, photo["id"])).original_key

    assert await _process(app, db) == 1
    pipeline: PhotoPipeline = app.state.photos
    assert await pipeline.process_one(db, uuid.UUID(photo["id"])) is None  # done already

    row = await _row(db, photo["id"])
    assert (row.status, row.attempts, row.original_key) == ("ready", 1, None)
    assert not _path(settings, original_key).exists()
    stored = await client.get(_local(photo["url"]))
    assert stored.status_code == 200
    assert row.bytes == len(stored.content)
    image = Image.open(io.BytesIO(stored.content))
    assert image.size == (photo["width"], photo["height"]) == (900, 1200)
    assert not image.getexif()
    assert b"KerbCam" not in stored.content
    # The gradient ran dark (top) to light (bottom); turned upright it runs light to dark.
    grey = image.convert("L")
    left, right = grey.getpixel((50, 600)), grey.getpixel((850, 600))
    assert isinstance(left, int)
    assert isinstance(right, int)
    assert left > 200 > 50 > right
    thumb = await client.get(_local(photo["thumbnail_url"]))
    assert Image.open(io.BytesIO(thumb.content)).size == (300, 400)

    # A retry replays the first answer byte for byte, pending as it was then.
    again = await client.post("/v1/reports", **_form(upload), headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    report = (await client.get(f"/v1/reports/{first.json()['report']['id']}")).json()
    assert report["photos"][0]["status"] == "ready"


@pytest.mark.usefixtures("pothole")
async def test_a_photo_that_fails_to_decode_ends_failed_with_the_reason(
    client: httpx.AsyncClient, app: FastAPI, db: AsyncSession, settings: Settings
) -> None:
    # Whole on the outside (header, scan, end marker) so the request accepts it; no
    # quantization tables, so decoding fails.
    broken = without_jpeg_segment(jpeg((640, 480)), 0xDB)
    report = (await _submit(client, broken))["report"]
    photo = report["photos"][0]
    assert photo["status"] == "pending"
    original_key = (await _row(db, photo["id"])).original_key

    assert await _process(app, db) == 1

    row = await _row(db, photo["id"])
    assert (row.status, row.original_key) == ("failed", None)
    assert "damaged or incomplete" in row.failure
    assert not _path(settings, original_key).exists()
    assert not _path(settings, row.storage_key).exists()
    event = (
        await db.execute(
            text("SELECT * FROM ticket_event WHERE kind = 'photo_added' AND report_id = :r"),
            {"r": row.report_id},
        )
    ).one()
    assert event.public is False  # staff see why; the public does not
    assert event.data == {"photo": photo["id"], "status": "failed", "reason": "corrupt_image"}
    assert "damaged or incomplete" in event.note

    gone = await client.get(_local(photo["url"]))
    assert gone.status_code == 410
    assert gone.json()["type"] == "https://kerbside.dev/problems/photo-failed"
    ticket = (await client.get(f"/v1/tickets/{report['ticket_reference']}")).json()
    assert ticket["reports"][0]["photos"][0]["status"] == "failed"
    assert "photo_added" not in {entry["kind"] for entry in ticket["timeline"]}


@pytest.mark.usefixtures("pothole")
async def test_a_missing_original_fails_the_photo(
    client: httpx.AsyncClient, app: FastAPI, db: AsyncSession, settings: Settings
) -> None:
    photo = (await _submit(client, jpeg((64, 48))))["report"]["photos"][0]
    _path(settings, (await _row(db, photo["id"])).original_key).unlink()
    assert await _process(app, db) == 1
    row = await _row(db, photo["id"])
    assert row.status == "failed"
    assert "missing from storage" in row.failure


# -- nothing accepted is lost ------------------------------------------------------------------


@pytest.mark.usefixtures("pothole")
async def test_the_sweep_defers_a_job_for_a_photo_left_without_one(
    client: httpx.AsyncClient, app: FastAPI, db: AsyncSession
) -> None:
    photo = (await _submit(client, jpeg((640, 480))))["report"]["photos"][0]
    pipeline: PhotoPipeline = app.state.photos
    assert await pipeline.sweep(db) == 0  # its job is waiting
    # Its job failed for good (storage away through every retry): the photo is still pending.
    await db.execute(text("UPDATE procrastinate_jobs SET status = 'failed'"))
    await db.commit()
    assert await pipeline.sweep(db) == 1
    assert await pipeline.sweep(db) == 0  # one job waits again; not two
    jobs = (
        await db.execute(
            text("SELECT status, args FROM procrastinate_jobs WHERE task_name = :t ORDER BY id"),
            {"t": PROCESS_PHOTO},
        )
    ).all()
    assert [(j.status, j.args["public_id"]) for j in jobs] == [
        ("failed", photo["id"]),
        ("todo", photo["id"]),
    ]
    assert await _process(app, db) == 1
    assert (await _row(db, photo["id"])).status == "ready"


@pytest.mark.usefixtures("pothole")
async def test_a_photo_that_keeps_crashing_its_worker_is_given_up(
    client: httpx.AsyncClient, app: FastAPI, db: AsyncSession, settings: Settings
) -> None:
    photo = (await _submit(client, jpeg((64, 48))))["report"]["photos"][0]
    original_key = (await _row(db, photo["id"])).original_key
    # Every try so far died before finishing (an out-of-memory kill, say).
    await db.execute(text("UPDATE photo SET attempts = :n"), {"n": settings.photo_max_attempts})
    await db.commit()
    assert await _process(app, db) == 1
    row = await _row(db, photo["id"])
    assert (row.status, row.original_key) == ("failed", None)
    assert f"tried {settings.photo_max_attempts} times" in row.failure
    assert not _path(settings, original_key).exists()
    reason = (
        await db.execute(
            text("SELECT data->>'reason' FROM ticket_event WHERE kind = 'photo_added'")
        )
    ).scalar_one()
    assert reason == "gave_up"


@pytest.mark.usefixtures("pothole")
async def test_originals_left_behind_by_a_finished_photo_are_deleted(
    client: httpx.AsyncClient, app: FastAPI, db: AsyncSession, settings: Settings
) -> None:
    photo = (await _submit(client, jpeg((64, 48))))["report"]["photos"][0]
    row = await _row(db, photo["id"])
    # Marked ready, then the process died before deleting the upload.
    await db.execute(text("UPDATE photo SET status = 'ready' WHERE id = :id"), {"id": row.id})
    await db.commit()
    assert _path(settings, row.original_key).exists()
    assert await app.state.photos.sweep(db) == 0
    assert not _path(settings, row.original_key).exists()
    assert (await _row(db, photo["id"])).original_key is None


# -- real parallel connections -----------------------------------------------------------------


@pytest.fixture
async def live_app(
    settings: Settings, database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> AsyncIterator[FastAPI]:
    """The app on a real pool: every request its own connection and its own commit."""
    async with committed_db() as session, session.begin():
        city = await make_jurisdiction(session, slug="photoville")
        await make_service(session, city, "pothole", duplicate_radius_m=5.0)
    engine = create_async_engine(to_sqlalchemy_url(database_url), pool_size=10, max_overflow=0)
    app = create_app(
        settings.model_copy(update={"rate_limit_reports_per_minute": 0, "photo_threads": 2})
    )
    app.state.engine = engine
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    try:
        yield app
    finally:
        await engine.dispose()


async def _post_photos(app: FastAPI, count: int) -> list[str]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        ids = []
        for i in range(count):
            lon, lat = offset_lonlat(*CENTER, 20.0 * i, 0.0)
            upload = jpeg((320 + i, 240))  # each one different
            report = await _submit(client, upload, location={"lon": lon, "lat": lat})
            ids.append(report["report"]["photos"][0]["id"])
        return ids


async def _statuses(
    committed_db: async_sessionmaker[AsyncSession], ids: list[str]
) -> list[tuple[str, int]]:
    async with committed_db() as session:
        rows = (
            await session.execute(
                text("SELECT status, attempts FROM photo WHERE public_id = ANY(:ids)"),
                {"ids": [uuid.UUID(i) for i in ids]},
            )
        ).all()
    return sorted((r.status, r.attempts) for r in rows)


@pytest.mark.slow
async def test_the_worker_processes_photos_uploaded_with_a_report(
    live_app: FastAPI, settings: Settings, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _post_photos(live_app, 3)
    assert await _statuses(committed_db, ids) == [("pending", 0)] * 3
    await drain(settings, queues=["photos"])
    assert await _statuses(committed_db, ids) == [("ready", 1)] * 3
    jobs = await jobs_of(committed_db, PROCESS_PHOTO)
    assert sorted(j.args["public_id"] for j in jobs) == sorted(ids)
    assert {j.status for j in jobs} == {"succeeded"}


@pytest.mark.slow
async def test_two_workers_never_process_one_photo_twice(
    live_app: FastAPI, settings: Settings, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _post_photos(live_app, 12)
    decoded: Counter[str] = Counter()
    workers = [PhotoPipeline(settings), PhotoPipeline(settings)]
    by_worker: Counter[int] = Counter()

    for n, worker in enumerate(workers):
        real = worker.decode

        async def counted(data: bytes, n: int = n, real: Any = real) -> ProcessedPhoto:
            photo = await real(data)
            decoded[photo.sha256] += 1
            by_worker[n] += 1
            await asyncio.sleep(0.02)  # hold the job a while, so the two overlap
            return photo

        worker.decode = counted  # type: ignore[method-assign]

    try:
        await drain(settings, queues=["photos"], photos=workers)
    finally:
        for worker in workers:
            worker.close()
    assert sum(by_worker.values()) == 12
    assert len(by_worker) == 2  # both took part
    assert await _statuses(committed_db, ids) == [("ready", 1)] * 12
    assert len(decoded) == 12
    assert set(decoded.values()) == {1}


# A worker whose decoding never ends: the test kills it in the middle of a photo.
_HANGING_WORKER = """
import asyncio, sys
from pathlib import Path
from app.jobs.worker import run_worker
from app.media.service import PhotoPipeline
from app.settings import Settings

async def hang(self, data):
    Path(sys.argv[3]).touch()  # the photo is in hand
    await asyncio.sleep(3600)

PhotoPipeline.decode = hang
settings = Settings(
    env="test", database_url=sys.argv[1], media_dir=sys.argv[2], log_json=False,
    log_level="WARNING", worker_heartbeat_seconds=0.2,
)
asyncio.run(run_worker(settings, concurrency=1))
"""


@pytest.mark.slow
async def test_a_photo_whose_worker_was_killed_is_processed_once_by_the_next(
    live_app: FastAPI,
    settings: Settings,
    committed_db: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    [photo_id] = await _post_photos(live_app, 1)
    in_hand = tmp_path / "in-hand"
    assert settings.database_url is not None
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HANGING_WORKER,
        settings.database_url,
        str(settings.media_dir),
        str(in_hand),
        cwd=PROJECT_ROOT,
    )
    try:
        for _ in range(300):
            if in_hand.exists() or worker.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert in_hand.exists(), "the worker never took the photo"
        [job] = await jobs_of(committed_db, PROCESS_PHOTO)
        assert job.status == "doing"
    finally:
        worker.kill()  # SIGKILL: no goodbye, the job stays "doing"
        await worker.wait()
    assert await _statuses(committed_db, [photo_id]) == [("pending", 1)]

    # The next worker finds the dead one's heartbeat old and runs its job again.
    await asyncio.sleep(1.2)
    decoded: Counter[str] = Counter()
    pipeline = PhotoPipeline(settings)
    real = pipeline.decode

    async def counted(data: bytes) -> ProcessedPhoto:
        photo = await real(data)
        decoded[photo.sha256] += 1
        return photo

    pipeline.decode = counted  # type: ignore[method-assign]
    quick = settings.model_copy(update={"worker_stalled_after_seconds": 1.0})
    try:
        async with open_queue(quick):
            # (unless the killed worker's own periodic deferrer queued it already)
            with contextlib.suppress(AlreadyEnqueued):
                await tasks.retry_stalled_jobs.defer_async(timestamp=0)
        await drain(quick, photos=[pipeline])  # retries the stalled job
        await drain(quick, queues=["photos"], photos=[pipeline])
    finally:
        pipeline.close()
    # Processed exactly once: two tries started (the killed one counted), one finished.
    assert await _statuses(committed_db, [photo_id]) == [("ready", 2)]
    assert list(decoded.values()) == [1]
    [job] = await jobs_of(committed_db, PROCESS_PHOTO)
    assert (job.status, job.attempts) == ("succeeded", 2)  # one job: the killed run, this one
    async with committed_db() as session:
        row = await _row(session, photo_id)
    assert row.original_key is None
    assert _path(settings, row.storage_key).exists()


# -- the multipart body --------------------------------------------------------------------------


async def _parts_of(body: bytes, boundary: str, chunk: int, **limits: int) -> list[Part]:
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]

    async def receive() -> dict[str, Any]:
        data = pieces.pop(0) if pieces else b""
        return {"type": "http.request", "body": data, "more_body": bool(pieces)}

    content_type = f"multipart/form-data; boundary={boundary}".encode()
    request = Request({"type": "http", "headers": [(b"content-type", content_type)]}, receive)
    return await read_parts(
        request, **{"max_files": 3, "max_fields": 3, "max_file_bytes": 10_000, **limits}
    )


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
async def test_multipart_parts_survive_any_chunking(chunk: int) -> None:
    photo = jpeg((64, 48))
    request = httpx.Request("POST", "http://x/", **_form(photo))
    body = request.read()
    boundary = request.headers["content-type"].split("boundary=")[1]
    report, upload = await _parts_of(body, boundary, chunk)
    assert (report.name, report.filename, report.is_file) == ("report", None, False)
    assert orjson.loads(report.data)["service_code"] == "pothole"
    assert (upload.name, upload.filename, upload.content_type) == (
        "photos",
        "photo.jpg",
        "image/jpeg",
    )
    assert upload.data == photo
    assert upload.size == len(photo)


async def test_multipart_keeps_a_file_only_up_to_one_byte_over_its_limit() -> None:
    request = httpx.Request("POST", "http://x/", **_form(b"x" * 50_000))
    boundary = request.headers["content-type"].split("boundary=")[1]
    _, upload = await _parts_of(request.read(), boundary, 4096, max_file_bytes=1000)
    assert (upload.size, len(upload.data)) == (50_000, 1001)


@pytest.mark.usefixtures("pothole")
async def test_oversized_and_malformed_multipart_bodies(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    big = b"\xff\xd8\xff" + b"\x00" * settings.max_photo_bytes
    response = await client.post("/v1/reports", **_form(big))
    assert response.status_code == 413
    assert response.json()["errors"] == [
        {"field": "photos[0]", "message": "too large", "type": "too_large_bytes"}
    ]
    bomb = client.post("/v1/reports", **_form(_png_bomb(10_000, 10_000)))
    assert (await bomb).json()["errors"][0]["type"] == "too_many_pixels"

    no_boundary = await client.post(
        "/v1/reports", content=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 400
    assert no_boundary.headers["content-type"] == PROBLEM
    huge_field = await client.post(
        "/v1/reports", files=[("report", (None, b"{" + b" " * (1 << 20) + b"}", "text/plain"))]
    )
    assert huge_field.status_code == 400
    assert "1024 KiB" in huge_field.json()["detail"]
    too_many = [("photos", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(8)]
    assert (await client.post("/v1/reports", files=too_many)).status_code == 400
    not_a_file = await client.post(
        "/v1/reports",
        data={"photos": "a photo"},
        files=[("report", (None, orjson.dumps({"service_code": "pothole"}), "application/json"))],
    )
    assert not_a_file.status_code == 422
    assert not_a_file.json()["errors"][0]["type"] == "type_error"
    assert (await db.execute(text("SELECT count(*) FROM photo"))).scalar_one() == 0


def _png_bomb(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
        )

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.usefixtures("pothole")
async def test_storage_trouble_leaves_the_photo_pending_without_counting_the_try(
    client: httpx.AsyncClient,
    app: FastAPI,
    db: AsyncSession,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photo = (await _submit(client, jpeg((64, 48))))["report"]["photos"][0]
    pipeline: PhotoPipeline = app.state.photos

    async def unreachable(key: str, data: bytes, content_type: str) -> None:
        raise OSError("storage unreachable")

    monkeypatch.setattr(pipeline.storage, "put", unreachable)
    with pytest.raises(OSError, match="unreachable"):  # the job fails: procrastinate retries
        await pipeline.process_one(db, uuid.UUID(photo["id"]))
    row = await _row(db, photo["id"])
    assert (row.status, row.attempts) == ("pending", 0)
    assert _path(settings, row.original_key).exists()
    monkeypatch.undo()
    assert await _process(app, db) == 1
    assert (await _row(db, photo["id"])).status == "ready"
    assert queue.tasks[PROCESS_PHOTO].retry_strategy is not None


# -- storage that cannot be written ---------------------------------------------------------------


@pytest.mark.usefixtures("pothole")
async def test_unusable_photo_storage_is_a_clear_503_and_no_half_stored_report(
    settings: Settings,
    engine: Any,
    sessionmaker: Any,
    db: AsyncSession,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "media"
    blocker.write_text("a file where the media directory should be")
    app = create_app(settings.model_copy(update={"media_dir": blocker}))
    app.state.engine, app.state.sessionmaker = engine, sessionmaker
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/v1/reports", **_form(jpeg()))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "retry-after" in response.headers
    assert "photo storage" in response.json()["detail"]
    assert str(blocker) not in response.text  # the path is for the log, not the client
    assert any(
        "photo storage" in r.getMessage() and str(blocker) in r.getMessage() for r in caplog.records
    )
    reports = (await db.execute(text("SELECT count(*) FROM report"))).scalar_one()
    assert reports == 0
