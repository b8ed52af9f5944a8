"""One benchmark run: datasets, then each server in turn with its workloads, then the probes.

Phases, in order (one server at a time, one database cluster at a time):

1. every dataset in ``mode.explain_datasets``: EXPLAIN ANALYZE of the duplicate lookup;
2. the intake dataset (100k): Kerbside on a fresh copy (healthz, readyz, intake_json), then a
   fresh Kerbside for photo uploads, then pgbench replaying the intake SQL on another fresh copy;
3. the map dataset (1M): Kerbside (ticket by reference, its map endpoints), then tipg;
4. photo processing in-process (no database).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from app.embedded import EmbeddedCluster, free_port
from app.settings import PROJECT_ROOT, Settings
from bench import (
    classify_quality,
    databases,
    dataset,
    dedup_quality,
    intake,
    loadgen,
    machine,
    maps_sql,
    servers,
    talk_bench,
    talk_sentiment,
    workorders_sql,
)
from bench.databases import BenchDatabase
from bench.progress import say
from bench.workloads import (
    BROADCAST_TARGET,
    EXPLAIN_TARGET,
    EXPORT_MEMORY_TARGET,
    HTTP_WORKLOADS,
    INTAKE_TARGET,
    NOTIFY_LATENCY_TARGET,
    NOTIFY_THROUGHPUT_TARGET,
    PHOTO_MEMORY_TARGET,
    PHOTO_PROCESS_TARGET,
    RATIOS,
    ROUTE_TARGET,
    VIEWPORT_LIMIT,
    WARMUP_SHARE,
    Context,
    HttpWorkload,
    explain_duplicate_lookup,
    multipart_parts,
    route_probe,
    street_bboxes,
    viewport_bboxes,
)


@dataclass(frozen=True)
class MapCeiling:
    """A map page's SQL through pgbench, over the boxes of the HTTP workload it bounds."""

    name: str
    title: str
    boxes: Callable[[Context], list[tuple[float, float, float, float]]]
    limit: int | None  # the page size the HTTP workload asks for (None: the default)


MAP_CEILINGS = (
    MapCeiling(
        "items_bbox_sql_ceiling",
        "The street-bbox page's SQL through pgbench -M prepared (no HTTP, no Python)",
        street_bboxes,
        None,
    ),
    MapCeiling(
        "items_z16_sql_ceiling",
        "The z16 view's SQL through pgbench -M prepared (no HTTP, no Python)",
        viewport_bboxes,
        VIEWPORT_LIMIT,
    ),
)

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
SCRATCH_DIR = RESULTS_DIR / "tmp"  # git-ignored: quick and tiny runs, logs, wrk inputs
SIZES = {"tiny": 200, "10k": 10_000, "100k": 100_000, "1m": 1_000_000}
RESULTS_SCHEMA = 1


@dataclass(frozen=True)
class Mode:
    name: str
    intake_dataset: str
    map_dataset: str
    explain_datasets: tuple[str, ...]
    seconds: dict[str, float]  # per duration class: write, read, baseline, photo
    warmup_s: float
    explain_runs: int
    requests_per_second_cap: int = 20_000  # the request bound: seconds times this


MODES = {
    "default": Mode(
        "default",
        intake_dataset="100k",
        map_dataset="1m",
        explain_datasets=("10k", "100k", "1m"),
        seconds={"write": 60, "read": 30, "baseline": 10, "photo": 10},
        warmup_s=5,
        explain_runs=200,
    ),
    "quick": Mode(
        "quick",
        intake_dataset="10k",
        map_dataset="10k",
        explain_datasets=("10k",),
        seconds={"write": 5, "read": 3, "baseline": 2, "photo": 2},
        warmup_s=1,
        explain_runs=50,
    ),
    "tiny": Mode(
        "tiny",
        intake_dataset="tiny",
        map_dataset="tiny",
        explain_datasets=("tiny",),
        seconds={"write": 2, "read": 2, "baseline": 1, "photo": 1},
        warmup_s=0,
        explain_runs=10,
    ),
}

PROBES = (
    "intake_sql_ceiling",
    "items_bbox_sql_ceiling",
    "items_z16_sql_ceiling",
    "workorders_polygon_sql_ceiling",
    "duplicate_lookup_explain",
    "photo_process_1core",
    "photo_process_8threads",
    "export_memory",
    "route_50_stops",
    "dedup_quality",
    "social_classify_complaint",
    "social_classify_service",
    "notify_latency",
    "notify_throughput",
    "notify_ceiling",
    "broadcast_100k",
    "spike_alert",
    "talk_sentiment",
)
# Decisions, not speed: their figures do not depend on the machine's load, so a run of these
# alone is recorded in bench/results too (python -m bench --only social_classify_service).
QUALITY_WORKLOADS = frozenset(
    {"dedup_quality", "social_classify_complaint", "social_classify_service", "talk_sentiment"}
)
# Per mode: messages for throughput and the ceiling, latency samples, broadcast subscribers.
NOTIFY_SIZES = {
    "default": (5_000, 50, 100_000),
    "quick": (2_000, 20, 20_000),
    "tiny": (200, 5, 2_000),
}
ALL_WORKLOADS = tuple(w.name for w in HTTP_WORKLOADS) + PROBES


def result(name: str, title: str, kind: str, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "title": title,
        "kind": kind,
        "status": "ok",
        "reason": None,
        "server": None,
        "dataset": None,
        "connections": None,
        "seconds": None,
        "requests": None,
        "rps": None,
        "bytes_per_s": None,
        "latency_ms": {},
        "errors": {},
        "peak_rss_mb": None,
        "target": None,
        "target_met": None,
        "extra": {},
    }
    out.update(fields)
    return out


def skipped(name: str, title: str, kind: str, reason: str, **fields: Any) -> dict[str, Any]:
    return result(name, title, kind, status="skipped", reason=reason, **fields)


def check_target(entry: dict[str, Any]) -> None:
    target = entry.get("target")
    if not target or entry["status"] != "ok":
        return
    checks = []
    latency = entry.get("latency_ms") or {}
    extra = entry.get("extra") or {}
    for key, limit in target.items():
        if key == "rps_min":
            checks.append((entry.get("rps") or 0) >= limit)
        elif key == "p50_ms_max":
            checks.append(latency.get("p50", float("inf")) <= limit)
        elif key == "p99_ms_max":
            checks.append(latency.get("p99", float("inf")) <= limit)
        elif key == "peak_rss_mb_max":
            checks.append((entry.get("peak_rss_mb") or float("inf")) <= limit)
        elif key == "photos_per_s_min":
            checks.append((entry.get("rps") or 0) >= limit)
        elif key == "seconds_to_alert_max":
            checks.append((extra.get("seconds_to_alert") or float("inf")) <= limit)
        elif key == "median_ms_max":
            checks.append(extra.get("execution_ms", {}).get("median", float("inf")) <= limit)
        elif key == "queue_seconds_max":
            checks.append(extra.get("queue_seconds", float("inf")) <= limit)
    entry["target_met"] = all(checks)


def ratios(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kerbside ÷ its comparison, from figures of this same run."""
    by_name = {e["name"]: e for e in entries}
    out = []
    for numerator, denominator, label in RATIOS:
        a, b = by_name.get(numerator), by_name.get(denominator)
        row: dict[str, Any] = {"numerator": numerator, "denominator": denominator, "label": label}
        if not a or not b or a["status"] != "ok" or b["status"] != "ok":
            missing = [
                e for e in (numerator, denominator) if by_name.get(e, {}).get("status") != "ok"
            ]
            row.update(status="n/a", reason="not measured in this run: " + ", ".join(missing))
        else:
            la, lb = a.get("latency_ms") or {}, b.get("latency_ms") or {}
            row.update(
                status="ok",
                rps_ratio=round(a["rps"] / b["rps"], 3) if b.get("rps") else None,
                p50_ratio=round(la["p50"] / lb["p50"], 3) if lb.get("p50") else None,
                p99_ratio=round(la["p99"] / lb["p99"], 3) if lb.get("p99") else None,
            )
        out.append(row)
    return out


class Harness:
    def __init__(
        self,
        mode: Mode,
        *,
        workers: int = 2,
        only: set[str] | None = None,
        open_dataset: Callable[[str], BenchDatabase] | None = None,
        workdir: Path | None = None,
        rebuild: bool = False,
        kerbside_settings: dict[str, str] | None = None,
        dedup_data: Path | None = None,
        dedup_server: str | None = None,
        complaints_data: Path | None = None,
        services_data: Path | None = None,
    ) -> None:
        self.mode = mode
        self.workers = workers
        self.kerbside_settings = kerbside_settings or {}
        # dedup_quality: the 311 export (None: $KERBSIDE_LA311_CSV or the shared default) and
        # a server to make its database on (None: a cluster of its own under .kerbside/bench/).
        self.dedup_data = dedup_data
        self.dedup_server = dedup_server
        # social_classify_*: the labelled texts (None: their $KERBSIDE_*_CSV or ../shared/data).
        self.complaints_data = complaints_data
        self.services_data = services_data
        self.only = only
        self.open_dataset = open_dataset or (
            lambda label: databases.open_cached(label, SIZES[label], rebuild=rebuild)
        )
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kerbside-bench-"))
        self.entries: list[dict[str, Any]] = []
        self.servers: dict[str, dict[str, Any]] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.database: dict[str, Any] = {}

    def wanted(self, name: str) -> bool:
        return self.only is None or name in self.only

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.time()
        facts = machine.machine_facts()
        if facts["load_average_at_start"][0] > 0.8:
            say(
                f"the machine is busy (load average {facts['load_average_at_start'][0]}): "
                "figures will be noisy; ratios within the run still hold best"
            )
        labels = [
            label
            for label in SIZES
            if label in self.mode.explain_datasets
            or label in (self.mode.intake_dataset, self.mode.map_dataset)
        ]
        for label in labels:
            if not self._dataset_needed(label):
                continue
            db = self.open_dataset(label)
            try:
                self.datasets[label] = db.manifest
                if not self.database:
                    self.database = machine.database_facts(db.url)
                if label in self.mode.explain_datasets and self.wanted("duplicate_lookup_explain"):
                    self._explain(db)
                if label == self.mode.intake_dataset:
                    self._intake_phase(db)
                if label == self.mode.map_dataset:
                    self._map_phase(db)
            finally:
                db.close()
        self._photo_probes()
        self._dedup_quality()
        self._classify_quality()
        self._notify_probes()
        self._talk_sentiment()
        for entry in self.entries:
            check_target(entry)
        facts["load_average_at_end"] = machine.load_average()
        return {
            "schema": RESULTS_SCHEMA,
            "mode": self.mode.name,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "wall_seconds": round(time.time() - started, 1),
            "machine": facts,
            "database": self.database,
            "load_generators": {
                "http": loadgen.wrk_version(),
                "sql": loadgen.pgbench_version(),
                "note": "wrk and pgbench share the 2 cores with the server; closed loop",
            },
            "settings": {
                "workers": self.workers,
                "kerbside_settings": self.kerbside_settings,
                "seconds": self.mode.seconds,
                "warmup_s": self.mode.warmup_s,
                "intake_dataset": self.mode.intake_dataset,
                "map_dataset": self.mode.map_dataset,
            },
            "datasets": self.datasets,
            "servers": self.servers,
            "workloads": self.entries,
            "ratios": ratios(self.entries),
        }

    def _dataset_needed(self, label: str) -> bool:
        phase_of = {w.name: w.phase for w in HTTP_WORKLOADS}
        needs = set()
        if label in self.mode.explain_datasets:
            needs.add("duplicate_lookup_explain")
        if label == self.mode.intake_dataset:
            needs |= {n for n, p in phase_of.items() if p == "intake"} | {"intake_sql_ceiling"}
            needs.add("spike_alert")
        if label == self.mode.map_dataset:
            needs |= {n for n, p in phase_of.items() if p == "map"} | {"export_memory"}
            needs |= {"items_bbox_sql_ceiling", "items_z16_sql_ceiling"}
            needs.add("workorders_polygon_sql_ceiling")
            needs.add("route_50_stops")
        return any(self.wanted(n) for n in needs)

    # -- phases -----------------------------------------------------------------------------

    def _explain(self, db: BenchDatabase) -> None:
        name, title = "duplicate_lookup_explain", "EXPLAIN ANALYZE of the duplicate lookup"
        say(f"{name} on {db.label}: {self.mode.explain_runs} points")
        try:
            ctx = self._context(db.url, db)
            probe = explain_duplicate_lookup(ctx, self.mode.explain_runs)
        except Exception as exc:  # a probe failing must not end the run
            self.entries.append(self._failed(name, title, "sql", exc, dataset=db.label))
            return
        self.entries.append(
            result(
                name,
                title,
                "sql",
                dataset=db.label,
                requests=probe["runs"],
                latency_ms={
                    "p50": probe["execution_ms"]["median"],
                    "p95": probe["execution_ms"]["p95"],
                    "max": probe["execution_ms"]["max"],
                },
                # Issue 3's target is at 1M tickets; smaller datasets are for the trend.
                target=EXPLAIN_TARGET if db.tickets >= 1_000_000 else None,
                extra=probe,
            )
        )

    def _intake_phase(self, db: BenchDatabase) -> None:
        workloads = [w for w in HTTP_WORKLOADS if w.phase == "intake" and self.wanted(w.name)]
        if workloads:
            url = db.working_copy("intake")
            ctx = self._context(url, db)
            ctx.facts["photo_jpeg"] = self._photo_file().read_bytes()
            self._serve_kerbside(url, ctx, [w for w in workloads if not w.fresh_server])
            for workload in (w for w in workloads if w.fresh_server):
                self._serve_kerbside(url, ctx, [workload])
        if self.wanted("intake_sql_ceiling"):
            self._ceiling(db)
        if self.wanted("spike_alert"):
            self._spike_alert(db)

    def _spike_alert(self, db: BenchDatabase) -> None:
        name = "spike_alert"
        title = "40 reports within 200 m: seconds from the 40th to its alert (talk job, worker)"
        say(f"{name} on {db.label}")
        try:
            url = db.working_copy("spikes")
            ctx = self._context(url, db)
            probe = talk_bench.spike_alert(url, ctx.points[0])
        except Exception as exc:  # a probe failing must not end the run
            self.entries.append(self._failed(name, title, "probe", exc, dataset=db.label))
            return
        self.entries.append(
            result(
                name,
                title,
                "probe",
                dataset=db.label,
                requests=probe["burst"],
                target=talk_bench.SPIKE_ALERT_TARGET,
                extra=probe,
            )
        )

    def _map_phase(self, db: BenchDatabase) -> None:
        workloads = [w for w in HTTP_WORKLOADS if w.phase == "map" and self.wanted(w.name)]
        ctx = self._context(db.url, db)
        self._serve_kerbside(db.url, ctx, [w for w in workloads if w.server == "kerbside"])
        for ceiling in MAP_CEILINGS:
            if self.wanted(ceiling.name):
                self._map_ceiling(db, ctx, ceiling)
        if self.wanted("workorders_polygon_sql_ceiling"):
            self._workorders_ceiling(db)
        if self.wanted("export_memory"):
            self._export_probe(db)
        if self.wanted("route_50_stops"):
            self._route_probe(ctx)
        tipg_workloads = [w for w in workloads if w.server == "tipg"]
        if tipg_workloads:
            self._serve(
                "tipg", lambda: servers.tipg(db.url, workers=self.workers), ctx, tipg_workloads
            )

    def _route_probe(self, ctx: Context) -> None:
        name, title = "route_50_stops", "Day route of 50 stops (geo.route.plan_route, in process)"
        runs = max(10, self.mode.explain_runs // 4)
        say(f"{name}: {runs} routes")
        try:
            probe = route_probe(ctx, runs)
        except Exception as exc:  # a probe failing must not end the run
            self.entries.append(self._failed(name, title, "inprocess", exc))
            return
        self.entries.append(
            result(
                name,
                title,
                "inprocess",
                dataset=ctx.facts["dataset"],
                requests=probe["runs"],
                latency_ms={
                    "p50": probe["execution_ms"]["median"],
                    "p95": probe["execution_ms"]["p95"],
                    "max": probe["execution_ms"]["max"],
                },
                target=ROUTE_TARGET,
                extra=probe,
            )
        )

    def _export_probe(self, db: BenchDatabase) -> None:
        """Both bulk exports of every ticket from a fresh one-process Kerbside, read to the
        end; its peak resident memory while streaming (issue 6: at most 150 MB at 1M)."""
        name, title = "export_memory", "Bulk export of every ticket (CSV, then GeoJSON), 1 process"
        common = {"server": "kerbside", "dataset": db.label, "connections": 1}
        say(f"{name}: streaming both exports of {db.tickets:,} tickets")
        try:
            media = self.workdir / "media"
            with servers.kerbside(
                db.url, workers=1, media_dir=media, settings=self.kerbside_settings
            ) as server:
                time.sleep(0.5)
                idle_mb = server.memory.peak_mb
                server.memory.reset()
                started = time.monotonic()
                sizes = {}
                for fmt in ("csv", "geojson"):
                    sizes[fmt] = _download(f"{server.base_url}/v1/export/tickets.{fmt}")
                seconds = time.monotonic() - started
                time.sleep(0.3)
                peak = server.memory.peak_mb
        except (servers.ServerUnavailable, OSError, RuntimeError) as exc:
            self.entries.append(self._failed(name, title, "http", exc, **common))
            return
        self.entries.append(
            result(
                name,
                title,
                "http",
                seconds=round(seconds, 2),
                requests=2,
                bytes_per_s=round(sum(sizes.values()) / seconds) if seconds else None,
                peak_rss_mb=round(peak, 1),
                target=EXPORT_MEMORY_TARGET,
                extra={
                    "idle_rss_mb": round(idle_mb, 1),
                    "bytes": sizes,
                    "tickets": db.tickets,
                },
                **common,
            )
        )

    def _context(self, url: str, db: BenchDatabase) -> Context:
        with psycopg.connect(url) as conn:
            points = dataset.workload_points(conn)
        return Context(url=url, tickets=db.tickets, points=points, facts={"dataset": db.label})

    def _serve_kerbside(self, url: str, ctx: Context, workloads: list[HttpWorkload]) -> None:
        if not workloads:
            return
        media = self.workdir / "media"

        def start() -> contextlib.AbstractContextManager[servers.Server]:
            return servers.kerbside(
                url, workers=self.workers, media_dir=media, settings=self.kerbside_settings
            )

        try:
            self._serve("kerbside", start, ctx, workloads)
        finally:
            # Photo uploads leave gigabytes of stored files; they are scratch, never results.
            shutil.rmtree(media, ignore_errors=True)

    def _serve(
        self,
        name: str,
        start: Callable[[], contextlib.AbstractContextManager[servers.Server]],
        ctx: Context,
        workloads: list[HttpWorkload],
    ) -> None:
        say(f"starting {name} ({self.workers} workers) on dataset {ctx.facts['dataset']}")
        try:
            with start() as server:
                for workload in workloads:
                    self.entries.append(self._http(server, workload, ctx))
                summary = self.servers.setdefault(
                    name, {"workers": server.workers, "peak_rss_mb": 0.0, "processes": 0}
                )
                summary["peak_rss_mb"] = round(
                    max(summary["peak_rss_mb"], server.memory.overall_peak_mb), 1
                )
                summary["processes"] = max(summary["processes"], server.memory.processes)
        except servers.ServerUnavailable as exc:
            say(f"{name} unavailable: {exc}")
            for workload in workloads:
                self.entries.append(
                    skipped(
                        workload.name,
                        workload.title,
                        "http",
                        f"{name} not available: {exc}",
                        server=name,
                        dataset=ctx.facts["dataset"],
                    )
                )

    def _http(self, server: servers.Server, workload: HttpWorkload, ctx: Context) -> dict[str, Any]:
        common = {"server": server.name, "dataset": ctx.facts["dataset"], "target": workload.target}
        kind = "http"
        if workload.openapi_path and not server.has_path(workload.openapi_path, workload.method):
            reason = (
                f"not available: {workload.method} {workload.openapi_path} is not in the API yet"
            )
            say(f"{workload.name}: {reason}")
            return skipped(workload.name, workload.title, kind, reason, **common)
        if workload.available is not None and (reason := workload.available(server)):
            say(f"{workload.name}: not available: {reason}")
            return skipped(
                workload.name, workload.title, kind, f"not available: {reason}", **common
            )
        if workload.name == "photo_upload":
            ctx.facts["multipart_parts"] = multipart_parts(server.operation("/v1/reports", "post"))
        seconds = self.mode.seconds[workload.duration]
        cap = int(seconds * self.mode.requests_per_second_cap)
        scratch = self.workdir / workload.name
        try:
            if self.mode.warmup_s > 0:
                warm = _warmup_context(ctx)
                paths, bodies = workload.generate(warm)
                load = self._load(workload, paths, bodies)
                loadgen.run_wrk(
                    server.base_url,
                    load,
                    seconds=self.mode.warmup_s,
                    max_requests=cap,
                    workdir=scratch,
                    label=f"{workload.name} warm-up",
                )
            paths, bodies = workload.generate(ctx)
            load = self._load(workload, paths, bodies)
            # Writes file reports: count them after. (A polygon search is a POST, and files none.)
            before = self._last_report(ctx) if workload.duration == "write" else None
            server.memory.reset()
            beside: contextlib.AbstractContextManager[dict[str, Any]] = (
                talk_bench.talk_alongside(ctx.url)
                if workload.alongside == "talk"
                else contextlib.nullcontext({})
            )
            with beside as beside_facts:
                say(f"{workload.name}: {workload.connections} connections, {seconds:g}s")
                measured = loadgen.run_wrk(
                    server.base_url,
                    load,
                    seconds=seconds,
                    max_requests=cap,
                    workdir=scratch,
                    label=workload.name,
                )
            time.sleep(0.3)  # one more memory sample after the last answer
            extra = {k: ctx.facts[k] for k in workload.facts if k in ctx.facts}
            extra.update(beside_facts)
            # The sum over the process tree is the table's figure; these tell the processes apart.
            extra["peak_rss_process_mb"] = round(server.memory.peak_process_mb, 1)
            extra["rss_at_peak_mb"] = server.memory.at_peak_mb
            peak_rss_mb = round(server.memory.peak_mb, 1)
            # The server's own time per answer (its Server-Timing header), where it sends one:
            # for photo uploads, from the last byte of the upload to the answer.
            server_timing = measured.pop("server_timing_ms")
            if server_timing:
                extra["server_timing_ms"] = server_timing
            if before is not None:
                with psycopg.connect(ctx.url) as conn:
                    counts = intake.report_counts(conn, before)
                    if workload.name == "photo_upload":
                        counts.update(intake.photo_counts(conn, before))
                        # Uploads are processed after they are accepted: how fast the server
                        # works off what the run left pending, and the memory that takes.
                        server.memory.reset()
                        drain = self.mode.seconds["photo"] * 3
                        counts.update(intake.photo_drain(conn, before, drain))
                        counts["drain_peak_rss_mb"] = round(server.memory.peak_mb, 1)
                        counts["drain_peak_rss_process_mb"] = round(
                            server.memory.peak_process_mb, 1
                        )
                extra.update(counts)
            return result(
                workload.name,
                workload.title,
                kind,
                connections=workload.connections,
                seconds=measured.pop("duration_s"),
                peak_rss_mb=peak_rss_mb,
                extra={**extra, "bytes_per_response": measured.pop("bytes_per_response")},
                **measured,
                **common,
            )
        except (loadgen.ToolMissing, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            return self._failed(workload.name, workload.title, kind, exc, **common)

    def _load(
        self, workload: HttpWorkload, paths: list[str], bodies: list[bytes] | None
    ) -> loadgen.HttpLoad:
        return loadgen.HttpLoad(
            method=workload.method,
            paths=paths,
            bodies=bodies,
            headers=workload.headers,
            unique_header=workload.unique_header,
            connections=workload.connections,
            timeout_s=workload.timeout_s,
            rate=workload.rate,
        )

    def _last_report(self, ctx: Context) -> int:
        with psycopg.connect(ctx.url) as conn:
            return intake.last_report_id(conn)

    def _ceiling(self, db: BenchDatabase) -> None:
        name = "intake_sql_ceiling"
        title = "The intake transaction's SQL through pgbench -M prepared (no HTTP, no Python)"
        seconds = self.mode.seconds["write"]
        clients = 32
        common = {"dataset": db.label, "server": "postgresql", "connections": clients}
        try:
            script_points = 0
            url = db.working_copy("ceiling")
            with psycopg.connect(url, autocommit=True) as conn:
                points = dataset.workload_points(conn)
                intake.store_inputs(conn, points)
                script_points = len(points)
            measured_points = int(script_points * (1 - WARMUP_SHARE))
            script = intake.pgbench_script(measured_points, clients)
            scratch = self.workdir / name
            (scratch).mkdir(parents=True, exist_ok=True)
            if self.mode.warmup_s > 0:
                # Warm up on the points the measured run does not use (ids after measured_points).
                warm = script.replace(
                    f"% {measured_points} + 1",
                    f"% {script_points - measured_points} + {measured_points + 1}",
                )
                loadgen.run_pgbench(
                    url,
                    warm,
                    clients=clients,
                    threads=2,
                    seconds=self.mode.warmup_s,
                    workdir=scratch,
                    label=f"{name} warm-up",
                    variables={"n": "0"},
                )
            with psycopg.connect(url) as conn:
                before = intake.last_report_id(conn)
            say(f"{name}: pgbench, {clients} clients, {seconds:g}s")
            measured = loadgen.run_pgbench(
                url,
                script,
                clients=clients,
                threads=2,
                seconds=seconds,
                workdir=scratch,
                label=name,
                variables={"n": "0"},
            )
            with psycopg.connect(url) as conn:
                counts = intake.report_counts(conn, before)
            (self.workdir / "intake_pgbench.sql").write_text(script)
            self.entries.append(
                result(
                    name,
                    title,
                    "pgbench",
                    seconds=measured.pop("duration_s"),
                    target=None,
                    extra={**counts, "script": "bench/results/tmp/<run>/intake_pgbench.sql"},
                    **measured,
                    **common,
                )
            )
        except Exception as exc:  # the ceiling failing must not lose the rest of the run
            self.entries.append(self._failed(name, title, "pgbench", exc, **common))

    def _map_ceiling(self, db: BenchDatabase, ctx: Context, ceiling: MapCeiling) -> None:
        """A map page's own statement through pgbench, over the HTTP workload's boxes."""

        def prepare(conn: psycopg.Connection[Any]) -> tuple[str, dict[str, Any]]:
            boxes = ceiling.boxes(ctx)
            maps_sql.store_boxes(conn, boxes)
            return maps_sql.pgbench_script(len(boxes)), {"boxes": len(boxes)}

        limit = ceiling.limit or Settings().map_default_features
        self._sql_ceiling(
            db, ceiling.name, ceiling.title, prepare, maps_sql.drop_boxes,
            variables={"limit": str(limit)},
        )  # fmt: skip

    def _workorders_ceiling(self, db: BenchDatabase) -> None:
        """One polygon request's SQL (key lookup + search) through pgbench, planned per polygon
        (``-M extended``) with the application's connection options."""

        def prepare(conn: psycopg.Connection[Any]) -> tuple[str, dict[str, Any]]:
            polygons = workorders_sql.store_polygons(conn)
            jurisdiction_id = workorders_sql.staff_jurisdiction(conn)
            script = workorders_sql.pgbench_script(polygons, jurisdiction_id)
            return script, {"polygons": polygons}

        self._sql_ceiling(
            db,
            "workorders_polygon_sql_ceiling",
            "A district-polygon request's SQL through pgbench -M extended (no HTTP, no Python)",
            prepare,
            workorders_sql.drop_polygons,
            protocol="extended",
            options=workorders_sql.CONNECTION_OPTIONS,
        )

    def _sql_ceiling(
        self,
        db: BenchDatabase,
        name: str,
        title: str,
        prepare: Callable[[psycopg.Connection[Any]], tuple[str, dict[str, Any]]],
        cleanup: Callable[[psycopg.Connection[Any]], None],
        **pgbench: Any,
    ) -> None:
        """A read workload's SQL alone, 8 clients on the pristine dataset: what the database
        does on these cores, for the "Kerbside ÷ database ceiling" ratio. ``prepare`` stores the
        script's inputs and returns (script, facts); ``cleanup`` removes the inputs."""
        seconds = self.mode.seconds["read"]
        clients = 8
        common = {"dataset": db.label, "server": "postgresql", "connections": clients}
        run = {"clients": clients, "threads": 2, "workdir": self.workdir / name, **pgbench}
        try:
            try:
                with psycopg.connect(db.url, autocommit=True) as conn:
                    script, facts = prepare(conn)
                if self.mode.warmup_s > 0:
                    loadgen.run_pgbench(
                        db.url, script, seconds=self.mode.warmup_s, label=f"{name} warm-up", **run
                    )
                say(f"{name}: pgbench, {clients} clients, {seconds:g}s")
                measured = loadgen.run_pgbench(db.url, script, seconds=seconds, label=name, **run)
            finally:
                with psycopg.connect(db.url, autocommit=True) as conn:
                    cleanup(conn)
            (self.workdir / f"{name}.sql").write_text(script)
            self.entries.append(
                result(
                    name,
                    title,
                    "pgbench",
                    seconds=measured.pop("duration_s"),
                    target=None,
                    extra={**facts, "script": f"bench/results/tmp/<run>/{name}.sql"},
                    **measured,
                    **common,
                )
            )
        except Exception as exc:  # the ceiling failing must not lose the rest of the run
            self.entries.append(self._failed(name, title, "pgbench", exc, **common))

    # -- duplicate rules' quality -----------------------------------------------------------

    def _dedup_quality(self) -> None:
        name = "dedup_quality"
        title = "Duplicate rules on a real 311 export: pairwise precision, recall, F1"
        if not self.wanted(name):
            return
        path = dedup_quality.data_path(self.dedup_data)
        if not path.is_file():
            reason = f"not available: no file {path} (set {dedup_quality.DATA_ENV})"
            say(f"{name}: skipped, {reason}")
            self.entries.append(skipped(name, title, "quality", reason))
            return
        say(f"{name}: {path.name} through the intake once per rule ({len(dedup_quality.RULES)})")
        cluster = None
        try:
            server = self.dedup_server
            if server is None:
                cluster = EmbeddedCluster(root=databases.BENCH_ROOT / "dedup", port=free_port())
                server = cluster.ensure_running()
            url = databases.empty_database(server, "bench_dedup_quality")
            figures = dedup_quality.measure(url, path)
            self.entries.append(
                result(
                    name,
                    title,
                    "quality",
                    dataset=path.name,
                    seconds=figures["seconds"],
                    requests=figures["reports_filed"],
                    extra=figures,
                )
            )
        except Exception as exc:  # a probe failing must not end the run
            self.entries.append(self._failed(name, title, "quality", exc, dataset=path.name))
        finally:
            if cluster is not None:
                cluster.stop()

    def _talk_sentiment(self) -> None:
        name = "talk_sentiment"
        title = "Talk: sentiment precision/recall on labelled nl/sv/en texts (and a tweet proxy)"
        if not self.wanted(name):
            return
        say(name)
        try:
            figures = talk_sentiment.measure()
        except Exception as exc:  # a probe failing must not end the run
            self.entries.append(self._failed(name, title, "quality", exc))
            return
        self.entries.append(
            result(
                name,
                title,
                "quality",
                dataset="bench/talk_sentiment.py LABELLED (90 texts)",
                requests=figures["labelled"]["texts"],
                extra=figures,
            )
        )

    # -- the social classifier's decisions ---------------------------------------------------

    def _classify_quality(self) -> None:
        plans = (
            (
                "social_classify_complaint",
                "Social classifier: is a post a complaint (ACL 2019 tweets), macro P/R/F1",
                classify_quality.data_path(
                    classify_quality.COMPLAINTS_ENV,
                    classify_quality.COMPLAINTS_DEFAULT,
                    self.complaints_data,
                ),
                classify_quality.COMPLAINTS_ENV,
                classify_quality.measure_complaint,
            ),
            (
                "social_classify_service",
                "Social classifier: which service (Bengaluru complaints, held-out 20 %), macro"
                " P/R/F1",
                classify_quality.data_path(
                    classify_quality.SERVICES_ENV,
                    classify_quality.SERVICES_DEFAULT,
                    self.services_data,
                ),
                classify_quality.SERVICES_ENV,
                classify_quality.measure_service,
            ),
        )
        for name, title, path, env, measure in plans:
            if not self.wanted(name):
                continue
            if not path.is_file():
                reason = f"not available: no file {path} (set {env})"
                say(f"{name}: skipped, {reason}")
                self.entries.append(skipped(name, title, "classify", reason))
                continue
            say(f"{name}: {path.name}")
            try:
                figures = measure(path)
            except Exception as exc:  # a probe failing must not end the run
                self.entries.append(self._failed(name, title, "classify", exc, dataset=path.name))
                continue
            say(f"{name}: macro F1 {figures['f1']}")
            self.entries.append(
                result(
                    name,
                    title,
                    "classify",
                    dataset=path.name,
                    seconds=figures.get("seconds", figures.get("train_seconds")),
                    requests=figures["rows"],
                    extra=figures,
                )
            )

    # -- notifications ----------------------------------------------------------------------

    def _notify_probes(self) -> None:
        """Delivery latency and throughput, the bare HTTP ceiling, a 100k broadcast: on a
        cluster of their own, with ``kerbside worker`` processes and a local webhook fake
        (``bench/notify_bench.py``)."""
        names = ("notify_latency", "notify_throughput", "notify_ceiling", "broadcast_100k")
        wanted = [n for n in names if self.wanted(n)]
        if not wanted:
            return
        messages, samples, subscribers = NOTIFY_SIZES[self.mode.name]
        say(f"notifications: {', '.join(wanted)} ({messages} messages, {subscribers} followers)")
        argv = [sys.executable, "-m", "bench.notify_bench", "--only", ",".join(wanted)]
        argv += ["--messages", str(messages), "--latency-samples", str(samples)]
        argv += ["--subscribers", str(subscribers)]
        try:
            out = subprocess.run(
                argv,
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                check=True,
                timeout=3600,
                env={**os.environ, **self.kerbside_settings},
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
            for name in wanted:
                self.entries.append(self._failed(name, name, "notify", exc))
            return
        titles = {
            "notify_latency": "status change → message at a local fake provider, idle worker",
            "notify_throughput": "outbox → local webhook fake, 2 worker processes",
            "notify_ceiling": "bare async HTTP loop to the same webhook fake (the ceiling)",
            "broadcast_100k": "broadcast to every follower in a polygon: rows queued, memory",
        }
        for name in wanted:
            found = figures.get(name)
            if found is None:
                self.entries.append(skipped(name, titles[name], "notify", "not measured"))
                continue
            fields: dict[str, Any] = {"server": "kerbside worker", "extra": found}
            if name == "notify_latency":
                fields |= {
                    "requests": found["samples"],
                    "latency_ms": {"p50": found["p50_ms"], "p99": found["p99_ms"]},
                    "target": NOTIFY_LATENCY_TARGET,
                }
            elif name == "notify_throughput":
                fields |= {
                    "requests": found["delivered"],
                    "seconds": found["seconds"],
                    "rps": found["per_second"],
                    "connections": found["workers"] * found["concurrency"],
                    "target": NOTIFY_THROUGHPUT_TARGET,
                }
            elif name == "notify_ceiling":
                fields |= {
                    "server": "httpx loop (uvloop)",
                    "requests": found["messages"],
                    "seconds": found["seconds"],
                    "rps": found["per_second"],
                    "connections": found["concurrency"],
                }
            else:
                fields |= {
                    "requests": found["rows_queued"],
                    "seconds": found["queue_seconds"],
                    "peak_rss_mb": found["peak_rss_mb"],
                    "target": BROADCAST_TARGET,
                }
            self.entries.append(result(name, titles[name], "notify", **fields))

    # -- photo processing -------------------------------------------------------------------

    def _photo_file(self) -> Path:
        path = databases.BENCH_ROOT / "photo-12mp.jpg"
        if not path.exists():
            say("making a 12 MP test photo")
            subprocess.run(
                [sys.executable, "-m", "bench.photo", str(path), "--make"],
                cwd=PROJECT_ROOT,
                check=True,
            )
        return path

    def _photo_probes(self) -> None:
        plans = (
            ("photo_process_1core", "process_photo, one thread pinned to one core", 1, "0"),
            ("photo_process_8threads", "process_photo, 8 threads at once (peak memory)", 8, ""),
        )
        for name, title, threads, cpus in plans:
            if not self.wanted(name):
                continue
            target = PHOTO_PROCESS_TARGET if threads == 1 else PHOTO_MEMORY_TARGET
            seconds = self.mode.seconds["photo"]
            say(f"{name}: {seconds:g}s")
            try:
                photo = self._photo_file()
                argv = [sys.executable, "-m", "bench.photo", str(photo), "--seconds", str(seconds)]
                argv += ["--threads", str(threads)] + (["--cpus", cpus] if cpus else [])
                out = subprocess.run(
                    argv,
                    cwd=PROJECT_ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=seconds + 120,
                )
                probe = json.loads(out.stdout.strip().splitlines()[-1])
            except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
                self.entries.append(self._failed(name, title, "inprocess", exc))
                continue
            if "unavailable" in probe:
                self.entries.append(
                    skipped(name, title, "inprocess", f"not available: {probe['unavailable']}")
                )
                continue
            latencies = probe.pop("latencies_us")
            self.entries.append(
                result(
                    name,
                    title,
                    "inprocess",
                    connections=threads,
                    seconds=probe["seconds"],
                    requests=probe["photos"],
                    rps=probe["photos_per_s"],
                    latency_ms=loadgen.percentiles_ms(latencies),
                    peak_rss_mb=probe["peak_rss_mb"],
                    target=target,
                    extra=probe,
                )
            )

    def _failed(
        self, name: str, title: str, kind: str, exc: BaseException, **fields: Any
    ) -> dict[str, Any]:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:400]
        say(f"{name}: FAILED: {reason}")
        return result(name, title, kind, status="failed", reason=reason, **fields)


def _download(url: str) -> int:
    """Read ``url`` to the end in 1 MiB pieces; its size in bytes."""
    total = 0
    with urllib.request.urlopen(url, timeout=600) as answer:  # noqa: S310 (loopback only)
        while chunk := answer.read(2**20):
            total += len(chunk)
    return total


def _warmup_context(ctx: Context) -> Context:
    return replace(
        ctx, points=ctx.points[int(len(ctx.points) * (1 - WARMUP_SHARE)) :] or ctx.points
    )


__all__ = [
    "ALL_WORKLOADS",
    "INTAKE_TARGET",
    "MODES",
    "QUALITY_WORKLOADS",
    "Harness",
    "Mode",
    "ratios",
]
