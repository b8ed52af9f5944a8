"""The city file: apply, plan, export and round trip; every error class; geometry hygiene;
reprojection; re-routing; two applies at once."""

from __future__ import annotations

import asyncio
import copy
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyproj import Transformer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cities import service
from app.cities.cli import SCHEMA_PATH, schema_text
from app.cities.service import CityFileError
from app.jurisdictions.catalog import Catalog
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.seed.demo import DEMO_CITY_FILE

# A small town in EPSG:3857 metres (near Bristol), 2 km square, two districts side by side.
X0, Y0 = -288_000.0, 6_700_000.0


def square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {
        "type": "Polygon",
        "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
    }


def districts(split: float = 1000.0) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"ward": "W", "label": "West"},
                "geometry": square(X0, Y0, X0 + split, Y0 + 2000),
            },
            {
                "type": "Feature",
                "properties": {"ward": "E", "label": "East"},
                "geometry": square(X0 + split, Y0, X0 + 2000, Y0 + 2000),
            },
        ],
    }


def town(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kerbside": 1,
        "jurisdiction": {
            "slug": "squareton",
            "name": "Squareton",
            "timezone": "Europe/London",
            "languages": ["en", "nl"],
        },
        "boundary": {"crs": "EPSG:3857", "geojson": square(X0, Y0, X0 + 2000, Y0 + 2000)},
        "areas": [
            {
                "crs": "EPSG:3857",
                "geojson": districts(),
                "code_property": "ward",
                "name_property": "label",
            }
        ],
        "services": [
            {
                "code": "pothole",
                "names": {"en": "Pothole", "nl": "Gat in de weg"},
                "keywords": {"nl": ["gat", "kuil"]},
                "hashtags": {"nl": ["kuil"]},
                "duplicate_radius_m": 30,
                "duplicate_window": "7d",
                "acknowledge_within": "2d",
                "resolve_within": "P14D",
            },
            {
                "code": "graffiti",
                "names": {"en": "Graffiti"},
                "duplicate_strategy": "same_address",
                "duplicate_street_within_m": 100,
            },
        ],
        "crews": [{"name": "Roads", "areas": ["W", "E"], "assign": [{"services": ["pothole"]}]}],
        "templates": [{"status": "fixed", "language": "nl", "body": "{reference} is opgelost."}],
        "notifications": {
            "quiet_hours": {"start": "22:00", "end": "07:00"},
            "channels": {"phone": {"max_per_contact_per_hour": 2}},
        },
    }
    data.update(changes)
    return data


def as_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


async def apply_data(db: AsyncSession, data: dict[str, Any], **kwargs: Any) -> service.Outcome:
    return await service.apply(db, service.load(as_yaml(data)), **kwargs)


def actions(outcome: service.Outcome) -> dict[str, str]:
    return {f"{c.what} {c.key}": c.action for c in outcome.changes}


# -- apply, plan, idempotence, export ---------------------------------------------------------


async def test_apply_creates_then_changes_nothing_and_exports_what_it_reads(
    db: AsyncSession,
) -> None:
    first = await apply_data(db, town())
    assert set(actions(first).values()) == {"create"}
    assert actions(first) == {
        "jurisdiction squareton": "create",
        "boundary squareton": "create",
        "area district W": "create",
        "area district E": "create",
        "service pothole": "create",
        "service graffiti": "create",
        "crew Roads": "create",
        "template fixed/nl": "create",
    }
    row = (
        await db.execute(
            text(
                "SELECT s.duplicate_window, s.acknowledge_within, s.resolve_within, s.hashtags,"
                " a.name FROM service s JOIN area a ON a.jurisdiction_id = s.jurisdiction_id"
                " WHERE s.code = 'pothole' AND a.code = 'W'"
            )
        )
    ).one()
    assert row.duplicate_window.days == 7
    assert row.acknowledge_within.days == 2
    assert row.resolve_within.days == 14
    assert row.hashtags == {"nl": ["kuil"]}
    assert row.name == "West"
    rule = (
        await db.execute(
            text(
                "SELECT duplicate_strategy, duplicate_street_within_m FROM service"
                " WHERE code = 'graffiti'"
            )
        )
    ).one()
    assert tuple(rule) == ("same_address", 100.0)

    again = await apply_data(db, town())
    assert not again.changed
    assert set(actions(again).values()) == {"unchanged"}

    exported = service.dump(await service.export(db, "squareton"))
    assert "EPSG" not in exported  # written back in WGS84
    round_trip = await service.apply(db, service.load(exported))
    assert not round_trip.changed, [c.line() for c in round_trip.changes if c.action != "unchanged"]
    assert service.dump(await service.export(db, "squareton")) == exported

    # The catalog (what intake reads) sees the city as declared.
    info = await Catalog().by_slug(db, "squareton")
    assert info is not None
    assert set(info.services) == {"pothole", "graffiti"}


async def test_the_demo_city_round_trips_through_its_file(db: AsyncSession) -> None:
    declared = service.load(DEMO_CITY_FILE.read_bytes())
    first = await service.apply(db, declared, base_dir=DEMO_CITY_FILE.parent)
    assert first.counts()["create"] == len(first.changes)
    exported = await service.export(db, "demo")
    assert not (await service.apply(db, exported)).changed
    assert [s.code for s in exported.services] == ["fly_tipping", "pothole", "streetlight"]
    assert [c.areas for c in exported.crews] == [
        ["D01", "D02", "D03", "D04"],
        ["D05", "D06", "D07", "D08"],
    ]


async def test_updates_are_planned_field_by_field_and_nothing_is_deleted(
    db: AsyncSession,
) -> None:
    await apply_data(db, town())
    changed = town()
    changed["services"][0]["duplicate_radius_m"] = 40
    changed["services"][0]["names"]["nl"] = "Kuil"
    del changed["services"][1]  # graffiti: deactivated, not deleted
    changed["crews"] = []
    changed["templates"][0]["body"] = "{reference}: klaar."
    outcome = await apply_data(db, changed)
    lines = {c.line() for c in outcome.changes if c.action != "unchanged"}
    assert lines == {
        "~ service pothole (names, duplicate_radius_m)",
        "- service graffiti [deactivate]",
        "- crew Roads [deactivate]",
        "~ template fixed/nl (body)",
    }
    graffiti = (
        await db.execute(text("SELECT active FROM service WHERE code = 'graffiti'"))
    ).scalar_one()
    assert graffiti is False
    rules = (await db.execute(text("SELECT count(*) FROM assignment_rule"))).scalar_one()
    assert rules == 0


async def test_a_dry_run_plans_and_changes_nothing(db: AsyncSession) -> None:
    async with db.begin_nested() as savepoint:
        outcome = await apply_data(db, town(), dry_run=True)
        await savepoint.rollback()
    assert outcome.dry_run
    assert actions(outcome)["service pothole"] == "create"
    count = (
        await db.execute(text("SELECT count(*) FROM jurisdiction WHERE slug = 'squareton'"))
    ).scalar_one()
    assert count == 0


# -- bad input: each error names its path, and nothing is applied -----------------------------


def problem(data: dict[str, Any] | str) -> CityFileError:
    with pytest.raises(CityFileError) as caught:
        service.load(data if isinstance(data, str) else as_yaml(data))
    return caught.value


def fields(error: CityFileError) -> dict[str, str]:
    return {e["field"]: e["message"] for e in error.errors or []}


def test_every_error_names_its_path_in_the_file() -> None:
    bad = town()
    bad["services"][1]["duplicate_radius_m"] = 0
    assert fields(problem(bad)) == {
        "services[1].duplicate_radius_m": "input should be greater than 0"
    }
    assert str(problem(bad).detail).startswith(
        "city file: services[1].duplicate_radius_m: input should be greater than 0"
    )

    bad = town()
    bad["services"][0]["colour"] = "red"
    assert fields(problem(bad)) == {"services[0].colour": "unknown key"}

    bad = town()
    bad["jurisdiction"]["timezone"] = "Europe/Groningen"
    assert "unknown time zone" in fields(problem(bad))["jurisdiction.timezone"]

    bad = town()
    bad["services"][1]["code"] = "pothole"
    assert "code 'pothole' appears more than once" in problem(bad).detail

    bad = town()
    bad["services"][0]["acknowledge_within"] = "-2d"
    assert fields(problem(bad)) == {"services[0].acknowledge_within": "must not be negative"}

    bad = town()
    bad["boundary"]["crs"] = "RD"
    assert "boundary.crs" in fields(problem(bad))

    bad = town()
    bad["crews"][0]["assign"][0]["services"] = ["litter"]
    assert "unknown service 'litter'" in problem(bad).detail

    bad = town()
    bad["notifications"]["templates"] = [
        {"message": "status", "language": "nl", "subject": "{refrence}", "body": "x"}
    ]
    assert "unknown or broken placeholder 'refrence'" in problem(bad).detail

    bad = town()
    bad["templates"][0]["language"] = "sv"
    assert "not one of the jurisdiction's languages" in problem(bad).detail

    assert "not valid YAML at line 2, column 9" in problem("jurisdiction:\n  name: ]oops\n").detail
    assert "must be a mapping" in problem("- just\n- a list\n").detail


async def test_geometry_errors_name_the_feature_and_the_reason(db: AsyncSession) -> None:
    async def geometry_problem(data: dict[str, Any]) -> str:
        with pytest.raises(CityFileError) as caught:
            await apply_data(db, data)
        return caught.value.detail

    line = town()
    line["areas"][0]["geojson"]["features"][1]["geometry"] = {
        "type": "LineString",
        "coordinates": [[X0, Y0], [X0 + 10, Y0 + 10]],
    }
    assert await geometry_problem(line) == (
        "areas[0].features[1] (code E): expected a Polygon or MultiPolygon, not 'LineString'"
    )

    unknown = town()
    unknown["boundary"]["crs"] = "EPSG:99999"
    assert await geometry_problem(unknown) == "boundary: unknown CRS EPSG:99999"

    wrong_crs = town()
    wrong_crs["boundary"]["crs"] = "EPSG:4326"  # metres read as degrees
    assert "lies outside the world" in await geometry_problem(wrong_crs)

    bowtie = town()
    bowtie["boundary"]["geojson"] = {
        "type": "Polygon",
        "coordinates": [
            [[X0, Y0], [X0 + 2000, Y0 + 2000], [X0 + 2000, Y0], [X0, Y0 + 2000], [X0, Y0]]
        ],
    }
    assert "repairing it would change its area" in await geometry_problem(bowtie)

    no_code = town()
    del no_code["areas"][0]["geojson"]["features"][0]["properties"]["ward"]
    assert await geometry_problem(no_code) == (
        "areas[0].features[0]: has no 'ward' property (the area code)"
    )

    count = (
        await db.execute(text("SELECT count(*) FROM jurisdiction WHERE slug = 'squareton'"))
    ).scalar_one()
    assert count == 0


async def test_safe_repairs_are_made_and_reported_with_overlaps_gaps_and_overhangs(
    db: AsyncSession,
) -> None:
    data = town()
    # A spike out of the boundary and back: invalid, and zero area, so repaired safely.
    data["boundary"]["geojson"] = {
        "type": "Polygon",
        "coordinates": [
            [
                [X0, Y0],
                [X0 + 2000, Y0],
                [X0 + 2000, Y0 + 2000],
                [X0 + 1000, Y0 + 2000],
                [X0 + 1000, Y0 + 2500],
                [X0 + 1000, Y0 + 2000],
                [X0, Y0 + 2000],
                [X0, Y0],
            ]
        ],
    }
    features = data["areas"][0]["geojson"]["features"]
    features[0]["geometry"] = square(X0 - 50, Y0, X0 + 1010, Y0 + 2000)  # 50 m out, 10 m over
    features[1]["geometry"] = square(X0 + 1000, Y0, X0 + 1900, Y0 + 2000)  # 100 m short
    outcome = await apply_data(db, data)
    lines = outcome.hygiene.lines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("repaired boundary: ")
    # Sizes are on the ground: EPSG:3857 metres shrink by cos²(latitude) here (51.5°).
    shrink = math.cos(math.radians(51.53)) ** 2
    assert lines[1].startswith("outside the boundary: district W: ")
    assert _m2(lines[1]) == pytest.approx(50 * 2000 * shrink, rel=0.03)
    assert lines[2].startswith("overlap: district E and W: ")
    assert _m2(lines[2]) == pytest.approx(10 * 2000 * shrink, rel=0.03)
    assert lines[3].startswith("gap: districts leave ")
    assert lines[3].endswith("of the boundary uncovered (1 piece)")
    assert _m2(lines[3]) == pytest.approx(100 * 2000 * shrink, rel=0.03)


def _m2(line: str) -> float:
    found = re.search(r"([\d,.]+) (m²|km²)", line)
    assert found, line
    value = float(found.group(1).replace(",", ""))
    return value * 1e6 if found.group(2) == "km²" else value


@pytest.mark.parametrize(
    ("crs", "xy"),
    [
        ("EPSG:28992", (155_000.0, 463_000.0)),  # RD New: the Amersfoort origin
        ("EPSG:3006", (674_032.357, 6_580_821.991)),  # SWEREF 99 TM: Stockholm
        ("EPSG:31370", (149_000.0, 170_000.0)),  # Belgian Lambert 72: Brussels
        ("EPSG:3857", (545_465.08, 6_865_490.0)),  # Web Mercator: Amsterdam
    ],
)
async def test_areas_are_reprojected_from_their_declared_crs(
    db: AsyncSession, crs: str, xy: tuple[float, float]
) -> None:
    x, y = xy
    data = town()
    data["boundary"] = {"crs": crs, "geojson": square(x - 500, y - 500, x + 500, y + 500)}
    data["areas"] = []
    data["crews"] = []
    await apply_data(db, data)
    lon, lat = (
        await db.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Centroid(boundary) AS p FROM jurisdiction"
                " WHERE slug = 'squareton') c"
            )
        )
    ).one()
    want_lon, want_lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    metres = math.hypot(
        (lon - want_lon) * 111_320 * math.cos(math.radians(lat)), (lat - want_lat) * 110_540
    )
    assert metres < 5.0, (lon, lat, want_lon, want_lat)
    if crs == "EPSG:28992":  # the published WGS84 position of the RD origin
        assert lon == pytest.approx(5.38720621, abs=3e-5)
        assert lat == pytest.approx(52.15517440, abs=3e-5)


async def test_a_geojson_crs_member_is_honoured_and_must_agree(db: AsyncSession) -> None:
    data = town()
    boundary = square(155_000 - 500, 463_000 - 500, 155_000 + 500, 463_000 + 500)
    data["boundary"] = {
        "geojson": {
            "type": "Feature",
            "properties": {},
            "geometry": boundary,
            "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::28992"}},
        }
    }
    data["areas"] = []
    data["crews"] = []
    await apply_data(db, data)
    lat = (
        await db.execute(
            text("SELECT ST_Y(ST_Centroid(boundary)) FROM jurisdiction WHERE slug = 'squareton'")
        )
    ).scalar_one()
    assert lat == pytest.approx(52.155, abs=0.01)
    data["boundary"]["crs"] = "EPSG:3857"
    with pytest.raises(CityFileError, match="declared EPSG:3857 but the GeoJSON itself says"):
        await apply_data(db, data)


# -- re-routing and what is never deleted -----------------------------------------------------


async def _ticket_in_west(db: AsyncSession) -> int:
    lon, lat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True).transform(
        X0 + 800, Y0 + 1000
    )
    filed = await submit_report(
        db,
        Catalog(),
        Submission(
            channel=Channel.app,
            submitter=Submitter(),
            service_code="pothole",
            place=Place(lon, lat, LocationSource.device),
        ),
    )
    return filed.ticket_id


async def _area_of(db: AsyncSession, ticket_id: int) -> str:
    return str(
        (
            await db.execute(
                text("SELECT a.code FROM ticket t JOIN area a ON a.id = t.area_id WHERE t.id = :t"),
                {"t": ticket_id},
            )
        ).scalar_one()
    )


async def test_open_tickets_move_to_a_changed_area_only_when_asked(db: AsyncSession) -> None:
    await apply_data(db, town())
    ticket = await _ticket_in_west(db)
    assert await _area_of(db, ticket) == "W"
    moved = town(areas=[{**town()["areas"][0], "geojson": districts(split=600.0)}])
    outcome = await apply_data(db, moved)
    assert outcome.open_tickets_to_reroute == 1
    assert outcome.rerouted == 0
    assert await _area_of(db, ticket) == "W"
    outcome = await apply_data(db, town(), reroute_open=False)  # back, then again with moving
    outcome = await apply_data(db, moved, reroute_open=True)
    assert (outcome.open_tickets_to_reroute, outcome.rerouted) == (1, 1)
    assert await _area_of(db, ticket) == "E"


async def test_an_area_holding_tickets_is_never_deleted(db: AsyncSession) -> None:
    await apply_data(db, town())
    await _ticket_in_west(db)
    only_east = copy.deepcopy(town())
    only_east["areas"][0]["geojson"]["features"].pop(0)
    only_east["crews"][0]["areas"] = ["E"]
    with pytest.raises(
        CityFileError, match="district W is not in the file but 1 tickets lie in it"
    ):
        await apply_data(db, only_east)


# -- concurrency, the command line, the published schema --------------------------------------


async def test_two_applies_at_once_are_serialised(
    committed_db: async_sessionmaker[AsyncSession],
) -> None:
    city = service.load(as_yaml(town()))

    async def one() -> service.Outcome:
        async with committed_db() as session, session.begin():
            return await service.apply(session, city)

    first, second = await asyncio.gather(one(), one())
    outcomes = sorted([first.changed, second.changed])
    assert outcomes == [False, True]  # one created everything, the other found it done
    async with committed_db() as session:
        count = (await session.execute(text("SELECT count(*) FROM service"))).scalar_one()
    assert count == 2


def test_the_command_applies_a_file_plans_a_dry_run_and_exports(
    database_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "squareton.yaml"
    file.write_text(as_yaml(town()))
    env = {"KERBSIDE_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", "city", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    try:
        dry = run("apply", str(file), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout)["counts"] == {"create": 8}
        assert "+ service pothole" in dry.stderr
        assert "would change 8 of 8 objects" in dry.stderr
        applied = run("apply", str(file))
        assert applied.returncode == 0, applied.stderr
        assert json.loads(applied.stdout)["changed"] is True
        exported = run("export", "squareton")
        assert exported.returncode == 0, exported.stderr
        assert yaml.safe_load(exported.stdout)["jurisdiction"]["slug"] == "squareton"
        again = tmp_path / "exported.yaml"
        again.write_text(exported.stdout)
        second = run("apply", str(again))
        assert json.loads(second.stdout)["changed"] is False
        bad = tmp_path / "bad.yaml"
        bad.write_text(as_yaml(town(services=[{"code": "x", "names": {}}])))
        refused = run("apply", str(bad))
        assert refused.returncode == 2
        assert refused.stderr.startswith("kerbside: error: ")
        assert "services[0].names" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        subprocess.run(
            [
                "psql",
                database_url,
                "-qc",
                "DELETE FROM jurisdiction WHERE slug = 'squareton'",
            ],
            check=False,
            capture_output=True,
        )


def test_the_published_json_schema_is_current_and_validates_the_demo_city() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "run `kerbside city schema` and commit docs/city-file.schema.json"
    )
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"jurisdiction", "boundary"} <= set(schema["required"])


async def test_the_city_file_says_how_its_legacy_exports_read(db: AsyncSession) -> None:
    import io

    from pyproj import Transformer

    from app.imports.schemas import ImportOptions
    from app.imports.service import import_reports

    data = town(
        history={
            "columns": {
                "external_id": "case_no",
                "service_code": "kind",
                "reported_at": "opened",
                "lon": "x",
                "lat": "y",
            },
            "categories": {"Road hole": "pothole"},
            "date_format": "%d-%m-%Y %H:%M",
            "statuses": False,
        }
    )
    await apply_data(db, data)
    exported = service.dump(await service.export(db, "squareton"))
    assert "Road hole: pothole" in exported
    assert not (await service.apply(db, service.load(exported))).changed

    lon, lat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True).transform(
        X0 + 500, Y0 + 500
    )
    csv = f"case_no,kind,opened,x,y\nA-1,Road hole,03-11-2026 09:30,{lon},{lat}\n".encode()
    summary = await import_reports(
        db,
        Catalog(),
        io.BytesIO(csv),
        ImportOptions(jurisdiction="squareton", format="csv", source_name="legacy.csv"),
    )
    assert (summary.tickets_opened, summary.rejected.total) == (1, 0)
    row = (
        await db.execute(
            text("SELECT external_id, reported_at FROM report WHERE external_id = 'A-1'")
        )
    ).one()
    assert row.reported_at.isoformat() == "2026-11-03T09:30:00+00:00"  # Europe/London, GMT
