"""Facts about the machine and software a result was measured on."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psycopg

from app.settings import PROJECT_ROOT


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 0.0


def _git(*args: str) -> str | None:
    result = subprocess.run(
        ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else None


def _package(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages: above ~1 on 2 cores, something else was running."""
    return [round(v, 2) for v in os.getloadavg()]


def machine_facts() -> dict[str, Any]:
    status = _git("status", "--porcelain")
    return {
        "load_average_at_start": load_average(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "packages": {
            name: _package(name)
            for name in ("fastapi", "uvicorn", "sqlalchemy", "psycopg", "pydantic", "tipg")
        },
    }


DATABASE_SETTINGS = (
    "shared_buffers",
    "work_mem",
    "max_connections",
    "max_wal_size",
    "fsync",
    "synchronous_commit",
    "jit",
)


def database_facts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), postgis_lib_version(),"
            " postgis_full_version()"
        ).fetchone()
        assert row is not None
        settings = {
            name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]
            for name in DATABASE_SETTINGS
        }
    return {"postgresql": row[0], "postgis": row[1], "postgis_full": row[2], "settings": settings}
