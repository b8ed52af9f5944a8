"""One error hierarchy, rendered as RFC 9457 problem+json.

Services raise these; ``install_error_handlers`` maps them (and FastAPI's own validation,
404 and 405 errors) to ``application/problem+json`` with a stable ``type`` URI, a human
``detail`` and, for bad input, per-field ``errors``. Stack traces never reach a client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import Enum
from http import HTTPStatus
from typing import Any

import orjson
import psycopg
import psycopg_pool
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.routing import allowed_methods

log = logging.getLogger("kerbside.errors")

PROBLEM_BASE = "https://kerbside.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class ProblemResponse(Response):
    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# The members every problem has; extra members may not replace them (a ticket's status
# in ``status`` would tell a client the wrong HTTP status).
_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})


def _extra_members(extra: dict[str, Any]) -> dict[str, Any]:
    clash = _MEMBERS & extra.keys()
    if clash:
        raise TypeError(f"a problem's extra members may not be named {sorted(clash)}")
    return extra


class KerbsideError(Exception):
    """Base of every error a client may see. Subclasses set status and type slug."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers = headers
        self.extra = _extra_members(extra)

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class InvalidInput(KerbsideError):
    status, slug, title = 422, "invalid-input", "Invalid input"


class BadRequest(KerbsideError):
    status, slug, title = 400, "bad-request", "Bad request"


class NotAuthenticated(KerbsideError):
    status, slug, title = 401, "not-authenticated", "Not authenticated"

    def __init__(self, detail: str = "Sign in or send an API key", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class Forbidden(KerbsideError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(KerbsideError):
    status, slug, title = 404, "not-found", "Not found"


class NotAcceptable(KerbsideError):
    status, slug, title = 406, "not-acceptable", "Not acceptable"


class Conflict(KerbsideError):
    status, slug, title = 409, "conflict", "Conflict"


class PreconditionFailed(KerbsideError):
    status, slug, title = 412, "precondition-failed", "Precondition failed"


class PreconditionRequired(KerbsideError):
    status, slug, title = 428, "precondition-required", "Precondition required"


class Gone(KerbsideError):
    status, slug, title = 410, "gone", "Gone"


class PayloadTooLarge(KerbsideError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(KerbsideError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class TooManyRequests(KerbsideError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(KerbsideError):
    status, slug, title = 503, "unavailable", "Service unavailable"


_HTTP_SLUGS = {
    400: "bad-request",
    401: "not-authenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    410: "gone",
    412: "precondition-failed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "invalid-input",
    428: "precondition-required",
    429: "rate-limited",
    503: "unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or _HTTP_SLUGS.get(status, "error")),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(_extra_members(extra))
    return ProblemResponse(body, status_code=status, headers=headers)


def field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic's error list as ``[{field, message, type}]`` with a dotted field path.

    The leading ``body``/``query``/``path``/``header`` location is kept as ``in``.
    """
    out: list[dict[str, Any]] = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        where = loc[0] if loc and loc[0] in {"body", "query", "path", "header", "cookie"} else None
        path = loc[1:] if where else loc
        item: dict[str, Any] = {
            "field": ".".join(path) if path else (where or ""),
            "message": str(err.get("msg", "invalid")).removeprefix("Value error, "),
            "type": err.get("type", "invalid"),
        }
        if where:
            item["in"] = where
        out.append(item)
    return out


# Error codes of fastapi-users (its routes raise HTTPException with these as ``detail``):
# code -> (status to answer instead, or None to keep it; the sentence a person reads).
# Weak passwords are 422 like every other invalid input; the rest keep fastapi-users' status.
_KNOWN_CODES: dict[str, tuple[int | None, str]] = {
    "LOGIN_BAD_CREDENTIALS": (None, "Wrong email or password"),
    "LOGIN_USER_NOT_VERIFIED": (None, "Confirm your email address before signing in"),
    "REGISTER_USER_ALREADY_EXISTS": (None, "An account with this email address already exists"),
    "REGISTER_INVALID_PASSWORD": (422, "The password is not acceptable"),
    "RESET_PASSWORD_BAD_TOKEN": (None, "The reset link is invalid or has expired"),
    "RESET_PASSWORD_INVALID_PASSWORD": (422, "The password is not acceptable"),
    "VERIFY_USER_BAD_TOKEN": (None, "The verification link is invalid or has expired"),
    "VERIFY_USER_ALREADY_VERIFIED": (None, "This email address is already verified"),
    "UPDATE_USER_EMAIL_ALREADY_EXISTS": (None, "An account with this email address already exists"),
    "UPDATE_USER_INVALID_PASSWORD": (422, "The password is not acceptable"),
}


def _code_and_reason(detail: Any) -> tuple[str | None, str | None]:
    """A machine code and optional reason from an HTTPException detail, if it carries one."""
    code, reason = (
        (detail.get("code"), detail.get("reason")) if isinstance(detail, dict) else (detail, None)
    )
    if isinstance(code, Enum):  # fastapi-users' ErrorCode is a str Enum
        code = code.value
    if not (isinstance(code, str) and "_" in code and code.replace("_", "").isalpha()):
        return None, None
    return code, (str(reason) if reason else None)


# FastAPI's detail when a body cannot be decoded (``fastapi.routing``).
_UNPARSEABLE_BODY = "There was an error parsing the body"

# Seconds a client is asked to wait when the database cannot be reached.
RETRY_AFTER_SECONDS = 5


def database_problem(exc: BaseException, instance: str | None) -> ProblemResponse | None:
    """The answer to a database error that is not a bug of ours, or None.

    A database that cannot be reached (refused, cut, pool exhausted, shutting down) is a 503
    with ``Retry-After``: clients and load balancers retry, and nothing was written. A number
    beyond its column's range (an id past 2**31 - 1 in an ``integer`` column) or a NUL
    character in text are the client's input: 422. The driver's message is never shown.
    """
    cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        cause = psycopg.OperationalError()
    if isinstance(cause, psycopg.errors.NumericValueOutOfRange):
        return problem(422, "A number in the request is out of range", instance=instance)
    if isinstance(cause, psycopg.DataError) and "NUL" in str(cause):
        return problem(422, "Text may not contain NUL characters", instance=instance)
    unreachable = (
        isinstance(exc, sqlalchemy.exc.TimeoutError | psycopg_pool.PoolTimeout)
        or isinstance(
            cause,
            psycopg.errors.AdminShutdown
            | psycopg.errors.CannotConnectNow
            | psycopg.errors.ConnectionException,
        )
        or (
            isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError)
            and not isinstance(cause, psycopg.errors.QueryCanceled)
            and getattr(cause, "sqlstate", None) is None
        )
    )
    if unreachable:
        return problem(
            503,
            "The database is unreachable; try again shortly",
            slug="unavailable",
            instance=instance,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KerbsideError)
    async def _kerbside(request: Request, exc: KerbsideError) -> Response:
        return ProblemResponse(
            exc.to_problem(instance=request.url.path), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = field_errors(exc.errors())
        fields = ", ".join(sorted({e["field"] for e in errors if e["field"]})) or "request"
        return problem(
            422,
            f"The request is not valid: see errors ({fields})",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        status = exc.status_code
        headers = dict(exc.headers) if exc.headers else None
        extra: dict[str, Any] = {}
        if status == 400 and exc.detail == _UNPARSEABLE_BODY:
            # FastAPI's answer to a body it cannot decode (not UTF-8, say): invalid input,
            # the same 422 as a body that is not JSON at all (and as ``JsonBody`` answers).
            return problem(
                422,
                "The request body could not be read as JSON",
                instance=request.url.path,
                errors=[{"field": "body", "message": "not JSON", "type": "json_invalid"}],
            )
        # fastapi-users raises HTTPException with detail = CODE or {"code": CODE, "reason": ...}.
        code, reason = _code_and_reason(exc.detail)
        if code is not None:
            extra["code"] = code
            known = _KNOWN_CODES.get(code)
            if known is not None:
                status = known[0] or status
                detail = f"{known[1]}: {reason}" if reason else known[1]
            else:
                detail = reason or code
        elif isinstance(exc.detail, str) and exc.detail != HTTPStatus(status).phrase:
            detail = exc.detail
        elif status == 401:
            detail = "Sign in or send an API key"
            headers = headers or {"WWW-Authenticate": "Bearer"}
        elif status == 403:
            detail = "Your account may not do this"
        elif status == 404 and "endpoint" in request.scope:
            detail = "Nothing with this id exists"  # a route matched; its object did not
        elif status == 404:
            detail = f"No route matches {request.method} {request.url.path}"
        elif status == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        else:
            detail = HTTPStatus(status).phrase
        if status == 405:
            # Every method of the resource, not only those of the route Starlette tried.
            methods = allowed_methods(request.app, request.url.path)
            if methods:
                headers = {**(headers or {}), "Allow": ", ".join(methods)}
        return problem(status, detail, instance=request.url.path, headers=headers, **extra)

    async def _database(request: Request, exc: Exception) -> Response:
        answer = database_problem(exc, request.url.path)
        if answer is None:
            return await _unexpected(request, exc)
        # One line, no driver text (it may quote the statement and its values).
        level = logging.WARNING if answer.status_code == 503 else logging.INFO
        log.log(level, "database error answered %s: %s", answer.status_code, type(exc).__name__)
        return answer

    # Handled here rather than in the catch-all below, which Starlette re-raises to the
    # server after answering (a traceback per request while the database is down).
    for database_error in (
        sqlalchemy.exc.DBAPIError,
        sqlalchemy.exc.TimeoutError,
        psycopg.Error,
        psycopg_pool.PoolTimeout,
    ):
        app.add_exception_handler(database_error, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", None)
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem(
            500,
            "Something went wrong on our side; it has been logged"
            + (f" (request id {request_id})" if request_id else ""),
            slug="internal-error",
            instance=request.url.path,
            request_id=request_id,
        )
