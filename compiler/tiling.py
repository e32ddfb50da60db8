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
lake's buffet_like.py gives each of its two buffer IDs half the SRAM, but MICRO25 does not
say how a level's two tiles divide it).

Mode. ``controller.tile_pipelining: true|false`` forces the mode; ``auto`` leaves it to the
compiler per kernel: compiler.order estimates its finalists in both modes (:func:`modes`,
:func:`with_pipelining`) and compiles the winner with the mode fixed. A kernel compiled with
``auto`` without that choice (``compile_layer`` called directly) is cut both ways here and
takes the cut of the lesser rough cost (:func:`_cost`); one that fits untiled in full MEM
tiles is one kernel call and has no mode.

The cut (greedy, from the data): start untiled; while some tensor has a level over capacity
in some tile, double the tile count of one of that tensor's variables (equal tile sizes,
ceil(extent / count)): the one whose cut has the least rough cost (:func:`_cost`: every live
tile walks its operand tiles and pays the firmware's call and descriptors, or pipelined
every run of tiles does; a contracted
variable's split makes partial outputs, each merged into its block in the global buffer by
the firmware), ties going to output variables.
The output's structure is computed from the operands' nonzero patterns (a product of masks,
or their union for ``+``), so the output tile is sized before any run. A tile whose
operands cannot produce anything (an empty operand of a product; every operand empty for a
sum) is skipped. Model layers cut their SpM*SpM products the same way by their own rule
(simulator.analytic.tile_sizes: token blocks x K chunks x N blocks), which stays there.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from compiler.notation import Assignment
from isa.arch import ELEMENT_BYTES, ChipConfig
from isa.errors import CompileError
from isa.fibertree import BITMAP_WORD_BITS, FiberTree
from isa.tiles import Tile, Tiling

DENSE_PATTERN_MAX = 1 << 25
"""Largest dense mask (elements) of an operand or the output used to compute the output's
nonzero pattern with numpy's einsum (two-operand matrix products use scipy's sparse product
at any size); beyond it the output's levels are not sized (only the operands')."""


def level_capacity(chip: ChipConfig) -> int:
    """16-bit elements one tile's level may hold: a MEM tile's SRAM, halved when tiles are
    pipelined (module docstring; ``auto``: the whole SRAM, the capacity of an untiled
    kernel)."""
    words = chip.mem_tile.size_bytes // ELEMENT_BYTES
    return words // 2 if chip.controller.tile_pipelining is True else words


def modes(chip: ChipConfig) -> tuple[bool, ...]:
    """The tile-pipelining modes the compiler may run a tiled kernel in: the one
    ``controller.tile_pipelining`` forces, or both for ``auto`` (one at a time first)."""
    mode = chip.controller.tile_pipelining
    return (False, True) if mode == "auto" else (bool(mode),)


def mode_text(tiling: Tiling | None, chip: ChipConfig) -> str | None:
    """The summary's ``tile_pipelining``: the mode a tiled kernel ran in and who chose it
    (None: untiled, one kernel call)."""
    if tiling is None:
        return None
    mode = "pipelined" if tiling.pipelined else "one tile at a time"
    given = chip.controller.tile_pipelining
    if given == "auto":
        return f"{mode} (compiler's choice: least {chip.compiler.objective} of both modes)"
    return f"{mode} (forced: controller.tile_pipelining={str(given).lower()})"


def with_pipelining(chip: ChipConfig, pipelined: bool) -> ChipConfig:
    """``chip`` with the tile-pipelining mode fixed (the compiler's choice for one kernel)."""
    if chip.controller.tile_pipelining is pipelined:
        return chip
    return dataclasses.replace(chip, controller=dataclasses.replace(
        chip.controller, tile_pipelining=pipelined))


class _Tensor:
    """A tensor's stored entries and levels, for measuring its tiles."""

    def __init__(self, name: str, vars_: tuple[str, ...], coords: np.ndarray,
                 vals: np.ndarray | None, formats: tuple[str, ...], order: tuple[int, ...]):
        self.name, self.vars, self.formats, self.order = name, vars_, formats, order
        self.coords = coords.reshape(len(coords), len(vars_)).astype(np.int64)
        self.vals = vals
        self.nonzero = None if vals is None else (vals != 0)
        self._measured = _measured_of(self)

    def measure(self, sizes: dict[str, int], counts: dict[str, int],
                levels: list[np.ndarray] | None = None
                ) -> tuple[int, np.ndarray, np.ndarray]:
        """(the most elements any level or the value array of any tile holds, each tile's
        elements in all, whether each tile holds a nonzero): grids over the tensor's own
        variables' tile counts. ``levels``, when given, receives per storage level the grid
        of each tile's positions at that level (dense: parent positions x the tile's
        extent; compressed and bitmap: its coordinates). Measured once per cut of the
        tensor's own variables (the cut's search asks again for the same ones; the results
        are read, never changed)."""
        key = tuple((sizes[v], counts[v]) for v in self.vars)
        if key not in self._measured:
            self._measured[key] = self._measure(sizes, counts)
        worst, totals, has, grids = self._measured[key]
        if levels is not None:
            levels.extend(grids)
        return worst, totals, has

    def _measure(self, sizes: dict[str, int], counts: dict[str, int]
                 ) -> tuple[int, np.ndarray, np.ndarray, list[np.ndarray]]:
        """:meth:`measure` computed (with the level grids)."""
        grid = tuple(counts[v] for v in self.vars)
        totals = np.zeros(grid, dtype=np.int64)
        has = np.zeros(grid, dtype=bool)
        levels: list[np.ndarray] = []
        if not self.vars:
            return 1, totals + 1, has | bool(self.nonzero is None or self.nonzero.any()), levels
        svars = [self.vars[m] for m in self.order]
        sz = np.array([sizes[v] for v in svars], dtype=np.int64)
        keys = self.coords[:, list(self.order)]
        if not len(keys):
            return 0, totals, has, levels
        local = keys % sz
        tile = np.ravel_multi_index(tuple((self.coords // np.array(
            [sizes[v] for v in self.vars], dtype=np.int64)).T), grid)
        nz = np.ones(len(keys), dtype=bool) if self.nonzero is None else self.nonzero
        has.reshape(-1)[tile[nz]] = True
        # every level's coordinate prefix (tile first); sorted once by the deepest, which
        # sorts every shorter prefix too (each is the deepest divided by a constant radix)
        prefixes = [tile]
        for lvl in range(len(self.formats)):
            prefixes.append(prefixes[-1] * int(sz[lvl]) + local[:, lvl])
        by = np.argsort(prefixes[-1])
        tiles = _runs(tile[by])
        parent = np.ones(len(tiles), dtype=np.int64)      # positions of the level above
        total = np.zeros(len(tiles), dtype=np.int64)
        worst = 0
        for lvl, fmt in enumerate(self.formats):
            if fmt == "dense":
                n = parent * int(sz[lvl])
            else:
                uniq = _runs(prefixes[lvl + 1][by])
                owner = np.searchsorted(tiles, uniq // _radix(sz, lvl))
                n = np.bincount(owner, minlength=len(tiles)).astype(np.int64)
                if fmt == "bitmap":
                    elems = parent * (-(-int(sz[lvl]) // BITMAP_WORD_BITS)) + parent + 1
                else:
                    elems = parent + 1 + n
                worst = max(worst, int(elems.max(initial=0)))
                total += elems
            parent = n
            g = np.zeros(grid, dtype=np.int64)
            g.reshape(-1)[tiles] = n
            levels.append(g)
        total += parent
        totals.reshape(-1)[tiles] = total
        return max(worst, int(parent.max(initial=0))), totals, has, levels


Measured = dict[tuple[tuple[int, int], ...], tuple[int, np.ndarray, np.ndarray, list[np.ndarray]]]
"""A tensor's measured cuts: its own variables' (size, count) -> :meth:`_Tensor.measure`."""

MEASURED_KEPT = 16
"""Tensors whose measured cuts are kept across compiles (compiler.order compiles the same
operands for every candidate, finalist and tile-pipelining mode; measuring a cut sorts all
of a tensor's entries): a compile-time knob, a few MB at most (grids of tile counts)."""


def _measured_of(t: _Tensor) -> Measured:
    """The measured cuts of a tensor with ``t``'s entries, levels and order (shared by every
    equal tensor; beyond ``MEASURED_KEPT`` tensors the least recently used is forgotten)."""
    import hashlib

    h = hashlib.blake2b(repr((t.vars, t.formats, t.order, t.coords.shape)).encode(),
                        digest_size=20)
    h.update(np.ascontiguousarray(t.coords).tobytes())
    if t.nonzero is not None:
        h.update(np.packbits(t.nonzero).tobytes())
    return _measured_for(h.digest())


@functools.lru_cache(maxsize=MEASURED_KEPT)
def _measured_for(key: bytes) -> Measured:
    """The one (initially empty) record of measured cuts per tensor digest ``key``."""
    return {}


def _runs(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted 1-D array."""
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def distinct(keys: np.ndarray) -> np.ndarray:
    """The sorted distinct values of a 1-D integer array (``np.unique``'s result; by sorting,
    which is many times faster than numpy 2's hashing ``np.unique`` on int64 keys)."""
    return _runs(np.sort(keys))


def _radix(sz: np.ndarray, lvl: int) -> int:
    """The mixed radix of the local coordinates of levels 0..lvl (the prefix's low part)."""
    return int(np.prod(sz[:lvl + 1], dtype=np.int64))


def _split(v: str, sizes: dict[str, int], counts: dict[str, int], extents: dict[str, int]
           ) -> tuple[dict[str, int], dict[str, int]]:
    """Sizes and counts with variable ``v``'s tile count doubled (equal tiles)."""
    c = dict(counts)
    c[v] = min(extents[v], c[v] * 2)
    sz = dict(sizes)
    sz[v] = -(-extents[v] // c[v])
    c[v] = -(-extents[v] // sz[v])
    return sz, c


def _cost(assign: Assignment, order: tuple[str, ...], tensors: list[_Tensor], n_out: int,
          sizes: dict[str, int], counts: dict[str, int], chip: ChipConfig) -> float:
    """A cut's rough cost in cycles, to choose which variable to split: every live tile's
    kernel work (:func:`_tile_work`: iteration points times the fibers its scanners walk,
    so a co-iterated level walked again for every coordinate of an outer variable its tensor
    lacks costs that again in every tile that holds it), the firmware's call and
    descriptors per live tile (pipelined: per run of ``pipelined_tiles_per_call`` tiles), and
    each partial output tile after the first of its block a merge of the block's entries
    (read and written, ``merge_cycles_per_element`` each)."""
    c = chip.controller
    shape = tuple(counts[v] for v in order)
    live = np.ones(shape, dtype=bool) if assign.op == "*" else np.zeros(shape, dtype=bool)
    lengths: list[dict[str, tuple[np.ndarray, str, int]]] = []
    for t in tensors[:len(tensors) - n_out]:
        levels: list[np.ndarray] = []
        _, _, has = t.measure(sizes, counts, levels)
        axes = [order.index(v) for v in t.vars]
        view = _spread(has, axes, len(order))
        live = (live & view) if assign.op == "*" else (live | view)
        per: dict[str, tuple[np.ndarray, str, int]] = {}
        prev = np.ones(tuple(counts[v] for v in t.vars), dtype=np.float64)
        for lvl, n in enumerate(levels):
            v = t.vars[t.order[lvl]]
            length = np.divide(n, prev, out=np.zeros(n.shape), where=prev > 0)
            per[v] = (_spread(length, axes, len(order)), t.formats[lvl], sizes[v])
            prev = n.astype(np.float64)
        lengths.append(per)
    n_live = int(live.sum())
    work = _tile_work(assign, order, lengths, shape, chip.compiler.locate)
    cost = float((work * live).sum())
    # one kernel call per tile; pipelined, per run of tiles (one chained descriptor a tensor)
    calls = -(-n_live // c.pipelined_tiles_per_call) if c.tile_pipelining is True \
        else n_live
    cost += calls * (c.launch_cycles + (len(lengths) + 1) * c.dma_setup_cycles)
    if n_out:
        out = tensors[-1]
        _, totals, _ = out.measure(sizes, counts)
        oaxes = [order.index(v) for v in out.vars]
        others = tuple(i for i in range(len(order)) if i not in oaxes)
        per_block = live.sum(axis=others) if others else live.astype(np.int64)
        # per_block's axes are the output variables in loop order; totals' in output order
        perm = [sorted(oaxes).index(a) for a in oaxes]
        per_block = np.transpose(per_block, perm) if perm else per_block
        cost += float((totals * np.maximum(per_block - 1, 0)).sum()) * 2 \
            * c.merge_cycles_per_element
    return cost


def _tile_work(assign: Assignment, order: tuple[str, ...],
               lengths: list[dict[str, tuple[np.ndarray, str, int]]], shape: tuple[int, ...],
               locate: bool) -> np.ndarray:
    """Each tile's rough kernel work in unit steps (the tile-grid analogue of
    ``compiler.order.work_bound``): per loop variable, the iteration points reaching it
    times the average fiber lengths its scanners walk (independence assumed), a dense level
    met by a compressed one in an intersection located (a step per coordinate of the
    shortest walked fiber) when ``locate``, a walked bitmap level a step per mask word, plus
    a step per repeated reference. ``lengths``: per operand, variable -> (average fiber
    length per tile on the loop-order grid, level format, the tile's extent)."""
    points = np.ones(shape)
    work = np.zeros(shape)
    zero = np.zeros(shape)
    for v in order:
        levels = [per[v] for per in lengths if v in per]
        lacks = sum(v not in per for per in lengths)
        if not levels:
            work = work + points * lacks
            continue
        walks = [n + zero for n, _, _ in levels]
        if assign.op == "*":
            walked = [n + zero for n, f, _ in levels if f == "compressed"]
            bitmaps = [e for _, f, e in levels if f == "bitmap"]
            dense = sum(f == "dense" for _, f, _ in levels)
            if locate and walked:
                located = dense
                if len(bitmaps) == 1 and len(walked) == 1:
                    located += 1
                else:
                    walked += [zero + e / BITMAP_WORD_BITS for e in bitmaps]
                work = work + points * (sum(walked) + np.minimum.reduce(walked) * located)
            else:
                work = work + points * sum(zero + e / BITMAP_WORD_BITS if f == "bitmap" else n
                                           for n, f, e in levels)
            points = points * np.minimum.reduce(walks)
        else:
            work = work + points * sum(walks)
            points = points * np.maximum.reduce(walks)
        work = work + points * lacks
    return work


def _spread(grid: np.ndarray, axes: list[int], ndim: int) -> np.ndarray:
    """A grid over some variables (``axes`` of the loop order) broadcast to all ``ndim``."""
    if not axes:
        return grid.reshape((1,) * ndim)
    g = grid.reshape(grid.shape + (1,) * (ndim - len(axes)))
    return np.moveaxis(g, list(range(len(axes))), axes)


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
    extents = {v: n for a in assign.operands for v, n in zip(a.indices, images[a.tensor].shape)}
    tensors = [_operand(a.tensor, images[a.tensor], a.indices) for a in assign.operands]
    pattern = output_pattern(assign, images)
    out_vars = assign.out.indices
    if pattern is not None:
        fmts = out_formats or ("compressed",) * len(out_vars)
        tensors.append(_Tensor(assign.out.tensor, out_vars, pattern, None, tuple(fmts),
                               tuple(range(len(out_vars)))))
    best: tuple[float, dict[str, int], ChipConfig] | None = None
    for mode in modes(chip):
        at = with_pipelining(chip, mode)
        try:
            sizes, cost = _sizes(assign, order, tensors, extents, at)
        except CompileError:
            if best is None:
                raise
            continue            # fits full MEM tiles only: the mode that fits it
        if all(sizes[v] == extents[v] for v in order):
            return None         # fits untiled (in full MEM tiles: no mode to choose)
        if best is None or cost < best[0]:
            best = (cost, sizes, at)
    assert best is not None
    _, sizes, at = best
    return _cut(assign, order, images, extents, sizes, level_capacity(at), at)


def _sizes(assign: Assignment, order: tuple[str, ...], tensors: list[_Tensor],
           extents: dict[str, int], chip: ChipConfig) -> tuple[dict[str, int], float]:
    """The tile size per variable of the cut for ``chip``'s mode (plan_tiling's greedy, then
    :func:`_coarsen`) and its rough cost (:func:`_cost`).

    Raises: CompileError (``tiling:``) when a level cannot fit even in tiles of one
    coordinate per variable.
    """
    cap = level_capacity(chip)
    out_vars = assign.out.indices
    counts = dict.fromkeys(order, 1)
    sizes = dict(extents)
    n_out = len(tensors) - len(assign.operands)
    while True:
        over = [(t.measure(sizes, counts)[0] / cap, i, t) for i, t in enumerate(tensors)]
        worst = max(over, key=lambda x: (x[0], -x[1]))
        if worst[0] <= 1:
            break
        t = worst[2]
        cands = [v for v in t.vars if sizes[v] > 1]
        if not cands:
            raise CompileError(f"tiling: a level of {t.name} holds {int(worst[0] * cap)} "
                               f"elements even in tiles of one coordinate per variable; a MEM "
                               f"tile level holds {cap}")

        trials = {v: _split(v, sizes, counts, extents) for v in cands}
        v = min(cands, key=lambda x: (_cost(assign, order, tensors, n_out, *trials[x], chip),
                                      x not in out_vars, -sizes[x], order.index(x)))
        sizes, counts = trials[v]
    return _coarsen(assign, order, tensors, n_out, sizes, counts, extents, cap, chip)


def _coarsen(assign: Assignment, order: tuple[str, ...], tensors: list[_Tensor], n_out: int,
             sizes: dict[str, int], counts: dict[str, int], extents: dict[str, int], cap: int,
             chip: ChipConfig) -> tuple[dict[str, int], float]:
    """Undo splits the greedy made needlessly: a split made early to relieve one tensor may
    be unnecessary once a later split (forced by another tensor) relieved it too (SpM*SpM:
    the output's rows split before C's columns are). In loop order, each variable's tile
    count is halved while every level still fits and the cost does not grow."""
    best = _cost(assign, order, tensors, n_out, sizes, counts, chip)
    for v in order:
        while counts[v] > 1:
            c = dict(counts)
            c[v] = -(-counts[v] // 2)
            sz = dict(sizes)
            sz[v] = -(-extents[v] // c[v])
            c[v] = -(-extents[v] // sz[v])
            if any(t.measure(sz, c)[0] > cap for t in tensors):
                break
            cost = _cost(assign, order, tensors, n_out, sz, c, chip)
            if cost > best:
                break
            sizes, counts, best = sz, c, cost
    return sizes, best


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
