"""Unrolling (compiler/unroll.py): stream filters, the output address generator, arbiters
and N copies of a kernel's graph.

1. The primitives token by token (paper notation), their firing tables against the
   behaviours' step traces, and their errors on malformed streams. The ``arbiter`` is an ISA
   primitive the unroller no longer emits; its tests stay.
2. The output address generator (isa.copies; writers with ``copy``/``copies``): the union of
   the copies' parts, its errors, the verifier's rules, asm and bitstream, and an exact cycle
   log (it costs nothing beyond each copy's writers).
3. An unrolled kernel computes what the one-copy kernel computes (interpreter), tree for
   tree, on the catalog kernels; kernels whose outer index cannot be dealt are refused.
4. A seeded random suite of unrolled kernels (random kernels, formats, densities, empty
   rows, FIFO depths, hop latencies, factors 2..7) run by both engines: identical cycles,
   counters and written parts (burst == cycle exactly), with a count of the cases that
   unrolled; and the copies never wait on each other (kernel cycles = the slowest copy's).
5. ``compiler.unroll``: config validation, forced factors, ``auto``'s choice, the limits
   (which binds), the replicated loads in the schedule, tiled kernels, and the old
   arbiter-merge deadlock case, which now runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compiler.pipeline import compile_layer, lower_layer, place_route_balance
from compiler.unroll import (
    copies_of,
    kernel_shape,
    max_copies,
    outer_positions,
    parse_unroll,
    unroll_kernel,
)
from isa.copies import union_of_copies
from isa.errors import CompileError, ConfigError, IsaError, SimulationError
from isa.fibertree import FiberTree
from isa.interp import WrittenLevel, assemble_output, run_kernel, run_unit
from isa.ops import WRITERS, Opcode
from isa.program import Edge, Kernel, Node, TensorDecl
from isa.tokens import tokens
from isa.verify import verify_kernel
from simulator.config import load_chip
from simulator.engine_burst import FIRE, Stream
from simulator.engine_cycle import run_streams
from tests.test_burst import assert_firing_matches, assert_same, configure, make_case
from workloads import get_workload


def _filter(copy: int, copies: int, kind: str = "crd") -> Node:
    return Node.make("f", Opcode.FILTER, kind=kind, copy=copy, copies=copies)


def _arb(depth: int, ta: int = 1, tb: int = 1) -> Node:
    return Node.make("a", Opcode.ARBITER, depth=depth, take_a=ta, take_b=tb)


def same_tree(a, b) -> bool:
    """Two fibertrees equal level by level (formats, segments, coordinates) and in values."""
    return a.formats == b.formats and a.vals.dtype == b.vals.dtype and all(
        la.fmt == "dense" or (np.array_equal(la.seg, lb.seg) and np.array_equal(la.crd, lb.crd))
        for la, lb in zip(a.levels, b.levels)) and np.array_equal(a.vals, b.vals)


def _run(node: Node, **streams: str) -> list:
    return run_unit(node, {p: tokens(s) for p, s in streams.items()})[0]["out"]


# ------------------------------------------------------------------ 1. the primitives
def test_filter_deals_positions_round_robin():
    # position p of the outer fiber goes to copy p mod 3; S0 and D always pass
    assert _run(_filter(0, 3), **{"in": "0 2 5 7 9 S0 D"}) == tokens("0 7 S0 D")
    assert _run(_filter(1, 3), **{"in": "0 2 5 7 9 S0 D"}) == tokens("2 9 S0 D")
    assert _run(_filter(2, 3), **{"in": "0 2 5 7 9 S0 D"}) == tokens("5 S0 D")
    assert _run(_filter(1, 2, "ref"), **{"in": "4 N 6 S0 D"}) == tokens("N S0 D")
    assert _run(_filter(1, 2), **{"in": "S0 D"}) == tokens("S0 D")


def test_arbiter_undoes_the_deal():
    # depth 0: three copies merged as (copy 0) then (copies 1, 2): take 1 then 2 per round
    bc = _run(_arb(0), a="2 9 S0 D", b="5 S0 D")
    assert bc == tokens("2 5 9 S0 D")
    assert run_unit(_arb(0, 1, 2), {"a": tokens("0 7 S0 D"), "b": bc})[0]["out"] == \
        tokens("0 2 5 7 9 S0 D")
    # depth 1: items are fibers; the last item of the merged stream closes with S1
    # whole: [1 2] [] [3] [4 5] [], dealt to a: [1 2] [3] [] and b: [] [4 5]
    assert _run(_arb(1), a="1 2 S0 3 S0 S1 D", b="S0 4 5 S1 D") == \
        tokens("1 2 S0 S0 3 S0 4 5 S0 S1 D")
    # depth 2: an item holds inner fibers (S0 inside, S1 closes it)
    assert _run(_arb(2), a="1 S0 2 S2 D", b="3 S2 D") == \
        tokens("1 S0 2 S1 3 S2 D")
    # one empty item each (every copy has >= 1 item: the planner keeps N <= positions)
    assert _run(_arb(1), a="S1 D", b="S1 D") == tokens("S0 S1 D")


@pytest.mark.parametrize("node,streams,match", [
    (_arb(0), dict(a="1 2 S0 D", b="S0 D"), "ended"),
    (_arb(1), dict(a="1 S1 D", b="2 S0 3 S1 D"), "other still has items"),
    (_arb(1), dict(a="1 S2 D", b="2 S1 D"), "depth 1"),
    (_filter(0, 2), {"in": "1 S0 2 S1 D"}, "outermost"),
])
def test_malformed_streams_are_refused(node, streams, match):
    with pytest.raises(IsaError, match=match):
        _run(node, **streams)
    with pytest.raises(SimulationError):
        FIRE[node.op](node, {p: Stream.encode(tokens(s)) for p, s in streams.items()}, None)


FIRING_CASES = [
    (_filter(0, 3), {"in": "0 2 5 7 9 S0 D"}),
    (_filter(2, 3, "ref"), {"in": "N 2 5 N 9 4 S0 D"}),
    (_filter(1, 4), {"in": "S0 D"}),
    (_arb(0), dict(a="2 9 S0 D", b="5 S0 D")),
    (_arb(0, 1, 2), dict(a="0 7 S0 D", b="2 5 9 S0 D")),
    (_arb(0, 2, 1), dict(a="0 1 3 4 S0 D", b="2 5 S0 D")),
    (_arb(1), dict(a="1 2 S0 3 S0 S1 D", b="S0 4 5 S1 D")),
    (_arb(1, 2, 2), dict(a="1 S0 S0 3 S1 D", b="S0 4 5 S1 D")),
    (_arb(2), dict(a="1 S0 2 S2 D", b="3 S2 D")),
    (_arb(2), dict(a="1 S0 2 S1 S1 S2 D", b="3 S1 4 S0 S2 D")),
    (_arb(1), dict(a="S1 D", b="S1 D")),
]


@pytest.mark.parametrize("node,streams", FIRING_CASES,
                         ids=[f"{n.op.value}-{i}" for i, (n, _) in enumerate(FIRING_CASES)])
def test_firing_table_matches_the_behaviour(node, streams):
    assert_firing_matches(node, streams)


# ------------------------------------------------------------------ 2. the output address generator
def _tree(name, dense, formats=("compressed", "compressed")):
    return FiberTree.from_dense(name, np.asarray(dense), formats)


def test_output_is_the_union_of_the_copies_parts_by_outer_coordinate():
    # X = [[0 1 2 0] [0 0 0 0] [6 0 0 7] [0 4 0 0]] dealt over 2 copies: copy 0 wrote outer
    # coordinates 0 and 3, copy 1 wrote 2 (row 1 is empty: dropped by its copy)
    whole = np.array([[0, 1, 2, 0], [0, 0, 0, 0], [6, 0, 0, 7], [0, 4, 0, 0]])
    part0, part1 = whole.copy(), whole.copy()
    part0[[1, 2]], part1[[0, 1, 3]] = 0, 0
    decl = TensorDecl("X", (4, 4), ("compressed", "compressed"), (0, 1), True)
    out = union_of_copies(decl, [_tree("X", part0), _tree("X", part1)])
    assert out.levels[0].seg.tolist() == [0, 3] and out.levels[0].crd.tolist() == [0, 2, 3]
    assert out.levels[1].seg.tolist() == [0, 2, 4, 5]
    assert out.levels[1].crd.tolist() == [1, 2, 0, 3, 1]
    assert out.vals.tolist() == [1, 2, 6, 7, 4]
    assert same_tree(out, _tree("X", whole))
    # a copy dealt nothing writes an empty part; a bitmap outer level unions its bits
    empty = _tree("X", np.zeros((4, 4), int))
    assert same_tree(union_of_copies(decl, [empty, _tree("X", whole), empty]),
                     _tree("X", whole))
    bm = TensorDecl("X", (4, 4), ("bitmap", "compressed"), (0, 1), True)
    fb = ("bitmap", "compressed")
    assert same_tree(union_of_copies(bm, [_tree("X", part0, fb), _tree("X", part1, fb)]),
                     _tree("X", whole, fb))


def test_union_refuses_overlapping_parts_and_unstored_outer_levels():
    decl = TensorDecl("X", (2, 2), ("compressed", "compressed"), (0, 1), True)
    a = _tree("X", [[1, 0], [0, 0]])
    with pytest.raises(IsaError, match="two copies wrote outer coordinate 0"):
        union_of_copies(decl, [a, _tree("X", [[0, 3], [2, 0]])])
    dense = TensorDecl("X", (2, 2), ("dense", "compressed"), (0, 1), True)
    with pytest.raises(IsaError, match="outer level is not stored"):
        union_of_copies(dense, [_tree("X", [[1, 0], [0, 0]], ("dense", "compressed"))])


def _dealt_copy_kernel(copies: int, **changes):
    """X(i) = B(i), coordinates only: per copy a root scan of B level 0 -> filter -> level
    writer of X level 0 with copy/copies (``changes``: node id -> attributes to set)."""
    b = FiberTree.from_dense("B", np.array([5, 6, 0, 7]), ("compressed",))
    nodes, edges = [], []
    for c in range(copies):
        nodes += [Node.make(f"scan{c}", Opcode.SCAN, tensor="B", level=0, fmt="compressed",
                            root=True),
                  Node.make(f"filter{c}", Opcode.FILTER, copy=c, copies=copies),
                  Node.make(f"write{c}", Opcode.WRITE_CRD, tensor="X", level=0,
                            **{"copy": c, "copies": copies, **changes.get(f"write{c}", {})})]
        edges += [Edge(f"scan{c}", "crd", f"filter{c}", "in", "crd"),
                  Edge(f"filter{c}", "out", f"write{c}", "crd", "crd")]
    decls = (TensorDecl("B", (4,), ("compressed",), (0,)),
             TensorDecl("X", (4,), ("compressed",), (0,), True))
    return Kernel("dealt", tuple(nodes), tuple(edges), decls), {"B": b}


def test_dealt_writers_cycle_log():
    # The output address generator costs nothing beyond each copy's writers (ASSUMPTION,
    # docs/architecture.md "Unrolling"): a dealt writer steps exactly as a plain one.
    # Onyx chip, one hop per edge (L = 1), FIFO depth 2. Each scanner: cycle 0 segment
    # fetch, 1-3 emit 0 1 3, 4 S0, 5 D. Each filter steps one cycle after each put: 2-6.
    # Filter 0 keeps positions 0 and 2 (coordinates 0, 3): puts 0 at 2, 3 at 4, S0 at 5,
    # D at 6; its writer steps at 3, 5, 6, 7. Filter 1 keeps position 1 (coordinate 1): puts
    # 1 at 3, S0 at 5, D at 6; its writer steps at 4, 6, 7. Neither waits on the other: the
    # kernel ends after cycle 7, in 8 cycles, as each copy alone would.
    from simulator.engine_cycle import run_kernel_cycle

    chip = load_chip("onyx")
    kernel, images = _dealt_copy_kernel(2)
    kernel = kernel.with_edges(tuple(dataclasses.replace(e, route=((0, 0), (0, 1)))
                                     for e in kernel.edges))
    verify_kernel(kernel)
    run = run_kernel_cycle(kernel, images, chip)
    w0, w1 = run.units["write0"], run.units["write1"]
    assert (w0.busy_cycles, w0.first_cycle, w0.last_cycle) == (4, 3, 7)
    assert (w1.busy_cycles, w1.first_cycle, w1.last_cycle) == (3, 4, 7)
    assert run.cycles == 8
    assert run.memory.written[("X", 0, 0)].crd == [0, 3]
    assert run.memory.written[("X", 0, 1)].crd == [1]
    assert assert_same(kernel, images, chip) == 8           # burst: the same, exactly
    plain = Node.make("w", Opcode.WRITE_CRD, tensor="X", level=0)
    dealt = Node.make("w", Opcode.WRITE_CRD, tensor="X", level=0, copy=1, copies=3)
    assert run_streams(plain, {"crd": tokens("0 1 3 S0 D")}, chip) == \
        run_streams(dealt, {"crd": tokens("0 1 3 S0 D")}, chip)


@pytest.mark.parametrize("changes,match", [
    ({"write1": {"copies": 3}}, "disagree on copies"),
    ({"write1": {"copy": 0}}, "level 0 of copy 0 written by both write0 and write1"),
    ({"write1": {"copy": 2}}, "copy 2 is not one of 2 copies"),
])
def test_verifier_checks_the_copies_writers(changes, match):
    kernel, _ = _dealt_copy_kernel(2, **changes)
    with pytest.raises(IsaError, match=match):
        verify_kernel(kernel)


def test_verifier_checks_copies_are_complete_and_not_mixed():
    kernel, _ = _dealt_copy_kernel(2)
    lone = dataclasses.replace(kernel, nodes=tuple(
        Node(n.id, n.op, tuple((k, v) for k, v in n.attrs if k != "copy"))
        if n.id == "write1" else n for n in kernel.nodes))
    with pytest.raises(IsaError, match="copy and copies must be given together"):
        verify_kernel(lone)
    plain = dataclasses.replace(kernel, nodes=tuple(
        Node.make("write1", Opcode.WRITE_CRD, tensor="X", level=0) if n.id == "write1"
        else n for n in kernel.nodes))
    with pytest.raises(IsaError, match="some writers carry copy/copies and some do not"):
        verify_kernel(plain)
    three, _ = _dealt_copy_kernel(3)
    two_of_three = dataclasses.replace(
        three, nodes=tuple(n for n in three.nodes if n.id != "write2"),
        edges=tuple(e for e in three.edges if e.dst != "write2"))
    with pytest.raises(IsaError, match="copy 2 of 3 has no writer of level 0"):
        verify_kernel(two_of_three)
    twice = dataclasses.replace(plain, nodes=tuple(
        Node.make(n.id, Opcode.WRITE_CRD, tensor="X", level=0) if n.op is Opcode.WRITE_CRD
        else n for n in plain.nodes))
    with pytest.raises(IsaError, match="level 0 written by both write0 and write1"):
        verify_kernel(twice)


def test_dealt_writers_round_trip_and_configure_their_copy():
    from isa.asm import parse_kernel, print_kernel
    from isa.bitstream import config_bits, decode, encode

    kernel, _ = _dealt_copy_kernel(2)
    tile = {n.id: (0, i) for i, n in enumerate(kernel.nodes)}     # placed and routed
    kernel = dataclasses.replace(
        kernel, nodes=tuple(dataclasses.replace(n, tile=tile[n.id]) for n in kernel.nodes),
        edges=tuple(dataclasses.replace(e, route=(tile[e.src], tile[e.dst]))
                    for e in kernel.edges))
    text = print_kernel(kernel)
    assert "write1 = write_crd tensor=X level=0 copy=1 copies=2" in text
    assert parse_kernel(text) == kernel and decode(encode(kernel)) == kernel
    # a plain writer has no copy attributes (absent, not defaulted): printed and configured
    # as before; a dealt one configures two more attributes (a tag and a value word each)
    plain = Node.make("w", Opcode.WRITE_VAL, tensor="X")
    assert plain.attrs == (("tensor", "X"),)
    stripped = dataclasses.replace(kernel, nodes=tuple(
        Node.make(n.id, Opcode.WRITE_CRD, tile=n.tile, tensor="X", level=0)
        if n.op is Opcode.WRITE_CRD else n for n in kernel.nodes))
    assert config_bits(kernel) - config_bits(stripped) == 2 * 2 * 2 * 32


# ------------------------------------------------------------------ 2. unrolled kernels
CATALOG = [
    ("spmspm", {"shape": "24,20,28", "density": 0.2, "order": "ikj"}),
    ("spmv", {"shape": "20,20", "density": 0.2, "order": "ij"}),   # a 1-D output dropping rows
    ("spmspm", {"shape": "24,20,28", "density": 0.2, "order": "ijk"}),
    ("elemadd", {"shape": "30,20", "density": 0.2}),
    ("elemmul", {"shape": "30,20", "density": 0.4, "formats": "B:dd C:ss"}),
    ("sddmm", {"shape": "16,12,10", "density": 0.3}),
    ("ttv", {"shape": "10,8,12", "density": 0.2, "order": "ijk"}),
    ("ttm", {"shape": "8,6,7,5", "density": 0.2, "order": "ijlk"}),
    ("mttkrp", {"shape": "8,4,6,5", "density": 0.2}),
    ("elemadd3", {"shape": "20,16", "density": 0.2}),
    ("elemmul", {"shape": "20,40", "density": 0.3, "formats": "B:bb C:bb X:sb"}),
    ("elemmul", {"shape": "40,20", "density": 0.3, "formats": "B:bb C:bb X:bb"}),
]


@pytest.mark.parametrize("workload,params", CATALOG, ids=[c[0] for c in CATALOG])
@pytest.mark.parametrize("copies", [2, 3, 5])
def test_unrolled_kernel_computes_the_same_output(onyx, workload, params, copies):
    layer = get_workload(workload).make(params)
    kernel, images = lower_layer(layer, onyx)
    shape = kernel_shape(kernel)
    assert shape.why_not is None, shape.why_not
    unrolled = unroll_kernel(kernel, copies)
    verify_kernel(unrolled)
    assert copies_of(unrolled) == copies
    ops = [n.op for n in unrolled.nodes]
    assert Opcode.ARBITER not in ops                    # no merge: each copy writes its part
    for op in (Opcode.SCAN, Opcode.WRITE_CRD, Opcode.WRITE_VAL, Opcode.WRITE_BV):
        assert ops.count(op) == copies * [n.op for n in kernel.nodes].count(op)
    writers = [n for n in unrolled.nodes if n.op in WRITERS]
    assert sorted(n.attr("copy") for n in writers) == sorted(
        c for c in range(copies) for _ in range(len(writers) // copies))
    assert {n.attr("copies") for n in writers} == {copies}
    one, many = run_kernel(kernel, images), run_kernel(unrolled, images)
    for decl in kernel.tensors:
        if decl.is_output:
            a, b = assemble_output(decl, one.memory), assemble_output(decl, many.memory)
            assert same_tree(a, b)
            assert many.memory.copies == {decl.name: copies}


@pytest.mark.parametrize("workload,params,why", [
    ("spmv", {"shape": "20,20", "density": 0.2, "order": "ji", "formats": "B:ss:1,0"},
     "contracted"),
    ("innerprod", {"shape": "6,5,4", "density": 0.3}, "scalar"),
])
def test_kernels_whose_outer_index_cannot_be_dealt_are_refused(onyx, workload, params, why):
    layer = get_workload(workload).make(params)
    kernel, _ = lower_layer(layer, onyx)
    assert why in kernel_shape(kernel).why_not
    with pytest.raises(CompileError, match="unroll: .*cannot be unrolled"):
        compile_layer(layer, _with(onyx, unroll=2))
    assert copies_of(compile_layer(layer, _with(onyx, unroll="auto")).kernels[0]) == 1


def _with(chip, **compiler):
    return dataclasses.replace(chip, compiler=dataclasses.replace(chip.compiler, **compiler))


# ------------------------------------------------------------------ 3. the random suite
FACTORS = [2, 3, 4, 5, 7]


def make_unroll_case(seed: int) -> dict:
    case = make_case(seed)
    case["copies"] = FACTORS[seed % len(FACTORS)]
    return case


def _unrolled(case: dict, onyx):
    """The case's unrolled, placed and routed kernel (None when its kernel cannot be dealt),
    and its outer positions. The factor is the case's even beyond the outer positions (the
    planner never does that, but the ISA allows it): a copy dealt nothing writes an empty
    part."""
    chip = configure(onyx, case)
    layer = get_workload(case["workload"]).make(case["params"])
    kernel, images = lower_layer(layer, chip)
    shape = kernel_shape(kernel)
    if shape.why_not is not None:
        return None, chip, images, 0
    positions = outer_positions(kernel, shape, images)
    return (place_route_balance(unroll_kernel(kernel, case["copies"], shape), chip), chip,
            images, positions)


SUITE = 60


@pytest.mark.parametrize("seed", range(SUITE))
def test_burst_equals_cycle_unrolled(onyx, seed):
    kernel, chip, images, _ = _unrolled(make_unroll_case(seed), onyx)
    if kernel is None:
        pytest.skip("not unrollable (counted by test_unroll_suite_covers_the_space)")
    assert_same(kernel, images, chip)


def test_unroll_suite_covers_the_space(onyx):
    got = [_unrolled(make_unroll_case(s), onyx) for s in range(SUITE)]
    cases = [make_unroll_case(s) for s in range(SUITE)]
    done = [(c, k, n) for c, (k, _, _, n) in zip(cases, got) if k is not None]
    assert len(done) == SUITE                    # every random kernel's outer loop is dealt
    assert {c["workload"] for c, _, _ in done} == {"spmspm", "elemadd", "elemmul", "spmv"}
    assert {copies_of(k) for _, k, _ in done} == set(FACTORS)
    assert any(n < copies_of(k) for _, k, n in done)        # some copies dealt nothing
    assert sum(n >= copies_of(k) for _, k, n in done) >= 40
    writers = [n for _, k, _ in done for n in k.nodes if n.op in WRITERS]
    assert all(n.attr("copies") >= 2 for n in writers)      # every copy writes its part
    assert not any(n.op is Opcode.ARBITER for _, k, _ in done for n in k.nodes)
    assert any(c["params"]["empty_rows"] for c, _, _ in done)
    assert {c["hop"] for c, _, _ in done} == {1, 2, 3}
    assert len({c["depth"] for c, _, _ in done}) >= 6


def _copy_alone(kernel, c: int):
    """Copy ``c`` of an unrolled kernel as a kernel of its own (its writers plain)."""
    mine = {n.id for n in kernel.nodes if n.id.endswith(f"_u{c}")}
    nodes = tuple(Node(n.id, n.op, tuple((k, v) for k, v in n.attrs if n.op not in WRITERS
                                         or k not in ("copy", "copies")), n.tile)
                  for n in kernel.nodes if n.id in mine)
    edges = tuple(e for e in kernel.edges if e.src in mine and e.dst in mine)
    assert len(edges) == sum(1 for e in kernel.edges if e.src in mine or e.dst in mine)
    return dataclasses.replace(kernel, nodes=nodes, edges=edges)


@pytest.mark.parametrize("seed", [0, 5, 13, 21, 33])
def test_copies_never_wait_on_each_other(onyx, seed):
    # each copy is a whole graph with its own region, body and writers: no unit or stream
    # is shared, so the unrolled kernel ends when its slowest copy ends, exactly as that
    # copy alone would (same placement and routes), and each unit's counters are its copy's
    from simulator.engine_cycle import run_kernel_cycle

    kernel, chip, images, _ = _unrolled(make_unroll_case(seed), onyx)
    whole = run_kernel_cycle(kernel, images, chip)
    alone = [run_kernel_cycle(_copy_alone(kernel, c), images, chip)
             for c in range(copies_of(kernel))]
    assert whole.cycles == max(a.cycles for a in alone)
    for a in alone:
        for uid, st in a.units.items():
            assert whole.units[uid] == st, uid


# ------------------------------------------------------------------ 4. compiler.unroll
def test_config_validates_unroll():
    with pytest.raises(ConfigError, match="compiler.unroll"):
        load_chip("onyx", ["compiler.unroll=0"])
    with pytest.raises(ConfigError, match="compiler.unroll"):
        load_chip("onyx", ["compiler.unroll=many"])
    assert load_chip("onyx", ["compiler.unroll=4"]).compiler.unroll == 4
    assert parse_unroll("auto") is None and parse_unroll(3) == 3


def test_forced_factor_and_its_limits(onyx):
    layer = get_workload("spmspm").make({"shape": "40,30,30", "density": 0.1, "order": "ikj"})
    program = compile_layer(layer, _with(onyx, unroll=4))
    assert copies_of(program.kernels[0]) == 4 and program.unroll.copies == 4
    loads = {c.arg: c.size_bytes for c in program.schedule if c.op == "load"}
    assert loads == {n: 4 * t.nbytes(2) for n, t in program.images.items()}
    kernel, images = lower_layer(layer, onyx)
    limits = max_copies(kernel, kernel_shape(kernel), onyx,
                        outer_positions(kernel, kernel_shape(kernel), images))
    assert limits["outer_positions"] == len(images["B"].levels[0].crd)
    # one link per copy each way (compiler.unroll.GLB_LINKS_*_PER_COPY): 16 copies on Onyx
    assert limits["glb_links_in"] == limits["glb_links_out"] == \
        onyx.glb.array_links_per_direction == 16
    # a copy: the one-copy graph's tiles plus a filter per outer stream leaving the region
    one = compile_layer(layer, _with(onyx, unroll=1)).kernels[0]
    pe = sum(1 for n in one.nodes if n.op.value not in ("scan", "array", "write_crd",
                                                        "write_val"))
    filters = sum(1 for n in program.kernels[0].nodes if n.op is Opcode.FILTER) // 4
    assert limits["pe_tiles"] == 384 // (pe + filters)
    assert limits["mem_tiles"] == 128 // (len(one.nodes) - pe)
    with pytest.raises(CompileError, match="exceeds"):
        compile_layer(layer, _with(onyx, unroll=limits["mem_tiles"] + 1))
    assert program.unroll.binds == "compiler.unroll"
    at_bound = compile_layer(layer, _with(onyx, unroll=limits["mem_tiles"]))
    assert at_bound.unroll.binds == "mem_tiles" == min(limits, key=limits.get)


def test_auto_unrolls_large_kernels_and_not_tiny_ones(onyx):
    big = get_workload("spmspm").make({"shape": "128,128,128", "density": 0.05,
                                       "order": "ikj"})
    p = compile_layer(big, _with(onyx, unroll="auto"))
    assert p.unroll.copies > 1 and "auto" in p.unroll.why
    tiny = get_workload("spmspm").make({"shape": "4,4,4", "density": 0.5, "order": "ikj"})
    assert compile_layer(tiny, _with(onyx, unroll="auto")).unroll.copies == 1


@pytest.mark.parametrize("workload,params,copies", [
    ("ttm", {"shape": "9,6,7,5", "density": 0.2, "order": "ijlk"}, 4),
    ("sddmm", {"shape": "12,10,8", "density": 0.3}, 3),
    ("mttkrp", {"shape": "10,4,6,5", "density": 0.2}, 5),
    ("elemadd3", {"shape": "20,16", "density": 0.2}, 3),
    ("spmspm", {"shape": "20,24,36", "density": 0.2, "order": "ikj", "formats": "B:sb C:bb X:sb"},
     4),
    ("elemmul", {"shape": "20,40", "density": 0.3, "formats": "B:bb C:bb X:sb"}, 3),
    ("elemmul", {"shape": "40,20", "density": 0.3, "formats": "B:bb C:bb X:bb"}, 4),
    ("spmv", {"shape": "30,20", "density": 0.2, "order": "ij", "empty_rows": 0.4}, 3),
])
def test_burst_equals_cycle_unrolled_tensor_kernels(onyx, workload, params, copies):
    # 3-D outputs; located, three-operand and bitmap kernels (word-wide joins, bitmap
    # locates, bitmap output levels, the outer one too) and a 1-D output dropping rows
    kernel, images = lower_layer(get_workload(workload).make(params), onyx)
    unrolled = place_route_balance(unroll_kernel(kernel, copies), onyx)
    assert copies_of(unrolled) == copies
    assert assert_same(unrolled, images, onyx) != "deadlock"


def test_planner_counts_only_the_loads_that_change_between_calls():
    # a tiled kernel's schedule reloads only the operand tiles that changed (compiler.tiling,
    # Tile.loads): the planner's per-copy cost counts those, not every operand of every call
    from compiler.unroll import loaded_bytes

    a, b = _tree("B", [[1, 0], [0, 2]]), _tree("C", [[0, 3], [4, 0]])
    b2 = _tree("C", [[5, 0], [0, 0]])
    calls = [{"B": a, "C": b}, {"B": _tree("B", [[1, 0], [0, 2]]), "C": b2}, {"B": a, "C": b2}]
    loads = [("B", "C"), ("C",), ()]
    assert loaded_bytes(calls, loads) == [a.nbytes(2) + b.nbytes(2), b2.nbytes(2), 0]


def test_planner_loads_are_the_tiled_schedules(onyx):
    # the planner charges exactly the load commands the tiled program issues per call
    # (positions dealt: every copy loads every call's operands; tiles dealt:
    # tests/test_unroll_tiles.py)
    from compiler.unroll import loaded_bytes

    layer = get_workload("spmspm").make({"shape": "256,256,256", "density": "0.05"})
    prog = compile_layer(layer, _with(onyx, unroll_deal="positions"))
    assert prog.tiling is not None and len(prog.tiling.tiles) > 1
    copies = prog.unroll.copies if prog.unroll is not None else 1
    tiles = prog.tiling.tiles
    got = loaded_bytes([t.images for t in tiles], [t.loads for t in tiles])
    per_call = [sum(c.size_bytes for c in prog.schedule if c.op == "load" and c.tile == i)
                // copies for i in range(len(tiles))]
    assert got == per_call and 0 < sum(got[1:]) < sum(got[0] for _ in got[1:])


@pytest.mark.parametrize("pipelined", [False, True])
def test_auto_is_never_worse_than_the_best_forced_factor(onyx, pipelined):
    # a tiled SpM*SpM (MEM tiles of 256 bytes: 16 tile calls one at a time, 64 pipelined,
    # each level in half a MEM tile): auto's factor runs in no more cycles than every factor
    # the limits allow, forced. Pipelined, a later call's loads hide behind the call before
    # (compiler.unroll.estimate_cycles), and a tile call's pipeline depth (fill_cycles),
    # which copies do not shorten, is a large part of these small calls: ignoring the two,
    # auto took 3 copies (8,492 cycles) where 6 take 7,225.
    from simulator.controller import simulate

    layer = get_workload("spmspm").make({"shape": "48,40,48", "density": 0.1,
                                         "order": "ikj"})
    chip = dataclasses.replace(
        onyx, mem_tile=dataclasses.replace(onyx.mem_tile, size_bytes=256),
        controller=dataclasses.replace(onyx.controller, tile_pipelining=pipelined))
    # With pipelined tiles the copies may also take whole tiles (compiler.unroll_deal):
    # auto's choice is no worse than every factor of either mode, forced (tiles dealt, 8
    # copies: 4,296 cycles; the best positions dealt, 6 copies: 7,225).
    auto = compile_layer(layer, _with(chip, unroll="auto"))
    assert len(auto.tiling.tiles) == (64 if pipelined else 16)
    deals = ["positions", "tiles"] if pipelined else ["positions"]
    forced = {}
    for deal in deals:
        one = _with(chip, unroll="auto", unroll_deal=deal)
        limit = min(compile_layer(layer, one).unroll.limits.values())
        forced.update({(deal, n): simulate(compile_layer(
            layer, _with(chip, unroll=n, unroll_deal=deal)), chip).cycles
            for n in range(1, limit + 1)})
    got = simulate(auto, chip).cycles
    mode = (auto.unroll.deal or "positions", auto.unroll.copies)
    assert got == forced[mode] <= min(forced.values()), (mode, forced)
    assert auto.unroll.copies > 1
    assert auto.unroll.deal == ("tiles" if pipelined else "positions")


def test_output_bound_is_the_output_for_elementwise_kernels():
    from compiler.unroll import output_bound

    layer = get_workload("elemmul").make({"shape": "40,40", "density": 1.0})
    assert output_bound(layer, "ij") == 1600.0          # dense: every coordinate
    add = get_workload("elemadd").make({"shape": "40,40", "density": 0.0})
    assert output_bound(add, "ij") == 0.0


def test_summary_and_explain_record_the_choice(capsys):
    from sieve.cli import main

    assert main(["compile", "onyx", "spmspm", "-p", "shape=64,64,64", "-p", "density=0.05",
                 "--explain"]) == 0
    out = capsys.readouterr().out
    assert "unroll: " in out and "(compiler.unroll=auto)" in out
    from sieve.api import run

    s = run("onyx", "spmspm", params={"shape": "64,64,64", "density": 0.05}).summary
    assert s["unroll"]["copies"] > 1 and s["unroll"]["requested"] == "auto"
    assert s["verified"]
    one = run("onyx", "spmspm", params={"shape": "64,64,64", "density": 0.05},
              overrides=["compiler.unroll=1"]).summary
    assert one["unroll"] == {"copies": 1, "requested": "1", "why": "compiler.unroll=1",
                             "limits": {}, "binds": "compiler.unroll"}
    assert s["unroll"]["binds"] in set(s["unroll"]["limits"]) | {"estimate", "place_route"}
    assert s["checks"]["output_copies"] is True and "output_copies" not in one["checks"]
    assert one["kernel_cycles"] > s["kernel_cycles"]


def test_output_copies_check_sees_a_wrong_part(onyx):
    # simulator.checks: each copy's part against numpy on its own outer coordinates
    from simulator.checks import _copies_match

    layer = get_workload("spmspm").make({"shape": "24,20,28", "density": 0.2, "order": "ikj"})
    kernel, images = lower_layer(layer, onyx)
    mem = run_kernel(unroll_kernel(kernel, 3), images).memory
    decl = kernel.tensor("X")
    ref = images["B"].to_dense() @ images["C"].to_dense()
    assert _copies_match(decl, mem, ref)
    vals = mem.written[("X", -1, 1)].vals
    vals[0] += 1                                   # copy 1 wrote one wrong value
    assert not _copies_match(decl, mem, ref)
    vals[0] -= 1
    for lvl in (0, 1, -1):                         # copy 2 wrote nothing
        mem.written[("X", lvl, 2)] = WrittenLevel(seg=[0, 0] if lvl == 0 else [0])
    assert not _copies_match(decl, mem, ref)


def test_unrolled_program_round_trips_through_asm_and_bitstream(onyx):
    from isa.asm import parse_program, print_program
    from isa.bitstream import config_bits, decode, encode

    layer = get_workload("spmspm").make({"shape": "30,20,20", "density": 0.2, "order": "ikj"})
    program = compile_layer(layer, _with(onyx, unroll=3))
    kernel = program.kernels[0]
    assert Opcode.FILTER in {n.op for n in kernel.nodes}
    text = print_program(program)
    assert "= filter kind=" in text
    assert "write_X0_u2 = write_crd tensor=X level=0 copy=2 copies=3" in text
    assert parse_program(text).kernels[0] == kernel
    assert decode(encode(kernel)) == kernel
    one = compile_layer(layer, _with(onyx, unroll=1)).kernels[0]
    assert config_bits(kernel) > 2 * config_bits(one)      # three copies to configure


def test_a_tiled_kernel_runs_its_tile_calls_unrolled():
    # compiler.tiling cuts levels larger than a MEM tile (256 bytes here) into tile calls of
    # one configured graph; that graph is unrolled and every call runs the copies. A tile
    # call's output is the union of its copies' parts; then the firmware's tile merge as
    # before (with check="full" the interpreter re-runs every tile and assembles it so too)
    from sieve.api import run

    params = {"shape": "48,40,48", "density": 0.1, "order": "ikj"}
    small = ["mem_tile.size_bytes=256", "compiler.unroll_deal=positions"]
    one = run("onyx", "spmspm", params=params, overrides=small + ["compiler.unroll=1"])
    many = run("onyx", "spmspm", params=params, overrides=small + ["compiler.unroll=3"],
               check="full")
    assert many.program.tiling is not None and len(many.program.tiling.tiles) > 1
    assert copies_of(many.program.kernels[0]) == 3
    assert one.summary["verified"] and many.summary["verified"]
    assert many.summary["checks"]["interpreter"] is True
    assert many.summary["checks"]["numpy"] is True
    assert many.summary["kernel_cycles"] < one.summary["kernel_cycles"]
    loads = [c for c in many.program.schedule if c.op == "load"]
    tiles = many.program.tiling.tiles
    assert [c.size_bytes for c in loads] == [
        3 * tiles[c.tile].images[c.arg].nbytes(2) for c in loads]


@pytest.mark.parametrize("workload,params,mem", [
    ("spmspm", {"shape": "48,40,48", "density": 0.1, "order": "ikj"}, 256),
    # j is contracted and split: a row block's calls are partial sums
    ("spmv", {"shape": "12,200", "density": 0.3, "seed": 1, "formats": "B:ds c:d",
              "order": "ij"}, 128)])
def test_output_copies_check_covers_every_tile_call(onyx, workload, params, mem):
    # simulator.checks: each tile call's copy parts against numpy's rows of its output
    # block (partial calls: their parts summed at their own rows against the block); a
    # wrong value in any call's part, or a row lost from a part, fails it
    from simulator.checks import _tile_copies_match, check_outputs
    from simulator.controller import simulate

    chip = dataclasses.replace(
        onyx, mem_tile=dataclasses.replace(onyx.mem_tile, size_bytes=mem),
        controller=dataclasses.replace(onyx.controller, tile_pipelining=True))
    layer = get_workload(workload).make(params)
    program = compile_layer(layer, _with(chip, unroll=2, unroll_deal="positions"))
    result = simulate(program, chip)
    ref = np.asarray(layer.reference())
    checks = check_outputs(result, program, ref)
    assert checks["output_copies"] is True and checks["numpy"] is True
    parts = result.kernel_runs[program.kernels[0].name].tile_parts
    assert len(parts) == len(program.tiling.tiles) > 1
    assert any(t.partial for t in program.tiling.tiles) == (workload == "spmv")
    name = program.tiling.output
    decl = program.kernels[0].tensor(name)
    last = max(t for t, p in enumerate(parts) if all(len(part.vals) for part in p[name]))
    vals = parts[last][name][1].vals
    vals[-1] += 1                                  # copy 1 of the call wrote a wrong value
    assert not _tile_copies_match(decl, program.tiling, parts, ref)
    vals[-1] -= 1
    assert _tile_copies_match(decl, program.tiling, parts, ref)
    parts[last][name][0] = _drop_first_row(parts[last][name][0])     # copy 0 lost a row
    assert not _tile_copies_match(decl, program.tiling, parts, ref)


def _drop_first_row(part: FiberTree) -> FiberTree:
    """``part`` without its first outer coordinate (and that row's subtree)."""
    coords, vals = part.coo()
    keep = coords[:, part.mode_order[0]] != part.levels[0].crd[0]
    return FiberTree.from_coo(part.name, part.shape, coords[keep], vals[keep], part.formats,
                              tuple(part.mode_order))


def test_the_old_arbiter_deadlock_case_runs():
    # SpM*SpM 512^3 @0.5% (seed 0) at 16 copies deadlocked when an arbiter tree merged the
    # copies into one tail in a fixed order (the vector reducer's rows filled one copy's
    # bounded arbiter FIFOs while the merge waited for another, whose input waited behind
    # the first); sieve.run then retried `auto` with half the copies. With each copy writing
    # its own part (the output address generator) nothing couples the copies at the output.
    # Each copy now has its own three writers (9 MEM tiles a copy), so Onyx's 128 MEM tiles
    # hold 14 copies: 16 are refused there, and run on an 18-row array (144 MEM tiles), on
    # which the arbiter merge deadlocked too.
    from sieve.api import run as sieve_run

    params = {"shape": "512,512,512", "density": "0.005", "seed": "0", "order": "ikj"}
    with pytest.raises(CompileError, match="mem_tiles allow 14"):
        sieve_run("onyx", "spmspm", params=params, overrides=["compiler.unroll=16"])
    rep = sieve_run("onyx", "spmspm", params=params,
                    overrides=["compiler.unroll=16", "array.rows=18"])
    assert rep.summary["verified"] is True
    assert rep.summary["checks"]["numpy"] is True
    assert rep.summary["unroll"]["copies"] == 16 == copies_of(rep.program.kernels[0])
    assert rep.summary["unroll"]["binds"] == "mem_tiles"
