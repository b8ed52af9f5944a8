"""Upgrades (docs/operations.md): every ``kerbside serve`` migrates at start, so several
processes started at once must not race to build the schema."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg

from app.migrations import head_revision
from app.settings import PROJECT_ROOT


def test_processes_migrating_at_once_take_turns(database_url: str) -> None:
    name = f"kerbside_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        env = {**os.environ, "KERBSIDE_DATABASE_URL": url, "KERBSIDE_ENV": "test"}
        racers = [
            subprocess.Popen(
                [sys.executable, "-m", "app.cli", "migrate"],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(3)
        ]
        outputs = [racer.communicate(timeout=300)[0].decode() for racer in racers]
        assert [racer.returncode for racer in racers] == [0, 0, 0], outputs
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert row == (head_revision(),)
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
