"""Weight pruning: sparsity patterns, magnitude pruning of given weights, and seeded synthetic
keep-masks whose rows vary like those of real magnitude-pruned models.

Weights are [out x in] (a linear layer computes ``y = W x``). N:M groups run along the input
dimension (axis 1), as NVIDIA's 2:4 sparse tensor cores and our MiniLM-L6 pruning
measurements (below) do. Everything is vectorized numpy: a 14336 x 4096
matrix (a Mixtral expert) takes about a second.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from workloads.base import WorkloadError

PATTERN_HELP = ("patterns: unstructured, N:M along the input dim (2:4, 4:8, 1:4; 0 < N <= M), "
                "blockHxW (block4x4, block16x16, block32x32) or blockN (NxN)")
"""One line listing the pattern spellings ``parse_pattern`` accepts."""

_PATTERN_USE = "use unstructured, 2:4, 4:8, 1:4, blockHxW"
_NM_RE = re.compile(r"^(\d+):(\d+)$")
_BLOCK_RE = re.compile(r"^block(\d+)(?:x(\d+))?$")
_NM_TABLE_MAX = 4096        # largest C(m, n) for which synthetic N:M masks use a pattern table
_NM_RANK_MAX_M = 16         # largest m for which N:M pruning ranks by pairwise comparisons

# Per-row nonzero-count CV of per-matrix magnitude pruning, measured by the team on MiniLM-L6 FFN
# weights (6 layers, 1536x384 and 384x1536, each matrix pruned by |w|; unpublished): CV 0.1-0.25
# at 50%, 0.2-0.4 at 70%, 0.35-0.75 at 90%. ASSUMPTION: the points below, inside those ranges.
_ROW_CV_POINTS = ((0.0, 0.0), (0.5, 0.17), (0.7, 0.30), (0.9, 0.55), (0.95, 0.75), (1.0, 0.75))


@dataclass(frozen=True)
class Pattern:
    """A weight sparsity pattern.

    ``kind`` is "unstructured", "nm" (n of every m consecutive weights along the input
    dimension are kept) or "block" (bh x bw blocks are kept or dropped whole).
    """

    kind: str
    n: int = 0
    m: int = 0
    bh: int = 0
    bw: int = 0

    def __post_init__(self) -> None:
        ok = {"unstructured": True, "nm": 0 < self.n <= self.m,
              "block": self.bh >= 1 and self.bw >= 1}.get(self.kind, False)
        if not ok:
            raise WorkloadError(f"pattern: invalid {self!r} ({_PATTERN_USE})")

    @property
    def name(self) -> str:
        """The canonical spelling: "unstructured", "2:4", "block16x16"."""
        if self.kind == "nm":
            return f"{self.n}:{self.m}"
        if self.kind == "block":
            return f"block{self.bh}x{self.bw}"
        return "unstructured"

    @property
    def fixed_sparsity(self) -> float | None:
        """The sparsity the pattern implies (N:M: 1 - n/m); None when it is a free choice."""
        if self.kind == "nm":
            return 1.0 - self.n / self.m
        return None


def parse_pattern(text: str | Pattern) -> Pattern:
    """"unstructured", "N:M" (0 < N <= M), "blockHxW" or "blockN" (N x N) -> Pattern.

    Raises: WorkloadError naming ``pattern`` for anything else.
    """
    if isinstance(text, Pattern):
        return text
    if not isinstance(text, str):
        raise WorkloadError(f"pattern: expected a string, got {text!r} ({_PATTERN_USE})")
    t = text.strip().lower()
    if t == "unstructured":
        return Pattern("unstructured")
    hit = _NM_RE.match(t)
    if hit:
        n, m = int(hit.group(1)), int(hit.group(2))
        if not 0 < n <= m:
            raise WorkloadError(f"pattern: {text!r} needs 0 < N <= M in N:M")
        return Pattern("nm", n=n, m=m)
    hit = _BLOCK_RE.match(t)
    if hit:
        bh = int(hit.group(1))
        bw = int(hit.group(2)) if hit.group(2) else bh
        if bh < 1 or bw < 1:
            raise WorkloadError(f"pattern: {text!r} needs positive block sizes")
        return Pattern("block", bh=bh, bw=bw)
    raise WorkloadError(f"pattern: unknown pattern {text!r} ({_PATTERN_USE})")


def row_cv_default(sparsity: float) -> float:
    """The per-row nonzero-count CV that per-matrix magnitude pruning gives at ``sparsity``.

    Piecewise linear through points inside the team's MiniLM-L6 measurements (``_ROW_CV_POINTS``):
    0 at 0, 0.17 at 0.5, 0.30 at 0.7, 0.55 at 0.9 and 0.75 at 0.95 and above.
    """
    _check_fraction("sparsity", sparsity)
    xs, ys = zip(*_ROW_CV_POINTS)
    return float(np.interp(sparsity, xs, ys))


def realized_sparsity(sparsity: float, cv: float) -> float:
    """The fraction of weights that unstructured synthetic pruning removes when the per-row
    keep probability is (1 - sparsity) x g, g lognormal with mean 1 and CV ``cv``, clipped at 1
    (workloads.layers.Weight): 1 - E[min((1-s) g, 1)], in closed form."""
    keep = 1.0 - sparsity
    if cv <= 0 or keep <= 0:
        return sparsity
    sigma2 = math.log1p(cv * cv)
    sigma, mu = math.sqrt(sigma2), -sigma2 / 2

    def phi(z: float) -> float:
        return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))

    clip = math.log(1.0 / keep)                 # g above 1/keep is kept with probability 1
    below = phi((clip - mu - sigma2) / sigma)   # E[g; g < 1/keep] (E[g] = 1)
    above = 1.0 - phi((clip - mu) / sigma)      # P(g >= 1/keep)
    return 1.0 - (keep * below + above)


def row_nnz_cv(mat: np.ndarray | sp.spmatrix | sp.sparray) -> float:
    """Coefficient of variation (population std / mean) of the nonzeros per row; 0 when the
    matrix has no nonzeros or no rows. Explicitly stored zeros of a sparse matrix do not
    count."""
    if sp.issparse(mat):
        csr = sp.csr_matrix(mat, copy=True)
        csr.eliminate_zeros()
        counts = np.diff(csr.indptr)
    else:
        arr = np.asarray(mat)
        if arr.ndim != 2:
            raise WorkloadError(f"mat: expected a 2-D matrix, got shape {arr.shape}")
        counts = np.count_nonzero(arr, axis=1)
    if counts.size == 0:
        return 0.0
    mean = counts.mean()
    return float(counts.std() / mean) if mean > 0 else 0.0


# ------------------------------------------------------------------ magnitude pruning
def prune(w: np.ndarray, pattern: str | Pattern, sparsity: float | None) -> np.ndarray:
    """A copy of ``w`` (same dtype) magnitude-pruned to ``pattern``.

    unstructured: exactly round((1 - s) * size) entries of largest |w| over the whole matrix
        are kept (ties: lower flat index first).
    N:M: in every row, each group of m consecutive weights along axis 1 keeps its n largest
        |w| (ties: lower index); a final partial group of r weights keeps min(n, r).
        ``sparsity`` must be None or 1 - n/m.
    block: bh x bw blocks (edge blocks may be partial) are scored by sum |w|; the
        round((1 - s) * blocks) best are kept (ties: lower block index, row-major).

    Raises: WorkloadError naming ``weights``, ``pattern`` or ``sparsity``.
    """
    pat = parse_pattern(pattern)
    w = _check_weights(w)
    sparsity = _check_sparsity(pat, sparsity)
    if w.size == 0:
        return w.copy()
    mag = _magnitude(w)
    if pat.kind == "unstructured":
        keep = _top_count(mag.ravel(), _kept(sparsity, w.size)).reshape(w.shape)
    elif pat.kind == "nm":
        keep = _nm_keep(mag, pat.n, pat.m)
    else:
        keep = _block_keep(mag, pat.bh, pat.bw, sparsity)
    return np.where(keep, w, w.dtype.type(0))


def _magnitude(w: np.ndarray) -> np.ndarray:
    if w.dtype.kind in "iu":
        return np.abs(w.astype(np.int64))         # |int8(-128)| overflows int8
    return np.abs(w)


def _kept(sparsity: float, total: int) -> int:
    return int(round((1.0 - sparsity) * total))


def _top_count(score: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask of the ``count`` largest entries of the 1-D ``score`` (ties: lower index)."""
    keep = np.zeros(score.size, dtype=bool)
    if count <= 0:
        return keep
    if count >= score.size:
        keep[:] = True
        return keep
    cut = np.partition(score, score.size - count)[score.size - count]
    np.greater(score, cut, out=keep)
    need = count - int(np.count_nonzero(keep))
    if need > 0:
        keep[np.flatnonzero(score == cut)[:need]] = True
    return keep


def _nm_keep(mag: np.ndarray, n: int, m: int) -> np.ndarray:
    rows, cols = mag.shape
    if n == m:
        return np.ones((rows, cols), dtype=bool)
    groups = -(-cols // m)
    if groups * m != cols:                      # pad: padding ranks below every real weight
        pad = np.full((rows, groups * m), -1, dtype=np.result_type(mag.dtype, np.int8))
        pad[:, :cols] = mag
        mag = pad
    grouped = mag.reshape(rows, groups, m)
    if m <= _NM_RANK_MAX_M:
        # rank_i = #{j: a_j > a_i} + #{j < i: a_j == a_i}; keep rank < n (m^2 array passes)
        lanes = [np.ascontiguousarray(grouped[:, :, i]) for i in range(m)]
        keep = np.empty((rows, groups, m), dtype=bool)
        rank = np.empty((rows, groups), dtype=np.uint8)
        for i in range(m):
            rank[:] = 0
            for j in range(m):
                if j != i:
                    rank += (lanes[j] >= lanes[i]) if j < i else (lanes[j] > lanes[i])
            keep[:, :, i] = rank < n
    else:
        order = np.argsort(-grouped.astype(np.float64), axis=2, kind="stable")
        keep = np.zeros((rows, groups, m), dtype=bool)
        np.put_along_axis(keep, order[:, :, :n], True, axis=2)
    return keep.reshape(rows, groups * m)[:, :cols]


def _block_keep(mag: np.ndarray, bh: int, bw: int, sparsity: float) -> np.ndarray:
    rows, cols = mag.shape
    gr, gc = -(-rows // bh), -(-cols // bw)
    if gr * bh != rows or gc * bw != cols:
        pad = np.zeros((gr * bh, gc * bw), dtype=mag.dtype)
        pad[:rows, :cols] = mag
        mag = pad
    score = mag.reshape(gr, bh, gc, bw).sum(axis=(1, 3), dtype=np.float64)
    blocks = _top_count(score.ravel(), _kept(sparsity, gr * gc)).reshape(gr, gc)
    return _expand_blocks(blocks, bh, bw, rows, cols)


def _expand_blocks(blocks: np.ndarray, bh: int, bw: int, rows: int, cols: int) -> np.ndarray:
    return np.repeat(np.repeat(blocks, bh, axis=0)[:rows], bw, axis=1)[:, :cols]


# ------------------------------------------------------------------ synthetic masks
def synthetic_mask(rng: np.random.Generator, shape: tuple[int, int], pattern: str | Pattern,
                   sparsity: float | None, row_cv: float | None = None) -> np.ndarray:
    """A seeded keep-mask (bool, ``shape``) for synthetic weights, with per-row nonzero counts
    that vary like those of real magnitude-pruned models (``_ROW_CV_POINTS``).

    unstructured: row r keeps each entry with probability p_r = (1 - s) g_r clipped to [0, 1],
        g_r lognormal with mean 1 (so at 90% some rows can be empty). The CV of g is chosen so
        that the realized per-row counts have CV ``row_cv`` (default ``row_cv_default(s)``):
        the binomial part (1 - d) / (cols d) is taken off in quadrature, so counts cannot vary
        less than Bernoulli sampling makes them. Clipping (only when (1 - s)(1 + 3 cv) > 1)
        lowers the density a little.
    N:M: exactly n uniformly random positions of every group of m along axis 1 (a final
        partial group of r keeps min(n, r)); ``sparsity`` must be None or 1 - n/m.
    block: each bh x bw block (edge blocks partial) is kept with probability 1 - s.

    Raises: WorkloadError naming ``shape``, ``pattern``, ``sparsity`` or ``row_cv``.
    """
    pat = parse_pattern(pattern)
    shape = _check_shape(shape)
    sparsity = _check_sparsity(pat, sparsity)
    rows, cols = shape
    if pat.kind == "nm":
        if row_cv is not None:
            raise WorkloadError(f"row_cv: N:M pattern {pat.name} has exactly {pat.n} per "
                                f"group of {pat.m}; row_cv applies to unstructured only")
        return _synthetic_nm(rng, rows, cols, pat.n, pat.m)
    density = 1.0 - sparsity
    if pat.kind == "block":
        if row_cv is not None:
            raise WorkloadError("row_cv: applies to unstructured only (block rows vary "
                                "through whole blocks)")
        gr, gc = -(-rows // pat.bh), -(-cols // pat.bw)
        blocks = rng.random((gr, gc), dtype=np.float32) < np.float32(density)
        if density >= 1.0:
            blocks[:] = True
        return _expand_blocks(blocks, pat.bh, pat.bw, rows, cols)
    cv = row_cv_default(sparsity) if row_cv is None else row_cv
    if not (isinstance(cv, (int, float)) and 0.0 <= cv < math.inf):
        raise WorkloadError(f"row_cv: must be a finite number >= 0, got {row_cv!r}")
    p = density * _lognormal_mean1(rng, rows, _g_cv(cv, density, cols))
    np.clip(p, 0.0, 1.0, out=p)
    keep = rng.random(shape, dtype=np.float32) < p.astype(np.float32)[:, None]
    keep[p >= 1.0] = True                       # float32 uniforms are < 1, but be exact
    return keep


def _g_cv(cv: float, density: float, cols: int) -> float:
    """CV of the row factor g such that Bernoulli counts over ``cols`` entries have CV ``cv``:
    CV^2 = (1 - d) / (cols d) + cv_g^2 (1 - 1/cols)."""
    if density <= 0.0 or cols <= 1:
        return cv
    binomial = (1.0 - density) / (cols * density)
    return math.sqrt(max(0.0, cv * cv - binomial) / (1.0 - 1.0 / cols))


def _lognormal_mean1(rng: np.random.Generator, size: int, cv: float) -> np.ndarray:
    sigma2 = math.log1p(cv * cv)
    return rng.lognormal(-sigma2 / 2.0, math.sqrt(sigma2), size=size)


def _synthetic_nm(rng: np.random.Generator, rows: int, cols: int, n: int, m: int) -> np.ndarray:
    full, rest = divmod(cols, m)
    parts = []
    if full:
        if math.comb(m, n) <= _NM_TABLE_MAX:
            table = np.zeros((math.comb(m, n), m), dtype=bool)
            for c, pos in enumerate(itertools.combinations(range(m), n)):
                table[c, list(pos)] = True
            pick = rng.integers(0, len(table), size=(rows, full),
                                dtype=np.int16 if len(table) < 2**15 else np.int32)
            parts.append(table[pick].reshape(rows, full * m))
        else:
            parts.append(_random_keep(rng, (rows, full, m), n).reshape(rows, full * m))
    if rest:
        parts.append(_random_keep(rng, (rows, 1, rest), min(n, rest)).reshape(rows, rest))
    if not parts:
        return np.zeros((rows, cols), dtype=bool)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _random_keep(rng: np.random.Generator, shape: tuple[int, int, int], n: int) -> np.ndarray:
    """n uniformly random True per slice along the last axis."""
    keep = np.zeros(shape, dtype=bool)
    if n >= shape[2]:
        keep[:] = True
        return keep
    order = np.argpartition(rng.random(shape, dtype=np.float32), n - 1, axis=2)
    np.put_along_axis(keep, order[:, :, :n], True, axis=2)
    return keep


# ------------------------------------------------------------------ checks
def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise WorkloadError(f"{name}: expected a number in [0, 1], got {value!r}")
    v = float(value)
    if not 0.0 <= v <= 1.0:                      # also rejects NaN
        raise WorkloadError(f"{name}: must be in [0, 1], got {value}")
    return v


def _check_sparsity(pat: Pattern, sparsity: float | None) -> float:
    fixed = pat.fixed_sparsity
    if fixed is not None:
        if sparsity is None:
            return fixed
        s = _check_fraction("sparsity", sparsity)
        if abs(s - fixed) > 1e-9:
            raise WorkloadError(f"sparsity: pattern {pat.name} fixes sparsity at {fixed:g}, "
                                f"got {sparsity} (pass None)")
        return fixed
    if sparsity is None:
        raise WorkloadError(f"sparsity: required for pattern {pat.name}")
    return _check_fraction("sparsity", sparsity)


def _check_weights(w: object) -> np.ndarray:
    if sp.issparse(w):
        raise WorkloadError("weights: expected a dense ndarray, got a scipy sparse matrix "
                            "(call .toarray())")
    arr = np.asarray(w)
    if arr.ndim != 2:
        raise WorkloadError(f"weights: expected a 2-D [out x in] matrix, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise WorkloadError(f"weights: expected real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise WorkloadError(f"weights: contain {bad} (first at {_first_bad(arr)})")
    return arr


def _first_bad(arr: np.ndarray) -> tuple[int, ...]:
    flat = int(np.flatnonzero(~np.isfinite(arr.ravel()))[0])
    return tuple(int(i) for i in np.unravel_index(flat, arr.shape))


def _check_shape(shape: object) -> tuple[int, int]:
    try:
        rows, cols = (int(x) for x in shape)     # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise WorkloadError(f"shape: expected (rows, cols), got {shape!r}") from None
    if rows < 0 or cols < 0:
        raise WorkloadError(f"shape: sizes must be >= 0, got {shape!r}")
    return rows, cols
