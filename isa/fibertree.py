"""Fibertrees: tensors as levels of fibers (SAM section 3.1, TACO's level formats).

A tensor of rank R is stored as R levels in ``mode_order`` (storage level l holds mode
``mode_order[l]``). A level is ``dense`` (a size only: every coordinate 0..size-1 is present),
``compressed`` (a segment array ``seg`` of length fibers+1 and a coordinate array ``crd``) or
``bitmap`` (per fiber a mask of ``size`` bits in 16-bit words, plus the count of set bits
before each fiber, from which a coordinate's position is the fiber's count plus the set bits
below it in the mask: SAM's bitvector level with popcount references). A bitmap level's
positions are a compressed level's, so it keeps ``seg`` (the counts) and ``crd`` (the set
bits, in order) as its decoded form; its memory image is the masks and the counts.
The value array ``vals`` holds one value per position of the last level; a scalar (rank 0)
has no levels and one value. These arrays are the memory images the chip's memory tiles hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isa.errors import IsaError

FORMATS = ("dense", "compressed", "bitmap")
BITMAP_WORD_BITS = 16   # a bitmap level's mask words are 16-bit elements


@dataclass(frozen=True, eq=False)
class Level:
    """One storage level. ``seg``/``crd`` are int64 arrays for compressed levels, else None."""

    fmt: str
    size: int
    seg: np.ndarray | None = None
    crd: np.ndarray | None = None

    def fibers(self, n_parent: int) -> int:
        """Number of positions this level has, given the parent's position count."""
        return n_parent * self.size if self.fmt == "dense" else int(len(self.crd))

    def words_per_fiber(self) -> int:
        """16-bit mask words per fiber of a bitmap level."""
        return -(-self.size // BITMAP_WORD_BITS)

    def elements(self) -> int:
        """Stored metadata elements (segment + coordinate entries; a bitmap level's masks and
        per-fiber counts)."""
        if self.fmt == "dense":
            return 0
        if self.fmt == "bitmap":
            return int((len(self.seg) - 1) * self.words_per_fiber() + len(self.seg))
        return int(len(self.seg) + len(self.crd))


@dataclass(frozen=True, eq=False)
class FiberTree:
    """A tensor stored level by level, with its value array."""

    name: str
    shape: tuple[int, ...]
    mode_order: tuple[int, ...]
    levels: tuple[Level, ...]
    vals: np.ndarray

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(lv.fmt for lv in self.levels)

    def nbytes(self, element_bytes: int = 2) -> int:
        """Bytes of the memory image (segments, coordinates, values) at ``element_bytes``."""
        return element_bytes * (sum(lv.elements() for lv in self.levels) + len(self.vals))

    @property
    def nnz(self) -> int:
        """Stored values (including explicit zeros of dense levels)."""
        return int(len(self.vals))

    # ---------------------------------------------------------------- building
    @staticmethod
    def from_coo(
        name: str,
        shape: tuple[int, ...],
        coords: np.ndarray,
        values: np.ndarray,
        formats: tuple[str, ...],
        mode_order: tuple[int, ...] | None = None,
    ) -> FiberTree:
        """Build from coordinates (nnz x rank, mode order of ``shape``) and values.

        Every given entry is stored, so explicit zeros stay explicit. Duplicates are an error.
        """
        rank = len(shape)
        mode_order = tuple(range(rank)) if mode_order is None else tuple(mode_order)
        if len(formats) != rank or sorted(mode_order) != list(range(rank)):
            raise IsaError(f"tensor {name}: formats {formats} / mode order {mode_order} "
                           f"do not match rank {rank}")
        for f in formats:
            if f not in FORMATS:
                raise IsaError(f"tensor {name}: unknown level format {f!r} (use {FORMATS})")
        values = np.asarray(values)
        if rank == 0:   # a scalar: no levels, always one value (0 when no entry is given)
            if values.size > 1:
                raise IsaError(f"tensor {name}: a scalar has one value, got {values.size}")
            dtype = values.dtype if values.dtype.kind in "iuf" else np.float64
            vals = values.reshape(-1).astype(dtype) if values.size else np.zeros(1, dtype)
            return FiberTree(name, (), (), (), vals)
        coords = np.asarray(coords, dtype=np.int64).reshape(-1, rank)
        keys = coords[:, list(mode_order)]
        dims = [shape[m] for m in mode_order]
        if len(keys) and ((keys < 0).any() or (keys >= np.array(dims)).any()):
            raise IsaError(f"tensor {name}: coordinate outside shape {shape}")
        order = np.lexsort(keys.T[::-1]) if len(keys) else np.zeros(0, dtype=np.int64)
        keys, values = keys[order], values[order]
        if len(keys) > 1 and (np.diff(keys, axis=0) == 0).all(axis=1).any():
            raise IsaError(f"tensor {name}: duplicate coordinates")
        pos = np.zeros(len(keys), dtype=np.int64)   # position of each entry in current level
        n_parent = 1
        levels = []
        for lvl, (fmt, dim) in enumerate(zip(formats, dims)):
            c = keys[:, lvl]
            if fmt == "dense":
                pos = pos * dim + c
                n = n_parent * dim
                levels.append(Level("dense", dim))
            else:
                pair = pos * max(dim, 1) + c
                uniq, inverse = np.unique(pair, return_inverse=True)
                parents = uniq // max(dim, 1)
                crd = uniq % max(dim, 1)
                seg = np.searchsorted(parents, np.arange(n_parent + 1), side="left")
                pos = inverse.reshape(-1).astype(np.int64)
                n = len(uniq)
                levels.append(Level(fmt, dim, seg.astype(np.int64), crd.astype(np.int64)))
            n_parent = n
        dtype = values.dtype if values.dtype.kind in "iuf" else np.float64
        vals = np.zeros(n_parent, dtype=dtype)
        vals[pos] = values
        return FiberTree(name, tuple(shape), mode_order, tuple(levels), vals)

    @staticmethod
    def from_dense(name: str, array: np.ndarray, formats: tuple[str, ...],
                   mode_order: tuple[int, ...] | None = None) -> FiberTree:
        """Build from a dense array; zeros are not stored in compressed levels."""
        array = np.asarray(array)
        if array.ndim == 0:
            return FiberTree.from_coo(name, (), np.zeros((0, 0)), array.reshape(1), formats,
                                      mode_order)
        coords = np.argwhere(array != 0)
        return FiberTree.from_coo(name, array.shape, coords, array[tuple(coords.T)],
                                  formats, mode_order)

    @staticmethod
    def dense(name: str, array: np.ndarray) -> FiberTree:
        """A 2-D array with every level dense in row-major order (every value stored)."""
        array = np.asarray(array)
        return FiberTree(name, tuple(array.shape), (0, 1),
                         tuple(Level("dense", int(n)) for n in array.shape),
                         np.ascontiguousarray(array).reshape(-1))

    @staticmethod
    def from_scipy(name: str, matrix, formats: tuple[str, ...],
                   mode_order: tuple[int, ...] | None = None) -> FiberTree:
        """Build from a scipy sparse matrix, keeping its explicitly stored zeros."""
        coo = matrix.tocoo()
        coords = np.stack([coo.row, coo.col], axis=1)
        return FiberTree.from_coo(name, coo.shape, coords, coo.data, formats, mode_order)

    # ---------------------------------------------------------------- reading
    def coo(self) -> tuple[np.ndarray, np.ndarray]:
        """Stored entries as (coords in mode order of ``shape``, values)."""
        pos = np.zeros(1, dtype=np.int64)
        keys = np.zeros((1, 0), dtype=np.int64)
        for lv in self.levels:
            if lv.fmt == "dense":
                child = (pos[:, None] * lv.size + np.arange(lv.size)).reshape(-1)
                crd = np.tile(np.arange(lv.size), len(pos))
                keys = np.repeat(keys, lv.size, axis=0)
            else:
                starts, ends = lv.seg[pos], lv.seg[pos + 1]
                counts = ends - starts
                child = _ranges(starts, counts)
                crd = lv.crd[child]
                keys = np.repeat(keys, counts, axis=0)
            keys = np.concatenate([keys, crd[:, None]], axis=1)
            pos = child
        coords = np.empty_like(keys)
        coords[:, list(self.mode_order)] = keys
        return coords, self.vals[pos]

    def to_dense(self) -> np.ndarray:
        """The tensor as a dense numpy array (0-d for a rank-0 tensor: a scalar)."""
        if self.shape and all(lv.fmt == "dense" for lv in self.levels) \
                and self.mode_order == tuple(range(len(self.shape))):
            return self.vals.reshape(self.shape).copy()
        out = np.zeros(self.shape, dtype=self.vals.dtype)
        coords, vals = self.coo()
        if not self.shape:
            if len(vals):
                out[()] = vals[0]
        elif len(vals):
            out[tuple(coords.T)] = vals
        return out

    def check(self) -> None:
        """Raise IsaError if the arrays are not a well-formed fibertree."""
        n_parent = 1
        for lvl, lv in enumerate(self.levels):
            if lv.fmt in ("compressed", "bitmap"):
                seg, crd = lv.seg, lv.crd
                if len(seg) != n_parent + 1 or seg[0] != 0 or seg[-1] != len(crd):
                    raise IsaError(f"tensor {self.name} level {lvl}: segment array "
                                   f"malformed ({len(seg)} entries for {n_parent} fibers)")
                if (np.diff(seg) < 0).any():
                    raise IsaError(f"tensor {self.name} level {lvl}: segments decrease")
                for p in range(n_parent) if len(crd) < 100000 else ():
                    f = crd[seg[p]:seg[p + 1]]
                    if (np.diff(f) <= 0).any():
                        raise IsaError(f"tensor {self.name} level {lvl}: fiber {p} "
                                       "coordinates not strictly increasing")
            n_parent = lv.fibers(n_parent)
        if len(self.vals) != n_parent:
            raise IsaError(f"tensor {self.name}: {len(self.vals)} values for {n_parent} "
                           "positions")


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate arange(s, s+c) for each (s, c), vectorized."""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + offsets


def parse_formats(spec: str) -> tuple[tuple[str, ...], tuple[int, ...] | None]:
    """Parse a SAM/TACO-style format string: ``"ss"``, ``"ds"``, ``"cs"``, ``"ss:1,0"``.

    Letters: ``d`` dense; ``s`` or ``c`` compressed; ``b`` bitmap. An optional ``:i,j,...``
    gives the mode order (storage level l holds mode i_l).
    """
    letters, _, order = spec.partition(":")
    table = {"d": "dense", "s": "compressed", "c": "compressed", "b": "bitmap"}
    bad = [ch for ch in letters if ch not in table]
    if bad or not letters:
        raise IsaError(f"bad format {spec!r}: use letters d (dense), s or c (compressed), b "
                       "(bitmap), optionally followed by a mode order like ':1,0'")
    fmts = tuple(table[ch] for ch in letters)
    if not order:
        return fmts, None
    try:
        mo = tuple(int(x) for x in order.split(","))
    except ValueError:
        raise IsaError(f"bad mode order in format {spec!r}") from None
    if sorted(mo) != list(range(len(fmts))):
        raise IsaError(f"bad mode order in format {spec!r}: must permute 0..{len(fmts) - 1}")
    return fmts, mo


# ------------------------------------------------------------------ bitmap level images
def bitmap_masks(lv: Level) -> np.ndarray:
    """The mask words of a bitmap level (its memory image besides the counts ``seg``): fiber
    f's words are elements f*W .. f*W+W-1 (W = ``words_per_fiber``), bit b of word w set when
    coordinate 16w+b is present. int64 values 0..65535."""
    words = lv.words_per_fiber()
    fibers = len(lv.seg) - 1
    fid = np.repeat(np.arange(fibers, dtype=np.int64), np.diff(lv.seg))
    elem = fid * words + lv.crd // BITMAP_WORD_BITS
    bit = np.left_shift(1, lv.crd % BITMAP_WORD_BITS).astype(np.float64)
    return np.bincount(elem, weights=bit, minlength=fibers * words).astype(np.int64)


def bitmap_level(size: int, counts: np.ndarray, masks: np.ndarray) -> Level:
    """A bitmap level read back from its image: per-fiber ``counts`` (set bits before each
    fiber, fibers + 1 entries) and ``masks`` (W words per fiber). IsaError if the two
    disagree or a bit lies outside ``size``."""
    counts = np.asarray(counts, dtype=np.int64)
    masks = np.asarray(masks, dtype=np.int64)
    words = -(-size // BITMAP_WORD_BITS)
    fibers = len(counts) - 1
    if len(masks) != fibers * words:
        raise IsaError(f"bitmap level: {len(masks)} mask words for {fibers} fibers of "
                       f"{words} words")
    bits = (masks[:, None] >> np.arange(BITMAP_WORD_BITS)) & 1
    flat = np.flatnonzero(bits.reshape(-1))
    per_fiber = words * BITMAP_WORD_BITS
    crd = flat % per_fiber
    if len(crd) and crd.max() >= size:
        raise IsaError(f"bitmap level: a set bit at coordinate {int(crd.max())} >= size {size}")
    have = np.bincount(flat // per_fiber, minlength=fibers) if fibers else np.zeros(0, int)
    if counts[0] != 0 or not np.array_equal(np.diff(counts), have):
        raise IsaError("bitmap level: the per-fiber counts disagree with the masks' set bits")
    return Level("bitmap", size, counts, crd.astype(np.int64))
