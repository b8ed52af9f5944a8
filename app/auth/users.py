"""People who sign in: fastapi-users wired to our ``User`` table, JWT bearer tokens and mail.

The mobile app signs in with ``POST /v1/auth/jwt/login`` (OAuth2 password form) and sends the
token it gets as ``Authorization: Bearer <token>``. Tokens are stateless JWTs signed with
``KERBSIDE_SECRET_KEY``; logging out is the client forgetting its token.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Request
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, exceptions, models, schemas
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase
from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import repository as sql
from app.auth.models import Role, User
from app.auth.schemas import UserUpdate
from app.core.errors import Conflict, InvalidInput
from app.db import SessionDep
from app.mail import Mail, send_mail
from app.settings import Settings

PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 256  # hashing is deliberately slow; bound the work a request can ask for
# The most used passwords of 10 characters or more (from public breach lists): long enough
# for the length rule, and the first ones any attacker tries.
COMMON_PASSWORDS = frozenset(
    {
        "1234567890",
        "0987654321",
        "12345678910",
        "123456789a",
        "a123456789",
        "qwertyuiop",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "password123",
        "password1234",
        "password12",
        "passw0rd123",
        "iloveyou123",
        "qwerty123456",
        "qwertyuiop123",
        "abcdefghij",
        "abc1234567",
        "letmein123",
        "welcome123",
        "administrator",
        "changeme123",
        "football123",
        "baseball123",
        "sunshine123",
        "princess123",
        "starwars123",
        "trustno1234",
        "zaq12wsxcde",
        "asdfghjkl1",
        "asdfghjkl;",
        "1234qwerasdf",
        "kerbside123",
    }
)
RESET_TOKEN_LIFETIME_SECONDS = 3600
VERIFY_TOKEN_LIFETIME_SECONDS = 3 * 24 * 3600


class UserDatabase(SQLAlchemyUserDatabase[User, uuid.UUID]):
    """fastapi-users' adapter, but it flushes: the request's session commits once, at the end."""

    async def create(self, create_dict: dict[str, Any]) -> User:
        user = User(**create_dict)
        self.session.add(user)
        await self.session.flush()
        await self.session.refresh(user)
        return user

    async def update(self, user: User, update_dict: dict[str, Any]) -> User:
        for key, value in update_dict.items():
            setattr(user, key, value)
        await self.session.flush()
        await self.session.refresh(user)
        return user

    async def delete(self, user: User) -> None:
        await self.session.delete(user)
        await self.session.flush()


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    """Account rules: password policy, verification and reset mail, staff links."""

    reset_password_token_lifetime_seconds = RESET_TOKEN_LIFETIME_SECONDS
    verification_token_lifetime_seconds = VERIFY_TOKEN_LIFETIME_SECONDS

    def __init__(
        self,
        user_db: UserDatabase,
        settings: Settings,
        background: BackgroundTasks | None = None,
    ) -> None:
        super().__init__(user_db)
        self.settings = settings
        self.background = background
        secret = settings.secret_key.get_secret_value()
        self.reset_password_token_secret = secret
        self.verification_token_secret = secret

    @property
    def session(self) -> AsyncSession:
        db = self.user_db
        assert isinstance(db, UserDatabase)
        return db.session

    async def validate_password(self, password: str, user: schemas.UC | models.UP) -> None:
        """At least 10 characters, at most 256, not one or a few characters repeated, not a
        run (1234567890), not a common password, and not containing the email's local part."""
        if len(password) < PASSWORD_MIN_LENGTH:
            raise exceptions.InvalidPasswordException(
                f"it must be at least {PASSWORD_MIN_LENGTH} characters long"
            )
        if len(password) > PASSWORD_MAX_LENGTH:
            raise exceptions.InvalidPasswordException(
                f"it must be at most {PASSWORD_MAX_LENGTH} characters long"
            )
        folded = password.casefold()
        if len(set(folded)) < 4:
            raise exceptions.InvalidPasswordException(
                "it must use more than a few different characters"
            )
        steps = {ord(b) - ord(a) for a, b in itertools.pairwise(folded)}
        if steps in ({1}, {-1}):
            raise exceptions.InvalidPasswordException("it must not be a run such as 1234567890")
        if folded in COMMON_PASSWORDS:
            raise exceptions.InvalidPasswordException("it is one of the most common passwords")
        local_part = str(getattr(user, "email", "")).partition("@")[0].casefold()
        if len(local_part) >= 3 and local_part in password.casefold():
            raise exceptions.InvalidPasswordException("it must not contain your email address")

    async def update(
        self,
        user_update: schemas.UU,
        user: User,
        safe: bool = False,
        request: Request | None = None,
    ) -> User:
        if not safe and isinstance(user_update, UserUpdate):
            changes = user_update.create_update_dict_superuser()
            await self.check_staff_links(changes, user)
            if changes.get("role", user.role) != Role.admin or changes.get("is_active") is False:
                await self.keep_an_admin(user)
        return await super().update(user_update, user, safe=safe, request=request)

    async def on_before_delete(self, user: User, request: Request | None = None) -> None:
        await self.keep_an_admin(user)

    async def keep_an_admin(self, user: User) -> None:
        """Refuse to delete, demote or deactivate the last active admin: nobody could then
        manage accounts (only ``kerbside users create`` on the server would help)."""
        if user.role != Role.admin or not user.is_active:
            return
        other = await self.session.execute(sql.OTHER_ADMIN, {"id": user.id})
        if other.first() is None:
            raise Conflict(
                "This is the last active admin account; make another account admin first"
            )

    async def check_staff_links(self, changes: dict[str, Any], user: User) -> None:
        """Staff and crew act for one jurisdiction; a crew must belong to that jurisdiction."""
        role = changes.get("role", user.role)
        jurisdiction_id = changes.get("jurisdiction_id", user.jurisdiction_id)
        crew_id = changes.get("crew_id", user.crew_id)
        if role in (Role.staff, Role.crew) and jurisdiction_id is None:
            raise InvalidInput(f"A {role} account needs a jurisdiction_id")
        if "jurisdiction_id" in changes and jurisdiction_id is not None:
            found = await self.session.execute(sql.JURISDICTION_EXISTS, {"id": jurisdiction_id})
            if found.first() is None:  # was a foreign-key violation, answered 500
                raise InvalidInput(
                    f"No jurisdiction {jurisdiction_id}",
                    errors=[
                        {"field": "jurisdiction_id", "message": "unknown", "type": "value_error"}
                    ],
                )
        if crew_id is not None:
            crew_jurisdiction = (
                await self.session.execute(sql.CREW_JURISDICTION, {"id": crew_id})
            ).scalar_one_or_none()
            if crew_jurisdiction is None or crew_jurisdiction != jurisdiction_id:
                raise InvalidInput(
                    f"Crew {crew_id} is not a crew of jurisdiction {jurisdiction_id}"
                )

    async def on_after_register(self, user: User, request: Request | None = None) -> None:
        await self.request_verify(user, request)

    async def on_after_request_verify(
        self, user: User, token: str, request: Request | None = None
    ) -> None:
        link = f"{self.settings.public_base_url}/verify?token={token}"
        await self._send(
            Mail(
                to=user.email,
                subject="Confirm your email address for Kerbside",
                body=(
                    "Hello,\n\n"
                    "Please confirm your email address by opening this link:\n\n"
                    f"{link}\n\n"
                    f"The link works for {VERIFY_TOKEN_LIFETIME_SECONDS // 86400} days. "
                    "Your app may instead ask for this code:\n\n"
                    f"{token}\n\n"
                    "If you did not sign up for Kerbside, ignore this message.\n"
                ),
            )
        )

    async def on_after_forgot_password(
        self, user: User, token: str, request: Request | None = None
    ) -> None:
        link = f"{self.settings.public_base_url}/reset-password?token={token}"
        await self._send(
            Mail(
                to=user.email,
                subject="Reset your Kerbside password",
                body=(
                    "Hello,\n\n"
                    "Someone (we hope you) asked to reset the password of your Kerbside "
                    "account. Choose a new password here:\n\n"
                    f"{link}\n\n"
                    f"The link works for {RESET_TOKEN_LIFETIME_SECONDS // 60} minutes, once. "
                    "Your app may instead ask for this code:\n\n"
                    f"{token}\n\n"
                    "If you did not ask for this, ignore this message: your password stays "
                    "as it is.\n"
                ),
            )
        )

    async def _send(self, mail: Mail) -> None:
        # After the response: the account row is committed by then, and a slow mail server
        # neither delays the client nor reveals whether the address has an account.
        if self.background is not None:
            self.background.add_task(send_mail, self.settings, mail)
        else:
            await send_mail(self.settings, mail)


_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    role: Role,
    jurisdiction_id: int | None = None,
    crew_id: int | None = None,
    full_name: str | None = None,
    settings: Settings | None = None,
) -> User:
    """An active, verified account made by an operator (the CLI), under the password policy.

    Raises ``InvalidInput`` for a weak password, a taken email or a wrong staff link.
    """
    try:
        # The check sign-up and every answer that shows the account (UserRead) apply: an
        # address they refuse (e.g. a reserved domain such as .test) would be stored and
        # then make /v1/users/me fail for its owner.
        email = _EMAIL.validate_python(email)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("value is not a valid email address: ")
        raise InvalidInput(f"{email} is not an address we can accept: {reason}") from None
    manager = UserManager(UserDatabase(session, User), settings or Settings())
    probe = User(email=email)
    try:
        await manager.validate_password(password, probe)
    except exceptions.InvalidPasswordException as exc:
        raise InvalidInput(f"The password is not acceptable: {exc.reason}") from exc
    if await manager.user_db.get_by_email(email) is not None:
        raise InvalidInput(f"An account with the email {email} already exists")
    changes = {"role": role, "jurisdiction_id": jurisdiction_id, "crew_id": crew_id}
    await manager.check_staff_links(changes, probe)
    return await manager.user_db.create(
        {
            "email": email,
            "hashed_password": manager.password_helper.hash(password),
            "full_name": full_name,
            "role": role.value,
            "jurisdiction_id": jurisdiction_id,
            "crew_id": crew_id,
            "is_active": True,
            "is_verified": True,
            "is_superuser": role == Role.admin,
        }
    )


# Dependencies are `async def` even when they do not await: FastAPI runs plain `def`
# dependencies in a thread pool, a hop per request on every route that identifies its caller.
async def request_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_user_db(session: SessionDep) -> UserDatabase:
    # A plain function, not a generator: the session dependency is function-scoped.
    return UserDatabase(session, User)


async def get_user_manager(
    user_db: Annotated[UserDatabase, Depends(get_user_db)],
    settings: Annotated[Settings, Depends(request_settings)],
    background: BackgroundTasks,
) -> UserManager:
    return UserManager(user_db, settings, background)


async def get_jwt_strategy(
    settings: Annotated[Settings, Depends(request_settings)],
) -> JWTStrategy[User, uuid.UUID]:
    return JWTStrategy(
        secret=settings.secret_key.get_secret_value(),
        lifetime_seconds=settings.jwt_lifetime_seconds,
    )


bearer_transport = BearerTransport(tokenUrl="/v1/auth/jwt/login")
jwt_backend: AuthenticationBackend[User, uuid.UUID] = AuthenticationBackend(
    name="jwt", transport=bearer_transport, get_strategy=get_jwt_strategy
)
fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [jwt_backend])
