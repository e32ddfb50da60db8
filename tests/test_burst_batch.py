"""An unrolled kernel's copies solved as one batched problem (simulator/burst_batch.py).

The batched solve must give exactly the unbatched solve's times, unit by unit and step by
step (and those of the time rules, tests/test_burst_timing.py's reference): on unrolled
SpM*SpM kernels whose copies are routed differently (so the same stream has a different
depth and latency in each copy), balanced and unbalanced, with small windows (many windows,
kept in part, walked), a small sweep budget, the watchdog and a deadlock; and on a
two-copy graph small enough to derive its times by hand.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import simulator.burst_batch as bb
import simulator.burst_timing as bt
from compiler.pipeline import compile_layer
from isa.errors import SimulationError
from isa.ops import Opcode
from isa.program import Edge, Kernel, Node
from simulator.burst_batch import copy_groups, plan_batch, solve_batched
from simulator.burst_fire import Firing
from simulator.burst_timing import solve_times
from simulator.engine_burst import fire_kernel, run_burst
from simulator.engine_cycle import channel_shape
from tests.test_burst import assert_same, configure
from tests.test_burst_timing import reference_times
from workloads import get_workload


def _unrolled(onyx_chip, seed: int, balanced: bool):
    """A random unrolled SpM*SpM kernel on Onyx (positions dealt among its copies)."""
    rng = np.random.default_rng(seed)
    shape = ",".join(str(int(x)) for x in rng.integers(10, 30, size=3))
    density = float(rng.choice([0.05, 0.1, 0.2, 0.35]))
    depth, hop = int(rng.integers(2, 5)), int(rng.integers(1, 3))
    chip = configure(onyx_chip, {"depth": depth, "hop": hop, "policy": ("skip", "skip"),
                                 "balance": balanced})
    program = compile_layer(get_workload("spmspm").make(
        {"shape": shape, "density": density, "seed": seed,
         "order": str(rng.choice(["ikj", "ijk"]))}), chip)
    kernel = program.kernels[0]
    firings, _mem, order = fire_kernel(kernel, program.images)
    return chip, kernel, firings, order, program


def _same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for u in a:
        assert a[u].tolist() == b[u].tolist(), u


def _latencies_differ(kernel, chip, groups) -> bool:
    """Some stream has a different (depth, latency) in two copies."""
    pos = {n.id: k for k, n in enumerate(kernel.topo_order())}
    role = {x: (g, r) for g, copies in enumerate(groups) for c in copies
            for r, x in enumerate(c)}
    seen: dict[tuple, set] = {}
    for e in kernel.edges:
        if pos[e.src] in role:
            key = (role[pos[e.src]], e.src_port, e.dst_port)
            seen.setdefault(key, set()).add(channel_shape(e, chip))
    return any(len(v) > 1 for v in seen.values())


SEEDS = list(range(8))


@pytest.mark.parametrize("balanced", [True, False], ids=["bal", "unbal"])
@pytest.mark.parametrize("seed", SEEDS)
def test_batched_equals_unbatched_on_unrolled_kernels(onyx_chip, monkeypatch, seed, balanced):
    monkeypatch.setattr(bb, "BATCH_STEPS", 1 << 40)       # batch whatever the size
    chip, kernel, firings, order, _program = _unrolled(onyx_chip, seed, balanced)
    batch = plan_batch(kernel, firings, order, chip)
    assert batch is not None and max(len(m) for m in batch.members) >= 2      # unrolled
    for window in (1 << 19, 512, 64):
        want, _ = solve_times(kernel, firings, order, chip, window=window)
        got, stats = solve_batched(kernel, firings, order, chip, window=window)
        _same(want, got)
        assert set(stats.recomputed) == set(want)


def test_the_suite_has_copies_with_different_latencies(onyx_chip):
    """The point of per-term weights: some unrolled case routes a stream differently in two
    copies (a different depth or latency)."""
    differ = 0
    for seed in SEEDS[:6]:
        chip, kernel, _f, order, _p = _unrolled(onyx_chip, seed, True)
        differ += _latencies_differ(kernel, chip, copy_groups(kernel, order))
    assert differ >= 1


@pytest.mark.parametrize("seed", [0, 3])
def test_batched_meets_the_time_rules(onyx_chip, monkeypatch, seed):
    monkeypatch.setattr(bb, "BATCH_STEPS", 1 << 40)
    chip, kernel, firings, order, _p = _unrolled(onyx_chip, seed, False)
    want = reference_times(kernel, firings, order, chip)
    got, _ = solve_batched(kernel, firings, order, chip, window=128)
    for u in want:
        assert got[u].tolist() == want[u], u


@pytest.mark.parametrize("budget", [1, 2])
def test_unsettled_batched_windows_keep_and_walk_exactly(onyx_chip, monkeypatch, budget):
    """With a sweep budget of one or two, windows keep the part that holds and walk the
    rest on the copies (``Batch.walk``): the times stay the unbatched solve's."""
    monkeypatch.setattr(bb, "BATCH_STEPS", 1 << 40)
    monkeypatch.setattr(bt, "SWEEP_BUDGET", budget)
    monkeypatch.setattr(bt, "PROBE_BUDGET", budget)
    # (a floor of walked windows above the unit count, as the solver's own is)
    monkeypatch.setattr(bt, "SEQUENTIAL_MIN_WINDOW", 1024)
    walked = 0
    for seed in (1, 2):
        chip, kernel, firings, order, _p = _unrolled(onyx_chip, seed, False)
        for window in (512, 1 << 19):
            want, _ = solve_times(kernel, firings, order, chip, window=window)
            got, stats = solve_batched(kernel, firings, order, chip, window=window)
            _same(want, got)
            walked += stats.sequential
    assert walked > 0


def test_burst_equals_cycle_on_unrolled_unbalanced_kernels(onyx_chip):
    """run_burst solves batched (unbalanced FIFOs: at any size) and equals the cycle engine."""
    for seed in (4, 5):
        chip, kernel, _f, _o, program = _unrolled(onyx_chip, seed, False)
        assert isinstance(assert_same(kernel, program.images, chip), int)


def test_watchdog_is_reported_as_unbatched(onyx_chip, monkeypatch):
    monkeypatch.setattr(bb, "BATCH_STEPS", 1 << 40)
    chip, kernel, firings, order, _p = _unrolled(onyx_chip, 0, True)
    want, _ = solve_times(kernel, firings, order, chip)
    last = max(int(t[-1]) for t in want.values() if len(t))
    low = dataclasses.replace(chip, sim=dataclasses.replace(chip.sim, max_cycles=last // 2))
    with pytest.raises(SimulationError, match="watchdog") as unbatched:
        solve_times(kernel, firings, order, low)
    with pytest.raises(SimulationError, match="watchdog") as batched:
        solve_batched(kernel, firings, order, low)
    assert str(batched.value) == str(unbatched.value)
    assert "(x" not in str(batched.value)          # a real unit, not a batched one


def test_deadlock_is_reported_as_unbatched(onyx_chip):
    """tests/test_cycle_engine.py's one-entry-FIFO deadlock of Gustavson's SpM*SpM (isect_k's
    pending ref_a fills its channel to repeat_Bj, which waits for a stop that needs the
    next ref_b), unrolled and unbalanced (balancing buffers would break the cycle): the
    batched solve reports it as the unbatched one does."""
    chip = configure(onyx_chip, {"depth": 1, "hop": 1, "policy": ("skip", "skip"),
                                 "balance": False})
    program = compile_layer(get_workload("spmspm").make(
        {"shape": "24,20,24", "density": 0.15, "seed": 2}), chip)
    kernel = program.kernels[0]
    firings, _mem, order = fire_kernel(kernel, program.images)
    assert plan_batch(kernel, firings, order, chip) is not None       # copies batched
    with pytest.raises(SimulationError, match="deadlock") as unbatched:
        solve_times(kernel, firings, order, chip)
    with pytest.raises(SimulationError, match="deadlock") as batched:
        solve_batched(kernel, firings, order, chip)
    assert str(batched.value) == str(unbatched.value)
    assert "(x" not in str(batched.value) and "isect_k" in str(batched.value)
    with pytest.raises(SimulationError, match="deadlock"):
        run_burst(kernel, program.images, chip)


def test_two_copies_with_different_latencies_by_hand(small_chip):
    """Producer P emits tokens 0, 1, 2 at its steps 0, 1, 2; consumer C pops token k at its
    step k and peeks its head at every step. Copy 0's stream crosses 3 hops: latency 3,
    depth 1 + 2 * 1 = 3 (one-entry FIFOs, hop latency 1), so no room term (3 tokens); copy
    1's crosses 1 hop: latency 1, depth 1.

    Copy 0: t_P = 0, 1, 2; t_C[k] = max(t_C[k-1] + 1, t_P[k] + 3) = 3, 4, 5.
    Copy 1: t_P[k] >= t_C[k-1] + 1 (room: token k waits for the pop of token k-1) and
    t_C[k] >= t_P[k] + 1: t_P[0] = 0, t_C[0] = 1; t_P[1] = max(1, 2) = 2, t_C[1] = max(2,
    3) = 3; t_P[2] = max(3, 4) = 4, t_C[2] = max(4, 5) = 5. So t_P = 0, 2, 4, t_C = 1, 3, 5:
    copy 1's first steps come before copy 0's last (a chain running on from copy 0 would
    start copy 1's consumer at 6)."""
    chip = dataclasses.replace(
        small_chip,
        pe=dataclasses.replace(small_chip.pe, fifo_depth=1),
        interconnect=dataclasses.replace(small_chip.interconnect, fifo_depth=1,
                                         hop_latency_cycles=1))
    routes = [((0, 0), (0, 1), (0, 2), (0, 3)), ((1, 0), (1, 1))]
    nodes, edges, firings = [], [], {}
    steps = np.arange(3, dtype=np.int64)
    for c, route in enumerate(routes):
        p, q = f"P_u{c}", f"C_u{c}"
        nodes += [Node(p, Opcode.SCAN), Node(q, Opcode.ARRAY)]
        edges.append(Edge(p, "ref", q, "ref", "ref", route=route))
        firings[p] = Firing(3, {}, {}, {"ref": steps}, {})
        firings[q] = Firing(3, {"ref": (steps, steps)}, {"ref": steps}, {}, {},
                            dense=frozenset({"ref"}))
    kernel = Kernel("by_hand", tuple(nodes), tuple(edges))
    order = kernel.topo_order()
    assert [channel_shape(e, chip) for e in edges] == [(3, 3), (1, 1)]
    batch = plan_batch(kernel, firings, order, chip)
    assert batch is not None and sorted(map(len, batch.members)) == [2, 2]
    want = {"P_u0": [0, 1, 2], "C_u0": [3, 4, 5], "P_u1": [0, 2, 4], "C_u1": [1, 3, 5]}
    for window in (1 << 19, 2):
        got, _ = solve_batched(kernel, firings, order, chip, window=window)
        assert {u: t.tolist() for u, t in got.items()} == want
        alone, _ = solve_times(kernel, firings, order, chip, window=window)
        assert {u: t.tolist() for u, t in alone.items()} == want
    assert reference_times(kernel, firings, order, chip) == want


def test_one_copy_kernels_are_not_batched(small_chip):
    """Nothing to batch: a one-copy kernel is solved by ``solve_times`` itself."""
    program = compile_layer(get_workload("spmspm").make(
        {"shape": "12,14,12", "density": 0.3, "seed": 3}), small_chip)
    kernel = program.kernels[0]
    firings, _mem, order = fire_kernel(kernel, program.images)
    assert copy_groups(kernel, order) == []
    assert plan_batch(kernel, firings, order, small_chip) is None
