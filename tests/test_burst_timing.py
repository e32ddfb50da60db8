"""The burst timing solver against the time rules themselves, independently of the cycle engine.

The reference is the definition written out in plain Python: every step of every unit is a
node; step f waits for step f-1 (+1), for the step that emitted each head it peeks (+ the
stream's latency) and for the pop that freed the slot of each token it emits (the token
``capacity`` places earlier, +1); its time is the longest path from the start (Kahn's
topological order). ``solve_times`` must give exactly these times whatever its window, on
graphs where the windows settle in a few sweeps (balanced SpM*SpM) and on tight loops where
they do not and are solved step by step (unbalanced SpM*SpM: the vector reducer's
coordinates arrive straight from a scanner, its values through a repeater, an array and the
ALU, so the two units take turns every two or three tokens).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from compiler.pipeline import compile_layer
from isa.ops import Opcode
from simulator.burst_timing import _deps, _fill, _prune, solve_times
from simulator.engine_burst import fire_kernel
from simulator.engine_cycle import channel_shape
from tests.test_burst import configure
from workloads import get_workload


def reference_times(kernel, firings, order, chip) -> dict[str, list[int]]:
    """Longest paths of the whole step graph, one step at a time (the time rules)."""
    ids = [n.id for n in order]
    preds: dict[tuple[str, int], list[tuple[str, int, int]]] = {}
    for u in ids:
        for f in range(firings[u].n):
            preds[(u, f)] = [(u, f - 1, 1)] if f else []
    for e in kernel.edges:
        depth, latency = channel_shape(e, chip)
        emits = firings[e.src].emits[e.src_port].tolist()
        steps, heads = firings[e.dst].peeks[e.dst_port]
        for s, h in zip(steps.tolist(), heads.tolist()):
            preds[(e.dst, s)].append((e.src, emits[h], latency))
        pops = firings[e.dst].pops[e.dst_port].tolist()
        for k in range(depth, len(emits)):
            preds[(e.src, emits[k])].append((e.dst, pops[k - depth], 1))
    succs: dict[tuple[str, int], list[tuple[str, int]]] = {s: [] for s in preds}
    waiting = {s: len(p) for s, p in preds.items()}
    for s, p in preds.items():
        for u, f, _w in p:
            succs[(u, f)].append(s)
    ready = deque(s for s, n in waiting.items() if n == 0)
    t: dict[tuple[str, int], int] = {}
    while ready:
        s = ready.popleft()
        t[s] = max((t[(u, f)] + w for u, f, w in preds[s]), default=0)
        for r in succs[s]:
            waiting[r] -= 1
            if waiting[r] == 0:
                ready.append(r)
    assert len(t) == len(preds), "the reference found a cycle: pick a case without deadlock"
    return {u: [t[(u, f)] for f in range(firings[u].n)] for u in ids}


CASES = [
    # (shape, density, balanced, order, fifo depth, hop latency)
    ("12,14,12", 0.3, False, "ikj", 2, 1),
    ("16,12,16", 0.15, False, "ikj", 2, 2),
    ("14,16,14", 0.5, False, "ijk", 3, 1),
    ("16,16,16", 0.08, False, "ikj", 4, 1),
    ("12,14,12", 0.3, True, "ikj", 2, 1),
    ("16,12,16", 0.5, True, "ijk", 2, 2),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}@{c[1]}-{'bal' if c[2] else 'unbal'}"
                                             for c in CASES])
def test_solver_meets_the_time_rules_at_every_window(small_chip, case):
    shape, density, balanced, order_, depth, hop = case
    chip = configure(small_chip, {"depth": depth, "hop": hop, "policy": ("skip", "skip"),
                                  "balance": balanced})
    layer = get_workload("spmspm").make({"shape": shape, "density": density, "seed": 3,
                                         "order": order_})
    program = compile_layer(layer, chip)
    kernel = program.kernels[0]
    firings, _mem, order = fire_kernel(kernel, program.images)
    want = reference_times(kernel, firings, order, chip)
    for window in (1, 16, 64, 512, 10**9):
        got, _stats = solve_times(kernel, firings, order, chip, window=window)
        for u in want:
            assert got[u].tolist() == want[u], (window, u)


def test_tight_loops_are_solved_step_by_step_and_loose_ones_by_sweeps(small_chip):
    """Both of the solver's ways are exercised by the cases above: an unbalanced graph's
    tight loop outlasts the sweep budget in one big window; a balanced one settles."""
    used = {}
    for shape, density, balanced, order_, depth, hop in (CASES[0], CASES[4]):
        chip = configure(small_chip, {"depth": depth, "hop": hop,
                                      "policy": ("skip", "skip"), "balance": balanced})
        program = compile_layer(get_workload("spmspm").make(
            {"shape": shape, "density": density, "seed": 3, "order": order_}), chip)
        kernel = program.kernels[0]
        firings, _mem, order = fire_kernel(kernel, program.images)
        _times, stats = solve_times(kernel, firings, order, chip, window=10**9)
        used[balanced] = stats.sequential
    assert used[False] >= 1 and used[True] == 0


def test_prune_keeps_only_terms_no_earlier_term_implies():
    # targets sorted; a term is implied by an earlier one reading the same or a later step
    index = np.array([3, 3, 5, 4, 5, 9, 2, 10])
    targets = np.array([0, 1, 1, 2, 4, 4, 6, 7])
    kept_index, kept_targets = _prune(index, targets, 8)
    assert kept_index.tolist() == [3, 5, 9, 10]
    assert kept_targets.tolist() == [0, 1, 4, 7]
    # every step in order (targets None): the targets become explicit when a term goes
    kept_index, kept_targets = _prune(np.array([0, 0, 1, 1, 2]), None, 5)
    assert kept_index.tolist() == [0, 1, 2] and kept_targets.tolist() == [0, 2, 4]
    # nothing to drop: the arrays are returned as they are
    same = np.array([1, 2, 3])
    assert _prune(same, None, 3)[0] is same and _prune(same, None, 3)[1] is None


def test_fill_gives_each_step_the_previous_term():
    # terms at steps 0, 2, 3 of 6: step 1 reads what step 0 reads, steps 4 and 5 what 3 reads
    assert _fill(np.array([3, 5, 9]), np.array([0, 2, 3]), 6).tolist() == [3, 3, 5, 9, 9, 9]


def test_pruned_constraints_have_increasing_indices(small_chip):
    chip = configure(small_chip, {"depth": 2, "hop": 1, "policy": ("skip", "skip"),
                                  "balance": False})
    program = compile_layer(get_workload("spmspm").make({"shape": "16,16,16", "density": 0.3,
                                                         "seed": 1}), chip)
    kernel = program.kernels[0]
    firings, _mem, order = fire_kernel(kernel, program.images)
    deps = _deps(kernel, firings, order, chip)
    # the intersecter peeks the head of one operand while it walks the other: one term per
    # head of that operand remains, far fewer than its peeks
    pos = {n.id: k for k, n in enumerate(order)}
    isect = next(n for n in order if n.op is Opcode.INTERSECT)
    edge = next(e for e in kernel.edges if e.dst == isect.id and e.dst_port == "crd_a")
    peeks = len(firings[isect.id].peeks["crd_a"][0])
    kept = [len(d.index) for d in deps[pos[isect.id]] if d.src == pos[edge.src]]
    assert kept and min(kept) < peeks / 2
    for lst in deps:
        for d in lst:
            if d.targets is not None:       # pruned: strictly increasing
                assert bool((np.diff(d.index) > 0).all())
                assert bool((np.diff(d.targets) >= 0).all())
            else:                           # every step from d.first: filled, in order
                assert bool((np.diff(d.index) >= 0).all())


def _compiled(small_chip, case):
    shape, density, balanced, order_, depth, hop = case
    chip = configure(small_chip, {"depth": depth, "hop": hop, "policy": ("skip", "skip"),
                                  "balance": balanced})
    program = compile_layer(get_workload("spmspm").make(
        {"shape": shape, "density": density, "seed": 3, "order": order_}), chip)
    kernel = program.kernels[0]
    firings, _mem, order = fire_kernel(kernel, program.images)
    return chip, kernel, firings, order


@pytest.mark.parametrize("budget", [1, 2, 3])
@pytest.mark.parametrize("case", CASES[:4] + CASES[5:],
                         ids=[f"{c[0]}@{c[1]}-d{c[4]}" for c in CASES[:4] + CASES[5:]])
def test_unsettled_windows_keep_exactly_the_steps_that_hold(small_chip, monkeypatch, case,
                                                            budget):
    """With a sweep budget of one to three, almost no window settles: each keeps the
    downset of its steps whose equations hold (``_holding``, ``_downset``) and walks or
    re-windows the rest. The times stay those of the time rules at every window size."""
    import simulator.burst_timing as bt

    monkeypatch.setattr(bt, "SWEEP_BUDGET", budget)
    monkeypatch.setattr(bt, "PROBE_BUDGET", budget)
    chip, kernel, firings, order = _compiled(small_chip, case)
    want = reference_times(kernel, firings, order, chip)
    kept = 0
    for window in (8, 64, 512, 10**9):
        got, stats = solve_times(kernel, firings, order, chip, window=window)
        kept += stats.partial
        for u in want:
            assert got[u].tolist() == want[u], (window, u)
    assert kept > 0        # the path under test ran


def test_downset_is_the_largest_closed_cut_below_the_proposal(small_chip):
    """``_downset`` against the fixed point of whole passes over every unit (the solver's
    earlier cut): the same cut for random proposals, every step below it reading only steps
    below it, and no cut of it left to make."""
    from simulator.burst_timing import _downset

    chip, kernel, firings, order = _compiled(small_chip, CASES[0])
    deps = _deps(kernel, firings, order, chip)
    readers: list[list[int]] = [[] for _ in order]
    for u, lst in enumerate(deps):
        for d in lst:
            if u not in readers[d.src]:
                readers[d.src].append(u)
    sizes = [firings[n.id].n for n in order]
    rng = np.random.default_rng(5)
    for _ in range(40):
        done = [int(rng.integers(0, n // 3 + 1)) for n in sizes]
        # start from a downset: shrink the random floor itself first
        floor = [0] * len(sizes)
        _downset(deps, readers, done, floor, list(range(len(sizes))))
        proposal = [min(n, d + int(rng.integers(0, n + 1))) for n, d in zip(sizes, done)]
        fast = list(proposal)
        _downset(deps, readers, fast, done, list(range(len(sizes))))
        slow = list(proposal)
        shrunk = True
        while shrunk:
            shrunk = False
            for u, lst in enumerate(deps):
                cut = min([slow[u]] + [d.limit(slow[d.src]) for d in lst])
                if cut < slow[u]:
                    slow[u] = max(cut, done[u])
                    shrunk = True
        assert fast == slow
        for u, lst in enumerate(deps):
            assert done[u] <= fast[u] <= proposal[u]
            if fast[u] > done[u]:
                assert all(d.limit(fast[d.src]) >= fast[u] for d in lst)


UNBALANCED = [(density, depth) for density in (0.05, 0.2, 0.4) for depth in (2, 3, 4)]


@pytest.mark.parametrize("density,depth", UNBALANCED,
                         ids=[f"{d}-depth{k}" for d, k in UNBALANCED])
def test_unbalanced_graphs_match_the_cycle_engine(small_chip, density, depth):
    """Unbalanced SpM*SpM (tight reconvergent loops) at several densities and FIFO depths:
    the burst engine equals the cycle engine in every counter, with the default window
    and with small ones (many windows, walked and kept in part)."""
    from tests.test_burst import assert_same

    chip = configure(small_chip, {"depth": depth, "hop": 1 + depth % 2,
                                  "policy": ("skip", "skip"), "balance": False})
    program = compile_layer(get_workload("spmspm").make(
        {"shape": "20,18,20", "density": density, "seed": depth}), chip)
    kernel = program.kernels[0]
    for window in (None, 32, 256):
        assert isinstance(assert_same(kernel, program.images, chip, window=window), int)


@pytest.mark.parametrize("balanced", [True, False], ids=["bal", "unbal"])
def test_unrolled_kernels_meet_the_time_rules(onyx_chip, balanced):
    """Onyx's default compile unrolls SpM*SpM into copies (a filter per copy, its own
    writers): the solver's times equal the time rules' on every copy, with the default
    first window (the whole kernel in one window: ``stats.windows == 1`` when balanced) and
    with small windows."""
    import dataclasses

    chip = onyx_chip if balanced else dataclasses.replace(
        onyx_chip, compiler=dataclasses.replace(onyx_chip.compiler, balance_fifos=False))
    program = compile_layer(get_workload("spmspm").make(
        {"shape": "24,20,24", "density": 0.15, "seed": 2}), chip)
    kernel = program.kernels[0]
    assert any(n.op is Opcode.FILTER for n in kernel.nodes)       # unrolled
    firings, _mem, order = fire_kernel(kernel, program.images)
    want = reference_times(kernel, firings, order, chip)
    for window in (None, 64):
        got, stats = (solve_times(kernel, firings, order, chip) if window is None else
                      solve_times(kernel, firings, order, chip, window=window))
        for u in want:
            assert got[u].tolist() == want[u], (window, u)
        if window is None and balanced:
            assert stats.windows == 1


def test_walked_windows_in_a_row_skip_their_probe_sweeps(small_chip, monkeypatch):
    """After a window walked step by step, the next one is probed with PROBE_BUDGET sweeps
    only every PROBE_EVERY windows (the others are walked at once): the times stay the
    time rules' whatever PROBE_EVERY, and skipping probes runs fewer sweeps."""
    import simulator.burst_timing as bt

    monkeypatch.setattr(bt, "SEQUENTIAL_MIN_WINDOW", 64)
    monkeypatch.setattr(bt, "SWEEP_BUDGET", 2)
    monkeypatch.setattr(bt, "PROBE_BUDGET", 2)
    chip, kernel, firings, order = _compiled(small_chip, CASES[0])
    want = reference_times(kernel, firings, order, chip)
    sweeps = {}
    for every in (1, 3):
        monkeypatch.setattr(bt, "PROBE_EVERY", every)
        got, stats = solve_times(kernel, firings, order, chip, window=64)
        for u in want:
            assert got[u].tolist() == want[u], (every, u)
        assert stats.sequential >= 4
        sweeps[every] = stats.sweeps
    assert sweeps[3] < sweeps[1]
