"""The HTTP servers under test, one at a time, each with its process tree's memory watched.

- Kerbside as in production: ``uvicorn app.main:app_factory --factory`` with uvloop and
  httptools (``uvicorn[standard]``), N workers, no access log, ``KERBSIDE_ENV=production``.
- tipg (developmentseed's OGC Features + Tiles server on FastAPI), the peer a city would
  otherwise deploy to serve PostGIS to maps, on the same database, same worker count.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.embedded import free_port
from app.settings import PROJECT_ROOT

_PAGE = os.sysconf("SC_PAGE_SIZE")


class ServerUnavailable(RuntimeError):
    """A server that cannot run here (not installed, or it did not come up)."""


class MemoryWatch:
    """Samples the resident memory of a process and all its descendants, 5 times a second.

    ``peak_mb`` is the largest sum over the tree seen since the last ``reset()`` (so one
    workload's peak), ``overall_peak_mb`` the largest since start. ``peak_process_mb`` is the
    largest single process since the last reset, and ``at_peak_mb`` each process's share of
    ``peak_mb`` (largest first), so a peak can be told apart from the idle processes under it.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_mb = 0.0
        self.overall_peak_mb = 0.0
        self.peak_process_mb = 0.0
        self.at_peak_mb: list[float] = []
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.peak_mb = 0.0
        self.peak_process_mb = 0.0
        self.at_peak_mb = []

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = tree(self.pid)
            each = sorted((_rss_bytes(p) / 2**20 for p in pids), reverse=True)
            total = sum(each)
            self.processes = max(self.processes, len(pids))
            if total > self.peak_mb:
                self.peak_mb = total
                self.at_peak_mb = [round(mb, 1) for mb in each]
            self.peak_process_mb = max(self.peak_process_mb, each[0] if each else 0.0)
            self.overall_peak_mb = max(self.overall_peak_mb, total)
            self._stop.wait(self.interval)


def tree(root: int) -> list[int]:
    """``root`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class Server:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    memory: MemoryWatch
    log: Path
    workers: int
    openapi: dict[str, Any] = field(default_factory=dict)

    def has_path(self, path: str, method: str = "get") -> bool:
        return method.lower() in self.openapi.get("paths", {}).get(path, {})

    def operation(self, path: str, method: str) -> dict[str, Any]:
        return dict(self.openapi.get("paths", {}).get(path, {}).get(method.lower(), {}))


def _wait_ready(base_url: str, probe: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(f"exited with {process.returncode}: {_tail(log)}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(base_url + probe, timeout=2) as answer,  # noqa: S310
        ):
            if answer.status == 200:
                return
        time.sleep(0.3)
    raise ServerUnavailable(f"not ready after 90 s: {_tail(log)}")


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        return " | ".join(lines[-3:])
    return "(no log)"


def _fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 (loopback only)
        return dict(json.loads(answer.read()))


@contextlib.contextmanager
def _serve(
    name: str, argv: list[str], env: dict[str, str], cwd: Path, port: int, probe: str, workers: int
) -> Iterator[Server]:
    log = Path(tempfile.mkstemp(prefix=f"kerbside-bench-{name}-", suffix=".log")[1])
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    memory = MemoryWatch(process.pid)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, probe, process, log)
        server = Server(name, base_url, process, memory, log, workers)
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            server.openapi = _fetch_json(base_url + "/openapi.json")
        yield server
    finally:
        memory.stop()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(OSError):
            log.unlink()


def _uvicorn(app: str, port: int, workers: int, *, factory: bool = False) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        *(["--factory"] if factory else []),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def kerbside(
    database_url: str, *, workers: int, media_dir: Path, settings: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[Server]:
    """Kerbside, production-like, on ``database_url``; ``settings`` adds KERBSIDE_* variables."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERBSIDE_")}
    env.update(
        KERBSIDE_ENV="production",
        KERBSIDE_SECRET_KEY=secrets.token_urlsafe(48),
        KERBSIDE_DATABASE_URL=database_url,
        KERBSIDE_LOG_LEVEL="WARNING",
        KERBSIDE_MEDIA_DIR=str(media_dir),
        KERBSIDE_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        # Every request comes from 127.0.0.1: a per-address limit would measure the limiter.
        KERBSIDE_RATE_LIMIT_REPORTS_PER_MINUTE="0",
        KERBSIDE_RATE_LIMIT_WRITES_PER_ADDRESS_PER_MINUTE="0",
        KERBSIDE_RATE_LIMIT_WRITES_PER_DEVICE_PER_MINUTE="0",
        KERBSIDE_RATE_LIMIT_WRITES_PER_ACCOUNT_PER_MINUTE="0",
        # The photo upload burst measures the cost of accepting, not the overload policy
        # (a 60 s burst leaves a backlog of about 2,600 photos, over the default cap).
        KERBSIDE_PHOTO_MAX_PENDING="0",
    )
    env.update(settings or {})
    argv = _uvicorn("app.main:app_factory", port, workers, factory=True)
    return _serve("kerbside", argv, env, PROJECT_ROOT, port, "/healthz", workers)


TIPG_TABLE = "public.ticket"


def tipg_version() -> str | None:
    if importlib.util.find_spec("tipg") is None:
        return None
    from importlib.metadata import version

    return version("tipg")


def tipg(database_url: str, *, workers: int) -> contextlib.AbstractContextManager[Server]:
    """tipg serving the ``ticket`` table (collection ``public.ticket``) of ``database_url``."""
    if tipg_version() is None:
        raise ServerUnavailable("tipg is not installed (pip install -e '.[bench]')")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIPG_", "KERBSIDE_"))}
    env.update(
        DATABASE_URL=database_url,
        TIPG_DB_SCHEMAS='["public"]',
        TIPG_DB_TABLES='["public.ticket"]',
        TIPG_DB_FUNCTIONS="[]",
        TIPG_TABLE_CONFIG__public_ticket__geomcol="location",
        TIPG_TABLE_CONFIG__public_ticket__datetimecol="first_reported_at",
        TIPG_TABLE_CONFIG__public_ticket__pk="id",
        TIPG_DEBUG="false",
    )
    argv = _uvicorn("tipg.main:app", port, workers)
    # An empty working directory: tipg reads a `.env` file from there.
    cwd = Path(tempfile.mkdtemp(prefix="kerbside-bench-tipg-"))
    return _serve("tipg", argv, env, cwd, port, "/healthz", workers)
