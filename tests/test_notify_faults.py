"""Delivery survives faults of real processes, counted at a webhook receiver that verifies
every signature and dedupes by ``webhook-id`` (the outbox row's id):

- a ``kerbside worker`` SIGKILLed in the middle of a batch: after a restart every message
  arrives, and the only ones that arrive twice are the ones that were in flight when it died
  (at least once; a provider that dedupes by the idempotency key shows each once);
- PostgreSQL stopped and started under a running worker: the same worker process delivers
  everything, and what is queued after the restart, by itself.

Each test has a cluster of its own (one is restarted), shared by the module.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.auth.models import Role
from app.auth.principal import Principal
from app.embedded import EmbeddedCluster, throwaway_cluster
from app.jurisdictions.catalog import Catalog
from app.migrations import upgrade_to_head
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.settings import PROJECT_ROOT, to_sqlalchemy_url
from app.tickets import workflow
from app.tickets.models import TicketStatus
from geo.distance import offset_lonlat
from tests.factories import CITY, make_jurisdiction, make_service
from tests.fakes.http import FakeServer, Received, Reply
from tests.fakes.webhooks import WebhookReceiver

pytestmark = pytest.mark.slow

SECRET = "whsec_" + "a2Vyc2lkZS1mYXVsdC10ZXN0LXNlY3JldC0zMi1ieXRlcyE="
STAFF = Principal(kind="user", role=Role.admin, label="fault-test")
PEOPLE = 90
BATCH = 30


class SlowReceiver:
    """The verifying receiver, answering after ``delay`` seconds (threads: many at once)."""

    def __init__(self) -> None:
        self.receiver = WebhookReceiver(SECRET)
        self.delay = 0.0
        self._lock = threading.Lock()

    def __call__(self, request: Received) -> Reply:
        time.sleep(self.delay)
        with self._lock:
            return self.receiver(request)

    @property
    def ids(self) -> list[str]:
        with self._lock:
            return list(self.receiver.seen_ids)


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    made = throwaway_cluster()
    try:
        upgrade_to_head(made.ensure_running())
        yield made
    finally:
        made.destroy()


@pytest.fixture
async def sessions(cluster: EmbeddedCluster) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(to_sqlalchemy_url(cluster.url), pool_pre_ping=True)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


@pytest.fixture
def fake() -> Iterator[tuple[FakeServer, SlowReceiver]]:
    handler = SlowReceiver()
    server = FakeServer(handler)
    server.start()
    try:
        yield server, handler
    finally:
        handler.delay = 0.0
        server.stop()


async def followed_ticket(
    sessions: async_sessionmaker[AsyncSession], hook: str, slug: str, east_m: float
) -> int:
    """A new ticket ``east_m`` from the centre, followed by ``PEOPLE`` webhook contacts
    (verified, consenting)."""
    async with sessions() as session, session.begin():
        city = await make_jurisdiction(session, slug=slug)
        await make_service(session, city, "pothole")
        filed = await submit_report(
            session,
            Catalog(),
            Submission(
                channel=Channel.x,
                submitter=Submitter(label=f"x:{slug}", identified=True),
                service_code="pothole",
                place=Place(*offset_lonlat(*CITY.center, east_m, 0), LocationSource.post),
                contacts=[],
                updates=False,
            ),
        )
        await session.execute(
            text(
                """
                WITH made AS (
                    INSERT INTO contact (kind, address, data, verified_at)
                    SELECT 'webhook', CAST(:hook AS text) || '?p=' || i,
                           jsonb_build_object('secret', CAST(:secret AS text)), now()
                    FROM generate_series(1, :people) i
                    RETURNING id),
                followed AS (
                    INSERT INTO subscription (ticket_id, contact_id, reason)
                    SELECT CAST(:ticket AS bigint), id, 'follower' FROM made)
                INSERT INTO contact_consent (contact_id, purpose, ticket_id, method, given_at)
                SELECT id, 'ticket_updates', :ticket, 'follow_form', now() FROM made
                """
            ),
            {
                "hook": f"{hook}/{slug}",
                "secret": SECRET,
                "people": PEOPLE,
                "ticket": filed.ticket_id,
            },
        )
        return filed.ticket_id


async def change(sessions: async_sessionmaker[AsyncSession], ticket_id: int, to: str) -> None:
    async with sessions() as session, session.begin():
        await workflow.change_status(session, ticket_id, TicketStatus(to), actor=STAFF)


def worker(url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KERBSIDE_ENV": "test",
        "KERBSIDE_DATABASE_URL": url,
        "KERBSIDE_WEBHOOK_ALLOW_LOOPBACK": "true",
        "KERBSIDE_LOG_LEVEL": "WARNING",
        "KERBSIDE_LOG_JSON": "false",
        "KERBSIDE_CHANNELS_SINK_FILE": str(tmp_path / "sink.jsonl"),
        "KERBSIDE_NOTIFY_BATCH_SIZE": str(BATCH),
        "KERBSIDE_NOTIFY_SEND_CONCURRENCY": "10",
        "KERBSIDE_WORKER_HEARTBEAT_SECONDS": "0.5",
    }
    return subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, cwd=PROJECT_ROOT)


async def until(condition: object, seconds: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(0.05)


async def statuses(sessions: async_sessionmaker[AsyncSession], ticket_id: int) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT status, count(*) AS n FROM notification WHERE ticket_id = :t"
                " GROUP BY status"
            ),
            {"t": ticket_id},
        )
        return {r.status: r.n for r in rows}


async def test_a_worker_killed_mid_batch_loses_nothing_and_resends_only_what_was_in_flight(
    cluster: EmbeddedCluster,
    sessions: async_sessionmaker[AsyncSession],
    fake: tuple[FakeServer, SlowReceiver],
    tmp_path: Path,
) -> None:
    server, receiver = fake
    ticket_id = await followed_ticket(sessions, server.url, "killed", 0)
    receiver.delay = 0.4  # a slow provider: the first batch is still being sent when we kill
    first = worker(cluster.url, tmp_path)
    try:
        await change(sessions, ticket_id, "acknowledged")
        await until(lambda: len(receiver.ids) >= 5, 60, "the worker started sending")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    in_flight = set(receiver.ids)
    assert len(in_flight) < PEOPLE
    await asyncio.sleep(0.5)  # answers to requests of the dead worker still come in
    before_restart = set(receiver.ids)
    # The batch died with its transaction: nothing of it is marked sent.
    assert (await statuses(sessions, ticket_id)).get("sent", 0) == 0

    receiver.delay = 0.0
    second = worker(cluster.url, tmp_path)
    try:
        await until(lambda: len(set(receiver.ids)) >= PEOPLE, 60, "every message delivered")
        # The receiver has every id as soon as the last one the dead worker had in flight is
        # resent or not: wait for the second worker to have marked every row too (on a loaded
        # machine it may still be sending its last batch), then for anything sent twice.
        deadline = time.monotonic() + 60
        while (found := await statuses(sessions, ticket_id)) != {"sent": PEOPLE}:
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # anything sent twice would arrive by now
    finally:
        second.terminate()
        second.wait(timeout=30)
    ids = receiver.ids
    counted = {i: ids.count(i) for i in set(ids)}
    assert len(counted) == PEOPLE  # every message, at a provider deduping by webhook-id
    twice = {i for i, n in counted.items() if n > 1}
    assert twice <= before_restart  # only what the dead worker had in flight came again
    assert all(n <= 2 for n in counted.values())
    assert len(ids) == PEOPLE + len(twice)
    assert await statuses(sessions, ticket_id) == {"sent": PEOPLE}


async def test_the_database_restarted_under_a_running_worker_which_recovers_by_itself(
    cluster: EmbeddedCluster,
    sessions: async_sessionmaker[AsyncSession],
    fake: tuple[FakeServer, SlowReceiver],
    tmp_path: Path,
) -> None:
    server, receiver = fake
    ticket_id = await followed_ticket(sessions, server.url, "restarted", 500)
    receiver.delay = 0.2
    running = worker(cluster.url, tmp_path)
    try:
        await change(sessions, ticket_id, "acknowledged")
        await until(lambda: len(receiver.ids) >= 5, 60, "the worker started sending")
        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(2)
        assert running.poll() is None, "the worker died with the database"
        await asyncio.to_thread(cluster.ensure_running)
        receiver.delay = 0.0
        await until(lambda: len(set(receiver.ids)) >= PEOPLE, 180, "the queue delivered")
        # What is queued after the restart reaches the same worker promptly.
        await change(sessions, ticket_id, "scheduled")
        await until(lambda: len(set(receiver.ids)) >= 2 * PEOPLE, 90, "the new messages")
        assert running.poll() is None
    finally:
        running.terminate()
        running.wait(timeout=30)
    assert len(set(receiver.ids)) == 2 * PEOPLE
    assert await statuses(sessions, ticket_id) == {"sent": 2 * PEOPLE}
