"""Notification delivery, measured on a throwaway cluster (the harness runs it as the workloads
``notify_latency``, ``notify_throughput``, ``notify_ceiling`` and ``broadcast_100k``; by hand:

    .venv/bin/python -m bench.notify_bench [--messages 5000] [--latency-samples 50]
        [--subscribers 100000] [--only notify_latency,broadcast_100k]

The demo city, tickets followed by webhook contacts, and a local webhook receiver (uvicorn,
127.0.0.1) that counts what it receives by ``webhook-id``.

- ``notify_latency``: with an idle worker, a status change on one of N tickets at a time, from
  its commit to its receipt; p50 and p99.
- ``notify_throughput``: one status change writes N outbox rows (the event stream); two
  ``kerbside worker`` processes deliver them; messages/s from the commit to the last receipt.
- ``notify_ceiling``: a bare async HTTP loop (httpx, on uvloop like the workers) posting N
  bodies to the same receiver at the workers' total concurrency: what the receiver and
  loopback allow; ``per_second_asyncio_loop`` is the same loop on asyncio's own event loop.
- ``broadcast_100k``: a broadcast to N people following a place inside its polygon; seconds
  from the commit to every row queued, and the workers' memory (resident set, sampled) while
  they queue and then deliver for a while.

Prints one JSON object: each workload's figures by name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import httpx
import psycopg
import uvloop

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
        "KERBSIDE_LOG_LEVEL": os.environ.get("NB_LOG", "WARNING"),
        "KERBSIDE_WORKER_CONCURRENCY": str(concurrency),
    }
    return [
        subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, cwd=PROJECT_ROOT)
        for _ in range(count)
    ]


def started_workers(url: str, count: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    """``count`` workers, once each has started: procrastinate registers a worker as it
    starts listening. On a loaded machine importing the application alone can take longer
    than a fixed pause, and a start-up inside the measured time is not delivery."""
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM procrastinate_workers").fetchone()
        before = row[0] if row is not None else 0
        made = workers(url, count, concurrency)
        deadline = time.time() + 300
        while time.time() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_workers WHERE id > %s", (before,)
            ).fetchone()
            if row is not None and row[0] >= count:
                break
            time.sleep(0.1)
    time.sleep(1)  # the start-up job each worker defers, done
    return made


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


WORKLOADS = ("notify_latency", "notify_throughput", "notify_ceiling", "broadcast_100k")


def setup_followers(url: str, port: int, subscribers: int) -> None:
    """``subscribers`` webhook contacts, each following a small square inside the demo city
    (with consent to area updates)."""
    hook = f"http://127.0.0.1:{port}/hook"
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute(
            """
            WITH made AS (
                INSERT INTO contact (kind, address, data, verified_at)
                SELECT 'webhook', %s::text || '?f=' || i,
                       jsonb_build_object('secret', %s::text), now()
                FROM generate_series(1, %s) i
                RETURNING id),
            followed AS (
                INSERT INTO area_subscription (contact_id, jurisdiction_id, geom, topics)
                SELECT made.id, j.id,
                       ST_Multi(ST_Buffer(ST_PointOnSurface(j.boundary)::geography, 50)::geometry),
                       ARRAY['new_tickets']
                FROM made, jurisdiction j WHERE j.slug = 'demo')
            INSERT INTO contact_consent (contact_id, purpose, method, given_at)
            SELECT id, 'area_updates', 'follow_form', now() FROM made
            """,
            (hook, SECRET, subscribers),
        )


def broadcast_now(url: str) -> tuple[int, float]:
    """A broadcast over the whole demo city, as the staff route makes it; (id, commit time)."""
    with psycopg.connect(to_libpq_url(url)) as conn:
        broadcast_id = conn.execute(
            """
            INSERT INTO broadcast (jurisdiction_id, polygon, area_description, headline, body,
                event, category, severity, urgency, certainty, language, created_by)
            SELECT j.id, ST_Multi(j.boundary), 'the whole city', 'Storm warning',
                   'Stay indoors tonight.', 'Storm', 'Met', 'Severe', 'Immediate', 'Likely',
                   'en', 'bench'
            FROM jurisdiction j WHERE j.slug = 'demo'
            RETURNING id
            """
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('notify', 'queue_broadcast', 0, NULL,"
            " NULL, jsonb_build_object('broadcast_id', %s::bigint), NULL)"
            "::procrastinate_job_to_defer_v1])",
            (broadcast_id,),
        )
        conn.commit()
        return int(broadcast_id), time.time()


class MemoryWatch:
    """Samples the resident set of some processes every ``every`` seconds (Linux /proc)."""

    def __init__(self, pids: list[int], every: float = 0.25) -> None:
        self.pids = pids
        self.every = every
        self.samples: list[tuple[float, float]] = []  # (time, largest RSS in MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss_mb(pid: int) -> float:
        try:
            for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), max(self.rss_mb(p) for p in self.pids)))
            self._stop.wait(self.every)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def measure_broadcast(
    url: str, port: int, subscribers: int, workers_n: int, concurrency: int, watch_s: float
) -> dict[str, Any]:
    setup_followers(url, port, subscribers)
    busy = started_workers(url, workers_n, concurrency)
    try:
        idle_mb = max(MemoryWatch.rss_mb(p.pid) for p in busy)
        with MemoryWatch([p.pid for p in busy]) as memory:
            broadcast_id, committed = broadcast_now(url)
            with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
                while True:
                    row = conn.execute(
                        "SELECT status, extract(epoch FROM queued_at), counts FROM broadcast"
                        " WHERE id = %s",
                        (broadcast_id,),
                    ).fetchone()
                    assert row is not None
                    if row[0] == "queued" or time.time() - committed > 600:
                        break
                    time.sleep(0.05)
                queued_at = float(row[1]) if row[1] is not None else time.time()
                queued_mb = max(s[1] for s in memory.samples)
                before = stats(port)["total"]
                time.sleep(watch_s)  # the workers deliver meanwhile
                delivered = stats(port)["total"] - before
                rows = conn.execute(
                    "SELECT count(*) FROM notification WHERE broadcast_id = %s", (broadcast_id,)
                ).fetchone()
        rss = [mb for _, mb in memory.samples]
    finally:
        stop(busy)
    return {
        "subscribers": subscribers,
        "rows_queued": int(rows[0]) if rows else 0,
        "counts": row[2],
        "queue_seconds": round(queued_at - committed, 2),
        "rss_mb_idle": round(idle_mb, 1),
        "rss_mb_when_queued": round(queued_mb, 1),
        "rss_mb_end": round(rss[-1], 1) if rss else None,
        "peak_rss_mb": round(max(rss), 1) if rss else None,
        "delivered_while_watched": delivered,
        "watched_seconds": watch_s,
        "workers": workers_n,
    }


def measure(
    *,
    messages: int,
    latency_samples: int,
    subscribers: int,
    workers_n: int = 2,
    concurrency: int = 2,
    watch_s: float = 20.0,
    only: set[str] | None = None,
) -> dict[str, Any]:
    """Every wanted workload's figures, on a cluster of their own."""
    wanted = set(WORKLOADS) if only is None else only
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
        setup(url, port, messages, latency_samples)
        for _ in range(100):
            try:
                stats(port)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

        if "notify_latency" in wanted:  # one idle worker, one message at a time
            idle = started_workers(url, 1, concurrency)
            latencies = []
            for k in range(2, latency_samples + 2):
                before = stats(port)["total"]
                committed = change_status(url, f"B-2026-{k:06d}", "acknowledged")
                seen = wait_for(port, before + 1, 30)
                newest = max(seen["times"].values())
                latencies.append((newest - committed) * 1000)
                time.sleep(0.2)  # idle again
            stop(idle)
            latencies.sort()
            results["notify_latency"] = {
                "samples": len(latencies),
                "p50_ms": round(statistics.median(latencies), 1),
                "p99_ms": round(latencies[max(0, math.ceil(len(latencies) * 0.99) - 1)], 1),
                "max_ms": round(latencies[-1], 1),
            }

        if "notify_throughput" in wanted:  # N messages, two workers
            before = stats(port)["total"]
            busy = started_workers(url, workers_n, concurrency)
            committed = change_status(url, "B-2026-000001", "acknowledged")
            seen = wait_for(port, before + messages, 600)
            last = max(seen["times"].values())
            stop(busy)
            delivered = seen["total"] - before
            with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
                span = conn.execute(
                    "SELECT extract(epoch FROM max(n.sent_at) - min(n.created_at)),"
                    " extract(epoch FROM min(n.created_at)) FROM notification n"
                    " JOIN ticket t ON t.id = n.ticket_id WHERE t.reference = 'B-2026-000001'"
                ).fetchone()
            results["notify_throughput"] = {
                # From the change's commit (as the bench saw it, and as the database stamped
                # it) to the last message's receipt, and to its row marked sent.
                "commit_lag_seconds": round(float(span[1]) - committed, 2) if span else None,
                "outbox_seconds": round(float(span[0]), 2) if span and span[0] else None,
                "messages": messages,
                "delivered": delivered,
                "duplicates": seen["total"] - seen["unique"],
                "seconds": round(last - committed, 2),
                "per_second": round(delivered / (last - committed), 1),
                "workers": workers_n,
                "concurrency": concurrency,
            }

        if "notify_ceiling" in wanted:
            # On uvloop, the workers' event loop: the ratio is then what our delivery costs
            # beyond the HTTP requests themselves. The same loop on asyncio's own event loop
            # (the ceiling's figure before the workers ran on uvloop) is kept beside it.
            started = time.perf_counter()
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                rate = runner.run(ceiling(port, messages, workers_n * concurrency))
            seconds = time.perf_counter() - started
            rate_asyncio = asyncio.run(ceiling(port, messages, workers_n * concurrency))
            results["notify_ceiling"] = {
                "messages": messages,
                "seconds": round(seconds, 2),
                "per_second": round(rate, 1),
                "concurrency": workers_n * concurrency,
                "event_loop": "uvloop",
                "per_second_asyncio_loop": round(rate_asyncio, 1),
            }

        if "broadcast_100k" in wanted:
            results["broadcast_100k"] = measure_broadcast(
                url, port, subscribers, workers_n, concurrency, watch_s
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
        cluster.destroy()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--watch-seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)  # KERBSIDE_WORKER_CONCURRENCY
    parser.add_argument("--only", help="comma-separated: " + ", ".join(WORKLOADS))
    args = parser.parse_args()
    only = {n.strip() for n in args.only.split(",")} if args.only else None
    results = measure(
        messages=args.messages,
        latency_samples=args.latency_samples,
        subscribers=args.subscribers,
        workers_n=args.workers,
        concurrency=args.concurrency,
        watch_s=args.watch_seconds,
        only=only,
    )
    if "notify_throughput" in results and "notify_ceiling" in results:
        results["ratio_throughput_to_ceiling"] = round(
            results["notify_throughput"]["per_second"] / results["notify_ceiling"]["per_second"],
            2,
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
