"""The tight-loop walk (``simulator.burst_loop.walk_window``) against derived times, the
solver's earlier walk (``tests/old_walk.py``), the time rules and the cycle engine.

A two-unit loop has a closed form: a producer A whose token k (one per step) goes to a
consumer B after ``latency`` cycles, and whose FIFO to B holds ``depth`` tokens, so A's
token k + depth waits for B's step k (+1). If latency + 1 > depth, A runs in bursts of
``depth`` tokens, one burst every latency + 1 cycles: t_A[k] = (k // depth) (latency + 1) +
k % depth, t_B[k] = t_A[k] + latency. The compiled cases force the walk (sweep budgets of
one or two) on unbalanced SpM*SpM, one copy and unrolled, and on the random suite's
unbalanced kernels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse.csgraph  # noqa: F401  (loaded: dijkstra_window solves, not walks)

from compiler.pipeline import compile_layer
from isa.ops import Opcode
from simulator.burst_loop import dijkstra_window, walk_window
from simulator.burst_timing import _Dep, solve_times
from simulator.engine_burst import fire_kernel
from tests.old_walk import _sequential_window
from tests.test_burst import assert_same, configure, make_case
from tests.test_burst_timing import CASES, _compiled, reference_times
from workloads import get_workload

I64 = np.int64


def _loop(n: int, depth: int, latency: int) -> list[list[_Dep]]:
    """Unit 0 (A) and unit 1 (B) of the module docstring's loop, ``n`` steps each."""
    a = [_Dep(1, np.arange(n - depth, dtype=I64), None, 1, depth)]       # room
    b = [_Dep(0, np.arange(n, dtype=I64), None, latency)]                # arrival
    return [a, b]


def _derived(n: int, depth: int, latency: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(n, dtype=I64)
    ta = (k // depth) * (latency + 1) + k % depth
    return ta, ta + latency


@pytest.mark.parametrize("depth,latency", [(1, 1), (2, 3), (2, 5), (3, 7), (4, 4)])
def test_two_unit_loop_has_the_derived_times(depth, latency):
    n = 41
    deps = _loop(n, depth, latency)
    ta, tb = _derived(n, depth, latency)
    # the steps before the cuts are final; each pair is a downset (B's steps below cut_b
    # read A's below cut_b, A's below cut_a read B's below cut_a - depth)
    for cut_a, cut_b in [(0, 0), (5, 5), (3 + depth, 3), (20, 20 - depth), (32, 31)]:
        assert cut_b <= cut_a <= cut_b + depth
        for walk in (dijkstra_window, walk_window, _sequential_window):
            times = [np.zeros(n, np.int32), np.zeros(n, np.int32)]
            times[0][:cut_a] = ta[:cut_a]
            times[1][:cut_b] = tb[:cut_b]
            assert walk(deps, times, [cut_a, cut_b], [n, n], [0, 1])
            assert times[0].tolist() == ta.tolist(), (walk.__name__, cut_a, cut_b)
            assert times[1].tolist() == tb.tolist(), (walk.__name__, cut_a, cut_b)


@pytest.mark.parametrize("walk", [dijkstra_window, walk_window])
def test_weights_may_be_arrays_aligned_with_the_index(walk):
    """A constraint's weight as an int64 array (one per term) gives the same times as the
    int it repeats, and per-term weights are honoured."""
    n, depth, latency = 30, 2, 3
    ta, tb = _derived(n, depth, latency)
    deps = _loop(n, depth, latency)
    deps[1][0] = _Dep(0, np.arange(n, dtype=I64), None, np.full(n, latency, I64))
    times = [np.zeros(n, np.int32), np.zeros(n, np.int32)]
    assert walk(deps, times, [0, 0], [n, n], [0, 1])
    assert times[0].tolist() == ta.tolist() and times[1].tolist() == tb.tolist()
    # B's token 10 takes 20 cycles more: everything after it shifts, nothing before
    w = np.full(n, latency, I64)
    w[10] += 20
    deps[1][0] = _Dep(0, np.arange(n, dtype=I64), None, w)
    times = [np.zeros(n, np.int32), np.zeros(n, np.int32)]
    assert walk(deps, times, [0, 0], [n, n], [0, 1])
    assert times[1][:10].tolist() == tb[:10].tolist()
    assert int(times[1][10]) == int(tb[10]) + 20
    assert int(times[0][12]) == int(times[1][10]) + 1        # A waits for B's pop of token 10


def test_a_cycle_of_steps_is_a_deadlock():
    """A's step 1 waits for B's step 1, which waits for A's step 1 (a depth-0 FIFO): no
    step of the cycle can be solved, the walk says so and leaves the times alone."""
    n = 5
    deps = [[_Dep(1, np.arange(n - 1, dtype=I64) + 1, None, 1, 1)],
            [_Dep(0, np.arange(n, dtype=I64), None, 1)]]
    times = [np.full(n, 7, np.int32), np.full(n, 7, np.int32)]
    assert not dijkstra_window(deps, times, [0, 0], [n, n], [0, 1])
    assert not walk_window(deps, times, [0, 0], [n, n], [0, 1])
    assert not _sequential_window(deps, times, [0, 0], [n, n], [0, 1])
    assert times[0].tolist() == [7] * n and times[1].tolist() == [7] * n


def _both_walks(monkeypatch, bt):
    """Replace the solver's walk by one that runs the Dijkstra solve, the walk and the old
    walk on the same window and checks they agree exactly; returns the list of walked window
    sizes."""
    walked: list[int] = []

    def both(deps, times, lo, hi, active):
        old = [t.copy() for t in times]
        ok_old = _sequential_window(deps, old, lo, hi, active)
        walked_ = [t.copy() for t in times]
        ok_walk = walk_window(deps, walked_, lo, hi, active)
        ok = dijkstra_window(deps, times, lo, hi, active)
        assert ok == ok_old == ok_walk
        for u in active:
            assert times[u][lo[u]:hi[u]].tolist() == old[u][lo[u]:hi[u]].tolist(), u
            assert walked_[u][lo[u]:hi[u]].tolist() == old[u][lo[u]:hi[u]].tolist(), u
        walked.append(sum(hi[u] - lo[u] for u in active))
        return ok

    monkeypatch.setattr(bt, "dijkstra_window", both)
    return walked


@pytest.mark.parametrize("budget", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}@{c[1]}-{'bal' if c[2] else 'unbal'}"
                                             for c in CASES])
def test_walk_equals_the_old_walk_and_the_time_rules(small_chip, monkeypatch, case, budget):
    import simulator.burst_timing as bt

    monkeypatch.setattr(bt, "SWEEP_BUDGET", budget)
    monkeypatch.setattr(bt, "PROBE_BUDGET", budget)
    monkeypatch.setattr(bt, "SEQUENTIAL_MIN_WINDOW", 64)
    walked = _both_walks(monkeypatch, bt)
    chip, kernel, firings, order = _compiled(small_chip, case)
    want = reference_times(kernel, firings, order, chip)
    for window in (64, 512, 10**9):
        got, _stats = solve_times(kernel, firings, order, chip, window=window)
        for u in want:
            assert got[u].tolist() == want[u], (window, u)
    assert walked                   # the walk ran


@pytest.mark.parametrize("density", [0.1, 0.3])
def test_unrolled_unbalanced_kernels_walked(onyx_chip, monkeypatch, density):
    """Onyx's unrolled SpM*SpM without balancing (13-copy-like graphs in small): walked
    windows give the time rules' times and the cycle engine's stats."""
    import simulator.burst_timing as bt

    monkeypatch.setattr(bt, "SWEEP_BUDGET", 2)
    monkeypatch.setattr(bt, "PROBE_BUDGET", 2)
    monkeypatch.setattr(bt, "SEQUENTIAL_MIN_WINDOW", 256)
    walked = _both_walks(monkeypatch, bt)
    chip = dataclasses.replace(
        onyx_chip, compiler=dataclasses.replace(onyx_chip.compiler, balance_fifos=False))
    program = compile_layer(get_workload("spmspm").make(
        {"shape": "24,20,24", "density": density, "seed": 4}), chip)
    kernel = program.kernels[0]
    assert any(n.op is Opcode.FILTER for n in kernel.nodes)       # unrolled
    firings, _mem, order = fire_kernel(kernel, program.images)
    want = reference_times(kernel, firings, order, chip)
    got, stats = solve_times(kernel, firings, order, chip, window=512)
    for u in want:
        assert got[u].tolist() == want[u], u
    assert stats.sequential >= 1 and walked
    assert isinstance(assert_same(kernel, program.images, chip, window=512), int)


UNBALANCED_SEEDS = [s for s in range(220) if not make_case(s)["balance"]][:40]


@pytest.mark.parametrize("seed", UNBALANCED_SEEDS)
def test_random_unbalanced_kernels_walked_equal_the_cycle_engine(small_chip, monkeypatch,
                                                                 seed):
    """The random suite's unbalanced kernels (every workload, format, FIFO depth 1-8, hop
    latency 1-3, zero policy) with every window forced to the walk: burst equals the cycle
    engine in every counter, or both report the deadlock."""
    import simulator.burst_timing as bt

    monkeypatch.setattr(bt, "SWEEP_BUDGET", 1)
    monkeypatch.setattr(bt, "PROBE_BUDGET", 1)
    monkeypatch.setattr(bt, "SEQUENTIAL_MIN_WINDOW", 32)
    _both_walks(monkeypatch, bt)
    case = make_case(seed)
    chip = configure(small_chip, case)
    program = compile_layer(get_workload(case["workload"]).make(case["params"]), chip)
    assert_same(program.kernels[0], program.images, chip, window=64)


def test_random_unbalanced_seeds_walk_and_deadlock(small_chip, monkeypatch):
    """The cases above are what they claim: every workload, FIFO depths 1 to 4 at least,
    most of them solved by the walk, and some deadlocks among them."""
    import simulator.burst_timing as bt
    from isa.errors import SimulationError
    from simulator.engine_burst import run_burst

    cases = [make_case(s) for s in UNBALANCED_SEEDS]
    assert len(cases) == 40
    assert {c["depth"] for c in cases} >= {1, 2, 3, 4}
    assert {c["workload"] for c in cases} == {"spmv", "spmspm", "elemadd", "elemmul"}
    monkeypatch.setattr(bt, "SWEEP_BUDGET", 1)
    monkeypatch.setattr(bt, "PROBE_BUDGET", 1)
    monkeypatch.setattr(bt, "SEQUENTIAL_MIN_WINDOW", 32)
    walked = _both_walks(monkeypatch, bt)
    walking = deadlocks = 0
    for case in cases:
        chip = configure(small_chip, case)
        program = compile_layer(get_workload(case["workload"]).make(case["params"]), chip)
        before = len(walked)
        try:
            run_burst(program.kernels[0], program.images, chip, window=64)
        except SimulationError as exc:
            assert "deadlock" in str(exc)
            deadlocks += 1
        walking += len(walked) > before
    assert walking >= 20 and deadlocks >= 1


def test_walked_windows_below_the_unit_count_still_progress(small_chip, monkeypatch):
    """A walked-window floor (``SEQUENTIAL_MIN_WINDOW``) below half the kernel's unit count:
    every proposed window then has more than twice the floor's steps (at least one a unit),
    so cutting it to the floor again would loop without progress; it is walked instead."""
    import simulator.burst_timing as bt

    chip, kernel, firings, order = _compiled(small_chip, CASES[0])
    assert len(order) > 4
    monkeypatch.setattr(bt, "SWEEP_BUDGET", 1)
    monkeypatch.setattr(bt, "PROBE_BUDGET", 1)
    monkeypatch.setattr(bt, "SEQUENTIAL_MIN_WINDOW", 2)
    windows = []
    accept = bt._accept

    def counted(*args, **kwargs):
        windows.append(1)
        if len(windows) > 10 * sum(f.n for f in firings.values()):
            raise AssertionError("the solver proposes windows without making progress")
        return accept(*args, **kwargs)

    monkeypatch.setattr(bt, "_accept", counted)
    want = reference_times(kernel, firings, order, chip)
    got, stats = solve_times(kernel, firings, order, chip, window=64)
    assert stats.sequential >= 1
    for u in want:
        assert got[u].tolist() == want[u], u


def test_dijkstra_solves_walked_windows_without_falling_back(small_chip, monkeypatch):
    """On the windows the solver walks (unbalanced SpM*SpM, sweep budget 1), the Dijkstra
    solve's result satisfies every equation itself: the Python walk is never called."""
    import simulator.burst_loop as bl
    import simulator.burst_timing as bt

    def no_walk(*args):
        raise AssertionError("fell back to the Python walk")

    monkeypatch.setattr(bl, "walk_window", no_walk)
    monkeypatch.setattr(bt, "SWEEP_BUDGET", 1)
    monkeypatch.setattr(bt, "PROBE_BUDGET", 1)
    monkeypatch.setattr(bt, "SEQUENTIAL_MIN_WINDOW", 64)
    for case in CASES[:4]:
        chip, kernel, firings, order = _compiled(small_chip, case)
        want = reference_times(kernel, firings, order, chip)
        got, stats = solve_times(kernel, firings, order, chip, window=512)
        assert stats.sequential >= 1
        for u in want:
            assert got[u].tolist() == want[u], (case, u)


def test_a_wrong_shortest_path_is_caught_by_the_equations(monkeypatch):
    """If the compiled shortest paths were off by one anywhere, the equation check rejects
    them and the window is walked: the times are still the derived ones."""
    import simulator.burst_loop as bl

    real = bl._shortest
    calls = []

    def off_by_one(graph, source):
        dist = real(graph, source)
        dist[len(dist) // 3] -= 1
        calls.append(1)
        return dist

    monkeypatch.setattr(bl, "_shortest", off_by_one)
    n, depth, latency = 41, 2, 5
    ta, tb = _derived(n, depth, latency)
    times = [np.zeros(n, np.int32), np.zeros(n, np.int32)]
    assert bl.dijkstra_window(_loop(n, depth, latency), times, [0, 0], [n, n], [0, 1])
    assert calls
    assert times[0].tolist() == ta.tolist() and times[1].tolist() == tb.tolist()


def test_dfs_numbering_is_topological_on_dags_and_not_on_cycles():
    """``_topological``: every edge of a random DAG (reached from one source) goes to a
    larger number; add one edge closing a cycle and some edge does not."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import depth_first_order

    from simulator.burst_loop import _topological

    rng = np.random.default_rng(5)
    for trial in range(60):
        n = int(rng.integers(2, 60))
        perm = rng.permutation(n)                       # a hidden topological order
        m = int(rng.integers(n, 4 * n))
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        keep = a != b
        lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
        src, dst = perm[lo], perm[hi]
        # node n: a source with an edge to every node
        src = np.concatenate([src, np.full(n, n)])
        dst = np.concatenate([dst, np.arange(n)])
        cyclic = trial % 3 == 0 and len(lo) > 0
        if cyclic:                                      # back along an existing edge
            src, dst = np.append(src, dst[0]), np.append(dst, src[0])
        g = csr_matrix((np.ones(len(src)), (src, dst)), shape=(n + 1, n + 1))
        pre, parent = depth_first_order(g, n, directed=True, return_predecessors=True)
        assert len(pre) == n + 1
        place = _topological(pre, parent, n + 1)
        ok = bool((place[src] < place[dst]).all())
        assert ok != cyclic, trial


def test_a_process_walks_until_the_graph_routines_pay_for_their_import(monkeypatch):
    """Without scipy.sparse.csgraph loaded, small windows go to the Python walk (its import
    costs more than they would save) until the process has walked ``IMPORT_STEPS``; then,
    or for a window of ``IMPORT_WINDOW`` steps or more, Dijkstra."""
    import types

    import simulator.burst_loop as bl

    monkeypatch.setattr(bl, "sys", types.SimpleNamespace(modules={}))
    monkeypatch.setattr(bl, "_WALKED", [0])
    monkeypatch.setattr(bl, "IMPORT_STEPS", 100)
    used = []
    walk, shortest = bl.walk_window, bl._shortest
    monkeypatch.setattr(bl, "walk_window", lambda *a: used.append("walk") or walk(*a))
    monkeypatch.setattr(bl, "_shortest", lambda *a: used.append("dijkstra") or shortest(*a))
    n, depth, latency = 41, 2, 5
    ta, tb = _derived(n, depth, latency)
    for _ in range(3):                          # 82 steps a window
        times = [np.zeros(n, np.int32), np.zeros(n, np.int32)]
        assert bl.dijkstra_window(_loop(n, depth, latency), times, [0, 0], [n, n], [0, 1])
        assert times[0].tolist() == ta.tolist() and times[1].tolist() == tb.tolist()
    assert used == ["walk", "dijkstra", "dijkstra"]
    assert bl._WALKED == [82]
    used.clear()
    monkeypatch.setattr(bl, "_WALKED", [0])
    monkeypatch.setattr(bl, "IMPORT_WINDOW", 82)     # a window this large: not walked
    times = [np.zeros(n, np.int32), np.zeros(n, np.int32)]
    assert bl.dijkstra_window(_loop(n, depth, latency), times, [0, 0], [n, n], [0, 1])
    assert used == ["dijkstra"] and times[0].tolist() == ta.tolist()
