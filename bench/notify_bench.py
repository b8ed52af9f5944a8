"""Notification delivery, measured (run by hand; figures go into the issue note):

    .venv/bin/python -m bench.notify_bench [--messages 5000] [--latency-samples 50]

On a throwaway cluster: the demo city, one ticket followed by N webhook contacts, and a local
webhook receiver (uvicorn, 127.0.0.1) that counts what it receives by ``webhook-id``.

- ``notify_throughput``: one status change writes N outbox rows (the event stream); two
  ``kerbside worker`` processes deliver them; messages/s from the commit to the last receipt.
- ``notify_ceiling``: a bare async HTTP loop posting N signed bodies to the same receiver at the
  workers' total concurrency: what the receiver and loopback allow.
- ``notify_latency``: with an idle worker, a status change on one of 50 tickets at a time, from
  its commit to its receipt; p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import httpx
import psycopg

from app.auth.models import Role
from app.auth.principal import Principal
from app.embedded import free_port, throwaway_cluster
from app.migrations import upgrade_to_head
from app.settings import PROJECT_ROOT, to_libpq_url

SECRET = "whsec_" + "a2Vyc2lkZS1iZW5jaC1zZWNyZXQtMzItYnl0ZXMhIQ=="
STAFF = Principal(kind="user", role=Role.admin, label="bench")

# -- the receiver: an ASGI app, served by uvicorn in its own process --------------------------

_received: Counter[str] = Counter()
_times: dict[str, float] = {}


async def receiver(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Counts POSTs by ``webhook-id``; ``GET /stats`` answers the counts and receipt times."""
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        while True:
            message = await receive()
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        ident = headers.get(b"webhook-id", b"?").decode()
        _received[ident] += 1
        _times.setdefault(ident, time.time())
        body = b"{}"
    else:
        body = json.dumps(
            {"total": sum(_received.values()), "unique": len(_received), "times": _times}
        ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


# -- set-up -------------------------------------------------------------------------------------


def setup(url: str, port: int, contacts: int, tickets: int) -> None:
    """The demo city (its file), ``tickets`` tickets; the first followed by ``contacts``
    webhook contacts, each later one by one more (for the latency samples)."""
    from app.seed.demo import seed_demo

    asyncio.run(seed_demo(url, reports=0, progress=False))
    hook = f"http://127.0.0.1:{port}/hook"
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO ticket (reference, jurisdiction_id, service_id, location, status,
                                priority, report_count, first_reported_at, last_reported_at)
            SELECT 'B-2026-' || lpad(i::text, 6, '0'), j.id, s.id,
                   ST_SetSRID(ST_MakePoint(-2.5879 + i * 0.0001, 51.4545), 4326), 'open', 3, 1,
                   now(), now()
            FROM generate_series(1, %s) i, jurisdiction j
            JOIN service s ON s.jurisdiction_id = j.id AND s.code = 'pothole'
            WHERE j.slug = 'demo'
            """,
            (tickets + 1,),
        )
        conn.execute(
            """
            INSERT INTO contact (kind, address, data, verified_at)
            SELECT 'webhook', %s::text || '?c=' || i, jsonb_build_object('secret', %s::text), now()
            FROM generate_series(1, %s) i
            """,
            (hook, SECRET, contacts + tickets),
        )
        # Contacts 1..N follow ticket 1; contact N+k follows ticket k+1.
        conn.execute(
            """
            WITH t AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM ticket
                       WHERE reference LIKE 'B-%%'),
                 c AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM contact
                       WHERE kind = 'webhook'),
                 pairs AS (
                     SELECT c.id AS contact_id,
                            (SELECT id FROM t WHERE t.n = CASE WHEN c.n <= %(n)s THEN 1
                                                              ELSE c.n - %(n)s + 1 END)
                                AS ticket_id
                     FROM c),
                 subs AS (
                     INSERT INTO subscription (ticket_id, contact_id, reason)
                     SELECT ticket_id, contact_id, 'follower' FROM pairs)
            INSERT INTO contact_consent (contact_id, purpose, ticket_id, method, given_at)
            SELECT contact_id, 'ticket_updates', ticket_id, 'follow_form', now() FROM pairs
            """,
            {"n": contacts},
        )


def change_status(url: str, reference: str, to: str) -> float:
    """Change one ticket's status through the real workflow; returns the commit time."""
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from app.settings import to_sqlalchemy_url
    from app.tickets import workflow
    from app.tickets.models import TicketStatus

    async def run() -> float:
        engine = create_async_engine(to_sqlalchemy_url(url))
        try:
            async with AsyncSession(engine) as session:
                async with session.begin():
                    ticket_id = await workflow.ticket_id(session, reference)
                    await workflow.change_status(session, ticket_id, TicketStatus(to), actor=STAFF)
                return time.time()
        finally:
            await engine.dispose()

    return asyncio.run(run())


def stats(port: int) -> dict[str, Any]:
    answer = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=10)
    return dict(answer.json())


def workers(url: str, count: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "KERBSIDE_DATABASE_URL": url,
        "KERBSIDE_WEBHOOK_ALLOW_LOOPBACK": "true",
        "KERBSIDE_LOG_LEVEL": "WARNING",
        "KERBSIDE_WORKER_CONCURRENCY": str(concurrency),
    }
    return [
        subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, cwd=PROJECT_ROOT)
        for _ in range(count)
    ]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for(port: int, total: int, timeout: float) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        seen = stats(port)
        if seen["total"] >= total or time.time() > deadline:
            return seen
        time.sleep(0.05)


async def ceiling(port: int, messages: int, concurrency: int) -> float:
    """A bare async HTTP loop: ``messages`` POSTs at ``concurrency`` at once; req/s."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(messages):
        queue.put_nowait(i)
    body = json.dumps({"type": "ticket.status_changed", "data": {"reference": "B"}}).encode()

    async def one(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await client.post(
                f"http://127.0.0.1:{port}/hook",
                content=body,
                headers={"webhook-id": f"ceiling-{i}", "content-type": "application/json"},
            )

    started = time.perf_counter()
    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(one(client) for _ in range(concurrency)))
    return messages / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)  # KERBSIDE_WORKER_CONCURRENCY
    args = parser.parse_args()

    cluster = throwaway_cluster()
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.notify_bench:receiver",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ],
        cwd=PROJECT_ROOT,
    )
    results: dict[str, Any] = {}
    try:
        url = cluster.ensure_running()
        upgrade_to_head(url)
        setup(url, port, args.messages, args.latency_samples)
        for _ in range(100):
            try:
                stats(port)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

        # Latency: one idle worker, one message at a time.
        idle = workers(url, 1, args.concurrency)
        time.sleep(3)  # started and listening
        latencies = []
        for k in range(2, args.latency_samples + 2):
            before = stats(port)["total"]
            committed = change_status(url, f"B-2026-{k:06d}", "acknowledged")
            seen = wait_for(port, before + 1, 30)
            newest = max(seen["times"].values())
            latencies.append((newest - committed) * 1000)
        stop(idle)
        latencies.sort()
        results["notify_latency"] = {
            "samples": len(latencies),
            "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 1),
            "max_ms": round(latencies[-1], 1),
        }

        # Throughput: N messages, two workers.
        before = stats(port)["total"]
        busy = workers(url, args.workers, args.concurrency)
        time.sleep(3)
        committed = change_status(url, "B-2026-000001", "acknowledged")
        seen = wait_for(port, before + args.messages, 600)
        last = max(seen["times"].values())
        stop(busy)
        delivered = seen["total"] - before
        results["notify_throughput"] = {
            "messages": args.messages,
            "delivered": delivered,
            "duplicates": seen["total"] - seen["unique"],
            "seconds": round(last - committed, 2),
            "per_second": round(delivered / (last - committed), 1),
            "workers": args.workers,
            "concurrency": args.concurrency,
        }
        rate = asyncio.run(ceiling(port, args.messages, args.workers * args.concurrency))
        results["notify_ceiling"] = {"per_second": round(rate, 1)}
        results["ratio_throughput_to_ceiling"] = round(
            results["notify_throughput"]["per_second"] / rate, 2
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        cluster.destroy()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
