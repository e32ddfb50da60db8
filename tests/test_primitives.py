"""Per-primitive token semantics, in the SAM paper's stream notation.

Streams are written in arrival order (left first). Examples marked [SAM23] or [VLSI24] are
the papers' own; the others exercise empty fibers, N tokens and nesting.
"""

from __future__ import annotations

import numpy as np
import pytest

from isa.errors import IsaError
from isa.fibertree import FiberTree
from isa.interp import Memory, run_unit
from isa.ops import Opcode
from isa.program import Node
from isa.tokens import format_tokens, tokens

# The 4x4 matrix of SAM23 Fig. 2: [[0,1,0,0],[2,0,3,0],[0,0,0,0],[0,4,0,5]]
PAPER_MATRIX = np.array([[0, 1, 0, 0], [2, 0, 3, 0], [0, 0, 0, 0], [0, 4, 0, 5]])


def run(op: Opcode, mem: Memory | None = None, **streams: str) -> dict[str, str]:
    """Run one unit; returns its output streams in paper notation."""
    attrs = streams.pop("attrs", {})
    node = Node.make("u", op, **attrs)
    outs, _acts, _steps = run_unit(node, {p: tokens(s) for p, s in streams.items()}, mem)
    return {p: format_tokens(t) for p, t in outs.items()}


@pytest.fixture()
def paper_mem() -> Memory:
    return Memory({"B": FiberTree.from_dense("B", PAPER_MATRIX, ("compressed", "compressed"))})


def test_scanner_streams_of_the_paper_matrix(paper_mem):
    # [SAM23 section 3.2] i: crd 0 1 3 S0 D, ref 0 1 2 S0 D; j: the fibers of rows 0, 1, 3
    root = run(Opcode.SCAN, paper_mem, attrs=dict(tensor="B", level=0, fmt="compressed",
                                                  root=True))
    assert root == {"crd": "0 1 3 S0 D", "ref": "0 1 2 S0 D"}
    inner = run(Opcode.SCAN, paper_mem, ref=root["ref"],
                attrs=dict(tensor="B", level=1, fmt="compressed"))
    assert inner == {"crd": "1 S0 0 2 S0 1 3 S1 D", "ref": "0 S0 1 2 S0 3 4 S1 D"}


def test_scanner_empty_fibers_and_stops(paper_mem):
    # an outer fiber with no refs (S0 first) is a bare S1; N scans as an empty fiber
    out = run(Opcode.SCAN, paper_mem, ref="S0 0 N S1 D",
              attrs=dict(tensor="B", level=1, fmt="compressed"))
    assert out["crd"] == "S1 1 S0 S2 D"


def test_dense_scanner_counts_coordinates():
    mem = Memory({"B": FiberTree.from_dense("B", PAPER_MATRIX, ("dense", "dense"))})
    out = run(Opcode.SCAN, mem, ref="0 3 S0 D", attrs=dict(tensor="B", level=1, fmt="dense",
                                                          dim=4))
    assert out == {"crd": "0 1 2 3 S0 0 1 2 3 S1 D", "ref": "0 1 2 3 S0 12 13 14 15 S1 D"}


def test_zero_skipping_scanner_drops_zero_values():
    mem = Memory({"B": FiberTree.from_dense("B", PAPER_MATRIX, ("dense", "dense"))})
    out = run(Opcode.SCAN, mem, ref="1 S0 D", attrs=dict(tensor="B", level=1, fmt="dense",
                                                        dim=4, skip_zeros=True))
    assert out == {"crd": "0 2 S1 D", "ref": "4 6 S1 D"}


def test_intersect_paper_example():
    # [VLSI24 Fig. 4] crd1 = 2,4,7,8,10 and crd2 = 1,4,8,9 -> 4,8
    out = run(Opcode.INTERSECT, crd_a="2 4 7 8 10 S0 D", ref_a="0 1 2 3 4 S0 D",
              crd_b="1 4 8 9 S0 D", ref_b="0 1 2 3 S0 D")
    assert out == {"crd": "4 8 S0 D", "ref_a": "1 3 S0 D", "ref_b": "1 2 S0 D"}


def test_union_paper_example():
    # [VLSI24 Fig. 4] union gives 1,2,4,7,8,9,10; the absent side's ref is N
    out = run(Opcode.UNION, crd_a="2 4 7 8 10 S0 D", ref_a="0 1 2 3 4 S0 D",
              crd_b="1 4 8 9 S0 D", ref_b="0 1 2 3 S0 D")
    assert out == {"crd": "1 2 4 7 8 9 10 S0 D", "ref_a": "N 0 1 2 3 N 4 S0 D",
                   "ref_b": "0 N 1 N 2 3 N S0 D"}


def test_joiners_keep_fiber_structure():
    out = run(Opcode.INTERSECT, crd_a="1 S0 2 S1 D", ref_a="0 S0 1 S1 D",
              crd_b="S0 2 3 S1 D", ref_b="S0 0 1 S1 D")
    assert out["crd"] == "S0 2 S1 D"
    with pytest.raises(IsaError, match="fiber structure differs"):
        run(Opcode.INTERSECT, crd_a="1 S0 D", ref_a="0 S0 D", crd_b="1 S1 D", ref_b="0 S1 D")


def test_reducer_paper_example():
    # [VLSI24 Fig. 4] S0 | 6 7 S0 | 8 9 10 S1 D -> 0, 13, 27, S0, D
    assert run(Opcode.REDUCE, val="S0 6 7 S0 8 9 10 S1 D") == {"val": "0 13 27 S0 D"}


def test_reducer_drop_empty():
    out = run(Opcode.REDUCE, val="S0 6 7 S0 S1 D", attrs=dict(drop_empty=True))
    assert out == {"val": "13 S0 D"}


def test_repeater_paper_example():
    # [VLSI24 Fig. 4] coords 1, 2, S1 with ref 0, S0 -> 0, 0, S1
    sig = run(Opcode.REPSIG, crd="1 2 S1 D")
    assert sig == {"repsig": "R R S1 D"}
    assert run(Opcode.REPEAT, ref="0 S0 D", repsig=sig["repsig"]) == {"ref": "0 0 S1 D"}


def test_repeater_with_empty_outer_fiber():
    # refs 1 2 | (empty) | 3; the repsig's structure comes from the repeated-over level
    out = run(Opcode.REPEAT, ref="1 2 S0 S0 3 S1 D", repsig="R R S0 R S1 S1 R S2 D")
    assert out == {"ref": "1 1 S0 2 S1 S1 3 S2 D"}


def test_root_repeater():
    out = run(Opcode.REPEAT, repsig="R R R S0 D", attrs=dict(root=True))
    assert out == {"ref": "0 0 0 S0 D"}


def test_array_loads_values_and_passes_control(paper_mem):
    assert run(Opcode.ARRAY, paper_mem, ref="0 4 N S0 D", attrs=dict(tensor="B")) == {
        "val": "1 5 N S0 D"}


@pytest.mark.parametrize("op,expected", [("mul", "10 0 S0 D"), ("add", "7 3 S0 D"),
                                         ("sub", "3 -3 S0 D"), ("max", "5 3 S0 D")])
def test_alu_binary_ops_treat_n_as_zero(op, expected):
    assert run(Opcode.ALU, a="5 N S0 D", b="2 3 S0 D", attrs=dict(op=op)) == {"val": expected}


def test_alu_counts_zero_policies():
    node = lambda pa, pb: Node.make("u", Opcode.ALU, op="mul", zero_a=pa, zero_b=pb)  # noqa: E731
    ins = {"a": tokens("0 2 0 S0 D"), "b": tokens("3 4 0 S0 D")}
    _, acts, steps = run_unit(node("gate", "none"), ins)
    assert acts == {"gated_op_count": 2, "effectual_op_count": 1}
    _, acts, _ = run_unit(node("none", "none"), ins)
    assert acts == {"ineffectual_op_count": 2, "effectual_op_count": 1}
    assert steps == 5


def test_alu_unary_relu():
    assert run(Opcode.ALU, a="-2 3 S0 D", attrs=dict(op="relu")) == {"val": "0 3 S0 D"}


def test_vector_reducer_merges_rows():
    # two sub-fibers (S0-separated) of one output fiber are summed by coordinate
    out = run(Opcode.VREDUCE, crd="3 1 S0 1 2 S1 S2 D", val="1 2 S0 3 4 S1 S2 D")
    assert out == {"crd": "1 2 3 S0 S1 D", "val": "5 4 1 S0 S1 D"}


def test_crddrop_removes_empty_fibers():
    # [VLSI24 Fig. 4] outer 1 2 with inner fibers [5] and [] -> outer 1, inner 5 S1
    out = run(Opcode.CRDDROP, outer="1 2 S0 D", inner="5 S0 S1 D")
    assert out == {"outer": "1 S0 D", "inner": "5 S1 D"}


def test_crddrop_nested_keeps_outer_structure():
    out = run(Opcode.CRDDROP, outer="1 S0 2 S1 D", inner="5 S1 S2 D")
    assert out == {"outer": "1 S0 S1 D", "inner": "5 S1 S2 D"}


def test_crdhold_repeats_outer_coordinate():
    out = run(Opcode.CRDHOLD, outer="0 1 S0 D", inner="5 6 S0 7 S1 D")
    assert out == {"outer": "0 0 S0 1 S1 D", "inner": "5 6 S0 7 S1 D"}


def test_level_writers_build_the_paper_arrays():
    mem = Memory({})
    run(Opcode.WRITE_CRD, mem, crd="0 1 3 S0 D", attrs=dict(tensor="X", level=0))
    run(Opcode.WRITE_CRD, mem, crd="1 S0 0 2 S0 1 3 S1 D", attrs=dict(tensor="X", level=1))
    run(Opcode.WRITE_VAL, mem, val="1 S0 2 3 S0 4 5 S1 D", attrs=dict(tensor="X"))
    assert mem.written[("X", 0)].seg == [0, 3] and mem.written[("X", 0)].crd == [0, 1, 3]
    assert mem.written[("X", 1)].seg == [0, 1, 3, 5]
    assert mem.written[("X", 1)].crd == [1, 0, 2, 1, 3]
    assert mem.written[("X", -1)].vals == [1, 2, 3, 4, 5]


def test_malformed_stream_is_reported_with_the_unit():
    with pytest.raises(IsaError, match="ended without D"):
        run(Opcode.REPSIG, crd="1 2")
    with pytest.raises(IsaError, match="unread tokens"):
        run(Opcode.REPSIG, crd="1 D 3")


def test_sram_word_cache_counts(paper_mem):
    # B level 1 crd array has 5 elements = 2 words; scanning every fiber reads each once
    node = Node.make("u", Opcode.SCAN, tensor="B", level=1, fmt="compressed")
    _, acts, _ = run_unit(node, {"ref": tokens("0 1 2 S0 D")}, paper_mem)
    # seg [0,1,3,5] is one word; crd words 0 and 1
    assert acts["sram_read_words"] == 1 + 2
