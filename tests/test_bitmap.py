"""Bitmap levels: SAM's bitvector level (a mask per fiber, references from popcounts).

A bitmap level's fiber is a mask of ``size`` bits in 16-bit words; a coordinate's position is
the count of set bits before its fiber plus those below it in the mask. The scanner walks a
fiber word by word: a step per set bit, a step per all-zero word.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import sieve
from compiler.pipeline import compile_layer, lower_layer
from isa.errors import IsaError
from isa.fibertree import FiberTree, parse_formats
from isa.interp import Memory, run_unit
from isa.ops import Opcode
from isa.program import Node
from isa.tokens import format_tokens, tokens
from simulator.engine_cycle import run_streams
from tests.test_burst import assert_same, configure
from workloads import get_workload

# The 4x4 matrix of SAM23 Fig. 2: [[0,1,0,0],[2,0,3,0],[0,0,0,0],[0,4,0,5]]
PAPER_MATRIX = np.array([[0, 1, 0, 0], [2, 0, 3, 0], [0, 0, 0, 0], [0, 4, 0, 5]])


def test_bitmap_level_streams_equal_the_compressed_ones():
    # [SAM23 section 3.2] j: crd 1 S0 0 2 S0 1 3 S1 D, ref 0 S0 1 2 S0 3 4 S1 D
    mem = Memory({"B": FiberTree.from_dense("B", PAPER_MATRIX, ("compressed", "bitmap"))})
    node = Node.make("u", Opcode.SCAN, tensor="B", level=1, fmt="bitmap", dim=4)
    outs, acts, steps = run_unit(node, {"ref": tokens("0 1 2 S0 D")}, mem)
    assert format_tokens(outs["crd"]) == "1 S0 0 2 S0 1 3 S1 D"
    assert format_tokens(outs["ref"]) == "0 S0 1 2 S0 3 4 S1 D"
    # 3 refs x (count read + stop) + 5 set bits + D; one 64-bit word of counts, one of masks
    assert steps == 12 and acts == {"sram_read_words": 2}


def test_storage_is_the_masks_and_the_counts():
    tree = FiberTree.from_dense("B", PAPER_MATRIX, ("dense", "bitmap"))
    assert parse_formats("db") == (("dense", "bitmap"), None)
    # 4 fibers x one 16-bit mask word + 5 counts (before each fiber, and the total)
    assert tree.levels[1].elements() == 4 + 5
    wide = FiberTree.from_dense("W", np.eye(3, 40, dtype=int), ("dense", "bitmap"))
    assert wide.levels[1].elements() == 3 * 3 + 4
    assert np.array_equal(wide.to_dense(), np.eye(3, 40, dtype=int))
    with pytest.raises(IsaError, match="b \\(bitmap\\)"):
        parse_formats("dx")


def test_bitmap_scanner_cycle_log(small_chip):
    # Row 0 of a 40-column bitmap level: bits 1, 3 and 35 over three mask words (word 1 is
    # all zero). Source puts 0 at 0 and D at 1 (L = 1). Steps: t=1 reads the count of fiber 0,
    # t=2 emits 1 (reads word 0), t=3 emits 3, t=4 reads and skips word 1, t=5 emits 35 (reads
    # word 2), t=6 S0, t=7 D. The sink pops each token the cycle after it was put.
    tree = FiberTree.from_coo("W", (3, 40), np.array([[0, 1], [0, 3], [0, 35]]),
                              np.array([4, 6, 5]), ("dense", "bitmap"))
    node = Node.make("u", Opcode.SCAN, tensor="W", level=1, fmt="bitmap", dim=40)
    logs, st = run_streams(node, {"ref": tokens("0 D")}, small_chip, {"W": tree})
    assert [(t, repr(tok)) for t, tok in logs["crd"]] == [
        (3, "1"), (4, "3"), (6, "35"), (7, "S0"), (8, "D")]
    assert [repr(tok) for _, tok in logs["ref"]] == ["0", "1", "2", "S0", "D"]
    assert (st.busy_cycles, st.first_cycle, st.last_cycle) == (7, 1, 7)
    # the count (1 word), then mask elements 0, 1, 2 (one 64-bit word)
    assert st.sram_read_words == 2


@pytest.mark.parametrize("workload,params", [
    ("spmspm", {"shape": "24,20,40", "density": 0.15, "formats": "B:sb C:bb"}),
    ("elemmul", {"shape": "30,50", "density": 0.2, "formats": "B:bb C:ss"}),
    ("spmv", {"shape": "30,70", "density": 0.1, "formats": "B:db c:b"}),
    ("ttv", {"shape": "6,7,40", "density": 0.1, "formats": "B:sbb"}),
])
def test_bitmap_operands_run_verified_in_both_engines(small_chip, workload, params):
    burst = sieve.run(small_chip, workload, params=params).summary
    cycle = sieve.run(small_chip, workload, params=params, fidelity="cycle").summary
    assert burst["verified"] and cycle["verified"]
    assert burst["kernel_cycles"] == cycle["kernel_cycles"]
    assert burst["sram_read_words"] == cycle["sram_read_words"] > 0


# ------------------------------------------------------------------ writer, word-wide joins,
# bitmap locator: semantics in the paper's notation
def _run(op: Opcode, streams: dict[str, str], mem: Memory | None = None, **attrs):
    outs, acts, steps = run_unit(Node.make("u", op, **attrs),
                                 {p: tokens(s) for p, s in streams.items()}, mem)
    return {p: format_tokens(t) for p, t in outs.items()}, acts, steps


def test_bitvector_scanner_emits_mask_words_with_their_first_positions():
    # [SAM23 section 4, BVRdScan] the paper matrix's j level as bitvectors: rows 0, 1, 3
    # have masks 0b0010, 0b0101, 0b1010 and start at positions 0, 1, 3
    mem = Memory({"B": FiberTree.from_dense("B", PAPER_MATRIX, ("compressed", "bitmap"))})
    outs, acts, steps = _run(Opcode.SCAN_BV, {"ref": "0 1 2 S0 D"}, mem, tensor="B", level=1,
                             dim=4)
    assert outs == {"bv": "2 S0 5 S0 10 S1 D", "ref": "0 S0 1 S0 3 S1 D"}
    # 3 x (count + one word + stop) + D; one word of counts, one of masks
    assert steps == 10 and acts == {"sram_read_words": 2}


def test_word_wide_intersection_and_union_expand_the_set_bits():
    # a: bits 1, 3 of word 0; b: bits 1, 2, 3 of word 0 and bit 0 of word 1 (dim 20)
    streams = {"bv_a": "10 0 S0 D", "ref_a": "0 2 S0 D", "bv_b": "14 1 S0 D", "ref_b": "4 7 S0 D"}
    outs, acts, steps = _run(Opcode.BV_INTERSECT, streams, dim=20)
    assert outs == {"crd": "1 3 S0 D", "ref_a": "0 1 S0 D", "ref_b": "4 6 S0 D"}
    assert steps == 2 + 1 + 2 and acts == {"match_count": 2}   # 2 bits, a zero word, S0, D
    outs, _, steps = _run(Opcode.BV_UNION, streams, dim=20)
    assert outs == {"crd": "1 2 3 16 S0 D", "ref_a": "0 N 1 N S0 D", "ref_b": "4 5 6 7 S0 D"}
    assert steps == 3 + 1 + 2


def test_locating_into_a_bitmap_level_filters_clear_bits():
    # [SAM23 section 3.2] B's j coordinates located into C, the paper matrix's transpose
    # stored with a bitmap level: C rows 0, 1, 3 hold bits {1}, {0, 3}, {3}
    mem = Memory({"C": FiberTree.from_dense("C", PAPER_MATRIX.T, ("dense", "bitmap"))})
    outs, acts, steps = _run(Opcode.LOCATE_BV, {"crd": "1 S0 0 2 S0 1 3 S1 D",
                                                "ref": "0 1 3 S0 D",
                                                "carry": "0 S0 1 2 S0 3 4 S1 D"},
                             mem, tensor="C", level=1, dim=4)
    assert outs == {"crd": "1 S0 0 S0 3 S1 D", "ref": "0 S0 1 S0 4 S1 D",
                    "carry": "0 S0 1 S0 4 S1 D"}
    # one step per coordinate-stream token (9) + the S0 that S1 accounts for; counts and
    # masks one 64-bit word each
    assert steps == 10 and acts == {"sram_read_words": 2}


def test_bitmap_writer_image_is_masks_and_counts():
    mem = Memory({})
    _, acts, steps = _run(Opcode.WRITE_BV, {"crd": "1 S0 0 2 35 S0 S1 D"}, mem, tensor="X",
                          level=1, dim=40)
    w = mem.written[("X", 1)]
    assert w.masks == [2, 0, 0, 5, 0, 8, 0, 0, 0] and w.seg == [0, 1, 4, 4] and w.crd == []
    # per fiber one step per coordinate and per mask word (4 + 9) + D
    assert steps == 14
    # 9 mask elements (two full 64-bit words + a partial) and 4 counts (one word)
    assert acts == {"sram_write_words": 4}
    with pytest.raises(IsaError, match="out of order"):
        _run(Opcode.WRITE_BV, {"crd": "3 1 S0 D"}, Memory({}), tensor="X", level=0, dim=4)


# ------------------------------------------------------------------ time rules: exact logs
W40 = FiberTree.from_coo("W", (3, 40), np.array([[0, 1], [0, 3], [0, 35]]), np.array([4, 6, 5]),
                         ("dense", "bitmap"))


def _log(logs, port):
    return [(t, repr(tok)) for t, tok in logs[port]]


def test_bitvector_scanner_cycle_log(small_chip):
    # Inputs arrive one per cycle from cycle 1 (latency 1); sinks pop a token the cycle after
    # it is put. t=1 pops 0 and reads its count; t=2, 3, 4 emit mask words 0, 1, 2 (10, 0, 8;
    # one word per step, the zero word too) with positions 0, 2, 2; t=5 S0; t=6 D.
    node = Node.make("u", Opcode.SCAN_BV, tensor="W", level=1, dim=40)
    logs, st = run_streams(node, {"ref": tokens("0 D")}, small_chip, {"W": W40})
    assert _log(logs, "bv") == [(3, "10"), (4, "0"), (5, "8"), (6, "S0"), (7, "D")]
    assert [repr(t) for _, t in logs["ref"]] == ["0", "2", "2", "S0", "D"]
    assert (st.busy_cycles, st.last_cycle, st.sram_read_words) == (6, 6, 2)


def test_word_wide_intersection_cycle_log(small_chip):
    # One word pair per step, one step per set bit of the AND when it has several. Words
    # (10, 14): AND 10 = bits 1, 3 -> t=1 emits 1, t=2 emits 3 and pops the pair; (0, 0): t=3,
    # nothing; (8, 9): AND 8 = bit 3 of word 2 -> t=4 emits 35; t=5 S0; t=6 D. References:
    # a side's word reference plus its set bits below the bit (ref_a 0, 1, 2; ref_b 0, 2, 4).
    node = Node.make("u", Opcode.BV_INTERSECT, dim=40)
    logs, st = run_streams(node, {"bv_a": tokens("10 0 8 S0 D"), "ref_a": tokens("0 2 2 S0 D"),
                                  "bv_b": tokens("14 0 9 S0 D"), "ref_b": tokens("0 3 3 S0 D")},
                           small_chip)
    assert _log(logs, "crd") == [(2, "1"), (3, "3"), (5, "35"), (6, "S0"), (7, "D")]
    assert [repr(t) for _, t in logs["ref_a"]] == ["0", "1", "2", "S0", "D"]
    assert [repr(t) for _, t in logs["ref_b"]] == ["0", "2", "4", "S0", "D"]
    assert (st.busy_cycles, st.last_cycle) == (6, 6)


def test_bitmap_locator_cycle_log(small_chip):
    # A coordinate takes one step, or one per 64-bit mask word it must fetch if more. Level
    # of size 100: 7 mask words per fiber, fiber 0 in SRAM words 0 (elements 0-3) and 1 (4-6),
    # fiber 1 from element 7 (word 1). Coordinate 90 of fiber 0 is in element 5: t=1 reads
    # the count and fetches word 0, t=2 fetches word 1 and emits 90 at position 1 (bit 2 of
    # element 0 before it); t=3 S0; coordinate 5 of fiber 1 (element 7, word 1 still cached,
    # count word cached): t=4 emits it at position 2; t=5 S1, t=6 pops the reference's S0
    # (absorbed), t=7 D. Reads: 1 count word + 2 mask words.
    tree = FiberTree.from_coo("W", (2, 100), np.array([[0, 2], [0, 90], [1, 5]]),
                              np.array([1, 2, 3]), ("dense", "bitmap"))
    node = Node.make("u", Opcode.LOCATE_BV, tensor="W", level=1, dim=100)
    logs, st = run_streams(node, {"crd": tokens("90 S0 5 S1 D"), "ref": tokens("0 1 S0 D"),
                                  "carry": tokens("7 S0 8 S1 D")}, small_chip, {"W": tree})
    assert _log(logs, "crd") == [(3, "90"), (4, "S0"), (5, "5"), (6, "S1"), (8, "D")]
    assert [repr(t) for _, t in logs["ref"]] == ["1", "S0", "2", "S1", "D"]
    assert [repr(t) for _, t in logs["carry"]] == ["7", "S0", "8", "S1", "D"]
    assert (st.busy_cycles, st.last_cycle, st.sram_read_words) == (7, 7, 3)


def test_bitmap_writer_cycle_log(small_chip):
    # Level of size 40 (3 mask words per fiber), input 1 3 35 S0 D arriving at t=1..5:
    # t=1, 2 pop 1 and 3 (word 0); t=3 writes word 0 (the head 35 is in word 2); t=4 writes
    # word 1 (zero); t=5 pops 35; t=6 writes word 2 and the count with S0; t=7 D.
    # busy = 3 coordinates + 3 mask words + D; writes: the partial masks and counts words.
    node = Node.make("u", Opcode.WRITE_BV, tensor="X", level=1, dim=40)
    _, st = run_streams(node, {"crd": tokens("1 3 35 S0 D")}, small_chip)
    assert (st.busy_cycles, st.first_cycle, st.last_cycle, st.sram_write_words) == (7, 1, 7, 2)


# ------------------------------------------------------------------ lowering
def _ops(small_chip, workload: str, params: dict, **compiler) -> list[Opcode]:
    chip = dataclasses.replace(small_chip, compiler=dataclasses.replace(small_chip.compiler,
                                                                        **compiler))
    kernel, _ = lower_layer(get_workload(workload).make(params), chip)
    return [n.op for n in kernel.nodes]


def test_lowering_uses_the_bitmap_primitives_where_the_formats_call_for_them(small_chip):
    p = {"shape": "20,40", "density": 0.2}
    # two bitmap levels joined with each other: bitvector scanners and a word-wide joiner
    ops = _ops(small_chip, "elemmul", {**p, "formats": "B:bb C:bb"})
    assert ops.count(Opcode.SCAN_BV) == 4 and ops.count(Opcode.BV_INTERSECT) == 2
    assert Opcode.INTERSECT not in ops and Opcode.SCAN not in ops
    assert _ops(small_chip, "elemadd", {**p, "formats": "B:bb C:bb"}).count(Opcode.BV_UNION) == 2
    # compiler.bitvector off: coordinate scanners and the two-finger joiner
    ops = _ops(small_chip, "elemmul", {**p, "formats": "B:bb C:bb"}, bitvector=False)
    assert Opcode.SCAN_BV not in ops and ops.count(Opcode.INTERSECT) == 2
    # a bitmap level met by one compressed level: located (filtering), not co-iterated
    ops = _ops(small_chip, "elemmul", {**p, "formats": "B:ss C:sb"})
    assert ops.count(Opcode.LOCATE_BV) == 1 and ops.count(Opcode.INTERSECT) == 1
    assert _ops(small_chip, "elemmul", {**p, "formats": "B:ss C:sb"},
                locate=False).count(Opcode.LOCATE_BV) == 0
    # a bitmap output level gets the bitmap writer
    ops = _ops(small_chip, "spmspm", {"shape": "10,40,12", "formats": "X:sb", "order": "ikj"})
    assert ops.count(Opcode.WRITE_BV) == 1 and ops.count(Opcode.WRITE_CRD) == 1


def test_bad_output_formats_are_one_clear_error(small_chip):
    from isa.errors import CompileError
    from workloads.base import WorkloadError

    with pytest.raises(CompileError, match="output X: format 'sb:1,0'"):
        _ops(small_chip, "elemmul", {"shape": "4,4", "formats": "X:sb:1,0"})
    with pytest.raises(CompileError, match="only compressed and bitmap output levels"):
        _ops(small_chip, "elemmul", {"shape": "4,4", "formats": "X:sd"})
    with pytest.raises(WorkloadError, match="TENSOR in B, C, X"):
        get_workload("elemmul").make({"formats": "Y:ss"})
    with pytest.raises(CompileError, match="output x: format 'b' must give 0 level letters"):
        _ops(small_chip, "innerprod", {"shape": "2,2,2", "formats": "x:b", "order": "ijk"})


@pytest.mark.parametrize("workload,params", [
    ("elemmul", {"shape": "30,50", "density": 0.3, "formats": "B:bb C:bb X:bb"}),
    ("elemadd", {"shape": "30,50", "density": 0.2, "formats": "B:bb C:sb X:sb"}),
    ("spmspm", {"shape": "20,40,36", "density": 0.15, "formats": "B:ss C:bb X:sb"}),
    ("spmv", {"shape": "30,70", "density": 0.1, "formats": "B:ds c:b x:b"}),
    ("ttv", {"shape": "6,7,40", "density": 0.1, "formats": "B:sbb X:bb"}),
])
def test_bitmap_outputs_joins_and_locates_verified_in_both_engines(small_chip, workload,
                                                                    params):
    # the whole kernel re-run on the interpreter: the output levels (read back from the
    # masks and counts) equal level by level
    burst = sieve.run(small_chip, workload, params=params, check="full").summary
    cycle = sieve.run(small_chip, workload, params=params, fidelity="cycle").summary
    assert burst["verified"] and cycle["verified"]
    assert burst["checks"] == {"numpy": True, "interpreter": True}
    assert burst["kernel_cycles"] == cycle["kernel_cycles"]
    assert burst["sram_read_words"] == cycle["sram_read_words"] > 0


def test_word_wide_join_is_faster_than_coordinate_joins_on_bitmaps(small_chip):
    # the same bitmap operands, joined word-wide and coordinate by coordinate
    p = {"shape": "64,64", "density": 0.3, "formats": "B:bb C:bb"}
    word = sieve.run(small_chip, "elemmul", params=p).summary
    off = dataclasses.replace(small_chip, compiler=dataclasses.replace(small_chip.compiler,
                                                                       bitvector=False))
    crd = sieve.run(off, "elemmul", params=p).summary
    assert word["verified"] and crd["verified"]
    assert word["kernel_cycles"] < crd["kernel_cycles"]


# ------------------------------------------------------------------ the random suite
BITMAP_FORMATS = {
    "elemmul": ["B:bb C:bb X:bb", "B:ss C:sb X:sb", "B:sb C:ss", "B:db C:bb X:bs",
                "B:bs C:bb X:bb", "B:ds C:db X:sb", "B:ss C:bs X:bb", "B:sd C:bs",
                "B:ss C:bb X:bb", "B:sd C:bs X:sb"],
    "elemadd": ["B:bb C:bb X:bb", "B:sb C:sb X:sb", "B:bb C:ss X:bb"],
    "spmspm": ["B:sb C:bb X:sb", "B:ss C:bb X:sb", "B:bb C:bs X:bb", "B:sb C:sb X:ss"],
    "spmv": ["B:db c:b x:b", "B:ds c:b x:b", "B:sb c:b", "B:ss c:b x:b"],
    "elemadd3": ["B:bb C:bb D:bb X:bb", "B:sb C:bb D:ss X:sb"],
    "ttv": ["B:sbb c:b X:sb", "B:bbb c:b X:bb", "B:ssb c:d", "B:sss c:b X:sb"],
    "sddmm": ["B:bb X:bb", "B:sb C:dd D:dd X:sb"],
    "mttkrp": ["B:sbb", "B:bbb C:bb D:bb X:sb", "B:sss C:bb D:bb"],
}
BITMAP_ORDERS = {"spmspm": "ikj", "elemadd3": "ij", "ttv": "ijk", "sddmm": "ijk",
                 "mttkrp": "ijkl"}
BITMAP_RANKS = {"spmspm": 3, "ttv": 3, "sddmm": 3, "mttkrp": 4}
BITMAP_SUITE = 90


def make_bitmap_case(seed: int) -> dict:
    """A random bitmap-level case: writers, word-wide joins and bitmap locates, with the
    compiler's bitvector and locate switches, FIFO depths, hop latencies and zero policies."""
    rng = np.random.default_rng(7000 + seed)
    workload = str(rng.choice(list(BITMAP_FORMATS)))
    rank = BITMAP_RANKS.get(workload, 2)
    # matrices up to 40 per index (up to three mask words per fiber); higher ranks small but
    # for the last index
    sizes = rng.integers(1, 41, size=rank) if rank <= 2 or workload == "spmspm" else \
        np.concatenate([rng.integers(1, 6, size=rank - 1), rng.integers(1, 41, size=1)])
    shape = ",".join(str(int(x)) for x in sizes)
    params = {"shape": shape, "density": float(rng.choice([0.0, 0.05, 0.2, 0.5, 1.0])),
              "seed": seed, "empty_rows": float(rng.choice([0.0, 0.4])),
              "formats": str(rng.choice(BITMAP_FORMATS[workload]))}
    if workload in BITMAP_ORDERS:
        params["order"] = BITMAP_ORDERS[workload]
    return {"workload": workload, "params": params, "depth": int(rng.integers(1, 6)),
            "hop": int(rng.integers(1, 3)),
            "policy": (str(rng.choice(["skip", "gate", "none"])),
                       str(rng.choice(["skip", "gate", "none"]))),
            "balance": bool(rng.random() < 0.6), "locate": bool(rng.random() < 0.8),
            "bitvector": bool(rng.random() < 0.8)}


def _bitmap_chip(small_chip, case):
    chip = configure(small_chip, case)
    return dataclasses.replace(chip, compiler=dataclasses.replace(
        chip.compiler, bitvector=case["bitvector"]))


@pytest.mark.parametrize("seed", range(BITMAP_SUITE))
def test_burst_equals_cycle_on_bitmap_levels(small_chip, seed):
    case = make_bitmap_case(seed)
    chip = _bitmap_chip(small_chip, case)
    program = compile_layer(get_workload(case["workload"]).make(case["params"]), chip)
    assert_same(program.kernels[0], program.images, chip)


def test_bitmap_suite_covers_writers_word_wide_joins_and_bitmap_locates(small_chip):
    counts = dict.fromkeys(("write_bv", "bv_intersect", "bv_union", "locate_bv",
                            "root_locate_bv", "coordinate_bitmap_scan"), 0)
    for case in [make_bitmap_case(s) for s in range(BITMAP_SUITE)]:
        chip = _bitmap_chip(small_chip, case)
        kernel = lower_layer(get_workload(case["workload"]).make(case["params"]), chip)[0]
        ops = [n.op for n in kernel.nodes]
        counts["write_bv"] += Opcode.WRITE_BV in ops
        counts["bv_intersect"] += Opcode.BV_INTERSECT in ops
        counts["bv_union"] += Opcode.BV_UNION in ops
        counts["locate_bv"] += Opcode.LOCATE_BV in ops
        counts["root_locate_bv"] += any(n.op is Opcode.LOCATE_BV and n.attr("root")
                                        for n in kernel.nodes)
        counts["coordinate_bitmap_scan"] += any(n.op is Opcode.SCAN and n.attr("fmt") ==
                                                "bitmap" for n in kernel.nodes)
    assert counts["write_bv"] >= 50 and counts["bv_intersect"] >= 20
    assert counts["bv_union"] >= 10 and counts["locate_bv"] >= 20
    assert counts["root_locate_bv"] >= 3 and counts["coordinate_bitmap_scan"] >= 40


# ------------------------------------------------------------------ ISA: verifier, round trips
@pytest.mark.parametrize("workload,params", [
    ("elemmul", {"shape": "6,40", "formats": "B:bb C:bb X:bb"}),
    ("elemadd", {"shape": "6,40", "formats": "B:bb C:bb X:sb"}),
    ("elemmul", {"shape": "6,40", "formats": "B:ss C:bs X:bs"}),
])
def test_bitmap_programs_round_trip(small_chip, workload, params):
    from isa.asm import parse_program, print_program
    from isa.bitstream import decode, encode
    from isa.dot import to_dot

    program = compile_layer(get_workload(workload).make(params), small_chip)
    kernel = program.kernels[0]
    new = {Opcode.SCAN_BV, Opcode.BV_INTERSECT, Opcode.BV_UNION, Opcode.LOCATE_BV,
           Opcode.WRITE_BV}
    assert new & {n.op for n in kernel.nodes}
    assert parse_program(print_program(program)).kernels[0] == kernel
    assert decode(encode(kernel)) == kernel
    assert "bv" in to_dot(kernel)


def test_verifier_rejects_bitmap_units_on_other_levels(small_chip):
    from isa.verify import verify_kernel

    kernel, _ = lower_layer(get_workload("elemmul").make(
        {"shape": "6,40", "formats": "B:ss C:sb X:sb"}), small_chip)
    verify_kernel(kernel)
    decls = tuple(dataclasses.replace(t, formats=("compressed", "compressed"))
                  if t.name in ("C", "X") else t for t in kernel.tensors)
    with pytest.raises(IsaError) as err:
        verify_kernel(dataclasses.replace(kernel, tensors=decls))
    assert "locate_bv on C level 1, which is compressed; it needs a bitmap level" in str(err.value)
    assert "write_bv on X level 1, which is compressed" in str(err.value)


def test_order_choice_keeps_working_with_bitmap_operands_and_outputs(small_chip):
    from compiler.order import enumerate_orders

    layer = get_workload("spmspm").make({"shape": "12,40,10", "density": 0.2,
                                         "formats": "B:bb C:bb X:sb"})
    legal = {c.order: c.formats for c in enumerate_orders(layer) if c.rejected is None}
    assert legal["ikj"] == {"B": "bb", "C": "bb"} and "ijk" in legal
    run = sieve.run(small_chip, "spmspm", params={"shape": "12,40,10", "density": 0.2,
                                                  "formats": "B:bb C:bb X:sb"}).summary
    assert run["verified"] and run["loop_order"] in legal


def test_energy_charges_word_wide_joins_and_bitmap_locates(onyx_chip):
    # a word-wide joiner's busy cycles are joiner steps, as the two-finger joiner's; a bitmap
    # locator sits on the MEM tile holding its level: its SRAM reads and busy cycles are
    # memory-tile actions
    from simulator.controller import simulate
    from simulator.energy import energy_breakdown, load_energy_table

    table = load_energy_table(onyx_chip.energy_table)
    for formats, unit, actions in [("B:bb C:bb", ".bv_intersect.", ("joiner_step",)),
                                   ("B:ss C:sb", ".locate_bv.",
                                    ("mem_sram_read", "mem_control_step"))]:
        program = compile_layer(get_workload("elemmul").make(
            {"shape": "32,48", "density": 0.3, "formats": formats}), onyx_chip)
        result = simulate(program, onyx_chip)
        full = energy_breakdown(result.stats, result.cycles, onyx_chip, table, program=program)
        mine = {k: v for k, v in result.stats.items() if unit in k}
        busy = sum(v["value"] for k, v in mine.items() if k.endswith(".busy_cycles"))
        reads = sum(v["value"] for k, v in mine.items() if k.endswith(".sram_read_words"))
        rest = {k: v for k, v in result.stats.items() if k not in mine}
        without = energy_breakdown(rest, result.cycles, onyx_chip, table, program=program)
        got = [full.counts[a] - without.counts[a] for a in actions]
        assert busy > 0 and got == ([busy] if len(actions) == 1 else [reads, busy])
        assert (reads > 0) == (unit == ".locate_bv.")
