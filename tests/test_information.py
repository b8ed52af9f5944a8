"""Needs more information: staff ask (public line, sent to reporters and supporters with a
link to answer, not to followers), and a reporter answers (by account or by the message's
signed link), which puts the ticket back with staff; nobody else answers."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Role
from app.core.errors import NotFound
from app.main import create_app
from app.settings import Settings
from app.tickets import information
from tests.factories import bearer_headers, make_jurisdiction, make_service, make_user
from tests.test_notify import (
    CENTER,
    STAFF,
    Recorder,
    as_at_commit,
    drain_all,
    file,
    outbox,
    post,
)
from tests.test_workflow import set_status


async def test_staff_ask_reporters_and_supporters_and_a_reporter_answers(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    city = await make_jurisdiction(db, slug="askville")
    await make_service(db, city, "pothole")
    staff = await make_user(db, role=Role.staff, jurisdiction=city)
    rita, sam, fay, sue = [await make_user(db) for _ in range(4)]
    headers = {u: await bearer_headers(settings, u) for u in (staff, rita, sam, fay, sue)}

    filed = await client.post(
        "/v1/reports",
        headers=headers[rita],
        json={"service_code": "pothole", "location": {"lon": CENTER[0], "lat": CENTER[1]}},
    )
    assert filed.status_code == 201, filed.text
    reference = filed.json()["ticket"]["reference"]
    for person, how in ((fay, "follow"), (sue, "support")):
        # A push token is verified at once: these two can be reached.
        added = await client.post(
            "/v1/me/contacts",
            headers=headers[person],
            json={"kind": "fcm", "address": f"token-{how}-0123456789"},
        )
        assert added.status_code == 201, added.text
        joined = await client.post(f"/v1/tickets/{reference}/{how}", headers=headers[person])
        assert joined.status_code == 200, joined.text
    await as_at_commit(db)
    before = await outbox(db)

    ask = f"/v1/tickets/{reference}/information-request"
    answer = f"/v1/tickets/{reference}/information"
    question = {"question": "Which side of the street is it on?"}
    assert (await client.post(ask, json=question)).status_code == 401
    assert (await client.post(ask, headers=headers[rita], json=question)).status_code == 403
    early = await client.post(answer, headers=headers[rita], json={"answer": "North"})
    assert early.status_code == 409

    asked = await client.post(ask, headers=headers[staff], json=question)
    assert asked.status_code == 201, asked.text
    assert asked.json()["information"] == "requested"
    public = (await client.get(f"/v1/tickets/{reference}")).json()
    assert [(e["kind"], e["note"]) for e in public["timeline"]][-1] == (
        "information_requested",
        question["question"],
    )
    await as_at_commit(db)
    queued = [row for row in await outbox(db) if row not in before]
    # The supporter's token hears the question; the follower's does not.
    assert queued == [("token-support-0123456789", "information_requested")]

    for stranger in (sam, fay):  # nobody's report, and a follower only
        refused = await client.post(answer, headers=headers[stranger], json={"answer": "x"})
        assert refused.status_code == 403
    assert (await client.post(answer, json={"answer": "x"})).status_code == 403
    wrong = await client.post(
        answer + "?notification=1&sig=" + "0" * 32, json={"answer": "The north side"}
    )
    assert wrong.status_code == 404

    given = await client.post(
        answer, headers=headers[rita], json={"answer": "The north side, by house 12"}
    )
    assert given.status_code == 204, given.text
    inside = (await client.get(f"/v1/tickets/{reference}/internal", headers=headers[staff])).json()
    assert inside["information"] == "answered"
    last = inside["timeline"][-1]
    assert (last["kind"], last["note"], last["public"]) == (
        "information_given",
        "The north side, by house 12",
        False,
    )
    public = (await client.get(f"/v1/tickets/{reference}")).json()
    assert "house 12" not in str(public)  # the answer stays with staff

    # The supporter may answer too; asking again puts the ticket back with the reporters.
    assert (
        await client.post(answer, headers=headers[sue], json={"answer": "Yes, north"})
    ).status_code == 204
    again = await client.post(ask, headers=headers[staff], json={"question": "Still there?"})
    assert again.json()["information"] == "requested"


@pytest.fixture
async def town(committed_db: async_sessionmaker[AsyncSession]) -> None:
    async with committed_db() as session, session.begin():
        city = await make_jurisdiction(session, slug="asktown")
        await make_service(session, city, "pothole", names={"en": "Pothole", "sv": "Potthål"})


@pytest.mark.usefixtures("town")
async def test_the_question_reaches_the_reporter_in_their_language_with_a_link_that_answers(
    committed_db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    filed = await file(committed_db, post(*CENTER, handle="saga", locale="sv"))
    async with committed_db() as session, session.begin():
        await information.ask(session, filed.ticket_id, "Är hålet djupt?", actor=STAFF)
    recorder = Recorder()
    await drain_all(settings, recorder, rounds=2)
    message = next(m for m in recorder.sent if m.event == "information_requested")
    assert message.subject.startswith("Test City ")
    assert message.subject.endswith(f" har en fråga om {filed.reference}")
    lines = message.body.splitlines()
    assert lines[1] == "Är hålet djupt?"
    link = message.data["answer_url"]
    assert lines[2] == f"Svara här: {link}"
    assert message.data["question"] == "Är hålet djupt?"
    url = urlsplit(str(link))
    assert url.path == f"/v1/tickets/{filed.reference}/information"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert int(query["notification"]) == message.id

    async with committed_db() as session, session.begin():
        with pytest.raises(NotFound):  # another message's signature does not answer
            await information.answer(
                session,
                filed.ticket_id,
                "x",
                actor=None,
                settings=settings,
                notification_id=message.id,
                sig=information.answer_signature(settings, message.id + 1),
            )
    # The link opens a page with the question and a box; its form answers.
    app = create_app(settings)
    app.state.sessionmaker = committed_db
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get(url.path + "?" + url.query)
        assert page.status_code == 200, page.text
        assert "Är hålet djupt?" in page.text
        tampered = await client.get(url.path + f"?notification={message.id}&sig=" + "0" * 32)
        assert tampered.status_code == 404
        action = page.text.split("action='")[1].split("'")[0].replace("&amp;", "&")
        sent = await client.post(action, data={"answer": "Ja, ungefär 10 cm"})
        assert sent.status_code == 200, sent.text
        assert "Thank you" in sent.text
    async with committed_db() as session:
        row = (
            await session.execute(
                text(
                    "SELECT e.note, e.public, e.data, t.information_answered_at IS NOT NULL AS back"
                    " FROM ticket_event e JOIN ticket t ON t.id = e.ticket_id"
                    " WHERE e.kind = 'information_given'"
                )
            )
        ).one()
    assert (row.note, row.public, row.data["via"], row.back) == (
        "Ja, ungefär 10 cm",
        False,
        "link",
        True,
    )


@pytest.mark.parametrize(
    "raw",
    [
        # What schemathesis sent: non-ASCII letters and an escaped surrogate pair (one
        # astral character), beside keys the schema does not know.
        '{"question": "\\u00a2\\u00ceP\\u00b4\\uda4b\\udc36", "x": {"y": []}}',
        # A lone surrogate: valid JSON, but no UTF-8 exists for it.
        '{"question": "Where \\udc36 exactly?"}',
    ],
)
async def test_a_question_of_any_unicode_gets_an_answer_not_a_500(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, raw: str
) -> None:
    city = await make_jurisdiction(db, slug="unicodeville")
    await make_service(db, city, "pothole")
    staff = await make_user(db, role=Role.staff, jurisdiction=city)
    rita = await make_user(db)
    filed = await client.post(
        "/v1/reports",
        headers=await bearer_headers(settings, rita),
        json={"service_code": "pothole", "location": {"lon": CENTER[0], "lat": CENTER[1]}},
    )
    assert filed.status_code == 201, filed.text
    reference = filed.json()["ticket"]["reference"]
    asked = await client.post(
        f"/v1/tickets/{reference}/information-request",
        headers={**await bearer_headers(settings, staff), "content-type": "application/json"},
        content=raw.encode(),
    )
    if "\\uda4b" in raw:
        assert asked.status_code == 201, asked.text
        assert asked.json()["timeline"][-1]["note"] == "\u00a2\u00ceP\u00b4\U000a2c36"
    else:
        assert asked.status_code == 422, asked.text
        assert asked.headers["content-type"] == "application/problem+json"


async def test_asking_on_a_closed_ticket_is_a_409_naming_its_status(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    # The fuzzer's find: the 409's extra member was named `status`, which a problem document
    # reserves for the HTTP status, and the clash guard turned the answer into a 500.
    city = await make_jurisdiction(db, slug="closedville")
    await make_service(db, city, "pothole")
    staff = await make_user(db, role=Role.staff, jurisdiction=city)
    rita = await make_user(db)
    filed = await client.post(
        "/v1/reports",
        headers=await bearer_headers(settings, rita),
        json={"service_code": "pothole", "location": {"lon": CENTER[0], "lat": CENTER[1]}},
    )
    reference = filed.json()["ticket"]["reference"]
    await set_status(db, reference, "closed")
    asked = await client.post(
        f"/v1/tickets/{reference}/information-request",
        headers=await bearer_headers(settings, staff),
        json={"question": "Is it still there?"},
    )
    assert asked.status_code == 409, asked.text
    assert asked.headers["content-type"] == "application/problem+json"
    assert asked.json()["status"] == 409
    assert asked.json()["ticket_status"] == "closed"
