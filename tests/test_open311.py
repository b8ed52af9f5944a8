"""Open311 GeoReport v2: the documents (validated by the Open311 JSON Schemas of
open311/schema-validation and parsed element by element in XML), POST through the intake
(duplicates join, photos, attributes of every datatype), every error class in both formats,
and no personal data in any GET."""

from __future__ import annotations

import json
import os
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.api_keys import issue_api_key
from app.auth.models import Role
from app.auth.principal import Principal
from app.open311.formats import parse_datetime
from app.open311.params import MAX_LENGTH
from app.tickets import service as tickets
from app.tickets.models import TicketStatus
from app.tickets.workflow import change_status
from tests.factories import CITY, make_jurisdiction, make_service
from tests.images import jpeg

jsonschema = pytest.importorskip("jsonschema")

BASE = "/open311/v2"
JSON = "application/json; charset=utf-8"
XML = "text/xml; charset=utf-8"
LON, LAT = CITY.center
ATTRIBUTES = [
    {"code": "depth_cm", "datatype": "number", "order": 1, "description": "How deep?"},
    {
        "code": "lane",
        "datatype": "singlevaluelist",
        "required": True,
        "order": 2,
        "values": [{"key": "road", "name": "Road"}, {"key": "cycle", "name": "Cycle lane"}],
    },
    {
        "code": "hazards",
        "datatype": "multivaluelist",
        "order": 3,
        "values": [
            {"key": "water", "name": "Standing water"},
            {"key": "traffic", "name": "Busy traffic"},
            {"key": "school", "name": "Near a school"},
        ],
    },
    {"code": "seen_at", "datatype": "datetime", "order": 4},
    {"code": "landmark", "datatype": "string", "order": 5},
    {"code": "details", "datatype": "text", "order": 6},
    {
        "code": "safety",
        "datatype": "string",
        "variable": False,
        "order": 7,
        "description": "Call 999 if anyone is hurt",
    },
]
# What a reporter tells us that must never come back out of a GET.
PERSONAL = {
    "email": "jo.citizen@example.org",
    "phone": "+447700900123",
    "first_name": "Joanna",
    "last_name": "Quixotic",
}


# -- the Open311 JSON Schemas (open311/schema-validation, in the project's shared samples) ----


def _samples() -> Path:
    here = Path(__file__).resolve().parents[1]
    for candidate in (
        os.environ.get("KERBSIDE_SHARED_DIR"),
        here.parent / "shared",
        here.parent.parent / "shared",
    ):
        if candidate and (Path(candidate) / "samples" / "open311").is_dir():
            return Path(candidate) / "samples" / "open311"
    pytest.fail("the shared samples (../shared/samples/open311) are missing")


@pytest.fixture(scope="module")
def samples() -> Path:
    return _samples()


@pytest.fixture(scope="module")
def validators(samples: Path) -> dict[str, Any]:
    """A validator per schema; ``$ref: request.json`` resolves to its sibling file."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    loaded = {
        name: json.loads(
            (samples / "schemas" / f"open311_schema-validation_{name}.json").read_text()
        )
        for name in ("request", "requests", "service", "services", "service-definition")
    }
    registry: Registry[Any] = Registry().with_resources(
        (f"{name}.json", Resource.from_contents(schema, default_specification=DRAFT4))
        for name, schema in loaded.items()
    )
    return {
        name: jsonschema.Draft4Validator(
            schema, registry=registry, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
        )
        for name, schema in loaded.items()
    }


def valid(validators: dict[str, Any], name: str, document: Any) -> None:
    errors = list(validators[name].iter_errors(document))
    assert not errors, [e.message for e in errors]
    if name == "requests":  # the array schema's items $ref is not applied by draft 4 here
        for item in document:
            valid(validators, "request", item)
    if name == "services":
        for item in document:
            valid(validators, "service", item)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
async def city(db: AsyncSession) -> dict[str, Any]:
    jurisdiction = await make_jurisdiction(db, slug="squareton")
    pothole = await make_service(
        db,
        jurisdiction,
        "pothole",
        group="Roads",
        descriptions={"en": "A hole or sunken patch in a road"},
        keywords={"en": ["pothole", "hole in the road"]},
        attributes=ATTRIBUTES,
    )
    light = await make_service(db, jurisdiction, "streetlight", duplicate_radius_m=25.0)
    key = await issue_api_key(
        db, jurisdiction_id=jurisdiction.id, name="311 app", role=Role.citizen
    )
    return {"jurisdiction": jurisdiction, "pothole": pothole, "light": light, "key": key.secret}


def form(city: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "api_key": city["key"],
        "service_code": "pothole",
        "lat": str(LAT),
        "long": str(LON),
        "attribute[lane]": "road",
        "description": "A deep pothole by the bus stop",
        **fields,
    }


async def post(
    client: httpx.AsyncClient, data: Any, ext: str = ".json", **kw: Any
) -> httpx.Response:
    return await client.post(f"{BASE}/requests{ext}", data=data, **kw)


def parse_xml(response: httpx.Response) -> ET.Element:
    assert response.headers["content-type"] == XML
    assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(response.content)  # noqa: S314


def no_empty_elements(root: ET.Element) -> None:
    """XML leaves out null elements: every leaf has text (lists may be empty containers)."""
    for element in root.iter():
        if len(element) == 0 and element.tag not in ("values", "media_urls", "attributes"):
            assert element.text, f"<{element.tag}/> is empty"


def open311_errors(response: httpx.Response, status: int, fmt: str) -> list[tuple[int, str]]:
    """The spec's error document, in ``fmt``; its codes match the status."""
    assert response.status_code == status, response.text
    if fmt == "json":
        assert response.headers["content-type"] == JSON
        body = response.json()
        assert isinstance(body, list)
        assert body
        assert all(set(e) == {"code", "description"} for e in body)
        pairs = [(e["code"], e["description"]) for e in body]
    else:
        root = parse_xml(response)
        assert root.tag == "errors"
        pairs = []
        for error in root:
            assert error.tag == "error"
            assert [c.tag for c in error] == ["code", "description"]
            pairs.append((int(error.findtext("code") or 0), error.findtext("description") or ""))
        assert pairs
    assert all(code == status for code, _ in pairs)
    assert all(description for _, description in pairs)
    return pairs


# -- discovery, services, definitions -----------------------------------------------------------


async def test_discovery_in_both_formats_at_any_base_url(
    client: httpx.AsyncClient, city: dict[str, Any], app: FastAPI
) -> None:
    answer = await client.get(f"{BASE}/discovery.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == JSON
    body = answer.json()
    assert set(body) == {"changeset", "contact", "key_service", "endpoints"}
    (endpoint,) = body["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"] == app.state.settings.public_base_url + BASE
    assert endpoint["formats"] == ["text/xml", "application/json"]
    assert endpoint["type"] == "production"

    root = parse_xml(await client.get(f"{BASE}/discovery.xml"))
    assert [c.tag for c in root] == ["changeset", "contact", "key_service", "endpoints"]
    xml_endpoint = root.find("endpoints/endpoint")
    assert xml_endpoint is not None
    assert [f.text for f in xml_endpoint.findall("formats/format")] == [
        "text/xml",
        "application/json",
    ]
    # Without an extension: XML, or JSON when asked for by Accept; the base URL is discovery.
    assert (await client.get(f"{BASE}/discovery")).headers["content-type"] == XML
    assert (await client.get(f"{BASE}/")).headers["content-type"] == XML
    accept = await client.get(f"{BASE}/discovery", headers={"Accept": "application/json"})
    assert accept.headers["content-type"] == JSON
    # Clients concatenating a base that ends in "/" with "/services.json", or adding a slash.
    for path in (f"{BASE}//services.json", f"{BASE}/services.json/", "/open311//v2/services.json"):
        again = await client.get(path)
        assert again.status_code == 200, path
        assert again.headers["content-type"] == JSON


async def test_services_and_definitions_match_the_open311_schemas(
    client: httpx.AsyncClient, city: dict[str, Any], validators: dict[str, Any]
) -> None:
    services = (await client.get(f"{BASE}/services.json")).json()
    valid(validators, "services", services)
    by_code = {s["service_code"]: s for s in services}
    assert by_code["pothole"] == {
        "service_code": "pothole",
        "service_name": "Pothole",
        "description": "A hole or sunken patch in a road",
        "metadata": True,
        "type": "realtime",
        "keywords": "pothole, hole in the road",
        "group": "Roads",
    }
    assert by_code["streetlight"]["metadata"] is False  # a real boolean, not "false"

    root = parse_xml(await client.get(f"{BASE}/services.xml"))
    assert root.tag == "services"
    assert [s.findtext("service_code") for s in root.findall("service")] == [
        "pothole",
        "streetlight",
    ]
    assert root.find("service/metadata") is not None
    assert [s.findtext("metadata") for s in root.findall("service")] == ["true", "false"]
    # No <group/> or <keywords/> for the service without them: null elements are left out.
    light = root.findall("service")[1]
    assert light.find("group") is None
    assert light.find("keywords") is None
    no_empty_elements(root)

    definition = (await client.get(f"{BASE}/services/pothole.json")).json()
    valid(validators, "service-definition", definition)
    assert definition["service_code"] == "pothole"
    datatypes = {a["code"]: a["datatype"] for a in definition["attributes"]}
    assert set(datatypes.values()) == {
        "string",
        "number",
        "datetime",
        "text",
        "singlevaluelist",
        "multivaluelist",
    }
    assert [a["order"] for a in definition["attributes"]] == [1, 2, 3, 4, 5, 6, 7]
    lane = next(a for a in definition["attributes"] if a["code"] == "lane")
    assert lane["required"] is True
    assert lane["variable"] is True
    assert lane["values"] == [
        {"key": "road", "name": "Road"},
        {"key": "cycle", "name": "Cycle lane"},
    ]
    assert all(a["datatype_description"] for a in definition["attributes"])
    safety = next(a for a in definition["attributes"] if a["code"] == "safety")
    assert safety["variable"] is False

    root = parse_xml(await client.get(f"{BASE}/services/pothole.xml"))
    assert root.tag == "service_definition"
    assert root.findtext("service_code") == "pothole"
    attributes = root.findall("attributes/attribute")
    assert len(attributes) == 7
    for attribute in attributes:
        assert attribute.find("values") is not None  # every list in its container
        assert attribute.findtext("variable") in ("true", "false")
    hazards = next(a for a in attributes if a.findtext("code") == "hazards")
    assert [v.findtext("key") for v in hazards.findall("values/value")] == [
        "water",
        "traffic",
        "school",
    ]
    # No attributes: an empty list, not an error.
    empty = (await client.get(f"{BASE}/services/streetlight.json")).json()
    assert empty == {"service_code": "streetlight", "attributes": []}


async def test_the_sample_documents_shapes_are_ours(
    client: httpx.AsyncClient, city: dict[str, Any], samples: Path
) -> None:
    """The elements of the spec's and real servers' XML documents are the ones we send
    (names, nesting and order of the standard fields)."""

    def shape(element: ET.Element) -> list[str]:
        return [child.tag for child in element]

    spec_list = ET.fromstring((samples / "spec_service_list.xml").read_bytes())  # noqa: S314
    ours = parse_xml(await client.get(f"{BASE}/services.xml"))
    assert spec_list.tag == ours.tag
    assert {c.tag for c in spec_list} == {c.tag for c in ours}
    assert set(shape(ours[0])) == set(shape(spec_list[0]))

    spec_definition = ET.fromstring((samples / "spec_service_definition.xml").read_bytes())  # noqa: S314
    definition = parse_xml(await client.get(f"{BASE}/services/pothole.xml"))
    assert shape(definition) == shape(spec_definition)
    spec_attribute = spec_definition.find("attributes/attribute")
    assert spec_attribute is not None
    lane = next(
        a for a in definition.findall("attributes/attribute") if a.findtext("code") == "lane"
    )
    assert shape(lane) == shape(spec_attribute)

    filed = await post(client, form(city), ".xml")
    answer = parse_xml(filed)
    spec_post = ET.fromstring((samples / "spec_service_request_post.xml").read_bytes())  # noqa: S314
    assert answer.tag == spec_post.tag == "service_requests"
    assert [c.tag for c in answer] == ["request"]
    # account_id is null here, so it is left out (the spec's sample shows it empty).
    assert shape(answer[0]) == [t for t in shape(spec_post[0]) if t != "account_id"]

    reference = answer.findtext("request/service_request_id")
    spec_request = ET.fromstring((samples / "spec_service_request.xml").read_bytes())  # noqa: S314
    ours_request = parse_xml(await client.get(f"{BASE}/requests/{reference}.xml"))
    expected = shape(spec_request[0])
    got = shape(ours_request[0])
    # Ours leaves out the null ones (no address_id, zipcode, notice, photo): same order.
    assert got == [t for t in expected if t in got]
    assert {"service_request_id", "status", "requested_datetime", "lat", "long"} <= set(got)

    spec_discovery = ET.fromstring((samples / "spec_discovery.xml").read_bytes())  # noqa: S314
    discovery = parse_xml(await client.get(f"{BASE}/discovery.xml"))
    assert shape(discovery) == shape(spec_discovery)
    spec_endpoint = spec_discovery.find("endpoints/endpoint")
    endpoint = discovery.find("endpoints/endpoint")
    assert spec_endpoint is not None
    assert endpoint is not None
    assert shape(endpoint) == shape(spec_endpoint)


# -- POST and GET requests ----------------------------------------------------------------------


async def test_post_files_through_the_intake_and_get_reads_it_back(
    client: httpx.AsyncClient, city: dict[str, Any], validators: dict[str, Any], db: AsyncSession
) -> None:
    # api_key and jurisdiction_id in the query string (PyPI open311), the rest in the body;
    # a multivaluelist as [] keys and as repeated keys; the body wins over the query.
    answer = await client.post(
        f"{BASE}/requests.json",
        params={"api_key": city["key"], "jurisdiction_id": "squareton", "description": "query"},
        content=(
            "service_code=pothole&lat={lat}&long={lon}&description=Deep%0D%0Ahole"
            "&attribute[lane]=road&attribute[hazards][]=water&attribute[hazards][]=school"
            "&attribute[depth_cm]=12&attribute[seen_at]=2026-11-24T09:30:00%2B01:00"
            "&attribute[landmark]=Bus+stop&attribute[details]=Line+one%0ALine+two"
            "&attribute[unknown]=dropped&email={email}&phone=%2B447700900123"
            "&first_name=Joanna&last_name=Quixotic&title=Pothole"
        ).format(lat=LAT, lon=LON, email=PERSONAL["email"]),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == JSON
    (filed,) = answer.json()
    assert isinstance(filed["service_request_id"], str)
    assert filed["service_notice"].startswith("Opened ")
    reference = filed["service_request_id"]

    report = (
        await db.execute(
            text(
                "SELECT r.description, r.attributes, r.channel, t.reference FROM report r"
                " JOIN ticket t ON t.id = r.ticket_id ORDER BY r.id DESC LIMIT 1"
            )
        )
    ).one()
    assert report.reference == reference
    assert report.channel == "open311"
    assert report.description == "Pothole\n\nDeep\nhole"  # CRLF normalised, title kept
    assert report.attributes == {
        "lane": "road",
        "hazards": ["water", "school"],
        "depth_cm": 12,
        "seen_at": "2026-11-24T08:30:00Z",
        "landmark": "Bus stop",
        "details": "Line one\nLine two",
    }

    one = await client.get(f"{BASE}/requests/{reference}.json")
    assert one.headers["content-type"] == JSON
    (item,) = one.json()  # a one-element list
    valid(validators, "requests", one.json())
    assert item["service_request_id"] == reference
    assert item["status"] == "open"
    assert item["service_code"] == "pothole"
    assert item["service_name"] == "Pothole"
    assert item["description"] == "Pothole\n\nDeep\nhole"
    assert abs(item["lat"] - LAT) < 1e-6
    assert abs(item["long"] - LON) < 1e-6
    requested = item["requested_datetime"]
    assert len(requested) == 20
    assert requested.endswith("Z")
    assert datetime.fromisoformat(requested).tzinfo == UTC
    assert item["address"]  # test311 wants one: the district and the city
    assert "extended_attributes" not in item

    root = parse_xml(await client.get(f"{BASE}/requests/{reference}.xml"))
    assert root.tag == "service_requests"
    (request,) = root.findall("request")
    assert request.findtext("service_request_id") == reference
    assert request.findtext("status") == "open"
    assert request.find("expected_datetime") is not None  # a resolve deadline exists
    assert request.find("zipcode") is None
    assert request.find("media_url") is None
    assert float(request.findtext("lat") or 0) == item["lat"]
    no_empty_elements(root)

    listed = await client.get(f"{BASE}/requests.json")
    valid(validators, "requests", listed.json())
    assert [r["service_request_id"] for r in listed.json()] == [reference]
    # The extensionless form (XML) and the Accept: application/json one.
    assert (await client.get(f"{BASE}/requests")).headers["content-type"] == XML
    extended = (await client.get(f"{BASE}/requests.json", params={"extensions": "true"})).json()
    assert extended[0]["extended_attributes"]["detailed_status"] == "open"
    assert extended[0]["extended_attributes"]["report_count"] == 1
    assert extended[0]["extended_attributes"]["media_urls"] == []
    extended_xml = parse_xml(
        await client.get(f"{BASE}/requests.xml", params={"extensions": "true"})
    )
    assert extended_xml.find("request/extended_attributes/media_urls") is not None
    assert extended_xml.findtext("request/extended_attributes/detailed_status") == "open"


async def test_a_forwarded_post_joins_the_duplicate_and_says_so(
    client: httpx.AsyncClient, city: dict[str, Any], db: AsyncSession
) -> None:
    first = (await post(client, form(city))).json()[0]
    # FixMyStreet forwarding another citizen's report of the same hole, 10 m away.
    second = await post(
        client,
        form(
            city,
            lat=str(LAT + 0.00009),
            title="Pothole",
            description="Still there",
            **{"attribute[fixmystreet_id]": "4242"},
        ),
        params={"extensions": "true"},
    )
    joined = second.json()[0]
    assert joined["service_request_id"] == first["service_request_id"]
    assert joined["service_notice"].startswith(f"Joined {first['service_request_id']}")
    assert joined["extended_attributes"]["joined_existing"] is True
    assert joined["extended_attributes"]["detailed_status"] == "open"
    # A retry of the same forwarded report replays the answer instead of filing it again.
    again = await post(
        client,
        form(
            city,
            lat=str(LAT + 0.00009),
            title="Pothole",
            description="Still there",
            **{"attribute[fixmystreet_id]": "4242"},
        ),
        params={"extensions": "true"},
    )
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == second.json()
    counts = (await db.execute(text("SELECT count(*) FROM report"))).scalar_one()
    assert counts == 2
    # The token (the report) leads to the ticket it joined.
    token = joined["extended_attributes"]["token"]
    resolved = (await client.get(f"{BASE}/tokens/{token}.json")).json()
    assert resolved == [{"service_request_id": first["service_request_id"], "token": token}]
    root = parse_xml(await client.get(f"{BASE}/tokens/{token}.xml"))
    assert [c.tag for c in root.find("request") or []] == ["service_request_id", "token"]

    # A ticket staff merge as a duplicate: closed, and the extensions name the one it joined.
    other = (await post(client, form(city, lat=str(LAT + 0.01)))).json()[0]
    ids = dict(
        (
            await db.execute(
                text("SELECT reference, id FROM ticket WHERE reference = ANY(:r)"),
                {"r": [first["service_request_id"], other["service_request_id"]]},
            )
        ).all()
    )
    staff = Principal(kind="user", role=Role.admin, label="user:test")
    await tickets.merge(
        db, ids[other["service_request_id"]], ids[first["service_request_id"]], actor=staff
    )
    merged = (
        await client.get(
            f"{BASE}/requests/{other['service_request_id']}.json", params={"extensions": "true"}
        )
    ).json()[0]
    assert merged["status"] == "closed"
    assert merged["extended_attributes"]["detailed_status"] == "duplicate"
    assert merged["extended_attributes"]["merged_into"] == first["service_request_id"]


async def test_multipart_media_goes_through_the_photo_pipeline(
    client: httpx.AsyncClient, city: dict[str, Any], db: AsyncSession
) -> None:
    fields = form(city)
    answer = await client.post(
        f"{BASE}/requests.xml",
        data=fields,
        files=[("media", ("hole.jpg", jpeg((320, 240)), "image/jpeg"))],
    )
    assert answer.status_code == 200, answer.text
    reference = parse_xml(answer).findtext("request/service_request_id")
    photo = (
        await db.execute(
            text(
                "SELECT p.status, p.content_type FROM photo p JOIN ticket t ON t.id = p.ticket_id"
                " WHERE t.reference = :r"
            ),
            {"r": reference},
        )
    ).one()
    assert photo.status == "pending"  # the worker makes the stored files after the commit
    # EXIF GPS places a multipart request that sends no lat/long.
    fields = {k: v for k, v in form(city).items() if k not in ("lat", "long")}
    placed = await client.post(
        f"{BASE}/requests.json",
        data=fields,
        files=[("media[]", ("gps.jpg", jpeg((320, 240), lon=LON, lat=LAT), "image/jpeg"))],
    )
    assert placed.status_code == 200, placed.text


async def test_filters_pages_and_windows(
    client: httpx.AsyncClient, city: dict[str, Any], db: AsyncSession
) -> None:
    references = []
    for i in range(5):
        filed = await post(client, form(city, lat=str(LAT + 0.002 * i)))
        references.append(filed.json()[0]["service_request_id"])
    light = await post(
        client,
        {k: v for k, v in form(city, service_code="streetlight").items() if k != "attribute[lane]"},
    )
    references.append(light.json()[0]["service_request_id"])
    # An old ticket, outside the default 90-day window.
    await db.execute(
        text(
            "UPDATE ticket SET first_reported_at = now() - interval '120 days' WHERE reference = :r"
        ),
        {"r": references[0]},
    )

    async def ids(**params: Any) -> list[str]:
        answer = await client.get(f"{BASE}/requests.json", params=params)
        assert answer.status_code == 200, answer.text
        return [r["service_request_id"] for r in answer.json()]

    newest_first = list(reversed(references[1:]))
    assert await ids() == newest_first
    assert await ids(page_size=2) == newest_first[:2]
    assert await ids(page_size=2, page=3) == newest_first[4:]
    assert await ids(service_code="streetlight") == [references[5]]
    assert await ids(service_code="pothole,streetlight", page_size=1) == newest_first[:1]
    assert references[0] in await ids(
        start_date=(datetime.now(UTC) - timedelta(days=200)).date().isoformat()
    )
    # service_request_id overrides every other filter (the window too).
    assert await ids(
        service_request_id=f"{references[0]},{references[1].lower()}", status="closed"
    ) == [
        references[1],
        references[0],
    ]
    assert await ids(status="closed") == []
    assert await ids(status="open,closed") == newest_first
    near = await ids(lat=LAT, long=LON, radius=300)
    assert near == [references[5], references[1]]
    bbox = f"{LON - 0.001},{LAT + 0.003};{LON + 0.001},{LAT + 0.0100}"
    assert await ids(bbox=bbox) == [references[4], references[3], references[2]]
    # Any ISO 8601 in: fractions, an offset whose + arrived as a space, a date alone.
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.123456 00:00")
    assert await ids(updated_before=later, updated_after="2020-01-01") == [
        *newest_first,
        references[0],
    ]
    assert await ids(updated_after=later.replace(" ", "+")) == []
    # Empty means absent.
    assert await ids(service_code="", status="", start_date="") == newest_first
    # The row cap.
    app_settings = client._transport.app.state.settings  # type: ignore[attr-defined]
    app_settings_before = app_settings.open311_max_requests
    app_settings.open311_max_requests = 3
    try:
        assert await ids() == newest_first[:3]
        # A page_size above the cap is served as the cap (schemathesis: the document said
        # no maximum and the server refused 1,001 with a 400); above its bound, refused.
        assert await ids(page_size=1000) == newest_first[:3]
        refused = await client.get(f"{BASE}/requests.json", params={"page_size": 10_001})
        assert refused.status_code == 400, refused.text
    finally:
        app_settings.open311_max_requests = app_settings_before


async def test_a_read_refuses_a_value_longer_than_its_documented_maximum(
    client: httpx.AsyncClient, city: dict[str, Any]
) -> None:
    """schemathesis: ``status`` of 30 characters beside ``service_request_id`` (which
    overrides every other filter, so nothing read it) was answered 200 although the document
    says at most 20; and ``service_request_id`` documented 20,000 characters, a request line
    the HTTP server refuses in text/plain before the API sees it."""
    for name, limit in MAX_LENGTH.items():
        params = {"service_request_id": "K-2026-000001", name: "x" * (limit + 1)}
        for ext in (".json", ".xml"):
            answer = await client.get(f"{BASE}/requests{ext}", params=params)
            assert answer.status_code == 400, (name, answer.text)
            assert f"{name}: at most {limit} characters" in answer.text
        within = await client.get(f"{BASE}/requests.json", params={name: "x" * limit})
        assert within.status_code in (200, 400, 404), within.text  # wrong in another way
        assert "characters" not in within.text
    document = client._transport.app.openapi()  # type: ignore[attr-defined]
    for path, item in document["paths"].items():
        if not path.startswith(BASE):
            continue
        for operation in item.values():
            query = [p for p in operation.get("parameters", ()) if p["in"] == "query"]
            lengths = {
                p["name"]: max(
                    s.get("maxLength", 40) for s in p["schema"].get("anyOf", [p["schema"]])
                )
                for p in query
            }
            for name, declared in lengths.items():
                assert declared == MAX_LENGTH.get(name, declared), (path, name)
            # Every value at its longest, each character percent-encoded UTF-8 (12 bytes at
            # most), fits a request line uvicorn reads (64 KB).
            longest = sum(lengths.values())
            assert longest * 12 < 60_000, (path, longest)


async def test_status_open_closed_and_fixmystreet_updates(
    client: httpx.AsyncClient, city: dict[str, Any], db: AsyncSession
) -> None:
    reference = (await post(client, form(city))).json()[0]["service_request_id"]
    ticket_id = (
        await db.execute(text("SELECT id FROM ticket WHERE reference = :r"), {"r": reference})
    ).scalar_one()
    staff = Principal(kind="user", role=Role.admin, label="user:staff", name="Sam Staffer")
    await change_status(db, ticket_id, TicketStatus.in_progress, actor=staff, note="Crew booked")
    await change_status(db, ticket_id, TicketStatus.fixed, actor=staff, note="Filled")
    item = (
        await client.get(f"{BASE}/requests/{reference}.json", params={"extensions": "true"})
    ).json()[0]
    assert item["status"] == "closed"
    assert item["status_notes"] == "Filled"
    assert item["extended_attributes"]["detailed_status"] == "fixed"
    assert item["expected_datetime"] is None

    updates = await client.get(
        f"{BASE}/servicerequestupdates.json",
        params={
            "start_date": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
            "api_key": "ignored on reads",
        },
    )
    assert updates.status_code == 200, updates.text
    body = updates.json()
    assert [(u["status"], u["description"]) for u in body] == [
        ("in_progress", "Crew booked"),
        ("fixed", "Filled"),
    ]
    assert all(u["service_request_id"] == reference for u in body)
    assert all(isinstance(u["update_id"], str) for u in body)
    root = parse_xml(await client.get(f"{BASE}/servicerequestupdates.xml"))
    assert root.tag == "service_request_updates"
    updates_xml = root.findall("request_update")
    assert [u.findtext("external_status_code") for u in updates_xml] == ["in_progress", "fixed"]
    assert "Sam Staffer" not in updates.text


async def test_no_personal_data_in_any_get(client: httpx.AsyncClient, city: dict[str, Any]) -> None:
    filed = await post(client, form(city, **PERSONAL, address_string="12 Acacia Avenue"))
    reference = filed.json()[0]["service_request_id"]
    for path in (
        "requests.json",
        "requests.xml",
        f"requests/{reference}.json",
        f"requests/{reference}.xml",
        "servicerequestupdates.json",
    ):
        for extensions in ("false", "true"):
            answer = await client.get(f"{BASE}/{path}", params={"extensions": extensions})
            assert answer.status_code == 200
            for secret in (*PERSONAL.values(), "Acacia", "447700900123"):
                assert secret not in answer.text, (path, secret)
    # The POST's own answer carries nothing personal either.
    assert not any(secret in filed.text for secret in PERSONAL.values())


async def test_jurisdictions(
    client: httpx.AsyncClient, city: dict[str, Any], db: AsyncSession, app: FastAPI
) -> None:
    assert (
        await client.get(f"{BASE}/services.json", params={"jurisdiction_id": "squareton"})
    ).status_code == 200
    open311_errors(
        await client.get(f"{BASE}/services.json", params={"jurisdiction_id": "rostock.de"}),
        404,
        "json",
    )
    # A single-city deployment may take any jurisdiction_id as its own.
    app.state.settings.open311_ignore_unknown_jurisdiction = True
    try:
        unknown = await client.get(
            f"{BASE}/services.json", params={"jurisdiction_id": "rostock.de"}
        )
        assert unknown.status_code == 200
        filed = await post(client, form(city, jurisdiction_id="rostock.de"))
        assert filed.status_code == 200
    finally:
        app.state.settings.open311_ignore_unknown_jurisdiction = False
    # With a second city, per-city resources need the jurisdiction_id, and a key files in
    # its own city only.
    other = await make_jurisdiction(db, slug="otherton")
    await make_service(db, other, "pothole")
    app.state.open311_jurisdictions = None
    open311_errors(await client.get(f"{BASE}/services.xml"), 400, "xml")
    assert (
        await client.get(f"{BASE}/services.json", params={"jurisdiction_id": "otherton"})
    ).status_code == 200
    open311_errors(await post(client, form(city, jurisdiction_id="otherton")), 403, "json")
    assert (await post(client, form(city, jurisdiction_id="squareton"))).status_code == 200
    assert (await post(client, form(city))).status_code == 200  # the key's own city
    listed = await client.get(f"{BASE}/requests.json", params={"jurisdiction_id": "otherton"})
    assert listed.json() == []


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_every_error_class_in_both_formats(
    client: httpx.AsyncClient, city: dict[str, Any], fmt: str
) -> None:
    ext = f".{fmt}"
    without_key = {k: v for k, v in form(city).items() if k != "api_key"}
    cases: list[tuple[str, httpx.Response, int, str]] = [
        ("no key", await post(client, without_key, ext), 403, "api_key"),
        ("bad key", await post(client, form(city, api_key="ks_nope_nope"), ext), 403, "API key"),
        (
            "no service_code",
            await post(client, {k: v for k, v in form(city).items() if k != "service_code"}, ext),
            400,
            "service_code",
        ),
        ("unknown service", await post(client, form(city, service_code="nope"), ext), 404, "nope"),
        (
            "no location",
            await post(
                client, {k: v for k, v in form(city).items() if k not in ("lat", "long")}, ext
            ),
            400,
            "lat",
        ),
        ("half a location", await post(client, form(city, long=""), ext), 400, "lat"),
        (
            "outside the city",
            await post(client, form(city, lat="10", long="10"), ext),
            400,
            "lat/long",
        ),
        (
            "required attribute",
            await post(
                client, {k: v for k, v in form(city).items() if k != "attribute[lane]"}, ext
            ),
            400,
            "attribute[lane]",
        ),
        (
            "list key",
            await post(client, form(city, **{"attribute[lane]": "sky"}), ext),
            400,
            "attribute[lane]",
        ),
        (
            "multivaluelist key",
            await post(client, form(city, **{"attribute[hazards][]": ["water", "lava"]}), ext),
            400,
            "attribute[hazards]",
        ),
        (
            "number",
            await post(client, form(city, **{"attribute[depth_cm]": "deep"}), ext),
            400,
            "attribute[depth_cm]",
        ),
        (
            "datetime",
            await post(client, form(city, **{"attribute[seen_at]": "yesterday"}), ext),
            400,
            "attribute[seen_at]",
        ),
        ("too long", await post(client, form(city, description="x" * 4001), ext), 400, "4000"),
        (
            "idempotency key",
            await post(client, form(city), ext, headers={"Idempotency-Key": "k" * 256}),
            400,
            "Idempotency-Key",
        ),
        (
            "unknown jurisdiction",
            await post(client, form(city, jurisdiction_id="rostock.de"), ext),
            404,
            "rostock.de",
        ),
        (
            "content type",
            await client.post(
                f"{BASE}/requests{ext}", content=b"{}", headers={"Content-Type": "application/json"}
            ),
            415,
            "urlencoded",
        ),
        ("unknown request", await client.get(f"{BASE}/requests/K-1999-999999{ext}"), 404, "K-1999"),
        ("unknown service definition", await client.get(f"{BASE}/services/nope{ext}"), 404, "nope"),
        ("unknown token", await client.get(f"{BASE}/tokens/{uuid.uuid4()}{ext}"), 404, "token"),
        ("malformed token", await client.get(f"{BASE}/tokens/abc{ext}"), 404, "token"),
        (
            "bad date",
            await client.get(f"{BASE}/requests{ext}", params={"start_date": "soon"}),
            400,
            "start_date",
        ),
        (
            "bad status",
            await client.get(f"{BASE}/requests{ext}", params={"status": "pending"}),
            400,
            "status",
        ),
        ("bad page", await client.get(f"{BASE}/requests{ext}", params={"page": "0"}), 400, "page"),
        (
            "bad bbox",
            await client.get(f"{BASE}/requests{ext}", params={"bbox": "1,2,3"}),
            400,
            "bbox",
        ),
        (
            "bad radius",
            await client.get(
                f"{BASE}/requests{ext}", params={"lat": LAT, "long": LON, "radius": "-1"}
            ),
            400,
            "radius",
        ),
        (
            "NUL",
            await client.get(f"{BASE}/requests{ext}", params={"service_code": "a\x00b"}),
            400,
            "NUL",
        ),
        ("no such resource", await client.get(f"{BASE}/nothing{ext}"), 404, "Resources"),
        ("method", await client.delete(f"{BASE}/requests{ext}"), 405, "DELETE"),
    ]
    for name, response, status, words in cases:
        pairs = open311_errors(response, status, fmt)
        assert any(words in description for _, description in pairs), (name, pairs)
    # A bad extension is a 404 in Open311's default format (XML).
    open311_errors(await client.get(f"{BASE}/requests.html"), 404, "xml")


def test_datetimes_in_any_iso_8601() -> None:
    utc = datetime(2026, 11, 17, 3, 21, 53, tzinfo=UTC)
    assert parse_datetime("2026-11-17T03:21:53Z") == utc
    assert parse_datetime("2026-11-17T03:21:53.802069+00:00") == utc.replace(microsecond=802069)
    assert parse_datetime("2026-11-17T04:21:53 01:00") == utc  # "+" decoded as a space
    assert parse_datetime("2026-11-17") == datetime(2026, 11, 17, tzinfo=UTC)
    assert parse_datetime("2026-11-17T03:21:53") == utc
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_datetime("last tuesday")
    # The ends of datetime's range, which a day's arithmetic or UTC would overflow
    # (schemathesis: a 500 on servicerequestupdates?end_date=0001-01-01T00:00:00Z).
    assert parse_datetime("0001-01-01T00:00:00+23:59").year == 2
    assert parse_datetime("9999-12-31T23:59:59-23:59").year == 9998
    assert parse_datetime("0001-01-01") == datetime(2, 1, 1, tzinfo=UTC)


async def test_extensions_is_a_yes_or_no_and_every_filter_is_read(
    client: httpx.AsyncClient,
) -> None:
    """schemathesis: ``extensions=x`` was taken for "no" (200) against the documented enum."""
    for value, status in (("x", 400), ("true", 200), ("FALSE", 200), ("", 200)):
        answer = await client.get(f"{BASE}/requests.json", params={"extensions": value})
        assert answer.status_code == status, (value, answer.text)
    # Beside service_request_id (which overrides every other filter) too.
    for name, value in (
        ("start_date", "-2.7e+16"),
        ("status", "shut"),
        ("lat", "52"),
        ("radius", "null"),
        ("radius", "0"),
    ):
        answer = await client.get(
            f"{BASE}/requests.json", params={"service_request_id": "K-2026-000001", name: value}
        )
        assert answer.status_code == 400, (name, answer.text)


async def test_times_at_the_ends_of_the_calendar_are_read(client: httpx.AsyncClient) -> None:
    for path, name in (("servicerequestupdates", "end_date"), ("requests", "updated_after")):
        for value in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59"):
            answer = await client.get(f"{BASE}/{path}.json", params={name: value})
            assert answer.status_code == 200, answer.text


async def test_the_intake_checks_datetime_answers_on_every_channel(
    client: httpx.AsyncClient, city: dict[str, Any]
) -> None:
    body: dict[str, Any] = {
        "service_code": "pothole",
        "location": {"lon": LON, "lat": LAT},
        "attributes": {"lane": "road", "seen_at": "yesterday"},
    }
    refused = await client.post("/v1/reports", json=body)
    assert refused.status_code == 422
    assert "attributes.seen_at" in refused.text
    body["attributes"]["seen_at"] = "2026-11-24T09:30:00"  # no zone
    assert (await client.post("/v1/reports", json=body)).status_code == 422
    body["attributes"]["seen_at"] = "2026-11-24T09:30:00+01:00"
    assert (await client.post("/v1/reports", json=body)).status_code == 201
