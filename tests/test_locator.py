"""The locator: SAM's iterate-and-locate into a dense level, from the ISA to the CLI.

1. Token semantics in the paper's notation (the interpreter is the definition).
2. Its timing under the cycle engine's rules: an exact cycle log with its derivation.
3. The verifier's rules, assembly and bitstream round trips.
4. The lowering: a dense level met in an intersection is located, not co-iterated, so MTTKRP,
   TTM, TTV and SDDMM follow the sparse operand's nonzeros times the dense extents.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compiler.pipeline import compile_layer, lower_layer
from isa.asm import parse_program, print_program
from isa.bitstream import decode, encode
from isa.dot import to_dot
from isa.errors import IsaError
from isa.fibertree import FiberTree
from isa.interp import Memory, run_unit
from isa.ops import Opcode
from isa.program import Node
from isa.tokens import format_tokens, tokens
from isa.verify import verify_kernel
from simulator.controller import simulate
from simulator.energy import energy_breakdown, load_energy_table
from simulator.engine_cycle import run_streams
from tests.test_burst import assert_same
from tests.test_tensor_kernels import three_way
from workloads import get_workload

# The 4x4 matrix of SAM23 Fig. 2: [[0,1,0,0],[2,0,3,0],[0,0,0,0],[0,4,0,5]]
PAPER_MATRIX = np.array([[0, 1, 0, 0], [2, 0, 3, 0], [0, 0, 0, 0], [0, 4, 0, 5]])


def locate(crd: str, ref: str | None = None, **attrs) -> tuple[str, int]:
    node = Node.make("u", Opcode.LOCATE, **{"tensor": "D", "level": 1, "dim": 4, **attrs})
    streams = {"crd": tokens(crd)} | ({} if ref is None else {"ref": tokens(ref)})
    outs, _acts, steps = run_unit(node, streams)
    return format_tokens(outs["ref"]), steps


# ------------------------------------------------------------------ 1. semantics
def test_locating_the_paper_matrix_coordinates_into_its_dense_copy():
    # [SAM23 section 3.2] B's j level: crd 1 S0 0 2 S0 1 3 S1 D for rows 0, 1, 3. Located
    # into a dense (4 x 4) copy D at D's row references 0 1 3: position = row * 4 + j.
    out, steps = locate("1 S0 0 2 S0 1 3 S1 D", "0 1 3 S0 D")
    assert out == "1 S0 4 6 S0 13 15 S1 D"
    # one step per coordinate-stream token (9) plus the S0 that S1 accounts for
    assert steps == 10
    # the located values are B's own nonzeros, in B's order
    dense = FiberTree.from_dense("D", PAPER_MATRIX, ("dense", "dense"))
    arr = Node.make("a", Opcode.ARRAY, tensor="D")
    vals, _, _ = run_unit(arr, {"ref": tokens(out)}, Memory({"D": dense}))
    assert format_tokens(vals["val"]) == "1 S0 2 3 S0 4 5 S1 D"


def test_empty_fibers_absent_references_and_the_root():
    # an empty coordinate fiber pops its reference; a lone reference stop S0 (an empty outer
    # fiber) meets the coordinate stop S1; N (absent outer fiber) locates to N
    assert locate("1 S1 S1 2 S0 S1 S2 D", "3 S0 S0 1 0 S0 S1 D")[0] == "13 S1 S1 6 S0 S1 S2 D"
    assert locate("1 S0 2 S0 D", "N 3 D")[0] == "N S0 14 S0 D"
    assert locate("0 3 S0 D", root=True, level=0)[0] == "0 3 S0 D"


@pytest.mark.parametrize("crd,ref", [("1 S0 D", "0 1 D"), ("1 S1 D", "0 D"),
                                     ("1 S0 D", "S0 D"), ("S0 D", "0 S0 D")])
def test_streams_out_of_step_are_an_error(crd, ref):
    with pytest.raises(IsaError, match="locate u: malformed input"):
        locate(crd, ref)


# ------------------------------------------------------------------ 2. timing
def test_locator_cycle_log(small_chip):
    # Timing: one step per coordinate-stream token, plus one per reference stop absorbed by
    # a higher coordinate stop; a dense position is address arithmetic in the PE (Onyx's
    # Locator adds coord + step x dim_size, lake/modules/locator.py), so no SRAM access.
    # Sources put a token per cycle into depth-2 FIFOs (put k >= pop k-2 + 1), L = 1.
    #   crd 1 3 S0 2 S1 D put at 0 1 2 3 4 5;  ref 0 1 S0 D put at 0 1 4 6
    #   t=1: 1 @ ref 0 -> 1      t=2: 3 -> 3       t=3: S0, pops ref 0 -> S0
    #   t=4: 2 @ ref 1 -> 12     t=5: S1, pops ref 1 -> S1 (its S0 is accounted for)
    #   t=6: pops ref S0 (put at pop(ref 0) + 1 = 4, usable at 5), no output
    #   t=7: D (ref D put at pop(ref 1) + 1 = 6, usable at 7) -> D
    # The sink pops every output the cycle after it was put.
    node = Node.make("u", Opcode.LOCATE, tensor="D", level=1, dim=10)
    logs, st = run_streams(node, {"crd": tokens("1 3 S0 2 S1 D"), "ref": tokens("0 1 S0 D")},
                           small_chip)
    assert [(t, repr(tok)) for t, tok in logs["ref"]] == [
        (2, "1"), (3, "3"), (4, "S0"), (5, "12"), (6, "S1"), (8, "D")]
    assert (st.busy_cycles, st.first_cycle, st.last_cycle) == (7, 1, 7)
    assert st.sram_read_words == 0


# ------------------------------------------------------------------ 3. ISA
def test_verifier_rules(small_chip):
    kernel, _ = lower_layer(get_workload("ttv").make({"shape": "3,4,5"}), small_chip)
    loc = next(n for n in kernel.nodes if n.op is Opcode.LOCATE)
    verify_kernel(kernel)
    bad_dim = kernel.with_nodes(tuple(dataclasses.replace(n, attrs=tuple(
        (key, 7 if key == "dim" else v) for key, v in n.attrs)) if n is loc else n
        for n in kernel.nodes))
    with pytest.raises(IsaError, match="dim 7 but c level 0 has size 5"):
        verify_kernel(bad_dim)
    sparse_c, _ = lower_layer(get_workload("ttv").make({"shape": "3,4,5", "formats": "c:s"}),
                              small_chip)
    decls = tuple(dataclasses.replace(t, formats=("compressed",)) if t.name == "c" else t
                  for t in kernel.tensors)
    with pytest.raises(IsaError, match="a locator needs a dense level"):
        verify_kernel(dataclasses.replace(kernel, tensors=decls))
    assert not any(n.op is Opcode.LOCATE for n in sparse_c.nodes)


@pytest.mark.parametrize("name,shape", [("mttkrp", "3,4,5,6"), ("ttm", "3,4,5,6"),
                                        ("ttv", "3,4,5"), ("sddmm", "3,4,5")])
def test_located_programs_round_trip(small_chip, name, shape):
    program = compile_layer(get_workload(name).make({"shape": shape}), small_chip)
    kernel = program.kernels[0]
    assert any(n.op is Opcode.LOCATE for n in kernel.nodes)
    assert "= locate tensor=" in print_program(program)
    assert parse_program(print_program(program)).kernels[0] == kernel
    assert decode(encode(kernel)) == kernel
    assert "locate" in to_dot(kernel)


# ------------------------------------------------------------------ 4. lowering
def test_lowering_locates_dense_levels(small_chip):
    k, _ = lower_layer(get_workload("mttkrp").make({"shape": "3,4,5,6"}), small_chip)
    kinds = {n.id: n.op for n in k.nodes if n.op in (Opcode.SCAN, Opcode.LOCATE,
                                                     Opcode.INTERSECT)}
    # j: C's dense level is scanned and D's located; k and l: B's compressed levels are
    # iterated and C's and D's dense levels located; nothing co-iterates
    assert kinds == {"scan_B0": Opcode.SCAN, "scan_C0": Opcode.SCAN,
                     "locate_D0": Opcode.LOCATE, "scan_B1": Opcode.SCAN,
                     "locate_C1": Opcode.LOCATE, "scan_B2": Opcode.SCAN,
                     "locate_D1": Opcode.LOCATE}
    off = dataclasses.replace(small_chip, compiler=dataclasses.replace(small_chip.compiler,
                                                                       locate=False))
    k, _ = lower_layer(get_workload("mttkrp").make({"shape": "3,4,5,6"}), off)
    assert not [n for n in k.nodes if n.op is Opcode.LOCATE]
    assert len([n for n in k.nodes if n.op is Opcode.INTERSECT]) == 3


def _kernel_cycles(chip, name: str, params: dict) -> tuple[int, bool]:
    layer = get_workload(name).make(params)
    program = compile_layer(layer, chip)
    result = simulate(program, chip)
    out = next(t for t in program.kernels[0].tensors if t.is_output)
    got = result.outputs[out.name].to_dense()
    return result.kernel_cycles, bool(np.array_equal(got, layer.reference()))


@pytest.mark.parametrize("name,shape,order", [("mttkrp", (6, 4, 30, 30), "ijkl"),
                                              ("ttm", (6, 5, 8, 30), "ijkl"),
                                              ("ttv", (8, 8, 60), "ijk"),
                                              ("sddmm", (20, 20, 8), "ijk")])
def test_cycles_follow_the_sparse_operand(onyx_chip, name, shape, order):
    # Located, the work is the sparse operand's nonzeros times the dense extents they touch:
    # doubling B's density about doubles the cycles; co-iterating the dense level instead
    # walks it whole for every fiber of B (about the dense product for MTTKRP).
    params = {"shape": ",".join(map(str, shape)), "seed": 1, "order": order}   # forced
    # one copy of the graph: the work law, not unrolling's fixed costs
    onyx_chip = dataclasses.replace(onyx_chip, compiler=dataclasses.replace(onyx_chip.compiler,
                                                                            unroll=1))
    sparse, ok1 = _kernel_cycles(onyx_chip, name, params | {"density": 0.02})
    double, ok2 = _kernel_cycles(onyx_chip, name, params | {"density": 0.04})
    off = dataclasses.replace(onyx_chip, compiler=dataclasses.replace(onyx_chip.compiler,
                                                                      locate=False))
    walked, ok3 = _kernel_cycles(off, name, params | {"density": 0.02})
    assert ok1 and ok2 and ok3
    assert 1.4 < double / sparse < 2.3
    # measured: mttkrp 1229 vs 11175 co-iterated, ttm 396 vs 3611, ttv 204 vs 2689; SDDMM's
    # k loop is dense on both sides (nothing to skip), only its i and j walks go: 105 vs 201
    assert walked > (1.5 if name == "sddmm" else 5) * sparse


@pytest.mark.slow
def test_mttkrp_of_the_issue_runs_under_five_percent_of_the_dense_product(onyx_chip):
    # issue 14: 100,16,200,200 @2% took 63,584,277 cycles (I*J*K*L) without a locator
    cycles, ok = _kernel_cycles(onyx_chip, "mttkrp", {"shape": "100,16,200,200",
                                                      "density": 0.02})
    assert ok and cycles < 0.05 * 100 * 16 * 200 * 200


def test_energy_charges_the_locator_as_pe_steps(onyx_chip):
    # a dense locate is address arithmetic in a PE: each busy cycle is a PE control step
    # (energy table action pe_control_step); it reads and writes no SRAM
    program = compile_layer(get_workload("ttv").make({"shape": "8,8,20", "density": 0.2}),
                            onyx_chip)
    result = simulate(program, onyx_chip)
    table = load_energy_table(onyx_chip.energy_table)
    full = energy_breakdown(result.stats, result.cycles, onyx_chip, table, program=program)
    loc = {k: v for k, v in result.stats.items() if ".locate." in k}
    busy = sum(v["value"] for k, v in loc.items() if k.endswith(".busy_cycles"))
    assert busy > 0
    assert sum(v["value"] for k, v in loc.items() if ".sram_" in k) == 0
    rest = {k: v for k, v in result.stats.items() if k not in loc}
    without = energy_breakdown(rest, result.cycles, onyx_chip, table, program=program)
    assert full.counts["pe_control_step"] - without.counts["pe_control_step"] == busy
    assert full.total_pj - without.total_pj == pytest.approx(
        busy * full.per_count_pj["pe_control_step"])


@pytest.mark.parametrize("formats", [("ss", "dd", "ds"), ("dd", "dd", "dd"), ("ds", "ss", "dd")])
def test_three_operand_products_locate_every_dense_level(small_chip, formats):
    # iterate the compressed levels (joined when several), locate the dense ones; with no
    # compressed level the first dense one is scanned. Both engines agree, numpy too. (Under
    # the zero policy gate: under skip, dense innermost levels holding zeros are iterated.)
    chip = dataclasses.replace(small_chip, pe=dataclasses.replace(
        small_chip.pe, zero_policy=dataclasses.replace(small_chip.pe.zero_policy, a="gate",
                                                       b="gate")))
    layer = three_way("*", shape=(7, 9), density=0.4, seed=2, formats=formats)
    program = compile_layer(layer, chip)
    kernel = program.kernels[0]
    for lvl, v in enumerate("ij"):
        dense = [t for t, f in zip("BCD", formats) if f[lvl] == "d"]
        want = dense if len(dense) < 3 else dense[1:]
        assert sorted(n.attr("tensor") for n in kernel.nodes if n.op is Opcode.LOCATE
                      and n.attr("level") == lvl) == want, v
    assert_same(kernel, program.images, chip)
    result = simulate(program, chip)
    assert np.array_equal(result.outputs["X"].to_dense(), layer.reference())
