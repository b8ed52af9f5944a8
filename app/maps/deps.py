"""Dependencies of the map routes, lean because these are the busiest read paths.

- ``MapPrincipal``: the same caller as ``OptionalPrincipal`` (and the same checks, by
  calling it), resolved only when the request carries credentials; anonymous requests, most
  of the map traffic, skip building the user manager and JWT strategy.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from app.auth.principal import Principal, principal_of


def _has_credentials(request: Request) -> bool:
    headers = request.headers
    return "authorization" in headers or "x-api-key" in headers or "api_key" in request.query_params


async def map_principal(request: Request) -> Principal | None:
    if not _has_credentials(request):
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return await principal_of(
        request,
        token.strip() if scheme.lower() == "bearer" else None,
        request.headers.get("x-api-key") or request.query_params.get("api_key"),
    )


# For the OpenAPI document: credentials are optional (the `{}`) and change what is shown.
OPTIONAL_AUTH: dict[str, Any] = {
    "security": [{"OAuth2PasswordBearer": []}, {"ApiKeyHeader": []}, {"ApiKeyQuery": []}, {}]
}

MapPrincipal = Annotated[Principal | None, Depends(map_principal)]
