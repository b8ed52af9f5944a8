"""The photos of social posts into the photo pipeline (issues 18 and 20): each platform's post,
in its real payload shape, is filed, and its photos are fetched from the platform's own fake
(serving real JPEG bytes) into the report, through the same checks as an app upload, and
stripped of their EXIF when processed. Downloads go to the platform's hosts only; a failed
download never loses the report.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels import bluesky, facebook, mastodon, x
from app.channels.media import MediaHosts
from app.channels.posts import InboundPost
from app.core import clock
from app.jurisdictions.models import Jurisdiction
from app.media.service import PhotoPipeline
from app.settings import Settings
from app.social import config as social_config
from app.social.config import Social, SocialAccount, Street
from app.social.photos import PhotosLater, fetch_post_photos
from app.social.service import Pipeline, receive
from tests.factories import CITY, make_jurisdiction, make_service
from tests.fakes import bluesky as fake_bsky
from tests.fakes import facebook as fake_fb
from tests.fakes import mastodon as fake_masto
from tests.fakes import x as fake_x
from tests.fakes.http import FakeServer, Reply, serving
from tests.images import jpeg

LON, LAT = CITY.center
VISMARKT = (-2.5901, 51.4551)
REPORT = "#kuil diep gat in de weg op de Vismarkt"
PSID = "6543210987654321"


@dataclass
class Fakes:
    x: fake_x.FakeX
    graph: fake_fb.FakeGraph
    masto: fake_masto.FakeMastodon
    pds: fake_bsky.FakePDS
    servers: dict[str, FakeServer]


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    monkeypatch.setenv("KERBSIDE_TEST_FB_TOKEN", fake_fb.PAGE_TOKEN)
    now = clock.now()
    state = Fakes(
        fake_x.FakeX(),
        fake_fb.FakeGraph(now=now),
        fake_masto.FakeMastodon(now=now),
        fake_bsky.FakePDS(now=now),
        {},
    )
    # Somewhere a crafted post might point at: nothing may ever reach it.
    stranger = FakeServer(lambda _: Reply(200, jpeg((64, 48)), {"Content-Type": "image/jpeg"}))
    stranger.start()
    with (
        serving(state.x) as xs,
        serving(state.graph) as graph,
        serving(state.masto) as masto,
        serving(state.pds) as pds,
    ):
        state.servers = {"x": xs, "graph": graph, "masto": masto, "pds": pds, "stranger": stranger}
        yield state
    stranger.stop()


@pytest.fixture
async def city(db: AsyncSession, fakes: Fakes) -> Jurisdiction:
    city = await make_jurisdiction(db, slug="photos")
    await make_service(
        db,
        city,
        "pothole",
        names={"en": "Pothole", "nl": "Gat in de weg"},
        hashtags={"en": ["pothole"], "nl": ["kuil"]},
        keywords={"en": ["pothole"], "nl": ["kuil", "gat in de weg"]},
    )
    urls = {name: server.url for name, server in fakes.servers.items()}
    accounts = [
        SocialAccount(
            platform="x", handle=fake_x.CITY_HANDLE, id=fake_x.CITY_ID, base_url=urls["x"]
        ),
        SocialAccount(
            platform="facebook",
            handle="gemeente",
            id=fake_fb.PAGE_ID,
            base_url=f"{urls['graph']}/v24.0",
            credentials={"access_token": "KERBSIDE_TEST_FB_TOKEN"},
            poll=False,
        ),
        SocialAccount(platform="mastodon", handle="gemeente", base_url=urls["masto"]),
        SocialAccount(platform="bluesky", handle=fake_bsky.HANDLE, base_url=urls["pds"]),
    ]
    social = Social(
        accounts=accounts, streets=[Street(name="Vismarkt", lon=VISMARKT[0], lat=VISMARKT[1])]
    )
    await social_config.write(db, city.id, social)
    return city


@pytest.fixture
def photos(settings: Settings) -> Iterator[PhotoPipeline]:
    pipeline = PhotoPipeline(settings)
    yield pipeline
    pipeline.close()


# -- each platform's post, as its payload comes --------------------------------------------------


def x_post(fakes: Fakes, url: str) -> InboundPost:
    post = fake_x.tweet(f"@{fake_x.CITY_HANDLE} {REPORT}", media_keys=("3_1", "7_2"), lang="nl")
    media = [
        {"media_key": "3_1", "type": "photo", "url": url, "width": 640, "height": 480},
        # A video's still is not the reporter's photo.
        {"media_key": "7_2", "type": "video", "preview_image_url": f"{url}?video"},
    ]
    body = {
        "data": [post],
        "includes": {"users": [fake_x.user(post["author_id"], "pat")], "media": media},
        "meta": {"newest_id": post["id"], "result_count": 1},
    }
    (found,) = x.posts_from_page(body, fake_x.CITY_ID).posts
    return found


def messenger_post(url: str) -> InboundPost:
    event = fake_fb.message_event(PSID, "m_photo_1", text=REPORT)
    event["message"]["attachments"] = [{"type": "image", "payload": {"url": url}}]
    (found,) = facebook.parse(json.loads(fake_fb.messages_delivery(event)))
    return found


def mastodon_post(fakes: Fakes, url: str) -> InboundPost:
    fakes.masto.mention("pat@remote.example", f"<p>@gemeente {REPORT}</p>", media=((url, "gat"),))
    account = mastodon.MastodonAccount(
        base_url=fakes.servers["masto"].url, access_token="t", handle="gemeente"
    )
    found = mastodon.to_post(fakes.masto.notifications[-1], account)
    assert found is not None
    return found


def bluesky_post(fakes: Fakes, cid: str) -> InboundPost:
    image = {
        "$type": "app.bsky.embed.images",
        "images": [
            {
                "alt": "gat",
                "image": {
                    "$type": "blob",
                    "ref": {"$link": cid},
                    "mimeType": "image/jpeg",
                    "size": 1000,
                },
            }
        ],
    }
    note = fakes.pds.add_post("did:plc:kim", "kim.bsky.social", REPORT, embed=image)
    base = fakes.servers["pds"].url
    account = bluesky.BlueskyAccount(
        identifier=fake_bsky.HANDLE,
        app_password="p",
        base_url=base,
        image_url=bluesky.blob_url(base),
    )
    found = bluesky.to_post(note, account, fake_bsky.HANDLE)
    assert found is not None
    return found


# -- helpers -------------------------------------------------------------------------------------


async def file(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, post: InboundPost
) -> Any:
    async with sessionmaker() as session, session.begin():
        counts = await receive(session, Pipeline(settings), [post])
    assert counts.outcomes == {"ticket_created": 1}, counts
    async with sessionmaker() as session:
        return (
            await session.execute(
                text("SELECT * FROM social_post WHERE platform = :p AND post_id = :id"),
                {"p": post.platform, "id": post.post_id},
            )
        ).one()


async def report_photos(db: AsyncSession, report_id: int) -> list[Any]:
    found = await db.execute(
        text("SELECT * FROM photo WHERE report_id = :r ORDER BY id"), {"r": report_id}
    )
    return list(found.all())


async def post_state(db: AsyncSession, row_id: int) -> Any:
    found = await db.execute(
        text("SELECT photos_state, photos_failure, report_id FROM social_post WHERE id = :id"),
        {"id": row_id},
    )
    return found.one()


async def processed_without_exif(
    db: AsyncSession, photos: PhotoPipeline, report_id: int, original: bytes
) -> None:
    """Each photo of the report is processed like an upload: stored without metadata."""
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)  # it had GPS
    rows = await report_photos(db, report_id)
    assert rows
    assert all(r.status == "pending" for r in rows)
    for row in rows:
        assert await photos.process_one(db, row.public_id) == "ready"
        stored = await photos.storage.get(row.storage_key)
        image = Image.open(io.BytesIO(stored))
        assert not image.getexif(), "EXIF left on a stored photo"
        assert not image.info.get("exif")


# -- one test per platform -----------------------------------------------------------------------


async def test_an_x_photo_becomes_the_reports_photo(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
) -> None:
    image = jpeg((640, 480), lon=LON, lat=LAT)
    fakes.x.files["/media/Fv3_1.jpg"] = (image, "image/jpeg")
    post = x_post(fakes, f"{fakes.servers['x'].url}/media/Fv3_1.jpg")
    assert len(post.media_urls) == 1  # the photo, not the video's still
    row = await file(sessionmaker, settings, post)
    assert row.photos_state == "pending"
    job = (
        await db.execute(
            text("SELECT args, queue_name FROM procrastinate_jobs WHERE task_name = :t"),
            {"t": "fetch_post_photos"},
        )
    ).one()
    assert (job.args, job.queue_name) == ({"post_id": row.id}, "social")
    assert await fetch_post_photos(sessionmaker, settings, photos, row.id, last_try=False) == (
        "fetched"
    )
    state = await post_state(db, row.id)
    assert (state.photos_state, state.photos_failure) == ("fetched", None)
    await processed_without_exif(db, photos, row.report_id, image)
    # Run again (a second try of the job): nothing is attached twice.
    assert await fetch_post_photos(sessionmaker, settings, photos, row.id, last_try=False) == (
        "nothing to fetch"
    )
    assert len(await report_photos(db, row.report_id)) == 1
    (request,) = fakes.servers["x"].to("/media/")
    assert "authorization" not in request.headers  # no token travels with a media download


def x_page(post: dict[str, Any], media: list[dict[str, Any]]) -> InboundPost:
    body = {
        "data": [post],
        "includes": {"users": [fake_x.user(post["author_id"], "pat")], "media": media},
        "meta": {"newest_id": post["id"], "result_count": 1},
    }
    (found,) = x.posts_from_page(body, fake_x.CITY_ID).posts
    return found


async def test_the_photo_in_the_answer_to_where_is_it_goes_to_the_resumed_report(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
) -> None:
    image = jpeg((640, 480), lon=LON, lat=LAT)
    fakes.x.files["/media/answer.jpg"] = (image, "image/jpeg")
    author = "1299000000000000077"
    # A report with no place and no photo: we ask where.
    waiting = fake_x.tweet(
        f"@{fake_x.CITY_HANDLE} #kuil diep gat in de weg", author_id=author, lang="nl"
    )
    async with sessionmaker() as session, session.begin():
        asked = await receive(session, Pipeline(settings), [x_page(waiting, [])])
    assert asked.outcomes == {"awaiting_location": 1}
    # The author answers with the place and a photo of it.
    answer = fake_x.tweet(
        f"@{fake_x.CITY_HANDLE} hier, zie foto",
        author_id=author,
        replied_to=waiting["id"],
        conversation_id=waiting["id"],
        coordinates=(LON, LAT),
        media_keys=("3_9",),
        lang="nl",
    )
    url = f"{fakes.servers['x'].url}/media/answer.jpg"
    media = [{"media_key": "3_9", "type": "photo", "url": url, "width": 640, "height": 480}]
    async with sessionmaker() as session, session.begin():
        resumed = await receive(session, Pipeline(settings), [x_page(answer, media)])
    assert resumed.outcomes == {"linked": 1}
    row = (
        await db.execute(
            text("SELECT * FROM social_post WHERE post_id = :id"), {"id": waiting["id"]}
        )
    ).one()
    assert (row.status, row.photos_state) == ("ticket_created", "pending")
    assert await fetch_post_photos(sessionmaker, settings, photos, row.id, last_try=False) == (
        "fetched"
    )
    assert len(await report_photos(db, row.report_id)) == 1
    await processed_without_exif(db, photos, row.report_id, image)
    (request,) = fakes.servers["x"].to("/media/")
    assert request.path == "/media/answer.jpg"


async def test_a_messenger_photo_is_fetched_into_the_chat(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    image = jpeg((320, 240), lon=LON, lat=LAT)
    fakes.graph.files["/v/t1.15752-9/photo_n.jpg"] = (image, "image/jpeg")
    post = messenger_post(f"{fakes.servers['graph'].url}/v/t1.15752-9/photo_n.jpg")
    async with sessionmaker() as session, session.begin():
        counts = await receive(session, Pipeline(settings), [post])
    assert counts.outcomes == {"in_dialogue": 1}
    chat = (
        await db.execute(
            text("SELECT photos FROM social_dialogue WHERE author_id = :a"), {"a": PSID}
        )
    ).scalar_one()
    assert len(chat) == 1  # the dialogue has its photo and will not ask for one
    question = (
        await db.execute(text("SELECT body FROM notification WHERE event_kind = 'dialogue'"))
    ).scalar_one()
    assert "1 foto" in question, question


async def test_a_messenger_photo_outside_a_dialogue_becomes_the_reports_photo(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
) -> None:
    social = await social_config.read(db, city.id)
    for account in social.accounts:
        if account.platform == "facebook":
            account.dialogue = False  # private messages go through linking and filing
    await social_config.write(db, city.id, social)
    image = jpeg((320, 240), lon=LON, lat=LAT)
    fakes.graph.files["/v/t1.15752-9/photo_2.jpg"] = (image, "image/jpeg")
    post = messenger_post(f"{fakes.servers['graph'].url}/v/t1.15752-9/photo_2.jpg")
    row = await file(sessionmaker, settings, post)
    assert await fetch_post_photos(sessionmaker, settings, photos, row.id, last_try=False) == (
        "fetched"
    )
    await processed_without_exif(db, photos, row.report_id, image)


async def test_a_mastodon_photo_becomes_the_reports_photo(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
) -> None:
    image = jpeg((480, 640), lon=LON, lat=LAT)
    path = "/system/media_attachments/files/110/original/a.jpeg"
    fakes.masto.files[path] = (image, "image/jpeg")
    post = mastodon_post(fakes, fakes.servers["masto"].url + path)
    assert "gat" in post.text  # the alt text reads as part of the post
    row = await file(sessionmaker, settings, post)
    # The server is busy once: the job is tried again later, the report is there already.
    fakes.servers["masto"].fail_next(Reply(503))
    with pytest.raises(PhotosLater):
        await fetch_post_photos(sessionmaker, settings, photos, row.id, last_try=False)
    assert (await post_state(db, row.id)).photos_state == "pending"
    assert await report_photos(db, row.report_id) == []
    assert await fetch_post_photos(sessionmaker, settings, photos, row.id, last_try=False) == (
        "fetched"
    )
    await processed_without_exif(db, photos, row.report_id, image)


async def test_a_bluesky_photo_becomes_the_reports_photo(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
) -> None:
    image = jpeg((640, 480), lon=LON, lat=LAT)
    cid = "bafkreihphotophotophotophotophotophotophotophotophoto"
    fakes.pds.blobs[("did:plc:kim", cid)] = (image, "image/jpeg")
    post = bluesky_post(fakes, cid)
    assert post.media_urls == (
        f"{fakes.servers['pds'].url}/xrpc/com.atproto.sync.getBlob?did=did:plc:kim&cid={cid}",
    )
    row = await file(sessionmaker, settings, post)
    assert await fetch_post_photos(sessionmaker, settings, photos, row.id, last_try=True) == (
        "fetched"
    )
    await processed_without_exif(db, photos, row.report_id, image)


# -- what is refused -----------------------------------------------------------------------------


async def test_a_photo_elsewhere_than_the_platform_is_never_downloaded(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
) -> None:
    stranger = fakes.servers["stranger"]
    post = x_post(fakes, f"{stranger.url}/internal/admin.jpg")
    row = await file(sessionmaker, settings, post)
    assert await fetch_post_photos(sessionmaker, settings, photos, row.id, last_try=False) == (
        "failed"
    )
    assert stranger.received == []
    state = await post_state(db, row.id)
    assert state.photos_state == "failed"
    assert "outside the platform's hosts" in state.photos_failure
    assert state.report_id is not None  # the report stands, without the photo
    assert await report_photos(db, row.report_id) == []


def test_media_hosts_are_the_platforms_own() -> None:
    hosts = MediaHosts.of("x", ["https://api.x.com"])
    assert hosts.allows("https://pbs.twimg.com/media/Fv3.jpg")
    assert hosts.allows("https://api.x.com/2/media/1")
    for refused in (
        "http://pbs.twimg.com/media/Fv3.jpg",  # not HTTPS
        "https://pbs.twimg.com:8443/media/Fv3.jpg",  # another port
        "https://pbs.twimg.com.evil.example/a.jpg",
        "https://user:pw@pbs.twimg.com/a.jpg",
        "https://169.254.169.254/latest/meta-data",
        "http://localhost/a.jpg",
        "file:///etc/passwd",
        "gopher://pbs.twimg.com/",
    ):
        assert not hosts.allows(refused), refused
    facebook_hosts = MediaHosts.of("facebook", [None])
    assert facebook_hosts.allows("https://scontent-ams2-1.xx.fbcdn.net/v/t1/p.jpg")
    assert not facebook_hosts.allows("https://fbcdn.net.example/p.jpg")
    masto = MediaHosts.of("mastodon", ["https://social.example"], ["files.social.example"])
    assert masto.allows("https://files.social.example/media/a.png")
    assert masto.allows("https://social.example/system/a.png")
    assert not masto.allows("https://remote.example/system/a.png")  # another server


@pytest.mark.parametrize(
    ("name", "served", "reason"),
    [
        ("not a photo", (b"<html><script>alert(1)</script></html>", "image/jpeg"), "photo 1"),
        ("a polyglot", (jpeg((64, 48)) + b"MZ\x90\x00" + bytes(64), "image/jpeg"), "photo 1"),
        ("gone", None, "media download 4"),  # refused as any missing file
    ],
)
async def test_a_photo_the_checks_refuse_is_recorded_and_the_report_kept(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
    name: str,
    served: tuple[bytes, str] | None,
    reason: str,
) -> None:
    path = "/system/media_attachments/files/1/original/b.jpeg"
    if served is not None:
        fakes.masto.files[path] = served
    post = mastodon_post(fakes, fakes.servers["masto"].url + path)
    row = await file(sessionmaker, settings, post)
    assert await fetch_post_photos(sessionmaker, settings, photos, row.id, last_try=False) == (
        "failed"
    ), name
    state = await post_state(db, row.id)
    assert reason in state.photos_failure
    assert await report_photos(db, row.report_id) == []


async def test_the_last_try_records_a_platform_that_stays_away(
    city: Jurisdiction,
    fakes: Fakes,
    db: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    photos: PhotoPipeline,
) -> None:
    fakes.x.files["/media/a.jpg"] = (jpeg((64, 48)), "image/jpeg")
    row = await file(sessionmaker, settings, x_post(fakes, f"{fakes.servers['x'].url}/media/a.jpg"))
    fakes.servers["x"].fail_next(Reply(503))
    assert await fetch_post_photos(sessionmaker, settings, photos, row.id, last_try=True) == (
        "failed"
    )
    state = await post_state(db, row.id)
    assert "media download 503" in state.photos_failure
    assert state.report_id is not None
