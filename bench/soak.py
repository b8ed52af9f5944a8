"""The soak: a bounded mixed load for a while, to see what drifts (run by hand):

    .venv/bin/python -m bench.soak                 # 10 minutes, results in bench/results/
    .venv/bin/python -m bench.soak --minutes 1     # iterating: results in bench/results/tmp/

On a throwaway cluster with the demo city and 3,000 tickets: two API processes (uvicorn, one
process each) and two ``kerbside worker`` processes on the one database, all on loopback. An
open-loop client offers ``--rate`` requests a second, spread over both APIs: 80 % reads (map
pages, vector tiles, clusters, tickets by reference, statistics) and 20 % intake, each report
with a photo and a push token that consents to updates; beside it, staff move the tickets it
filed along the workflow (acknowledged, in progress, fixed), ``--status-rate`` a second, and
each move queues a notification that the workers deliver (to the channel sink: the demo has
no FCM account).

Recorded as workload ``soak``: ``extra.errors`` (anything but the expected status, transport
errors, reports answered 201 but missing at the end: must be 0), ``extra.p99_drift_ratio``
(p99 of the last window over the first; windows of a minute, or a fifth of a shorter run),
``extra.rss_growth_mb`` per process (end against the end of the first window),
``extra.database_growth_mb``, and what the workers left undone at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from PIL import Image

from app.embedded import throwaway_cluster
from app.migrations import upgrade_to_head
from app.settings import PROJECT_ROOT, to_libpq_url
from bench import servers
from bench.machine import database_facts, load_average, machine_facts
from bench.progress import say
from bench.run import RESULTS_DIR, RESULTS_SCHEMA, SCRATCH_DIR, result
from geo.distance import offset_lonlat

CENTER = (-2.5879, 51.4545)  # the demo city's
PAGE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READS = (  # (kind, weight) within the 80 % of reads
    ("map_page", 35),
    ("tile", 25),
    ("clusters", 10),
    ("ticket", 20),
    ("stats", 10),
)
NEXT_STATUS = {"open": "acknowledged", "acknowledged": "in_progress", "in_progress": "fixed"}


@dataclass
class Sample:
    at: float  # seconds since the start of the load
    kind: str
    ms: float
    ok: bool


@dataclass
class Load:
    apis: list[str]
    api_key: str
    photo: bytes
    references: list[str]
    started: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    filed: list[str] = field(default_factory=list)  # report ids answered 201
    workflow: dict[str, str] = field(default_factory=dict)  # reference -> status
    in_flight: int = 0
    sent: int = 0


def _photo() -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((800, 600)).convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def _near(rng: random.Random, metres: float) -> tuple[float, float]:
    return offset_lonlat(*CENTER, rng.uniform(-metres, metres), rng.uniform(-metres, metres))


def _bbox(rng: random.Random, half_m: float) -> str:
    lon, lat = _near(rng, 1500)
    west, south = offset_lonlat(lon, lat, -half_m, -half_m)
    east, north = offset_lonlat(lon, lat, half_m, half_m)
    return f"{west:.6f},{south:.6f},{east:.6f},{north:.6f}"


def _tile(rng: random.Random) -> str:
    zoom = rng.randint(12, 16)
    lon, lat = _near(rng, 1500)
    n = 2**zoom
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return f"/v1/tiles/{zoom}/{x}/{y}.mvt"


async def _one(load: Load, http: httpx.AsyncClient, rng: random.Random) -> None:
    base = load.apis[load.sent % len(load.apis)]
    load.sent += 1
    if rng.random() < 0.2:
        kind = "intake"
        lon, lat = _near(rng, 2000)
        report = {
            "service_code": "pothole",
            "location": {"lon": lon, "lat": lat},
            "description": "soak",
            "contact": {"push_token": f"soak-{uuid.uuid4().hex}", "updates": True},
        }
        request = http.build_request(
            "POST",
            f"{base}/v1/reports",
            files=[
                ("report", (None, json.dumps(report).encode(), "application/json")),
                ("photos", ("photo.jpg", load.photo, "image/jpeg")),
            ],
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        expected = 201
    else:
        kind = rng.choices([k for k, _ in READS], [w for _, w in READS])[0]
        if kind == "map_page":
            url = f"{base}/v1/tickets.geojson?bbox={_bbox(rng, 300)}&limit=200"
        elif kind == "tile":
            url = base + _tile(rng)
        elif kind == "clusters":
            url = f"{base}/v1/tickets/clusters?bbox={_bbox(rng, 2000)}&zoom=13"
        elif kind == "ticket":
            url = f"{base}/v1/tickets/{rng.choice(load.references)}"
        else:
            url = f"{base}/v1/stats"
        request = http.build_request("GET", url)
        expected = 200
    await _send(load, http, request, kind, expected)


async def _send(
    load: Load, http: httpx.AsyncClient, request: httpx.Request, kind: str, expected: int
) -> httpx.Response | None:
    started = time.monotonic()
    load.in_flight += 1
    try:
        response = await http.send(request)
    except httpx.HTTPError as exc:
        load.errors[f"{kind}: {type(exc).__name__}"] += 1
        load.samples.append(Sample(started - load.started, kind, 0.0, ok=False))
        return None
    finally:
        load.in_flight -= 1
    ms = (time.monotonic() - started) * 1000
    ok = response.status_code == expected
    if not ok:
        load.errors[f"{kind}: {response.status_code}"] += 1
    elif kind == "intake":
        answer = response.json()
        load.filed.append(answer["report"]["id"])
        reference = answer["ticket"]["reference"]
        load.workflow.setdefault(reference, answer["ticket"]["status"])
    load.samples.append(Sample(started - load.started, kind, ms, ok))
    return response


async def _staff(load: Load, http: httpx.AsyncClient, rate: float, until: float) -> None:
    """Staff moving filed tickets along, one move at a time (never two on one ticket)."""
    n = 0
    while time.monotonic() < until:
        await asyncio.sleep(1 / rate)
        movable = [r for r, s in load.workflow.items() if s in NEXT_STATUS]
        if not movable:
            continue
        reference = movable[0]
        to = NEXT_STATUS[load.workflow[reference]]
        base = load.apis[n % len(load.apis)]
        n += 1
        request = http.build_request(
            "POST",
            f"{base}/v1/tickets/{reference}/status",
            json={"status": to},
            headers={"X-API-Key": load.api_key},
        )
        if await _send(load, http, request, "status", 200) is not None:
            load.workflow[reference] = to


async def _drive(load: Load, *, rate: float, status_rate: float, seconds: float) -> None:
    rng = random.Random(22)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        load.started = time.monotonic()
        until = load.started + seconds
        staff = asyncio.create_task(_staff(load, http, status_rate, until))
        tasks: set[asyncio.Task[None]] = set()
        tick = 0
        while (now := time.monotonic()) < until:
            due = load.started + tick / rate  # an open loop: a fixed schedule, late or not
            if due > now:
                await asyncio.sleep(due - now)
            tick += 1
            if load.in_flight > 200:  # the servers cannot keep up: counted, not queued
                load.errors["dropped: over 200 in flight"] += 1
                load.samples.append(Sample(now - load.started, "dropped", 0.0, ok=False))
                continue
            task = asyncio.create_task(_one(load, http, rng))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks, staff)


def _rss_mb(pid: int) -> float:
    total = 0
    for each in servers.tree(pid):
        try:
            total += int(Path(f"/proc/{each}/statm").read_text().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
    return round(total / 2**20, 1)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants."""
    ticks = 0
    for each in servers.tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return ticks / CLOCK_TICKS


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _setup(url: str) -> tuple[list[str], str]:
    """The demo city, 3,000 tickets around its centre, a staff API key."""
    from app.seed.demo import seed_demo

    asyncio.run(seed_demo(url, reports=0, progress=False))
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO ticket (reference, jurisdiction_id, service_id, location, status,
                                priority, report_count, first_reported_at, last_reported_at)
            SELECT 'S-2026-' || lpad(i::text, 6, '0'), j.id, s.id,
                   ST_SetSRID(ST_MakePoint(-2.5879 + (random() - 0.5) * 0.05,
                                           51.4545 + (random() - 0.5) * 0.03), 4326),
                   'open', 3, 1, now() - random() * interval '90 days', now()
            FROM generate_series(1, 3000) i, jurisdiction j
            JOIN service s ON s.jurisdiction_id = j.id AND s.code = 'pothole'
            WHERE j.slug = 'demo'
            """
        )
        rows = conn.execute("SELECT reference FROM ticket ORDER BY random() LIMIT 500")
        references = [r[0] for r in rows.fetchall()]
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "api-keys",
            "create",
            "--jurisdiction",
            "demo",
            "--name",
            "soak staff",
            "--role",
            "staff",
        ],
        env={**os.environ, "KERBSIDE_DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
    )
    return references, made.stdout.strip().splitlines()[-1]  # the secret, printed last


def _database(url: str) -> dict[str, Any]:
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        row = conn.execute(
            """
            SELECT pg_database_size(current_database()),
                   (SELECT count(*) FROM report), (SELECT count(*) FROM ticket),
                   (SELECT count(*) FROM photo WHERE status = 'pending'),
                   (SELECT count(*) FROM notification),
                   (SELECT count(*) FROM notification WHERE status IN ('pending', 'retrying')),
                   (SELECT count(*) FROM notification WHERE status IN ('failed', 'dead'))
            """
        ).fetchone()
    assert row is not None
    keys = ("bytes", "reports", "tickets", "photos_pending", "notifications")
    return dict(zip((*keys, "notifications_waiting", "notifications_failed"), row, strict=True))


def _missing(url: str, ids: list[str]) -> int:
    with psycopg.connect(to_libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM report WHERE public_id = ANY(%s::uuid[])", (ids,)
        ).fetchone()
    return len(ids) - int(row[0] if row else 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (default 10)")
    parser.add_argument("--rate", type=float, default=40.0, help="requests/s offered (default 40)")
    parser.add_argument("--status-rate", type=float, default=1.0, help="staff moves/s (default 1)")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    window = min(60.0, seconds / 5)

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scratch = Path(tempfile.mkdtemp(prefix="kerbside-soak-"))
    media, sink = scratch / "media", scratch / "sink.jsonl"
    cluster = throwaway_cluster()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        url = cluster.ensure_running()
        upgrade_to_head(url)
        say("soak: the demo city and 3,000 tickets")
        references, api_key = _setup(url)
        env = {
            "KERBSIDE_ENV": "development",  # the channel sink stands in for FCM
            "KERBSIDE_SECRET_KEY": secrets.token_urlsafe(48),
            "KERBSIDE_DATABASE_URL": url,
            "KERBSIDE_MEDIA_DIR": str(media),
            "KERBSIDE_LOG_LEVEL": "WARNING",
            "KERBSIDE_CHANNELS_SINK_FILE": str(sink),
            "KERBSIDE_RATE_LIMIT_REPORTS_PER_MINUTE": "0",  # every client is 127.0.0.1
        }
        with (
            servers.kerbside(url, workers=1, media_dir=media, settings=env) as api_1,
            servers.kerbside(url, workers=1, media_dir=media, settings=env) as api_2,
        ):
            worker_env = {k: v for k, v in os.environ.items() if not k.startswith("KERBSIDE_")}
            for _ in range(2):
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "app.cli", "worker"],
                        env={**worker_env, **env},
                        cwd=PROJECT_ROOT,
                        start_new_session=True,
                    )
                )
            pids = {
                "api_1": api_1.process.pid,
                "api_2": api_2.process.pid,
                "worker_1": processes[0].pid,
                "worker_2": processes[1].pid,
            }
            before = _database(url)
            load = Load([api_1.base_url, api_2.base_url], api_key, _photo(), references)
            postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
            rss_start: dict[str, float] = {}
            marks: list[dict[str, Any]] = []  # at each window's end: load, CPU used so far

            def mark() -> dict[str, Any]:
                cpu = {name: _cpu_s(pid) for name, pid in pids.items()}
                cpu["postgres"] = _cpu_s(postmaster)
                return {"load": load_average()[0], "cpu_s": cpu}

            async def sample() -> None:
                marks.append(mark())
                for n in range(1, round(seconds / window) + 1):
                    await asyncio.sleep(load.started + n * window - time.monotonic())
                    marks.append(mark())
                    if n == 1:
                        rss_start.update({name: _rss_mb(pid) for name, pid in pids.items()})

            async def run() -> None:
                await asyncio.gather(
                    _drive(load, rate=args.rate, status_rate=args.status_rate, seconds=seconds),
                    sample(),
                )

            say(f"soak: {args.minutes:g} min at {args.rate:g} req/s on 2 APIs, 2 workers")
            load_at_start = load_average()
            asyncio.run(run())
            rss_end = {name: _rss_mb(pid) for name, pid in pids.items()}
            # The workers finish what the load left (photos, notifications), up to 60 s.
            drained_at = time.monotonic() + 60
            while time.monotonic() < drained_at:
                after = _database(url)
                if not after["photos_pending"] and not after["notifications_waiting"]:
                    break
                time.sleep(1)
            dead = [
                name
                for name, p in zip(("worker_1", "worker_2"), processes, strict=True)
                if p.poll() is not None
            ]
            missing = _missing(url, load.filed)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        facts = database_facts(url) if cluster.is_running() else {}
        cluster.destroy()

    if missing:
        load.errors["reports answered 201 but missing"] += missing
    for name in dead:
        load.errors[f"{name} exited"] += 1
    samples = [s for s in load.samples if s.ok]
    first = [s.ms for s in samples if s.at < window]
    last = [s.ms for s in samples if s.at >= seconds - window]
    everything = sorted(s.ms for s in samples)
    by_kind = {
        kind: {
            "requests": len(values),
            "p50": round(statistics.median(values), 1),
            "p99": round(_p99(values), 1),
        }
        for kind in sorted({s.kind for s in samples})
        if (values := [s.ms for s in samples if s.kind == kind])
    }
    errors = sum(load.errors.values())
    # Window by window: what the clients saw, the machine's load (it is shared) and the CPU
    # our processes got; a slower window with less CPU for us is the machine, not drift.
    timeline = []
    for n in range(1, len(marks)):
        inside = [s for s in load.samples if (n - 1) * window <= s.at < n * window]
        fine = [s.ms for s in inside if s.ok]
        used = {
            name: round(marks[n]["cpu_s"][name] - marks[n - 1]["cpu_s"][name], 1)
            for name in marks[n]["cpu_s"]
        }
        timeline.append(
            {
                "until_s": round(n * window),
                "requests": len(inside),
                "failed": len(inside) - len(fine),
                "p50_ms": round(statistics.median(fine), 1) if fine else None,
                "p99_ms": round(_p99(fine), 1) if fine else None,
                "load_average_1m": marks[n]["load"],
                "cpu_s": used,
                "cpu_share_of_window": round(sum(used.values()) / window, 2),
            }
        )
    extra = {
        "errors": errors,
        "error_kinds": dict(load.errors),
        "minutes": args.minutes,
        "offered_rps": args.rate,
        "status_changes_per_s": args.status_rate,
        "window_s": window,
        "p99_first_window_ms": round(_p99(first), 1),
        "p99_last_window_ms": round(_p99(last), 1),
        "p99_drift_ratio": round(_p99(last) / _p99(first), 2) if first and last else None,
        "rss_mb_after_first_window": rss_start,
        "rss_mb_at_end": rss_end,
        "rss_growth_mb": {k: round(rss_end[k] - rss_start.get(k, 0.0), 1) for k in rss_end},
        "database_growth_mb": round((after["bytes"] - before["bytes"]) / 2**20, 1),
        "reports_filed": len(load.filed),
        "status_changes": sum(1 for s in samples if s.kind == "status"),
        "notifications": after["notifications"] - before["notifications"],
        "left_at_end": {
            "photos_pending": after["photos_pending"],
            "notifications_waiting": after["notifications_waiting"],
            "notifications_failed": after["notifications_failed"],
        },
        "by_kind": by_kind,
        "timeline": timeline,
        "load_average": {"start": load_at_start, "end": load_average()},
    }
    entry = result(
        "soak",
        "Soak: 80 % reads, 20 % intake with photos, staff moves with notifications",
        "soak",
        server="kerbside",
        connections=None,
        seconds=seconds,
        requests=len(load.samples),
        rps=round(len(load.samples) / seconds, 1),
        latency_ms={
            "p50": round(statistics.median(everything), 1) if everything else None,
            "p99": round(_p99(everything), 1) if everything else None,
        },
        errors=dict(load.errors),
        extra=extra,
    )
    results = {
        "schema": RESULTS_SCHEMA,
        "mode": "soak",
        "started_at": stamp,
        "machine": machine_facts(),
        "database": facts,
        "settings": {"api_processes": 2, "workers": 2, "command": " ".join(sys.argv)},
        "workloads": [entry],
    }
    target = RESULTS_DIR if args.minutes >= 10 else SCRATCH_DIR
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{stamp}-soak.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    say(f"soak: results in {path}")
    print(json.dumps(extra, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
