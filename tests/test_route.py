"""The day-route algorithm alone (geo/route.py): exact on small instances, never worse than
nearest neighbour, fast enough for a crew's day."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from geo.distance import haversine_m, offset_lonlat
from geo.route import (
    EXACT_UP_TO,
    distance_matrix,
    nearest_neighbour,
    plan_route,
    route_length,
)

START = (-2.5879, 51.4545)


def scatter(rng: random.Random, n: int, spread_m: float = 4000.0) -> list[tuple[float, float]]:
    return [
        offset_lonlat(*START, rng.uniform(-spread_m, spread_m), rng.uniform(-spread_m, spread_m))
        for _ in range(n)
    ]


def brute_force(stops: list[tuple[float, float]], closed: bool) -> float:
    """The shortest route by trying every order."""
    if not stops:
        return 0.0
    dist = distance_matrix([START, *stops])
    best = float("inf")
    for order in itertools.permutations(range(1, len(stops) + 1)):
        length = dist[0][order[0]] + sum(dist[a][b] for a, b in itertools.pairwise(order))
        if closed:
            length += dist[order[-1]][0]
        best = min(best, length)
    return best


def test_no_stops_and_one_stop() -> None:
    empty = plan_route(START, [])
    assert (empty.order, empty.legs_m, empty.total_m) == ((), (), 0.0)
    stop = offset_lonlat(*START, 300, 400)
    one = plan_route(START, [stop])
    assert one.order == (0,)
    assert one.total_m == pytest.approx(500, abs=1.0)
    back = plan_route(START, [stop], return_to_start=True)
    assert back.legs_m == pytest.approx((one.total_m, one.total_m))


def test_stops_along_a_street_are_visited_in_order() -> None:
    # Shuffled points on a line east of the start: the only sensible way is west to east.
    east = [offset_lonlat(*START, 100.0 * k, 0) for k in range(1, 16)]
    shuffled = east[:]
    random.Random(3).shuffle(shuffled)
    route = plan_route(START, shuffled)
    assert [shuffled[i] for i in route.order] == east
    assert route.total_m == pytest.approx(1500, rel=0.01)  # sphere vs ellipsoid


def test_a_ring_of_stops_is_walked_round_not_across() -> None:
    # Twelve stops on a 1 km circle around the start: the best closed tour goes round it.
    ring = [offset_lonlat(*START, 1000 * c, 1000 * s) for c, s in _circle(12)]
    route = plan_route(START, ring, return_to_start=True, exact_up_to=0)
    steps = [(b - a) % 12 for a, b in itertools.pairwise(route.order)]
    assert set(steps) <= {1, 11}, route.order  # always to a neighbour on the ring


@pytest.mark.parametrize("closed", [False, True])
def test_small_routes_are_optimal(closed: bool) -> None:
    rng = random.Random(11)
    for n in range(EXACT_UP_TO + 1):
        for _ in range(6 if n < 7 else 2):
            stops = scatter(rng, n)
            route = plan_route(START, stops, return_to_start=closed)
            assert route.method == "exact"
            assert route.total_m == pytest.approx(brute_force(stops, closed), abs=1e-6)


@pytest.mark.parametrize("closed", [False, True])
def test_larger_routes_never_lose_to_nearest_neighbour(closed: bool) -> None:
    rng = random.Random(5)
    for n in (9, 12, 20, 35, 60):
        for _ in range(4):
            stops = scatter(rng, n)
            route = plan_route(START, stops, return_to_start=closed)
            baseline = nearest_neighbour(START, stops, return_to_start=closed)
            assert route.method == "2-opt+or-opt"
            assert sorted(route.order) == list(range(n))
            assert route.total_m <= baseline.total_m + 1e-6


def test_the_heuristic_is_near_optimal_where_we_can_check() -> None:
    rng = random.Random(8)
    gaps = []
    for _ in range(30):
        stops = scatter(rng, 7)
        best = brute_force(stops, False)
        heuristic = plan_route(START, stops, exact_up_to=0).total_m
        assert heuristic >= best - 1e-6
        gaps.append(heuristic / best - 1)
    assert max(gaps) < 0.1
    assert sum(g == pytest.approx(0, abs=1e-9) for g in gaps) >= 25  # optimal most times


def test_legs_add_up_and_follow_the_order() -> None:
    stops = scatter(random.Random(2), 25)
    route = plan_route(START, stops)
    points = [START, *(stops[i] for i in route.order)]
    expected = [haversine_m(*a, *b) for a, b in itertools.pairwise(points)]
    assert route.legs_m == pytest.approx(expected)
    assert route.total_m == pytest.approx(sum(expected))
    assert route.total_m == pytest.approx(route_length(START, stops, route.order))


def test_fifty_stops_plan_quickly() -> None:
    # The target is 100 ms on the benchmark machine (bench/run.py measures it); here we
    # only guard against a slow regression on a shared, noisy test machine.
    stops = scatter(random.Random(50), 50, spread_m=6000.0)
    started = time.perf_counter()
    route = plan_route(START, stops)
    elapsed = time.perf_counter() - started
    assert sorted(route.order) == list(range(50))
    assert elapsed < 1.0


def _circle(n: int) -> list[tuple[float, float]]:
    import math

    return [(math.cos(2 * math.pi * k / n), math.sin(2 * math.pi * k / n)) for k in range(n)]
