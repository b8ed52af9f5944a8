"""What linking a citizen's account by OAuth 2 shares across platforms (Mastodon, X): the
PKCE pair, the identity read, and the refusal.

The platform modules do the calls (token endpoint, "who am I", revocation); ``app.linking``
keeps the verifier and the state. The person's token is revoked as soon as their identity is
read: Kerbside never acts as the person.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode


@dataclass(frozen=True)
class Identity:
    """Who signed in: the contact address (the platform's id, in the form social intake
    writes authors) and the handle the person is known by (``user@host``, ``username``)."""

    address: str
    handle: str


class LinkRefused(Exception):
    """The platform did not give the identity (a bad code, a server fault); the reason has
    no token or code in it."""


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier (RFC 7636, 43 characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorize_query(
    *, client_id: str, redirect_uri: str, scope: str, state: str, challenge: str
) -> str:
    """The query of an authorization request: the code flow with PKCE (S256)."""
    return urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
