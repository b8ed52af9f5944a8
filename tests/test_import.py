"""Historical import: files, clustering by the rows' own times, re-runs, bad rows, HTTP, CLI."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Role
from app.auth.principal import Principal
from app.core import cli as core_cli
from app.core.errors import InvalidInput
from app.imports import routes as import_routes
from app.imports import service as import_service
from app.imports.mapping import (
    COLUMNS,
    RowError,
    RowReader,
    parse_column_mapping,
    parse_service_map,
    resolve_columns,
)
from app.imports.schemas import ColumnMapping, ImportOptions, ImportSummary
from app.imports.service import import_reports
from app.imports.sources import ImportFileError
from app.jurisdictions.catalog import Catalog
from app.jurisdictions.models import Jurisdiction
from app.settings import PROJECT_ROOT
from app.tickets import workflow
from app.tickets.models import TicketStatus
from geo.distance import offset_lonlat
from tests.factories import CITY, PASSWORD, make_jurisdiction, make_service, make_user

CENTER = CITY.center
PROBLEM = "application/problem+json"
HEADER = ["id", "Category", "Longitude", "Latitude", "CreatedDate", "Description"]
LONDON = ZoneInfo("Europe/London")


@pytest.fixture
async def city(db: AsyncSession) -> Jurisdiction:
    city = await make_jurisdiction(db, slug="importville", timezone="Europe/London")
    await make_service(db, city, "pothole", duplicate_window=timedelta(days=3))
    await make_service(db, city, "fly_tipping", duplicate_radius_m=50.0)
    return city


def csv_bytes(rows: list[list[Any]], header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


async def run(
    db: AsyncSession, data: bytes, *, file_format: str = "csv", **options: Any
) -> ImportSummary:
    settings: dict[str, Any] = {
        "jurisdiction": "importville",
        "format": file_format,
        "source_name": "legacy.csv",
        **options,
    }
    return await import_reports(db, Catalog(), io.BytesIO(data), ImportOptions(**settings))


async def tickets(db: AsyncSession) -> list[dict[str, Any]]:
    rows = await db.execute(
        text(
            "SELECT t.reference, s.code, t.report_count, t.first_reported_at,"
            " t.last_reported_at, t.status, array_agg(r.external_id ORDER BY r.reported_at) AS ids"
            " FROM ticket t JOIN service s ON s.id = t.service_id"
            " JOIN report r ON r.ticket_id = t.id GROUP BY t.id, s.code ORDER BY t.id"
        )
    )
    return [dict(r._mapping) for r in rows]


# -- clustering by the rows' own times ------------------------------------------------------------


async def grid_jobs(db: AsyncSession) -> int:
    found = await db.execute(
        text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'refresh_map_grid'")
    )
    return int(found.scalar_one())


@pytest.mark.usefixtures("city")
async def test_rows_cluster_by_their_historical_times(db: AsyncSession) -> None:
    near = offset_lonlat(*CENTER, 6.0, 8.0)  # 10 m away
    # Out of order in the file; naive times are London time (BST in July: UTC+1).
    data = csv_bytes(
        [
            ["L-3", "pothole", CENTER[0], CENTER[1], "2024-07-12 09:00", "Back again"],
            ["L-2", "pothole", near[0], near[1], "2024-07-02 18:00", "Still there"],
            ["L-1", "pothole", CENTER[0], CENTER[1], "2024-07-01 09:30", "Deep one"],
        ]
    )
    summary = await run(db, data)

    assert summary.rows_read == 3
    assert (summary.tickets_opened, summary.reports_joined) == (2, 1)
    assert summary.rejected.total == 0
    assert (summary.timezone, summary.naive_times) == ("Europe/London", 3)
    first, second = await tickets(db)
    assert first["ids"] == ["L-1", "L-2"]
    assert first["report_count"] == 2
    # The ticket's times are the rows' times, not the time of the import.
    assert first["first_reported_at"] == datetime(2024, 7, 1, 8, 30, tzinfo=UTC)
    assert first["last_reported_at"] == datetime(2024, 7, 2, 17, 0, tzinfo=UTC)
    assert first["reference"].startswith("K-2024-")
    # Ten days later the 3-day window has passed: a new ticket at the same place.
    assert second["ids"] == ["L-3"]
    assert second["first_reported_at"] == datetime(2024, 7, 12, 8, 0, tzinfo=UTC)

    events = await db.execute(
        text(
            "SELECT DISTINCT r.channel, e.actor_label"
            " FROM report r JOIN ticket_event e ON e.report_id = r.id"
        )
    )
    assert events.tuples().all() == [("import", "import:legacy.csv")]
    received = (await db.execute(text("SELECT min(received_at) FROM report"))).scalar_one()
    assert received > datetime.now(UTC) - timedelta(hours=1)
    # The map's low-zoom grid is rebuilt after the batch commits: one job waits for it.
    assert await grid_jobs(db) == 1


@pytest.mark.usefixtures("city")
async def test_an_explicit_offset_wins_and_another_timezone_can_be_named(db: AsyncSession) -> None:
    data = csv_bytes(
        [
            ["A", "pothole", CENTER[0], CENTER[1], "2024-01-05T10:00:00Z", ""],
            ["B", "fly_tipping", CENTER[0], CENTER[1], "2024-01-05 10:00", ""],
        ]
    )
    summary = await run(db, data, timezone="America/New_York")
    assert (summary.naive_times, summary.timezone) == (1, "America/New_York")
    times = dict(
        (await db.execute(text("SELECT external_id, reported_at FROM report"))).tuples().all()
    )
    assert times == {
        "A": datetime(2024, 1, 5, 10, 0, tzinfo=UTC),
        "B": datetime(2024, 1, 5, 15, 0, tzinfo=UTC),
    }


@pytest.mark.usefixtures("city")
async def test_geojson_with_a_service_map(db: AsyncSession) -> None:
    near = offset_lonlat(*CENTER, 20.0, 0.0)

    def feature(lon: float, lat: float, **properties: Any) -> dict[str, Any]:
        point = {"type": "Point", "coordinates": [lon, lat]}
        return {"type": "Feature", "geometry": point, "properties": properties}

    document = {
        "type": "FeatureCollection",
        "features": [
            feature(*near, service="Illegal Dumping", date="2023-03-02T12:00:00+00:00", id=7),
            feature(*CENTER, service="Illegal Dumping", date="2023-03-01T12:00:00+00:00", id=6),
            feature(*CENTER, service="Graffiti", date="2023-03-01T13:00:00+00:00", id=8),
            {"type": "Feature", "geometry": None, "properties": {"service": "pothole"}},
        ],
    }
    summary = await run(
        db,
        orjson.dumps(document),
        file_format="geojson",
        service_map={"illegal dumping": "fly_tipping"},
    )
    assert summary.format == "geojson"
    assert summary.rows_read == 4
    assert (summary.tickets_opened, summary.reports_joined) == (1, 1)
    assert summary.rejected.by_reason == {"unknown_service": 1, "missing_coordinates": 1}
    assert [(e.feature, e.line, e.reason) for e in summary.rejected.examples] == [
        (3, None, "unknown_service"),
        (4, None, "missing_coordinates"),
    ]
    assert summary.rejected.unknown_services == {"Graffiti": 1}
    (ticket,) = await tickets(db)
    assert (ticket["code"], ticket["ids"]) == ("fly_tipping", ["6", "7"])


# -- re-runs --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("city")
async def test_importing_the_same_file_again_imports_nothing(db: AsyncSession) -> None:
    data = csv_bytes(
        [
            ["X-1", "pothole", CENTER[0], CENTER[1], "2024-05-01T08:00:00Z", "With an id"],
            ["", "pothole", CENTER[0], CENTER[1], "2024-05-01T09:00:00Z", "No id: hashed"],
            ["", "fly_tipping", CENTER[0], CENTER[1], "2024-05-01T10:00:00Z", ""],
        ]
    )
    first = await run(db, data, batch_size=2)
    assert (first.tickets_opened, first.reports_joined, first.skipped_already_imported) == (2, 1, 0)
    ids = (await db.execute(text("SELECT external_id FROM report ORDER BY id"))).scalars().all()
    assert ids[0] == "X-1"
    assert all(i.startswith("sha256:") and len(i) == 71 for i in ids[1:])

    again = await run(db, data)
    assert again.rows_read == 3
    assert again.skipped_already_imported == 3
    assert (again.tickets_opened, again.reports_joined, again.rejected.total) == (0, 0, 0)
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 3


@pytest.mark.usefixtures("city")
async def test_a_crash_loses_one_batch_and_the_rerun_completes(db: AsyncSession) -> None:
    rows = [
        [f"C-{i}", "pothole", *offset_lonlat(*CENTER, 100.0 * i, 0.0), f"2024-02-0{i}T10:00Z", ""]
        for i in range(1, 6)
    ]
    data = csv_bytes(rows)

    def crash_at_third_row(done: int, total: int) -> None:
        if done == 3:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        await import_reports(
            db,
            Catalog(),
            io.BytesIO(data),
            ImportOptions("importville", "csv", "legacy.csv", batch_size=2),
            progress=crash_at_third_row,
        )
    await db.rollback()  # what the dying process's connection does
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 2

    rerun = await run(db, data, batch_size=2)
    assert (rerun.skipped_already_imported, rerun.tickets_opened) == (2, 3)


@pytest.mark.usefixtures("city")
async def test_dry_run_keeps_nothing(db: AsyncSession) -> None:
    near = offset_lonlat(*CENTER, 0.0, 5.0)
    data = csv_bytes(
        [
            ["D-1", "pothole", CENTER[0], CENTER[1], "2024-05-01T08:00:00Z", ""],
            ["D-2", "pothole", near[0], near[1], "2024-05-01T09:00:00Z", ""],
        ]
    )
    summary = await run(db, data, dry_run=True)
    assert summary.dry_run is True
    assert (summary.tickets_opened, summary.reports_joined) == (1, 1)
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 0
    assert await grid_jobs(db) == 0


# -- bad rows -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("city")
async def test_bad_rows_are_rejected_with_their_line_and_the_rest_go_in(db: AsyncSession) -> None:
    lon, lat = CENTER
    data = csv_bytes(
        [
            ["G-1", "pothole", lon, lat, "2024-03-01T10:00:00Z", "Good,\nover two lines"],  # 2-3
            ["B-1", "Graffiti", lon, lat, "2024-03-01T10:00:00Z", ""],  # 4
            ["B-2", "pothole", 10.0, 10.0, "2024-03-01T10:00:00Z", ""],  # 5
            ["B-3", "pothole", "abc", lat, "2024-03-01T10:00:00Z", ""],  # 6
            ["B-4", "pothole", lon, 95.0, "2024-03-01T10:00:00Z", ""],  # 7
            ["B-5", "pothole", lon, lat, "01/03/2024 10:00", ""],  # 8
            ["B-6", "pothole", "", "", "2024-03-01T10:00:00Z", ""],  # 9
            ["B-7", "pothole", lon, lat, "2999-01-01T00:00:00Z", ""],  # 10
            ["B-8", "pothole", lat, lon, "2024-03-01T10:00:00Z", ""],  # 11: swapped
            ["G-2", "fly_tipping", lon, lat, "2024-03-02T10:00:00Z", ""],  # 12
        ]
    )
    summary = await run(db, data)

    assert summary.rows_read == 10
    assert summary.tickets_opened == 2
    assert summary.rejected.total == 8
    assert summary.rejected.by_reason == {
        "outside_jurisdiction": 2,
        "bad_coordinates": 2,
        "unknown_service": 1,
        "bad_date": 1,
        "missing_coordinates": 1,
        "invalid_reported_at": 1,
    }
    examples = {e.line: (e.reason, e.detail) for e in summary.rejected.examples}
    assert sorted(examples) == [4, 5, 6, 7, 8, 9, 10, 11]
    assert examples[4][0] == "unknown_service"
    # The valid codes are said once in the summary, not in every example.
    assert "fly_tipping" not in examples[4][1]
    assert summary.rejected.valid_service_codes == ["fly_tipping", "pothole"]
    assert examples[5][0] == "outside_jurisdiction"
    assert examples[6] == ("bad_coordinates", "lon 'abc' is not a number")
    assert examples[7][0] == "bad_coordinates"
    assert examples[8][0] == "bad_date"
    assert "ISO 8601" in examples[8][1]
    assert examples[10] == ("invalid_reported_at", "reported_at is in the future")
    assert "swapped" in examples[11][1]
    assert summary.rejected.unknown_services == {"Graffiti": 1}
    stored = await db.execute(text("SELECT description FROM report WHERE external_id = 'G-1'"))
    assert stored.scalar_one() == "Good,\nover two lines"


@pytest.mark.usefixtures("city")
async def test_a_date_format_reads_us_style_times(db: AsyncSession) -> None:
    header = ["srnumber", "requesttype", "latitude", "longitude", "createddate", "address"]
    data = csv_bytes(
        [["1-1", "Bulky Items", CENTER[1], CENTER[0], "1/2/20 0:05", "1 Main St"]], header
    )
    summary = await run(
        db,
        data,
        date_format="%m/%d/%y %H:%M",
        service_map=parse_service_map("Bulky Items=fly_tipping"),
    )
    assert summary.tickets_opened == 1, summary.rejected
    row = (await db.execute(text("SELECT external_id, reported_at, address FROM report"))).one()
    assert tuple(row) == ("1-1", datetime(2020, 1, 2, 0, 5, tzinfo=UTC), "1 Main St")


@pytest.mark.usefixtures("city")
@pytest.mark.parametrize(
    ("data", "file_format", "message"),
    [
        (b"", "csv", "empty"),
        (b"name,lon,lat\nx,1,2\n", "csv", "service_code: service_code|service|category"),
        (b"category,lon,lat,date\npothole,\xff\xfe,1,2\n", "csv", "Line 2 is not UTF-8"),
        (b"{not json", "geojson", "not valid JSON"),
        (b'{"type": "Feature"}', "geojson", "not a GeoJSON FeatureCollection"),
    ],
)
async def test_unreadable_files_are_refused_before_anything_is_written(
    db: AsyncSession, data: bytes, file_format: str, message: str
) -> None:
    with pytest.raises(ImportFileError) as caught:
        await run(db, data, file_format=file_format)
    assert message in caught.value.detail


@pytest.mark.usefixtures("city")
async def test_options_are_checked_up_front(db: AsyncSession) -> None:
    data = csv_bytes([])
    with pytest.raises(InvalidInput, match="does not have: potholes"):
        await run(db, data, service_map={"Road damage": "potholes"})
    with pytest.raises(InvalidInput, match="Unknown timezone"):
        await run(db, data, timezone="Mars/Olympus")
    with pytest.raises(InvalidInput, match="No jurisdiction 'nowhere'"):
        await run(db, data, jurisdiction="nowhere")


# -- reading files: no database -------------------------------------------------------------------


def test_column_names_are_matched_case_insensitively_with_aliases() -> None:
    header = ["SRNumber", "Service Request ID", "Request-Type", "LNG", "Y", "Requested_Datetime"]
    assert resolve_columns(header) == {
        "external_id": 1,  # the alias earlier in the list wins
        "service_code": 2,
        "lon": 3,
        "lat": 4,
        "reported_at": 5,
    }


def test_service_maps_as_pairs_or_json() -> None:
    assert parse_service_map("Illegal Dumping Pickup=fly_tipping, Metal/Appliances=bulky") == {
        "Illegal Dumping Pickup": "fly_tipping",
        "Metal/Appliances": "bulky",
    }
    assert parse_service_map('{"A, with comma": "x"}') == {"A, with comma": "x"}
    assert parse_service_map(None) == {}
    with pytest.raises(InvalidInput, match="NAME=CODE"):
        parse_service_map("just words")
    with pytest.raises(InvalidInput, match="JSON object"):
        parse_service_map('{"a": 1}')


def test_naive_times_take_the_zone_and_a_row_without_id_gets_a_stable_one() -> None:
    reader = RowReader(LONDON, None, {})
    values = {
        "service_code": "Pothole ",
        "lon": "-2.5",
        "lat": "51.4",
        "reported_at": "2024-12-01 12:00",
    }
    row = reader.parse(values, 2)
    assert row.reported_at == datetime(2024, 12, 1, 12, 0, tzinfo=UTC)  # GMT in winter
    assert row.naive is True
    assert reader.parse({**values, "description": "  "}, 9).external_id == row.external_id
    assert reader.parse({**values, "lon": "-2.6"}, 2).external_id != row.external_id
    assert reader.service_code(row.category) == "pothole"
    with pytest.raises(RowError) as caught:
        reader.parse({**values, "lat": "nan"}, 2)
    assert caught.value.reason == "bad_coordinates"


# -- HTTP -----------------------------------------------------------------------------------------


async def login(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await client.post(
        "/v1/auth/jwt/login", data={"username": email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def small_csv() -> bytes:
    near = offset_lonlat(*CENTER, 0.0, 10.0)
    return csv_bytes(
        [
            ["H-1", "pothole", CENTER[0], CENTER[1], "2024-06-01T08:00:00Z", ""],
            ["H-2", "pothole", near[0], near[1], "2024-06-01T09:00:00Z", ""],
            ["H-3", "streetlight", CENTER[0], CENTER[1], "2024-06-01T09:00:00Z", ""],
        ]
    )


async def test_staff_import_into_their_jurisdiction(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction
) -> None:
    staff = await make_user(db, role=Role.staff, jurisdiction=city)
    headers = await login(client, staff.email)
    response = await client.post(
        "/v1/imports", content=small_csv(), headers={**headers, "Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["jurisdiction"] == "importville"
    assert (summary["tickets_opened"], summary["reports_joined"]) == (1, 1)
    assert summary["rejected"]["by_reason"] == {"unknown_service": 1}
    assert summary["rejected"]["examples"][0]["line"] == 4

    again = await client.post(
        "/v1/imports?format=csv",
        files={"file": ("legacy-export.txt", small_csv(), "application/octet-stream")},
        headers=headers,
    )
    assert again.status_code == 200, again.text
    assert again.json()["skipped_already_imported"] == 2
    assert again.json()["source"] == "legacy-export.txt"

    own_names = csv_bytes(
        [["Q-1", "pothole", "Closed", *CENTER, "2024-07-03T08:00:00Z", "2024-07-04T08:00:00Z"]],
        ["Ref", "Kind", "State", "Longitude", "Latitude", "Opened", "Done"],
    )
    mapped = await client.post(
        "/v1/imports?column=service_code=Kind&column=reported_at=Opened&column=external_id=Ref"
        "&column=status=State&column=closed_at=Done&statuses=false",
        content=own_names,
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert mapped.status_code == 200, mapped.text
    assert mapped.json()["tickets_opened"] == 1
    assert mapped.json()["unused_columns"] == ["State", "Done"]
    assert mapped.json()["clustering"]["statuses_imported"] is False
    assert "rows_per_second" not in mapped.json()


async def test_geojson_over_http_and_admin_names_the_jurisdiction(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction
) -> None:
    admin = await make_user(db, role=Role.admin)
    headers = await login(client, admin.email)
    document = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": list(CENTER)},
                "properties": {"category": "pothole", "created_at": "2024-06-01T08:00:00Z"},
            }
        ],
    }
    body = orjson.dumps(document)
    geo = {**headers, "Content-Type": "application/geo+json"}
    missing = await client.post("/v1/imports", content=body, headers=geo)
    assert missing.status_code == 422
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["errors"][0]["field"] == "jurisdiction"

    response = await client.post(f"/v1/imports?jurisdiction={city.slug}", content=body, headers=geo)
    assert response.status_code == 200, response.text
    assert response.json()["tickets_opened"] == 1
    assert response.json()["format"] == "geojson"


async def test_only_staff_of_that_jurisdiction_may_import(
    client: httpx.AsyncClient, db: AsyncSession, city: Jurisdiction
) -> None:
    csv_type = {"Content-Type": "text/csv"}
    anonymous = await client.post("/v1/imports", content=small_csv(), headers=csv_type)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == PROBLEM

    citizen = await make_user(db, role=Role.citizen)
    as_citizen = await client.post(
        "/v1/imports",
        content=small_csv(),
        headers={**csv_type, **await login(client, citizen.email)},
    )
    assert as_citizen.status_code == 403
    assert as_citizen.headers["content-type"] == PROBLEM

    elsewhere = await make_jurisdiction(db, slug="elsewhere")
    other_staff = await make_user(db, role=Role.staff, jurisdiction=elsewhere)
    other = await client.post(
        f"/v1/imports?jurisdiction={city.slug}",
        content=small_csv(),
        headers={**csv_type, **await login(client, other_staff.email)},
    )
    assert other.status_code == 403
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 0


async def test_http_errors_are_problems(
    client: httpx.AsyncClient,
    db: AsyncSession,
    city: Jurisdiction,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    staff = await make_user(db, role=Role.staff, jurisdiction=city)
    headers = await login(client, staff.email)

    async def post(content: bytes, content_type: str, query: str = "") -> httpx.Response:
        response = await client.post(
            f"/v1/imports{query}",
            content=content,
            headers={**headers, "Content-Type": content_type},
        )
        assert response.headers["content-type"] == PROBLEM, response.text
        return response

    assert (await post(small_csv(), "text/plain")).status_code == 415
    unreadable = await post(b"name,lon,lat\nx,1,2\n", "text/csv")
    assert unreadable.status_code == 422
    assert "lacks required columns" in unreadable.json()["detail"]
    assert (await post(small_csv(), "text/csv", "?timezone=Nowhere/Else")).status_code == 422

    monkeypatch.setattr(import_routes, "MAX_IMPORT_ROWS", 2)
    too_many = await post(small_csv(), "text/csv")
    assert too_many.status_code == 413
    assert "kerbside import FILE" in too_many.json()["detail"]
    assert too_many.json()["max_rows"] == 2
    bad_field = await post(small_csv(), "text/csv", "?column=category=Category")
    assert bad_field.status_code == 422
    assert bad_field.json()["errors"][0]["field"] == "columns"
    no_column = await post(small_csv(), "text/csv", "?column=status=State")
    assert no_column.status_code == 422
    assert no_column.json()["errors"][0]["field"] == "columns.status"
    assert "its columns are: id, Category" in no_column.json()["detail"]

    monkeypatch.setattr(import_routes, "MAX_IMPORT_BYTES", 100)
    too_big = await post(small_csv(), "text/csv")
    assert too_big.status_code == 413
    assert "command line" in too_big.json()["detail"]
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 0


# -- the command line, end to end -----------------------------------------------------------------


def kerbside(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KERBSIDE_DATABASE_URL": database_url, "KERBSIDE_LOG_JSON": "false"}
    return subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
async def test_the_command_imports_a_file_and_a_rerun_skips_it(
    database_url: str, committed_db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    async with committed_db() as session, session.begin():
        city = await make_jurisdiction(session, slug="cliville", timezone="Europe/London")
        await make_service(session, city, "fly_tipping", duplicate_radius_m=50.0)
    near = offset_lonlat(*CENTER, 30.0, 0.0)
    path = tmp_path / "legacy.csv"
    path.write_bytes(
        csv_bytes(
            [
                ["", "Illegal Dumping", near[0], near[1], "2021-10-02 10:00", "Mattress"],
                ["", "Illegal Dumping", CENTER[0], CENTER[1], "2021-10-01 10:00", "Sofa"],
                ["", "Potholes", CENTER[0], CENTER[1], "2021-10-01 11:00", ""],
            ]
        )
    )
    args = ("import", str(path), "--jurisdiction", "cliville")
    mapped = (*args, "--service-map", "Illegal Dumping=fly_tipping")

    first = kerbside(database_url, *mapped)
    assert first.returncode == 0, first.stderr
    summary = orjson.loads(first.stdout)
    assert (summary["rows_read"], summary["tickets_opened"], summary["reports_joined"]) == (3, 1, 1)
    assert summary["rejected"]["by_reason"] == {"unknown_service": 1}
    assert summary["rejected"]["examples"] == [
        {
            "line": 4,
            "reason": "unknown_service",
            "detail": summary["rejected"]["examples"][0]["detail"],
        }
    ]
    assert summary["timezone"] == "Europe/London"
    assert "kerbside: import legacy.csv: 3/3 rows" in first.stderr  # not a tty: plain lines
    async with committed_db() as session:
        row = (
            await session.execute(text("SELECT report_count, first_reported_at FROM ticket"))
        ).one()
        assert tuple(row) == (2, datetime(2021, 10, 1, 9, 0, tzinfo=UTC))  # BST

    again = kerbside(database_url, *mapped)
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout)["skipped_already_imported"] == 2

    socrata = tmp_path / "socrata.csv"
    socrata.write_bytes(
        csv_bytes(
            [["S-1", "Dumping", "Closed", *CENTER, "2021-11-01 10:00", "2021-11-02 10:00"]],
            ["sr_number", "Kind", "status", "lon", "lat", "created_date", "closed_date"],
        )
    )
    by_name = kerbside(
        database_url,
        *("import", str(socrata), "--jurisdiction", "cliville", "--dry-run", "--no-status"),
        *("--column", "service_code=kind", "--service-map", "Dumping=fly_tipping"),
    )
    assert by_name.returncode == 0, by_name.stderr
    dry = orjson.loads(by_name.stdout)
    assert (dry["dry_run"], dry["tickets_opened"]) == (True, 1)
    assert dry["columns"]["external_id"] == "sr_number"
    assert dry["unused_columns"] == ["status", "closed_date"]
    wrong = kerbside(
        database_url, "import", str(socrata), "--jurisdiction", "cliville", "--column", "kind=Kind"
    )
    assert wrong.returncode == 2
    assert "no field 'kind'" in wrong.stderr

    missing = kerbside(database_url, "import", str(tmp_path / "nope.csv"), "--jurisdiction", "x")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"kerbside: error: {tmp_path / 'nope.csv'}: no such file"
    ]
    unknown = kerbside(database_url, "import", str(path), "--jurisdiction", "atlantis")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == ["kerbside: error: No jurisdiction 'atlantis'"]


STATUS_HEADER = ["id", "Category", "Longitude", "Latitude", "CreatedDate", "Status", "ClosedDate"]


@pytest.mark.usefixtures("city")
async def test_legacy_statuses_are_set_at_their_historical_times(db: AsyncSession) -> None:
    east = offset_lonlat(*CENTER, 900.0, 0.0)
    west = offset_lonlat(*CENTER, -900.0, 0.0)
    north = offset_lonlat(*CENTER, 0.0, 900.0)
    data = csv_bytes(
        [
            ["S-1", "pothole", *CENTER, "2024-01-01T09:00:00Z", "Closed", "2024-01-05T10:00:00Z"],
            ["S-3", "fly_tipping", *east, "2024-01-02T09:00:00Z", "Cancelled", "2024-01-03T00:00Z"],
            ["S-4", "fly_tipping", *west, "2024-01-02T09:00:00Z", "Waiting on Godot", ""],
            ["S-5", "pothole", *north, "2024-01-02T09:00:00Z", "In Progress", ""],
        ],
        STATUS_HEADER,
    )
    summary = await run(db, data)
    assert summary.rejected.total == 0
    assert summary.statuses_set == {"closed": 1, "rejected": 1, "in_progress": 1}
    assert summary.unknown_statuses == {"Waiting on Godot": 1}
    assert summary.columns["status"] == "Status"
    assert summary.columns["closed_at"] == "ClosedDate"
    rows = {
        r.ids[0]: r
        for r in (
            await db.execute(
                text(
                    "SELECT array_agg(r.external_id ORDER BY r.reported_at) AS ids, t.status,"
                    " t.fixed_at, t.closed_at FROM ticket t"
                    " JOIN report r ON r.ticket_id = t.id GROUP BY t.id"
                )
            )
        ).all()
    }
    assert rows["S-1"].status == "closed"
    assert rows["S-1"].fixed_at == datetime(2024, 1, 5, 10, 0, tzinfo=UTC)
    assert rows["S-3"].status == "rejected"
    assert rows["S-3"].closed_at == datetime(2024, 1, 3, tzinfo=UTC)
    assert rows["S-4"].status == "open"
    assert rows["S-5"].status == "in_progress"
    closing = (
        await db.execute(
            text(
                "SELECT e.created_at, e.data FROM ticket_event e JOIN report r"
                " ON r.ticket_id = e.ticket_id WHERE r.external_id = 'S-1'"
                " AND e.kind = 'status_changed' ORDER BY e.id LIMIT 1"
            )
        )
    ).one()
    assert closing.created_at == datetime(2024, 1, 5, 10, 0, tzinfo=UTC)
    assert closing.data == {"from": "open", "to": "closed", "legacy_status": "Closed"}


def history_csv() -> bytes:
    """Reports whose legacy closures interleave with later reports of the same spot."""
    near = offset_lonlat(*CENTER, 6.0, 8.0)  # 10 m: within both services' radius
    far = offset_lonlat(*CENTER, 2000.0, 0.0)
    far_near = offset_lonlat(*far, 0.0, 10.0)
    return csv_bytes(
        [
            # A pothole fixed on 2 January at noon. A report that morning joins it; one that
            # evening (inside the 3-day window and the 14-day reopen window) opens a new
            # ticket, as the legacy system opened a new case; the next day's joins that one.
            ["P-1", "pothole", *CENTER, "2024-01-01T09:00Z", "Closed", "2024-01-02T12:00Z"],
            ["P-2", "pothole", *near, "2024-01-02T09:00Z", "Closed", "2024-01-02T12:00Z"],
            ["P-3", "pothole", *near, "2024-01-02T18:00Z", "Open", ""],
            ["P-4", "pothole", *CENTER, "2024-01-03T09:00Z", "Pending", ""],
            # Dumping gathered from three cases: the one cancelled on the 3rd does not close
            # the ticket while the first case stays open until the 10th, so the report of the
            # 5th still joins it.
            ["F-1", "fly_tipping", *far, "2024-01-01T10:00Z", "Closed", "2024-01-10T08:00Z"],
            ["F-2", "fly_tipping", *far_near, "2024-01-02T10:00Z", "Cancelled", "2024-01-03"],
            ["F-3", "fly_tipping", *far, "2024-01-05T10:00Z", "Duplicate", ""],
            ["F-4", "fly_tipping", *far, "2024-01-11T10:00Z", "Open", ""],
            ["X-1", "graffiti", *far, "2024-01-04T10:00Z", "Closed", "2024-01-05T10:00Z"],
        ],
        STATUS_HEADER,
    )


async def ticket_ids(db: AsyncSession) -> dict[str, tuple[list[str], str, int]]:
    """First report's id → (the ticket's report ids, status, times reopened)."""
    rows = await db.execute(
        text(
            "SELECT array_agg(r.external_id ORDER BY r.reported_at) AS ids, t.status,"
            " t.reopened_count FROM ticket t JOIN report r ON r.ticket_id = t.id GROUP BY t.id"
        )
    )
    return {r.ids[0]: (r.ids, r.status, r.reopened_count) for r in rows}


@pytest.mark.usefixtures("city")
async def test_closures_are_replayed_at_their_times_not_when_their_row_is_filed(
    db: AsyncSession,
) -> None:
    # Two rows per batch: closures wait across commits.
    summary = await run(db, history_csv(), batch_size=2)

    assert (summary.tickets_opened, summary.reports_joined, summary.rejected.total) == (4, 4, 1)
    assert await ticket_ids(db) == {
        "P-1": (["P-1", "P-2"], "closed", 0),
        "P-3": (["P-3", "P-4"], "open", 0),
        "F-1": (["F-1", "F-2", "F-3"], "closed", 0),
        "F-4": (["F-4"], "open", 0),
    }
    assert summary.statuses_set == {"closed": 2}
    assert summary.clustering.model_dump() == {
        "statuses_imported": True,
        "closures_applied": 2,
        # P-2's closure replaced by P-1's at the same time, F-2's by F-1's later one.
        "closures_superseded": 2,
        "closures_found_closed": 0,
        "reports_joined_before_closure": 3,
        "tickets_reopened": 0,
    }
    closed = (
        await db.execute(
            text(
                "SELECT r.external_id, t.closed_at FROM ticket t JOIN report r"
                " ON r.ticket_id = t.id WHERE r.external_id IN ('P-1', 'F-1')"
            )
        )
    ).tuples()
    assert dict(closed.all()) == {
        "P-1": datetime(2024, 1, 2, 12, 0, tzinfo=UTC),
        "F-1": datetime(2024, 1, 10, 8, 0, tzinfo=UTC),
    }


@pytest.mark.usefixtures("city")
async def test_without_statuses_every_ticket_stays_open_and_clusters_by_time_alone(
    db: AsyncSession,
) -> None:
    summary = await run(db, history_csv(), statuses=False)

    assert await ticket_ids(db) == {
        "P-1": (["P-1", "P-2", "P-3", "P-4"], "open", 0),
        # With statuses F-4 opened a ticket: F-1's case had closed the day before.
        "F-1": (["F-1", "F-2", "F-3", "F-4"], "open", 0),
    }
    assert summary.clustering.statuses_imported is False
    assert summary.clustering.closures_applied == 0
    assert summary.statuses_set == {}
    assert "status" not in summary.columns
    assert summary.unused_columns == ["Status", "ClosedDate"]


@pytest.mark.usefixtures("city")
async def test_a_dry_run_predicts_the_import_exactly(
    db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    await db.commit()  # the city stays when the dry run rolls back
    held: list[int] = []
    finish = import_service.Replay.finish

    async def count_locks_then_finish(replay: import_service.Replay) -> None:
        # Every row is filed by now: a dry run holds no neighbourhood lock for any of them.
        locks = text(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'"
        )
        held.append((await replay.session.execute(locks)).scalar_one())
        await finish(replay)

    monkeypatch.setattr(import_service.Replay, "finish", count_locks_then_finish)
    # Small batches: a dry run that rolled back each batch lost the tickets later rows join.
    dry = await run(db, history_csv(), batch_size=2, dry_run=True)
    assert held == [0]
    assert (await db.execute(text("SELECT count(*) FROM report"))).scalar_one() == 0
    assert (await db.execute(text("SELECT count(*) FROM ticket_event"))).scalar_one() == 0
    # The same connection, the real import: the intake locks again (the last batch's cells,
    # not yet committed in this test's transaction).
    real = await run(db, history_csv(), batch_size=2)
    assert held[1] > 0

    assert dry.dry_run
    assert not real.dry_run
    volatile = {"dry_run", "elapsed_seconds", "rows_read_per_second", "rows_filed_per_second"}
    assert dry.model_dump(exclude=volatile) == real.model_dump(exclude=volatile)
    assert (real.reports_joined, real.rejected.total) == (4, 1)
    assert real.clustering.closures_applied == 2


@pytest.mark.usefixtures("city")
async def test_a_rerun_after_a_crash_still_applies_the_closures_that_were_due_later(
    db: AsyncSession,
) -> None:
    def crash_at_fifth_row(done: int, total: int) -> None:
        if done == 5:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        await import_reports(
            db,
            Catalog(),
            io.BytesIO(history_csv()),
            ImportOptions("importville", "csv", "legacy.csv", batch_size=4),
            progress=crash_at_fifth_row,
        )
    await db.rollback()
    # The first batch (P-1, F-1, P-2, F-2) was committed; P-1's closure (2 January, noon) was
    # due before the next row, in the batch that was lost. Meanwhile staff acknowledge F-1's.
    ticket_of = dict(
        (
            await db.execute(
                text("SELECT r.external_id, t.id FROM report r JOIN ticket t ON t.id = r.ticket_id")
            )
        )
        .tuples()
        .all()
    )
    staff = Principal(kind="user", role=Role.admin, label="test-staff")
    await workflow.change_status(db, ticket_of["F-1"], TicketStatus.acknowledged, actor=staff)
    await db.commit()

    rerun = await run(db, history_csv(), batch_size=4)
    assert rerun.skipped_already_imported == 4
    tickets_now = await ticket_ids(db)
    assert tickets_now["P-1"] == (["P-1", "P-2"], "closed", 0)
    assert tickets_now["P-3"] == (["P-3", "P-4"], "open", 0)
    # A legacy status never overrides a change made since: F-1's ticket stays acknowledged
    # (and open, so F-4 joins it).
    assert tickets_now["F-1"] == (["F-1", "F-2", "F-3", "F-4"], "acknowledged", 0)
    assert rerun.clustering.closures_applied == 1
    assert rerun.clustering.closures_found_closed == 1


# -- column mappings ------------------------------------------------------------------------------


def test_the_column_mapping_model_covers_every_field() -> None:
    assert set(ColumnMapping.model_fields) == set(COLUMNS)
    assert ColumnMapping(service_code="Kind").given() == {"service_code": "Kind"}
    with pytest.raises(ValidationError):
        ColumnMapping.model_validate({"category": "Kind"})


def test_socrata_and_311_names_are_recognised_out_of_the_box() -> None:
    chicago = ["SR_NUMBER", "SR_TYPE", "STATUS", "CREATED_DATE", "CLOSED_DATE", "STREET_ADDRESS"]
    found = resolve_columns([*chicago, "LATITUDE", "LONGITUDE", "LOCATION"])
    assert found == {
        "external_id": 0,
        "service_code": 1,
        "status": 2,
        "reported_at": 3,
        "closed_at": 4,
        "address": 5,
        "lat": 6,
        "lon": 7,
    }
    nyc = ["unique_key", "created_date", "complaint_type", "descriptor", "incident_address"]
    assert resolve_columns(nyc) == {
        "external_id": 0,
        "reported_at": 1,
        "service_code": 2,
        "description": 3,
        "address": 4,
    }
    boston = ["case_enquiry_id", "open_dt", "closed_dt", "case_status", "type", "location"]
    assert resolve_columns(boston) == {
        "external_id": 0,
        "reported_at": 1,
        "closed_at": 2,
        "status": 3,
    }


def test_a_mapping_wins_and_never_reads_a_column_twice() -> None:
    header = ["Kind", "category", "x", "y", "when", "status"]
    found = resolve_columns(header, {"service_code": "kind", "description": "Category"})
    assert found == {
        "service_code": 0,
        "description": 1,  # not also the service
        "lon": 2,
        "lat": 3,
        "status": 5,
    }
    assert "status" not in resolve_columns(header, statuses=False)
    with pytest.raises(InvalidInput) as caught:
        resolve_columns(header, {"reported_at": "created"})
    assert caught.value.detail == (
        "The column mapping names columns the file does not have (reported_at='created'); "
        "its columns are: Kind, category, x, y, when, status"
    )
    assert parse_column_mapping(["service_code=sr_type", " external_id = SR Number "]) == {
        "service_code": "sr_type",
        "external_id": "SR Number",
    }
    with pytest.raises(InvalidInput, match="no field 'category'; the fields are: service_code"):
        parse_column_mapping(["category=sr_type"])
    with pytest.raises(InvalidInput, match="is not FIELD=COLUMN"):
        parse_column_mapping("service_code")


@pytest.mark.usefixtures("city")
async def test_a_file_with_its_own_names_imports_through_a_mapping(db: AsyncSession) -> None:
    header = ["Ticket", "Kind", "Where", "Lng", "Lat", "Opened", "Ward"]
    data = csv_bytes(
        [["W-1", "pothole", "1 High St", CENTER[0], CENTER[1], "2024-04-01T10:00Z", "7"]],
        header,
    )
    with pytest.raises(ImportFileError, match=r"--column FIELD=COLUMN"):
        await run(db, data)
    columns = ColumnMapping(
        service_code="kind", reported_at="Opened", external_id="Ticket", address="Where"
    )
    summary = await run(db, data, columns=columns)
    assert summary.tickets_opened == 1
    assert summary.columns == {
        "service_code": "Kind",
        "reported_at": "Opened",
        "external_id": "Ticket",
        "address": "Where",
        "lon": "Lng",
        "lat": "Lat",
    }
    assert summary.unused_columns == ["Ward"]
    row = (await db.execute(text("SELECT external_id, address FROM report"))).one()
    assert tuple(row) == ("W-1", "1 High St")
    with pytest.raises(InvalidInput, match="its columns are: Ticket, Kind, Where"):
        await run(db, data, columns=ColumnMapping(status="State"))


@pytest.mark.usefixtures("city")
async def test_geojson_properties_are_mapped_once_for_every_feature(db: AsyncSession) -> None:
    def feature(**properties: Any) -> dict[str, Any]:
        point = {"type": "Point", "coordinates": list(CENTER)}
        return {"type": "Feature", "id": 9, "geometry": point, "properties": properties}

    document = {
        "type": "FeatureCollection",
        "features": [
            feature(kind="pothole", opened="2024-04-01T10:00Z"),
            feature(kind="pothole", opened="2024-04-01T11:00Z", note="again", ref="R-2"),
        ],
    }
    summary = await run(
        db,
        orjson.dumps(document),
        file_format="geojson",
        columns=ColumnMapping(service_code="kind", reported_at="opened", external_id="ref"),
    )
    assert (summary.tickets_opened, summary.reports_joined) == (1, 1)
    assert summary.unused_columns == ["note"]
    ids = (await db.execute(text("SELECT external_id FROM report ORDER BY id"))).scalars().all()
    assert ids == ["9", "R-2"]  # the feature's id where the property is missing


# -- progress -------------------------------------------------------------------------------------


def test_progress_shows_no_rate_until_a_second_of_work(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(core_cli.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    bar = core_cli.ProgressBar("import x.csv", out)
    bar(720, 10_000)  # the scan's rejections, counted before any row was filed
    clock[0] += 6.0
    bar(2_220, 10_000)
    bar.finish()
    first, second = out.getvalue().splitlines()
    assert first == "kerbside: import x.csv: 720/10,000 rows   7.2%  -- rows/s"
    assert second == "kerbside: import x.csv: 2,220/10,000 rows  22.2%  250 rows/s"
