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

from collections.abc import Sequence

import numpy as np

from isa.arch import ArrayConfig, ChipConfig
from isa.errors import CompileError
from isa.ops import SIGNATURES, TileKind
from isa.program import Kernel, Node

Tile = tuple[int, int]

_IMPROVE_PASSES = 6   # upper bound on improvement passes; each is O(n^2 + n * window)

_MEMO_SIZE = 64
"""Placements kept per process (the order choice places the same graph for its screen and its
finalists): an entry is a node count of tiles, keyed by the graph's structure."""

_Key = tuple[tuple[tuple[str, str, Tile | None], ...], tuple[tuple[str, str], ...],
             ArrayConfig, int]
_memo: dict[_Key, tuple[Tile, ...]] = {}


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

    The placement depends only on the nodes (ids, opcodes, pins, order), the edges' ends (in
    order), the array and the tracks: it is computed once per process for each such graph
    (the tiles are kept, not the kernel, so a graph lowered for other tile shapes shares it).
    """
    key: _Key = (tuple((n.id, n.op.value, n.tile) for n in kernel.nodes),
                 tuple((e.src, e.dst) for e in kernel.edges), chip.array,
                 chip.interconnect.tracks_per_direction)
    tiles = _memo.get(key)
    if tiles is None:
        tiles = _place(kernel, chip)
        if len(_memo) >= _MEMO_SIZE:
            del _memo[next(iter(_memo))]
        _memo[key] = tiles
    placed = tuple(n if n.tile is not None else Node(n.id, n.op, n.attrs, t)
                   for n, t in zip(kernel.nodes, tiles, strict=True))
    return kernel.with_nodes(placed)


def _place(kernel: Kernel, chip: ChipConfig) -> tuple[Tile, ...]:
    """The tile of every node of ``kernel`` (in node order): :func:`place_kernel`'s work."""
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

    lay = Layout(kernel, array, pos)
    order = [lay.index[n.id] for n in kernel.topo_order()]
    movable = [u for u in order if not lay.placed[u]]
    need = np.array([links_needed[nid] for nid in lay.ids], dtype=np.int64)

    # 1. Constructive placement, growing from already-placed nodes: the unplaced node with
    # the most edges to placed ones (ties: the earliest), on the free tile of its kind with
    # enough links minimising (wire length to its placed neighbours, distance to the anchor,
    # row, col).
    anchor: Tile = ((array.rows - 1) // 2, (array.cols - 1) // 2)
    anchor_dist = (np.abs(lay.grid_r - anchor[0]) + np.abs(lay.grid_c - anchor[1]))
    tie = (anchor_dist * array.rows + lay.grid_r) * array.cols + lay.grid_c
    tie_span = int(tie.max()) + 1
    degree = lay.adj[:, lay.placed].sum(axis=1)      # edges to placed nodes
    unplaced = list(movable)
    while unplaced:
        k = int(np.argmax(degree[unplaced]))         # first of the most connected
        u = unplaced.pop(k)
        ok = ((lay.kind_grid == lay.kind[u]) & ~lay.occupied & (lay.mesh >= need[u]))
        if not ok.any():
            nid = lay.ids[u]
            raise CompileError(
                f"place: kernel {kernel.name}: no free {kinds[nid].name} tile on chip "
                f"{chip.name} has the {links_needed[nid]} mesh links node {nid!r} needs for "
                f"its {max(fan[nid])} streams; use a chip with more "
                "interconnect.tracks_per_direction or a larger array"
            )
        score = lay.wire_to_placed(u, lay.grid_r, lay.grid_c) * tie_span + tie
        flat = int(np.argmin(np.where(ok, score, np.iinfo(np.int64).max)))
        lay.put(u, (flat // array.cols, flat % array.cols))
        degree += lay.adj[:, u]

    # 2. Greedy move / swap improvement of total wire length.
    _improve(lay, movable, need, array)
    return tuple((int(r), int(c)) for r, c in lay.pos)


class Layout:
    """A placement in progress as arrays: node positions, the edges between nodes (with
    multiplicity: every edge is a separate net), the pairwise Manhattan distances of the
    placed nodes, each node's wire length and the tiles occupied. The wire-length change of a
    move or a swap is computed from the moved nodes' edges alone (:meth:`move_deltas`,
    :meth:`swap_deltas`) in integer arithmetic, so it equals the difference of the two full
    sums (:meth:`total`) exactly."""

    def __init__(self, kernel: Kernel, array: ArrayConfig, pinned: dict[str, Tile]) -> None:
        self.ids = [n.id for n in kernel.nodes]
        self.index = {nid: i for i, nid in enumerate(self.ids)}
        n = len(self.ids)
        self.adj = np.zeros((n, n), dtype=np.int64)
        for e in kernel.edges:
            if e.src != e.dst:
                a, b = self.index[e.src], self.index[e.dst]
                self.adj[a, b] += 1
                self.adj[b, a] += 1
        self.nbrs = [np.flatnonzero(row) for row in self.adj]    # neighbours of each node
        self.wts = [self.adj[u, nb] for u, nb in enumerate(self.nbrs)]  # edges to each
        self.arc_from, self.arc_to = np.nonzero(self.adj)        # both directions
        self.arc_mult = self.adj[self.arc_from, self.arc_to].astype(np.float64)
        kinds = list(TileKind)
        self.kind = np.array([kinds.index(SIGNATURES[x.op].tile) for x in kernel.nodes],
                             dtype=np.int64)
        self.pos = np.zeros((n, 2), dtype=np.int64)
        self.placed = np.zeros(n, dtype=bool)
        self.dist = np.zeros((n, n), dtype=np.int64)
        self.cost = np.zeros(n, dtype=np.int64)       # wire length at each node (placed ends)
        rows, cols = array.rows, array.cols
        self.grid_r, self.grid_c = np.divmod(np.arange(rows * cols, dtype=np.int64), cols)
        self.kind_grid = np.array([kinds.index(array.kind(int(r), int(c)))
                                   for r, c in zip(self.grid_r, self.grid_c)], dtype=np.int64)
        self.mesh = ((self.grid_r > 0).astype(np.int64) + (self.grid_r < rows - 1)
                     + (self.grid_c > 0) + (self.grid_c < cols - 1))
        self.occupied = np.zeros(rows * cols, dtype=bool)
        self.cols = cols
        for nid, t in pinned.items():
            self.put(self.index[nid], t)

    def flat(self, u: int) -> int:
        """The flat index (row * cols + col) of node ``u``'s tile."""
        return int(self.pos[u, 0]) * self.cols + int(self.pos[u, 1])

    def put(self, u: int, tile: Tile) -> None:
        """Place (or move) node ``u`` on ``tile``."""
        if self.placed[u]:
            self.occupied[self.flat(u)] = False
        self.pos[u] = tile
        self.placed[u] = True
        self.occupied[tile[0] * self.cols + tile[1]] = True
        self._moved(u)

    def swap(self, u: int, v: int) -> None:
        """Exchange the tiles of placed nodes ``u`` and ``v``."""
        self.pos[[u, v]] = self.pos[[v, u]]
        self._moved(u)
        self._moved(v)

    def _moved(self, u: int) -> None:
        """Update the distances and wire lengths after node ``u`` changed tiles."""
        d = np.abs(self.pos - self.pos[u]).sum(axis=1)
        d[~self.placed] = 0
        nb = self.nbrs[u]
        self.cost[nb] += self.wts[u] * (d[nb] - self.dist[u, nb])
        self.dist[u] = d
        self.dist[:, u] = d
        self.cost[u] = self.wts[u] @ d[nb]

    def wire_to_placed(self, u: int, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Wire length of ``u``'s edges to placed nodes were ``u`` on each tile (r, c)."""
        nb = self.nbrs[u]
        nb, w = nb[self.placed[nb]], self.wts[u][self.placed[nb]]
        if nb.size == 0:
            return np.zeros(r.shape, dtype=np.int64)
        return ((np.abs(r[:, None] - self.pos[nb, 0]) + np.abs(c[:, None] - self.pos[nb, 1]))
                @ w)

    def move_deltas(self, u: int, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Change of total wire length if ``u`` moved to each tile (r, c) (all placed)."""
        return self.wire_to_placed(u, r, c) - self.cost[u]

    def swap_deltas(self, u: int, vs: np.ndarray) -> np.ndarray:
        """Change of total wire length if ``u`` swapped tiles with each node of ``vs`` (all
        placed, none is ``u``): u's edges now leave v's tile and v's leave u's; an edge
        between the two keeps its length (it is counted moved in both terms: added back)."""
        nb, dist = self.nbrs[u], self.dist
        from_v = (self.wts[u] @ dist[nb])[vs] if nb.size else np.zeros(vs.size, np.int64)
        to_u = np.bincount(self.arc_from, weights=self.arc_mult * dist[u, self.arc_to],
                           minlength=len(self.ids)).astype(np.int64)[vs]
        return (from_v - self.cost[u]) + (to_u - self.cost[vs]) + 2 * self.adj[u, vs] * dist[u, vs]

    def total(self) -> int:
        """Total wire length (all nodes placed)."""
        return int(self.cost.sum()) // 2


def _improve(lay: Layout, movable: Sequence[int], need: np.ndarray, array: ArrayConfig) -> None:
    """Greedy moves to free tiles and pairwise swaps, in place, while total wire length drops.

    Each movable node in turn takes the best strict improvement: a move to the first tile (row
    major) of least wire length in the window around its neighbours, or a swap with the first
    movable node of its kind (in ``movable``'s order) of least wire length, the swap only when
    strictly better than the move. A node only moves to (or swaps onto) a tile with at least
    ``need`` mesh neighbours.
    """
    margin = array.mem_column_period   # a window this wide always holds a MEM column
    moving = np.array(movable, dtype=np.int64)
    for _ in range(_IMPROVE_PASSES):
        improved = False
        for u in movable:
            here = lay.flat(u)
            best_delta = 0
            best_tile = -1                    # move u to this free tile (flat index), or
            best_swap = -1                    # swap u with this node
            nb = lay.nbrs[u]
            if nb.size:
                r0 = max(int(lay.pos[nb, 0].min()) - margin, 0)
                r1 = min(int(lay.pos[nb, 0].max()) + margin, array.rows - 1)
                c0 = max(int(lay.pos[nb, 1].min()) - margin, 0)
                c1 = min(int(lay.pos[nb, 1].max()) + margin, array.cols - 1)
                flat = (np.arange(r0, r1 + 1)[:, None] * array.cols
                        + np.arange(c0, c1 + 1)[None, :]).ravel()
                flat = flat[(lay.kind_grid[flat] == lay.kind[u]) & ~lay.occupied[flat]
                            & (lay.mesh[flat] >= need[u])]
                if flat.size:
                    deltas = lay.move_deltas(u, lay.grid_r[flat], lay.grid_c[flat])
                    k = int(np.argmin(deltas))
                    if deltas[k] < best_delta:
                        best_delta, best_tile = int(deltas[k]), int(flat[k])
            vs = moving[(moving != u) & (lay.kind[moving] == lay.kind[u])]
            if vs.size:
                v_flat = lay.pos[vs, 0] * array.cols + lay.pos[vs, 1]
                vs = vs[(lay.mesh[v_flat] >= need[u]) & (lay.mesh[here] >= need[vs])]
            if vs.size:
                deltas = lay.swap_deltas(u, vs)
                k = int(np.argmin(deltas))
                if deltas[k] < best_delta:
                    best_delta, best_tile, best_swap = int(deltas[k]), -1, int(vs[k])
            if best_swap >= 0:
                lay.swap(u, best_swap)
                improved = True
            elif best_tile >= 0:
                lay.put(u, (best_tile // array.cols, best_tile % array.cols))
                improved = True
        if not improved:
            return


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


def _dist(a: Tile, b: Tile) -> int:
    """Manhattan distance between two tiles."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def _fmt(t: Tile) -> str:
    return f"({t[0]},{t[1]})"
