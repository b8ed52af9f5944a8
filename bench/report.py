"""Results → ``docs/performance.md`` (tables, ratios, method) and one PNG chart per workload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.workloads import RATIOS

METHOD = """\
## Method

**Command.** `scripts/bench` (or `make bench`) installs what it needs (Debian `wrk`, the
`bench` extra with matplotlib and tipg), builds or reuses the datasets, runs every workload and
writes `bench/results/<timestamp>-default.json`, `bench/results/latest.json`, this page and
the charts in `docs/performance/`. `scripts/bench --quick` (≈1 minute, 10k tickets, seconds
per workload) writes under `bench/results/tmp/` instead, which git ignores.
`python -m bench --render bench/results/latest.json` re-renders this page from a results file.

**Datasets.** The synthetic city of `geo/city.py` (a 6 km-radius city, 8 districts) with the
demo jurisdiction and its services (`pothole`, `fly_tipping`, `streetlight`) from
`app.seed.demo`, and 10k, 100k or 1M tickets. Points mix a uniform spread with 40 Gaussian
hotspots (real potholes cluster), timestamps span a year (more of them recent), statuses
follow age (most old tickets fixed or closed, ≈17 % open). Each ticket has its report and
its `ticket_opened` event, the reference `K-YYYY-NNNNNN` and its district; rows are bulk
loaded (`COPY` + `INSERT … SELECT`, secondary indexes rebuilt afterwards), then
`VACUUM ANALYZE`. Each dataset is a PostgreSQL cluster of the project's embedded kind
(`fsync` on, as in production) cached in `.kerbside/bench/<size>/`, rebuilt when the schema
revision or the generator changes. Workloads that write run on a fresh copy of it
(`CREATE DATABASE … TEMPLATE`), so every run starts from the same rows. Write workloads draw
their points from `bench_point`: fresh points of the same city and hotspots, so some reports
join existing tickets (the share is recorded).

**Servers, one at a time.** Kerbside as in production: `uvicorn app.main:app_factory
--factory` with uvloop and httptools, 2 worker processes, no access log,
`KERBSIDE_ENV=production`, the default database pool, and the per-address report rate limit
off (every request comes from 127.0.0.1). tipg 1.x (`tipg.main:app`, same worker count, its
default settings) serves the `ticket` table of the same database. Peak RSS is the largest
sum of resident memory over the server's whole process tree (master, workers and
multiprocessing's resource tracker), sampled five times a second during each workload; it is
the figure in the table, and the one the memory targets are checked against. The idle tree
already holds about 310 MB of it (each worker 130 to 140 MB once the app is imported), so the
details also give each process's share at the peak and the largest single process. Photo
uploads are processed after they are accepted, so `photo_upload` also reports how many photos
were still pending when the run ended, how fast the server then processed them with no other
load, and the memory peak while it did. Its target says "excluding transfer": the details give
the server's own time from the last byte of the upload to the answer (its `Server-Timing`
header), while the table, and the target check, keep wrk's latency, which includes reading
the 4 MB body, the stricter of the two.

**Load generators.** HTTP: `wrk` (C, an event loop per thread, Lua scripts in
`bench/wrk/workload.lua` that walk prepared URLs and bodies and give each POST a unique
`Idempotency-Key`), 2 threads, 32 connections (8 for photo uploads and for z14 tiles, whose
answers weigh megabytes at 1M tickets); an answer slower than 5 s (15 s for tiles) counts as
a socket error. A Python client would take most of a core from the server on a 2-core
machine. wrk is closed-loop (each connection sends its next request when the last is
answered): latencies are service times at that concurrency, and flat out the p50 includes
the queue the connections build. `workorders_polygon_at_300` paces the same 8 connections to
a combined 300 req/s on a fixed schedule (`bench/wrk/workload.lua`), for the p50 at the
rate issue 5 names. Database
ceilings replay the statements of a workload through pgbench, with scripts generated from the
application's own SQL builders; each reads its inputs with one primary-key lookup per
transaction:

- `intake_sql_ceiling`: `-M prepared -c 32 -j 2`, the statements of
  `app.reports.repository` and `app.core.idempotency`, each point's lock keys and search box.
- `items_bbox_sql_ceiling`, `items_z16_sql_ceiling`: `-M prepared -c 8 -j 2`,
  `app.maps.queries.map_page_sql`, the public default page from the `ticket_map` read model
  (`bench/maps_sql.py`), the HTTP workload's boxes.
- `workorders_polygon_sql_ceiling`: `-M extended -c 8 -j 2` (planned per polygon, as the
  application's unprepared searches are; parallel query and JIT off, as on its connections),
  the API-key lookup and `app.workorders.repository.search_statement`
  (`bench/workorders_sql.py`), the districts' polygons.

Latency percentiles for pgbench come from its per-transaction log.

**Ratios.** Always within one run, so the machine's mood cancels out: Kerbside's req/s ÷ the
comparison's req/s (above 1 is better for Kerbside), and p50/p99 latency ratios (below 1 is
better for Kerbside). Kerbside ÷ ceiling says how much of the database's own throughput the
HTTP service delivers; Kerbside ÷ tipg compares with what a city would otherwise deploy.

**Duplicate rules' quality (`dedup_quality`).** Not a speed figure: the LA 311 export
(`$KERBSIDE_LA311_CSV`, default `../shared/data/la311_2020-01-01_to_03_10k.csv` beside the
project, never copied into it; skipped when absent) is filed oldest first through the real
intake (`submit_report`), once per rule, into an empty database on a cluster of its own
(`.kerbside/bench/dedup/`): `radius` at 5, 25, 50 and 100 m, `same_address` (the address
only, and with the same street within 100 m) and `never`, each with a 48 h window and one
service per `requesttype`. Two reports in one ticket are a predicted duplicate pair;
precision, recall and F1 are pairwise. The export marks no duplicates, so the labels come from
a documented rule on the city's own fields (same `requesttype`, created at most 48 h apart,
same `address` text or same geocoded point): it favours address rules by construction and
cannot see a job spread along a street; see `bench/dedup_quality.py`.

**The social classifier's decisions (`social_classify_complaint`, `social_classify_service`).**
Not speed figures either, and in-process: "is it a complaint" on the ACL 2019 tweets
(`$KERBSIDE_COMPLAINTS_CSV`), 10-fold stratified cross-validation of the report model, with
the zero-shot figure beside it; "which service" on the Bengaluru complaints
(`$KERBSIDE_BANGALORE_CSV`), the model trained on 80 % and the held-out 20 % classified.
Macro precision, recall and F1; per class in `extra.per_class`. A run of quality workloads
alone is kept in `bench/results/<stamp>-quality.json`. See `bench/classify_quality.py` and
docs/classify.md.

**Noise.** The machine has 2 shared virtual cores: the server, PostgreSQL and the load
generator all compete for them, and neighbours on the host come and go. Nothing is pinned
(pinning is not reliable on a shared VM). Each workload runs once after a warm-up (5 s by
default), for 60 s (writes) or 30 s (reads); the EXPLAIN figures are medians over 200
points. Expect ±10 % between runs; compare ratios, not absolute figures, across runs.
Benchmarks never fail CI; `tests/test_bench_smoke.py` only keeps the harness working.
"""


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _errors(entry: dict[str, Any]) -> str:
    errors = entry.get("errors") or {}
    parts = [f"{k} {v}" for k, v in errors.items() if v]
    return ", ".join(parts) if parts else "0"


def _target(entry: dict[str, Any]) -> str:
    target = entry.get("target")
    if not target:
        return ""
    words = {
        "rps_min": "≥ {:g} req/s",
        "p99_ms_max": "p99 ≤ {:g} ms",
        "peak_rss_mb_max": "RSS ≤ {:g} MB",
        "photos_per_s_min": "≥ {:g} photos/s",
        "median_ms_max": "median ≤ {:g} ms",
        "p50_ms_max": "p50 ≤ {:g} ms",
        "queue_seconds_max": "queued ≤ {:g} s",
    }
    text = ", ".join(words[k].format(v) for k, v in target.items() if k in words)
    met = entry.get("target_met")
    mark = "" if met is None else (" ✅" if met else " ❌")
    return text + mark


def results_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | server | dataset | conns | req/s | p50 ms | p95 ms | p99 ms | MB/s "
        "| errors | peak RSS MB | target |",
        "| --- | --- | --- | --: | --: | --: | --: | --: | --: | --- | --: | --- |",
    ]
    for e in results["workloads"]:
        if e["kind"] in ("sql", "quality", "classify"):
            continue  # their own tables below
        name = f"`{e['name']}`"
        if e["status"] != "ok":
            lines.append(
                f"| {name} | {e.get('server') or ''} | {e.get('dataset') or ''} "
                f"| | | | | | | | | {e['status']}: {e.get('reason') or ''} |"
            )
            continue
        latency = e.get("latency_ms") or {}
        mb = e["bytes_per_s"] / 1e6 if e.get("bytes_per_s") else None
        lines.append(
            f"| {name} | {e.get('server') or 'in-process'} | {e.get('dataset') or '-'} "
            f"| {_fmt(e.get('connections'))} | {_fmt(e.get('rps'))} "
            f"| {_fmt(latency.get('p50'), 2)} | {_fmt(latency.get('p95'), 2)} "
            f"| {_fmt(latency.get('p99'), 2)} | {_fmt(mb, 2)} | {_errors(e)} "
            f"| {_fmt(e.get('peak_rss_mb'))} | {_target(e)} |"
        )
    return lines


def ratio_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| comparison | Kerbside | vs | req/s ratio | p50 ratio | p99 ratio |",
        "| --- | --- | --- | --: | --: | --: |",
    ]
    for r in results.get("ratios", []):
        if r["status"] != "ok":
            lines.append(
                f"| {r['label']} | `{r['numerator']}` | `{r['denominator']}` "
                f"| n/a ({r.get('reason')}) | | |"
            )
            continue
        lines.append(
            f"| {r['label']} | `{r['numerator']}` | `{r['denominator']}` "
            f"| {_fmt(r.get('rps_ratio'), 2)} | {_fmt(r.get('p50_ratio'), 2)} "
            f"| {_fmt(r.get('p99_ratio'), 2)} |"
        )
    return lines


def explain_table(results: dict[str, Any]) -> list[str]:
    rows = [e for e in results["workloads"] if e["kind"] == "sql"]
    if not rows:
        return []
    lines = [
        "| dataset | points | median ms | p95 ms | max ms | planning ms (median) "
        "| blocks read (all runs) | indexes used | target |",
        "| --- | --: | --: | --: | --: | --: | --: | --- | --- |",
    ]
    for e in rows:
        if e["status"] != "ok":
            lines.append(f"| {e.get('dataset')} | | | | | | | {e['status']}: {e.get('reason')} | |")
            continue
        x = e["extra"]
        lines.append(
            f"| {e['dataset']} | {x['runs']} | {x['execution_ms']['median']:.3f} "
            f"| {x['execution_ms']['p95']:.3f} | {x['execution_ms']['max']:.3f} "
            f"| {x['planning_ms_median']:.3f} | {x.get('shared_read_blocks', '-')} "
            f"| {', '.join(x['indexes_used']) or 'none'} "
            f"| {_target(e)} |"
        )
    largest = rows[-1]
    if largest["status"] == "ok" and largest["extra"].get("sample_plan"):
        lines += [
            "",
            f"One of the plans at {largest['dataset']} (`EXPLAIN (ANALYZE, BUFFERS)`):",
            "",
            "```",
            largest["extra"]["sample_plan"],
            "```",
        ]
    return lines


def quality_table(results: dict[str, Any]) -> list[str]:
    """The duplicate rules' pairwise precision, recall and F1 (workload ``dedup_quality``)."""
    entry = next((e for e in results["workloads"] if e["name"] == "dedup_quality"), None)
    if entry is None:
        return []
    if entry["status"] != "ok":
        return [f"`{entry['name']}`: {entry['status']}: {entry.get('reason')}"]
    x = entry["extra"]
    lines = [
        f"`{x['file']}`: {x['rows']:,} reports filed through the intake once per rule, "
        f"window {x['window_hours']:g} h; {x['labelled_pairs']:,} labelled duplicate pairs "
        f"({x['label_rule']}). `extra.f1` is `{x['headline_rule']}`'s.",
        "",
        "| rule | strategy | radius m | same street within m | tickets | predicted pairs "
        "| precision | recall | F1 |",
        "| --- | --- | --: | --: | --: | --: | --: | --: | --: |",
    ]
    for name, r in x["rules"].items():
        lines.append(
            f"| `{name}` | {r['strategy']} | {_fmt(r.get('radius_m'))} "
            f"| {_fmt(r.get('street_within_m'))} | {r['tickets']:,} | {r['predicted_pairs']:,} "
            f"| {_fmt(r.get('precision'), 3)} | {_fmt(r['recall'], 3)} | {_fmt(r['f1'], 3)} |"
        )
    return lines


def talk_table(results: dict[str, Any]) -> list[str]:
    """Talk's sentiment: precision and recall per language (``talk_sentiment``)."""
    entry = next((e for e in results["workloads"] if e["name"] == "talk_sentiment"), None)
    if entry is None:
        return []
    if entry["status"] != "ok":
        return [f"`{entry['name']}`: {entry['status']}: {entry.get('reason')}"]
    x = entry["extra"]["labelled"]
    lines = [
        f"{x['texts']} labelled texts written for Kerbside (labels set when written; see "
        "`bench/talk_sentiment.py`), negative below "
        f"{x['thresholds'][0]}, positive above {x['thresholds'][1]}.",
        "",
        "| language | negative P | negative R | positive P | positive R | accuracy (3 classes) |",
        "| --- | --: | --: | --: | --: | --: |",
    ]
    for language in ("en", "nl", "sv", "all"):
        r = x[language]
        lines.append(
            f"| {language} | {_fmt(r['negative']['precision'], 3)} "
            f"| {_fmt(r['negative']['recall'], 3)} | {_fmt(r['positive']['precision'], 3)} "
            f"| {_fmt(r['positive']['recall'], 3)} | {_fmt(r['accuracy'], 3)} |"
        )
    proxy = entry["extra"].get("complaints_proxy")
    if proxy:
        c = proxy["complaint_as_negative"]
        lines += [
            "",
            f"Proxy on real English tweets (`{proxy['file']}`, {proxy['rows']:,}): "
            f'"negative" as "a complaint": precision {c["precision"]}, recall '
            f"{c['recall']} (a complaint is not always angry).",
        ]
    return lines


def classify_table(results: dict[str, Any]) -> list[str]:
    """The social classifier's macro precision, recall and F1 (``social_classify_*``)."""
    entries = [e for e in results["workloads"] if e["kind"] == "classify"]
    if not entries:
        return []
    lines = [
        "| workload | data | rows | variant | precision | recall | F1 (macro) | accuracy |",
        "| --- | --- | --: | --- | --: | --: | --: | --: |",
    ]
    for e in entries:
        if e["status"] != "ok":
            lines.append(f"| `{e['name']}` | | | {e['status']}: {e.get('reason')} | | | | |")
            continue
        x = e["extra"]
        variants = [("headline", x)] + [
            (key, x[key]) for key in ("zero_shot", "keywords_only", "model_only") if key in x
        ]
        for variant, v in variants:
            lines.append(
                f"| `{e['name']}` | {x['file']} | {x['rows']:,} | {variant} "
                f"| {_fmt(v['precision'], 3)} | {_fmt(v['recall'], 3)} | {_fmt(v['f1'], 3)} "
                f"| {_fmt(v.get('accuracy'), 3)} |"
            )
    lines += [
        "",
        *(f"- `{e['name']}`: {e['extra']['method']}." for e in entries if e["status"] == "ok"),
    ]
    return lines


def details(results: dict[str, Any]) -> list[str]:
    lines = []
    for e in results["workloads"]:
        x = e.get("extra") or {}
        if e["status"] == "ok" and "reports" in x:
            lines.append(
                f"- `{e['name']}`: {x['reports']:,} reports filed in the measured run, "
                f"{x['joined']:,} joined an existing ticket ({(x.get('joined_share') or 0):.0%})."
            )
        if e["status"] == "ok" and "seconds_to_alert" in x:
            lines.append(
                f"- `{e['name']}`: {x['burst']} reports filed in {x['burst_seconds']} s among "
                f"{x['history_reports']:,} reports over {x['history_days']} days "
                f"({x['open_tickets']:,} open tickets); the alert held all {x['burst']} "
                f"{x['seconds_to_alert']} s after the last (one talk run: {x.get('tick_seconds')} "
                f"s; it runs every 15 s, so at worst 15 s + one run)."
            )
        if e["status"] == "ok" and "photos_pending" in x:
            lines.append(
                f"- `{e['name']}`: uploads are accepted, then processed. When the run ended, "
                f"{x['photos_ready']:,} of its photos were processed, {x['photos_failed']:,} had "
                f"failed and {x['photos_pending']:,} were pending. With no other load the server "
                f"then processed {x.get('drain_photos', 0):,} in {x.get('drain_seconds')} s "
                f"({x.get('drain_photos_per_s')} photos/s over all its processes), peaking at "
                f"{x.get('drain_peak_rss_mb')} MB summed ({x.get('drain_peak_rss_process_mb')} MB "
                "in its largest process)."
            )
        if e["status"] == "ok" and x.get("server_timing_ms") and e["name"] == "photo_upload":
            t = x["server_timing_ms"]
            lines.append(
                f"- `{e['name']}`: excluding the upload's transfer (the server's `Server-Timing`, "
                f"from the last byte of the upload to the answer): p50 {t['p50']:g} ms, "
                f"p95 {t['p95']:g} ms, p99 {t['p99']:g} ms, max {t['max']:g} ms. The table's "
                "latencies are wrk's, from the first byte sent: on loopback, reading a 4 MB body "
                "takes the server dozens of event-loop turns shared with the other uploads."
            )
        if e["status"] == "ok" and "rss_at_peak_mb" in x and e["name"] == "photo_upload":
            lines.append(
                f"- `{e['name']}`: peak RSS {e.get('peak_rss_mb')} MB is the sum over "
                f"{len(x['rss_at_peak_mb'])} processes ({', '.join(map(str, x['rss_at_peak_mb']))}"
                f" MB); the largest single process peaked at {x.get('peak_rss_process_mb')} MB."
            )
        if e["status"] == "ok" and "bbox_side_m_median" in x:
            lines.append(
                f"- `{e['name']}`: 2,000 boxes around workload points, each sized to hold about "
                f"150 tickets (median side {x['bbox_side_m_median']:g} m; tickets per box: "
                f"median {x.get('bbox_features_median')}, mean {x.get('bbox_features_mean')}), "
                f"{x.get('bytes_per_response', 0):,} bytes per answer on average."
            )
        if e["status"] == "ok" and e["name"] == "route_50_stops":
            lines.append(
                f"- `{e['name']}`: {x['runs']} plans of the dataset's {x['stops']}-stop crew day"
                " from different starts (geo.route.plan_route in process); the routes are"
                f" {x['length_vs_nearest_neighbour_median']:.0%} of nearest neighbour's length"
                " (median)."
            )
        if e["status"] == "ok" and "tiles" in x and e["name"].endswith("tile_z14"):
            lines.append(
                f"- `{e['name']}`: all {x['tiles']} z14 tiles that overlap the city, "
                f"{x.get('bytes_per_response', 0):,} bytes per answer on average."
            )
        if e["status"] == "ok" and e["kind"] == "inprocess" and "input_bytes" in x:
            lines.append(
                f"- `{e['name']}`: a {x['input_bytes'] / 1e6:.1f} MB, "
                f"{x['input_pixels'] / 1e6:.0f} MP JPEG; {x['photos']} photos in "
                f"{x['seconds']} s on CPUs {x['cpus']}; peak RSS {x['peak_rss_mb']} MB "
                f"(from {x['rss_before_mb']} MB before the first photo)."
            )
    return lines


def render_markdown(results: dict[str, Any], charts: list[Path], markdown: Path) -> str:
    m = results["machine"]
    db = results.get("database") or {}
    servers = results.get("servers") or {}
    commit = (m.get("git_commit") or "unknown")[:12] + (
        " (uncommitted changes)" if m.get("git_dirty") else ""
    )
    rss = ", ".join(
        f"{name} {s['peak_rss_mb']:g} MB over {s['processes']} processes"
        for name, s in servers.items()
    )
    datasets = ", ".join(
        f"{label}: {d['tickets']:,} tickets ({d.get('open_tickets', 0):,} open)"
        for label, d in (results.get("datasets") or {}).items()
    )
    lines = [
        "# Performance",
        "",
        "<!-- Generated by bench/report.py from a results file; run `scripts/bench` to refresh."
        " Edit the method text in bench/report.py. -->",
        "",
        f"Measured {results['started_at']} in mode `{results['mode']}` "
        f"({results['wall_seconds'] / 60:.1f} min wall time; load average "
        f"{m.get('load_average_at_start', ['?'])[0]} at the start, "
        f"{m.get('load_average_at_end', ['?'])[0]} at the end) on {m['cores']} cores "
        f"({m['cpu_model']}), {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}, "
        f"PostgreSQL {db.get('postgresql', '?')}, PostGIS {db.get('postgis', '?')}; "
        f"commit {commit}. Servers: {results['settings']['workers']} workers each. "
        f"HTTP load: {results['load_generators'].get('http') or 'wrk missing'}; "
        f"SQL load: {results['load_generators'].get('sql') or 'pgbench missing'}.",
        "",
        f"Datasets: {datasets}." if datasets else "",
        f"Peak server memory: {rss}." if rss else "",
        "",
        "## Results",
        "",
        *results_table(results),
        "",
        "## Ratios within this run",
        "",
        *ratio_table(results),
        "",
        "## Duplicate lookup at scale",
        "",
        "`app.reports.repository.FIND_DUPLICATE` under `EXPLAIN (ANALYZE, BUFFERS)`, one run per "
        "point at different workload points (after 20 warm-up runs); times are the database's "
        "execution time.",
        "",
        *explain_table(results),
        "",
    ]
    quality = quality_table(results)
    if quality:
        lines += ["## Duplicate rules: clustering quality", "", *quality, ""]
    classify = classify_table(results)
    if classify:
        lines += ["## Social classifier: decisions", "", *classify, ""]
    talk = talk_table(results)
    if talk:
        lines += ["## Talk: sentiment", "", *talk, ""]
    notes = details(results)
    if notes:
        lines += ["## Details", "", *notes, ""]
    if charts:
        lines += ["## Charts", ""]
        for chart in charts:
            relative = (
                chart.relative_to(markdown.parent)
                if chart.is_relative_to(markdown.parent)
                else chart
            )
            lines.append(f"![{chart.stem}]({relative.as_posix()})")
        lines.append("")
    lines.append(METHOD)
    return "\n".join(line for line in lines if line is not None) + "\n"


def _groups(results: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """One chart per measured workload, with what it is compared against beside it."""
    by_name = {
        e["name"]: e
        for e in results["workloads"]
        if e["kind"] not in ("sql", "quality", "classify")
    }
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    paired = set()
    for numerator, denominator, _ in RATIOS:
        members = [by_name[n] for n in (numerator, denominator) if n in by_name]
        members = [e for e in members if e["status"] == "ok"]
        if members:
            groups.append(
                (
                    numerator if by_name.get(numerator, {}).get("status") == "ok" else denominator,
                    members,
                )
            )
            paired |= {e["name"] for e in members}
    for e in by_name.values():
        if e["status"] == "ok" and e["name"] not in paired:
            groups.append((e["name"], [e]))
    return groups


def render_charts(results: dict[str, Any], charts_dir: Path) -> list[Path]:
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, members in _groups(results):
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
        labels = [f"{e['name']}\n({e.get('server') or 'in-process'})" for e in members]
        colours = [
            "#2b6cb0" if (e.get("server") or "") == "kerbside" else "#a0aec0" for e in members
        ]
        left.bar(labels, [e.get("rps") or 0 for e in members], color=colours)
        left.set_title("throughput (req/s, higher is better)", fontsize=9)
        for i, e in enumerate(members):
            left.annotate(
                f"{e.get('rps') or 0:,.0f}",
                (i, e.get("rps") or 0),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        width = 0.8 / max(1, len(members))
        for i, e in enumerate(members):
            latency = e.get("latency_ms") or {}
            values = [latency.get(p, 0) for p in ("p50", "p95", "p99")]
            xs = [k + (i - (len(members) - 1) / 2) * width for k in range(3)]
            right.bar(xs, values, width=width, color=colours[i], label=e["name"])
        target = members[0].get("target") or {}
        if "rps_min" in target:
            left.axhline(target["rps_min"], color="#9b2c2c", linestyle="--", linewidth=1)
        if "p99_ms_max" in target:
            right.axhline(target["p99_ms_max"], color="#9b2c2c", linestyle="--", linewidth=1)
        right.set_xticks(range(3), ["p50", "p95", "p99"])
        right.set_title("latency (ms, lower is better)", fontsize=9)
        if len(members) > 1:
            right.legend(fontsize=7)
        for axis in (left, right):
            axis.tick_params(labelsize=7)
            axis.spines[["top", "right"]].set_visible(False)
        suffix = " (dashed: target)" if target else ""
        fig.suptitle(members[0]["title"] + suffix, fontsize=9)
        fig.tight_layout()
        path = charts_dir / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    explain = [e for e in results["workloads"] if e["kind"] == "sql" and e["status"] == "ok"]
    if explain:
        fig, axis = plt.subplots(figsize=(5, 3), dpi=100)
        labels = [e["dataset"] for e in explain]
        axis.bar(
            labels,
            [e["extra"]["execution_ms"]["median"] for e in explain],
            color="#2b6cb0",
            label="median",
        )
        axis.plot(
            labels,
            [e["extra"]["execution_ms"]["p95"] for e in explain],
            "o",
            color="#c05621",
            label="p95",
        )
        axis.axhline(1.0, color="#9b2c2c", linestyle="--", linewidth=1, label="target 1 ms")
        axis.set_ylabel("execution ms")
        axis.set_title("duplicate lookup, EXPLAIN ANALYZE", fontsize=9)
        axis.legend(fontsize=7)
        axis.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        path = charts_dir / "duplicate_lookup_explain.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    for stale in charts_dir.glob("*.png"):
        if stale not in written:
            stale.unlink()
    return written


def render(results: dict[str, Any], *, markdown: Path, charts_dir: Path) -> list[Path]:
    charts = render_charts(results, charts_dir)
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(render_markdown(results, charts, markdown))
    return charts


def summary_table(results: dict[str, Any]) -> str:
    """The results and ratio tables as plain text, for the terminal."""
    return "\n".join(
        [
            *results_table(results),
            "",
            *ratio_table(results),
            "",
            *explain_table(results),
            "",
            *quality_table(results),
            "",
            *classify_table(results),
            "",
            *talk_table(results),
        ]
    )
