"""The Facebook/Messenger, WhatsApp, Mastodon and Bluesky adapters against local fakes that
speak each platform's payloads and check what the platform checks. No database."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.channels import bluesky, facebook, mastodon, meta_webhook, replies, whatsapp
from app.channels.base import Delivered, Failed, Message, RetryLater
from app.core import clock
from app.settings import Settings
from tests.fakes import bluesky as fake_bsky
from tests.fakes import facebook as fake_fb
from tests.fakes import mastodon as fake_masto
from tests.fakes import whatsapp as fake_wa
from tests.fakes.http import Reply, serving

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
REFERENCE = "K-2026-000123"
LINK = f"https://city.example/tickets/{REFERENCE}"
PSID = "6543210987654321"
WA_ID = "31612345678"


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)


def settings() -> Settings:
    return Settings(env="test", channels_connect_timeout_seconds=2, channels_read_timeout_seconds=5)


def message(kind: str, address: str, data: dict[str, Any], **changes: Any) -> Message:
    made = Message(
        id=77,
        kind=kind,
        address=address,
        contact_data={},
        subject=f"{REFERENCE}: received",
        body=f"Thank you, we logged this as {REFERENCE}.",
        link=LINK,
        unsubscribe_url="https://city.example/unsubscribe?token=abc",
        ticket_reference=REFERENCE,
        event="acknowledged",
        language="nl",
        data=data,
    )
    return dataclasses.replace(made, **changes)


# --- Meta webhooks: handshake and signature ---------------------------------------------------


def test_the_subscription_handshake_answers_the_challenge_only_to_our_token() -> None:
    ok = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"}
    assert meta_webhook.challenge(ok, "tok") == "1158201444"
    assert meta_webhook.challenge({**ok, "hub.verify_token": "guess"}, "tok") is None
    assert meta_webhook.challenge({**ok, "hub.mode": "unsubscribe"}, "tok") is None
    assert meta_webhook.challenge({"hub.mode": "subscribe", "hub.challenge": "1"}, "tok") is None


def test_forged_and_reserialised_deliveries_are_rejected() -> None:
    body = fake_fb.messages_delivery(fake_fb.message_event(PSID, "m_1", text="Kapotte lamp"))
    header = fake_fb.sign(body)
    assert meta_webhook.signed_document(fake_fb.APP_SECRET, body, header)["object"] == "page"
    # The same JSON dumped again (spaces, key order) is other bytes: its signature fails.
    reserialised = json.dumps(json.loads(body), indent=1, sort_keys=True).encode()
    forged = body.replace(b"Kapotte", b"Kapote!")
    for bad_body, bad_header in [
        (reserialised, header),
        (forged, header),
        (body, fake_fb.sign(body, "another-secret")),
        (body, header.replace("sha256=", "sha1=")),
        (body, None),
        (body, ""),
    ]:
        with pytest.raises(meta_webhook.Rejected) as caught:
            meta_webhook.signed_document(fake_fb.APP_SECRET, bad_body, bad_header)
        assert caught.value.status == 401
    not_json = b"not json"
    with pytest.raises(meta_webhook.Rejected) as caught:
        meta_webhook.signed_document(fake_fb.APP_SECRET, not_json, fake_fb.sign(not_json))
    assert caught.value.status == 400
    assert not meta_webhook.verified("", body, fake_fb.sign(body, ""))  # no secret: nothing holds


# --- Facebook and Messenger in ----------------------------------------------------------------


def test_messenger_messages_become_private_posts_with_photos_and_pins() -> None:
    body = fake_fb.messages_delivery(
        fake_fb.message_event(
            PSID,
            "m_photo",
            text="Bankje kapot bij de vijver",
            attachments=[{"type": "image", "payload": {"url": "https://scontent.example/a.jpg"}}],
        ),
        fake_fb.message_event(
            PSID,
            "m_pin",
            attachments=[
                {"type": "location", "payload": {"coordinates": {"lat": 53.2194, "long": 6.5665}}}
            ],
        ),
        fake_fb.message_event(fake_fb.PAGE_ID, "m_echo", text="our own", is_echo=True),
    )
    posts = facebook.parse(
        meta_webhook.signed_document(fake_fb.APP_SECRET, body, fake_fb.sign(body))
    )
    assert [p.post_id for p in posts] == ["m_photo", "m_pin"]
    photo, pin = posts
    assert (photo.platform, photo.account, photo.author_id) == ("messenger", fake_fb.PAGE_ID, PSID)
    assert photo.is_private
    assert photo.text == "Bankje kapot bij de vijver"
    assert photo.media_urls == ("https://scontent.example/a.jpg",)
    assert photo.created_at == datetime.fromtimestamp(1763449199.876, UTC)
    assert pin.coordinates == (6.5665, 53.2194)
    assert photo.conversation_id == pin.conversation_id


def test_page_comments_become_posts_and_replays_parse_identically() -> None:
    post_id = f"{fake_fb.PAGE_ID}_122131676912594941"
    body = fake_fb.feed_delivery(
        fake_fb.comment_value(post_id, "122131676912594941_1", "7312345678901234", "Lamp stuk"),
        {"item": "reaction", "verb": "add", "from": {"id": "1"}, "post_id": post_id},
        {**fake_fb.comment_value(post_id, "122131676912594941_2", "7", "weg"), "verb": "remove"},
    )
    first = facebook.parse(json.loads(body))
    again = facebook.parse(json.loads(body))  # Meta retries a delivery: the same posts
    assert first == again
    assert len(first) == 1
    comment = first[0]
    assert (comment.platform, comment.post_id) == ("facebook", "122131676912594941_1")
    assert comment.conversation_id == post_id
    assert comment.in_reply_to_id == post_id
    assert not comment.is_private
    assert comment.author_handle is None
    assert facebook.parse({"object": "instagram", "entry": []}) == []


def test_opt_ins_are_read_for_the_consented_notice() -> None:
    document = {
        "object": "page",
        "entry": [
            {
                "id": fake_fb.PAGE_ID,
                "messaging": [
                    {
                        "sender": {"id": PSID},
                        "optin": {
                            "type": "notification_messages",
                            "payload": f"ticket:{REFERENCE}",
                            "notification_messages_token": "321987",
                            "token_expiry_timestamp": 1779001400000,
                        },
                    }
                ],
            }
        ],
    }
    (optin,) = facebook.parse_optins(document)
    assert (optin.psid, optin.token, optin.payload) == (PSID, "321987", f"ticket:{REFERENCE}")
    assert "321987" not in repr(optin)


# --- Facebook and Messenger out ---------------------------------------------------------------


@pytest.fixture
def graph() -> Iterator[tuple[fake_fb.FakeGraph, str]]:
    fake = fake_fb.FakeGraph(now=NOW)
    with serving(fake) as server:
        yield fake, server.url


def fb_channel(base: str, **changes: Any) -> facebook.FacebookChannel:
    account = facebook.FacebookAccount(
        page_id=fake_fb.PAGE_ID,
        access_token=fake_fb.PAGE_TOKEN,
        base_url=f"{base}/v24.0",
        **changes,
    )
    return facebook.FacebookChannel([account], settings())


async def test_messenger_inside_the_window_sends_free_text(
    graph: tuple[fake_fb.FakeGraph, str],
) -> None:
    fake, base = graph
    fake.last_message[PSID] = NOW - timedelta(hours=2)
    channel = fb_channel(base)
    data = {"account": fake_fb.PAGE_ID, "last_inbound_at": (NOW - timedelta(hours=2)).isoformat()}
    outcome = await channel.deliver(message("facebook", PSID, data))
    await channel.close()
    assert outcome == Delivered("m_fake000001")
    (sent,) = fake.sent
    assert sent["messaging_type"] == "RESPONSE"
    assert "tag" not in sent
    assert sent["message"]["text"] == f"Thank you, we logged this as {REFERENCE}.\n{LINK}"


async def test_messenger_outside_the_window_uses_the_tag_or_refuses(
    graph: tuple[fake_fb.FakeGraph, str],
) -> None:
    fake, base = graph
    fake.last_message[PSID] = NOW - timedelta(days=3)
    data = {"last_inbound_at": (NOW - timedelta(days=3)).isoformat()}
    update = message("facebook", PSID, data, event="fixed")
    untagged = fb_channel(base)
    refused = await untagged.deliver(update)
    await untagged.close()
    assert isinstance(refused, Failed)
    assert "window" in refused.reason
    assert not fake.sent
    tagged = fb_channel(base, update_tag="ACCOUNT_UPDATE")
    assert await tagged.deliver(update) == Delivered("m_fake000001")
    assert fake.sent[0]["messaging_type"] == "MESSAGE_TAG"
    assert fake.sent[0]["tag"] == "ACCOUNT_UPDATE"
    # The sender thinks the window is open; the platform knows better and says so.
    wrong = message("facebook", PSID, {"last_inbound_at": NOW.isoformat()})
    outcome = await tagged.deliver(wrong)
    await tagged.close()
    assert isinstance(outcome, Failed)
    assert "outside the messaging window" in outcome.reason
    assert not outcome.disable_contact


async def test_messenger_after_the_window_uses_an_opt_in_token(
    graph: tuple[fake_fb.FakeGraph, str],
) -> None:
    fake, base = graph
    fake.optin_tokens.add("321987")
    channel = fb_channel(base)
    data = {"notification_messages_token": "321987", "event": "fixed"}
    outcome = await channel.deliver(message("facebook", PSID, data, event="fixed"))
    await channel.close()
    assert isinstance(outcome, Delivered)
    assert fake.sent[0]["recipient"] == {"notification_messages_token": "321987"}


async def test_a_page_comment_is_answered_with_a_comment_reply(
    graph: tuple[fake_fb.FakeGraph, str],
) -> None:
    fake, base = graph
    fake.comments.add("122131676912594941_1")
    post = facebook.parse(
        json.loads(
            fake_fb.feed_delivery(
                fake_fb.comment_value(f"{fake_fb.PAGE_ID}_1", "122131676912594941_1", "73", "Lamp")
            )
        )
    )[0]
    channel = fb_channel(base)
    outcome = await channel.deliver(message("facebook", "73", facebook.reply_data(post)))
    gone = await channel.deliver(message("facebook", "73", {"comment_id": "nope_1"}))
    await channel.close()
    assert outcome == Delivered("122131676912594941_0000000001")
    assert fake.comment_replies == [
        ("122131676912594941_1", f"Thank you, we logged this as {REFERENCE}.\n{LINK}")
    ]
    assert isinstance(gone, Failed)


async def test_facebook_throttling_is_retried_and_a_bad_token_is_not(
    graph: tuple[fake_fb.FakeGraph, str],
) -> None:
    fake, base = graph
    fake.last_message[PSID] = NOW
    channel = fb_channel(base)
    with serving(
        lambda r: Reply.json(400, json.dumps({"error": {"code": 613}}), **{"Retry-After": "7"})
    ) as busy:
        busy_channel = fb_channel(busy.url)
        inside = message("facebook", PSID, {"last_inbound_at": NOW.isoformat()})
        assert await busy_channel.deliver(inside) == RetryLater(
            "facebook 400 (code 613, subcode None)", after=7.0
        )
        await busy_channel.close()
    bad = facebook.FacebookChannel(
        [facebook.FacebookAccount(fake_fb.PAGE_ID, "wrong-token", base_url=f"{base}/v24.0")],
        settings(),
    )
    outcome = await bad.deliver(message("facebook", PSID, {"last_inbound_at": NOW.isoformat()}))
    await bad.close()
    await channel.close()
    assert isinstance(outcome, Failed)
    assert "code 190" in outcome.reason
    assert "wrong-token" not in outcome.reason
    assert "wrong-token" not in repr(bad._accounts)


# --- WhatsApp ---------------------------------------------------------------------------------


@pytest.fixture
def cloud() -> Iterator[tuple[fake_wa.FakeCloudAPI, str]]:
    fake = fake_wa.FakeCloudAPI(now=NOW)
    with serving(fake) as server:
        fake.url = server.url
        yield fake, server.url


def wa_account(base: str, **changes: Any) -> whatsapp.WhatsAppAccount:
    return whatsapp.WhatsAppAccount(
        phone_number_id=fake_wa.PHONE_NUMBER_ID,
        access_token=fake_wa.TOKEN,
        base_url=f"{base}/v24.0",
        **changes,
    )


def test_whatsapp_text_location_and_image_messages_are_parsed() -> None:
    body = fake_wa.delivery(
        fake_wa.text_message("wamid.1", "Grote kuil in de weg"),
        fake_wa.location_message("wamid.2", 53.2194, 6.5665, name="Vismarkt", address="Vismarkt 1"),
        fake_wa.image_message("wamid.3", "1234567890", caption="hier"),
        {
            "from": WA_ID,
            "id": "wamid.4",
            "timestamp": "1764840000",
            "type": "sticker",
            "sticker": {},
        },
    )
    document = meta_webhook.signed_document(
        fake_wa.APP_SECRET, body, fake_fb.sign(body, fake_wa.APP_SECRET)
    )
    posts = whatsapp.parse(document)
    assert posts == whatsapp.parse(json.loads(body))  # a replay parses to the same posts
    text, pin, image = posts
    assert (text.platform, text.account, text.author_id) == (
        "whatsapp",
        fake_wa.PHONE_NUMBER_ID,
        WA_ID,
    )
    assert text.is_private
    assert text.text == "Grote kuil in de weg"
    assert text.author_handle is None  # the profile name is not kept
    assert pin.coordinates == (6.5665, 53.2194)
    assert pin.place is not None
    assert pin.place.name == "Vismarkt Vismarkt 1"
    assert image.media_urls == ("whatsapp-media:1234567890",)
    assert image.text == "hier"
    receipts = whatsapp.parse_statuses(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "statuses": [
                                    {
                                        "id": "wamid.FAKE1",
                                        "status": "failed",
                                        "timestamp": "1764840000",
                                        "errors": [{"code": 131047}],
                                    }
                                ]
                            },
                        }
                    ]
                }
            ],
        }
    )
    assert receipts[0].status == "failed"
    assert receipts[0].errors == (131047,)


async def test_whatsapp_media_is_fetched_by_id_with_the_token(
    cloud: tuple[fake_wa.FakeCloudAPI, str],
) -> None:
    fake, base = cloud
    fake.media["1234567890"] = (b"\xff\xd8fake-jpeg\xff\xd9", "image/jpeg")
    media = whatsapp.WhatsAppMedia(wa_account(base), settings())
    got = await media.fetch("whatsapp-media:1234567890")
    with pytest.raises(whatsapp.MediaUnavailable) as missing:
        await media.fetch("whatsapp-media:999")
    await media.close()
    assert got == whatsapp.Media(b"\xff\xd8fake-jpeg\xff\xd9", "image/jpeg")
    assert not missing.value.retry


async def test_whatsapp_window_inside_free_text_outside_template(
    cloud: tuple[fake_wa.FakeCloudAPI, str],
) -> None:
    fake, base = cloud
    fake.last_message[WA_ID] = NOW - timedelta(hours=1)
    channel = whatsapp.WhatsAppChannel(
        [wa_account(base, update_template="ticket_update", template_languages={"en": "en_GB"})],
        settings(),
    )
    inside = message(
        "whatsapp",
        WA_ID,
        {
            "last_inbound_at": (NOW - timedelta(hours=1)).isoformat(),
            "context_message_id": "wamid.1",
        },
    )
    assert await channel.deliver(inside) == Delivered("wamid.FAKE000001")
    assert fake.sent[0]["type"] == "text"
    assert fake.sent[0]["context"] == {"message_id": "wamid.1"}
    assert fake.sent[0]["text"]["body"].startswith("Thank you")
    outside = message(
        "whatsapp",
        WA_ID,
        {"last_inbound_at": (NOW - timedelta(hours=30)).isoformat()},
        event="fixed",
    )
    assert await channel.deliver(outside) == Delivered("wamid.FAKE000002")
    template = fake.sent[1]["template"]
    assert fake.sent[1]["type"] == "template"
    assert template["name"] == "ticket_update"
    assert template["language"] == {"code": "nl"}
    assert [p["text"] for p in template["components"][0]["parameters"]] == [REFERENCE, LINK]
    # No template configured: refused unsent, as the platform would (131047).
    bare = whatsapp.WhatsAppChannel([wa_account(base)], settings())
    refused = await bare.deliver(outside)
    # A sender that wrongly believes the window open gets the platform's refusal.
    fake.last_message[WA_ID] = NOW - timedelta(hours=30)
    wrong = await bare.deliver(inside)
    await bare.close()
    await channel.close()
    assert isinstance(refused, Failed)
    assert "template" in refused.reason
    assert isinstance(wrong, Failed)
    assert "131047" in wrong.reason
    assert len(fake.sent) == 2


async def test_whatsapp_rate_limits_are_retried(cloud: tuple[fake_wa.FakeCloudAPI, str]) -> None:
    fake, _base = cloud
    fake.last_message[WA_ID] = NOW
    with serving(fake) as server:
        server.fail_next(
            Reply.json(429, json.dumps({"error": {"code": 130429}}), **{"Retry-After": "3"})
        )
        channel = whatsapp.WhatsAppChannel([wa_account(server.url)], settings())
        data = {"last_inbound_at": NOW.isoformat()}
        first = await channel.deliver(message("whatsapp", WA_ID, data))
        second = await channel.deliver(message("whatsapp", WA_ID, data))
        await channel.close()
    assert first == RetryLater("whatsapp 429 (code 130429)", after=3.0)
    assert isinstance(second, Delivered)


# --- Mastodon ---------------------------------------------------------------------------------


@pytest.fixture
def masto() -> Iterator[tuple[fake_masto.FakeMastodon, str]]:
    fake = fake_masto.FakeMastodon(now=NOW)
    with serving(fake) as server:
        fake.url = server.url
        yield fake, server.url


def masto_client(base: str) -> mastodon.MastodonClient:
    account = mastodon.MastodonAccount(
        base_url=base, access_token=fake_masto.TOKEN, handle="gemeente"
    )
    return mastodon.MastodonClient(account, settings())


def test_mastodon_html_becomes_text() -> None:
    html = (
        '<p><span class="h-card"><a href="https://s.example/@gemeente" class="u-url mention">'
        "@<span>gemeente</span></a></span> Kuil &amp; losse tegel<br>bij Vismarkt</p><p>#kuil</p>"
    )
    assert mastodon.plain_text(html) == "@gemeente Kuil & losse tegel\nbij Vismarkt\n\n#kuil"


async def test_mastodon_mentions_are_paged_with_min_id_and_link(
    masto: tuple[fake_masto.FakeMastodon, str],
) -> None:
    fake, base = masto
    first = fake.mention("pat@remote.example", "<p>@gemeente eerste</p>")
    client = masto_client(base)
    polled = await client.mentions(None)  # first poll: the newest page sets the mark
    assert [p.text for p in polled.posts] == ["@gemeente eerste"]
    for n in range(170):  # three pages of 80
        fake.mention(
            "kim@remote.example",
            f"<p>@gemeente melding {n}</p>",
            media=(("https://files.example/a.jpg", "bij de brug"),) if n == 0 else (),
            visibility="direct" if n == 1 else "public",
        )
    again = await client.mentions(polled.cursor)
    await client.close()
    texts = [p.text for p in again.posts]
    assert len(texts) == 170
    assert texts[0].startswith("@gemeente melding 0")
    assert texts[-1] == "@gemeente melding 169"
    assert again.posts[0].media_urls == ("https://files.example/a.jpg",)
    assert "bij de brug" in again.posts[0].text
    assert again.posts[1].is_private
    assert again.posts[0].author_handle == "kim@remote.example"
    host = base.removeprefix("http://")
    assert polled.posts[0].post_id == f"{host}:{first['id']}"
    assert again.cursor == fake.notifications[-1]["id"]
    assert again.error is None
    # Nothing new: the cursor stays, nothing comes twice.
    client = masto_client(base)
    assert (await client.mentions(again.cursor)).posts == ()
    await client.close()


async def test_mastodon_429_and_an_exhausted_budget_stop_the_poll(
    masto: tuple[fake_masto.FakeMastodon, str],
) -> None:
    fake, base = masto
    fake.mention("pat@remote.example", "<p>one</p>")
    client = masto_client(base)
    start = await client.mentions(None)
    for n in range(100):
        fake.mention("pat@remote.example", f"<p>m{n}</p>")
    fake.budget = 1  # one page, then the budget is gone
    partial = await client.mentions(start.cursor)
    assert len(partial.posts) == 80
    assert partial.wait_seconds == 300.0
    rest = await client.mentions(partial.cursor)
    assert rest.error == "mastodon 429"
    assert rest.wait_seconds == 300.0
    assert rest.cursor == partial.cursor
    fake.budget = 300
    done = await client.mentions(partial.cursor)
    await client.close()
    assert [p.text for p in done.posts] == [f"m{n}" for n in range(80, 100)]


async def test_mastodon_reply_threads_narrows_visibility_and_dedupes(
    masto: tuple[fake_masto.FakeMastodon, str],
) -> None:
    fake, base = masto
    fake.mention("pat@remote.example", "<p>@gemeente lamp</p>")
    fake.mention("kim@remote.example", "<p>@gemeente privé</p>", visibility="private")
    client = masto_client(base)
    public_post, private_post = (await client.mentions("0")).posts
    channel = mastodon.MastodonChannel([client])
    to_public = message("mastodon", "x", mastodon.reply_data(public_post))
    sent = await channel.deliver(to_public)
    again = await channel.deliver(to_public)  # a retry after an unknown outcome: same key
    to_private = dataclasses.replace(to_public, id=78, data=mastodon.reply_data(private_post))
    await channel.deliver(to_private)
    await channel.close()
    assert isinstance(sent, Delivered)
    assert sent == again
    assert len(fake.posted) == 2
    first, second = fake.posted
    assert first["status"].startswith("@pat@remote.example Thank you")
    assert first["in_reply_to_id"] == public_post.raw["status"]["id"]
    assert first["visibility"] == "unlisted"
    assert second["visibility"] == "direct"
    assert first["idempotency_key"] == "kerbside-outbox-77"
    assert [mastodon.reply_visibility(v) for v in ("public", "unlisted", "private", "direct")] == [
        "unlisted",
        "unlisted",
        "direct",
        "direct",
    ]


# --- Bluesky ----------------------------------------------------------------------------------


@pytest.fixture
def pds() -> Iterator[tuple[fake_bsky.FakePDS, str]]:
    fake = fake_bsky.FakePDS(now=NOW)
    with serving(fake) as server:
        yield fake, server.url


def bsky_client(base: str, **kwargs: Any) -> bluesky.BlueskyClient:
    account = bluesky.BlueskyAccount(
        identifier=fake_bsky.HANDLE, app_password=fake_bsky.APP_PASSWORD, base_url=base
    )
    return bluesky.BlueskyClient(account, settings(), **kwargs)


async def test_bluesky_mentions_and_replies_are_paged_to_the_mark(
    pds: tuple[fake_bsky.FakePDS, str],
) -> None:
    fake, base = pds
    fake.add_post("did:plc:pat", "pat.bsky.social", "@gemeente.example.nl eerste")
    client = bsky_client(base)
    start = await client.mentions(None)
    assert [p.text for p in start.posts] == ["@gemeente.example.nl eerste"]
    image = {
        "$type": "app.bsky.embed.images",
        "images": [{"alt": "losse tegel", "image": {"$type": "blob", "ref": {"$link": "bafkimg"}}}],
    }
    link = "https://www.openstreetmap.org/#map=19/53.21940/6.56650"
    first = fake.add_post(
        "did:plc:kim",
        "kim.bsky.social",
        f"kuil hier {link}",
        embed=image,
        facets=[
            {
                "index": {"byteStart": 10, "byteEnd": 10 + len(link)},
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": link}],
            }
        ],
    )
    for n in range(120):
        fake.add_post(
            "did:plc:kim", "kim.bsky.social", f"antwoord {n}", reason="reply", reply_to=first["uri"]
        )
    fake.add_post("did:plc:kim", "kim.bsky.social", "liked", reason="like")
    polled = await client.mentions(start.cursor)
    await client.close()
    assert len(polled.posts) == 121
    assert polled.error is None
    kuil = polled.posts[0]
    assert kuil.coordinates == (6.5665, 53.2194)
    assert "losse tegel" in kuil.text
    assert kuil.media_urls == (bluesky.IMAGE_URL.format(did="did:plc:kim", cid="bafkimg"),)
    last = polled.posts[-1]
    assert last.text == "antwoord 119"
    assert last.in_reply_to_id == first["uri"]
    assert last.conversation_id == first["uri"]
    assert last.author_handle == "kim.bsky.social"
    assert fake.logins == 1  # one session for every call
    client = bsky_client(base, session=client.session)
    assert (await client.mentions(polled.cursor)).posts == ()
    await client.close()
    assert fake.logins == 1  # a kept session is reused, not logged in again


async def test_bluesky_a_429_keeps_the_mark(pds: tuple[fake_bsky.FakePDS, str]) -> None:
    fake, _base = pds
    fake.add_post("did:plc:pat", "pat.bsky.social", "eerste")
    with serving(fake) as server:
        client = bsky_client(server.url)
        start = await client.mentions(None)
        for n in range(60):
            fake.add_post("did:plc:pat", "pat.bsky.social", f"m{n}")
        reset = str(int((NOW + timedelta(seconds=90)).timestamp()))
        server.fail_next(
            Reply.json(429, '{"error":"RateLimitExceeded"}', **{"RateLimit-Reset": reset})
        )
        limited = await client.mentions(start.cursor)
        assert limited.cursor == start.cursor
        assert limited.wait_seconds == 90.0
        assert limited.posts == ()
        done = await client.mentions(start.cursor)
        await client.close()
    assert [p.text for p in done.posts] == [f"m{n}" for n in range(60)]


async def test_bluesky_session_is_refreshed_when_the_access_token_expires(
    pds: tuple[fake_bsky.FakePDS, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, base = pds
    fake.access_lifetime = timedelta(minutes=30)
    client = bsky_client(base)
    await client.mentions(None)
    assert (fake.logins, fake.refreshes) == (1, 0)
    later = NOW + timedelta(minutes=45)
    fake.now = later
    monkeypatch.setattr(clock, "now", lambda: later)
    await client.mentions(None)  # the JWT's exp is past: refreshed before the call
    assert (fake.logins, fake.refreshes) == (1, 1)
    # The server says ExpiredToken though our clock thought it fine: refreshed, and retried.
    fake.now = later + timedelta(hours=1)
    polled = await client.mentions(None)
    assert polled.error is None
    assert (fake.logins, fake.refreshes) == (1, 2)
    # A refresh token already used is refused: the client logs in again.
    stale = dataclasses.replace(client.session, access_jwt="x.e30.y") if client.session else None
    fake.used_refresh.update(f"jti{n}" for n in range(fake.serial + 1))
    again = bsky_client(base, session=stale)
    assert (await again.mentions(None)).error is None
    assert fake.logins == 2
    await again.close()
    await client.close()


async def test_bluesky_reply_has_strong_refs_and_byte_offset_facets(
    pds: tuple[fake_bsky.FakePDS, str],
) -> None:
    fake, base = pds
    root = fake.add_post("did:plc:kim", "kim.bsky.social", "@gemeente.example.nl kuil")
    fake.add_post(
        "did:plc:jos", "jós.bsky.social", "nog steeds 🕳️", reason="reply", reply_to=root["uri"]
    )
    client = bsky_client(base)
    _, answer = (await client.mentions("2000-01-01T00:00:00+00:00|x")).posts
    channel = bluesky.BlueskyChannel([client])
    body = f"Dank je wel — gemeld als {REFERENCE} 🚧"
    sent = await channel.deliver(
        message("bluesky", answer.author_id, bluesky.reply_data(answer), body=body)
    )
    await channel.close()
    assert isinstance(sent, Delivered)
    assert sent.provider_id is not None
    (record,) = fake.created
    assert record["reply"]["parent"]["uri"] == answer.post_id
    assert record["reply"]["root"] == {"uri": root["uri"], "cid": root["cid"]}
    text = record["text"]
    assert text == f"@jós.bsky.social {body}\n{LINK}"
    mention, link = record["facets"]
    raw = text.encode()
    assert (
        raw[mention["index"]["byteStart"] : mention["index"]["byteEnd"]].decode()
        == "@jós.bsky.social"
    )
    assert mention["features"][0]["did"] == "did:plc:jos"
    assert raw[link["index"]["byteStart"] : link["index"]["byteEnd"]].decode() == LINK


def test_bluesky_record_keys_are_tids_of_the_outbox_row() -> None:
    keys = [bluesky.record_key(n) for n in (1, 2, 77, 10**12, 2**52 - 1)]
    assert all(len(k) == 13 and k[0] in "234567abcdefghij" for k in keys)
    assert all(set(k) <= set("234567abcdefghijklmnopqrstuvwxyz") for k in keys)
    assert keys == sorted(keys)  # later rows, later keys (TIDs sort as text)
    assert len(set(keys)) == len(keys)
    assert bluesky.record_key(77) == bluesky.record_key(77)
    with pytest.raises(ValueError, match="outbox row id"):
        bluesky.record_key(0)


async def test_bluesky_a_retry_after_a_lost_answer_posts_once(
    pds: tuple[fake_bsky.FakePDS, str],
) -> None:
    fake, base = pds
    root = fake.add_post("did:plc:kim", "kim.bsky.social", "@gemeente.example.nl kuil")
    client = bsky_client(base)
    (post,) = (await client.mentions("2000-01-01T00:00:00+00:00|x")).posts
    channel = bluesky.BlueskyChannel([client])
    answer = message("bluesky", post.author_id, bluesky.reply_data(post))
    # The PDS writes the record, then the connection drops before its answer: unknown.
    fake.drop_after_create = 1
    first = await channel.deliver(answer)
    assert isinstance(first, RetryLater), first
    assert len(fake.replies_to(root["uri"])) == 1
    # The worker's retry of the same row: the same key, which the PDS refuses (a 500 today);
    # the record there is our answer to this post, so it counts as delivered.
    second = await channel.deliver(answer)
    assert isinstance(second, Delivered), second
    rkey = bluesky.record_key(answer.id)
    assert second.provider_id == f"at://{fake_bsky.DID}/app.bsky.feed.post/{rkey}"
    third = await channel.deliver(answer)  # and again: still one post
    assert isinstance(third, Delivered)
    (only,) = fake.replies_to(root["uri"])
    assert only["text"].startswith("@kim.bsky.social ")
    assert fake.calls.count("com.atproto.repo.createRecord") == 3
    # Another row is another key: a second answer to the same post is a second post.
    later = await channel.deliver(dataclasses.replace(answer, id=78))
    assert isinstance(later, Delivered)
    assert len(fake.replies_to(root["uri"])) == 2
    # A key that holds some other record (a restored database reusing row ids) is not taken
    # for ours: the row fails instead of counting a post that was never made.
    other = fake.add_post("did:plc:kim", "kim.bsky.social", "@gemeente.example.nl lamp")
    (other_post,) = (await client.mentions(f"{root['indexedAt']}|{root['uri']}")).posts
    clash = await channel.deliver(
        message("bluesky", other_post.author_id, bluesky.reply_data(other_post))
    )
    await channel.close()
    assert isinstance(clash, Failed)
    assert "holds another post" in clash.reason
    assert fake.replies_to(other["uri"]) == []


async def test_bluesky_reply_without_refs_is_not_sent(pds: tuple[fake_bsky.FakePDS, str]) -> None:
    _, base = pds
    channel = bluesky.BlueskyChannel([bsky_client(base)])
    outcome = await channel.deliver(message("bluesky", "did:plc:x", {"parent": {"uri": "at://x"}}))
    await channel.close()
    assert isinstance(outcome, Failed)


# --- What every answer leaves out -------------------------------------------------------------


def test_answers_carry_only_what_the_caller_wrote() -> None:
    contact = {
        "display_name": "Pat Resident",
        "phone": "+31612345678",
        "last_inbound_at": NOW.isoformat(),
    }
    made = message("whatsapp", WA_ID, {}, contact_data=contact)
    text = replies.reply_text(made, 4096)
    assert text == f"Thank you, we logged this as {REFERENCE}.\n{LINK}"
    assert "Pat" not in text
    assert "+316" not in text
    long = dataclasses.replace(made, body="x" * 600)
    cut = replies.reply_text(long, 300, prefix="@pat ")
    assert len(cut) == 300
    assert cut.startswith("@pat ")
    assert cut.endswith(LINK)


# --- Bad input --------------------------------------------------------------------------------

GARBAGE: list[Any] = [
    {},
    {"object": "page", "entry": "x"},
    {"object": "page", "entry": [1, None, "x", {"id": 1, "messaging": "x", "changes": 5}]},
    {
        "object": "page",
        "entry": [
            {
                "id": fake_fb.PAGE_ID,
                "messaging": [
                    {"message": "x"},
                    {"sender": {"id": PSID}, "message": {"text": "no mid"}},
                    {"sender": "x", "message": {"mid": "m"}},
                    {"sender": {"id": PSID}, "message": {"mid": "m", "attachments": "x"}},
                    {"sender": {"id": PSID}, "optin": {"type": "notification_messages"}},
                ],
                "changes": [
                    {"field": "feed", "value": []},
                    {"field": "feed", "value": {"item": "comment", "verb": "add"}},
                ],
            }
        ],
    },
    {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]},
    {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messages": [
                                {"from": WA_ID, "type": "text"},
                                {"from": WA_ID, "id": "w1", "type": "location", "location": {}},
                                {
                                    "from": WA_ID,
                                    "id": "w2",
                                    "type": "location",
                                    "location": {"latitude": "53", "longitude": True},
                                },
                                {"from": WA_ID, "id": "w3", "type": "image", "image": {}},
                                {"from": WA_ID, "id": "w4", "type": "text", "text": "x"},
                            ],
                            "statuses": [{"id": "s"}, "x", {"status": "sent"}],
                        },
                    }
                ]
            }
        ],
    },
]


@pytest.mark.parametrize("document", GARBAGE)
def test_malformed_deliveries_never_raise(document: Any) -> None:
    posts = [*facebook.parse(document), *whatsapp.parse(document)]
    # The one half-good message left (a WhatsApp text whose body is not an object) has no text.
    assert all(p.text == "" for p in posts)
    assert facebook.parse_optins(document) == []
    assert whatsapp.parse_statuses(document) == []
    account = mastodon.MastodonAccount(base_url="https://s.example", access_token="t")
    assert mastodon.to_post({"type": "mention", "status": document}, account) is None
    bsky = bluesky.BlueskyAccount(identifier="c", app_password="p")
    assert bluesky.to_post({"reason": "mention", **document}, bsky, "c") is None


def test_huge_emoji_and_right_to_left_texts_are_kept_verbatim() -> None:
    text = "حفرة كبيرة 🕳️ في الشارع " * 5000
    body = fake_wa.delivery(fake_wa.text_message("wamid.big", text))
    (post,) = whatsapp.parse(json.loads(body))
    assert post.text == text
    html = f"<p>{text.replace('🕳️', '&#x1F573;&#xFE0F;')}</p>"
    assert mastodon.plain_text(html) == text.strip()
    assert bluesky.map_coordinates("geo:95.0,6.5") is None  # out of range
    assert bluesky.map_coordinates("kijk geo:53.2194,6.5665") == (6.5665, 53.2194)
