"""Bench databases: one cached PostgreSQL cluster per dataset size, built once, reused.

``.kerbside/bench/<label>/`` holds a cluster of the project's embedded kind (fsync on, as in
production) whose ``kerbside`` database is the pristine dataset. Workloads that write get a
fresh copy (``CREATE DATABASE … TEMPLATE``), so every run starts from the same rows and the
HTTP run and its pgbench ceiling see identical data. The cluster is rebuilt when the
generator version or the ticket count changes; when only the schema revision moved, the new
migrations run over the cached data instead (as a deployment upgrades; a failed upgrade
rebuilds).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from app.embedded import EmbeddedCluster, free_port
from app.migrations import head_revision, upgrade_to_head
from app.settings import PROJECT_ROOT
from bench import dataset
from bench.progress import percent, say

BENCH_ROOT = PROJECT_ROOT / ".kerbside" / "bench"
PRISTINE = "kerbside"

# On top of the embedded cluster's own settings: room for the bulk load without checkpoint
# storms that would otherwise land in the middle of a measured run.
CLUSTER_SETTINGS = {"max_wal_size": "4GB"}


def database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class BenchDatabase:
    """The pristine dataset on some server, and the working copies made from it."""

    label: str
    server_url: str  # any database on the server (admin statements run on `postgres`)
    name: str
    manifest: dict[str, Any]
    cluster: EmbeddedCluster | None = None
    copies: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return database_url(self.server_url, self.name)

    @property
    def tickets(self) -> int:
        return int(self.manifest["tickets"])

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(database_url(self.server_url, "postgres"), autocommit=True)

    def working_copy(self, suffix: str) -> str:
        """A fresh copy of the pristine database; its URL."""
        name = f"{self.name}_{suffix}"
        with self.admin() as conn:
            _terminate(conn, name)
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            _terminate(conn, self.name)
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}" STRATEGY FILE_COPY')
        self.copies.append(name)
        return database_url(self.server_url, name)

    def drop_copies(self) -> None:
        with self.admin() as conn:
            for name in self.copies:
                _terminate(conn, name)
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        self.copies.clear()

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.drop_copies()
        if self.cluster is not None:
            self.cluster.stop()


def _terminate(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )


def wanted_manifest(tickets: int) -> dict[str, Any]:
    return {
        "tickets": tickets,
        "schema_revision": head_revision(),
        "generator_version": dataset.GENERATOR_VERSION,
    }


def _matches(manifest: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(manifest.get(key) == value for key, value in wanted.items())


def open_cached(label: str, tickets: int, *, rebuild: bool = False) -> BenchDatabase:
    """The cached cluster for ``label``, started; built (a few seconds to ~1.5 min) if needed."""
    wanted = wanted_manifest(tickets)
    cluster = EmbeddedCluster(root=BENCH_ROOT / label, port=free_port())
    manifest_path = cluster.root / "dataset.json"
    manifest: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads(manifest_path.read_text())
    have_data = (cluster.datadir / "PG_VERSION").exists()
    if not rebuild and have_data and _only_schema_behind(manifest, wanted):
        upgraded = _upgrade_in_place(cluster, label, manifest, wanted)
        if upgraded is not None:
            manifest = upgraded
            manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    if rebuild or not _matches(manifest, wanted) or not have_data:
        if manifest:
            say(f"dataset {label}: out of date ({_why(manifest, wanted)}), rebuilding")
        cluster.destroy()
        cluster = EmbeddedCluster(root=BENCH_ROOT / label, port=free_port())
        url = cluster.ensure_running()
        with psycopg.connect(database_url(url, "postgres"), autocommit=True) as conn:
            for name, value in CLUSTER_SETTINGS.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            conn.execute("SELECT pg_reload_conf()")
        say(f"dataset {label}: migrating an empty database")
        upgrade_to_head(url)
        say(f"dataset {label}: loading {tickets:,} tickets (once; cached in {cluster.root})")
        loaded = dataset.build(url, tickets)
        manifest = {
            **wanted,
            "open_tickets": loaded.open_tickets,
            "workload_points": loaded.workload_points,
            "load_seconds": loaded.seconds,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        say(f"dataset {label}: loaded in {loaded.seconds['total']:.0f}s")
    else:
        url = cluster.ensure_running()
        say(f"dataset {label}: cached ({tickets:,} tickets), cluster on port {cluster.port}")
    prewarm(database_url(url, PRISTINE), label)
    return BenchDatabase(label, url, PRISTINE, manifest, cluster=cluster)


def prewarm(url: str, label: str) -> None:
    """Load the dataset's tables and indexes into shared buffers, smallest first, as far as
    three quarters of them go: a server that has been answering for a while holds what it
    reads there. Without this, the first workloads after the cluster starts read through
    the operating system's cache (a tenth slower, measured), and each run's first workload
    would pay for the others. The warm-up runs cannot do it: they use other boxes."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        shared = conn.execute(
            "SELECT setting::bigint * 8192 * 3 / 4 FROM pg_settings WHERE name = 'shared_buffers'"
        ).fetchone()
        budget = int(shared[0]) if shared is not None else 0
        relations = conn.execute(
            "SELECT c.oid::regclass::text, pg_relation_size(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'm')"
            " ORDER BY pg_relation_size(c.oid), c.oid"
        ).fetchall()
        chosen, total = [], 0
        for name, size in relations:
            if total + size > budget:
                break
            chosen.append(name)
            total += size
        for done, name in enumerate(chosen):
            percent(
                f"dataset {label}: prewarming shared buffers ({total >> 20:,} MB)",
                done,
                len(chosen),
            )
            conn.execute("SELECT pg_prewarm(%s::regclass)", (name,))
        percent(
            f"dataset {label}: prewarming shared buffers ({total >> 20:,} MB)",
            len(chosen),
            len(chosen),
        )


def _only_schema_behind(manifest: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """The same rows of the same generator, built before newer migrations."""
    same = {k: v for k, v in wanted.items() if k != "schema_revision"}
    return (
        _matches(manifest, same)
        and "built_at" in manifest
        and manifest.get("schema_revision") != wanted["schema_revision"]
    )


def _upgrade_in_place(
    cluster: EmbeddedCluster, label: str, manifest: dict[str, Any], wanted: dict[str, Any]
) -> dict[str, Any] | None:
    """Run the new migrations over the cached dataset, as a deployment upgrades its database
    (minutes instead of the build's quarter of an hour at 1M, and the migrations meet a
    million rows); None when that fails (an old revision no longer in the chain, say), and
    the caller rebuilds."""
    began = time.perf_counter()
    say(f"dataset {label}: upgrading in place ({manifest.get('schema_revision')} -> head)")
    try:
        upgrade_to_head(cluster.ensure_running())
    except Exception as exc:  # any failure: rebuild from scratch instead
        say(f"dataset {label}: the upgrade failed ({type(exc).__name__}: {exc}); rebuilding")
        return None
    seconds = round(time.perf_counter() - began, 1)
    say(f"dataset {label}: upgraded in {seconds:.1f}s")
    upgrades = [
        *manifest.get("upgrades", []),
        {
            "from": manifest.get("schema_revision"),
            "to": wanted["schema_revision"],
            "seconds": seconds,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    ]
    return {**manifest, "schema_revision": wanted["schema_revision"], "upgrades": upgrades}


def _why(manifest: dict[str, Any], wanted: dict[str, Any]) -> str:
    changed = [k for k, v in wanted.items() if manifest.get(k) != v]
    return ", ".join(f"{k} {manifest.get(k)} -> {wanted[k]}" for k in changed) or "incomplete"


def on_server(server_url: str, label: str, tickets: int) -> BenchDatabase:
    """A dataset in a new database ``bench_<label>`` on an existing server (the smoke test)."""
    name = f"bench_{label}"
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as conn:
        _terminate(conn, name)
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url(server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    upgrade_to_head(url)
    loaded = dataset.build(url, tickets, workload_points=min(2_000, dataset.WORKLOAD_POINTS))
    manifest = {
        **wanted_manifest(tickets),
        "open_tickets": loaded.open_tickets,
        "workload_points": loaded.workload_points,
        "load_seconds": loaded.seconds,
    }
    return BenchDatabase(label, server_url, name, manifest)


def empty_database(server_url: str, name: str) -> str:
    """A new, migrated database ``name`` without data on an existing server; its URL."""
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as conn:
        _terminate(conn, name)
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url(server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    upgrade_to_head(url)
    return url


def drop_database(db: BenchDatabase) -> None:
    db.drop_copies()
    with db.admin() as conn:
        _terminate(conn, db.name)
        conn.execute(f'DROP DATABASE IF EXISTS "{db.name}"')


def data_dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
