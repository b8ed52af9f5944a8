"""Load generators: wrk for HTTP, pgbench for the database ceiling.

wrk (C, event loop, Lua hooks) is used rather than a Python client: on a 2-core machine a
Python client would take most of a core from the server it measures. wrk still shares the
cores with the server (nothing pins them apart reliably on a shared VM), so the figures are a
floor for a dedicated server. wrk is a closed-loop generator: each connection waits for its
answer before sending the next request, so the percentiles are service times under that
concurrency (no coordinated-omission correction).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.progress import countdown

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "workload.lua"
_BENCH_JSON = re.compile(r"^BENCH_JSON (\{.*\})$", re.MULTILINE)


class ToolMissing(RuntimeError):
    """A load generator that is not installed (scripts/bench installs them)."""


@dataclass(frozen=True)
class HttpLoad:
    """What wrk sends: requests cycle through ``paths`` (and ``bodies``, when given)."""

    method: str
    paths: list[str]
    bodies: list[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    unique_header: str | None = None  # a fresh value per request (Idempotency-Key)
    connections: int = 32
    threads: int = 2
    timeout_s: float = 5.0
    rate: float | None = None  # requests/s offered on a fixed schedule (None: flat out)


def wrk_version() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "wrk"


def run_wrk(
    base_url: str,
    load: HttpLoad,
    *,
    seconds: float,
    max_requests: int,
    workdir: Path,
    label: str,
) -> dict[str, Any]:
    """One timed wrk run; latency in ms, throughput, bytes and error counts."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise ToolMissing("wrk is not installed (apt-get install wrk; scripts/bench does)")
    workdir.mkdir(parents=True, exist_ok=True)
    paths_file = workdir / "paths.txt"
    paths_file.write_text("\n".join(load.paths) + "\n")
    bodies_arg = "-"
    if load.bodies is not None:
        bodies_file = workdir / "bodies.bin"
        with bodies_file.open("wb") as out:
            for body in load.bodies:
                out.write(f"{len(body)}\n".encode() + body)
        bodies_arg = str(bodies_file)
    threads = max(1, min(load.threads, load.connections))
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{load.connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={load.timeout_s:g}s",
        "-s",
        str(WRK_SCRIPT),
        base_url,
        "--",
        str(paths_file),
        bodies_arg,
        load.method,
        load.unique_header or "-",
        uuid.uuid4().hex[:12],
        str(max(1, max_requests // threads)),
        str(threads),
        f"{load.rate / threads:g}" if load.rate else "0",
        *(f"{name}={value}" for name, value in load.headers.items()),
    ]
    started = time.monotonic()
    with countdown(label, seconds):
        result = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=seconds + 60
        )
    wall = time.monotonic() - started
    match = _BENCH_JSON.search(result.stdout)
    if result.returncode != 0 or match is None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"wrk failed ({result.returncode}): {' | '.join(tail)}")
    raw = json.loads(match.group(1))
    duration = raw["duration_us"] / 1e6 or wall
    socket_errors = sum(
        raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return {
        "requests": raw["requests"],
        "duration_s": round(duration, 2),
        "rps": round(raw["requests"] / duration, 1),
        "bytes_per_s": round(raw["bytes"] / duration),
        "bytes_per_response": round(raw["bytes"] / raw["requests"]) if raw["requests"] else 0,
        "latency_ms": {
            "p50": raw["p50_us"] / 1000,
            "p90": raw["p90_us"] / 1000,
            "p95": raw["p95_us"] / 1000,
            "p99": raw["p99_us"] / 1000,
            "max": raw["max_us"] / 1000,
            "mean": round(raw["mean_us"] / 1000, 3),
        },
        "errors": {"non_2xx": raw["non2xx"], "socket": socket_errors},
        # The server's own figure (its Server-Timing header), where it sends one.
        "server_timing_ms": {
            k: raw[f"server_{k}_us"] / 1000 for k in ("p50", "p90", "p95", "p99", "max")
        }
        if raw.get("server_timing_n")
        else None,
    }


# -- pgbench ----------------------------------------------------------------------------------


def pgbench_binary() -> str | None:
    from app.embedded import find_bindir

    try:
        candidate = find_bindir() / "pgbench"
    except RuntimeError:
        candidate = None
    if candidate is not None and candidate.exists():
        return str(candidate)
    return shutil.which("pgbench")


def pgbench_version() -> str | None:
    binary = pgbench_binary()
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
_PROCESSED = re.compile(r"number of transactions actually processed: (\d+)")
_FAILED = re.compile(r"number of failed transactions: (\d+)")


def run_pgbench(
    url: str,
    script: str,
    *,
    clients: int,
    threads: int,
    seconds: float,
    workdir: Path,
    label: str,
    variables: dict[str, str] | None = None,
    protocol: str = "prepared",
    options: str | None = None,
) -> dict[str, Any]:
    """One timed pgbench run; latency percentiles from the per-transaction log.

    ``protocol``: pgbench's ``-M`` (``extended`` plans every statement with its values, as
    unprepared statements are); ``options``: the connections' ``PGOPTIONS``.
    """
    binary = pgbench_binary()
    if binary is None:
        raise ToolMissing("pgbench is not installed (it ships with the PostgreSQL server)")
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("pgbench_log*"):
        old.unlink()
    script_file = workdir / "script.sql"
    script_file.write_text(script)
    argv = [
        binary,
        "-n",
        "-M",
        protocol,
        "-c",
        str(clients),
        "-j",
        str(threads),
        "-T",
        str(max(1, round(seconds))),
        "-f",
        str(script_file),
        "-l",
        f"--log-prefix={workdir / 'pgbench_log'}",
        *(f"-D{name}={value}" for name, value in (variables or {}).items()),
        url,
    ]
    with countdown(label, seconds):
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 120,
            env={**os.environ, "PGOPTIONS": options} if options else None,
        )
    output = result.stdout + result.stderr
    tps = _TPS.search(output)
    processed = _PROCESSED.search(output)
    if result.returncode not in (0, 2) or tps is None or processed is None:
        tail = [line for line in output.strip().splitlines() if line][-3:]
        raise RuntimeError(f"pgbench failed ({result.returncode}): {' | '.join(tail)}")
    latencies: list[int] = []
    for log in workdir.glob("pgbench_log*"):
        with log.open() as lines:
            for line in lines:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]))
    latencies.sort()
    failed = _FAILED.search(output)
    aborted = "aborted" in output.lower() or result.returncode == 2
    count = int(processed.group(1))
    return {
        "requests": count,
        "duration_s": round(seconds, 2),
        "rps": round(float(tps.group(1)), 1),
        "latency_ms": _percentiles_ms(latencies),
        "errors": {
            "failed_transactions": int(failed.group(1)) if failed else 0,
            "aborted_clients": aborted,
        },
    }


def _percentiles_ms(values_us: list[int]) -> dict[str, float]:
    if not values_us:
        return {}

    def at(q: float) -> float:
        index = min(len(values_us) - 1, max(0, round(q * (len(values_us) - 1))))
        return values_us[index] / 1000

    return {
        "p50": at(0.50),
        "p90": at(0.90),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": values_us[-1] / 1000,
        "mean": round(sum(values_us) / len(values_us) / 1000, 3),
    }


def percentiles_ms(values_us: list[int]) -> dict[str, float]:
    """p50/p90/p95/p99/max/mean in ms of microsecond samples (sorted here)."""
    return _percentiles_ms(sorted(values_us))
