"""Tiles of a kernel: the iteration space cut so every fibertree level fits a memory tile.

A kernel whose levels exceed a MEM tile runs as a sequence of *tile calls* of one configured
graph (compiler.tiling decides the cut). Each index variable v of the loop order has a tile
size s_v; a tile is the box [t_v s_v, (t_v + 1) s_v) of every variable, and each operand's tile
is the operand restricted to the box of its own variables, with tile-local coordinates and the
tile's shape (the last tile of a variable is padded to s_v: a dense level stores zeros there,
a compressed level nothing). The output tile covers the output variables' box; tiles that
differ only in a contracted variable produce partial outputs of the same block, which the
firmware adds in the global buffer. These are data, the contract between the compiler that
cuts and the controller that runs and assembles (:func:`assemble`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isa.fibertree import FiberTree


@dataclass(frozen=True, eq=False)
class Tile:
    """One tile call: ``index`` per index variable (loop order), the operands' tile images,
    the operands loaded for it (``loads``; the others are still in their MEM tiles from the
    tile before), and ``partial``: its output block already holds an earlier partial sum."""

    index: tuple[int, ...]
    images: dict[str, FiberTree]
    loads: tuple[str, ...]
    partial: bool


@dataclass(frozen=True, eq=False)
class Tiling:
    """How a kernel is cut: index variables in loop order with their extents and tile sizes,
    the output (name, its variables), the live tiles in schedule order, how many were skipped
    (an operand empty), and the capacity each level of a tile had to fit (16-bit elements)."""

    variables: tuple[str, ...]
    extents: tuple[int, ...]
    sizes: tuple[int, ...]
    output: str
    out_vars: tuple[str, ...]
    tiles: tuple[Tile, ...]
    skipped: int
    level_elements: int
    pipelined: bool

    @property
    def counts(self) -> tuple[int, ...]:
        """Tiles along each variable."""
        return tuple(-(-e // s) for e, s in zip(self.extents, self.sizes))

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The whole output's shape."""
        ext = dict(zip(self.variables, self.extents))
        return tuple(ext[v] for v in self.out_vars)

    def origin(self, tile: Tile) -> tuple[int, ...]:
        """The output block's first coordinate per output mode."""
        pos = {v: i * s for v, i, s in zip(self.variables, tile.index, self.sizes)}
        return tuple(pos[v] for v in self.out_vars)

    def describe(self) -> str:
        """One line: the cut per variable and the tile counts."""
        cut = ", ".join(f"{v}: {e} in {c} x {s}" for v, e, c, s
                        in zip(self.variables, self.extents, self.counts, self.sizes))
        return (f"{len(self.tiles)} tile calls ({self.skipped} skipped: an operand empty); "
                f"{cut}; every level <= {self.level_elements} elements"
                f"{' (half a MEM tile: depth-2 tile FIFO)' if self.pipelined else ''}")


class Accumulator:
    """The output assembled in the global buffer from tile outputs: each tile's entries moved
    to the block's origin and cropped to the output's shape; a partial output is added to the
    block's earlier sum: :meth:`add` returns (adds, entries read, entries written) of that
    merge (a first output of its block is just stored: (0, 0, 0))."""

    def __init__(self, tiling: Tiling, dtype: np.dtype) -> None:
        self.tiling = tiling
        self.shape = tiling.out_shape
        self.blocks: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        self.dtype = dtype

    def add(self, tile: Tile, out: FiberTree) -> tuple[int, int, int]:
        """Fold one tile's output in (class docstring)."""
        coords, vals = out.coo()
        origin = np.array(self.tiling.origin(tile), dtype=np.int64)
        coords = coords.reshape(len(vals), len(self.shape)) + origin
        inside = np.all(coords < np.array(self.shape, dtype=np.int64), axis=1)
        coords, vals = coords[inside], vals[inside]
        key = tuple(int(o) for o in origin)
        if key not in self.blocks:
            self.blocks[key] = (coords, vals)
            return 0, 0, 0
        old_c, old_v = self.blocks[key]
        allc = np.concatenate([old_c, coords])
        allv = np.concatenate([old_v, vals])
        if not self.shape:          # a scalar output: one entry, summed
            uniq, inv = allc[:1], np.zeros(len(allc), dtype=np.int64)
        else:
            uniq, inv = np.unique(allc, axis=0, return_inverse=True)
        summed = np.zeros(len(uniq), dtype=np.result_type(old_v.dtype, vals.dtype))
        np.add.at(summed, inv.reshape(-1), allv)
        self.blocks[key] = (uniq, summed)
        return len(allc) - len(uniq), len(allc), len(uniq)

    def tree(self, name: str, formats: tuple[str, ...], mode_order: tuple[int, ...]
             ) -> FiberTree:
        """The whole output as a fibertree in the given formats."""
        rank = len(self.shape)
        if self.blocks:
            vals = np.concatenate([v for _, v in self.blocks.values()])
            coords = np.concatenate([c for c, _ in self.blocks.values()]).reshape(len(vals),
                                                                                  rank)
        else:
            coords, vals = np.zeros((0, rank), dtype=np.int64), np.zeros(0, dtype=self.dtype)
        return FiberTree.from_coo(name, self.shape, coords, vals, formats, mode_order)
