"""The ``dedup_quality`` workload: its labels and scores, its skip, and a run on a made-up export.

The real export is never read here (tests use data the project makes itself); a dozen rows in
its column layout go through the same harness and the real intake.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from bench import databases, dedup_quality
from bench.dedup_quality import ZONE, Row, labelled_pairs, predicted_pairs, scores
from bench.run import MODES, Harness
from geo.distance import offset_lonlat
from tests.factories import CITY

LON, LAT = CITY.center


def _row(sr: str, kind: str, when: str, east_m: float, address: str | None) -> Row:
    lon, lat = offset_lonlat(LON, LAT, east_m, 0.0)
    created = datetime.strptime(when, "%m/%d/%y %H:%M").replace(tzinfo=ZONE)
    return Row(sr, kind, created, lon, lat, address)


def test_labels_need_one_type_48_hours_and_one_address_or_point() -> None:
    rows = [
        _row("a", "Bulky Items", "1/1/20 8:00", 0.0, "1 MAIN ST, 91406"),
        _row("b", "Bulky Items", "1/2/20 8:00", 150.0, "1 MAIN ST, 91406"),  # same text
        _row("c", "Bulky Items", "1/1/20 7:00", 0.2, None),  # same point
        _row("d", "Bulky Items", "1/1/20 9:00", 10.0, "3 MAIN ST, 91406"),  # neighbour
        _row("e", "Graffiti Removal", "1/1/20 9:00", 0.0, "1 MAIN ST, 91406"),  # other type
        _row("f", "Bulky Items", "1/3/20 8:01", 0.0, "1 MAIN ST, 91406"),  # 48 h 1 min after a
    ]
    truth = labelled_pairs(rows)
    assert truth == {("a", "b"), ("a", "c"), ("b", "f")}


def test_pairwise_scores() -> None:
    predicted = predicted_pairs([["a", "b", "c"], ["d"]])
    assert predicted == {("a", "b"), ("a", "c"), ("b", "c")}
    figures = scores(predicted, {("a", "b"), ("d", "e")})
    assert (figures["precision"], figures["recall"]) == (pytest.approx(1 / 3, abs=1e-4), 0.5)
    assert figures["f1"] == pytest.approx(0.4, abs=1e-4)
    nothing = scores(set(), {("a", "b")})
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (None, 0.0, 0.0)


def test_skips_cleanly_without_the_export(tmp_path: Path) -> None:
    harness = Harness(
        MODES["tiny"], only={"dedup_quality"}, dedup_data=tmp_path / "absent.csv", workdir=tmp_path
    )
    results = harness.run()
    [entry] = results["workloads"]
    assert entry["name"] == "dedup_quality"
    assert entry["status"] == "skipped"
    assert "absent.csv" in entry["reason"]


FIELDS = ["srnumber", "requesttype", "status", "createddate", "latitude", "longitude", "address"]


def _export(path: Path) -> None:
    rows = [
        # One pickup reported three times (twice at one point, once geocoded 40 m off).
        ("1-1", "Bulky Items", "1/1/20 8:00", 0.0, "100 W ELM ST, 91406"),
        ("1-2", "Bulky Items", "1/1/20 9:00", 0.0, "100 W ELM ST, 91406"),
        ("1-3", "Bulky Items", "1/1/20 10:00", 40.0, "100 W ELM ST, 91406"),
        # The neighbours, 12 and 24 m away: other pickups.
        ("1-4", "Bulky Items", "1/1/20 11:00", 12.0, "102 W ELM ST, 91406"),
        ("1-5", "Bulky Items", "1/1/20 12:00", 24.0, "104 W ELM ST, 91406"),
        # Graffiti at the same address: another service.
        ("1-6", "Graffiti Removal", "1/1/20 12:30", 0.0, "100 W ELM ST, 91406"),
        ("1-7", "Graffiti Removal", "1/1/20 13:00", 0.0, "100 W ELM ST, 91406"),
        # No location: not filed.
        ("1-8", "Graffiti Removal", "1/1/20 13:00", None, "100 W ELM ST, 91406"),
    ]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for sr, kind, when, east, address in rows:
            if east is None:
                writer.writerow([sr, kind, "Closed", when, "", "", address])
                continue
            lon, lat = offset_lonlat(LON, LAT, east, 0.0)
            writer.writerow([sr, kind, "Closed", when, lat, lon, address])


@pytest.mark.slow
def test_measures_each_rule_through_the_intake(database_url: str, tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    _export(export)
    harness = Harness(
        MODES["tiny"],
        only={"dedup_quality"},
        dedup_data=export,
        dedup_server=database_url,
        workdir=tmp_path,
    )
    try:
        results = harness.run()
    finally:
        admin = databases.database_url(database_url, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "bench_dedup_quality" WITH (FORCE)')
    [entry] = results["workloads"]
    assert entry["status"] == "ok", entry["reason"]
    x = entry["extra"]
    assert (x["rows"], x["labelled_pairs"]) == (7, 4)  # 3 pairs of the pickup + 1 of graffiti
    rules = x["rules"]
    assert set(rules) == {rule.name for rule in dedup_quality.RULES}
    # The address joins the 40 m geocode and keeps the neighbours apart.
    assert (rules["same_address"]["precision"], rules["same_address"]["recall"]) == (1.0, 1.0)
    assert x["f1"] == 1.0
    # 5 m: misses the 40 m geocode; 25 m: merges the neighbours too; 100 m: all five.
    assert rules["radius_5m"]["recall"] == 0.5
    assert rules["radius_25m"]["precision"] < 1.0
    assert rules["radius_100m"]["tickets"] == 2
    # Same street within 100 m: the neighbours join the pickup.
    assert rules["same_address_street_100m"]["predicted_pairs"] == 10 + 1
    assert (rules["never"]["tickets"], rules["never"]["f1"]) == (7, 0.0)
