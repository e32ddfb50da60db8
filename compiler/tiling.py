"""Tiling: cut a kernel whose fibertree levels exceed a memory tile into tile calls.

Pre: the kernel's operands as fibertree images (whole tensors), its assignment and loop order.
Post: ``None`` when every level of every operand and of the output fits one MEM tile, else an
:class:`isa.tiles.Tiling`: per index variable a tile size such that, in every tile, each
level of each operand tile and of the output tile holds at most ``capacity`` 16-bit elements
(segment + coordinate entries; a value array its values), and the live tiles with their
operand images, in loop order.

Capacity. Onyx stores one fibertree level per MEM tile (VLSI24: one 512 x 64-bit SRAM, 4 KB =
2,048 16-bit elements). With ``controller.tile_pipelining`` the level buffer is a depth-2 FIFO
of tiles (MICRO25: "the level buffer becomes a depth-2 FIFO of levels"), so the next tile's
level is loaded while the current one is read: each tile's level gets half the SRAM
(ASSUMPTION: an even split, the simplest way for a FIFO of two entries to share one SRAM;
MICRO25 does not say how the capacity is divided).

The cut (greedy, from the data): start untiled; while some tensor has a level over capacity
in some tile, split the variable of that tensor with the largest tile, preferring output
variables (no partial sums) and splitting a contracted variable only when the tensor has no
splittable output variable (SpMV's c(j): partial outputs then add up in the global buffer);
each split doubles the variable's tile count, with equal tile sizes (ceil(extent / count)).
The output's structure is computed from the operands' nonzero patterns (a product of masks,
or their union for ``+``), so the output tile is sized before any run. A tile whose
operands cannot produce anything (an empty operand of a product; every operand empty for a
sum) is skipped. Model layers cut their SpM*SpM products the same way by their own rule
(simulator.analytic.tile_sizes: token blocks x K chunks x N blocks), which stays there.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from compiler.notation import Assignment
from isa.arch import ChipConfig
from isa.errors import CompileError
from isa.fibertree import BITMAP_WORD_BITS, FiberTree
from isa.tiles import Tile, Tiling

ELEMENT_BYTES = 2
"""One stored element (segment, coordinate, value, mask word): the 16-bit datapath."""

DENSE_PATTERN_MAX = 1 << 25
"""Largest dense mask (elements) of an operand or the output used to compute the output's
nonzero pattern with numpy's einsum (two-operand matrix products use scipy's sparse product
at any size); beyond it the output's levels are not sized (only the operands')."""


def level_capacity(chip: ChipConfig) -> int:
    """16-bit elements one tile's level may hold: a MEM tile's SRAM, halved when tiles are
    pipelined (module docstring)."""
    words = chip.mem_tile.size_bytes // ELEMENT_BYTES
    return words // 2 if chip.controller.tile_pipelining else words


class _Tensor:
    """A tensor's stored entries and levels, for measuring its tiles."""

    def __init__(self, name: str, vars_: tuple[str, ...], coords: np.ndarray,
                 vals: np.ndarray | None, formats: tuple[str, ...], order: tuple[int, ...]):
        self.name, self.vars, self.formats, self.order = name, vars_, formats, order
        self.coords = coords.reshape(len(coords), len(vars_)).astype(np.int64)
        self.vals = vals
        self.nonzero = None if vals is None else (vals != 0)

    def largest_level(self, sizes: dict[str, int]) -> int:
        """The most elements any level (or the value array) of any tile holds."""
        if not self.vars:
            return 1
        svars = [self.vars[m] for m in self.order]
        sz = np.array([sizes[v] for v in svars], dtype=np.int64)
        keys = self.coords[:, list(self.order)]
        block = keys // sz
        local = keys % sz
        counts = np.array([-(-int(keys[:, i].max(initial=0) + 1) // int(sz[i]))
                           for i in range(len(svars))], dtype=np.int64)
        tile = np.zeros(len(keys), dtype=np.int64)
        for i in range(len(svars)):
            tile = tile * max(int(counts[i]), 1) + block[:, i]
        if not len(keys):
            return 0
        tiles, tile_inv = np.unique(tile, return_inverse=True)
        tile_inv = tile_inv.reshape(-1)
        parent = np.ones(len(tiles), dtype=np.int64)      # positions of the level above
        prefix = tile.copy()
        worst = 0
        for lvl, fmt in enumerate(self.formats):
            prefix = prefix * int(sz[lvl]) + local[:, lvl]
            if fmt == "dense":
                n = parent * int(sz[lvl])
            else:
                uniq = np.unique(prefix)
                owner = np.searchsorted(tiles, uniq // _radix(sz, lvl))
                n = np.bincount(owner, minlength=len(tiles)).astype(np.int64)
                if fmt == "bitmap":
                    elems = parent * (-(-int(sz[lvl]) // BITMAP_WORD_BITS)) + parent + 1
                else:
                    elems = parent + 1 + n
                worst = max(worst, int(elems.max(initial=0)))
            parent = n
        return max(worst, int(parent.max(initial=0)))


def _radix(sz: np.ndarray, lvl: int) -> int:
    """The mixed radix of the local coordinates of levels 0..lvl (the prefix's low part)."""
    return int(np.prod(sz[:lvl + 1], dtype=np.int64))


def _operand(name: str, tree: FiberTree, vars_: tuple[str, ...]) -> _Tensor:
    coords, vals = tree.coo()
    return _Tensor(name, vars_, coords, vals, tree.formats, tuple(tree.mode_order))


def output_pattern(assign: Assignment, images: dict[str, FiberTree]) -> np.ndarray | None:
    """Coordinates (n x rank, output index order) of the output's structural nonzeros: where
    the operands' nonzero patterns meet (``*``, over the contracted variables) or any has a
    nonzero (``+``). None when the masks are too large to form (DENSE_PATTERN_MAX)."""
    out = assign.out
    if not out.indices:
        return np.zeros((1, 0), dtype=np.int64)
    if assign.op == "*" and len(assign.operands) == 2 and all(
            len(a.indices) == 2 for a in assign.operands) and len(out.indices) == 2:
        coords = _sparse_matmul_pattern(assign, images)
        if coords is not None:
            return coords
    sizes = {v: n for a in assign.operands for v, n in zip(a.indices, images[a.tensor].shape)}
    dense_ok = all(math.prod(images[a.tensor].shape) <= DENSE_PATTERN_MAX
                   for a in assign.operands) and \
        math.prod(sizes[v] for v in out.indices) <= DENSE_PATTERN_MAX
    if dense_ok:
        masks = [(images[a.tensor].to_dense() != 0) for a in assign.operands]
        if assign.op == "+":
            acc = np.zeros(tuple(sizes[v] for v in out.indices), dtype=bool)
            for a, m in zip(assign.operands, masks):
                acc |= np.transpose(m, [a.indices.index(v) for v in out.indices])
            return np.argwhere(acc)
        spec = ",".join("".join(_letters(a.indices, assign)) for a in assign.operands)
        spec += "->" + "".join(_letters(out.indices, assign))
        prod = np.einsum(spec, *[m.astype(np.float32) for m in masks], optimize=True)
        return np.argwhere(prod > 0)
    return None


def _letters(indices: tuple[str, ...], assign: Assignment) -> list[str]:
    allv = assign.index_vars
    return [chr(ord("a") + allv.index(v)) for v in indices]


def _sparse_matmul_pattern(assign: Assignment, images: dict[str, FiberTree]
                           ) -> np.ndarray | None:
    """A two-operand matrix product's output pattern with scipy (masks as CSR)."""
    import scipy.sparse as sp

    a, b = assign.operands
    shared = [v for v in a.indices if v in b.indices]
    if len(shared) != 1 or shared[0] in assign.out.indices:
        return None
    k = shared[0]

    def mask(acc: Any, first: str) -> Any:
        tree = images[acc.tensor]
        coords, vals = tree.coo()
        keep = vals != 0
        rows = coords[keep, acc.indices.index(first)]
        other = [v for v in acc.indices if v != first][0]
        cols = coords[keep, acc.indices.index(other)]
        shape = (tree.shape[acc.indices.index(first)], tree.shape[acc.indices.index(other)])
        return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape)

    left = mask(a, [v for v in a.indices if v != k][0])      # (out var of a) x k
    right = mask(b, k)                                        # k x (out var of b)
    prod = (left @ right).tocoo()
    va = [v for v in a.indices if v != k][0]
    coords = np.stack([prod.row, prod.col], axis=1).astype(np.int64)
    return coords if assign.out.indices[0] == va else coords[:, ::-1]


def plan_tiling(assign: Assignment, order: tuple[str, ...], images: dict[str, FiberTree],
                chip: ChipConfig, out_formats: tuple[str, ...] | None = None) -> Tiling | None:
    """The tiling of the kernel (module docstring), or None when it fits untiled.
    ``out_formats``: the output's level formats (default compressed at every level).

    Raises: CompileError (``tiling:``) when a level cannot fit even in tiles of one
    coordinate per variable.
    """
    cap = level_capacity(chip)
    extents = {v: n for a in assign.operands for v, n in zip(a.indices, images[a.tensor].shape)}
    tensors = [_operand(a.tensor, images[a.tensor], a.indices) for a in assign.operands]
    pattern = output_pattern(assign, images)
    out_vars = assign.out.indices
    if pattern is not None:
        fmts = out_formats or ("compressed",) * len(out_vars)
        tensors.append(_Tensor(assign.out.tensor, out_vars, pattern, None, tuple(fmts),
                               tuple(range(len(out_vars)))))
    counts = dict.fromkeys(order, 1)
    sizes = dict(extents)
    while True:
        over = [(t.largest_level(sizes) / cap, i, t) for i, t in enumerate(tensors)]
        worst = max(over, key=lambda x: (x[0], -x[1]))
        if worst[0] <= 1:
            break
        t = worst[2]
        outs = [v for v in t.vars if v in out_vars and sizes[v] > 1]
        cands = outs or [v for v in t.vars if sizes[v] > 1]
        if not cands:
            raise CompileError(f"tiling: a level of {t.name} holds {int(worst[0] * cap)} "
                               f"elements even in tiles of one coordinate per variable; a MEM "
                               f"tile level holds {cap}")
        v = max(cands, key=lambda x: (sizes[x], -order.index(x)))
        counts[v] = min(extents[v], counts[v] * 2)
        sizes[v] = -(-extents[v] // counts[v])
        counts[v] = -(-extents[v] // sizes[v])
    if all(c == 1 for c in counts.values()):
        return None
    return _cut(assign, order, images, extents, sizes, cap, chip)


def _cut(assign: Assignment, order: tuple[str, ...], images: dict[str, FiberTree],
         extents: dict[str, int], sizes: dict[str, int], cap: int, chip: ChipConfig
         ) -> Tiling:
    """The live tiles of the cut, in loop order, with their operand images."""
    counts = tuple(-(-extents[v] // sizes[v]) for v in order)
    grid_live = np.ones(counts, dtype=bool) if assign.op == "*" else np.zeros(counts, bool)
    groups: dict[str, tuple[dict[tuple[int, ...], np.ndarray], np.ndarray, np.ndarray]] = {}
    for acc in assign.operands:
        tree = images[acc.tensor]
        coords, vals = tree.coo()
        coords = coords.reshape(len(vals), len(acc.indices)).astype(np.int64)
        sz = np.array([sizes[v] for v in acc.indices], dtype=np.int64)
        block = coords // sz if len(acc.indices) else coords
        has = np.zeros(tuple(counts[order.index(v)] for v in acc.indices), dtype=bool)
        nz = vals != 0
        if acc.indices:
            has[tuple(block[nz].T)] = True
        else:
            has = np.asarray(bool(nz.any()))
        # broadcast the operand's blocks over the loop-order grid
        axes = [order.index(v) for v in acc.indices]
        view = np.moveaxis(has.reshape(has.shape + (1,) * (len(order) - len(axes))),
                           list(range(len(axes))), axes) if axes else has
        grid_live = (grid_live & view) if assign.op == "*" else (grid_live | view)
        by_block: dict[tuple[int, ...], np.ndarray] = {}
        if len(vals):
            keyed = np.lexsort(block.T[::-1]) if acc.indices else np.arange(len(vals))
            sb = block[keyed]
            starts = np.flatnonzero(np.r_[True, np.any(sb[1:] != sb[:-1], axis=1)]) \
                if acc.indices else np.array([0])
            ends = np.r_[starts[1:], len(sb)]
            for s, e in zip(starts, ends):
                by_block[tuple(int(x) for x in sb[s])] = keyed[s:e]
        groups[acc.tensor] = (by_block, coords, vals)
    live = np.argwhere(grid_live)
    tiles: list[Tile] = []
    prev: dict[str, tuple[int, ...]] = {}
    seen_out: set[tuple[int, ...]] = set()
    out_pos = [order.index(v) for v in assign.out.indices]
    for idx in live:
        index = tuple(int(x) for x in idx)
        imgs: dict[str, FiberTree] = {}
        loads: list[str] = []
        for acc in assign.operands:
            tree = images[acc.tensor]
            key = tuple(index[order.index(v)] for v in acc.indices)
            by_block, coords, vals = groups[acc.tensor]
            sel = by_block.get(key, np.zeros(0, dtype=np.int64))
            origin = np.array([k * sizes[v] for k, v in zip(key, acc.indices)], dtype=np.int64)
            local = coords[sel] - origin if acc.indices else coords[sel]
            shape = tuple(sizes[v] for v in acc.indices)
            imgs[acc.tensor] = FiberTree.from_coo(acc.tensor, shape, local, vals[sel],
                                                  tree.formats, tuple(tree.mode_order))
            if prev.get(acc.tensor) != key:
                loads.append(acc.tensor)
                prev[acc.tensor] = key
        okey = tuple(index[p] for p in out_pos)
        tiles.append(Tile(index, imgs, tuple(loads), okey in seen_out))
        seen_out.add(okey)
    return Tiling(tuple(order), tuple(extents[v] for v in order),
                  tuple(sizes[v] for v in order), assign.out.tensor, assign.out.indices,
                  tuple(tiles), int(grid_live.size - len(live)), cap,
                  chip.controller.tile_pipelining)


SHOWN_TILES = 3
"""Tile calls ``sieve compile`` prints in full before summarising the rest."""


def summarize_schedule(text: str, tiling: Tiling, shown: int = SHOWN_TILES) -> str:
    """A tiled Program's assembly for people: the cut as a comment, the first ``shown``
    tile calls in full and the rest as one comment line (the full text, ``print_program``,
    parses back; this one elides the calls it summarises)."""
    import re

    out = [f"; tiled: {tiling.describe()}"]
    elided = 0
    for line in text.splitlines():
        m = re.search(r" tile=(\d+)$", line)
        if m and int(m.group(1)) >= shown:
            if not elided:
                out.append("")     # replaced below by the summary line
                mark = len(out) - 1
            elided += 1
            continue
        out.append(line)
    if elided:
        rest = len(tiling.tiles) - shown
        out[mark] = (f"; ... {elided} more commands: tile calls {shown}..{len(tiling.tiles) - 1}"
                     f" ({rest} calls: loads of the operand tiles that changed, launch, wait, "
                     "unload)")
    return "\n".join(out) + "\n"
