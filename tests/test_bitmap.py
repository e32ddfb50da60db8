"""Bitmap levels: SAM's bitvector level (a mask per fiber, references from popcounts).

A bitmap level's fiber is a mask of ``size`` bits in 16-bit words; a coordinate's position is
the count of set bits before its fiber plus those below it in the mask. The scanner walks a
fiber word by word: a step per set bit, a step per all-zero word.
"""

from __future__ import annotations

import numpy as np
import pytest

import sieve
from isa.errors import IsaError
from isa.fibertree import FiberTree, parse_formats
from isa.interp import Memory, run_unit
from isa.ops import Opcode
from isa.program import Node
from isa.tokens import format_tokens, tokens
from simulator.engine_cycle import run_streams

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
