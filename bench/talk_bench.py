"""Talk of the town (issue 21): how soon a spike raises its alert, and what detection costs
the intake.

- ``spike_alert``: on the intake dataset (a year of tickets), a real ``kerbside worker`` runs
  its periodic jobs (the ``talk`` job every 15 s among them); once it has caught up with the
  history, 40 reports of one service are filed through the intake (``submit_report``) within
  200 m, one after another. ``extra.seconds_to_alert`` is the time from the 40th report's
  commit to an open alert holding all 40 (target: 60 s).
- ``intake_with_spike_detection``: ``intake_json`` again (points moved 85 m, so they do not
  join the first run's tickets) while the talk job runs every 15 s beside the server, as the
  worker runs it; its ratio to ``intake_json`` is the cost (target: < 5 %).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from geo.distance import offset_lonlat

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BURST = 40
BURST_RADIUS_M = 150.0  # every report within 200 m of the others' centre
TALK_EVERY_S = 15.0  # the job's cron (app/jobs/tasks.py)
SPIKE_ALERT_TARGET = {"seconds_to_alert_max": 60.0}
INTAKE_COST_TARGET = {"rps_ratio_min": 0.95}


def _env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "KERBSIDE_DATABASE_URL": url,
        "KERBSIDE_LOG_JSON": "false",
        "KERBSIDE_LOG_LEVEL": "WARNING",
    }


def _caught_up(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT (SELECT coalesce(max(report_id), 0) FROM talk_signal),"
        " (SELECT coalesce(max(id), 0) FROM report)"
    ).fetchone()
    assert row is not None
    return bool(row[0] >= row[1])


def _wait(conn: psycopg.Connection[Any], timeout_s: float) -> float:
    started = time.monotonic()
    while not _caught_up(conn):
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the talk job did not catch up within {timeout_s:.0f}s")
        time.sleep(0.5)
    return time.monotonic() - started


# -- the talk job beside the intake ---------------------------------------------------------------


@contextlib.contextmanager
def talk_alongside(url: str, every_s: float = TALK_EVERY_S) -> Iterator[dict[str, Any]]:
    """The talk job every ``every_s`` seconds in a process of its own (as a worker runs it),
    caught up with the database's backlog before the caller measures anything."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.talk_bench", "loop", str(every_s)],
        env=_env(url),
        cwd=PROJECT_ROOT,
    )
    facts: dict[str, Any] = {"talk_every_s": every_s}
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            facts["talk_catch_up_s"] = round(_wait(conn, 600), 1)
        yield facts
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        if process.poll() is None:
            process.kill()


async def _loop(every_s: float) -> None:
    from app.db import make_engine, make_sessionmaker
    from app.settings import get_settings
    from app.talk import spikes

    settings = get_settings()
    engine = make_engine(settings, pool_size=1)
    sessionmaker = make_sessionmaker(engine)
    try:
        while True:
            started = time.monotonic()
            async with sessionmaker() as session, session.begin():
                await spikes.tick(session, settings=settings)
            await asyncio.sleep(max(0.0, every_s - (time.monotonic() - started)))
    finally:
        await engine.dispose()


async def _time_tick(url: str) -> float:
    """The seconds of one run of the talk job with the burst's alert open."""
    from app.db import make_engine, make_sessionmaker
    from app.settings import Settings
    from app.talk import spikes

    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            started = time.monotonic()
            async with session.begin():
                await spikes.tick(session)
            return round(time.monotonic() - started, 3)
    finally:
        await engine.dispose()


# -- spike_alert -----------------------------------------------------------------------------------


async def _file_burst(url: str, centre: tuple[float, float], service: str) -> list[float]:
    """File the burst through the intake, one report per transaction; their commit times."""
    from app.db import make_engine, make_sessionmaker
    from app.jurisdictions.catalog import Catalog
    from app.reports.intake import Place, Submission, Submitter
    from app.reports.models import Channel, LocationSource
    from app.reports.service import submit_report
    from app.settings import Settings

    engine = make_engine(Settings(database_url=url), pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    catalog = Catalog()
    rng = random.Random(21)
    committed: list[float] = []
    try:
        for n in range(BURST):
            distance = BURST_RADIUS_M * math.sqrt(rng.random())
            angle = rng.random() * 2 * math.pi
            lon, lat = offset_lonlat(
                *centre, distance * math.cos(angle), distance * math.sin(angle)
            )
            async with sessionmaker() as session, session.begin():
                await submit_report(
                    session,
                    catalog,
                    Submission(
                        channel=Channel.app,
                        submitter=Submitter(label=f"bench-burst-{n}", identified=False),
                        service_code=service,
                        place=Place(lon, lat, LocationSource.device),
                        description="Tree down across the road after the storm",
                    ),
                )
            committed.append(time.monotonic())
            await asyncio.sleep(0.25)  # 40 reports in ten seconds: a burst
    finally:
        await engine.dispose()
    return committed


def spike_alert(url: str, centre: tuple[float, float], service: str = "pothole") -> dict[str, Any]:
    """Start a worker, wait for the talk job to catch up, file the burst, time the alert."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        env=_env(url),
        cwd=PROJECT_ROOT,
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            history = conn.execute(
                "SELECT count(*), (SELECT count(*) FROM ticket WHERE status IN"
                " ('open', 'acknowledged', 'scheduled', 'in_progress', 'reopened')),"
                " extract(epoch FROM max(received_at) - min(received_at)) / 86400 FROM report"
            ).fetchone()
            assert history is not None
            catch_up = _wait(conn, 900)
            committed = asyncio.run(_file_burst(url, centre, service))
            last = committed[-1]
            opened_at: float | None = None
            complete_at: float | None = None
            while time.monotonic() - last < 180:
                row = conn.execute(
                    "SELECT max(a.signal_count) FROM talk_alert a"
                    " WHERE a.status = 'open' AND ST_DWithin(a.centroid::geography,"
                    " ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, 400)",
                    centre,
                ).fetchone()
                count = row[0] if row else None
                now = time.monotonic()
                if count is not None and opened_at is None:
                    opened_at = now
                if count is not None and count >= BURST:
                    complete_at = now
                    break
                time.sleep(0.2)
            alert = conn.execute(
                "SELECT id, signal_count, threshold, expected FROM talk_alert"
                " ORDER BY id DESC LIMIT 1"
            ).fetchone()
    finally:
        worker.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(15)
        if worker.poll() is None:
            worker.kill()
    tick_seconds = asyncio.run(_time_tick(url))
    return {
        "tick_seconds": tick_seconds,
        "history_reports": int(history[0]),
        "open_tickets": int(history[1]),
        "history_days": round(float(history[2] or 0), 1),
        "talk_catch_up_s": round(catch_up, 1),
        "burst": BURST,
        "burst_seconds": round(committed[-1] - committed[0], 1),
        "seconds_to_alert": round(complete_at - last, 1) if complete_at else None,
        "alert_opened_after_first_report_s": round(opened_at - committed[0], 1)
        if opened_at
        else None,
        "alert": {
            "signals": alert[1],
            "threshold": alert[2],
            "expected": alert[3],
        }
        if alert
        else None,
    }


def main(argv: list[str]) -> None:
    if argv[:1] == ["loop"]:
        asyncio.run(_loop(float(argv[1])))


if __name__ == "__main__":
    main(sys.argv[1:])
