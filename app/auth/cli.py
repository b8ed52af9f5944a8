"""``kerbside users create`` and ``kerbside api-keys create|revoke``: accounts an operator makes.

Registered in ``app.cli.EXTRA_COMMANDS``. The database is found like every other command does
(``KERBSIDE_DATABASE_URL`` or the embedded cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from app.auth import repository as sql
from app.auth.models import Role
from app.core.cli import CommandError, open_database
from app.core.errors import KerbsideError
from app.settings import get_settings, to_sqlalchemy_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

# Heavy modules (the web stack, fastapi-users, geoalchemy2) are imported inside the commands,
# so `kerbside --help` and the other commands do not pay for them.

Command = Callable[["AsyncSession", argparse.Namespace], Awaitable[None]]


def add_user_commands(sub: Any) -> None:
    users = sub.add_parser("users", help="accounts of people (staff, crew, admins)")
    actions = users.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create an account (verified, active)")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True, help="at least 10 characters")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--jurisdiction", metavar="SLUG", help="required for staff and crew")
    create.add_argument("--crew", metavar="NAME", help="the crew (of that jurisdiction)")
    create.add_argument("--full-name")
    create.set_defaults(run=_sync(cmd_users_create))


def add_api_key_commands(sub: Any) -> None:
    keys = sub.add_parser("api-keys", help="API keys for machine clients")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="issue a key and print it (shown only once)")
    create.add_argument("--jurisdiction", metavar="SLUG", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--role", default="citizen", choices=["citizen", "crew", "staff"])
    create.add_argument("--scope", action="append", default=[], dest="scopes")
    create.set_defaults(run=_sync(cmd_api_keys_create))
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=_sync(cmd_api_keys_revoke))


def _sync(command: Command) -> Callable[[argparse.Namespace], None]:
    """Resolve the database, then run ``command(session, args)`` in one committed transaction."""

    def run(args: argparse.Namespace) -> None:
        resolved = open_database(get_settings())
        try:
            asyncio.run(_in_transaction(resolved.url, command, args))
        finally:
            resolved.close()

    return run


async def _in_transaction(url: str, command: Command, args: argparse.Namespace) -> None:
    from sqlalchemy.exc import ProgrammingError
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    engine = create_async_engine(to_sqlalchemy_url(url))
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            await command(session, args)
    except KerbsideError as exc:
        raise CommandError(exc.detail) from exc
    except ProgrammingError as exc:
        raise CommandError(
            f"the database schema is missing or old ({str(exc.orig).splitlines()[0]}); "
            "run `kerbside migrate`"
        ) from exc
    finally:
        await engine.dispose()


async def _jurisdiction_id(session: AsyncSession, slug: str) -> int:
    from app.jurisdictions.models import Jurisdiction

    found = (
        await session.execute(select(Jurisdiction.id).where(Jurisdiction.slug == slug))
    ).scalar_one_or_none()
    if found is None:
        raise CommandError(f"no jurisdiction with slug {slug!r}")
    return int(found)


async def cmd_users_create(session: AsyncSession, args: argparse.Namespace) -> None:
    from app.auth.users import create_user

    role = Role(args.role)
    if role in (Role.staff, Role.crew) and not args.jurisdiction:
        raise CommandError(f"a {role} account needs --jurisdiction SLUG")
    if args.crew and not args.jurisdiction:
        raise CommandError("--crew needs --jurisdiction SLUG")
    jurisdiction_id = (
        await _jurisdiction_id(session, args.jurisdiction) if args.jurisdiction else None
    )
    crew_id = None
    if args.crew:
        crew_id = (
            await session.execute(
                sql.CREW_BY_NAME, {"jurisdiction_id": jurisdiction_id, "name": args.crew}
            )
        ).scalar_one_or_none()
        if crew_id is None:
            raise CommandError(f"jurisdiction {args.jurisdiction!r} has no crew {args.crew!r}")
    user = await create_user(
        session,
        email=args.email,
        password=args.password,
        role=role,
        jurisdiction_id=jurisdiction_id,
        crew_id=crew_id,
        full_name=args.full_name,
        settings=get_settings(),
    )
    print(json.dumps({"id": str(user.id), "email": user.email, "role": user.role}))


async def cmd_api_keys_create(session: AsyncSession, args: argparse.Namespace) -> None:
    from app.auth.api_keys import issue_api_key

    issued = await issue_api_key(
        session,
        jurisdiction_id=await _jurisdiction_id(session, args.jurisdiction),
        name=args.name,
        role=Role(args.role),
        scopes=args.scopes,
    )
    print(
        f"kerbside: API key {issued.api_key.id} ({issued.api_key.name!r}, {issued.api_key.role}); "
        "store it now, it is not shown again:",
        file=sys.stderr,
    )
    print(issued.secret)


async def cmd_api_keys_revoke(session: AsyncSession, args: argparse.Namespace) -> None:
    from app.auth.api_keys import get_api_key, revoke_api_key

    api_key = await revoke_api_key(session, await get_api_key(session, args.id))
    print(f"kerbside: API key {api_key.id} ({api_key.name!r}) is revoked", file=sys.stderr)
