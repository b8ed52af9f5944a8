"""A crew's day route: the order to visit stops from a start point, on haversine distances.

Small instances (up to ``EXACT_UP_TO`` stops) are solved exactly (Held-Karp dynamic
programming). Larger ones start from the nearest-neighbour order and improve it with 2-opt
(reverse a stretch) and Or-opt (move a run of one to three stops elsewhere, either way round)
until no move shortens the route. Only improving moves are taken, so the result is never
longer than nearest neighbour.

The route is open by default: it ends at the last stop (crews do not drive back to the depot
between jobs). ``return_to_start`` closes it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from geo.distance import haversine_m

LonLat = tuple[float, float]

EXACT_UP_TO = 8  # 2^8 * 8 * 8 steps: a few milliseconds in Python
_EPSILON = 1e-7  # metres: ignore "improvements" that are rounding noise


@dataclass(frozen=True)
class Route:
    """``order``: indexes into the stops, in visiting order. ``legs_m[i]``: the leg that ends
    at ``order[i]`` (the first from the start); with ``return_to_start`` one more leg, back to
    the start, ends the tuple."""

    order: tuple[int, ...]
    legs_m: tuple[float, ...]
    total_m: float
    method: str  # "exact" | "nearest_neighbour" | "2-opt+or-opt"


def distance_matrix(points: Sequence[LonLat]) -> list[list[float]]:
    """Haversine distances (metres) between every pair of ``points``."""
    n = len(points)
    matrix = [[0.0] * n for _ in range(n)]
    for i in range(n):
        lon1, lat1 = points[i]
        row = matrix[i]
        for j in range(i + 1, n):
            d = haversine_m(lon1, lat1, points[j][0], points[j][1])
            row[j] = d
            matrix[j][i] = d
    return matrix


def plan_route(
    start: LonLat,
    stops: Sequence[LonLat],
    *,
    return_to_start: bool = False,
    exact_up_to: int = EXACT_UP_TO,
) -> Route:
    """The shortest order we can find to visit every stop from ``start``."""
    dist = distance_matrix([start, *stops])
    n = len(stops)
    if n <= exact_up_to:
        tour = _held_karp(dist, n, return_to_start)
        method = "exact"
    else:
        tour = _nearest_neighbour(dist, n)
        _improve(dist, tour, return_to_start)
        method = "2-opt+or-opt"
    return _route(dist, tour, return_to_start, method)


def nearest_neighbour(
    start: LonLat, stops: Sequence[LonLat], *, return_to_start: bool = False
) -> Route:
    """Always the nearest unvisited stop next: the baseline ``plan_route`` never does worse than."""
    dist = distance_matrix([start, *stops])
    return _route(dist, _nearest_neighbour(dist, len(stops)), return_to_start, "nearest_neighbour")


def route_length(
    start: LonLat, stops: Sequence[LonLat], order: Sequence[int], *, return_to_start: bool = False
) -> float:
    """The length (metres) of visiting ``stops`` in ``order`` from ``start``."""
    dist = distance_matrix([start, *stops])
    tour = [0, *(i + 1 for i in order)]
    return sum(_legs(dist, tour, return_to_start))


# -- internals: node 0 is the start, node i (1..n) is stop i - 1 --------------------------------


def _route(dist: list[list[float]], tour: list[int], closed: bool, method: str) -> Route:
    legs = _legs(dist, tour, closed)
    return Route(
        order=tuple(node - 1 for node in tour[1:]),
        legs_m=tuple(legs),
        total_m=sum(legs),
        method=method,
    )


def _legs(dist: list[list[float]], tour: Sequence[int], closed: bool) -> list[float]:
    legs = [dist[a][b] for a, b in itertools.pairwise(tour)]
    if closed and len(tour) > 1:
        legs.append(dist[tour[-1]][tour[0]])
    return legs


def _nearest_neighbour(dist: list[list[float]], n: int) -> list[int]:
    tour = [0]
    left = set(range(1, n + 1))
    here = 0
    while left:
        row = dist[here]
        here = min(left, key=lambda node: (row[node], node))  # ties: lowest index, stable
        left.remove(here)
        tour.append(here)
    return tour


def _held_karp(dist: list[list[float]], n: int, closed: bool) -> list[int]:
    """Exact shortest path (or tour) from node 0 through nodes 1..n."""
    if n == 0:
        return [0]
    full = (1 << n) - 1
    # cost[mask][j]: shortest from 0 through the stops in mask, ending at stop j (bit j).
    inf = float("inf")
    cost = [[inf] * n for _ in range(1 << n)]
    parent = [[-1] * n for _ in range(1 << n)]
    for j in range(n):
        cost[1 << j][j] = dist[0][j + 1]
    for mask in range(1, 1 << n):
        row = cost[mask]
        for j in range(n):
            here = row[j]
            if here == inf or not mask & (1 << j):
                continue
            from_j = dist[j + 1]
            for k in range(n):
                bit = 1 << k
                if mask & bit:
                    continue
                candidate = here + from_j[k + 1]
                nxt = mask | bit
                if candidate < cost[nxt][k]:
                    cost[nxt][k] = candidate
                    parent[nxt][k] = j
    end = min(range(n), key=lambda j: cost[full][j] + (dist[j + 1][0] if closed else 0.0))
    order = []
    mask, j = full, end
    while j != -1:
        order.append(j + 1)
        mask, j = mask & ~(1 << j), parent[mask][j]
    return [0, *reversed(order)]


def _improve(dist: list[list[float]], tour: list[int], closed: bool) -> None:
    """2-opt and Or-opt, first improvement, until neither finds a shorter route (in place)."""
    while _two_opt(dist, tour, closed) or _or_opt(dist, tour, closed):
        pass


def _after(dist: list[list[float]], tour: list[int], i: int, closed: bool) -> float:
    """The length of the edge leaving position ``i`` (0 past an open route's end)."""
    if i + 1 < len(tour):
        return dist[tour[i]][tour[i + 1]]
    return dist[tour[i]][tour[0]] if closed else 0.0


def _two_opt(dist: list[list[float]], tour: list[int], closed: bool) -> bool:
    """Reverse tour[i..j] when that shortens the route; True if any move was made."""
    improved = False
    last = len(tour) - 1
    for i in range(1, last):
        for j in range(i + 1, last + 1):
            a, b = tour[i - 1], tour[i]
            c = tour[j]
            if j < last:
                d = tour[j + 1]
                delta = dist[a][c] + dist[b][d] - dist[a][b] - dist[c][d]
            elif closed:
                delta = dist[a][c] + dist[b][0] - dist[a][b] - dist[c][0]
            else:
                delta = dist[a][c] - dist[a][b]
            if delta < -_EPSILON:
                tour[i : j + 1] = tour[i : j + 1][::-1]
                improved = True
    return improved


def _or_opt(dist: list[list[float]], tour: list[int], closed: bool) -> bool:
    """Move a run of 1-3 stops between two other neighbours (as is or reversed)."""
    last = len(tour) - 1
    for length in (1, 2, 3):
        for i in range(1, last - length + 2):
            j = i + length - 1  # the run is tour[i..j]
            prev, first, end = tour[i - 1], tour[i], tour[j]
            removed = dist[prev][first] + _after(dist, tour, j, closed)
            nxt = tour[j + 1] if j < last else (tour[0] if closed else None)
            bridged = dist[prev][nxt] if nxt is not None else 0.0
            gain = removed - bridged
            if gain <= _EPSILON:
                continue
            rest = tour[:i] + tour[j + 1 :]
            run = tour[i : j + 1]
            for k in range(len(rest)):  # insert after rest[k]
                if k == i - 1:
                    continue  # where it came from
                u = rest[k]
                v = rest[k + 1] if k + 1 < len(rest) else (rest[0] if closed else None)
                old = dist[u][v] if v is not None else 0.0
                forward = dist[u][first] + (dist[end][v] if v is not None else 0.0) - old
                backward = dist[u][end] + (dist[first][v] if v is not None else 0.0) - old
                if min(forward, backward) < gain - _EPSILON:
                    piece = run if forward <= backward else run[::-1]
                    tour[:] = rest[: k + 1] + piece + rest[k + 1 :]
                    return True
    return False
