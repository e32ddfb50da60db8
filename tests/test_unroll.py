"""Unrolling (compiler/unroll.py): stream filters, arbiters and N copies of a kernel's graph.

1. The two primitives token by token (paper notation), their firing tables against the
   behaviours' step traces, and their errors on malformed streams.
2. An unrolled kernel computes what the one-copy kernel computes (interpreter) on the
   catalog kernels; kernels whose outer index cannot be dealt are refused with the reason.
3. A seeded random suite of unrolled kernels (random kernels, formats, densities, empty
   rows, FIFO depths, hop latencies, factors 2..7) run by both engines: identical cycles and
   counters (burst == cycle exactly), with a count of the cases that unrolled.
4. ``compiler.unroll``: config validation, forced factors, ``auto``'s choice and the
   replicated loads in the schedule.
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
from isa.errors import CompileError, ConfigError, IsaError, SimulationError
from isa.interp import assemble_output, run_kernel, run_unit
from isa.ops import Opcode
from isa.program import Node
from isa.tokens import tokens
from isa.verify import verify_kernel
from simulator.config import load_chip
from simulator.engine_burst import FIRE, Stream
from tests.test_burst import assert_firing_matches, assert_same, configure, make_case
from workloads import get_workload


def _filter(copy: int, copies: int, kind: str = "crd") -> Node:
    return Node.make("f", Opcode.FILTER, kind=kind, copy=copy, copies=copies)


def _arb(depth: int, ta: int = 1, tb: int = 1) -> Node:
    return Node.make("a", Opcode.ARBITER, depth=depth, take_a=ta, take_b=tb)


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


# ------------------------------------------------------------------ 2. unrolled kernels
@pytest.fixture(scope="module")
def onyx():
    return load_chip("onyx")


CATALOG = [
    ("spmspm", {"shape": "24,20,28", "density": 0.2, "order": "ikj"}),
    ("spmspm", {"shape": "24,20,28", "density": 0.2, "order": "ijk"}),
    ("elemadd", {"shape": "30,20", "density": 0.2}),
    ("elemmul", {"shape": "30,20", "density": 0.4, "formats": "B:dd C:ss"}),
    ("sddmm", {"shape": "16,12,10", "density": 0.3}),
    ("ttv", {"shape": "10,8,12", "density": 0.2, "order": "ijk"}),
    ("ttm", {"shape": "8,6,7,5", "density": 0.2, "order": "ijlk"}),
    ("mttkrp", {"shape": "8,4,6,5", "density": 0.2}),
    ("elemadd3", {"shape": "20,16", "density": 0.2}),
    ("elemmul", {"shape": "20,40", "density": 0.3, "formats": "B:bb C:bb X:sb"}),
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
    assert ops.count(Opcode.ARBITER) == (copies - 1) * len(shape.merged)
    assert ops.count(Opcode.SCAN) == copies * [n.op for n in kernel.nodes].count(Opcode.SCAN)
    one, many = run_kernel(kernel, images), run_kernel(unrolled, images)
    for decl in kernel.tensors:
        if decl.is_output:
            a, b = assemble_output(decl, one.memory), assemble_output(decl, many.memory)
            assert np.array_equal(a.to_dense(), b.to_dense())
            assert a.levels[0].crd.tolist() == b.levels[0].crd.tolist()


@pytest.mark.parametrize("workload,params,why", [
    ("spmv", {"shape": "20,20", "density": 0.2, "order": "ij"}, "outer level"),
    ("spmv", {"shape": "20,20", "density": 0.2, "order": "ji", "formats": "B:ss:1,0"},
     "outer level"),
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
    """The case's unrolled, placed and routed kernel (None when its kernel cannot be dealt
    or has fewer outer positions than 2)."""
    chip = configure(onyx, case)
    layer = get_workload(case["workload"]).make(case["params"])
    kernel, images = lower_layer(layer, chip)
    shape = kernel_shape(kernel)
    if shape.why_not is not None:
        return None, chip, images, 0
    copies = min(case["copies"], outer_positions(kernel, shape, images))
    if copies < 2:
        return None, chip, images, copies
    return place_route_balance(unroll_kernel(kernel, copies, shape), chip), chip, images, copies


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
    assert len(done) >= 36
    assert {c["workload"] for c, _, _ in done} == {"spmspm", "elemadd", "elemmul"}
    assert {n for _, _, n in done} >= {2, 3, 4, 5, 7}
    arbiters = [n.a for _, k, _ in done for n in k.nodes if n.op is Opcode.ARBITER]
    assert {a["depth"] for a in arbiters} == {1}     # 2-D outputs: fibers of the outer fiber
    assert any(a["take_a"] != a["take_b"] for a in arbiters)   # odd factors: unequal rounds
    assert any(c["params"]["empty_rows"] for c, _, _ in done)
    assert {c["hop"] for c, _, _ in done} == {1, 2, 3}
    assert len({c["depth"] for c, _, _ in done}) >= 6


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
    assert limits["glb_links"] == onyx.glb.array_links_per_direction
    with pytest.raises(CompileError, match="exceeds"):
        compile_layer(layer, _with(onyx, unroll=limits["mem_tiles"] + 1))


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
])
def test_burst_equals_cycle_unrolled_tensor_kernels(onyx, workload, params, copies):
    # 3-D outputs merge depth-2 streams; located, three-operand and bitmap kernels (word-wide
    # joins, bitmap locates, a bitmap output level) deal too
    kernel, images = lower_layer(get_workload(workload).make(params), onyx)
    unrolled = place_route_balance(unroll_kernel(kernel, copies), onyx)
    assert copies_of(unrolled) == copies
    assert assert_same(unrolled, images, onyx) != "deadlock"


def test_layer_lanes_come_from_the_unroll_planner(onyx):
    from compiler.layers import plan_layer
    from compiler.unroll import lane_limits

    plan = plan_layer(onyx)
    limits = lane_limits(plan.program.kernels[0], onyx, plan.region.array.cols)
    assert plan.lanes == min(limits.values()) == limits["bands"] == 8
    assert copies_of(plan.program.kernels[0]) == 1      # a lane is one copy of the template


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
                             "limits": {}}
    assert one["kernel_cycles"] > s["kernel_cycles"]


def test_unrolled_program_round_trips_through_asm_and_bitstream(onyx):
    from isa.asm import parse_program, print_program
    from isa.bitstream import config_bits, decode, encode

    layer = get_workload("spmspm").make({"shape": "30,20,20", "density": 0.2, "order": "ikj"})
    program = compile_layer(layer, _with(onyx, unroll=3))
    kernel = program.kernels[0]
    assert {Opcode.FILTER, Opcode.ARBITER} <= {n.op for n in kernel.nodes}
    text = print_program(program)
    assert "= filter kind=" in text and "= arbiter kind=" in text
    assert parse_program(text).kernels[0] == kernel
    assert decode(encode(kernel)) == kernel
    one = compile_layer(layer, _with(onyx, unroll=1)).kernels[0]
    assert config_bits(kernel) > 2 * config_bits(one)      # three copies to configure


def test_a_tiled_kernel_runs_its_tile_calls_unrolled():
    # compiler.tiling cuts levels larger than a MEM tile (256 bytes here) into tile calls of
    # one configured graph; that graph is unrolled and every call runs the copies
    from sieve.api import run

    params = {"shape": "48,40,48", "density": 0.1, "order": "ikj"}
    small = ["mem_tile.size_bytes=256"]
    one = run("onyx", "spmspm", params=params, overrides=small + ["compiler.unroll=1"])
    many = run("onyx", "spmspm", params=params, overrides=small + ["compiler.unroll=3"])
    assert many.program.tiling is not None and len(many.program.tiling.tiles) > 1
    assert copies_of(many.program.kernels[0]) == 3
    assert one.summary["verified"] and many.summary["verified"]
    assert many.summary["kernel_cycles"] < one.summary["kernel_cycles"]
    loads = [c for c in many.program.schedule if c.op == "load"]
    tiles = many.program.tiling.tiles
    assert [c.size_bytes for c in loads] == [
        3 * tiles[c.tile].images[c.arg].nbytes(2) for c in loads]


def test_auto_unroll_that_deadlocks_falls_back_to_fewer_copies():
    # SpM*SpM 512^3 @0.5% (seed 0): 16 copies deadlock at the fixed-order arbiter merge (the
    # vector reducer's rows fill the bounded arbiter FIFOs of one copy while the merge waits for
    # another); `auto` retries with half the copies and says so, a forced 16 is the user's error
    from isa.errors import SimulationError
    from sieve.api import run as sieve_run

    params = {"shape": "512,512,512", "density": "0.005", "seed": "0", "order": "ikj"}
    with pytest.raises(SimulationError, match="deadlock"):
        sieve_run("onyx", "spmspm", params=params, overrides=["compiler.unroll=16"])
    rep = sieve_run("onyx", "spmspm", params=params)
    u = rep.summary["unroll"]
    assert rep.summary["verified"] is True
    assert u["requested"] == "auto" and 1 <= u["copies"] < 16
    assert u["why"].startswith("auto: 16 copies deadlocked")
