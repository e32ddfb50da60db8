"""The burst engine reproduces the cycle engine exactly.

1. Per opcode: the numpy firing table equals the behaviour's recorded step trace (peeks,
   pops, emits, outputs, actions) on hand-written streams covering empty fibers, N tokens,
   nesting and zero skipping.
2. Per kernel: a seeded random suite of compiled, placed and routed kernels run by both
   engines gives identical total cycles, per-unit counters (busy cycles, first and last cycle,
   tokens, actions), per-channel counts and written memory, or both report a deadlock.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from compiler.pipeline import compile_layer
from isa.errors import SimulationError
from isa.fibertree import FiberTree
from isa.interp import Memory, trace_unit
from isa.ops import Opcode
from isa.program import Node
from isa.tokens import tokens
from simulator.config import load_chip
from simulator.engine_burst import FIRE, Stream, fire_kernel, run_burst
from simulator.engine_cycle import run_kernel_cycle
from workloads import get_workload

ROOT = Path(__file__).resolve().parent.parent
PAPER_MATRIX = np.array([[0, 1, 0, 0], [2, 0, 3, 0], [0, 0, 0, 0], [0, 4, 0, 5]])


# a bitmap level over 40 columns (three 16-bit mask words per fiber): row 1 empty, zeros
# stored explicitly at (0, 3) and (2, 18)
WIDE = FiberTree.from_coo("W", (3, 40), np.array([[0, 1], [0, 3], [0, 35], [2, 17], [2, 18],
                                                  [2, 39]]), np.array([4, 0, 5, 6, 0, 7]),
                          ("dense", "bitmap"))


def _mem() -> Memory:
    return Memory({"B": FiberTree.from_dense("B", PAPER_MATRIX, ("compressed", "compressed")),
                   "D": FiberTree.from_dense("D", PAPER_MATRIX, ("dense", "dense")),
                   "W": WIDE,
                   "V": FiberTree.from_coo("V", (40,), np.array([[1], [17], [35], [39]]),
                                           np.array([1, 2, 3, 4]), ("bitmap",))})


UNIT_CASES = [
    ("scan", Opcode.SCAN, dict(tensor="B", level=0, fmt="compressed", root=True), {}),
    ("scan", Opcode.SCAN, dict(tensor="B", level=1, fmt="compressed"),
     dict(ref="S0 0 N 1 S0 2 S1 S1 D")),
    ("scan", Opcode.SCAN, dict(tensor="D", level=1, fmt="dense", dim=4, skip_zeros=True),
     dict(ref="0 3 S0 1 S1 D")),
    ("scan", Opcode.SCAN, dict(tensor="D", level=0, fmt="dense", dim=4, root=True), {}),
    ("scan", Opcode.SCAN, dict(tensor="W", level=1, fmt="bitmap", dim=40),
     dict(ref="0 1 S0 2 N S1 S1 D")),
    ("scan", Opcode.SCAN, dict(tensor="W", level=1, fmt="bitmap", dim=40, skip_zeros=True),
     dict(ref="2 0 S0 1 D")),
    ("repsig", Opcode.REPSIG, {}, dict(crd="1 2 S0 S1 D")),
    ("repeat", Opcode.REPEAT, {}, dict(ref="1 2 S0 S0 3 S1 D",
                                       repsig="R R S0 R S1 S1 R S2 D")),
    ("repeat", Opcode.REPEAT, dict(root=True), dict(repsig="R R R S0 D")),
    ("repeat", Opcode.REPEAT, {}, dict(ref="N 4 S0 D", repsig="R S0 R R S1 D")),
    ("intersect", Opcode.INTERSECT, {},
     dict(crd_a="2 4 7 8 10 S0 S0 3 S1 D", ref_a="0 1 2 3 4 S0 S0 5 S1 D",
          crd_b="1 4 8 9 S0 2 S0 S1 D", ref_b="0 1 2 3 S0 4 S0 S1 D")),
    ("union", Opcode.UNION, {},
     dict(crd_a="2 4 7 8 10 S0 S0 3 S1 D", ref_a="0 1 2 3 4 S0 S0 5 S1 D",
          crd_b="1 4 8 9 S0 2 S0 S1 D", ref_b="0 1 2 3 S0 4 S0 S1 D")),
    ("array", Opcode.ARRAY, dict(tensor="B"), dict(ref="0 4 N S0 1 2 S1 D")),
    ("alu", Opcode.ALU, dict(op="mul", zero_a="gate", zero_b="none"),
     dict(a="5 0 N 0 S0 D", b="2 3 0 0 S0 D")),
    ("alu", Opcode.ALU, dict(op="add"), dict(a="5 N S0 D", b="2 3 S0 D")),
    ("alu", Opcode.ALU, dict(op="relu"), dict(a="-2 3 S0 D")),
    ("reduce", Opcode.REDUCE, {}, dict(val="S0 6 7 S0 8 9 10 S1 S2 D")),
    ("reduce", Opcode.REDUCE, dict(drop_empty=True), dict(val="S0 6 7 S0 8 9 10 S1 S2 D")),
    ("vreduce", Opcode.VREDUCE, {}, dict(crd="3 1 S0 1 2 S1 S2 D", val="1 2 S0 3 4 S1 S2 D")),
    ("vreduce", Opcode.VREDUCE, {}, dict(crd="S0 S1 4 0 S0 4 S1 7 S1 S2 D",
                                         val="S0 S1 1 N S0 2 S1 3 S1 S2 D")),
    ("vreduce", Opcode.VREDUCE, {}, dict(crd="1 2 3 4 5 S1 6 S1 S1 S2 D",
                                         val="1 2 3 4 5 S1 6 S1 S1 S2 D")),
    ("vreduce", Opcode.VREDUCE, {}, dict(crd="D", val="D")),
    ("crddrop", Opcode.CRDDROP, {}, dict(outer="1 2 3 S0 4 S1 S1 D",
                                         inner="5 6 S0 7 S0 8 S1 S2 S2 D")),
    ("crddrop", Opcode.CRDDROP, {}, dict(outer="1 S0 2 S1 D", inner="5 S1 S2 D")),
    ("crdhold", Opcode.CRDHOLD, {}, dict(outer="0 1 2 S0 S0 D", inner="5 6 S0 S0 7 S1 S1 D")),
    ("write_crd", Opcode.WRITE_CRD, dict(tensor="X", level=1),
     dict(crd="1 S0 0 2 S0 1 3 S1 D")),
    ("write_val", Opcode.WRITE_VAL, dict(tensor="X"), dict(val="1 S0 2 3 S0 4 5 S1 D")),
    ("locate", Opcode.LOCATE, dict(tensor="D", level=1, dim=4),
     dict(crd="1 3 S0 S1 2 S2 D", ref="0 1 S0 2 S1 D")),
    ("locate", Opcode.LOCATE, dict(tensor="D", level=1, dim=4),
     dict(crd="1 S1 S1 2 S0 S1 S2 D", ref="3 S0 S0 1 0 S0 S1 D")),
    ("locate", Opcode.LOCATE, dict(tensor="D", level=1, dim=4), dict(crd="1 S0 2 S0 D",
                                                                   ref="N 3 D")),
    ("locate", Opcode.LOCATE, dict(tensor="D", level=0, dim=4, root=True), dict(crd="0 3 S0 D")),
    # bitmap levels: bitvector scanner, word-wide joiners, bitmap locator and writer
    ("scan_bv", Opcode.SCAN_BV, dict(tensor="W", level=1, dim=40),
     dict(ref="0 1 S0 2 N S1 S1 D")),
    ("scan_bv", Opcode.SCAN_BV, dict(tensor="V", level=0, dim=40, root=True), {}),
    ("bv_intersect", Opcode.BV_INTERSECT, dict(dim=40),
     dict(bv_a="10 0 3 S0 S0 65535 S1 D", ref_a="0 2 2 S0 S0 5 S1 D",
          bv_b="6 0 0 S0 S0 257 S1 D", ref_b="0 2 N S0 S0 3 S1 D")),
    ("bv_union", Opcode.BV_UNION, dict(dim=40),
     dict(bv_a="10 0 3 S0 S0 65535 S1 D", ref_a="0 2 2 S0 S0 5 S1 D",
          bv_b="6 0 0 S0 S0 257 S1 D", ref_b="0 2 N S0 S0 3 S1 D")),
    ("locate_bv", Opcode.LOCATE_BV, dict(tensor="W", level=1, dim=40),
     dict(crd="1 3 35 S0 S1 2 17 18 S2 D", ref="0 1 S0 2 S1 D",
          carry="5 6 7 S0 S1 8 9 10 S2 D")),
    ("locate_bv", Opcode.LOCATE_BV, dict(tensor="W", level=1, dim=40),
     dict(crd="1 S1 S1 17 39 S0 S1 S2 D", ref="0 S0 S0 2 0 S0 S1 D",
          carry="5 S1 S1 6 7 S0 S1 S2 D")),
    ("locate_bv", Opcode.LOCATE_BV, dict(tensor="W", level=1, dim=40),
     dict(crd="1 S0 17 S0 D", ref="N 2 D", carry="4 S0 5 S0 D")),
    ("locate_bv", Opcode.LOCATE_BV, dict(tensor="V", level=0, dim=40, root=True),
     dict(crd="0 1 17 35 39 S0 D", carry="3 4 5 6 7 S0 D")),
    ("write_bv", Opcode.WRITE_BV, dict(tensor="X", level=1, dim=40),
     dict(crd="1 S0 0 2 35 S0 S1 17 S2 D")),
    ("write_bv", Opcode.WRITE_BV, dict(tensor="X", level=0, dim=4), dict(crd="D")),
    # issue 11's fifth pass (run-built scanner, dropper, joiner pops, ALU and array without N,
    # shared-deal filters): empty streams, empty fibers before absorbed and lone stops,
    # one-token fibers, a joiner side empty in a segment, every zero-policy mix
    ("scan", Opcode.SCAN, dict(tensor="B", level=1, fmt="compressed"), dict(ref="D")),
    ("scan", Opcode.SCAN, dict(tensor="B", level=1, fmt="compressed"),
     dict(ref="2 S0 S1 0 S0 N 1 S2 D")),
    ("scan", Opcode.SCAN, dict(tensor="B", level=1, fmt="compressed"),
     dict(ref="N S0 S1 N 1 D")),
    ("scan", Opcode.SCAN, dict(tensor="D", level=1, fmt="dense", dim=4),
     dict(ref="0 N S0 3 S1 S1 D")),
    ("crddrop", Opcode.CRDDROP, {}, dict(outer="D", inner="D")),
    ("crddrop", Opcode.CRDDROP, {}, dict(outer="1 2 S0 S1 D", inner="S0 S1 S2 D")),
    ("crddrop", Opcode.CRDDROP, {}, dict(outer="1 2 S0 3 S1 D", inner="5 S0 6 7 S1 8 S2 D")),
    ("intersect", Opcode.INTERSECT, {}, dict(crd_a="D", ref_a="D", crd_b="D", ref_b="D")),
    ("intersect", Opcode.INTERSECT, {},
     dict(crd_a="1 5 S0 2 3 S1 D", ref_a="0 1 S0 2 3 S1 D",
          crd_b="S0 3 S1 D", ref_b="S0 0 S1 D")),
    ("union", Opcode.UNION, {},
     dict(crd_a="1 5 S0 2 3 S1 D", ref_a="0 1 S0 2 3 S1 D",
          crd_b="S0 3 S1 D", ref_b="S0 0 S1 D")),
    ("alu", Opcode.ALU, dict(op="mul", zero_a="none", zero_b="gate"),
     dict(a="5 0 N 0 S0 D", b="2 3 0 0 S0 D")),
    ("alu", Opcode.ALU, dict(op="mul", zero_a="none", zero_b="none"),
     dict(a="5 0 3 0 S0 D", b="2 3 0 0 S0 D")),
    ("alu", Opcode.ALU, dict(op="mul", zero_a="skip", zero_b="skip"),
     dict(a="5 0 3 S0 S1 D", b="2 3 0 S0 S1 D")),
    ("array", Opcode.ARRAY, dict(tensor="B"), dict(ref="D")),
    ("array", Opcode.ARRAY, dict(tensor="B"), dict(ref="4 S0 S1 0 S1 D")),
    ("filter", Opcode.FILTER, dict(copy=1, copies=3), {"in": "0 1 2 3 4 S0 D"}),
    ("filter", Opcode.FILTER, dict(copy=0, copies=2), {"in": "S0 D"}),
]


@pytest.mark.parametrize("name,op,attrs,streams", UNIT_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(UNIT_CASES)])
def test_firing_table_matches_the_behaviour(name, op, attrs, streams):
    assert_firing_matches(Node.make("u", op, **attrs), streams, _mem)


def assert_firing_matches(node, streams, mem=lambda: None):
    """A unit's numpy firing table equals its ISA behaviour run step by step: step count,
    outputs, emit steps, peeks in order, pops and actions (``mem`` makes each side's memory)."""
    toks = {p: tokens(s) for p, s in streams.items()}
    f = FIRE[node.op](node, {p: Stream.encode(t) for p, t in toks.items()}, mem())
    assert_table_matches(node, f, toks, mem())


def assert_table_matches(node, f, toks, mem):
    """Firing table ``f`` of ``node`` on input tokens ``toks`` equals the behaviour's step
    trace on them (``mem``: the behaviour's memory)."""
    steps, outs, acts = trace_unit(node, toks, mem)
    assert f.n == len(steps)
    for port, stream in outs.items():
        assert f.outs[port].decode() == stream
        assert f.emits[port].tolist() == [i for i, s in enumerate(steps) if port in s.emits]
    for port in toks:
        ps, pt = f.peeks[port]
        assert list(zip(ps.tolist(), pt.tolist())) == [
            (i, s.peeks[port]) for i, s in enumerate(steps) if port in s.peeks]
        assert f.pops[port].tolist() == [i for i, s in enumerate(steps) for _ in
                                         range(s.pops.count(port))]
        if port in f.dense:     # the timing reads the first peeks from the pops
            pops = f.pops[port].tolist()
            first = {}
            for step, tok in zip(ps.tolist(), pt.tolist()):
                first.setdefault(tok, step)
            assert first == {k: pops[k - 1] + 1 if k else 0 for k in range(len(pops))}
    assert f.dense <= set(toks)
    assert {k: v for k, v in f.acts.items() if v} == {k: v for k, v in acts.items() if v}


def test_copies_filters_share_one_stream():
    """An unrolled kernel's stream filters read one stream object; the first derives each
    token's copy on the stream's memo and every copy's filter still equals its behaviour."""
    toks = tokens("3 N 5 6 7 8 S0 D")
    shared = Stream.encode(toks)
    for copy in (2, 0, 1, 3):
        node = Node.make("f", Opcode.FILTER, copy=copy, copies=4)
        steps, outs, _ = trace_unit(node, {"in": toks}, None)
        f = FIRE[Opcode.FILTER](node, {"in": shared}, None)
        assert f.n == len(steps)
        assert f.outs["out"].decode() == outs["out"]
        assert f.emits["out"].tolist() == [i for i, s in enumerate(steps) if "out" in s.emits]
    assert list(shared.memo) == [("deal", 4)]


# unrolled kernels whose copies of a unit are fired as one (fire_kernel's roles): more
# copies than rows (copies dealt only S0 D), dense levels, unions, tensor kernels
COPIES = [
    ("spmspm", {"shape": "20,16,12", "density": 0.1}, 6),
    ("spmspm", {"shape": "5,10,8", "density": 0.3, "empty_rows": 0.6, "seed": 3,
                "formats": "B:ds C:ss"}, 4),
    ("spmspm", {"shape": "16,16,16", "density": 0.05, "formats": "B:ds C:ds"}, 4),
    ("elemadd", {"shape": "24,20", "density": 0.2}, 4),
    ("elemmul", {"shape": "24,20", "density": 0.3, "formats": "B:dd"}, 3),
    ("mttkrp", {}, 3),
    ("sddmm", {}, 3),
]


@pytest.mark.parametrize("workload,params,copies", COPIES)
def test_copies_fired_as_one_match_their_behaviour(workload, params, copies):
    """Every unit of an unrolled kernel, its role's copies fired as one on concatenated
    streams and split back, has the firing table its behaviour gives on its own inputs."""
    chip = load_chip(ROOT / "configs/chips/onyx.yaml", [f"compiler.unroll={copies}"])
    program = compile_layer(get_workload(workload).make(params), chip)
    kernel, images = program.kernels[0], each_call(program)[0]
    firings, _, order = fire_kernel(kernel, images)
    # the copies were fired as one: a role's outputs are views of one array
    bases: dict[int, int] = {}
    for f in firings.values():
        for s in f.outs.values():
            if s.data.base is not None:
                bases[id(s.data.base)] = bases.get(id(s.data.base), 0) + 1
    assert sum(1 for v in bases.values() if v == copies) >= 3
    for node in order:
        toks = {e.dst_port: firings[e.src].outs[e.src_port].decode() for e in kernel.edges
                if e.dst == node.id}
        assert_table_matches(node, firings[node.id], toks, Memory(images))


@pytest.mark.parametrize("seed", range(0, 220, 11))
def test_every_unit_matches_its_behaviour_on_seeded_kernels(small_chip, seed):
    """Every unit of a seeded random-suite kernel (formats, densities, empty rows, zero
    policies as ``make_case`` draws them) has the firing table its behaviour gives on its
    inputs: the opcode functions' fast paths (run-built scanner and dropper outputs, the
    joiner's pops by runs, the reducer's slots by runs) on compiled kernels' streams."""
    case = make_case(seed)
    chip = configure(small_chip, case)
    program = compile_layer(get_workload(case["workload"]).make(case["params"]), chip)
    kernel, images = program.kernels[0], each_call(program)[0]
    firings, _, order = fire_kernel(kernel, images)
    for node in order:
        toks = {e.dst_port: firings[e.src].outs[e.src_port].decode() for e in kernel.edges
                if e.dst == node.id}
        assert_table_matches(node, firings[node.id], toks, Memory(images))


# ------------------------------------------------------------------ the random suite
FORMATS = {
    "spmv": [{"B": "ds", "c": "s"}, {"B": "ss", "c": "s"}, {"B": "dd", "c": "d"},
             {"B": "sd", "c": "s"}, {"B": "db", "c": "b"}],
    "spmspm-ikj": [{"B": "ss", "C": "ss"}, {"B": "ds", "C": "ss"}, {"B": "dd", "C": "ss"},
                   {"B": "ss", "C": "sd"}, {"B": "sb", "C": "bb"}],
    "spmspm-ijk": [{"B": "ss", "C": "ss:1,0"}, {"B": "ds", "C": "ds:1,0"},
                   {"B": "dd", "C": "ss:1,0"}],
    "elemadd": [{"B": "ss", "C": "ss"}, {"B": "ds", "C": "ss"}, {"B": "dd", "C": "sd"},
                {"B": "sb", "C": "bs"}],
    "elemmul": [{"B": "ss", "C": "ss"}, {"B": "ds", "C": "dd"}, {"B": "sd", "C": "ss"},
                {"B": "dd", "C": "dd"}, {"B": "ss", "C": "sd"}, {"B": "bb", "C": "db"}],
}
DENSITIES = [0.0, 0.01, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.0]


def make_case(seed: int) -> dict:
    rng = np.random.default_rng(1000 + seed)
    kind = str(rng.choice(list(FORMATS)))
    workload, _, order = kind.partition("-")
    rank = 3 if workload == "spmspm" else 2
    shape = ",".join(str(int(x)) for x in rng.integers(1, 17 if rank == 3 else 33, size=rank))
    fmts = FORMATS[kind][int(rng.integers(len(FORMATS[kind])))]
    params = {"shape": shape, "density": float(rng.choice(DENSITIES)), "seed": seed,
              "empty_rows": float(rng.choice([0.0, 0.0, 0.4])),
              "formats": " ".join(f"{k}:{v}" for k, v in fmts.items())}
    if order:
        params["order"] = order
    return {
        "workload": workload, "params": params,
        "depth": int(rng.integers(1, 9)), "hop": int(rng.integers(1, 4)),
        "policy": (str(rng.choice(["skip", "gate", "none"])),
                   str(rng.choice(["skip", "gate", "none"]))),
        "balance": bool(rng.random() < 0.6),
        "locate": bool(rng.random() < 0.7),
    }


def configure(chip, case):
    return dataclasses.replace(
        chip,
        pe=dataclasses.replace(chip.pe, fifo_depth=case["depth"], zero_policy=dataclasses.replace(
            chip.pe.zero_policy, a=case["policy"][0], b=case["policy"][1])),
        interconnect=dataclasses.replace(chip.interconnect, fifo_depth=case["depth"],
                                         hop_latency_cycles=case["hop"]),
        compiler=dataclasses.replace(chip.compiler, balance_fifos=case["balance"],
                                     locate=case.get("locate", True)))


def assert_same(kernel, images, chip, window=None):
    """Cycle and burst agree exactly (cycles, every unit's and channel's stats, the written
    memory), or both report a deadlock. ``window``: the burst solver's window, if not its
    default."""
    kw = {} if window is None else {"window": window}
    try:
        a = run_kernel_cycle(kernel, images, chip)
    except SimulationError as exc:
        assert "deadlock" in str(exc)
        with pytest.raises(SimulationError, match="deadlock"):
            run_burst(kernel, images, chip, **kw)
        return "deadlock"
    b = run_burst(kernel, images, chip, **kw)
    assert b.cycles == a.cycles
    for uid in a.units:
        assert b.units[uid] == a.units[uid], uid
    assert b.channels == a.channels
    assert b.memory.written == a.memory.written
    return a.cycles


def each_call(program, limit: int = 3) -> list:
    """The inputs a program's kernel runs on: the whole images, or (a tiled kernel) the
    images of its first ``limit`` tile calls."""
    if program.tiling is None:
        return [program.images]
    return [t.images for t in program.tiling.tiles[:limit]]


@pytest.mark.parametrize("seed", range(220))
def test_burst_equals_cycle(small_chip, seed):
    case = make_case(seed)
    chip = configure(small_chip, case)
    layer = get_workload(case["workload"]).make(case["params"])
    program = compile_layer(layer, chip)
    assert_same(program.kernels[0], program.images, chip)


def test_suite_covers_the_space():
    cases = [make_case(s) for s in range(220)]
    assert {c["workload"] for c in cases} == {"spmv", "spmspm", "elemadd", "elemmul"}
    assert {c["params"].get("order") for c in cases} >= {"ikj", "ijk"}
    assert {c["depth"] for c in cases} == set(range(1, 9))
    assert {c["hop"] for c in cases} == {1, 2, 3}
    assert {c["params"]["density"] for c in cases} == set(DENSITIES)
    assert any(c["params"]["empty_rows"] for c in cases)
    assert {p for c in cases for p in c["policy"]} == {"skip", "gate", "none"}


DENSE = [0.08, 0.15, 0.3, 0.5]


def make_dense_case(seed: int) -> dict:
    """SpM*SpM, dense and unbalanced: the back-pressure loops that stall the whole pipeline
    once per row (the vector reducer's flush) or around reconvergent paths, many times per
    run, so the burst solver's windows each hold several stalls."""
    rng = np.random.default_rng(5000 + seed)
    shape = ",".join(str(int(x)) for x in rng.integers(12, 33, size=3))
    return {
        "workload": "spmspm",
        "params": {"shape": shape, "density": DENSE[seed % len(DENSE)], "seed": seed,
                   "order": str(rng.choice(["ikj", "ijk"]))},
        "depth": int(rng.integers(1, 5)), "hop": int(rng.integers(1, 3)),
        "policy": ("skip", "skip"), "balance": bool(seed % 2),
        "window": int(rng.choice([64, 512, 1 << 15, 1 << 17])),
    }


@pytest.mark.parametrize("seed", range(24))
def test_burst_equals_cycle_dense_and_unbalanced(small_chip, seed):
    case = make_dense_case(seed)
    chip = configure(small_chip, case)
    program = compile_layer(get_workload("spmspm").make(case["params"]), chip)
    assert_same(program.kernels[0], program.images, chip, window=case["window"])


def test_dense_suite_covers_the_space():
    cases = [make_dense_case(s) for s in range(24)]
    assert {c["params"]["density"] for c in cases} == set(DENSE)
    assert {c["balance"] for c in cases} == {True, False}
    assert {c["params"]["order"] for c in cases} == {"ikj", "ijk"}
    assert {c["window"] for c in cases} == {64, 512, 1 << 15, 1 << 17}


@pytest.mark.slow
@pytest.mark.parametrize("workload,params", [
    ("spmspm", {"shape": "64,64,64", "density": 0.1, "order": "ikj"}),
    ("spmspm", {"shape": "48,40,48", "density": 0.1, "order": "ijk"}),
    ("spmspm", {"shape": "128,128,128", "density": 0.05}),
    ("spmv", {"shape": "300,300", "density": 0.05}),
    ("elemadd", {"shape": "200,200", "density": 0.2}),
    ("elemmul", {"shape": "200,200", "density": 0.3, "formats": "B:dd"}),
    ("elemmul", {"shape": "200,200", "density": 0.3, "formats": "B:bb C:bb X:bb"}),
    ("spmspm", {"shape": "64,64,64", "density": 0.1, "order": "ikj",
                "formats": "B:ss C:bb X:sb"}),
])
@pytest.mark.parametrize("depth", [2, 4])
def test_burst_equals_cycle_larger(onyx_chip, workload, params, depth):
    chip = dataclasses.replace(onyx_chip, pe=dataclasses.replace(onyx_chip.pe, fifo_depth=depth))
    program = compile_layer(get_workload(workload).make(params), chip)
    for images in each_call(program):
        assert_same(program.kernels[0], images, chip)
