"""Routing: give every edge of a placed kernel a path of tracks over the mesh.

The interconnect is a statically configured, circuit-switched mesh (Onyx/Canal): every tile
has a switch box joined to its four neighbours by ``tracks_per_direction`` tracks in each
direction. A route occupies one track on every directed link it crosses for the whole kernel,
so each edge is its own net (a fan-out of k edges uses k tracks where the routes overlap).

Nets are routed with negotiated congestion (PathFinder, McMurchie & Ebeling, FPGA 1995). Every
iteration rips up and reroutes all nets in kernel edge order with A* (Manhattan heuristic,
admissible because every link costs at least ``_BASE_COST``) under the link cost

    (base + history) * (1 + present_factor * max(0, occupancy + 1 - tracks))

where ``occupancy`` counts the other nets on the link. After an iteration every overused link
gets ``history += _HISTORY_FACTOR * overuse`` and ``present_factor`` grows by
``_PRESENT_GROWTH``. Routing stops at the first iteration with no link over capacity.

A* is networkx's ``astar_path`` (its queue order and tie-breaks: priority, then insertion
order; neighbours in ``grid_2d_graph`` order: up, down, left, right) written out over a
precomputed mesh, so the compiler need not import networkx to route and each search avoids
its per-call overhead; ``tests/test_route_astar.py`` checks the two agree path for path. The
paths of a kernel depend only on its nets (the end tiles of its edges, in order), the mesh
and the tracks: they are computed once per process for each such set.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import replace
from functools import lru_cache
from itertools import count, pairwise

from isa.arch import ChipConfig
from isa.errors import CompileError
from isa.program import Kernel

Tile = tuple[int, int]
Link = tuple[Tile, Tile]

_BASE_COST = 1.0          # cost of one link (one hop) with no congestion
_PRESENT_FIRST = 0.5      # present-congestion factor in the first iteration
_PRESENT_GROWTH = 1.5     # multiplier of the present factor per iteration
_PRESENT_MAX = 1e6        # cap, so long runs stay finite
_HISTORY_FACTOR = 1.0     # history cost added per track of overuse per iteration

_MEMO_SIZE = 64
"""Routed kernels kept per process (the order choice routes the same graph for its screen and
its finalists), keyed by the nets, the mesh and the tracks."""

_memo: dict[tuple[tuple[tuple[Tile, Tile], ...], int, int, int, int], list[list[Tile]]] = {}


def route_kernel(kernel: Kernel, chip: ChipConfig, *, max_iterations: int = 30) -> Kernel:
    """Route every edge of a placed kernel over ``chip``'s mesh within the track capacity.

    Pre:  every node has a tile inside the array and the two ends of every edge are on
          distinct tiles (``place_kernel`` guarantees both); ``max_iterations >= 1``.
    Post: every edge's ``route`` is a path of 4-neighbouring tiles from its source tile to its
          destination tile (so ``hops >= 1``), and ``link_usage`` of the result is at most
          ``chip.interconnect.tracks_per_direction`` on every directed link. Existing routes
          are replaced; nodes are unchanged. Same input, same output.
    Raises: CompileError if a node is unplaced or off the array, or if links are still over
          capacity after ``max_iterations`` PathFinder iterations (naming the worst link).
    """
    if max_iterations < 1:
        raise CompileError(f"route: max_iterations must be >= 1 (got {max_iterations})")
    rows, cols = chip.array.rows, chip.array.cols
    tiles: dict[str, Tile] = {}
    for n in kernel.nodes:
        if n.tile is None:
            raise CompileError(f"route: kernel {kernel.name}: node {n.id!r} has no tile; "
                               "run place_kernel first")
        r, c = n.tile
        if not (0 <= r < rows and 0 <= c < cols):
            raise CompileError(f"route: kernel {kernel.name}: node {n.id!r} is on "
                               f"{_fmt(n.tile)}, outside the {rows}x{cols} array of "
                               f"chip {chip.name}")
        tiles[n.id] = n.tile
    nets: list[tuple[Tile, Tile]] = []
    for e in kernel.edges:
        src, dst = tiles[e.src], tiles[e.dst]
        if src == dst:
            raise CompileError(f"route: kernel {kernel.name}: edge {e.name} starts and ends on "
                               f"tile {_fmt(src)} (one instruction per tile)")
        nets.append((src, dst))
    if not nets:
        return kernel

    tracks = chip.interconnect.tracks_per_direction
    key = (tuple(nets), rows, cols, tracks, max_iterations)
    paths = _memo.get(key)
    if paths is None:
        router = _PathFinder(_mesh(rows, cols), tracks)
        paths = router.run(nets, max_iterations)
        if paths is not None:
            if len(_memo) >= _MEMO_SIZE:
                del _memo[next(iter(_memo))]
            _memo[key] = paths
    if paths is None:
        link, demand = router.worst_link()
        raise CompileError(
            f"route: cannot route kernel {kernel.name} on chip {chip.name}: link "
            f"{_fmt(link[0])}->{_fmt(link[1])} needs {demand} tracks, has {router.tracks} "
            f"(after {max_iterations} PathFinder iterations, {len(router.overused())} links "
            "over capacity); use a chip with more interconnect.tracks_per_direction or a "
            "larger array"
        )
    edges = tuple(replace(e, route=tuple(p)) for e, p in zip(kernel.edges, paths, strict=True))
    return kernel.with_edges(edges)


def link_usage(kernel: Kernel) -> dict[Link, int]:
    """Tracks used per directed link by the routes of ``kernel`` (unrouted edges use none)."""
    usage: Counter[Link] = Counter()
    for e in kernel.edges:
        usage.update(pairwise(e.route))
    return dict(usage)


@lru_cache(maxsize=8)
def _mesh(rows: int, cols: int) -> dict[Tile, tuple[tuple[Tile, Link], ...]]:
    """Each tile's mesh neighbours with the directed link to each, in networkx's
    ``grid_2d_graph(rows, cols).to_directed()`` order: tiles row-major; neighbours up, down,
    left, right."""
    out: dict[Tile, tuple[tuple[Tile, Link], ...]] = {}
    for r in range(rows):
        for c in range(cols):
            near = [(r - 1, c)] * (r > 0) + [(r + 1, c)] * (r < rows - 1) \
                + [(r, c - 1)] * (c > 0) + [(r, c + 1)] * (c < cols - 1)
            out[(r, c)] = tuple((t, ((r, c), t)) for t in near)
    return out


class _PathFinder:
    """Negotiated-congestion router state over one mesh (see the module docstring)."""

    def __init__(self, mesh: dict[Tile, tuple[tuple[Tile, Link], ...]], tracks: int) -> None:
        self.mesh = mesh
        self.tracks = tracks
        links = [link for near in mesh.values() for _, link in near]
        self.occupancy: dict[Link, int] = dict.fromkeys(links, 0)
        self.history: dict[Link, float] = dict.fromkeys(links, 0.0)
        self.present = _PRESENT_FIRST

    def run(self, nets: list[tuple[Tile, Tile]], max_iterations: int) -> list[list[Tile]] | None:
        """Route all nets; the paths, or None if links are overused after the last iteration."""
        paths: list[list[Tile]] = [[] for _ in nets]
        for _ in range(max_iterations):
            for i, (src, dst) in enumerate(nets):
                self._add(paths[i], -1)
                paths[i] = self._astar(src, dst)
                self._add(paths[i], +1)
            overused = self.overused()
            if not overused:
                return paths
            for link in overused:
                self.history[link] += _HISTORY_FACTOR * (self.occupancy[link] - self.tracks)
            self.present = min(self.present * _PRESENT_GROWTH, _PRESENT_MAX)
        return None

    def overused(self) -> list[Link]:
        """Links whose occupancy exceeds the track count, in mesh order."""
        return [link for link, occ in self.occupancy.items() if occ > self.tracks]

    def worst_link(self) -> tuple[Link, int]:
        """The most used link (all have the same tracks; ties: smallest) and its occupancy."""
        link = min(self.occupancy, key=lambda k: (-self.occupancy[k], k))
        return link, self.occupancy[link]

    def _astar(self, src: Tile, dst: Tile) -> list[Tile]:
        """networkx's ``astar_path(mesh, src, dst, heuristic=_manhattan, weight=cost)`` with
        the PathFinder cost of adding one more net to a link (the same queue entries, order
        and tie-breaks, hence the same path)."""
        occupancy, history, tracks, present = (self.occupancy, self.history, self.tracks,
                                               self.present)
        mesh = self.mesh
        tie = count()
        queue: list[tuple[float, int, Tile, float, Tile | None]] = [(0, next(tie), src, 0, None)]
        enqueued: dict[Tile, tuple[float, float]] = {}
        explored: dict[Tile, Tile | None] = {}
        while queue:
            _, _, cur, dist, parent = heapq.heappop(queue)
            if cur == dst:
                path = [cur]
                node = parent
                while node is not None:
                    path.append(node)
                    node = explored[node]
                path.reverse()
                return path
            if cur in explored:
                if explored[cur] is None:        # the source: keep it the root
                    continue
                if enqueued[cur][0] < dist:      # a better path was found meanwhile
                    continue
            explored[cur] = parent
            for near, link in mesh[cur]:
                over = occupancy[link] + 1 - tracks
                penalty = 1.0 + present * over if over > 0 else 1.0
                ncost = dist + (_BASE_COST + history[link]) * penalty
                if near in enqueued:
                    qcost, h = enqueued[near]
                    if qcost <= ncost:
                        continue
                else:
                    h = _manhattan(near, dst)
                enqueued[near] = ncost, h
                heapq.heappush(queue, (ncost + h, next(tie), near, ncost, cur))
        raise CompileError(f"route: no path from {_fmt(src)} to {_fmt(dst)} on the mesh")

    def _add(self, path: list[Tile], delta: int) -> None:
        for link in pairwise(path):
            self.occupancy[link] += delta


def _manhattan(a: Tile, b: Tile) -> float:
    """A* heuristic: a lower bound on the cost from a to b (every link costs >= base)."""
    return _BASE_COST * (abs(a[0] - b[0]) + abs(a[1] - b[1]))


def _fmt(t: Tile) -> str:
    return f"({t[0]},{t[1]})"
