"""``social_classify_complaint`` and ``social_classify_service``: how well the social
classifier (``app.social.classify``) decides "is it a report" and "of which service".

Both run in-process (no database, no HTTP): the classifier is pure once made, and what is
measured is its decisions, not its speed (its throughput is recorded beside them).

``social_classify_complaint`` reads the ACL 2019 complaints set (Preotiuc-Pietro, Gaman and
Aletras, "Automatically Identifying Complaints in Social Media": 3,449 tweets to companies,
labelled complaint or not; no header; ``tweet_id,text,complaint,domain``;
``KERBSIDE_COMPLAINTS_CSV``). The posts are about shops, airlines and phone companies, not a
city, so the city's service words barely apply; two figures:

- **trained** (the headline): 10-fold stratified cross-validation, as the paper evaluates.
  For each fold the report model (``train_report_model``: naive Bayes over stems, bigrams,
  the cue and sentiment features) is trained on the other nine folds and the classifier
  (report model and built-in cues together, as a city with screened posts runs it) decides
  the held-out fold. The paper's logistic regression on bag-of-words scores macro F1 ≈ 0.75,
  its best model ≈ 0.79.
- **zero_shot**: the built-in cues and sentiment alone, nothing trained (a new city on day
  one), on every row.

``social_classify_service`` reads the Bengaluru complaints (``description,category``;
``KERBSIDE_BANGALORE_CSV``). Its categories map onto the bench city below (one service each;
the four "Electricity" rows join streetlights). A stratified 80/20 split (seeded): the model
trains on the 80 % as the city's history, and the 20 % it never sees are classified by the
service scores (hashtags, keywords and the model). Also recorded: keywords alone and the
model alone on the same test rows.

Precision, recall and F1 are macro averages over the classes (both classes for complaints,
every service for services), with each class's figures in ``extra.per_class``.
"""

from __future__ import annotations

import csv
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.settings import PROJECT_ROOT
from app.social.classify import Classifier, train_report_model, train_service_model
from app.social.vocabulary import ServiceWords, Vocabulary

SHARED = PROJECT_ROOT.parent / "shared" / "data"
COMPLAINTS_ENV = "KERBSIDE_COMPLAINTS_CSV"
COMPLAINTS_DEFAULT = SHARED / "complaints_social_media_preotiuc.csv"
SERVICES_ENV = "KERBSIDE_BANGALORE_CSV"
SERVICES_DEFAULT = SHARED / "bangalore_complaints_categorised.csv"
FOLDS = 10
TEST_SHARE = 0.2
SEED = 2026

# The bench city's services, with the words a city would write into its file (in English,
# Dutch and Swedish, though the Bengaluru texts are English). Written from the service
# names, not mined from the data set.
BENCH_SERVICES = (
    ServiceWords(
        "waste",
        {"en": "Rubbish and litter"},
        {
            "en": [
                "garbage",
                "rubbish",
                "waste",
                "litter",
                "trash",
                "dump",
                "dumped",
                "dumping",
                "bin",
                "overflowing bin",
                "not collected",
                "debris",
            ],
            "nl": ["afval", "vuilnis", "zwerfvuil", "gedumpt", "container"],
            "sv": ["sopor", "skräp", "avfall", "soptunna", "nedskräpning"],
        },
        {"en": ["garbage", "litter"]},
    ),
    ServiceWords(
        "pothole",
        {"en": "Pothole or road damage"},
        {
            "en": [
                "pothole",
                "potholes",
                "road damage",
                "broken road",
                "bad road",
                "manhole",
                "crater",
                "road repair",
                "uneven road",
                "footpath",
            ],
            "nl": ["gat in de weg", "kuil", "wegdek"],
            "sv": ["potthål", "hål i vägen", "vägskada"],
        },
        {"en": ["pothole"]},
    ),
    ServiceWords(
        "water",
        {"en": "Water supply and flooding"},
        {
            "en": [
                "water supply",
                "no water",
                "water leak",
                "pipe",
                "leakage",
                "drinking water",
                "water logging",
                "waterlogging",
                "flooding",
                "flooded",
                "tap",
            ],
            "nl": ["waterleiding", "lekkage", "wateroverlast"],
            "sv": ["vattenläcka", "vattenledning", "översvämning"],
        },
        {},
    ),
    ServiceWords(
        "streetlight",
        {"en": "Streetlight out"},
        {
            "en": [
                "streetlight",
                "street light",
                "street lights",
                "lamp",
                "lamp post",
                "light not working",
                "dark",
                "electricity",
                "power cut",
                "wires",
                "pole",
            ],
            "nl": ["lantaarnpaal", "straatverlichting"],
            "sv": ["gatlykta", "gatubelysning"],
        },
        {"en": ["streetlight"]},
    ),
    ServiceWords(
        "traffic",
        {"en": "Traffic and parking"},
        {
            "en": [
                "traffic",
                "parking",
                "parked",
                "signal",
                "traffic jam",
                "congestion",
                "wrong side",
                "vehicles",
                "no parking",
                "footpath parking",
            ],
            "nl": ["parkeren", "verkeer", "fout geparkeerd"],
            "sv": ["parkering", "trafik", "felparkerad"],
        },
        {},
    ),
    ServiceWords(
        "sewage",
        {"en": "Sewage and drains"},
        {
            "en": [
                "sewage",
                "drain",
                "drainage",
                "gutter",
                "sewer",
                "open drain",
                "blocked drain",
                "overflowing drain",
                "stinking",
            ],
            "nl": ["riool", "verstopt riool", "putje"],
            "sv": ["avlopp", "dagvatten", "brunn"],
        },
        {},
    ),
    ServiceWords(
        "air_quality",
        {"en": "Air pollution and burning"},
        {
            "en": [
                "air pollution",
                "smoke",
                "burning",
                "dust",
                "pollution",
                "fumes",
                "burning garbage",
                "breathing",
            ],
            "nl": ["luchtvervuiling", "rook", "stof"],
            "sv": ["luftföroreningar", "rök", "damm"],
        },
        {},
    ),
    ServiceWords(
        "plastic",
        {"en": "Plastic waste"},
        {
            "en": ["plastic", "plastic bags", "plastic waste", "plastic covers", "plastic bottles"],
            "nl": ["plastic", "plastic zakken"],
            "sv": ["plast", "plastpåsar"],
        },
        {},
    ),
)
CATEGORY_SERVICE = {
    "Waste/Garbage": "waste",
    "Potholes": "pothole",
    "Water": "water",
    "Streetlights": "streetlight",
    "Electricity": "streetlight",
    "Traffic/Parking": "traffic",
    "Sewage": "sewage",
    "Air": "air_quality",
    "Plastic": "plastic",
}
BENCH_VOCABULARY = Vocabulary(services=BENCH_SERVICES, languages=("en", "nl", "sv"))


def data_path(env: str, default: Path, given: Path | None = None) -> Path:
    return given or Path(os.environ.get(env) or default)


# -- scores ----------------------------------------------------------------------------------


def scores(
    truth: Sequence[str], predicted: Sequence[str | None], classes: Sequence[str]
) -> dict[str, Any]:
    """Macro precision, recall and F1 over ``classes``, and each class's. A ``None``
    prediction is wrong for recall and counts for no class's precision."""
    per_class: dict[str, dict[str, float | int]] = {}
    for label in classes:
        tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == label and p == label)
        fp = sum(1 for t, p in zip(truth, predicted, strict=True) if t != label and p == label)
        fn = sum(1 for t, p in zip(truth, predicted, strict=True) if t == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": tp + fn,
        }
    n = len(classes)
    accuracy = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p) / len(truth)
    return {
        "precision": round(sum(float(c["precision"]) for c in per_class.values()) / n, 4),
        "recall": round(sum(float(c["recall"]) for c in per_class.values()) / n, 4),
        "f1": round(sum(float(c["f1"]) for c in per_class.values()) / n, 4),
        "accuracy": round(accuracy, 4),
        "per_class": per_class,
    }


def stratified_folds(labels: Sequence[str], folds: int, seed: int) -> list[int]:
    """A fold number per row, each label spread evenly over the folds."""
    rng = random.Random(seed)
    fold_of = [0] * len(labels)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    for label in sorted(by_label):
        rows = by_label[label]
        rng.shuffle(rows)
        for k, i in enumerate(rows):
            fold_of[i] = k % folds
    return fold_of


# -- is it a complaint -----------------------------------------------------------------------


def read_complaints(path: Path) -> list[tuple[str, bool]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [(row[1], row[2].strip() == "1") for row in csv.reader(f) if len(row) >= 3]


def measure_complaint(path: Path) -> dict[str, Any]:
    rows = read_complaints(path)
    truth = ["complaint" if c else "not_complaint" for _, c in rows]
    classes = ("complaint", "not_complaint")
    started = time.perf_counter()
    zero = Classifier(BENCH_VOCABULARY)
    zero_pred = ["complaint" if zero.classify(t).is_report else "not_complaint" for t, _ in rows]
    zero_seconds = time.perf_counter() - started
    fold_of = stratified_folds(truth, FOLDS, SEED)
    trained_pred: list[str | None] = [None] * len(rows)
    for fold in range(FOLDS):
        train = [rows[i] for i in range(len(rows)) if fold_of[i] != fold]
        model = train_report_model(train, BENCH_VOCABULARY)
        classifier = Classifier(BENCH_VOCABULARY, report_model=model)
        for i in range(len(rows)):
            if fold_of[i] == fold:
                is_report = classifier.classify(rows[i][0]).is_report
                trained_pred[i] = "complaint" if is_report else "not_complaint"
    seconds = time.perf_counter() - started
    trained = scores(truth, trained_pred, classes)
    zero_shot = scores(truth, zero_pred, classes)
    return {
        "file": path.name,
        "rows": len(rows),
        "complaints": truth.count("complaint"),
        "method": f"{FOLDS}-fold stratified cross-validation (seed {SEED}) of the report model"
        " with the built-in cues; macro over complaint / not complaint",
        **trained,
        "complaint_f1": trained["per_class"]["complaint"]["f1"],
        "zero_shot": {**zero_shot, "method": "built-in cues and sentiment, nothing trained"},
        "published_macro_f1": {"bag_of_words_lr": 0.75, "best_2019": 0.79},
        "seconds": round(seconds, 2),
        "texts_per_s_zero_shot": round(len(rows) / zero_seconds, 1),
    }


# -- which service ---------------------------------------------------------------------------


def read_services(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [
            (row["description"], CATEGORY_SERVICE[row["category"]])
            for row in csv.DictReader(f)
            if row.get("category") in CATEGORY_SERVICE and (row.get("description") or "").strip()
        ]


def _best(scores_of: dict[str, float]) -> str | None:
    if not scores_of or max(scores_of.values()) <= 0:
        return None
    return max(sorted(scores_of), key=scores_of.__getitem__)


def measure_service(path: Path) -> dict[str, Any]:
    began = time.perf_counter()
    rows = read_services(path)
    labels = [code for _, code in rows]
    # 5 folds, fold 0 held out: a stratified 80/20 split.
    fold_of = stratified_folds(labels, round(1 / TEST_SHARE), SEED)
    train = [rows[i] for i in range(len(rows)) if fold_of[i] != 0]
    test = [rows[i] for i in range(len(rows)) if fold_of[i] == 0]
    started = time.perf_counter()
    model = train_service_model(train, BENCH_VOCABULARY)
    train_seconds = time.perf_counter() - started
    assert model is not None
    combined = Classifier(BENCH_VOCABULARY, model)
    keywords = Classifier(BENCH_VOCABULARY)
    model_only = Classifier(Vocabulary(services=(), languages=("en",)), model)
    truth = [code for _, code in test]
    started = time.perf_counter()
    predicted = [_best(combined.service_scores(t)) for t, _ in test]
    classify_seconds = time.perf_counter() - started
    # The services the file has (a service nobody reports would score 0 and say nothing).
    classes = sorted(set(labels))
    figures = scores(truth, predicted, classes)
    return {
        "file": path.name,
        "rows": len(rows),
        "train_rows": len(train),
        "test_rows": len(test),
        "method": f"stratified {1 - TEST_SHARE:.0%}/{TEST_SHARE:.0%} split (seed {SEED}); the"
        " model trains on the 80 % as the city's history, the 20 % are classified by"
        " hashtags, keywords and the model together; macro over services",
        "category_to_service": CATEGORY_SERVICE,
        "services": {code: truth.count(code) for code in classes},
        **figures,
        "keywords_only": scores(
            truth, [_best(keywords.service_scores(t)) for t, _ in test], classes
        ),
        "model_only": scores(
            truth, [_best(model_only.service_scores(t)) for t, _ in test], classes
        ),
        "majority_class_f1": round(
            scores(truth, [Counter(labels).most_common(1)[0][0]] * len(test), classes)["f1"], 4
        ),
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.perf_counter() - began, 2),
        "texts_per_s": round(len(test) / classify_seconds, 1),
    }


def _summary(name: str, figures: dict[str, Any]) -> dict[str, Any]:
    drop = ("per_class",)
    return {"workload": name} | {k: v for k, v in figures.items() if k not in drop}


if __name__ == "__main__":
    which = sys.argv[1:] or ["complaint", "service"]
    if "complaint" in which:
        path = data_path(COMPLAINTS_ENV, COMPLAINTS_DEFAULT)
        print(json.dumps(_summary("social_classify_complaint", measure_complaint(path)), indent=1))
    if "service" in which:
        path = data_path(SERVICES_ENV, SERVICES_DEFAULT)
        print(json.dumps(_summary("social_classify_service", measure_service(path)), indent=1))
