"""The benchmark harness keeps working: a tiny dataset and a couple of seconds per workload.

Speed is never asserted (benchmarks do not fail CI); the shape of the results is. The dataset
goes into its own database on the test server and is dropped afterwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from bench import databases, report
from bench.run import MODES, Harness


def _indexes(url: str) -> set[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE tablename IN ('ticket', 'report', 'ticket_event')"
        ).fetchall()
    return {(name, definition) for name, definition in rows}


@pytest.mark.slow
def test_bench_harness_on_a_tiny_dataset(database_url: str, tmp_path: Path) -> None:
    db = databases.on_server(database_url, "smoke", 200)
    http = shutil.which("wrk") is not None  # scripts/bootstrap installs it as root
    only = {"intake_sql_ceiling", "duplicate_lookup_explain"}
    if http:
        only |= {"healthz", "intake_json", "open311_post"}
        only |= {"open311_requests_day", "native_requests_day"}
    try:
        with psycopg.connect(db.url) as conn:
            tickets, reports, events, areas = conn.execute(
                "SELECT (SELECT count(*) FROM ticket), (SELECT count(*) FROM report),"
                " (SELECT count(*) FROM ticket_event), count(*) FILTER (WHERE area_id IS NOT NULL)"
                " FROM ticket"
            ).fetchone() or (0, 0, 0, 0)
            reference = conn.execute("SELECT reference FROM ticket ORDER BY id LIMIT 1").fetchone()
        assert (tickets, reports, events) == (200, 200, 200)
        assert areas >= 190  # every point is in a district, bar a rare one on a border
        assert reference is not None
        assert reference[0].startswith("K-")
        # The bulk load drops secondary indexes and rebuilds them: the schema must be unchanged.
        assert _indexes(db.url) == _indexes(database_url)

        harness = Harness(
            MODES["tiny"], workers=1, only=only, open_dataset=lambda _label: db, workdir=tmp_path
        )
        results = harness.run()
    finally:
        databases.drop_database(db)

    assert results["mode"] == "tiny"
    assert {"cores", "memory_gib", "cpu_model", "kernel", "python", "git_commit"} <= set(
        results["machine"]
    )
    assert results["database"]["postgis"].startswith("3.")
    by_name = {w["name"]: w for w in results["workloads"]}
    assert set(by_name) == only

    ceiling = by_name["intake_sql_ceiling"]
    assert ceiling["status"] == "ok", ceiling["reason"]
    assert ceiling["requests"] > 0
    assert ceiling["rps"] > 0
    assert {"p50", "p95", "p99"} <= set(ceiling["latency_ms"])
    assert ceiling["extra"]["reports"] == ceiling["requests"]  # every transaction filed one

    explain = by_name["duplicate_lookup_explain"]
    assert explain["status"] == "ok", explain["reason"]
    assert explain["extra"]["execution_ms"]["median"] >= 0
    assert "ix_ticket_open_service_location" in explain["extra"]["indexes_used"]

    if http:
        intake = by_name["intake_json"]
        assert intake["status"] == "ok", intake["reason"]
        assert intake["errors"] == {"non_2xx": 0, "socket": 0}
        assert intake["extra"]["reports"] > 0
        assert intake["peak_rss_mb"] > 0
        ratio = next(r for r in results["ratios"] if r["numerator"] == "intake_json")
        assert ratio["status"] == "ok"
        assert ratio["rps_ratio"] > 0
        # Open311 beside the native routes (issue 19): every answer a 2xx, each pair a ratio.
        for name in ("open311_post", "open311_requests_day", "native_requests_day"):
            assert by_name[name]["status"] == "ok", by_name[name]["reason"]
            assert by_name[name]["errors"] == {"non_2xx": 0, "socket": 0}, name
        assert by_name["open311_post"]["extra"]["reports"] > 0
        for numerator in ("open311_post", "open311_requests_day"):
            pair = next(r for r in results["ratios"] if r["numerator"] == numerator)
            assert pair["status"] == "ok", pair
            assert pair["rps_ratio"] > 0

    markdown = tmp_path / "performance.md"
    report.render(results, markdown=markdown, charts_dir=tmp_path / "charts")
    text = markdown.read_text()
    assert "| `intake_sql_ceiling` | postgresql | smoke |" in text
    assert "## Method" in text
