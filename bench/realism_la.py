"""Realism check of the historical import on Los Angeles 311 (run by hand, never in the suite).

    .venv/bin/python -m bench.realism_la [--data DIR]

Reads ``la311_2020-01-01_to_03_10k.csv`` and ``la_city_council_districts_2012.geojson`` from
``--data`` (default ``$KERBSIDE_SHARED_DATA``, else ``../shared/data``); the data is never
copied into the repository. On a throwaway cluster it applies two Los Angeles city files (the
15 council districts as areas, code = the feature's ``name``), imports the CSV into one with
the legacy statuses (a dry run first, then the import) and into the other without them, and
prints JSON: rows filed and rejected, whether each ticket's council district is the one the
row's ``cd`` column names, the time taken, and what the statuses did to clustering.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.cities.schema import CityFile
from app.cities.service import apply
from app.db import make_engine
from app.embedded import throwaway_cluster
from app.imports.mapping import parse_service_map
from app.imports.schemas import ColumnMapping, ImportOptions, ImportSummary
from app.imports.service import import_reports
from app.jurisdictions.catalog import Catalog
from app.migrations import upgrade_to_head
from app.settings import PROJECT_ROOT, Settings

CSV_NAME = "la311_2020-01-01_to_03_10k.csv"
DISTRICTS_NAME = "la_city_council_districts_2012.geojson"

# MyLA311's names (recognised anyway; spelled out as a city file would).
COLUMNS = ColumnMapping(
    external_id="srnumber",
    service_code="requesttype",
    reported_at="createddate",
    lat="latitude",
    lon="longitude",
    address="address",
    status="status",
    closed_at="closeddate",
)
SERVICE_MAP = (
    "Illegal Dumping Pickup=fly_tipping,Bulky Items=bulky_items,"
    "Metal/Household Appliances=bulky_items,Electronic Waste=bulky_items,"
    "Single Streetlight Issue=streetlight,Multiple Streetlight Issue=streetlight,"
    "Graffiti Removal=graffiti"
)
SERVICES = [  # code, name, duplicate radius (m), window
    ("fly_tipping", "Illegal dumping", 50, "14d"),
    ("bulky_items", "Bulky items", 15, "7d"),
    ("streetlight", "Streetlight out", 25, "30d"),
    ("graffiti", "Graffiti", 30, "14d"),
]


def city_file(slug: str, districts: Path) -> CityFile:
    """The city file a Los Angeles administrator would write: the council districts file as
    boundary (their union) and as areas (code = the feature's ``name``)."""
    return CityFile.model_validate(
        {
            "jurisdiction": {
                "slug": slug,
                "name": "Los Angeles",
                "timezone": "America/Los_Angeles",
                "languages": ["en", "es"],
                "reference_prefix": "LA",
            },
            "boundary": {"file": str(districts)},
            "areas": [{"kind": "district", "file": str(districts), "code_property": "name"}],
            "services": [
                {
                    "code": code,
                    "names": {"en": name},
                    "duplicate_radius_m": radius,
                    "duplicate_window": window,
                }
                for code, name, radius, window in SERVICES
            ],
        }
    )


async def make_city(url: str, slug: str, districts: Path) -> dict[str, Any]:
    """Apply the city file, as ``kerbside city apply`` does; returns its summary."""
    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        async with AsyncSession(engine) as session, session.begin():
            started = time.perf_counter()
            outcome = await apply(session, city_file(slug, districts))
        return {
            "apply_seconds": round(time.perf_counter() - started, 2),
            "counts": outcome.counts(),
            "hygiene_warnings": len(outcome.hygiene.lines()),
        }
    finally:
        await engine.dispose()


async def run_import(
    url: str, path: Path, slug: str, *, statuses: bool, dry_run: bool
) -> ImportSummary:
    engine = make_engine(Settings(database_url=url), pool_size=1)
    options = ImportOptions(
        jurisdiction=slug,
        format="csv",
        source_name=path.name,
        service_map=parse_service_map(SERVICE_MAP),
        columns=COLUMNS,
        statuses=statuses,
        date_format="%m/%d/%y %H:%M",
        dry_run=dry_run,
    )
    try:
        async with AsyncSession(engine, expire_on_commit=False, autoflush=False) as session:
            with path.open("rb") as stream:
                return await import_reports(session, Catalog(), stream, options)
    finally:
        await engine.dispose()


async def district_agreement(url: str, slug: str, cd_by_id: dict[str, str]) -> dict[str, Any]:
    """Reports (and tickets, by their first report) whose ticket's area is the row's ``cd``."""
    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        async with AsyncSession(engine) as session:
            rows = await session.execute(
                text(
                    "SELECT r.external_id, a.code, r.id = min(r.id) OVER (PARTITION BY t.id)"
                    " AS first FROM report r JOIN ticket t ON t.id = r.ticket_id"
                    " JOIN jurisdiction j ON j.id = t.jurisdiction_id"
                    " LEFT JOIN area a ON a.id = t.area_id WHERE j.slug = :slug"
                ),
                {"slug": slug},
            )
            reports = agree = tickets = tickets_agree = no_cd = 0
            for external_id, area_code, first in rows.tuples():
                cd = cd_by_id.get(external_id, "")
                if not cd:
                    no_cd += 1
                    continue
                reports += 1
                agree += area_code == cd
                if first:
                    tickets += 1
                    tickets_agree += area_code == cd
    finally:
        await engine.dispose()
    return {
        "reports_with_cd": reports,
        "reports_in_the_cd_named": agree,
        "reports_share": round(agree / reports, 4) if reports else None,
        "tickets_with_cd": tickets,
        "tickets_in_the_cd_named": tickets_agree,
        "tickets_share": round(tickets_agree / tickets, 4) if tickets else None,
        "reports_without_cd": no_cd,
    }


def brief(summary: ImportSummary) -> dict[str, Any]:
    return summary.model_dump(
        mode="json",
        include={
            "rows_read",
            "tickets_opened",
            "reports_joined",
            "skipped_already_imported",
            "statuses_set",
            "clustering",
            "elapsed_seconds",
            "rows_read_per_second",
            "rows_filed_per_second",
            "unused_columns",
        },
    ) | {
        "rejected": summary.rejected.total,
        "rejected_by_reason": summary.rejected.by_reason,
        "summary_bytes": len(summary.model_dump_json(indent=2, exclude_none=True)),
    }


async def measure(
    url: str, path: Path, districts: Path, cd_by_id: dict[str, str]
) -> dict[str, Any]:
    city = await make_city(url, "los-angeles", districts)
    await make_city(url, "los-angeles-no-status", districts)
    dry = await run_import(url, path, "los-angeles", statuses=True, dry_run=True)
    real = await run_import(url, path, "los-angeles", statuses=True, dry_run=False)
    plain = await run_import(url, path, "los-angeles-no-status", statuses=False, dry_run=False)
    volatile = {"dry_run", "elapsed_seconds", "rows_read_per_second", "rows_filed_per_second"}
    return {
        "city_file": city,
        "dry_run_equals_import": dry.model_dump(exclude=volatile)
        == real.model_dump(exclude=volatile),
        "dry_run": brief(dry),
        "with_statuses": brief(real),
        "without_statuses": brief(plain),
        "districts_with_statuses": await district_agreement(url, "los-angeles", cd_by_id),
        "districts_without_statuses": await district_agreement(
            url, "los-angeles-no-status", cd_by_id
        ),
    }


def run_check(data: Path) -> dict[str, Any]:
    path = data / CSV_NAME
    with path.open(newline="") as f:
        cd_by_id = {row["srnumber"]: row["cd"].strip() for row in csv.DictReader(f)}
    cluster = throwaway_cluster()
    try:
        url = cluster.ensure_running()
        upgrade_to_head(url)  # runs its own event loop: before ours
        return asyncio.run(measure(url, path, data / DISTRICTS_NAME, cd_by_id))
    finally:
        cluster.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(
            os.environ.get("KERBSIDE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")
        ),
        help="the shared data folder (default: $KERBSIDE_SHARED_DATA or ../shared/data)",
    )
    args = parser.parse_args()
    if not (args.data / CSV_NAME).is_file():
        sys.exit(f"realism_la: {args.data / CSV_NAME}: no such file (pass --data DIR)")
    print(json.dumps(run_check(args.data), indent=2))


if __name__ == "__main__":
    main()
