"""The demo's own X: a few mentions of the demo city's account, in X's real payload shape,
served by the API itself outside production (404 in production), so that README command 1
shows posts turning into tickets with nothing else to run. The demo city file points its X
account here (``base_url``); the worker's ``poll_social`` reads it like the real API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request

from app.core.errors import NotAuthenticated, NotFound

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
