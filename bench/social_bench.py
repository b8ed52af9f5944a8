"""The social backlog, measured (issue 18; run by hand, the result goes to bench/results):

    .venv/bin/python -m bench.social_bench [--posts 10000]

On a throwaway cluster: the demo city with an X account and a street list, and a local fake X
(tests/fakes/x.py, the real payloads) holding a backlog of mixed mentions: reports with
coordinates, reports naming a street, reports without a location, replies to earlier
reports, reposts and noise. One run of the polling job fetches every page, keeps, classifies,
locates, links or files each post and commits in batches of 100, the event stream writing
the acknowledgements (outbox rows) at each commit.

- ``social_backlog_10k``: ``extra.seconds`` from the first request to the last commit (target
  60 s on 2 cores), the cost of each stage (fetch, store, link, classify, locate, file,
  acknowledge, commit), the outcomes and the outbox rows written;
- and, for the ratio, the plain intake path: as many located reports as the backlog filed,
  through ``submit_report`` directly (each with a contact that wants updates, 100 per
  transaction), on the same database.

A recorded 10,000-post run also redraws ``docs/charts/social_backlog_10k.png`` from every
recorded run (``--chart`` only redraws it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app.cities.service import apply, load
from app.contacts.models import ContactKind
from app.contacts.service import ContactSpec
from app.db import make_engine, make_sessionmaker
from app.embedded import throwaway_cluster
from app.jurisdictions.catalog import Catalog
from app.migrations import upgrade_to_head
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.seed.demo import DEMO_CITY_FILE
from app.settings import PROJECT_ROOT, Settings
from app.social import config as social_config
from app.social.config import Social, SocialAccount, Street
from app.social.polling import poll_accounts
from tests.fakes import x as fake
from tests.fakes.http import serving

TARGET_SECONDS = 60.0
SERVICES = (
    ("pothole", "huge pothole"),
    ("flytipping", "rubbish dumped"),
    ("streetlight", "lamp out"),
)
STREETS = 40


def _point(rng: random.Random, bbox: tuple[float, float, float, float]) -> tuple[float, float]:
    west, south, east, north = bbox
    # The middle half of the box: inside the demo city's boundary.
    return (
        round(west + (east - west) * rng.uniform(0.3, 0.7), 6),
        round(south + (north - south) * rng.uniform(0.3, 0.7), 6),
    )


def backlog(
    state: fake.FakeX, posts: int, bbox: tuple[float, float, float, float], streets: list[Street]
) -> dict[str, int]:
    """The mixed backlog; says how many of each kind."""
    rng = random.Random(18)
    kinds: dict[str, int] = {}
    reports: list[str] = []
    for n in range(posts):
        roll = rng.random()
        author = str(1_000_000 + rng.randrange(posts // 3))
        tag, words = SERVICES[n % len(SERVICES)]
        if roll < 0.45:
            kind = "coordinates"
            post = fake.tweet(
                f"@CityOfExample #{tag} {words} here, #{n}",
                author_id=author,
                coordinates=_point(rng, bbox),
            )
            reports.append(post["id"])
        elif roll < 0.60:
            kind = "street"
            street = streets[rng.randrange(len(streets))]
            post = fake.tweet(
                f"@CityOfExample #{tag} {words} on {street.name} ({n})", author_id=author
            )
            reports.append(post["id"])
        elif roll < 0.70:
            kind = "no_location"
            post = fake.tweet(f"@CityOfExample #{tag} {words} again! ({n})", author_id=author)
        elif roll < 0.85 and reports:
            kind = "reply"
            post = fake.tweet(
                f"@CityOfExample still there ({n})",
                author_id=str(2_000_000 + n),
                replied_to=rng.choice(reports),
            )
        elif roll < 0.90 and reports:
            kind = "repost"
            post = fake.tweet(f"RT @someone: #{tag} ({n})", retweeted=rng.choice(reports))
        else:
            kind = "noise"
            post = fake.tweet(f"@CityOfExample thanks for the concert last night ({n})")
        kinds[kind] = kinds.get(kind, 0) + 1
        state.mention(post)
    return kinds


async def run(url: str, posts: int) -> dict[str, Any]:
    state = fake.FakeX(reachable=posts)
    if True:
        with serving(state) as xapi:
            os.environ["KERBSIDE_BENCH_X_BEARER"] = fake.BEARER
            settings = Settings(
                env="test",
                database_url=url,
                x_api_base_url=xapi.url,
                x_poll_max_pages=min(100, max(1, -(-posts // 100))),
                log_json=False,
            )
            engine = make_engine(settings, pool_size=4)
            sessionmaker = make_sessionmaker(engine)
            async with sessionmaker() as session, session.begin():
                await apply(
                    session, load(DEMO_CITY_FILE.read_text()), base_dir=DEMO_CITY_FILE.parent
                )
                row = (
                    await session.execute(
                        text(
                            "SELECT id, ST_XMin(boundary) AS w, ST_YMin(boundary) AS s,"
                            " ST_XMax(boundary) AS e, ST_YMax(boundary) AS n"
                            " FROM jurisdiction WHERE slug = 'demo'"
                        )
                    )
                ).one()
                bbox = (row.w, row.s, row.e, row.n)
                rng = random.Random(7)
                streets = [
                    Street(name=f"Bench Street {k}", lon=p[0], lat=p[1])
                    for k, p in ((k, _point(rng, bbox)) for k in range(STREETS))
                ]
                await social_config.write(
                    session,
                    row.id,
                    Social(
                        accounts=[
                            SocialAccount(
                                platform="x",
                                handle=fake.CITY_HANDLE,
                                id=fake.CITY_ID,
                                credentials={"bearer_token": "KERBSIDE_BENCH_X_BEARER"},
                            )
                        ],
                        streets=streets,
                    ),
                )
            kinds = backlog(state, posts, bbox, streets)
            started = time.perf_counter()
            polled = await poll_accounts(sessionmaker, settings)
            seconds = time.perf_counter() - started
            async with sessionmaker() as session:
                outbox = (
                    await session.execute(text("SELECT count(*) FROM notification"))
                ).scalar_one()
                filed = (
                    await session.execute(
                        text("SELECT count(*) FROM social_post WHERE status = 'ticket_created'")
                    )
                ).scalar_one()
            plain = await _plain_intake(sessionmaker, filed, bbox)
            await engine.dispose()
    per_post = seconds / max(polled.stored, 1)
    per_report = plain / max(filed, 1)
    return {
        "seconds": round(seconds, 2),
        "posts": posts,
        "stored": polled.stored,
        "kinds": kinds,
        "outcomes": polled.outcomes,
        "outbox_rows": outbox,
        "errors": polled.errors,
        "stage_seconds": {k: round(v, 2) for k, v in sorted(polled.seconds.items())},
        "stage_ms_per_post": {
            k: round(v * 1000 / max(polled.stored, 1), 3) for k, v in sorted(polled.seconds.items())
        },
        "plain_intake": {
            "reports": filed,
            "seconds": round(plain, 2),
            "ms_per_report": round(per_report * 1000, 3),
        },
        "ms_per_post": round(per_post * 1000, 3),
        "ratio_to_plain_intake": round(per_post / per_report, 2) if per_report else None,
    }


async def _plain_intake(sessionmaker: Any, count: int, bbox: tuple[float, ...]) -> float:
    """The same number of located reports through the intake directly."""
    rng = random.Random(99)
    catalog = Catalog()
    started = time.perf_counter()
    for first in range(0, count, 100):
        async with sessionmaker() as session, session.begin():
            for n in range(first, min(first + 100, count)):
                lon, lat = _point(rng, bbox)  # type: ignore[arg-type]
                await submit_report(
                    session,
                    catalog,
                    Submission(
                        channel=Channel.app,
                        submitter=Submitter(label="bench", identified=True),
                        service_code=SERVICES[n % len(SERVICES)][0].replace(
                            "flytipping", "fly_tipping"
                        ),
                        place=Place(lon, lat, LocationSource.device),
                        jurisdiction="demo",
                        description=f"plain intake {n}",
                        contacts=[ContactSpec(ContactKind.fcm, f"bench-token-{n}")],
                        updates=True,
                    ),
                )
    return time.perf_counter() - started


CHART = Path(PROJECT_ROOT) / "docs" / "charts" / "social_backlog_10k.png"
STAGES = ("fetch", "store", "link", "classify", "locate", "file", "acknowledge", "commit")


def recorded_runs() -> list[dict[str, Any]]:
    """Every recorded ``social_backlog_10k``, oldest first."""
    runs = []
    for path in sorted((Path(PROJECT_ROOT) / "bench" / "results").glob("*-social.json")):
        results = json.loads(path.read_text())
        for entry in results["workloads"]:
            if entry["name"] == "social_backlog_10k":
                runs.append({"started_at": results["started_at"], **entry["extra"]})
    return runs


def render_chart(runs: list[dict[str, Any]], path: Path = CHART) -> Path | None:
    """The recorded runs as a chart: each run's seconds against the target (and the plain
    intake of the same reports), and where a post's time went, by stage."""
    try:
        import matplotlib
    except ImportError:  # the bench extra is not installed
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs:
        return None
    labels = [f"{r['started_at'][4:8]}\n{r['started_at'][9:13]}" for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    left.bar(
        labels,
        [r["seconds"] for r in runs],
        color=["#2b6cb0" if r["seconds"] <= TARGET_SECONDS else "#a0aec0" for r in runs],
        label="backlog, fetched to last commit",
    )
    left.plot(
        labels,
        [r["plain_intake"]["seconds"] for r in runs],
        "o",
        color="#c05621",
        label="plain intake of the reports it filed",
    )
    left.axhline(TARGET_SECONDS, color="#9b2c2c", linestyle="--", linewidth=1, label="target")
    left.set_ylabel("seconds (lower is better)")
    left.set_title("10,000 posts, each recorded run (month-day, UTC time)", fontsize=9)
    left.legend(fontsize=7)
    bottom = [0.0] * len(runs)
    colours = plt.get_cmap("tab10")
    for k, stage in enumerate(STAGES):
        values = [r["stage_ms_per_post"].get(stage, 0.0) for r in runs]
        right.bar(labels, values, bottom=bottom, color=colours(k), label=stage)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_ylabel("ms per post")
    right.set_title("where a post's time goes, by stage", fontsize=9)
    right.legend(fontsize=7, ncol=2)
    for axis in (left, right):
        axis.tick_params(labelsize=7)
        axis.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument(
        "--chart", action="store_true", help="only draw the recorded runs' chart (docs/charts)"
    )
    args = parser.parse_args()
    if args.chart:
        drawn = render_chart(recorded_runs())
        print(f"drew {drawn.relative_to(PROJECT_ROOT)}" if drawn else "no chart (matplotlib?)")
        return
    cluster = throwaway_cluster()
    try:
        url = cluster.ensure_running()
        upgrade_to_head(url)
        extra = asyncio.run(run(url, args.posts))
    finally:
        cluster.destroy()
    name = "social_backlog_10k" if args.posts == 10_000 else f"social_backlog_{args.posts}"
    entry = {
        "name": name,
        "title": f"{args.posts} mixed X mentions: fetched, kept, classified, located, "
        "linked or filed, acknowledged (outbox rows)",
        "kind": "probe",
        "status": "ok",
        "reason": None,
        "target": {"seconds_max": TARGET_SECONDS},
        "target_met": extra["seconds"] <= TARGET_SECONDS,
        "extra": extra,
    }
    print(json.dumps(entry, indent=2))
    if not args.no_record:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = Path(PROJECT_ROOT) / "bench" / "results" / f"{stamp}-social.json"
        path.write_text(
            json.dumps(
                {
                    "schema": 1,
                    "mode": "social",
                    "started_at": stamp,
                    "machine": {"load_average": os.getloadavg()},
                    "workloads": [entry],
                },
                indent=2,
            )
            + "\n"
        )
        print(f"recorded in {path.relative_to(PROJECT_ROOT)}")
        if name == "social_backlog_10k":
            drawn = render_chart(recorded_runs())
            if drawn is not None:
                print(f"drew {drawn.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
