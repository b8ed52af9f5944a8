"""The classifier's benchmark workloads keep working, on small files the test writes (the
real sets stay in ../shared/data): the scores, the folds, both measures, and the harness
skipping cleanly when a file is absent."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from bench import classify_quality
from bench.run import MODES, Harness


def test_macro_scores_and_per_class() -> None:
    truth = ["a", "a", "b", "b"]
    figures = classify_quality.scores(truth, ["a", "b", "b", None], ["a", "b"])
    assert figures["per_class"]["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.6667,
        "support": 2,
    }
    assert figures["per_class"]["b"]["precision"] == 0.5
    assert figures["precision"] == 0.75
    assert figures["recall"] == 0.5
    assert figures["accuracy"] == 0.5


def test_folds_are_stratified() -> None:
    labels = ["x"] * 30 + ["y"] * 10
    folds = classify_quality.stratified_folds(labels, 10, seed=1)
    for fold in range(10):
        members = [labels[i] for i in range(40) if folds[i] == fold]
        assert members.count("x") == 3
        assert members.count("y") == 1


def _complaints(path: Path, rng: random.Random) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        for i in range(200):
            if i % 2:
                text = rng.choice(["still waiting for my order", "broken again, terrible"])
                out.writerow([i, f"@shop {text} {rng.randint(1, 9)} weeks", 1, "retail"])
            else:
                text = rng.choice(["love the new store", "happy weekend everyone"])
                out.writerow([i, f"@shop {text}!", 0, "random_tweet"])


def _services(path: Path, rng: random.Random) -> None:
    words = {
        "Waste/Garbage": ["garbage", "heap", "smell"],
        "Potholes": ["road", "crater", "bike"],
        "Streetlights": ["light", "night", "bulb"],
    }
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["description", "category", "civic_issue"])
        for i in range(300):
            category = list(words)[i % 3]
            out.writerow([" ".join(rng.sample(words[category], 2)) + " near park", category, 1])


def test_both_measures_on_files_the_test_writes(tmp_path: Path) -> None:
    rng = random.Random(5)
    complaints, services = tmp_path / "complaints.csv", tmp_path / "services.csv"
    _complaints(complaints, rng)
    _services(services, rng)
    harness = Harness(
        MODES["tiny"],
        only={"social_classify_complaint", "social_classify_service"},
        workdir=tmp_path,
        complaints_data=complaints,
        services_data=services,
    )
    results = harness.run()
    by_name = {e["name"]: e for e in results["workloads"]}
    complaint = by_name["social_classify_complaint"]
    assert complaint["status"] == "ok", complaint["reason"]
    assert complaint["extra"]["rows"] == 200
    assert complaint["extra"]["f1"] > 0.95  # the two kinds of text share no words
    assert set(complaint["extra"]["per_class"]) == {"complaint", "not_complaint"}
    assert 0 <= complaint["extra"]["zero_shot"]["f1"] <= 1
    service = by_name["social_classify_service"]
    assert service["status"] == "ok", service["reason"]
    extra = service["extra"]
    assert (extra["train_rows"], extra["test_rows"]) == (240, 60)
    assert extra["f1"] > 0.9
    assert extra["model_only"]["f1"] > extra["keywords_only"]["f1"]
    assert set(extra["per_class"]) == {"waste", "pothole", "streetlight"}


def test_skipped_without_the_files(tmp_path: Path) -> None:
    harness = Harness(
        MODES["tiny"],
        only={"social_classify_complaint"},
        workdir=tmp_path,
        complaints_data=tmp_path / "absent.csv",
    )
    (entry,) = harness.run()["workloads"]
    assert entry["status"] == "skipped"
    assert "absent.csv" in entry["reason"]


@pytest.mark.parametrize("category", sorted(classify_quality.CATEGORY_SERVICE))
def test_every_category_has_a_bench_service(category: str) -> None:
    codes = {s.code for s in classify_quality.BENCH_SERVICES}
    assert classify_quality.CATEGORY_SERVICE[category] in codes
