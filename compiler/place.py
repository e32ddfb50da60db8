"""Placement: put every instruction of a kernel on its own PE or MEM tile.

Onyx configures one mode per tile, so a placement is an injective map from nodes to tiles of
the kind their opcode needs (``SIGNATURES[op].tile``). The objective is total wire length: the
sum over edges of the Manhattan distance between the two end tiles, which is the number of
links a route needs when the mesh is not congested (each edge is a separate net, so a fan-out
of k edges counts k times).

The heuristic is deterministic and runs in milliseconds for the kernels Sieve builds (10-40
nodes on grids up to 16 x 32):

1. Constructive: repeatedly take the unplaced node with the most edges to already-placed
   nodes (ties: earliest in ``Kernel.topo_order``), so a connected kernel grows as one cluster.
   It goes on the free tile of its kind minimising (wire length to its placed neighbours,
   distance to the anchor, row, col). The anchor is the centre tile
   ((rows - 1) // 2, (cols - 1) // 2): the cluster can spread and route on all four sides.
   (Row 0, the GLB side, buys nothing here: the simulator models GLB<->array transfers as
   link bandwidth, not as a distance, and edge tiles have fewer links to route over.)
2. Improvement: up to ``_IMPROVE_PASSES`` passes over the movable nodes in the same order;
   each node either moves to the best free tile of its kind near its neighbours or swaps with
   another movable node of the same kind, whichever lowers the total wire length most (only
   strict improvements are taken). Stops early at a pass without improvement.

Routability: a node never goes on a tile whose links cannot carry its streams, i.e. a node
with k outgoing (or incoming) edges needs a tile with at least ceil(k / tracks_per_direction)
mesh neighbours (a corner has 2, a border tile 3), since every edge is its own net.

Nodes whose ``tile`` is already set are pinned: they keep their tiles and only attract their
neighbours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from isa.arch import ArrayConfig, ChipConfig
from isa.errors import CompileError
from isa.ops import SIGNATURES, TileKind
from isa.program import Kernel, Node

Tile = tuple[int, int]

_IMPROVE_PASSES = 6   # upper bound on improvement passes; each is O(n^2 + n * window)


def place_kernel(kernel: Kernel, chip: ChipConfig) -> Kernel:
    """Assign every node of ``kernel`` a tile of ``chip``'s array.

    Pre:  node ids are unique and every edge joins two distinct nodes of the kernel; nodes
          with a ``tile`` (pinned) are on distinct in-grid tiles of their opcode's kind.
    Post: every node has a tile of its opcode's kind (``SIGNATURES[op].tile``), no two nodes
          share a tile, pinned nodes keep theirs, and every unpinned node's tile has enough
          mesh links for its streams (see the module docstring); edges are unchanged (routes
          still empty unless they were set). Same input, same output.
    Raises: CompileError if a pin is invalid, the array lacks PE or MEM tiles, or a node has
          more streams than any (free) tile's links can carry.
    """
    array = chip.array
    kinds = {n.id: SIGNATURES[n.op].tile for n in kernel.nodes}
    pos: dict[str, Tile] = {}
    occupied: dict[Tile, str] = {}
    for n in kernel.nodes:
        if n.tile is not None:
            _check_pin(kernel, n, kinds[n.id], array)
            if n.tile in occupied:
                raise CompileError(
                    f"place: kernel {kernel.name}: nodes {occupied[n.tile]!r} and {n.id!r} are "
                    f"both pinned to tile {_fmt(n.tile)} (one instruction per tile)"
                )
            pos[n.id] = n.tile
            occupied[n.tile] = n.id
    _check_capacity(kernel, chip, kinds)
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


def wire_length(kernel: Kernel) -> int:
    """Sum over edges of the Manhattan distance between end tiles (every node must be placed)."""
    tiles = {n.id: n.tile for n in kernel.nodes}
    total = 0
    for e in kernel.edges:
        a, b = tiles[e.src], tiles[e.dst]
        if a is None or b is None:
            raise CompileError(f"place: kernel {kernel.name}: edge {e.name} has an unplaced end")
        total += _dist(a, b)
    return total


def _check_pin(kernel: Kernel, node: Node, kind: TileKind, array: ArrayConfig) -> None:
    """Reject a pinned tile outside the grid or of the wrong kind."""
    assert node.tile is not None
    r, c = node.tile
    if not (0 <= r < array.rows and 0 <= c < array.cols):
        raise CompileError(
            f"place: kernel {kernel.name}: node {node.id!r} is pinned to {_fmt(node.tile)}, "
            f"outside the {array.rows}x{array.cols} array"
        )
    if array.kind(r, c) is not kind:
        raise CompileError(
            f"place: kernel {kernel.name}: node {node.id!r} ({node.op.value}) needs a "
            f"{kind.name} tile but is pinned to {_fmt(node.tile)}, a "
            f"{array.kind(r, c).name} tile"
        )


def _check_capacity(kernel: Kernel, chip: ChipConfig, kinds: dict[str, TileKind]) -> None:
    """Raise if the kernel needs more tiles of either kind than the array has."""
    need = {kind: 0 for kind in TileKind}
    for kind in kinds.values():
        need[kind] += 1
    have = {kind: len(chip.array.tiles(kind)) for kind in TileKind}
    if all(need[k] <= have[k] for k in TileKind):
        return
    a = chip.array
    raise CompileError(
        f"place: kernel {kernel.name} needs {need[TileKind.MEM]} MEM tiles and "
        f"{need[TileKind.PE]} PE tiles but chip {chip.name} has {have[TileKind.MEM]} MEM and "
        f"{have[TileKind.PE]} PE tiles ({a.rows}x{a.cols} array, MEM column "
        f"period {a.mem_column_period}); use a bigger chip config (more array rows or "
        f"cols) or tile the kernel into smaller pieces"
    )


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


def _fmt(t: Tile) -> str:
    return f"({t[0]},{t[1]})"
