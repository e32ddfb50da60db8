"""Dense systolic-array mode: a GEMM on an R x C array of MAC PEs with SCALE-Sim v3's timing.

The CGRA's dense mode maps C = A @ B (A: M x K, the *ifmap*; B: K x N, the *filter* or weights;
C: M x N, the *ofmap*) onto a rows x cols array the way SCALE-Sim v3 (scalesim 3.0.0, "compute"
modules ``systolic_compute_{os,ws,is}``) does, with no DRAM stalls (its CALC bandwidth mode), so
that ``compute_cycles`` equals the "Total Cycles" column of its COMPUTE_REPORT.csv.

Mapping. SCALE-Sim names three extents per dataflow: Sr is spread over the array rows, Sc over
the array columns, and T streams through the array in time:

    dataflow  stationary  Sr (rows)  Sc (cols)  T (time)  stationary load
    os        outputs     M          N          K'        0
    ws        weights B   K'         N          M         R cycles
    is        inputs A    K'         M          N         R cycles

K' is the reduction length the array sees: K when dense, the compressed length under weight
N:M sparsity (below). The GEMM is cut into ceil(Sr/R) x ceil(Sc/C) *folds*, executed one after
the other in SCALE-Sim's order (column fold outer, row fold inner).

Timing (per fold, SCALE-Sim's demand matrices). Each fold occupies the array for

    load (0 or R) + fill (R - 1) + stream (T) + drain (C - 1)    cycles:

the stationary operand is shifted in one row per cycle (WS/IS), the skewed operand wavefront
takes R - 1 cycles to reach the last row, T operand vectors stream in, and the last results
need C - 1 more cycles to cross the columns. Folds do not overlap (SCALE-Sim lets each fold
drain before the next starts). Partial folds (an extent that is not a multiple of R or C) are
padded with null requests to the full array, so they pay the same fill and drain as full folds
and every fold takes the same time; the ceil() in the closed forms below is exactly that rule.
SCALE-Sim reports the index of the last cycle counting from 0, i.e. the sum of the fold times
minus one. Closed forms (R x C array):

    os: ceil(M/R)  * ceil(N/C) * (K' + R + C - 2)  - 1
    ws: ceil(K'/R) * ceil(N/C) * (M + 2R + C - 2)  - 1
    is: ceil(K'/R) * ceil(M/C) * (N + 2R + C - 2)  - 1

The IS form follows from SCALE-Sim's IS mapping (the ifmap is stationary with K along the rows
and M along the columns; B streams N vectors): it is the WS form with the roles of M and N
exchanged. Checked against scalesim 3.0.0: 256^3 on 128x128 gives 2,551 (IS), 2,551 (WS) and
2,039 (OS), and all three forms match 153 runs on 8x4, 4x8 and 5x3 arrays with partial folds,
dense and N:M (tests/test_systolic.py holds a subset). A GEMM with an empty dimension (M, N or
K = 0) issues no work: 0 folds and 0 cycles.

Weight N:M sparsity (``nm=(n, m)``). As in SCALE-Sim's layer-wise mode the weight operand is
compressed along K: each group of m consecutive K entries of a column keeps n slots (a final
partial group of r entries keeps min(n, r)), so K' = (K // m) * n + min(n, K % m), in every
dataflow. B must hold at most n nonzeros in every group; a slot keeps a nonzero when there is
one and a zero otherwise. The output is computed from the compressed weights and their slot
indices (the metadata), so it still equals A @ B.

Traffic. ``ifmap_reads``, ``filter_reads`` and ``ofmap_writes`` count elements moved between
the array and its SRAM buffers, padding (null requests) excluded, per fold:

    ifmap  = (M extent of the fold) x (span of original K positions the fold covers)
    filter = (K' extent of the fold) x (N extent of the fold)
    ofmap  = (M extent of the fold) x (N extent of the fold)

Dense, these equal SCALE-Sim's SRAM IFMAP Reads / Filter Reads / OFMAP Writes, except that
SCALE-Sim's OS model adds a spurious R + C writes per fold (``ofmap_writes += rows + cols``
after the real count in ``systolic_compute_os``); we do not copy that. Under N:M the K span of a
fold is the groups its slots come from (a slot's activation differs per column, so a row of
the array needs the whole group): with K a multiple of m and R a multiple of n this is
SCALE-Sim's WS figure (K' x m / n); SCALE-Sim's OS and IS charge only K' because its layer-wise
pattern is the same in every column, which ours need not be.

Occupancy. ``mac_count`` counts every MAC the array issues (every mapped PE, every streamed
step): M x N x K'. ``zero_operand_mac_count`` counts those with a zero operand (exact, from the
data). ``pe_cycles`` = R x C x (sum of fold times): PE-cycles the array is held by the GEMM;
``mapped_pe_cycles`` the same over mapped PEs only. Ratios (utilization = mac_count /
pe_cycles, mapping efficiency = mapped_pe_cycles / pe_cycles) are derived, never stored. Note
SCALE-Sim's "Overall Util %" divides the dense M x N x K by compute_cycles x R x C, which is
off by one cycle and exceeds 100 % under N:M.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isa.arch import SYSTOLIC_DATAFLOWS
from isa.errors import SimulationError
from simulator.stats import counters, stat

DATAFLOWS = SYSTOLIC_DATAFLOWS
_EXACT_FLOAT32 = 2**24  # every integer of smaller magnitude is exact in float32
_EXACT_FLOAT64 = 2**53  # ... and in float64


@dataclass(frozen=True)
class SystolicArray:
    """An R x C array of MAC PEs in one of SCALE-Sim's dataflows.

    Raises: SimulationError if rows or cols is not a positive int or the dataflow is unknown.
    """

    rows: int
    cols: int
    dataflow: str

    def __post_init__(self) -> None:
        problems = []
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                problems.append(f"{name} must be an int >= 1, got {value!r}")
        if self.dataflow not in DATAFLOWS:
            problems.append(f"dataflow must be one of {', '.join(DATAFLOWS)}, "
                            f"got {self.dataflow!r}")
        if problems:
            raise SimulationError("invalid systolic array: " + "; ".join(problems))


@dataclass(frozen=True, eq=False)
class FoldSchedule:
    """Where and when each fold runs: one entry per fold, in execution order.

    Each fold is a box of the iteration space: output rows [m_lo, m_hi), output columns
    [n_lo, n_hi), compressed reduction slots [k_lo, k_hi) (K' = K when dense) which come from the
    original K positions [span_lo, span_hi). Cycles are kernel cycles from 0; a fold occupies
    [start_cycle, start_cycle + fold_cycles). All arrays are int64.
    """

    array: SystolicArray
    m: int
    n: int
    k: int
    k_compressed: int
    nm: tuple[int, int] | None
    m_lo: np.ndarray
    m_hi: np.ndarray
    n_lo: np.ndarray
    n_hi: np.ndarray
    k_lo: np.ndarray
    k_hi: np.ndarray
    span_lo: np.ndarray
    span_hi: np.ndarray
    rows_used: np.ndarray
    cols_used: np.ndarray
    start_cycle: np.ndarray
    load_cycles: np.ndarray
    fill_cycles: np.ndarray
    stream_cycles: np.ndarray
    drain_cycles: np.ndarray

    @property
    def folds(self) -> int:
        """Number of folds."""
        return len(self.start_cycle)

    @property
    def fold_cycles(self) -> np.ndarray:
        """Cycles each fold holds the array: load + fill + stream + drain."""
        return self.load_cycles + self.fill_cycles + self.stream_cycles + self.drain_cycles

    @property
    def end_cycle(self) -> np.ndarray:
        """First cycle after each fold."""
        return self.start_cycle + self.fold_cycles

    @property
    def compute_cycles(self) -> int:
        """Last cycle of array activity minus the first (SCALE-Sim's compute cycles); 0 if idle."""
        return int(self.end_cycle[-1]) - 1 if self.folds else 0

    @property
    def mac_count(self) -> np.ndarray:
        """MACs issued per fold (mapped PEs x streamed steps)."""
        return (self.m_hi - self.m_lo) * (self.n_hi - self.n_lo) * (self.k_hi - self.k_lo)

    @property
    def ifmap_reads(self) -> np.ndarray:
        """A elements read per fold: M extent x original K span."""
        return (self.m_hi - self.m_lo) * (self.span_hi - self.span_lo)

    @property
    def filter_reads(self) -> np.ndarray:
        """Compressed B elements read per fold: K' extent x N extent."""
        return (self.k_hi - self.k_lo) * (self.n_hi - self.n_lo)

    @property
    def ofmap_writes(self) -> np.ndarray:
        """C elements (partial sums under WS/IS K folds) written per fold."""
        return (self.m_hi - self.m_lo) * (self.n_hi - self.n_lo)


@dataclass(frozen=True, eq=False)
class GemmRun:
    """Result of ``simulate_gemm``: the product, its fold schedule and raw counters."""

    output: np.ndarray
    schedule: FoldSchedule
    fold_zero_operand_mac_count: np.ndarray
    folds: int = stat("folds", "Folds the GEMM was cut into to fit the array.")
    compute_cycles: int = stat("cycles", "Cycles from the first to the last cycle of array "
                                   "activity (SCALE-Sim's compute cycles, no DRAM stalls).")
    mac_count: int = stat("ops", "MACs issued by the array (every mapped PE, every "
                              "streamed step).")
    zero_operand_mac_count: int = stat("ops", "Issued MACs with at least one zero operand.")
    pe_cycles: int = stat("PE-cycles", "Array PEs times the cycles the folds hold the "
                              "array (rows x cols x sum of fold cycles).")
    mapped_pe_cycles: int = stat("PE-cycles", "Sum over folds of the PEs holding part of "
                                     "the mapping times the fold's cycles.")
    ifmap_reads: int = stat("elements", "A (ifmap) elements read from its SRAM buffer into "
                                "the array.")
    filter_reads: int = stat("elements", "B (filter) elements, compressed under N:M, read "
                                 "from its SRAM buffer into the array.")
    ofmap_writes: int = stat("elements", "C (ofmap) elements or partial sums written from "
                                 "the array to its SRAM buffer.")

    def counters(self) -> dict[str, dict[str, Any]]:
        """The raw counters as ``name -> {value, unit, desc}``."""
        return counters(self)


def compressed_k(k: int, nm: tuple[int, int] | None) -> int:
    """Reduction length the array sees: K dense, (K // m) * n + min(n, K % m) under n:m."""
    if nm is None:
        return k
    n, m = nm
    return (k // m) * n + min(n, k % m)


def _check_nm(nm: Any) -> tuple[int, int] | None:
    """Validate an N:M pair; ``None`` and n == m (nothing pruned) both mean dense."""
    if nm is None:
        return None
    ok = (isinstance(nm, (tuple, list)) and len(nm) == 2
          and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in nm)
          and 1 <= nm[0] <= nm[1])
    if not ok:
        raise SimulationError(f"invalid N:M sparsity {nm!r}: expected a pair (n, m) of ints "
                              "with 1 <= n <= m")
    n, m = int(nm[0]), int(nm[1])
    return None if n == m else (n, m)


def _check_extent(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise SimulationError(f"systolic GEMM: {name} must be an int >= 0, got {value!r}")
    return int(value)


def fold_schedule(m: int, n: int, k: int, array: SystolicArray,
                  nm: tuple[int, int] | None = None) -> FoldSchedule:
    """The fold-by-fold schedule of an M x K by K x N GEMM on ``array`` (shapes only).

    Raises: SimulationError for a negative or non-int extent or an invalid ``nm``.
    """
    m, n, k = _check_extent("M", m), _check_extent("N", n), _check_extent("K", k)
    nm = _check_nm(nm)
    kc = compressed_k(k, nm)
    r, c = array.rows, array.cols
    # extents on array rows (Sr), array columns (Sc) and in time (T); stationary load cycles
    sr, sc, t, load = {"os": (m, n, kc, 0), "ws": (kc, n, m, r), "is": (kc, m, n, r)}[
        array.dataflow]
    empty = min(m, n, kc) == 0
    row_folds, col_folds = (0, 0) if empty else (-(-sr // r), -(-sc // c))
    f = np.arange(row_folds * col_folds, dtype=np.int64)
    fr, fc = f % max(row_folds, 1), f // max(row_folds, 1)  # SCALE-Sim: column folds outer
    row_lo, col_lo = fr * r, fc * c
    row_hi, col_hi = np.minimum(row_lo + r, sr), np.minimum(col_lo + c, sc)
    zeros, full = np.zeros_like(f), np.ones_like(f)
    if array.dataflow == "os":
        box = (row_lo, row_hi, col_lo, col_hi, zeros, full * kc)
    elif array.dataflow == "ws":
        box = (zeros, full * m, col_lo, col_hi, row_lo, row_hi)
    else:
        box = (col_lo, col_hi, zeros, full * n, row_lo, row_hi)
    m_lo, m_hi, n_lo, n_hi, k_lo, k_hi = box
    if nm is None:
        span_lo, span_hi = k_lo, k_hi
    else:  # slot s lies in group s // n, which covers K positions [g * m, g * m + m)
        span_lo = (k_lo // nm[0]) * nm[1]
        span_hi = np.minimum(((k_hi - 1) // nm[0] + 1) * nm[1], k)
    load_cycles, fill_cycles = full * load, full * (r - 1)
    stream_cycles, drain_cycles = full * t, full * (c - 1)
    fold_cycles = load_cycles + fill_cycles + stream_cycles + drain_cycles
    start_cycle = np.cumsum(fold_cycles) - fold_cycles  # folds run back to back, no overlap
    return FoldSchedule(
        array=array, m=m, n=n, k=k, k_compressed=kc, nm=nm,
        m_lo=m_lo, m_hi=m_hi, n_lo=n_lo, n_hi=n_hi, k_lo=k_lo, k_hi=k_hi,
        span_lo=span_lo, span_hi=span_hi, rows_used=row_hi - row_lo, cols_used=col_hi - col_lo,
        start_cycle=start_cycle, load_cycles=load_cycles, fill_cycles=fill_cycles,
        stream_cycles=stream_cycles, drain_cycles=drain_cycles)


def gemm_cycles(m: int, n: int, k: int, array: SystolicArray,
                nm: tuple[int, int] | None = None) -> int:
    """SCALE-Sim v3 compute cycles of an M x K by K x N GEMM, from shapes alone."""
    return fold_schedule(m, n, k, array, nm).compute_cycles


def _operand(name: str, x: Any) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise SimulationError(f"simulate_gemm: operand {name} must be 2-D, got shape {x.shape}")
    if x.dtype.kind not in "iuf":
        raise SimulationError(f"simulate_gemm: operand {name} must hold ints or floats, "
                              f"got dtype {x.dtype}")
    if x.dtype.kind == "f" and x.size and not np.isfinite(x).all():
        i, j = np.argwhere(~np.isfinite(x))[0]
        raise SimulationError(f"simulate_gemm: operand {name} holds {x[i, j]} at row {i}, "
                              f"column {j}")
    return x


def _work_dtype(a: np.ndarray, b: np.ndarray) -> tuple[np.dtype, np.dtype]:
    """(dtype to accumulate in, dtype of the result): numpy's result type, accumulated in
    float32 or float64 when that is exact for integers (|partial sums| < 2**24 or 2**53: every
    intermediate is then an exactly representable integer, in any summation order), for BLAS
    speed."""
    out = np.result_type(a.dtype, b.dtype)
    if out.kind == "f":
        return out, out

    def peak(x: np.ndarray) -> int:
        return max(abs(int(x.max())), abs(int(x.min()))) if x.size else 0

    bound = peak(a) * peak(b) * a.shape[1]
    if bound < _EXACT_FLOAT32:
        return np.dtype(np.float32), out
    return (np.dtype(np.float64) if bound < _EXACT_FLOAT64 else out), out


def _compress_nm(b: np.ndarray, nm: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Kept slots of B under n:m along K: (slot -> original K index, slot value), K' x N each.

    Raises: SimulationError naming the first column (then group) with more than n nonzeros.
    """
    n, m = nm
    k, cols = b.shape
    groups = -(-k // m)
    nonzero = np.zeros((groups * m, cols), dtype=bool)
    nonzero[:k] = b != 0
    nonzero = nonzero.reshape(groups, m, cols)
    counts = nonzero.sum(axis=1)
    bad = counts > n
    if bad.any():
        col, group = np.argwhere(bad.T)[0]
        raise SimulationError(
            f"simulate_gemm: operand B violates {n}:{m} sparsity along K: column {col}, group "
            f"{group} (K rows {group * m}..{min(k, group * m + m) - 1}) holds "
            f"{counts[group, col]} nonzeros, at most {n} allowed ({int(bad.sum())} groups "
            "violate)")
    # nonzeros first, then zeros, each in K order; padding rows past K sort last
    order = np.argsort(~nonzero, axis=1, kind="stable")[:, :n, :]
    index = (np.arange(groups)[:, None, None] * m + order).reshape(groups * n, cols)
    index = index[:compressed_k(k, nm)]
    return index, np.take_along_axis(b, index, axis=0)


def simulate_gemm(a: np.ndarray, b: np.ndarray, array: SystolicArray, *,
                  nm: tuple[int, int] | None = None) -> GemmRun:
    """Run C = A @ B on ``array`` fold by fold; see the module docstring for the model.

    Each fold multiplies its block of A by its block of (decompressed) weights and accumulates
    into its block of C, so WS and IS accumulate partial sums across K folds. Integers are
    exact (accumulated in float32 or float64 only when no partial sum can reach 2**24 or
    2**53); floats are
    accumulated fold by fold, so they may differ from ``a @ b`` in the last bits.

    Timing: ``fold_schedule`` (SCALE-Sim v3 compute cycles, no DRAM stalls).
    Stats:  GemmRun counters; zero-operand MACs counted exactly per fold from the data.
    Raises: SimulationError for non-2-D or non-numeric operands, NaN or infinity, mismatched
            inner dimensions, an invalid ``nm`` or weights that violate it.
    """
    a, b = _operand("A", a), _operand("B", b)
    if a.shape[1] != b.shape[0]:
        raise SimulationError(f"simulate_gemm: A is {a.shape[0]}x{a.shape[1]} but B is "
                              f"{b.shape[0]}x{b.shape[1]}: inner dimensions (K) differ")
    nm = _check_nm(nm)
    sched = fold_schedule(a.shape[0], b.shape[1], a.shape[1], array, nm)
    work, out_dtype = _work_dtype(a, b)
    a_w = a.astype(work, copy=False)
    if nm is None:
        b_w, index = b.astype(work, copy=False), None
    else:
        index, kept = _compress_nm(b, nm)
        b_w = kept.astype(work, copy=False)
    # nonzeros of A per column, cumulated over rows: rows [i, j) of column k hold
    # a_nnz[j, k] - a_nnz[i, k] nonzeros
    a_nnz = np.zeros((a.shape[0] + 1, a.shape[1]), dtype=np.int64)
    np.cumsum(a != 0, axis=0, out=a_nnz[1:])
    out = np.zeros((sched.m, sched.n), dtype=work)
    effectual = np.zeros(sched.folds, dtype=np.int64)
    blocks: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
    box = zip(sched.m_lo.tolist(), sched.m_hi.tolist(), sched.n_lo.tolist(),
              sched.n_hi.tolist(), sched.k_lo.tolist(), sched.k_hi.tolist(),
              sched.span_lo.tolist(), sched.span_hi.tolist())
    for f, (m0, m1, n0, n1, k0, k1, s0, s1) in enumerate(box):
        key = (n0, n1, k0, k1)
        if key not in blocks:
            if index is None:
                w = b_w[k0:k1, n0:n1]
            else:  # the kept weights of this fold, placed back at their K positions
                w = np.zeros((s1 - s0, n1 - n0), dtype=work)
                w[index[k0:k1, n0:n1] - s0, np.arange(n1 - n0)] = b_w[k0:k1, n0:n1]
            blocks[key] = (w, np.count_nonzero(w, axis=1))
        w, w_nnz = blocks[key]
        out[m0:m1, n0:n1] += a_w[m0:m1, s0:s1] @ w
        # products with both operands nonzero: sum over K of nnz(A col) x nnz(B row)
        effectual[f] = int((a_nnz[m1, s0:s1] - a_nnz[m0, s0:s1]) @ w_nnz)
    if work != out_dtype:
        out = out.astype(np.int64).astype(out_dtype)
    macs = sched.mac_count
    fold_cycles = sched.fold_cycles
    r, c = array.rows, array.cols
    return GemmRun(
        output=out, schedule=sched, fold_zero_operand_mac_count=macs - effectual,
        folds=sched.folds, compute_cycles=sched.compute_cycles, mac_count=int(macs.sum()),
        zero_operand_mac_count=int((macs - effectual).sum()),
        pe_cycles=int(fold_cycles.sum()) * r * c,
        mapped_pe_cycles=int((sched.rows_used * sched.cols_used * fold_cycles).sum()),
        ifmap_reads=int(sched.ifmap_reads.sum()), filter_reads=int(sched.filter_reads.sum()),
        ofmap_writes=int(sched.ofmap_writes.sum()))


__all__ = ["DATAFLOWS", "FoldSchedule", "GemmRun", "SystolicArray", "compressed_k",
           "fold_schedule", "gemm_cycles", "simulate_gemm"]
