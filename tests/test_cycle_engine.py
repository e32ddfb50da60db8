"""The cycle engine's time rules: exact cycle logs with their derivations, and invariants.

Rules (simulator/engine_cycle.py): one step per unit per cycle; a token put at cycle p is
usable at p + L (L = hops x hop latency); capacity = pe.fifo_depth + (hops-1) x
interconnect.fifo_depth; a slot popped at cycle g is reusable at g + 1.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compiler.pipeline import lower_layer
from isa.errors import SimulationError
from isa.fibertree import FiberTree
from isa.ops import Opcode
from isa.program import Edge, Kernel, Node, TensorDecl
from isa.tokens import format_tokens, tokens
from simulator.engine_cycle import run_kernel_cycle, run_streams
from tests.conftest import with_fifo
from workloads import get_workload

PAPER_MATRIX = np.array([[0, 1, 0, 0], [2, 0, 3, 0], [0, 0, 0, 0], [0, 4, 0, 5]])


def test_repsig_cycle_log(small_chip):
    # source puts 0 1 S0 D at cycles 0..3; each arrives one cycle later (L=1), repsig steps
    # at 1..4, and the sink pops each output one cycle after it was put: 2..5.
    logs, st = run_streams(Node.make("u", Opcode.REPSIG), {"crd": tokens("0 1 S0 D")},
                           small_chip)
    assert [t for t, _ in logs["repsig"]] == [2, 3, 4, 5]
    assert (st.busy_cycles, st.first_cycle, st.last_cycle) == (4, 1, 4)


def test_intersect_cycle_log(small_chip):
    # Sources put one token per cycle, but a third token needs the first popped (depth 2):
    # put a[k] >= pop a[k-2] + 1. Intersect steps (cycle: heads -> action):
    #  1: 2 vs 1 -> pop b          2: 2 vs 4 -> pop a        3: 4 vs 4 -> emit 4, pop both
    #  4: 7 vs 8 -> pop a (a[2] put at pop a[0]+1 = 3, usable 4)
    #  5: 8 vs 8 -> emit 8 (a[3] put at pop a[1]+1 = 4, usable 5)
    #  6: 10 vs 9 -> pop b   7: 10 vs S0 -> pop a   8: S0 vs S0 -> emit S0   9: D D -> emit D
    # The sink pops each emitted token the cycle after: 4, 6, 9, 10.
    streams = dict(crd_a="2 4 7 8 10 S0 D", ref_a="0 1 2 3 4 S0 D",
                   crd_b="1 4 8 9 S0 D", ref_b="0 1 2 3 S0 D")
    logs, st = run_streams(Node.make("u", Opcode.INTERSECT),
                           {k: tokens(v) for k, v in streams.items()}, small_chip)
    assert logs["crd"] == [(4, 4), (6, 8), (9, tokens("S0")[0]), (10, tokens("D")[0])]
    assert (st.busy_cycles, st.first_cycle, st.last_cycle) == (9, 1, 9)
    assert st.match_count == 2


def test_vector_reducer_takes_input_while_it_emits(small_chip):
    # SAM's sparse accumulator (SparseAccumulator1) takes one point and emits one entry of a
    # completed fiber per cycle; Sieve's vector reducer does the same: step k pops input k
    # (sources put k at cycle k, depth 2, L = 1, so step k runs at k + 1) and emits the
    # oldest queued output token. Inputs 3 1 S0 2 S1 0 S1 D (values 1 2 S0 3 S1 4 S1 D):
    #   t=5 takes S1: queues 1:2 2:3 3:1 S0 and emits 1   t=6 takes 0, emits 2
    #   t=7 takes S1: queues 0:4 S0, emits 3              t=8 takes D: queues D, emits S0
    #   t=9, 10, 11 drain 0, S0, D (nothing left to take)
    # The sink pops each token the cycle after it was put. A reducer that stopped taking
    # input while it flushed would spend 12 steps (8 inputs + 4 entries) instead of 11.
    logs, st = run_streams(Node.make("u", Opcode.VREDUCE),
                           {"crd": tokens("3 1 S0 2 S1 0 S1 D"),
                            "val": tokens("1 2 S0 3 S1 4 S1 D")}, small_chip)
    assert [(t, repr(tok)) for t, tok in logs["crd"]] == [
        (6, "1"), (7, "2"), (8, "3"), (9, "S0"), (10, "0"), (11, "S0"), (12, "D")]
    assert [repr(tok) for _, tok in logs["val"]] == ["2", "3", "1", "S0", "4", "S0", "D"]
    assert (st.busy_cycles, st.first_cycle, st.last_cycle) == (11, 1, 11)


def _copy_kernel() -> tuple[Kernel, dict[str, FiberTree]]:
    """root scan of B level 0 -> level writer of X level 0."""
    b = FiberTree.from_dense("B", PAPER_MATRIX, ("compressed", "compressed"))
    nodes = (Node.make("scan", Opcode.SCAN, tensor="B", level=0, fmt="compressed", root=True),
             Node.make("write", Opcode.WRITE_CRD, tensor="X", level=0))
    edges = (Edge("scan", "crd", "write", "crd", "crd"),)
    decls = (TensorDecl("B", (4, 4), ("compressed", "compressed"), (0, 1)),
             TensorDecl("X", (4,), ("compressed",), (0,), True))
    return Kernel("copy", nodes, edges, decls), {"B": b}


@pytest.mark.parametrize("depth,hops,writer_steps,cycles", [
    # scanner: cycle 0 segment fetch, 1-3 emit 0 1 3, 4 emits S0, 5 emits D.
    (2, 1, [2, 3, 4, 5, 6], 7),       # writer one cycle behind (L = 1): done at 6
    (2, 3, [4, 5, 6, 7, 8], 9),       # L = 3, capacity 2 + 2*2 = 6: no stall, 3 behind
    # capacity 1: the scanner's next put waits for the writer's pop + 1, so it emits at
    # 1, 3, 5, 7, 9 and the writer steps at 2, 4, 6, 8, 10 (half throughput).
    (1, 1, [2, 4, 6, 8, 10], 11),
])
def test_pipeline_cycle_log(small_chip, depth, hops, writer_steps, cycles):
    kernel, images = _copy_kernel()
    route = tuple((0, i) for i in range(hops + 1))
    kernel = kernel.with_edges(tuple(dataclasses.replace(e, route=route) for e in kernel.edges))
    run = run_kernel_cycle(kernel, images, with_fifo(small_chip, depth))
    w = run.units["write"]
    assert (w.busy_cycles, w.first_cycle, w.last_cycle) == (5, writer_steps[0],
                                                           writer_steps[-1])
    assert run.cycles == cycles
    assert run.memory.written[("X", 0)].crd == [0, 1, 3]
    assert run.channels["scan.crd->write.crd"].token_count == 5
    assert run.channels["scan.crd->write.crd"].hop_count == 5 * hops


def _spmspm(small_chip, order="ikj", **params):
    layer = get_workload("spmspm").make({"shape": (12, 10, 14), "density": 0.3,
                                         "order": order, **params})
    return lower_layer(layer, small_chip)


def test_reverse_build_order_gives_identical_results(small_chip):
    kernel, images = _spmspm(small_chip)
    rev = Kernel(kernel.name, kernel.nodes[::-1], kernel.edges[::-1], kernel.tensors,
                 kernel.expr)
    a = run_kernel_cycle(kernel, images, small_chip)
    b = run_kernel_cycle(rev, images, small_chip)
    assert a.cycles == b.cycles
    assert a.units == b.units
    assert a.channels == b.channels
    assert a.memory.written == b.memory.written


@pytest.mark.parametrize("order", ["ikj", "ijk"])
def test_invariants(small_chip, order):
    kernel, images = _spmspm(small_chip, order)
    run = run_kernel_cycle(kernel, images, small_chip)
    for node in kernel.nodes:
        st = run.units[node.id]
        assert 0 < st.busy_cycles <= run.cycles
        assert st.last_cycle < run.cycles
    # conservation: every token put on a channel is popped by its consumer
    for e in kernel.edges:
        ch = run.channels[e.name]
        assert ch.token_count > 0
    consumed = {n.id: 0 for n in kernel.nodes}
    for e in kernel.edges:
        consumed[e.dst] += run.channels[e.name].token_count
    for node in kernel.nodes:
        assert run.units[node.id].tokens_in_count == consumed[node.id]


@pytest.mark.parametrize("order", ["ikj", "ijk"])
def test_deeper_fifos_are_never_slower(small_chip, order):
    kernel, images = _spmspm(small_chip, order)
    cycles = [run_kernel_cycle(kernel, images, with_fifo(small_chip, d)).cycles
              for d in (2, 3, 4, 8)]
    assert cycles == sorted(cycles, reverse=True)
    assert cycles[0] > cycles[-1]


def test_one_entry_fifos_deadlock_spmspm(small_chip):
    # A scanner needs the next input ref to choose between S0 and S_(n+1) at a fiber's end.
    # In Gustavson's graph isect_k sends ref_a to repeat_Bj and ref_b (through scan_C1 and
    # repsig_j) to the same repeater's repsig: with one-entry FIFOs the pending ref_a fills
    # the channel, isect_k cannot emit the next ref_b, scan_C1 cannot close its fiber, and
    # repeat_Bj never sees the stop that would pop ref_a. Depth 2 (Onyx's) breaks the cycle.
    kernel, images = _spmspm(small_chip)
    with pytest.raises(SimulationError, match="deadlock") as err:
        run_kernel_cycle(kernel, images, with_fifo(small_chip, 1))
    assert "isect_k" in str(err.value) and "waiting for room on output ref_a" in str(err.value)


def test_deadlock_is_detected_and_names_the_stuck_units(small_chip):
    # scan.ref fans out to arr1 (-> vreduce, which needs a whole fiber before emitting) and
    # arr2 (-> alu). The alu waits for vreduce; arr2's FIFO to the alu fills up, so arr2 and
    # then the scanner block: nothing can move.
    vec = FiberTree.from_dense("B", np.arange(1, 21), ("compressed",))
    nodes = (Node.make("scan", Opcode.SCAN, tensor="B", level=0, fmt="compressed", root=True),
             Node.make("arr1", Opcode.ARRAY, tensor="B"),
             Node.make("arr2", Opcode.ARRAY, tensor="B"),
             Node.make("vred", Opcode.VREDUCE),
             Node.make("alu", Opcode.ALU, op="add"),
             Node.make("write", Opcode.WRITE_VAL, tensor="X"))
    edges = (Edge("scan", "ref", "arr1", "ref", "ref"), Edge("scan", "ref", "arr2", "ref", "ref"),
             Edge("scan", "crd", "vred", "crd", "crd"), Edge("arr1", "val", "vred", "val", "val"),
             Edge("vred", "val", "alu", "a", "val"), Edge("arr2", "val", "alu", "b", "val"),
             Edge("alu", "val", "write", "val", "val"))
    decls = (TensorDecl("B", (20,), ("compressed",), (0,)),
             TensorDecl("X", (20,), ("compressed",), (0,), True))
    kernel = Kernel("deadlock", nodes, edges, decls)
    with pytest.raises(SimulationError, match="deadlock") as err:
        run_kernel_cycle(kernel, {"B": vec}, small_chip)
    msg = str(err.value)
    assert "scan" in msg and "arr2" in msg and "waiting for room" in msg
    assert "alu" in msg and "waiting for a token on input a" in msg


def test_watchdog_names_units(small_chip):
    kernel, images = _spmspm(small_chip)
    chip = dataclasses.replace(small_chip, sim=dataclasses.replace(small_chip.sim,
                                                                   max_cycles=50))
    with pytest.raises(SimulationError, match="watchdog") as err:
        run_kernel_cycle(kernel, images, chip)
    assert "scan_B0" in str(err.value)


def test_streams_match_interpreter(small_chip):
    from isa.interp import run_kernel

    kernel, images = _spmspm(small_chip)
    run = run_kernel_cycle(kernel, images, small_chip)
    ref = run_kernel(kernel, images)
    assert run.memory.written == ref.memory.written
    for node in kernel.nodes:
        assert run.units[node.id].busy_cycles == ref.steps[node.id]
    assert format_tokens(ref.streams[("isect_k", "crd")])  # the graph really intersects
