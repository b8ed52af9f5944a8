"""The demo's own X and Mastodon: a few mentions of the demo city's accounts, in the
platforms' real payload shapes, served by the API itself outside production (404 in
production), so that README command 1 shows posts turning into tickets with nothing else to
run. The demo city file points its accounts here (``base_url``); the worker's ``poll_social``
reads them like the real APIs. Facebook and WhatsApp push instead of being polled: the seed
replays their sample webhook deliveries (``replay_meta``), signed and checked as a delivery
to ``/v1/social/{facebook,whatsapp}/webhook`` is, and the worker processes them.

Answers to the demo's accounts go to the local sink (``GET /v1/demo/outbox``), never back to
these routes (``app.channels.threads``).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.channels import facebook, meta_webhook, whatsapp
from app.core.errors import NotAuthenticated, NotFound
from app.core.jobs import PROCESS_SOCIAL_POSTS, defer
from app.social import config as social_config
from app.social.service import store

router = APIRouter(tags=["demo"], include_in_schema=False)

DEMO_ACCOUNT_ID = "1000000000000000001"
_STARTED = datetime.now(UTC).replace(microsecond=0)

# (id, author id, username, text, extras): a located report, a street in the text, one
# without a place (we ask where), noise, a reply to the first, a repost.
_POSTS: tuple[tuple[str, str, str, str, dict[str, Any]], ...] = (
    (
        "2000000000000000001",
        "3000000000000000001",
        "wheels_jan",
        "@KerbsideDemo #pothole huge pothole outside the bakery, bikes swerving into traffic",
        {"geo": {"coordinates": {"type": "Point", "coordinates": [-2.5879, 51.4545]}}},
    ),
    (
        "2000000000000000002",
        "3000000000000000002",
        "nightowl",
        "@KerbsideDemo #streetlight lamp post out again on Harbour Road, third night",
        {},
    ),
    (
        "2000000000000000003",
        "3000000000000000003",
        "mara_dw",
        "@KerbsideDemo #flytipping someone dumped a mattress and bin bags again",
        {},
    ),
    (
        "2000000000000000004",
        "3000000000000000004",
        "happy_parent",
        "@KerbsideDemo thank you for the new swings in the park!",
        {},
    ),
    (
        "2000000000000000005",
        "3000000000000000005",
        "cyclist_kim",
        "@KerbsideDemo still there this morning, nearly came off my bike",
        {
            "conversation_id": "2000000000000000001",
            "referenced_tweets": [{"type": "replied_to", "id": "2000000000000000001"}],
        },
    ),
    (
        "2000000000000000006",
        "3000000000000000006",
        "echo_chamber",
        "RT @wheels_jan: @KerbsideDemo #pothole huge pothole outside the bakery",
        {"referenced_tweets": [{"type": "retweeted", "id": "2000000000000000001"}]},
    ),
)


def _post(n: int, post_id: str, author: str, text: str, extra: dict[str, Any]) -> dict[str, Any]:
    created = _STARTED - timedelta(minutes=10 * (len(_POSTS) - n))
    return {
        "id": post_id,
        "edit_history_tweet_ids": [post_id],
        "conversation_id": post_id,
        "author_id": author,
        "created_at": created.isoformat().replace("+00:00", ".000Z"),
        "lang": "en",
        "text": text,
        **extra,
    }


@router.get("/demo/x/2/users/{user_id}/mentions")
async def demo_mentions(
    request: Request,
    user_id: Annotated[str, Path(max_length=40)],
    authorization: Annotated[str | None, Header()] = None,
    since_id: Annotated[str | None, Query(max_length=40, pattern=r"^\d+$")] = None,
) -> dict[str, Any]:
    """X's mentions timeline of the demo account, newest first, after ``since_id``."""
    if request.app.state.settings.env == "production" or user_id != DEMO_ACCOUNT_ID:
        raise NotFound("There is no demo X here")
    if not authorization or not authorization.startswith("Bearer "):
        raise NotAuthenticated("Send a bearer token (any, in the demo)")
    since = int(since_id) if since_id else 0
    posts = [
        (_post(n, post_id, author, text, extra), name)
        for n, (post_id, author, name, text, extra) in enumerate(_POSTS)
        if int(post_id) > since
    ]
    posts.reverse()
    if not posts:
        return {"meta": {"result_count": 0}}
    return {
        "data": [p for p, _ in posts],
        "includes": {
            "users": [{"id": p["author_id"], "name": name, "username": name} for p, name in posts]
        },
        "meta": {
            "result_count": len(posts),
            "newest_id": posts[0][0]["id"],
            "oldest_id": posts[-1][0]["id"],
        },
    }


# -- the demo's own Mastodon -------------------------------------------------------------------

DEMO_MASTODON_HOST = "social.demo.example"
# (notification id, acct, HTML content): a street from the city's list, one without a place.
_TOOTS: tuple[tuple[int, str, str], ...] = (
    (
        110000000000000001,
        "fietser@social.demo.example",
        '<p><span class="h-card"><a href="https://social.demo.example/@KerbsideDemo" '
        'class="u-url mention">@<span>KerbsideDemo</span></a></span> #pothole deep pothole on '
        "Market Street, right in the cycle lane</p>",
    ),
    (
        110000000000000003,
        "buurman@social.demo.example",
        '<p><span class="h-card"><a href="https://social.demo.example/@KerbsideDemo" '
        'class="u-url mention">@<span>KerbsideDemo</span></a></span> #streetlight the lamp '
        "by our door has been flickering for a week</p>",
    ),
)


def _toot(n: int, note_id: int, acct: str, content: str) -> dict[str, Any]:
    created = (_STARTED - timedelta(minutes=5 * (len(_TOOTS) - n))).isoformat()
    account = {
        "id": str(900 + n),
        "username": acct.split("@")[0],
        "acct": acct,
        "display_name": acct.split("@")[0],
        "url": f"https://{DEMO_MASTODON_HOST}/@{acct.split('@')[0]}",
    }
    status = {
        "id": str(note_id + 1),
        "created_at": created.replace("+00:00", ".000Z"),
        "in_reply_to_id": None,
        "visibility": "public",
        "language": "en",
        "content": content,
        "spoiler_text": "",
        "reblog": None,
        "account": account,
        "media_attachments": [],
        "mentions": [{"id": "1", "username": "KerbsideDemo", "acct": "KerbsideDemo"}],
    }
    return {
        "id": str(note_id),
        "type": "mention",
        "created_at": status["created_at"],
        "account": account,
        "status": status,
    }


@router.get("/demo/mastodon/api/v1/notifications")
async def demo_notifications(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    min_id: Annotated[str | None, Query(max_length=40, pattern=r"^\d+$")] = None,
) -> list[dict[str, Any]]:
    """Mastodon's mention notifications of the demo account, newest first, after ``min_id``."""
    if request.app.state.settings.env == "production":
        raise NotFound("There is no demo Mastodon here")
    if not authorization or not authorization.startswith("Bearer "):
        raise NotAuthenticated("Send a bearer token (any, in the demo)")
    after = int(min_id) if min_id else 0
    notes = [_toot(n, i, acct, html) for n, (i, acct, html) in enumerate(_TOOTS) if i > after]
    return notes[::-1]


# -- Facebook and WhatsApp: the sample deliveries, replayed at seed time -----------------------

DEMO_PAGE_ID = "100000000000001"
DEMO_PHONE_NUMBER_ID = "100000000000002"


def _meta_samples() -> list[tuple[str, bytes]]:
    """A Page comment with an address, a Messenger chat without a place, and a WhatsApp
    message that shares a location: as Meta sends them (compact JSON bytes)."""
    at = int(_STARTED.timestamp())
    comment = {
        "object": "page",
        "entry": [
            {
                "id": DEMO_PAGE_ID,
                "time": at,
                "changes": [
                    {
                        "field": "feed",
                        "value": {
                            "from": {"id": "4000000000000001", "name": "Demo Resident"},
                            "post": {"id": f"{DEMO_PAGE_ID}_1", "is_published": True},
                            "message": "#pothole two deep holes on Station Road near the bus stop",
                            "post_id": f"{DEMO_PAGE_ID}_1",
                            "comment_id": f"{DEMO_PAGE_ID}_1_2",
                            "parent_id": f"{DEMO_PAGE_ID}_1",
                            "created_time": at - 240,
                            "item": "comment",
                            "verb": "add",
                        },
                    }
                ],
            }
        ],
    }
    chat = {
        "object": "page",
        "entry": [
            {
                "id": DEMO_PAGE_ID,
                "time": at,
                "messaging": [
                    {
                        "sender": {"id": "4000000000000002"},
                        "recipient": {"id": DEMO_PAGE_ID},
                        "timestamp": (at - 180) * 1000,
                        "message": {
                            "mid": "m_demo_0001",
                            "text": "#flytipping someone left a fridge on the pavement",
                        },
                    }
                ],
            }
        ],
    }
    pin = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "100000000000003",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "441170000000",
                                "phone_number_id": DEMO_PHONE_NUMBER_ID,
                            },
                            "contacts": [{"profile": {"name": "Demo"}, "wa_id": "447700900001"}],
                            "messages": [
                                {
                                    "from": "447700900001",
                                    "id": "wamid.DEMO0001",
                                    "timestamp": str(at - 120),
                                    "type": "location",
                                    "location": {"latitude": 51.4541, "longitude": -2.5921},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return [
        (platform, json.dumps(body, separators=(",", ":")).encode())
        for platform, body in (("facebook", comment), ("facebook", chat), ("whatsapp", pin))
    ]


async def replay_meta(session: AsyncSession) -> int:
    """Keep the sample Facebook and WhatsApp deliveries as their webhook would (signed with the
    demo account's app secret, checked, parsed, kept once) and defer their processing; says
    how many posts were new. Replaying twice keeps nothing twice."""
    known = await social_config.accounts(session)
    kept: list[int] = []
    for platform, body in _meta_samples():
        secrets = [
            of.account.secret("app_secret")
            for of in known
            if of.account.platform == platform and of.account.secret("app_secret")
        ]
        if not secrets or secrets[0] is None:
            continue  # the demo city file names no such account (or its secret is unset)
        signature = meta_webhook.signature(secrets[0], body)
        document = meta_webhook.signed_document(secrets[0], body, signature)
        posts = facebook.parse(document) if platform == "facebook" else whatsapp.parse(document)
        for post in posts:
            row_id = await store(
                session, post, social_config.find(known, post.platform, post.account)
            )
            if row_id is not None:
                kept.append(row_id)
    if kept:
        await defer(session, PROCESS_SOCIAL_POSTS, {"ids": kept}, queue="social")
    return len(kept)


def demo_secrets() -> None:
    """The demo accounts' tokens (any value works against the demo); the worker inherits them."""
    for name in (
        "KERBSIDE_DEMO_X_BEARER",
        "KERBSIDE_DEMO_MASTODON_TOKEN",
        "KERBSIDE_DEMO_META_APP_SECRET",
        "KERBSIDE_DEMO_META_TOKEN",
    ):
        os.environ.setdefault(name, f"demo-{name.lower()}-not-a-secret")
