"""Three months of the demo city, planned before anything is filed.

Which problems appear where and when; how many people report each one (a busy pothole is
reported by several, within a few metres and within the service's window, so the intake
clusters them into one ticket); who says "me too"; and what the city does about it (staff
acknowledge, a crew accepts, goes, fixes; a few are not ours; some wait). Pure and
deterministic: one seeded RNG, no database. ``app.seed.sample`` replays the plan in time
order through the real intake, workflow and work-order calls.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from app.reports.models import Channel
from geo.distance import offset_lonlat

HISTORY = timedelta(days=90)

# Reports per problem: most problems are reported once, a busy one up to 8 times. About a
# third of the reports join a ticket someone else opened (mean ≈ 1.7 reports per problem).
REPORTS_PER_PROBLEM = ((1, 70), (2, 12), (3, 7), (4, 4), (5, 3), (6, 2), (7, 1), (8, 1))
# How far from the first report a later one is placed: people pin the same pothole a few
# metres apart (well inside every demo service's duplicate radius).
SAME_SPOT_M = 8.0

CHANNELS = (Channel.app, Channel.app, Channel.app, Channel.web, Channel.open311)
ACCURACIES = (5.0, 8.0, 12.0, None)

SAMPLE_TEXT = {
    "pothole": [
        "Deep pothole in the cycle lane",
        "Road surface breaking up",
        "Pothole by the bus stop",
    ],
    "fly_tipping": [
        "Mattress dumped on the verge",
        "Bags of rubbish in the alley",
        "Old sofa left on the pavement",
    ],
    "streetlight": ["Street lamp out", "Light flickering all night", "Lamp on during the day"],
}
AGAIN_TEXT = {
    "pothole": ["Same pothole, getting deeper", "Nearly came off my bike here", None],
    "fly_tipping": ["Still there, and more bags now", "Smells, please clear it", None],
    "streetlight": ["Still dark here at night", "Lamp still out", None],
}


class Move(StrEnum):
    """What someone does to a ticket, in the words of the call that does it."""

    acknowledge = "acknowledge"  # staff: workflow.change_status(acknowledged)
    accept = "accept"  # the crew: work-order steps (app.workorders.service.advance)
    en_route = "en-route"
    on_site = "on-site"
    done = "done"
    take_back = "take_back"  # staff: workflow.assign(None), the crew no longer holds it
    dismiss = "dismiss"  # staff: workflow.change_status(not_our_responsibility)
    support = "support"  # a citizen: "me too" (app.tickets.service.support_or_follow)
    follow = "follow"


@dataclass(frozen=True)
class Kind:
    """What the plan needs to know of a service."""

    code: str
    duplicate_window: timedelta
    reopen_within: timedelta
    resolve_within: timedelta | None


@dataclass(frozen=True)
class Sighting:
    """One person reporting the problem."""

    at: datetime
    lon: float
    lat: float
    channel: Channel
    accuracy_m: float | None
    description: str | None


@dataclass(frozen=True)
class Action:
    at: datetime
    move: Move
    scheduled_for: datetime | None = None  # accept: when the crew plans to go
    backer: str | None = None  # support/follow: an e-mail address; None: the demo citizen


@dataclass
class Problem:
    number: int
    service: str
    sightings: list[Sighting]  # the first one opens the ticket
    actions: list[Action] = field(default_factory=list)


def plan(
    count: int,
    kinds: Sequence[Kind],
    points: Sequence[tuple[float, float]],
    inside: Callable[[tuple[float, float]], bool],
    *,
    now: datetime,
    seed: int = 2026,
) -> list[Problem]:
    """Problems whose sightings add up to ``count`` reports, over the ``HISTORY`` before
    ``now``; only what happened by ``now`` is planned. ``points`` gives one place per problem
    (at least ``count``), ``inside`` says whether a nearby point is still in the city."""
    rng = random.Random(seed)
    sizes, weights = zip(*REPORTS_PER_PROBLEM, strict=True)
    problems: list[Problem] = []
    left = count
    while left > 0:
        kind = rng.choice(kinds)
        lon, lat = points[len(problems)]
        reports = min(left, rng.choices(sizes, weights)[0])
        left -= reports
        start = now - timedelta(seconds=rng.uniform(600, HISTORY.total_seconds()))
        actions = _response(rng, kind, start)
        last = next((a for a in actions if a.move in (Move.done, Move.dismiss)), None)
        done = last.at if last else None
        # Reports and "me too"s come while the problem is there for all to see.
        seen_until = min(start + kind.duplicate_window * 0.9, done or now, now)
        first = _sighting(rng, start, lon, lat, SAMPLE_TEXT.get(kind.code, ["Problem"]))
        later = sorted(
            rng.uniform(0, (seen_until - start).total_seconds()) for _ in range(1, reports)
        )
        sightings = [first]
        for seconds in later:
            spot = _near(rng, lon, lat, inside)
            again = AGAIN_TEXT.get(kind.code, [None])
            sightings.append(_sighting(rng, start + timedelta(seconds=seconds), *spot, again))
        # Now and then the problem is back soon after the fix: that report reopens the
        # ticket (the intake's rule) and the crew goes again.
        if last is not None and last.move == Move.done and reports >= 2 and rng.random() < 0.15:
            back = last.at + kind.reopen_within * rng.uniform(0.1, 0.6)
            if back <= now:
                sightings[-1] = _sighting(rng, back, *_near(rng, lon, lat, inside), ["It's back"])
                actions += _crew_round(rng, kind, back)
        if reports >= 2 or rng.random() < 0.05:
            actions += _backers(rng, start, seen_until, len(problems))
        problems.append(
            Problem(
                number=len(problems),
                service=kind.code,
                sightings=sightings,
                actions=sorted((a for a in actions if a.at <= now), key=lambda a: a.at),
            )
        )
    return problems


def _sighting(
    rng: random.Random, at: datetime, lon: float, lat: float, texts: Sequence[str | None]
) -> Sighting:
    return Sighting(
        at=at,
        lon=round(lon, 7),
        lat=round(lat, 7),
        channel=rng.choice(CHANNELS),
        accuracy_m=rng.choice(ACCURACIES),
        description=rng.choice(texts),
    )


def _near(
    rng: random.Random, lon: float, lat: float, inside: Callable[[tuple[float, float]], bool]
) -> tuple[float, float]:
    spot = offset_lonlat(
        lon, lat, rng.uniform(-SAME_SPOT_M, SAME_SPOT_M), rng.uniform(-SAME_SPOT_M, SAME_SPOT_M)
    )
    return spot if inside(spot) else (lon, lat)


def _response(rng: random.Random, kind: Kind, start: datetime) -> list[Action]:
    """What the city does once the ticket is open (times may lie beyond now: not yet)."""
    roll = rng.random()
    if roll < 0.05:
        # Not ours (private land, a utility's cover): staff take it off the crew's list first.
        at = start + timedelta(hours=rng.uniform(2, 72))
        return [Action(at, Move.take_back), Action(at + timedelta(minutes=1), Move.dismiss)]
    if roll < 0.13:
        return []  # nobody has looked at it yet
    acknowledged = start + timedelta(hours=rng.uniform(1, 40))
    if roll < 0.21:
        return [Action(acknowledged, Move.acknowledge)]  # waiting for a crew
    return [Action(acknowledged, Move.acknowledge), *_crew_round(rng, kind, acknowledged)]


def _crew_round(rng: random.Random, kind: Kind, start: datetime) -> list[Action]:
    """The crew accepts the work order, books a visit, goes, and finishes."""
    accepted = start + timedelta(hours=rng.uniform(1, 48))
    # Most visits fall within the service level; one in six runs late.
    resolve = kind.resolve_within or timedelta(days=7)
    lead = resolve * (rng.uniform(0.05, 0.6) if rng.random() > 1 / 6 else rng.uniform(1.0, 1.8))
    visit = accepted + lead
    en_route = visit + timedelta(minutes=rng.uniform(0, 120))
    on_site = en_route + timedelta(minutes=rng.uniform(10, 45))
    done = on_site + timedelta(minutes=rng.uniform(20, 150))
    return [
        Action(accepted, Move.accept, scheduled_for=visit),
        Action(en_route, Move.en_route),
        Action(on_site, Move.on_site),
        Action(done, Move.done),
    ]


def _backers(rng: random.Random, start: datetime, until: datetime, number: int) -> list[Action]:
    """A few neighbours say "me too" or follow; the demo citizen follows some tickets."""
    span = max(0.0, (until - start).total_seconds())
    actions = []
    for n in range(rng.choice((0, 1, 1, 2, 3, 4))):
        move = Move.support if rng.random() < 0.8 else Move.follow
        at = start + timedelta(seconds=rng.uniform(0, span))
        actions.append(Action(at, move, backer=f"neighbour-{number}-{n}@example.org"))
    if rng.random() < 0.1:
        at = start + timedelta(seconds=rng.uniform(0, span))
        actions.append(Action(at, rng.choice((Move.support, Move.follow))))
    return actions
