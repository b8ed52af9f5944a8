"""``dedup_quality``: how well each duplicate rule clusters a real 311 export.

The file (``KERBSIDE_LA311_CSV``, default ``../shared/data/la311_2020-01-01_to_03_10k.csv``
beside the project; never copied into it) is filed row by row, oldest first, through the real
intake (``app.reports.service.submit_report``) once per rule, each rule in a jurisdiction of
its own with one service per ``requesttype``. Two reports in one ticket are a predicted
duplicate pair; precision, recall and F1 are counted over report pairs.

Ground truth. The LA export marks no duplicates: ``status`` is Closed / Cancelled / Open /
Pending / Referred Out with no reason, ``actiontaken`` is "SR Created" on 9,997 of 10,000
rows, and closure times do not help (crews close the neighbours on a route within minutes of
each other: 9,475 same-type pairs within 300 m and 48 h at different addresses were closed
within an hour of each other). So the labels are made by a documented rule, from the city's
own fields only (not from our normaliser): two reports are the same job when they have the
same ``requesttype``, were created at most 48 hours apart, and the city recorded the same
place for them: the same ``address`` text, or the same geocoded point (under 1 m apart). This
is the work item for the file's services (a bulky-item pickup, a graffiti tag, an encampment
report are per address). It cannot see one job spread over a street (snow), and it favours
address rules by construction; read the radius figures as "how much a radius over-merges
neighbours and under-merges one address".
"""

from __future__ import annotations

import asyncio
import csv
import math
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.jurisdictions.catalog import Catalog
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.settings import PROJECT_ROOT, to_sqlalchemy_url

DATA_ENV = "KERBSIDE_LA311_CSV"
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "la311_2020-01-01_to_03_10k.csv"
ZONE = ZoneInfo("America/Los_Angeles")
WINDOW = timedelta(hours=48)
SAME_POINT_M = 1.0


@dataclass(frozen=True)
class Rule:
    """One duplicate rule under test: a service configuration."""

    name: str
    strategy: str
    radius_m: float = 30.0
    street_within_m: float = 0.0


RULES: tuple[Rule, ...] = (
    Rule("radius_5m", "radius", 5.0),
    Rule("radius_25m", "radius", 25.0),
    Rule("radius_50m", "radius", 50.0),
    Rule("radius_100m", "radius", 100.0),
    Rule("same_address", "same_address", 30.0),
    Rule("same_address_street_100m", "same_address", 30.0, 100.0),
    Rule("never", "never"),
)
HEADLINE = "same_address"  # the rule whose F1 is `extra.f1`


@dataclass(frozen=True)
class Row:
    srnumber: str
    requesttype: str
    created: datetime
    lon: float
    lat: float
    address: str | None


def data_path(given: str | Path | None = None) -> Path:
    """The export to read: ``given``, else ``$KERBSIDE_LA311_CSV``, else the shared default."""
    return Path(given or os.environ.get(DATA_ENV) or DEFAULT_DATA)


def read_rows(path: Path) -> list[Row]:
    """The rows with a location, oldest first (ties by service request number)."""
    rows = []
    seen = set()
    with path.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            if not raw.get("latitude") or not raw.get("longitude") or raw["srnumber"] in seen:
                continue
            seen.add(raw["srnumber"])
            rows.append(
                Row(
                    srnumber=raw["srnumber"],
                    requesttype=raw["requesttype"],
                    created=datetime.strptime(raw["createddate"], "%m/%d/%y %H:%M").replace(
                        tzinfo=ZONE
                    ),
                    lon=float(raw["longitude"]),
                    lat=float(raw["latitude"]),
                    address=(raw.get("address") or "").strip() or None,
                )
            )
    rows.sort(key=lambda r: (r.created, r.srnumber))
    return rows


def _metres(a: Row, b: Row) -> float:
    north = (a.lat - b.lat) * 111_320.0
    east = (a.lon - b.lon) * 111_320.0 * math.cos(math.radians(a.lat))
    return math.hypot(north, east)


Pair = tuple[str, str]


def _pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


def labelled_pairs(rows: Sequence[Row]) -> set[Pair]:
    """The ground truth (see the module's docstring): same type, 48 h, same address or point."""
    by_type: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_type[row.requesttype].append(row)
    pairs = set()
    for group in by_type.values():
        group.sort(key=lambda r: r.created)
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if b.created - a.created > WINDOW:
                    break
                if (a.address is not None and a.address == b.address) or _metres(
                    a, b
                ) < SAME_POINT_M:
                    pairs.add(_pair(a.srnumber, b.srnumber))
    return pairs


def predicted_pairs(clusters: Iterable[Sequence[str]]) -> set[Pair]:
    """Every pair of reports that share a ticket."""
    pairs = set()
    for members in clusters:
        ordered = sorted(members)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                pairs.add((a, b))
    return pairs


def scores(predicted: set[Pair], truth: set[Pair]) -> dict[str, Any]:
    """Pairwise precision, recall and F1 (rounded), with the counts behind them."""
    hits = len(predicted & truth)
    # No predicted pair (`never`): precision is undefined, and F1 is 0 as recall is.
    precision = hits / len(predicted) if predicted else None
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    return {
        "precision": round(precision, 4) if precision is not None else None,
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "predicted_pairs": len(predicted),
        "true_positive_pairs": hits,
    }


# -- filing through the real intake --------------------------------------------------------------


def service_code(requesttype: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", requesttype.lower()).strip("_")[:64] or "other"


def prepare(url: str, rows: Sequence[Row], rules: Sequence[Rule]) -> None:
    """One jurisdiction per rule, covering the rows, with one service per request type."""
    minx, maxx = min(r.lon for r in rows) - 0.05, max(r.lon for r in rows) + 0.05
    miny, maxy = min(r.lat for r in rows) - 0.05, max(r.lat for r in rows) + 0.05
    types = sorted({r.requesttype for r in rows})
    with psycopg.connect(url, autocommit=True) as conn:
        for rule in rules:
            slug = f"dedup-{rule.name.replace('_', '-')}"
            conn.execute("DELETE FROM jurisdiction WHERE slug = %s", (slug,))
            jurisdiction_id = conn.execute(
                "INSERT INTO jurisdiction (slug, name, boundary, timezone)"
                " VALUES (%s, %s, ST_Multi(ST_MakeEnvelope(%s, %s, %s, %s, 4326)), %s)"
                " RETURNING id",
                (slug, f"LA 311 ({rule.name})", minx, miny, maxx, maxy, ZONE.key),
            ).fetchone()
            assert jurisdiction_id is not None
            for kind in types:
                conn.execute(
                    "INSERT INTO service (jurisdiction_id, code, names, duplicate_strategy,"
                    " duplicate_radius_m, duplicate_street_within_m, duplicate_window)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        jurisdiction_id[0],
                        service_code(kind),
                        Jsonb({"en": kind}),
                        rule.strategy,
                        rule.radius_m,
                        rule.street_within_m,
                        WINDOW,
                    ),
                )


async def file_rows(url: str, rows: Sequence[Row], rule: Rule, batch: int = 500) -> None:
    """Every row through ``submit_report`` in the rule's jurisdiction, committing per batch."""
    slug = f"dedup-{rule.name.replace('_', '-')}"
    engine = create_async_engine(to_sqlalchemy_url(url), pool_size=1, max_overflow=0)
    sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    catalog = Catalog()
    submitter = Submitter(label="bench:dedup_quality", trusted=True, identified=True)
    try:
        for start in range(0, len(rows), batch):
            async with sessions() as session, session.begin():
                for row in rows[start : start + batch]:
                    await submit_report(
                        session,
                        catalog,
                        Submission(
                            channel=Channel.import_,
                            submitter=submitter,
                            service_code=service_code(row.requesttype),
                            place=Place(row.lon, row.lat, LocationSource.import_),
                            jurisdiction=slug,
                            address=row.address,
                            external_id=row.srnumber,
                            reported_at=row.created,
                        ),
                    )
    finally:
        await engine.dispose()


def clusters(url: str, rule: Rule) -> list[list[str]]:
    """The reports of each ticket the rule made (by service request number)."""
    slug = f"dedup-{rule.name.replace('_', '-')}"
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT array_agg(r.external_id) FROM report r"
            " JOIN jurisdiction j ON j.id = r.jurisdiction_id WHERE j.slug = %s"
            " GROUP BY r.ticket_id",
            (slug,),
        ).fetchall()
    return [list(members) for (members,) in found]


def measure(url: str, path: Path, rules: Sequence[Rule] = RULES) -> dict[str, Any]:
    """File the export once per rule on the (migrated) database at ``url``; the figures."""
    started = time.perf_counter()
    rows = read_rows(path)
    truth = labelled_pairs(rows)
    prepare(url, rows, rules)
    per_rule: dict[str, Any] = {}
    for rule in rules:
        began = time.perf_counter()
        asyncio.run(file_rows(url, rows, rule))
        made = clusters(url, rule)
        per_rule[rule.name] = {
            **scores(predicted_pairs(made), truth),
            "tickets": len(made),
            "strategy": rule.strategy,
            "radius_m": rule.radius_m if rule.strategy != "never" else None,
            "street_within_m": rule.street_within_m if rule.strategy == "same_address" else None,
            "seconds": round(time.perf_counter() - began, 1),
        }
    headline = per_rule.get(HEADLINE) or next(iter(per_rule.values()))
    return {
        "file": path.name,
        "rows": len(rows),
        "labelled_pairs": len(truth),
        "label_rule": (
            "same requesttype, created <= 48 h apart, same address text or same geocoded"
            " point (< 1 m); the file marks no duplicates"
        ),
        "window_hours": WINDOW.total_seconds() / 3600,
        "headline_rule": HEADLINE,
        "f1": headline["f1"],
        "precision": headline["precision"],
        "recall": headline["recall"],
        "rules": per_rule,
        "reports_filed": len(rows) * len(rules),
        "seconds": round(time.perf_counter() - started, 1),
    }
