"""HTTP for social intake: X's webhook (CRC challenge, signed deliveries), Meta's webhooks for
Facebook (Page, Messenger) and WhatsApp (subscription check, deliveries signed over the raw
body), and the webcare inbox (list with filters, assign, answer in the thread, close with a
reason)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import text

from app.auth.principal import CHECK_CREDENTIALS, StaffPrincipal, ensure_same_jurisdiction
from app.channels import facebook, meta_webhook, whatsapp, x
from app.channels.posts import InboundPost
from app.contacts import service as contacts
from app.contacts.models import ContactKind
from app.contacts.service import ContactSpec
from app.core.errors import BadRequest, Forbidden, InvalidInput, NotAuthenticated, NotFound
from app.core.jobs import PROCESS_SOCIAL_POSTS, defer
from app.db import SessionDep
from app.linking import service as linking
from app.notify import receipts
from app.notify.replies import LINKED, queue_reply
from app.notify.templates import render_linked
from app.social import config as social_config
from app.social import inbox
from app.social.schemas import (
    InboxState,
    PostAnswerIn,
    PostAnswerOut,
    PostAssignIn,
    PostCloseIn,
    SocialPostOut,
    SocialPostPage,
    SuggestionIn,
)
from app.social.service import store

router = APIRouter(tags=["social"])

PostId = Annotated[int, Path(ge=1, le=2**53 - 1)]


def _secret(request: Request) -> str:
    secret = request.app.state.settings.x_consumer_secret
    if secret is None:
        raise NotFound("X webhooks are not configured here")
    return str(secret.get_secret_value())


# Public (X sends no credentials), but wrong ones are a 401 as on every public route.
@router.get(
    "/v1/social/x/webhook",
    dependencies=[CHECK_CREDENTIALS],
    summary="X's CRC challenge: proves we hold the app's consumer secret",
    responses={404: {"description": "X webhooks are not configured"}},
)
async def x_crc(
    request: Request, crc_token: Annotated[str, Query(min_length=1, max_length=500)]
) -> dict[str, str]:
    return x.crc_response(_secret(request), crc_token)


@router.post(
    "/v1/social/x/webhook",
    dependencies=[CHECK_CREDENTIALS],
    status_code=200,
    summary="X deliveries (X Activity API mentions and replies; legacy Account Activity)",
    responses={
        400: {"description": "Not an X delivery"},
        403: {"description": "The signature is missing or wrong"},
        404: {"description": "X webhooks are not configured"},
    },
)
async def x_webhook(request: Request, session: SessionDep) -> Response:
    secret = _secret(request)
    raw = await request.body()
    # Over the bytes as they came: re-serialised JSON would not match (nor should it).
    if not x.signature_valid(secret, raw, request.headers.get("x-twitter-webhooks-signature")):
        raise Forbidden("The webhook signature does not match the body")
    try:
        _account, posts = x.posts_from_webhook(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValueError) as error:
        raise BadRequest(f"Not an X delivery: {error}") from None
    known = await social_config.accounts(session)
    kept = []
    for post in posts:
        row_id = await store(session, post, social_config.find(known, post.platform, post.account))
        if row_id is not None:
            kept.append(row_id)
    if kept:  # processed after we answer: X wants its 200 within 10 s
        await defer(session, PROCESS_SOCIAL_POSTS, {"ids": kept}, queue="social")
    return Response(status_code=200)


# -- Facebook (Page and Messenger) and WhatsApp: Meta's webhooks -------------------------------

MetaPlatform = Literal["facebook", "whatsapp"]


async def _meta_secrets(session: SessionDep, platform: MetaPlatform, name: str) -> list[str]:
    """The distinct ``name`` secrets (app_secret, verify_token) of the city accounts of
    ``platform``; 404 when none is set (the webhook is not configured here)."""
    found: list[str] = []
    for of in await social_config.accounts(session):
        secret = of.account.secret(name) if of.account.platform == platform else None
        if secret and secret not in found:
            found.append(secret)
    if not found:
        raise NotFound(f"{platform} webhooks are not configured here")
    return found


async def _meta_challenge(
    request: Request, session: SessionDep, platform: MetaPlatform
) -> Response:
    params = dict(request.query_params.items())
    for token in await _meta_secrets(session, platform, "verify_token"):
        answer = meta_webhook.challenge(params, token)
        if answer is not None:
            return PlainTextResponse(answer)
    raise Forbidden("The verify token does not match")


def _linking_tap(post: InboundPost) -> bool:
    """A Get Started tap that carried a linking's ref (linked now, or a redelivery of one):
    the person came to link the conversation, not to report."""
    postback = post.raw.get("postback")
    referral = postback.get("referral") if isinstance(postback, Mapping) else None
    ref = referral.get("ref") if isinstance(referral, Mapping) else None
    return isinstance(ref, str) and linking.STATE.match(ref) is not None


async def _meta_delivery(request: Request, session: SessionDep, platform: MetaPlatform) -> Response:
    raw = await request.body()
    header = request.headers.get(meta_webhook.SIGNATURE_HEADER)
    document = None
    # Over the bytes as they came, with each app's secret (a city may run more than one app).
    for secret in await _meta_secrets(session, platform, "app_secret"):
        try:
            document = meta_webhook.signed_document(secret, raw, header)
            break
        except meta_webhook.Rejected as rejected:
            if rejected.status == 400:  # signed by this app, but no JSON object
                raise BadRequest(str(rejected)) from None
    if document is None:
        raise NotAuthenticated("The webhook signature does not match the body")
    if platform == "facebook":
        posts = facebook.parse(document)
        for referral in facebook.parse_referrals(document):
            # Someone opened the Page's conversation from a linking's m.me link: the signed
            # ref says which signed-in person started it (app/linking). Confirmed at once,
            # inside the window the person just opened.
            made = await linking.link_messenger(session, request.app.state.settings, referral)
            if made is not None:
                await queue_reply(
                    session,
                    contact_id=made.contact_id,
                    post_id=None,
                    kind=LINKED,
                    words=render_linked(made.language),
                    reply_to=made.via,
                )
        posts = [p for p in posts if not _linking_tap(p)]
        for optin in facebook.parse_optins(document):
            # The consented way to write after Messenger's window (the person chose it).
            await contacts.remember(
                session,
                ContactSpec(
                    ContactKind.facebook,
                    optin.psid,
                    data={
                        "notification_messages_token": optin.token,
                        "notification_messages_expire_at": optin.expires_at.isoformat()
                        if optin.expires_at
                        else None,
                    },
                ),
            )
    else:
        posts = whatsapp.parse(document)
        statuses = whatsapp.parse_statuses(document)
        if statuses:  # what became of the messages we sent (by their provider id)
            await receipts.record_whatsapp(session, request.app.state.settings, statuses)
    known = await social_config.accounts(session)
    kept = []
    for post in posts:
        row_id = await store(session, post, social_config.find(known, post.platform, post.account))
        if row_id is not None:
            kept.append(row_id)
    if kept:  # processed after we answer: Meta wants its 200 within seconds, and retries
        await defer(session, PROCESS_SOCIAL_POSTS, {"ids": kept}, queue="social")
    return Response(status_code=200)


_META_GET = {
    "dependencies": [CHECK_CREDENTIALS],
    "response_class": PlainTextResponse,
    "responses": {
        200: {"content": {"text/plain": {}}, "description": "hub.challenge, echoed"},
        403: {"description": "The verify token does not match"},
        404: {"description": "Not configured: no account names a verify token"},
    },
}
_META_POST = {
    "dependencies": [CHECK_CREDENTIALS],
    "status_code": 200,
    "responses": {
        400: {"description": "Signed, but not a JSON object"},
        401: {"description": "X-Hub-Signature-256 is missing or does not match the raw body"},
        404: {"description": "Not configured: no account names an app secret"},
    },
}


# Public (Meta sends no credentials; the signature is the proof).
@router.get(
    "/v1/social/facebook/webhook",
    summary="Facebook's subscription check (hub.challenge for our verify token)",
    **_META_GET,  # type: ignore[arg-type]
)
async def facebook_challenge(request: Request, session: SessionDep) -> Response:
    return await _meta_challenge(request, session, "facebook")


@router.post(
    "/v1/social/facebook/webhook",
    summary="Facebook Page deliveries: feed comments and posts, Messenger messages, opt-ins",
    **_META_POST,  # type: ignore[arg-type]
)
async def facebook_webhook(request: Request, session: SessionDep) -> Response:
    return await _meta_delivery(request, session, "facebook")


@router.get(
    "/v1/social/whatsapp/webhook",
    summary="WhatsApp's subscription check (hub.challenge for our verify token)",
    **_META_GET,  # type: ignore[arg-type]
)
async def whatsapp_challenge(request: Request, session: SessionDep) -> Response:
    return await _meta_challenge(request, session, "whatsapp")


@router.post(
    "/v1/social/whatsapp/webhook",
    summary="WhatsApp Cloud API deliveries: messages (text, location, image) and receipts",
    **_META_POST,  # type: ignore[arg-type]
)
async def whatsapp_webhook(request: Request, session: SessionDep) -> Response:
    return await _meta_delivery(request, session, "whatsapp")


async def _jurisdiction(session: SessionDep, staff: StaffPrincipal, slug: str | None) -> int:
    if slug is None:
        if staff.jurisdiction_id is None:
            raise InvalidInput(
                "Name the jurisdiction",
                errors=[{"field": "jurisdiction", "message": "required", "type": "missing"}],
            )
        return staff.jurisdiction_id
    found = (
        await session.execute(text("SELECT id FROM jurisdiction WHERE slug = :s"), {"s": slug})
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No jurisdiction {slug!r}")
    ensure_same_jurisdiction(staff, int(found))
    return int(found)


@router.get(
    "/v1/social/posts",
    response_model=SocialPostPage,
    summary="The webcare inbox: posts addressed to the city's accounts, newest first",
    responses={404: {"description": "No jurisdiction with this slug"}},
)
async def list_posts(
    staff: StaffPrincipal,
    session: SessionDep,
    jurisdiction: Annotated[str | None, Query(max_length=100)] = None,
    state: InboxState = "unanswered",
    account: Annotated[str | None, Query(max_length=200)] = None,
    sentiment_below: Annotated[float | None, Query(ge=-1, le=1)] = None,
    assigned_to: uuid.UUID | None = None,
    before: Annotated[int | None, Query(ge=1, le=2**53 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SocialPostPage:
    jurisdiction_id = await _jurisdiction(session, staff, jurisdiction)
    return await inbox.list_posts(
        session,
        jurisdiction_id,
        state=state,
        account=account,
        sentiment_below=sentiment_below,
        assigned_to=assigned_to,
        before=before,
        limit=limit,
    )


@router.post(
    "/v1/social/posts/{social_post_id}/assign",
    response_model=SocialPostOut,
    summary="Give a post to a webcare agent (or to nobody)",
    responses={404: {"description": "No such post"}},
)
async def assign(
    social_post_id: PostId, body: PostAssignIn, staff: StaffPrincipal, session: SessionDep
) -> SocialPostOut:
    return await inbox.assign(session, staff, social_post_id, body.user_id)


@router.post(
    "/v1/social/posts/{social_post_id}/answer",
    response_model=PostAnswerOut,
    status_code=202,
    summary="Answer a post in its thread, through the outbox",
    responses={404: {"description": "No such post"}},
)
async def answer(
    social_post_id: PostId, body: PostAnswerIn, staff: StaffPrincipal, session: SessionDep
) -> PostAnswerOut:
    return PostAnswerOut(
        notification_id=await inbox.answer(session, staff, social_post_id, body.text)
    )


@router.post(
    "/v1/social/posts/{social_post_id}/suggestion",
    response_model=SocialPostOut,
    summary="Decide a suggested merge: link the post to the author's recent ticket, or file "
    "it as new",
    responses={
        404: {"description": "No such post"},
        409: {"description": "The post is not (or no longer) a suggested merge"},
    },
)
async def decide_suggestion(
    social_post_id: PostId,
    body: SuggestionIn,
    request: Request,
    staff: StaffPrincipal,
    session: SessionDep,
) -> SocialPostOut:
    settings = request.app.state.settings
    return await inbox.decide(session, settings, staff, social_post_id, body.decision == "link")


@router.post(
    "/v1/social/posts/{social_post_id}/close",
    response_model=SocialPostOut,
    summary='"No answer needed", with the reason',
    responses={404: {"description": "No such post"}},
)
async def close(
    social_post_id: PostId, body: PostCloseIn, staff: StaffPrincipal, session: SessionDep
) -> SocialPostOut:
    return await inbox.close(session, staff, social_post_id, body.reason)
