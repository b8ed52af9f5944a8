"""Third-party Open311 clients from PyPI, unmodified, against a live server: ``georeport``
(reads, JSON and XML through xmltodict) and ``civicbot`` (reads, and a POST it validates
against our service definition first)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.api_keys import issue_api_key
from app.auth.models import Role
from app.embedded import free_port
from app.main import create_app
from app.settings import Settings
from tests.factories import CITY, make_jurisdiction, make_service
from tests.live import serve
from tests.test_open311 import ATTRIBUTES, PERSONAL

georeport = pytest.importorskip("georeport")
civicbot_http = pytest.importorskip("civicbot.http")
civicbot_open311 = pytest.importorskip("civicbot.open311")
civicbot_registry = pytest.importorskip("civicbot.registry")

LON, LAT = CITY.center


@dataclass(frozen=True)
class Live:
    url: str  # the Open311 base, with the trailing slash FixMyStreet needs
    key: str


@pytest.fixture
async def city_key(committed_db: async_sessionmaker[AsyncSession]) -> AsyncIterator[str]:
    async with committed_db() as db:
        jurisdiction = await make_jurisdiction(db, slug="squareton")
        await make_service(db, jurisdiction, "pothole", group="Roads", attributes=ATTRIBUTES)
        await make_service(db, jurisdiction, "streetlight")
        issued = await issue_api_key(
            db, jurisdiction_id=jurisdiction.id, name="civic app", role=Role.citizen
        )
        await db.commit()
    return issued.secret


@pytest.fixture
def live(city_key: str, database_url: str, tmp_path: Path) -> Iterator[Live]:
    port = free_port()
    settings = Settings(
        env="test",
        database_url=database_url,
        media_dir=tmp_path,
        log_json=False,
        log_level="WARNING",
        public_base_url=f"http://127.0.0.1:{port}",
        database_pool_size=2,
    )
    with serve(create_app(settings), port) as url:
        yield Live(f"{url}/open311/v2/", city_key)


def test_civicbot_files_and_reads_requests(live: Live) -> None:
    endpoint = civicbot_registry.Endpoint(
        id="kerbside", name="Kerbside", base_url=live.url, write=True
    )
    transport = civicbot_http.HttpTransport(
        rate_limiter=civicbot_http.RateLimiter(min_interval=0.0)
    )
    client = civicbot_open311.Open311Client(endpoint, transport, jurisdiction_id="squareton")
    services = client.list_services()
    assert [s["service_code"] for s in services] == ["pothole", "streetlight"]
    assert services[0]["metadata"] is True  # civicbot asks for the definition only then

    # validate_remote: civicbot reads our service list and definition and checks the form
    # against them before it sends it; a multivaluelist goes as attribute[hazards][].
    prepared = client.create_request(
        "pothole",
        dry_run=False,
        confirm="SEND",
        api_key=live.key,
        validate_remote=True,
        lat=LAT,
        lng=LON,
        description="Deep pothole",
        attributes={"lane": "cycle", "hazards": ["water", "traffic"], "depth_cm": 9},
        email=PERSONAL["email"],
        first_name=PERSONAL["first_name"],
    )
    assert prepared.form["attribute[hazards][]"] == ["water", "traffic"]
    (filed,) = prepared.response
    reference = filed["service_request_id"]
    assert reference.startswith("K-")

    read = client.get_request(reference)
    assert read is not None
    assert read["status"] == "open"
    assert read["service_code"] == "pothole"
    assert PERSONAL["email"] not in str(read)

    # The same hole reported again a few metres away joins the ticket.
    again = client.create_request(
        "pothole",
        dry_run=False,
        confirm="SEND",
        api_key=live.key,
        lat=LAT + 0.00005,
        lng=LON,
        attributes={"lane": "cycle"},
    )
    assert again.response[0]["service_request_id"] == reference
    assert again.response[0]["service_notice"].startswith(f"Joined {reference}")

    listed = client.list_requests(status="open", page_size=10)
    assert [r["service_request_id"] for r in listed] == [reference]
    assert client.list_requests(status="closed") == []

    # Our refusal reaches civicbot as an HTTP error with Open311's error document.
    with pytest.raises(civicbot_http.HttpError) as refused:
        client.create_request(
            "pothole", dry_run=False, confirm="SEND", api_key=live.key, lat=LAT, lng=LON
        )
    assert refused.value.status == 400
    assert "attribute[lane]" in refused.value.body


@pytest.mark.parametrize("output_format", ["json", "xml"])
def test_georeport_reads_services_definitions_and_requests(live: Live, output_format: str) -> None:
    # File one request first (georeport itself only reads).
    endpoint = civicbot_registry.Endpoint(id="k", name="k", base_url=live.url, write=True)
    transport = civicbot_http.HttpTransport(
        rate_limiter=civicbot_http.RateLimiter(min_interval=0.0)
    )
    writer = civicbot_open311.Open311Client(endpoint, transport)
    filed = writer.create_request(
        "streetlight", dry_run=False, confirm="SEND", api_key=live.key, lat=LAT, lng=LON
    ).response[0]["service_request_id"]

    client = georeport.GeoReport(live.url, jurisdiction="squareton", output_format=output_format)
    services = client.get_service_list()
    codes = [s["service_code"] for s in services]
    assert codes == ["pothole", "streetlight"]
    definition = client.get_service_definition("pothole")
    attributes = definition["attributes"]
    if output_format == "xml":  # xmltodict: the container holds its <attribute> children
        attributes = attributes["attribute"]
    assert {a["datatype"] for a in attributes} == {
        "string",
        "number",
        "datetime",
        "text",
        "singlevaluelist",
        "multivaluelist",
    }
    requests = client.get_service_requests(status="open")
    one = requests if isinstance(requests, dict) else requests[0]  # xmltodict: one is a dict
    assert one["service_request_id"] == filed
    assert one["status"] == "open"
    single = client.get_service_request(filed)
    assert single["service_request_id"] == filed
    assert single["service_code"] == "streetlight"
    assert client.get_service_requests(service_request_id=filed, status="closed")
