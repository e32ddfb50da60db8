"""The plain-Python placer Sieve used before the vectorised one (compiler/place.py up to main
70ad227), kept as the oracle of ``tests/test_place_fast.py``: the fast placer must give the same
tiles on every kernel (same heuristic, same tie-breaks), so no simulated result changes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from isa.arch import ArrayConfig, ChipConfig
from isa.errors import CompileError
from isa.ops import SIGNATURES, TileKind
from isa.program import Kernel, Node

Tile = tuple[int, int]

_IMPROVE_PASSES = 6


def reference_place(kernel: Kernel, chip: ChipConfig) -> Kernel:
    """The placement the plain-Python placer gave (no pin or capacity checks)."""
    array = chip.array
    kinds = {n.id: SIGNATURES[n.op].tile for n in kernel.nodes}
    pos: dict[str, Tile] = {}
    occupied: dict[Tile, str] = {}
    for n in kernel.nodes:
        if n.tile is not None:
            pos[n.id] = n.tile
            occupied[n.tile] = n.id
    # Mesh neighbours a node's tile needs so that its streams can leave and enter it.
    tracks = chip.interconnect.tracks_per_direction
    fan = {n.id: [0, 0] for n in kernel.nodes}
    for e in kernel.edges:
        fan[e.src][0] += 1
        fan[e.dst][1] += 1
    links_needed = {nid: -(-max(f) // tracks) for nid, f in fan.items()}
    for nid, need in links_needed.items():
        if need > 4 and nid not in pos:
            out_n, in_n = fan[nid]
            raise CompileError(
                f"place: kernel {kernel.name}: node {nid!r} has {out_n} output and {in_n} "
                f"input streams but a tile has at most 4 links x {tracks} tracks per "
                f"direction on chip {chip.name}; use a chip with more "
                "interconnect.tracks_per_direction or split the fan-out"
            )

    # Undirected incidence with multiplicity: every edge is a separate net.
    ends: list[tuple[str, str]] = [(e.src, e.dst) for e in kernel.edges if e.src != e.dst]
    incident: dict[str, list[int]] = {n.id: [] for n in kernel.nodes}
    for i, (a, b) in enumerate(ends):
        incident[a].append(i)
        incident[b].append(i)

    order = [n.id for n in kernel.topo_order()]
    movable = [nid for nid in order if nid not in pos]
    anchor: Tile = ((array.rows - 1) // 2, (array.cols - 1) // 2)
    free: dict[TileKind, list[Tile]] = {
        kind: [t for t in array.tiles(kind) if t not in occupied] for kind in TileKind
    }

    # 1. Constructive placement, growing from already-placed nodes.
    unplaced = list(movable)
    while unplaced:
        k = max(range(len(unplaced)),
                key=lambda j: (_placed_degree(unplaced[j], ends, incident, pos), -j))
        nid = unplaced.pop(k)
        others = [_other(ends[i], nid) for i in incident[nid]]
        targets = [pos[o] for o in others if o in pos]
        fits = [t for t in free[kinds[nid]] if _mesh_degree(t, array) >= links_needed[nid]]
        if not fits:
            raise CompileError(
                f"place: kernel {kernel.name}: no free {kinds[nid].name} tile on chip "
                f"{chip.name} has the {links_needed[nid]} mesh links node {nid!r} needs for "
                f"its {max(fan[nid])} streams; use a chip with more "
                "interconnect.tracks_per_direction or a larger array"
            )
        tile = min(fits, key=lambda t: (_dist_sum(t, targets), _dist(t, anchor), t))
        free[kinds[nid]].remove(tile)
        pos[nid] = tile
        occupied[tile] = nid

    # 2. Greedy move / swap improvement of total wire length.
    _improve(movable, pos, occupied, kinds, links_needed, ends, incident, array)

    placed = tuple(n if n.tile is not None else Node(n.id, n.op, n.attrs, pos[n.id])
                   for n in kernel.nodes)
    return kernel.with_nodes(placed)


def _improve(movable: Sequence[str], pos: dict[str, Tile], occupied: dict[Tile, str],
             kinds: dict[str, TileKind], links_needed: dict[str, int],
             ends: Sequence[tuple[str, str]], incident: dict[str, list[int]],
             array: ArrayConfig) -> None:
    """Greedy moves to free tiles and pairwise swaps, in place, while total wire length drops.

    A node only moves to (or swaps onto) a tile with at least ``links_needed`` mesh neighbours.
    """
    margin = array.mem_column_period   # a window this wide always holds a MEM column

    def cost(edge_ids: Iterable[int]) -> int:
        return sum(_dist(pos[ends[i][0]], pos[ends[i][1]]) for i in edge_ids)

    for _ in range(_IMPROVE_PASSES):
        improved = False
        for u in movable:
            kind = kinds[u]
            here = pos[u]
            base = cost(incident[u])
            best_delta = 0
            best_tile: Tile | None = None    # move u to this free tile, or
            best_swap: str | None = None     # swap u with this node
            targets = [pos[_other(ends[i], u)] for i in incident[u]]
            if targets:
                r0 = max(min(t[0] for t in targets) - margin, 0)
                r1 = min(max(t[0] for t in targets) + margin, array.rows - 1)
                c0 = max(min(t[1] for t in targets) - margin, 0)
                c1 = min(max(t[1] for t in targets) + margin, array.cols - 1)
                for r in range(r0, r1 + 1):
                    for c in range(c0, c1 + 1):
                        t = (r, c)
                        if (t in occupied or array.kind(r, c) is not kind
                                or _mesh_degree(t, array) < links_needed[u]):
                            continue
                        delta = _dist_sum(t, targets) - base
                        if delta < best_delta:
                            best_delta, best_tile = delta, t
            for v in movable:
                if (v == u or kinds[v] is not kind
                        or _mesh_degree(pos[v], array) < links_needed[u]
                        or _mesh_degree(here, array) < links_needed[v]):
                    continue
                edge_ids = set(incident[u]) | set(incident[v])
                before = cost(edge_ids)
                pos[u], pos[v] = pos[v], here
                delta = cost(edge_ids) - before
                pos[v], pos[u] = pos[u], here
                if delta < best_delta:
                    best_delta, best_tile, best_swap = delta, None, v
            if best_swap is not None:
                pos[u], pos[best_swap] = pos[best_swap], here
                occupied[pos[u]], occupied[here] = u, best_swap
                improved = True
            elif best_tile is not None:
                del occupied[here]
                occupied[best_tile] = u
                pos[u] = best_tile
                improved = True
        if not improved:
            return


def _placed_degree(nid: str, ends: Sequence[tuple[str, str]], incident: dict[str, list[int]],
                   pos: dict[str, Tile]) -> int:
    """Edges between ``nid`` and already-placed nodes."""
    return sum(1 for i in incident[nid] if _other(ends[i], nid) in pos)


def _mesh_degree(t: Tile, array: ArrayConfig) -> int:
    """Number of mesh neighbours of a tile: 4 inside, 3 on a border, 2 in a corner."""
    r, c = t
    return (r > 0) + (r < array.rows - 1) + (c > 0) + (c < array.cols - 1)


def _other(end: tuple[str, str], nid: str) -> str:
    """The end of an edge that is not ``nid``."""
    return end[1] if end[0] == nid else end[0]


def _dist(a: Tile, b: Tile) -> int:
    """Manhattan distance between two tiles."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def _dist_sum(t: Tile, targets: Iterable[Tile]) -> int:
    """Sum of Manhattan distances from ``t`` to each target."""
    return sum(abs(t[0] - r) + abs(t[1] - c) for r, c in targets)


