"""Dense systolic mode (simulator/systolic.py) against SCALE-Sim v3 and numpy.

Golden cycle counts are scalesim 3.0.0 measurements (PyPI; Raj et al., "SCALE-Sim v3: A
modular cycle-accurate systolic accelerator simulator for end-to-end system analysis", ISPASS
2025): the 128x128 ones from our runs of its Python API (CALC bandwidth, 1 MiB SRAMs, no
traces; benchmarks/bench_systolic.py reruns the dense ones and 512^3 WS 2:4), the small-array
ones from our own runs of the same package (CALC bandwidth, 1 MiB SRAMs, layer-wise N:M,
ellpack_block), which also report SRAM read/write counts.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from isa.errors import SimulationError
from simulator.systolic import (
    DATAFLOWS,
    GemmRun,
    SystolicArray,
    compressed_k,
    fold_schedule,
    gemm_cycles,
    simulate_gemm,
)

TPU = {df: SystolicArray(rows=128, cols=128, dataflow=df) for df in DATAFLOWS}


def random_ints(rng: np.random.Generator, shape: tuple[int, int], density: float = 0.7):
    """Small signed integers with about ``density`` nonzeros (exact in any accumulation)."""
    values = rng.integers(1, 9, size=shape) * rng.choice([-1, 1], size=shape)
    return values * (rng.random(shape) < density)


def random_nm(rng: np.random.Generator, k: int, n: int, nm: tuple[int, int]) -> np.ndarray:
    """A K x N integer matrix with at most nm[0] nonzeros in every group of nm[1] K entries
    of each column (some groups hold fewer, the last group may be partial)."""
    keep_n, group = nm
    groups = -(-k // group)
    scores = rng.random((groups, group, n))
    keep = np.argsort(scores, axis=1) < keep_n  # keep_n random positions per group
    mask = keep.reshape(groups * group, n)[:k] & (rng.random((k, n)) < 0.9)
    return random_ints(rng, (k, n), density=1.0) * mask


def closed_form(m: int, n: int, k: int, array: SystolicArray, nm=None) -> int:
    """The closed forms in the module docstring (K -> K' under N:M)."""
    r, c, kc = array.rows, array.cols, compressed_k(k, nm)
    if min(m, n, kc) == 0:
        return 0
    if array.dataflow == "os":
        return math.ceil(m / r) * math.ceil(n / c) * (kc + r + c - 2) - 1
    if array.dataflow == "ws":
        return math.ceil(kc / r) * math.ceil(n / c) * (m + 2 * r + c - 2) - 1
    return math.ceil(kc / r) * math.ceil(m / c) * (n + 2 * r + c - 2) - 1


def check_run(run: GemmRun, a: np.ndarray, b: np.ndarray) -> None:
    """Exact product, and the counters that follow from shapes alone."""
    assert run.output.dtype == (a @ b).dtype
    assert np.array_equal(run.output, a @ b)
    sched = run.schedule
    assert run.folds == sched.folds
    assert run.mac_count == a.shape[0] * b.shape[1] * sched.k_compressed
    assert 0 <= run.zero_operand_mac_count <= run.mac_count
    assert run.mapped_pe_cycles <= run.pe_cycles
    assert run.fold_zero_operand_mac_count.sum() == run.zero_operand_mac_count


# ---- SCALE-Sim v3 on 128x128 (scalesim 3.0.0, our runs; see the module docstring) ----------

@pytest.mark.parametrize("size,dataflow,nm,cycles", [
    (256, "os", None, 2039),
    (256, "ws", None, 2551),
    (256, "is", None, 2551),
    (512, "os", None, 12255),
    (512, "ws", None, 14303),
    (256, "ws", (2, 4), 1275),
    (256, "ws", (1, 4), 1275),
    (256, "os", (2, 4), 1527),
    (256, "is", (2, 4), 1275),
    (512, "ws", (2, 4), 7151),
    (512, "ws", (1, 4), 3575),
    (512, "os", (2, 4), 8159),
])
def test_scalesim_128x128_measured(size, dataflow, nm, cycles):
    rng = np.random.default_rng(size + len(dataflow) + (nm or (0,))[0])
    a = random_ints(rng, (size, size))
    b = random_ints(rng, (size, size)) if nm is None else random_nm(rng, size, size, nm)
    run = simulate_gemm(a, b, TPU[dataflow], nm=nm)
    assert run.compute_cycles == cycles
    assert gemm_cycles(size, size, size, TPU[dataflow], nm) == cycles
    check_run(run, a, b)


@pytest.mark.parametrize("size,dataflow,nm,cycles", [
    (1024, "os", None, 81791),
    (1024, "ws", None, 89983),
    (2048, "os", None, 589311),
    (2048, "ws", None, 622079),
    (1024, "ws", (2, 4), 44991),
    (1024, "ws", (1, 4), 22495),
])
def test_scalesim_128x128_measured_large(size, dataflow, nm, cycles):
    assert gemm_cycles(size, size, size, TPU[dataflow], nm) == cycles


def test_scalesim_128x128_utilization_256_is():
    # scalesim 3.0.0 (our run) reports 50 % mapping efficiency for 256^3 with 1:4 (K' = 64 of 128)
    sched = fold_schedule(256, 256, 256, TPU["is"], (1, 4))
    assert sched.folds == 2 and set(sched.rows_used.tolist()) == {64}


# ---- SCALE-Sim v3 on small non-square arrays (our scalesim 3.0.0 runs) ----------------------
# (M, N, K, rows, cols, dataflow, N:M, compute cycles, SRAM IFMAP reads, Filter reads,
#  OFMAP writes); traffic only for dense runs.
SMALL = [
    (13, 7, 10, 8, 4, "os", None, 79, 260, 140, 139),
    (13, 7, 10, 8, 4, "ws", None, 123, 260, 70, 182),
    (13, 7, 10, 8, 4, "is", None, 199, 130, 280, 182),
    (3, 17, 33, 4, 8, "os", None, 128, 297, 561, 87),
    (3, 17, 33, 4, 8, "ws", None, 458, 297, 561, 459),
    (3, 17, 33, 4, 8, "is", None, 278, 99, 561, 459),
    (20, 9, 5, 5, 3, "os", None, 131, 300, 180, 276),
    (20, 9, 5, 5, 3, "ws", None, 92, 300, 45, 180),
    (20, 9, 5, 5, 3, "is", None, 139, 100, 315, 180),
    (1, 1, 1, 8, 4, "os", None, 10, 1, 1, 13),
    (1, 1, 1, 8, 4, "ws", None, 18, 1, 1, 1),
    (1, 1, 1, 5, 3, "is", None, 11, 1, 1, 1),
    (13, 7, 10, 8, 4, "os", (2, 4), 63, None, None, None),
    (13, 7, 10, 8, 4, "ws", (2, 4), 61, None, None, None),
    (13, 7, 10, 8, 4, "is", (2, 4), 99, None, None, None),
    (3, 17, 33, 4, 8, "os", (1, 4), 56, None, None, None),
    (3, 17, 33, 4, 8, "ws", (3, 8), 203, None, None, None),
    (3, 17, 33, 4, 8, "is", (1, 4), 92, None, None, None),
    (20, 9, 5, 5, 3, "ws", (2, 4), 92, None, None, None),
    (9, 4, 16, 5, 3, "ws", (1, 4), 39, None, None, None),
    (9, 4, 16, 5, 3, "is", (3, 8), 89, None, None, None),
    (13, 7, 10, 5, 3, "ws", (3, 8), 71, None, None, None),
]


@pytest.mark.parametrize("m,n,k,rows,cols,dataflow,nm,cycles,ifmap,filt,ofmap", SMALL)
def test_scalesim_small_arrays_measured(m, n, k, rows, cols, dataflow, nm, cycles, ifmap, filt,
                                        ofmap):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    array = SystolicArray(rows, cols, dataflow)
    a = random_ints(rng, (m, k))
    b = random_ints(rng, (k, n)) if nm is None else random_nm(rng, k, n, nm)
    run = simulate_gemm(a, b, array, nm=nm)
    assert run.compute_cycles == cycles
    check_run(run, a, b)
    if ifmap is not None:
        assert run.ifmap_reads == ifmap
        assert run.filter_reads == filt
        # SCALE-Sim's OS model adds rows + cols spurious writes per fold; we do not
        spurious = run.folds * (rows + cols) if dataflow == "os" else 0
        assert run.ofmap_writes + spurious == ofmap


# ---- the closed forms, and simulate_gemm == gemm_cycles -------------------------------------

def test_closed_forms_over_a_grid():
    arrays = [SystolicArray(r, c, df) for r, c in [(1, 1), (4, 4), (8, 3), (2, 7), (128, 128)]
              for df in DATAFLOWS]
    sizes = [0, 1, 2, 3, 7, 8, 9, 127, 128, 129, 300]
    patterns = [None, (2, 4), (1, 4), (3, 8), (1, 2)]
    for array, m, n, k, nm in itertools.product(arrays, sizes, sizes[::2], sizes[1::2],
                                                 patterns):
        assert gemm_cycles(m, n, k, array, nm) == closed_form(m, n, k, array, nm), \
            (array, m, n, k, nm)


def test_simulate_gemm_agrees_with_gemm_cycles():
    rng = np.random.default_rng(7)
    for _ in range(60):
        m, n, k = (int(x) for x in rng.integers(1, 40, size=3))
        array = SystolicArray(int(rng.integers(1, 9)), int(rng.integers(1, 9)),
                              str(rng.choice(DATAFLOWS)))
        nm = [None, (2, 4), (1, 3), (3, 8)][int(rng.integers(4))]
        a = random_ints(rng, (m, k))
        b = random_ints(rng, (k, n)) if nm is None else random_nm(rng, k, n, nm)
        run = simulate_gemm(a, b, array, nm=nm)
        assert run.compute_cycles == gemm_cycles(m, n, k, array, nm)
        check_run(run, a, b)


def test_compressed_k():
    assert compressed_k(512, None) == 512
    assert compressed_k(512, (2, 4)) == 256
    assert compressed_k(10, (2, 4)) == 6      # groups of 4, 4, 2: keep 2, 2, 2
    assert compressed_k(9, (2, 4)) == 5       # groups of 4, 4, 1: keep 2, 2, 1
    assert compressed_k(33, (3, 8)) == 13


# ---- partial folds ---------------------------------------------------------------------------

@pytest.mark.parametrize("dataflow,folds,cycles,last_rows,last_cols", [
    # os: rows <- M (300 = 128 + 128 + 44), cols <- N (200 = 128 + 72); 3 x 2 folds of
    #     K + R + C - 2 = 130 + 254 = 384 cycles: 6 * 384 - 1
    ("os", 6, 6 * 384 - 1, 44, 72),
    # ws: rows <- K (130 = 128 + 2), cols <- N; 2 x 2 folds of M + 2R + C - 2 = 300 + 382
    ("ws", 4, 4 * 682 - 1, 2, 72),
    # is: rows <- K, cols <- M (300); 2 x 3 folds of N + 2R + C - 2 = 200 + 382
    ("is", 6, 6 * 582 - 1, 2, 44),
])
def test_partial_folds_pay_full_skew(dataflow, folds, cycles, last_rows, last_cols):
    rng = np.random.default_rng(300)
    a, b = random_ints(rng, (300, 130)), random_ints(rng, (130, 200))
    run = simulate_gemm(a, b, TPU[dataflow])
    check_run(run, a, b)
    sched = run.schedule
    assert (run.folds, run.compute_cycles) == (folds, cycles)
    assert (sched.rows_used[-1], sched.cols_used[-1]) == (last_rows, last_cols)
    assert len(set(sched.fold_cycles.tolist())) == 1  # partial folds take as long as full ones
    assert np.array_equal(sched.start_cycle[1:], sched.end_cycle[:-1])  # back to back
    assert sched.start_cycle[0] == 0
    assert run.pe_cycles == 128 * 128 * (cycles + 1)
    assert run.mapped_pe_cycles < run.pe_cycles


def test_fold_phases():
    array = SystolicArray(8, 5, "ws")
    sched = fold_schedule(m=30, n=12, k=20, array=array)
    # ws: load R = 8, fill R - 1 = 7, stream M = 30, drain C - 1 = 4
    assert sched.folds == 3 * 3
    assert set(zip(sched.load_cycles, sched.fill_cycles, sched.stream_cycles,
                   sched.drain_cycles)) == {(8, 7, 30, 4)}
    # SCALE-Sim's order: column folds (N) outer, row folds (K) inner
    assert sched.k_lo.tolist() == [0, 8, 16] * 3
    assert sched.n_lo.tolist() == [0] * 3 + [5] * 3 + [10] * 3
    os_sched = fold_schedule(30, 12, 20, SystolicArray(8, 5, "os"))
    assert set(os_sched.load_cycles.tolist()) == {0}
    assert set(os_sched.stream_cycles.tolist()) == {20}


def test_traffic_dense_closed_forms():
    m, n, k, r, c = 50, 40, 30, 8, 6
    mf, nf, kf = math.ceil(m / r), math.ceil(n / c), math.ceil(k / r)
    expect = {  # SCALE-Sim's definitions (systolic_compute_*.py), padding excluded
        "os": (nf * m * k, mf * k * n, m * n),
        "ws": (nf * m * k, k * n, kf * m * n),
        "is": (m * k, math.ceil(m / c) * k * n, kf * m * n),
    }
    rng = np.random.default_rng(1)
    a, b = random_ints(rng, (m, k)), random_ints(rng, (k, n))
    for df, traffic in expect.items():
        run = simulate_gemm(a, b, SystolicArray(r, c, df))
        assert (run.ifmap_reads, run.filter_reads, run.ofmap_writes) == traffic, df


def test_nm_ifmap_reads_follow_the_group_span():
    # ws, 2:4, R a multiple of 2 and K of 4: SCALE-Sim's figure, dense reads x m / n
    rng = np.random.default_rng(2)
    a, b = random_ints(rng, (64, 64)), random_nm(rng, 64, 64, (2, 4))
    run = simulate_gemm(a, b, SystolicArray(16, 16, "ws"), nm=(2, 4))
    assert run.ifmap_reads == math.ceil(64 / 16) * 64 * 32 * 2
    assert run.filter_reads == 32 * 64


# ---- zero-operand MACs -----------------------------------------------------------------------

def zero_operand_macs_by_loops(a, b, sched):
    """Per fold, MACs with a zero operand, counted one (m, k, n) at a time (dense mapping)."""
    out = []
    for f in range(sched.folds):
        count = 0
        for i in range(sched.m_lo[f], sched.m_hi[f]):
            for kk in range(sched.k_lo[f], sched.k_hi[f]):
                for j in range(sched.n_lo[f], sched.n_hi[f]):
                    count += a[i, kk] == 0 or b[kk, j] == 0
        out.append(count)
    return out


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_zero_operand_macs_exact_dense(dataflow):
    rng = np.random.default_rng(11)
    a, b = random_ints(rng, (7, 9), 0.5), random_ints(rng, (9, 6), 0.6)
    a[2] = 0  # an empty row
    run = simulate_gemm(a, b, SystolicArray(3, 4, dataflow))
    assert run.fold_zero_operand_mac_count.tolist() == zero_operand_macs_by_loops(
        a, b, run.schedule)
    assert run.mac_count == 7 * 6 * 9


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_zero_operand_macs_exact_nm(dataflow):
    rng = np.random.default_rng(12)
    m, n, k, nm = 7, 6, 11, (2, 4)
    a, b = random_ints(rng, (m, k), 0.5), random_nm(rng, k, n, nm)
    run = simulate_gemm(a, b, SystolicArray(3, 4, dataflow), nm=nm)
    effectual = sum(a[i, kk] != 0 and b[kk, j] != 0
                    for i in range(m) for kk in range(k) for j in range(n))
    assert run.mac_count == m * n * compressed_k(k, nm) == m * n * 6
    assert run.zero_operand_mac_count == run.mac_count - effectual


def test_fully_dense_and_all_zero():
    rng = np.random.default_rng(3)
    a, b = rng.integers(1, 5, (10, 12)), rng.integers(1, 5, (12, 9))
    run = simulate_gemm(a, b, SystolicArray(4, 4, "os"))
    assert run.zero_operand_mac_count == 0
    run = simulate_gemm(np.zeros((10, 12), dtype=int), b, SystolicArray(4, 4, "ws"))
    assert run.zero_operand_mac_count == run.mac_count
    assert not run.output.any()


# ---- values and dtypes -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 5, 4), (5, 0, 4), (5, 4, 0), (0, 0, 0)])
def test_empty_matrices_issue_no_work(shape):
    m, n, k = shape
    a, b = np.ones((m, k), dtype=np.int64), np.ones((k, n), dtype=np.int64)
    for df in DATAFLOWS:
        run = simulate_gemm(a, b, SystolicArray(4, 4, df))
        assert (run.folds, run.compute_cycles, run.mac_count, run.pe_cycles) == (0, 0, 0, 0)
        assert np.array_equal(run.output, a @ b)


def test_one_nonzero():
    a, b = np.zeros((9, 9), dtype=np.int32), np.zeros((9, 9), dtype=np.int32)
    a[4, 7], b[7, 2] = 3, -5
    for df in DATAFLOWS:
        run = simulate_gemm(a, b, SystolicArray(4, 3, df))
        check_run(run, a, b)
        assert run.mac_count - run.zero_operand_mac_count == 1


def test_large_integers_stay_exact():
    # |partial sums| can pass 2**53, so the product is accumulated in int64, not float64
    rng = np.random.default_rng(4)
    a = rng.integers(-(2**30), 2**30, (20, 300))
    b = rng.integers(-(2**25), 2**25, (300, 10))
    for df in DATAFLOWS:
        run = simulate_gemm(a, b, SystolicArray(16, 8, df))
        assert np.array_equal(run.output, a @ b)


def test_int32_and_float_inputs():
    rng = np.random.default_rng(5)
    a32, b32 = random_ints(rng, (30, 20)).astype(np.int32), random_ints(rng, (20, 25))
    check_run(simulate_gemm(a32, b32.astype(np.int32), TPU["ws"]), a32, b32.astype(np.int32))
    af, bf = rng.standard_normal((30, 20)), rng.standard_normal((20, 25))
    run = simulate_gemm(af, bf, SystolicArray(8, 8, "is"))
    assert run.output.dtype == np.float64
    np.testing.assert_allclose(run.output, af @ bf, rtol=1e-12, atol=1e-12)


def test_counters_have_units_and_descriptions():
    rng = np.random.default_rng(6)
    run = simulate_gemm(random_ints(rng, (5, 6)), random_ints(rng, (6, 7)), TPU["os"])
    counters = run.counters()
    assert set(counters) == {"folds", "compute_cycles", "mac_count", "zero_operand_mac_count",
                             "pe_cycles", "mapped_pe_cycles", "ifmap_reads", "filter_reads",
                             "ofmap_writes"}
    for name, entry in counters.items():
        assert entry["unit"] and entry["desc"].endswith("."), name
        assert isinstance(entry["value"], int), name
    assert "utilization" not in counters


# ---- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rows,cols,dataflow,match", [
    (0, 4, "os", "rows must be an int >= 1"),
    (4, -2, "ws", "cols must be an int >= 1"),
    (2.5, 4, "is", "rows must be an int >= 1"),
    (True, 4, "is", "rows must be an int >= 1"),
    (4, 4, "rs", "dataflow must be one of os, ws, is"),
    (4, 4, "OS", "dataflow must be one of"),
])
def test_bad_array_config(rows, cols, dataflow, match):
    with pytest.raises(SimulationError, match=match):
        SystolicArray(rows, cols, dataflow)


def test_bad_array_config_lists_every_problem():
    with pytest.raises(SimulationError, match="rows .*; cols .*; dataflow"):
        SystolicArray(0, 0, "xx")


def test_nm_violation_names_column_and_group():
    b = np.ones((8, 3), dtype=int)
    b[:, 0] = [1, 1, 0, 0, 1, 0, 0, 0]       # fine
    b[:, 1] = [1, 1, 0, 0, 1, 1, 1, 0]       # group 1 (K rows 4..7) has 3 nonzeros
    b[:, 2] = [1, 0, 0, 0, 0, 0, 0, 1]       # fine
    a = np.ones((2, 8), dtype=int)
    with pytest.raises(SimulationError,
                       match=r"violates 2:4 sparsity.*column 1, group 1 \(K rows 4..7\) holds "
                             r"3 nonzeros, at most 2 allowed \(1 groups violate\)"):
        simulate_gemm(a, b, TPU["ws"], nm=(2, 4))
    b[:, 1] = [1, 1, 0, 0, 1, 1, 0, 0]
    check_run(simulate_gemm(a, b, TPU["ws"], nm=(2, 4)), a, b)


def test_nm_violation_in_a_partial_group():
    b = np.zeros((6, 2), dtype=int)
    b[4:6, 1] = 7                            # last group (K rows 4..5): 2 nonzeros
    a = np.ones((3, 6), dtype=int)
    with pytest.raises(SimulationError, match=r"column 1, group 1 \(K rows 4..5\)"):
        simulate_gemm(a, b, TPU["os"], nm=(1, 4))
    check_run(simulate_gemm(a, b, TPU["os"], nm=(2, 4)), a, b)


@pytest.mark.parametrize("nm", [(3, 2), (0, 4), (2,), "2:4", (2.0, 4), (True, 4)])
def test_bad_nm(nm):
    with pytest.raises(SimulationError, match="invalid N:M sparsity"):
        gemm_cycles(8, 8, 8, TPU["ws"], nm)


def test_nm_equal_is_dense():
    assert gemm_cycles(512, 512, 512, TPU["ws"], (4, 4)) == 14303


@pytest.mark.parametrize("a,b,match", [
    (np.ones((3, 4)), np.ones((5, 2)), r"A is 3x4 but B is 5x2: inner dimensions \(K\)"),
    (np.ones(4), np.ones((4, 2)), "operand A must be 2-D"),
    (np.ones((3, 4)), np.ones((4, 2), dtype=bool), "operand B must hold ints or floats"),
    (np.ones((3, 4)), np.array([[1.0, np.nan]] * 4), "operand B holds nan at row 0, column 1"),
    (np.full((3, 4), np.inf), np.ones((4, 2)), "operand A holds inf"),
])
def test_bad_operands(a, b, match):
    with pytest.raises(SimulationError, match=match):
        simulate_gemm(a, b, TPU["os"])


def test_bad_extents():
    with pytest.raises(SimulationError, match="M must be an int >= 0"):
        gemm_cycles(-1, 4, 4, TPU["os"])
    with pytest.raises(SimulationError, match="K must be an int >= 0"):
        gemm_cycles(4, 4, 2.5, TPU["os"])
