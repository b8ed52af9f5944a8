"""Hand-written statements on the hot path (``app.db.HotStatement``) and the contact a
channel remembers with its consent in the same statement."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.contacts import service as contacts
from app.contacts.models import ConsentMethod, ContactKind, Purpose
from app.contacts.service import Consent, ContactSpec
from app.db import DATABASE_ERRORS, HotStatement, driver_error

PID = HotStatement(
    "SELECT pg_backend_pid() AS pid, CAST(:n AS int) + CAST(:n AS int) AS twice,"
    " CAST(:word AS text) || '%' AS word, '12:30'::time AS noon, :n::int AS cast"
)


async def _pid(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


def test_placeholders_become_numbered_once_per_name() -> None:
    assert PID.names == ("n", "word")
    assert "$1" in PID.numbered
    assert "$2" in PID.numbered
    assert "$3" not in PID.numbered
    assert "'12:30'::time" in PID.numbered  # a literal and a cast are no placeholders


async def test_a_hot_statement_runs_in_the_sessions_transaction_and_follows_it(
    committed_db: async_sessionmaker[AsyncSession],
) -> None:
    async with committed_db() as session:
        first = await PID.one(session, {"n": 2, "word": "100", "unused": 1})
        assert (first.twice, first.word, first.cast) == (4, "100%", 2)
        assert first.pid == await _pid(session)
        await session.commit()
        # Without a pool every transaction has a connection of its own: the statement must
        # use the new one, not the one it found for the last transaction (closed now).
        second = await PID.one(session, {"n": 3, "word": "x"})
        assert second.pid == await _pid(session)
        assert second.pid != first.pid
        await session.rollback()
        for prepared in (True, False):
            statement = HotStatement("SELECT n FROM generate_series(1, :n) AS n", prepared=prepared)
            assert [r.n for r in await statement.all(session, {"n": 3})] == [1, 2, 3]
            assert (await statement.one(session, {"n": 2})).n == 1
        await session.rollback()


async def test_what_a_hot_statement_writes_is_undone_with_the_transaction(
    committed_db: async_sessionmaker[AsyncSession],
) -> None:
    remember = HotStatement(
        "INSERT INTO contact (kind, address) VALUES ('email', :address) RETURNING id"
    )
    async with committed_db() as session:
        await remember.one(session, {"address": "kept@example.org"})
        async with session.begin_nested() as savepoint:
            await remember.one(session, {"address": "undone@example.org"})
            await savepoint.rollback()
        # A savepoint begun inside another (each emitted when a statement first runs in it).
        async with session.begin_nested():
            await remember.one(session, {"address": "outer@example.org"})
            async with session.begin_nested() as inner:
                await remember.one(session, {"address": "inner@example.org"})
                await inner.rollback()
            await remember.one(session, {"address": "after@example.org"})
        with pytest.raises(DATABASE_ERRORS) as refused:
            async with session.begin_nested():
                await remember.one(session, {"address": "kept@example.org"})
        assert isinstance(driver_error(refused.value), psycopg.errors.UniqueViolation)
        await session.commit()
    async with committed_db() as session:
        addresses = (await session.execute(text("SELECT address FROM contact"))).scalars()
        assert sorted(addresses) == ["after@example.org", "kept@example.org", "outer@example.org"]


async def test_a_contact_and_its_consent_in_one_statement_keep_the_first_consent(
    committed_db: async_sessionmaker[AsyncSession],
) -> None:
    spec = ContactSpec(ContactKind.email, "  Ana@Example.org ", display_name="Ana")
    consent = Consent(Purpose.area_updates, ConsentMethod.follow_form, evidence={"form": "a"})
    async with committed_db() as session, session.begin():
        first = await contacts.remember(session, spec, consent=consent)
        await asyncio.sleep(0.01)
        again = await contacts.remember(
            session, spec, consent=Consent(Purpose.area_updates, ConsentMethod.follow_form)
        )
        assert again.id == first.id
        assert first.address == "ana@example.org"
        assert not first.verified  # an email address waits for its confirmation
        await contacts.withdraw_consent(session, first.id, how="test")
        await contacts.remember(session, spec, consent=consent)
        rows = (
            await session.execute(
                text(
                    "SELECT evidence, withdrawn_at IS NOT NULL AS withdrawn FROM contact_consent"
                    " WHERE contact_id = :id ORDER BY id"
                ),
                {"id": first.id},
            )
        ).all()
    # Given twice while live: the first is kept (its date and evidence); once withdrawn, a
    # new consent is a new row.
    assert [(r.evidence, r.withdrawn) for r in rows] == [
        ({"form": "a"}, True),
        ({"form": "a"}, False),
    ]
