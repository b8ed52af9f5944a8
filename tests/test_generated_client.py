"""A generated Python client works: openapi-python-client builds one from our document
without a warning, and its typed calls file a report with a photo, read the ticket and list
a crew's work orders against a live server (the demo city)."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.embedded import free_port
from app.main import create_app
from app.openapi_doc import openapi_json
from app.seed.demo import DEMO_USERS, seed_demo
from app.settings import PROJECT_ROOT, Settings, to_sqlalchemy_url
from geo.city import make_city
from tests.images import jpeg
from tests.live import serve

CONFIG = PROJECT_ROOT / "openapi" / "python-client.yaml"
PACKAGE = "kerbside_client"


def _generator() -> str:
    found = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("openapi-python-client is missing: it is in the dev extra (scripts/bootstrap)")
    return found


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    where = tmp_path_factory.mktemp("client")
    document = where / "openapi.json"
    document.write_text(openapi_json())
    run = subprocess.run(
        [
            _generator(),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            PACKAGE,
            "--config",
            str(CONFIG),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=where,
        # Its post-generation hook formats the code with ruff, from this environment.
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    said = (run.stdout + run.stderr).strip().splitlines()
    assert [line for line in said if not line.startswith("Generating ")] == [], "\n".join(said)
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_every_model_the_document_names_is_generated(generated: ModuleType) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    for name in (
        "TicketSummary",
        "TicketDetail",
        "ReportAccepted",
        "WorkOrder",
        "WorkOrderPage",
        "DayRoute",
        "TicketArea",
        "WorkOrderArea",
        "WorkOrderCrew",
        "AreaRef",
        "CrewRef",
    ):
        assert hasattr(models, name), name
    components = json.loads(openapi_json())["components"]["schemas"]
    assert not [name for name in components if "__" in name]  # no module-qualified names


@pytest.fixture(scope="module")
async def demo(database_url: str) -> AsyncIterator[None]:
    await seed_demo(database_url, reports=40, progress=False)
    yield
    engine = create_async_engine(to_sqlalchemy_url(database_url), poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "TRUNCATE jurisdiction, app_user, contact, idempotency_record "
                "RESTART IDENTITY CASCADE"
            )
        )
        await conn.execute(text("REFRESH MATERIALIZED VIEW ticket_grid"))
    await engine.dispose()


@pytest.fixture(scope="module")
def live(demo: None, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    settings = Settings(
        env="test",
        database_url=database_url,
        media_dir=tmp_path_factory.mktemp("client-media"),
        log_json=False,
        log_level="WARNING",
        public_base_url=f"http://127.0.0.1:{port}",
        database_pool_size=2,
    )
    with serve(create_app(settings), port) as url:
        yield url


def _call(generated: ModuleType, module: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.{module}")


def test_typed_calls_file_a_report_read_the_ticket_and_list_work_orders(
    generated: ModuleType, live: str
) -> None:
    with contextlib.ExitStack() as stack:
        _file_read_and_list(generated, live, stack)


def _file_read_and_list(generated: ModuleType, live: str, stack: contextlib.ExitStack) -> None:
    """Each client is a context manager; the stack closes their connections."""
    client_module = importlib.import_module(f"{PACKAGE}.client")
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    anonymous = stack.enter_context(
        client_module.Client(base_url=live, raise_on_unexpected_status=True)
    )

    # File a report with a photo (multipart), as a signed-in citizen.
    email, password = DEMO_USERS[3][0], DEMO_USERS[3][1]
    login = _call(generated, "auth.auth_jwt_login_v1_auth_jwt_login_post")
    token = login.sync(
        client=anonymous,
        body=models.BodyAuthJwtLoginV1AuthJwtLoginPost(username=email, password=password),
    )
    citizen = stack.enter_context(
        client_module.AuthenticatedClient(
            base_url=live, token=token.access_token, raise_on_unexpected_status=True
        )
    )
    lon, lat = make_city().center
    report = models.ReportIn(
        service_code="streetlight",
        location=models.Location(lon=lon, lat=lat),
        description="Lamp out, filed by a generated client",
    )
    body = models.CreateReportV1ReportsPostFilesBody(
        report=json.dumps(report.to_dict()),
        photos=[
            types.File(payload=io.BytesIO(jpeg()), file_name="lamp.jpg", mime_type="image/jpeg")
        ],
    )
    create = _call(generated, "reports.create_report_v1_reports_post")
    filed = create.sync_detailed(client=citizen, body=body)
    assert filed.status_code == 201, filed.content
    accepted = filed.parsed
    assert isinstance(accepted, models.ReportAccepted), filed.content
    assert len(accepted.report.photos) == 1
    reference = accepted.ticket.reference

    # Read the ticket, anonymously.
    read = _call(generated, "tickets.get_ticket_v1_tickets_reference_get")
    ticket = read.sync(reference=reference, client=anonymous)
    assert isinstance(ticket, models.TicketDetail)
    assert ticket.reference == reference
    assert ticket.service_code == "streetlight"

    # The crew's work orders.
    email, password = DEMO_USERS[2][0], DEMO_USERS[2][1]
    token = login.sync(
        client=anonymous,
        body=models.BodyAuthJwtLoginV1AuthJwtLoginPost(username=email, password=password),
    )
    crew = stack.enter_context(
        client_module.AuthenticatedClient(
            base_url=live, token=token.access_token, raise_on_unexpected_status=True
        )
    )
    listing = _call(generated, "work_orders.list_work_orders_v1_workorders_get")
    page = listing.sync(client=crew)
    assert isinstance(page, models.WorkOrderPage)
    assert page.items, "the demo crew has work orders"
    assert all(isinstance(order, models.WorkOrder) for order in page.items)
    one = _call(generated, "work_orders.get_work_order_v1_workorders_reference_get")
    first = one.sync(reference=page.items[0].reference, client=crew)
    assert isinstance(first, models.WorkOrder)
