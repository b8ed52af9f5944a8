"""The job queue (procrastinate on our PostgreSQL): its schema, deferring inside a caller's
transaction, periodic jobs, and staff mail sent only after the change that asked for it
commits. Workers run for real, in this process, in burst mode (``tests.jobs_support``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from procrastinate.schema import SchemaManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Role
from app.core.jobs import SEND_MAIL, defer
from app.jobs.queue import queue
from app.jobs.tasks import periodic_task_names
from app.jobs.worker import defer_periodic_now, open_queue, run_worker
from app.settings import PROJECT_ROOT, Settings
from app.tickets.service_levels import service_level_job
from tests.factories import CITY, make_jurisdiction, make_service, make_ticket, make_user
from tests.jobs_support import drain, jobs_of
from tests.test_auth import Inbox

VENDORED = PROJECT_ROOT / "migrations" / "sql" / "procrastinate-3.10.0.sql"
# What the Alembic revisions bring procrastinate's schema to (migration 0008: 3.10.0).
QUEUE_SCHEMA = "03.10.00"


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split("_")[0].split("."))


def test_the_migrations_bring_the_queue_to_the_installed_procrastinates_schema() -> None:
    # Migration 0008 runs the vendored text. An upgraded procrastinate brings migrations of
    # its own: each needs an Alembic revision (then move QUEUE_SCHEMA) before it is used.
    migrations = Path(SchemaManager.get_migrations_path())
    newer = sorted(
        p.name for p in migrations.glob("*.sql") if _version(p.name) > _version(QUEUE_SCHEMA)
    )
    assert newer == [], f"add an Alembic revision running procrastinate's {newer}"
    if metadata.version("procrastinate") == "3.10.0":
        assert VENDORED.read_text() == SchemaManager.get_schema()


def test_every_periodic_job_is_locked_against_itself() -> None:
    names = periodic_task_names()
    assert {"service_levels", "sweep_photos", "refresh_map_grid", "purge_idempotency"} <= set(names)
    for name in names:
        task = queue.tasks[name]
        # At most one waiting (queueing lock) and at most one running (lock), whatever the
        # number of workers.
        assert task.lock == task.queueing_lock == name


async def test_a_job_deferred_in_a_rolled_back_transaction_does_not_exist(
    committed_db: async_sessionmaker[AsyncSession],
) -> None:
    mail = {"to": "a@example.org", "subject": "s", "body": "b"}
    async with committed_db() as session:
        await session.begin()
        assert await defer(session, SEND_MAIL, mail, queue="mail") is not None
        await session.rollback()
    assert await jobs_of(committed_db, SEND_MAIL) == []

    async with committed_db() as session, session.begin():
        job_id = await defer(session, SEND_MAIL, mail, queue="mail")
    [job] = await jobs_of(committed_db, SEND_MAIL)
    assert (job.id, job.status, job.args) == (job_id, "todo", mail)


async def test_a_queueing_lock_already_waiting_keeps_the_callers_transaction(
    db: AsyncSession,
) -> None:
    first = await defer(db, "refresh_map_grid", queueing_lock="grid-test")
    assert first is not None
    assert await defer(db, "refresh_map_grid", queueing_lock="grid-test") is None
    # The transaction goes on (a savepoint took the unique violation).
    assert (await db.execute(text("SELECT 1"))).scalar_one() == 1


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


async def test_service_level_mail_is_sent_by_the_worker_only_after_the_commit(
    committed_db: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    mail_settings = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False}
    )
    now = datetime.now(UTC)
    async with committed_db() as session, session.begin():
        city = await make_jurisdiction(session, slug="mailtown")
        pothole = await make_service(session, city, "pothole")
        await make_user(session, role=Role.staff, jurisdiction=city, email="duty@mailtown.example")
        ticket = await make_ticket(
            session, city, pothole, *CITY.center, reported_at=now - timedelta(days=3)
        )
        ticket.sla_next_at = now - timedelta(minutes=1)

    # The sweep records the breach and queues the mail, then its transaction fails.
    async with committed_db() as session:
        await session.begin()
        assert await service_level_job(session) >= 1
        await drain(mail_settings, queues=["mail"])  # the worker cannot see it yet
        assert inbox.messages == []
        await session.rollback()
    await drain(mail_settings, queues=["mail"])
    assert inbox.messages == []
    assert await jobs_of(committed_db, SEND_MAIL) == []

    # The next sweep records it again, commits, and only then is the mail sent: once.
    async with committed_db() as session, session.begin():
        assert await service_level_job(session) >= 1
    await drain(mail_settings, queues=["mail"])
    [message] = inbox.messages
    assert message["To"] == "duty@mailtown.example"
    assert "overdue" in message["Subject"]
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert ticket.reference in body.get_content()
    assert [job.status for job in await jobs_of(committed_db, SEND_MAIL)] == ["succeeded"]


async def test_a_mail_server_away_is_retried_later(
    committed_db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens there once the probe closes
    away = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": closed_port, "smtp_timeout_seconds": 2}
    )
    async with committed_db() as session, session.begin():
        await defer(
            session, SEND_MAIL, {"to": "a@x.org", "subject": "s", "body": "b"}, queue="mail"
        )
    await drain(away, queues=["mail"])
    [job] = await jobs_of(committed_db, SEND_MAIL)
    assert (job.status, job.attempts) == ("todo", 1)  # scheduled again, a little later
    async with committed_db() as session:
        later = (
            await session.execute(
                text("SELECT scheduled_at > now() FROM procrastinate_jobs WHERE id = :id"),
                {"id": job.id},
            )
        ).scalar_one()
    assert later


async def test_the_burst_worker_runs_every_periodic_job(
    committed_db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with committed_db() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO idempotency_record (principal, key, request_hash, expires_at)"
                " VALUES ('anon', 'old', 'h', now() - interval '1 minute')"
            )
        )
        city = await make_jurisdiction(session, slug="gridtown")
        await make_ticket(session, city, await make_service(session, city), *CITY.center)
        await session.execute(text("DELETE FROM ticket_grid_refreshed"))

    # `kerbside worker --once`
    await run_worker(settings, once=True, install_signal_handlers=False)

    for name in periodic_task_names():
        assert "succeeded" in {job.status for job in await jobs_of(committed_db, name)}, name
    async with committed_db() as session:
        left, built, gridded = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM idempotency_record),"
                    " (SELECT count(*) FROM ticket_grid_refreshed),"
                    " (SELECT coalesce(sum(n), 0) FROM ticket_grid"
                    "  WHERE level = 10 AND jurisdiction_id = :j AND status = '')"
                ),
                {"j": city.id},
            )
        ).one()
    assert (left, built) == (0, 1)
    assert gridded >= 1
    # While one waits, a periodic job is not deferred again.
    async with open_queue(settings) as app:
        assert await defer_periodic_now(app) == periodic_task_names()
        assert await defer_periodic_now(app) == []


async def test_kerbside_worker_once_runs_what_is_due_and_exits(
    database_url: str, committed_db: async_sessionmaker[AsyncSession]
) -> None:
    result = subprocess.run(  # noqa: ASYNC221  (the command must end before anything else)
        [sys.executable, "-m", "app.cli", "worker", "--once"],
        env={
            **os.environ,
            "KERBSIDE_DATABASE_URL": database_url,
            "KERBSIDE_LOG_JSON": "false",
            "KERBSIDE_LOG_LEVEL": "WARNING",
        },
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name in periodic_task_names():
        assert "succeeded" in {job.status for job in await jobs_of(committed_db, name)}, name
