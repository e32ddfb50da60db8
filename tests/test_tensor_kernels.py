"""The SAM/Onyx tensor kernels end to end: SDDMM, TTV, TTM, the 3-tensor inner product and
MTTKRP (three operands, rank-3 tensors, several contracted indices, rank-3 and scalar
outputs).

1. The pieces: index notation with three operands and scalar outputs, rank-0 and rank-3
   fibertrees, the crddrop ``prune`` mode (paper notation, and its burst firing table against
   the behaviour), and the shape of the lowered graphs (joiner chains, reducer chains).
2. Every kernel against numpy (exact integers) and the ISA interpreter at densities 0, one
   nonzero, ~10%, ~33% and 100%, with empty slices, other formats and loop orders.
3. cycle == burst on a seeded random suite (identical cycles and every count).
4. Unsupported expressions: one CompileError naming the pass.
5. The command line runs each kernel and verifies it.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from compiler.lower import lower_assignment
from compiler.notation import parse_expr, parse_order
from compiler.pipeline import compile_layer, dense_equivalent_ops, lower_layer
from isa.asm import parse_program, print_program
from isa.bitstream import decode, encode
from isa.errors import CompileError, IsaError
from isa.fibertree import FiberTree
from isa.interp import assemble_output, run_kernel, run_unit
from isa.ops import Opcode
from isa.program import Kernel, Node, TensorDecl
from isa.tokens import format_tokens, tokens
from sieve.cli import main
from simulator.engine_burst import fire_kernel, run_burst, solve_times
from tests.conftest import ROOT
from tests.test_burst import (
    assert_same,
    configure,
    each_call,
    test_firing_table_matches_the_behaviour,
)
from tests.test_burst import make_case as make_2d_case
from workloads import KernelLayer, WorkloadError, get_workload

SMALL = str(ROOT / "configs/chips/onyx-small.yaml")
TENSOR_KERNELS = ("sddmm", "ttv", "ttm", "innerprod", "mttkrp")
TINY = {"sddmm": "6,7,5", "ttv": "5,6,7", "ttm": "4,5,3,6", "innerprod": "5,6,7",
        "mttkrp": "4,5,3,6"}


def b_size(name: str, shape: str) -> int:
    """Entries of the operand B (the one ``density`` draws) for a kernel's shape."""
    return int(get_workload(name).make({"shape": shape}).tensors["B"].size)


def simulate_and_check(layer: KernelLayer, chip) -> FiberTree:
    """Compile, run on the burst engine and the interpreter; both must equal numpy and each
    other. Returns the simulated output tree."""
    program = compile_layer(layer, chip)
    kernel = program.kernels[0]
    decl = next(d for d in kernel.tensors if d.is_output)
    sim = assemble_output(decl, run_burst(kernel, program.images, chip).memory)
    ref = np.asarray(layer.reference())
    got = sim.to_dense()
    assert got.shape == ref.shape
    if ref.dtype.kind == "f":
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    else:
        assert got.dtype.kind in "iu" and np.array_equal(got, ref)
    interp = assemble_output(decl, run_kernel(kernel, program.images).memory)
    assert np.array_equal(interp.to_dense(), got)
    for a, b in zip(sim.levels, interp.levels):
        assert np.array_equal(a.seg, b.seg) and np.array_equal(a.crd, b.crd)
    if sim.levels:   # a dropped output stores no empty fiber and no reduction of nothing
        assert (np.diff(sim.levels[-1].seg) > 0).all() or sim.nnz == 0
    return sim


# ----------------------------------------------------------------------------- 1. pieces
def test_notation_takes_three_operands_and_scalar_outputs():
    a = parse_expr("X(i,j)=B(i,j)*C(i,k)*D(j,k)")
    assert a.op == "*" and [x.tensor for x in a.operands] == ["B", "C", "D"]
    assert a.index_vars == ("i", "j", "k")
    for text in ("x=B(i,j,k)*C(i,j,k)", "x()=B(i,j,k)*C(i,j,k)", " x = B(i,j,k) * C(i,j,k)"):
        s = parse_expr(text)
        assert s.out.tensor == "x" and s.out.indices == ()
        assert parse_order(None, s) == ("i", "j", "k")
    assert parse_expr("X(i,j)=B(i,j)+C(i,j)+D(i,j)").op == "+"


@pytest.mark.parametrize("expr,message", [
    ("X(i,j)=B(i,j)*C(i,j)+D(i,j)", "parse: .* mixing \\* and \\+"),
    ("X(i)=A(i)*B(i)*C(i)*D(i)", "parse: .* two or three operands .*got 4"),
    ("X(i)=B(i)", "parse: .* two or three operands .*got 1"),
    ("X(i,j)=B(i,j)+C(i,j)+D(i)", "parse: .*'\\+' needs every operand indexed like the output"),
    ("x(=B(i)*C(i)", "parse: .*not a tensor access"),
])
def test_notation_errors(expr, message):
    with pytest.raises(CompileError, match=message):
        parse_expr(expr)


def test_scalar_and_rank3_fibertrees():
    s = FiberTree.from_dense("x", np.array(7), ())
    assert s.levels == () and s.vals.tolist() == [7] and s.to_dense().shape == ()
    assert int(s.to_dense()) == 7
    assert FiberTree.from_dense("x", np.array(0), ()).vals.tolist() == [0]   # always a value
    with pytest.raises(IsaError, match="a scalar has one value"):
        FiberTree.from_coo("x", (), np.zeros((2, 0)), np.array([1, 2]), ())
    rng = np.random.default_rng(3)
    t = rng.integers(1, 9, size=(4, 5, 6)) * (rng.random((4, 5, 6)) < 0.3)
    t[1] = 0                                                        # an empty slice
    for fmts, order in [(("compressed",) * 3, None), (("dense", "compressed", "dense"),
                                                      (2, 0, 1))]:
        tree = FiberTree.from_dense("B", t, fmts, order)
        tree.check()
        assert np.array_equal(tree.to_dense(), t)
        coords, vals = tree.coo()
        assert np.array_equal(t[tuple(coords.T)], vals)


def drop(outer: str, inner: str, prune: bool) -> dict[str, str]:
    node = Node.make("u", Opcode.CRDDROP, prune=prune)
    outs, _acts, _steps = run_unit(node, {"outer": tokens(outer), "inner": tokens(inner)})
    return {p: format_tokens(t) for p, t in outs.items()}


def test_crddrop_prune_merges_the_stops_of_emptied_outer_fibers():
    # outer j fibers per i: i0 {1}, i1 {2}; j=2 has an empty k fiber, so i1 keeps nothing:
    # without prune the inner output closes a phantom fiber for i1 ("S1 S2"), with prune the
    # closing stop of i0's fiber is owed and merged into the final S2
    assert drop("1 S0 2 S1 D", "5 S1 S2 D", prune=False) == {"outer": "1 S0 S1 D",
                                                             "inner": "5 S1 S2 D"}
    assert drop("1 S0 2 S1 D", "5 S1 S2 D", prune=True) == {"outer": "1 S0 S1 D",
                                                            "inner": "5 S2 D"}
    # an emptied middle fiber disappears; an emptied first fiber leaves no leading stop
    assert drop("1 S0 2 S0 3 S1 D", "5 S1 S1 7 S2 D", prune=True)["inner"] == "5 S1 7 S2 D"
    assert drop("1 S0 2 S0 3 S1 D", "S1 S1 7 S2 D", prune=True)["inner"] == "7 S2 D"
    # within one outer fiber the separator is S0, as without prune
    assert drop("1 2 S0 D", "5 S0 6 S1 D", prune=True)["inner"] == "5 S0 6 S1 D"
    # nothing kept: no fiber at all
    assert drop("S0 D", "S1 D", prune=True) == {"outer": "S0 D", "inner": "D"}


PRUNE_CASES = [
    dict(outer="1 S0 2 S1 D", inner="5 S1 S2 D"),
    dict(outer="1 S0 2 S0 3 S1 D", inner="5 S1 S1 7 S2 D"),
    dict(outer="1 S0 2 S0 3 S1 D", inner="S1 S1 7 S2 D"),
    dict(outer="0 1 S0 S0 0 1 2 S1 D", inner="0 S0 4 5 S1 S1 S0 6 S0 S2 D"),
    dict(outer="1 2 S0 3 S1 D", inner="5 S0 6 7 S1 S2 D"),
    dict(outer="S1 D", inner="S2 D"),
]


@pytest.mark.parametrize("streams", PRUNE_CASES)
@pytest.mark.parametrize("prune", [False, True])
def test_crddrop_firing_table_matches_the_behaviour(streams, prune):
    test_firing_table_matches_the_behaviour("crddrop", Opcode.CRDDROP, {"prune": prune},
                                            streams)


def _kernel(name: str, params: dict | None = None, chip=None) -> Kernel:
    layer = get_workload(name).make({"shape": TINY[name], **(params or {})})
    return lower_layer(layer, chip)[0]


def _ops(kernel: Kernel, op: Opcode) -> list[Node]:
    return [n for n in kernel.nodes if n.op is op]


def test_lowered_graphs_follow_sam(small_chip):
    # SDDMM: two multiplying ALUs in a chain, one reducer (k), droppers j<-k and i<-j
    k = _kernel("sddmm", {"order": "ijk"}, chip=small_chip)
    alus = _ops(k, Opcode.ALU)
    assert [a.attr("op") for a in alus] == ["mul", "mul"]
    assert any(e.src == alus[0].id and e.dst == alus[1].id for e in k.edges)
    assert [n.id for n in _ops(k, Opcode.REDUCE)] == ["reduce_k"]
    assert [n.id for n in _ops(k, Opcode.CRDDROP)] == ["drop_jk", "drop_ij"]
    # MTTKRP: reducers chained innermost first (l, then k), droppers k<-l, j<-k, i<-j
    k = _kernel("mttkrp", {"order": "ijkl"}, chip=small_chip)
    reds = _ops(k, Opcode.REDUCE)
    assert [n.id for n in reds] == ["reduce_l", "reduce_k"]
    assert any(e.src == "reduce_l" and e.dst == "reduce_k" for e in k.edges)
    assert all(n.attr("drop_empty") for n in reds)
    assert [n.id for n in _ops(k, Opcode.CRDDROP)] == ["drop_kl", "drop_jk", "drop_ij"]
    # TTM: three output levels; the level-2 writer reads a pruning dropper
    k = _kernel("ttm", {"order": "ijkl"}, chip=small_chip)
    writer2 = next(e for e in k.edges if e.dst == "write_X2")
    assert writer2.src == "drop_jk" and writer2.src_port == "inner"
    assert {n.id: n.attr("prune") for n in _ops(k, Opcode.CRDDROP)} == {
        "drop_kl": False, "drop_jk": True, "drop_ij": False}
    # the inner product: three reducers, the last always emits its value; no coordinates
    k = _kernel("innerprod", {"order": "ijk"}, chip=small_chip)
    assert [n.attr("drop_empty") for n in _ops(k, Opcode.REDUCE)] == [True, True, False]
    assert not _ops(k, Opcode.WRITE_CRD) and len(_ops(k, Opcode.WRITE_VAL)) == 1
    assert next(d for d in k.tensors if d.is_output).shape == ()


@pytest.mark.parametrize("name", TENSOR_KERNELS)
def test_programs_round_trip_through_assembly_and_bitstream(small_chip, name):
    program = compile_layer(get_workload(name).make({"shape": TINY[name]}), small_chip)
    kernel = program.kernels[0]
    assert parse_program(print_program(program)).kernels[0] == kernel
    assert decode(encode(kernel)) == kernel


def three_way(op: str, shape=(6, 7), density=0.4, seed=0, formats=("ss", "ss", "ss")):
    """X(i,j) = B op C op D element-wise: every index shared by three operands."""
    rng = np.random.default_rng(seed)
    ts = {n: rng.integers(1, 10, size=shape) * (rng.random(shape) < density) for n in "BCD"}
    ref = ts["B"] * ts["C"] * ts["D"] if op == "*" else ts["B"] + ts["C"] + ts["D"]
    return KernelLayer(f"three_{'mul' if op == '*' else 'add'}", f"X(i,j)=B(i,j){op}C(i,j){op}"
                       f"D(i,j)", ts, dict(zip("BCD", formats)), "ij", shape, {},
                       lambda: ref)


@pytest.mark.parametrize("op", ["*", "+"])
def test_three_way_join_is_a_chain_of_two_input_joiners(small_chip, op):
    layer = three_way(op)
    kernel = lower_layer(layer, small_chip)[0]
    join = Opcode.INTERSECT if op == "*" else Opcode.UNION
    # per index: the first two, the result with D, and C's reference realigned
    assert len(_ops(kernel, join)) == 6 and len(_ops(kernel, Opcode.ALU)) == 2
    for seed in range(4):
        for density in (0.0, 0.3, 1.0):
            simulate_and_check(three_way(op, density=density, seed=seed), small_chip)
    simulate_and_check(three_way(op, formats=("ds", "ss", "dd")), small_chip)


def test_dense_equivalent_ops_count_every_operand():
    t = get_workload("sddmm").make({"shape": "4,5,6"})
    assert dense_equivalent_ops(t.expr, t.tensors) == 4 * 5 * 6 * 3     # 2 mul + 1 add
    t = get_workload("innerprod").make({"shape": "4,5,6"})
    assert dense_equivalent_ops(t.expr, t.tensors) == 4 * 5 * 6 * 2
    t = get_workload("mttkrp").make({"shape": "2,3,4,5"})
    assert dense_equivalent_ops(t.expr, t.tensors) == 2 * 3 * 4 * 5 * 3
    layer = three_way("+")
    assert dense_equivalent_ops(layer.expr, layer.tensors) == 6 * 7 * 2
    t = get_workload("elemmul").make({"shape": "4,5"})
    assert dense_equivalent_ops(t.expr, t.tensors) == 20


# ----------------------------------------------------------------------------- 2. numpy
def density_cases(name: str) -> list[float]:
    """0, exactly one nonzero in B, ~10%, ~33%, 100%."""
    return [0.0, 1.0 / b_size(name, TINY[name]), 0.1, 0.33, 1.0]


@pytest.mark.parametrize("name", TENSOR_KERNELS)
@pytest.mark.parametrize("case", range(5), ids=["zero", "one", "10pct", "33pct", "full"])
def test_kernel_equals_numpy(small_chip, name, case):
    density = density_cases(name)[case]
    layer = get_workload(name).make({"shape": TINY[name], "density": density, "seed": case})
    b = layer.tensors["B"]
    assert np.count_nonzero(b) == round(density * b.size)
    out = simulate_and_check(layer, small_chip)
    if density == 0.0 and name != "innerprod":
        assert out.nnz == 0


@pytest.mark.parametrize("name", TENSOR_KERNELS)
def test_empty_slices_and_sparse_factors(small_chip, name):
    for seed in range(3):
        layer = get_workload(name).make({"shape": TINY[name], "density": 0.5,
                                         "empty_rows": 0.5, "seed": seed})
        b = layer.tensors["B"]
        assert (b.reshape(b.shape[0], -1) == 0).all(axis=1).any()    # some slice is empty
        simulate_and_check(layer, small_chip)
    if name != "innerprod":
        for fd in (0.0, 0.1, 0.5):
            layer = get_workload(name).make({"shape": TINY[name], "factor_density": fd,
                                             "seed": 7})
            simulate_and_check(layer, small_chip)


@pytest.mark.parametrize("name,params", [
    ("sddmm", {"formats": "C:ss D:ss", "factor_density": 0.5}),
    ("sddmm", {"formats": "B:ds C:sd D:ds"}),
    ("sddmm", {"order": "ikj"}),                 # D stored k-major, a vector reducer over k
    ("ttv", {"formats": "c:s", "factor_density": 0.5}),
    ("ttv", {"formats": "B:dsd"}),
    ("ttv", {"order": "ikj"}),                   # B stored (i,k,j), vector reducer over k
    ("ttm", {"order": "ijlk"}),                  # C stored l-major, vector reducer over l
    ("ttm", {"formats": "B:sds C:ds", "factor_density": 0.4}),
    ("innerprod", {"order": "kji"}),
    ("innerprod", {"formats": "B:dss C:ssd"}),
    ("mttkrp", {"formats": "B:sss C:dd D:dd", "factor_density": 0.6}),
    ("mttkrp", {"order": "ijlk"}),               # B stored (i,l,k)
    # ijk: the vector reducer (ikj) sums floats in another order in the burst engine than
    # in the interpreter (1 ulp apart); the scalar reducers agree exactly
    ("ttv", {"values": "float", "order": "ijk"}),
    ("mttkrp", {"values": "float", "density": 0.5}),
    ("innerprod", {"values": "float", "density": 0.0}),
])
def test_other_formats_orders_and_values(small_chip, name, params):
    for seed in range(2):
        layer = get_workload(name).make({"shape": TINY[name], "seed": seed, **params})
        simulate_and_check(layer, small_chip)


def test_natural_formats_follow_the_loop_order():
    assert get_workload("sddmm").make({"order": "ikj"}).formats == {
        "B": "ss", "C": "dd", "D": "dd:1,0"}
    assert get_workload("ttm").make({"order": "ijlk"}).formats == {"B": "sss", "C": "dd:1,0"}
    assert get_workload("innerprod").make({"order": "kji"}).formats == {
        "B": "sss:2,1,0", "C": "sss:2,1,0"}


# ----------------------------------------------------------------------------- 3. engines
SUITE_FORMATS = {
    "sddmm": ["", "C:ss D:ss", "B:ds C:dd D:ss"],
    "ttv": ["", "c:s", "B:dss"],
    "ttm": ["", "B:sds", "C:ds", "C:ss"],
    "innerprod": ["", "B:dss", "C:sds"],
    "mttkrp": ["", "C:ss D:ss", "B:dss", "C:sd D:dd"],
}
SUITE_ORDERS = {"ttm": ["ijkl", "ijlk"], "innerprod": ["ijk", "kij"], "sddmm": ["ijk", "ikj"]}
SUITE_DENSITIES = [0.0, 0.05, 0.2, 0.33, 0.6, 1.0]
SUITE = 60


def make_case(seed: int) -> dict:
    rng = np.random.default_rng(5000 + seed)
    name = str(rng.choice(TENSOR_KERNELS + ("three_mul", "three_add")))
    case = {"name": name, "depth": int(rng.integers(1, 9)), "hop": int(rng.integers(1, 4)),
            "policy": (str(rng.choice(["skip", "gate", "none"])),
                       str(rng.choice(["skip", "gate", "none"]))),
            "balance": bool(rng.random() < 0.6), "seed": seed,
            "density": float(rng.choice(SUITE_DENSITIES))}
    if name.startswith("three"):
        return case
    ndim = len(TINY[name].split(","))
    params = {"shape": ",".join(str(int(x)) for x in rng.integers(1, 6, size=ndim)),
              "density": case["density"], "seed": seed,
              "empty_rows": float(rng.choice([0.0, 0.0, 0.4]))}
    if name != "innerprod":
        params["factor_density"] = float(rng.choice([1.0, 1.0, 0.5, 0.1]))
    orders = SUITE_ORDERS.get(name, [""])
    params["order"] = str(rng.choice(orders))
    if params["order"] == orders[0]:     # formats with their own mode order: default order
        params["formats"] = str(rng.choice(SUITE_FORMATS[name]))
    case["params"] = params
    case["locate"] = bool(rng.random() < 0.75)
    return case


def case_layer(case: dict) -> KernelLayer:
    if case["name"].startswith("three"):
        return three_way("*" if case["name"] == "three_mul" else "+", shape=(5, 4),
                         density=case["density"], seed=case["seed"])
    return get_workload(case["name"]).make(case["params"])


@pytest.mark.parametrize("seed", range(SUITE))
def test_burst_equals_cycle_on_tensor_kernels(small_chip, seed):
    case = make_case(seed)
    chip = configure(small_chip, case)
    program = compile_layer(case_layer(case), chip)
    assert_same(program.kernels[0], program.images, chip)


def test_suite_covers_the_space():
    cases = [make_case(s) for s in range(SUITE)]
    assert {c["name"] for c in cases} == set(TENSOR_KERNELS) | {"three_mul", "three_add"}
    assert {c["depth"] for c in cases} == set(range(1, 9))
    assert {c["hop"] for c in cases} == {1, 2, 3}
    assert {c["density"] for c in cases} == set(SUITE_DENSITIES)
    assert {p for c in cases for p in c["policy"]} == {"skip", "gate", "none"}
    orders = {(c["name"], c["params"].get("order")) for c in cases if "params" in c}
    assert {("ttm", "ijlk"), ("innerprod", "kij"), ("sddmm", "ikj")} <= orders
    assert any(c.get("params", {}).get("empty_rows") for c in cases)


def test_suites_cover_locators(small_chip):
    # both random suites lower some cases with locators, some with dense levels co-iterated
    # (compiler.locate off, or no compressed partner) and some with bitmap levels
    located = co_iterated = bitmaps = 0
    for case in [make_case(s) for s in range(SUITE)] + [make_2d_case(s) for s in range(220)]:
        layer = case_layer(case) if "name" in case else get_workload(case["workload"]).make(
            case["params"])
        kernel = lower_layer(layer, configure(small_chip, case))[0]
        ops = [n.op for n in kernel.nodes]
        located += Opcode.LOCATE in ops
        co_iterated += any(n.op is Opcode.SCAN and n.attr("fmt") == "dense" for n in
                           kernel.nodes) and Opcode.INTERSECT in ops
        bitmaps += any(n.op is Opcode.SCAN and n.attr("fmt") == "bitmap"
                       or n.op is Opcode.SCAN_BV for n in kernel.nodes)
    assert located >= 40 and co_iterated >= 20 and bitmaps >= 20


WINDOW_CASES = ([("2d", s) for s in (10, 57) + tuple(range(0, 220, 11))]
                + [("tensor", s) for s in range(0, SUITE, 4)])


@pytest.mark.parametrize("suite,seed", WINDOW_CASES)
def test_one_step_windows_equal_cycle(small_chip, suite, seed):
    # the timing solver's windows at their smallest (a step or so per unit: every window's
    # cut is shrunk to a downset and solved on its own) on cases of both random suites,
    # including two that deadlock
    if suite == "2d":
        case = make_2d_case(seed)
        layer = get_workload(case["workload"]).make(case["params"])
    else:
        case = make_case(seed)
        layer = case_layer(case)
    chip = configure(small_chip, case)
    program = compile_layer(layer, chip)
    assert_same(program.kernels[0], program.images, chip, window=1)


def test_windows_settle_back_pressure_loops_in_few_sweeps(onyx_chip):
    # SDDMM with dense factors: the k-level dropper stalls the pipeline once per (i,j), one
    # sweep each when the whole run is one window, which then runs out of sweeps and is
    # solved step by step; solved in small windows, every window settles in a few sweeps;
    # the times are the same (one copy of the graph: an unrolled one stalls per copy)
    one_copy = dataclasses.replace(onyx_chip, compiler=dataclasses.replace(onyx_chip.compiler,
                                                                           unroll=1))
    program = compile_layer(get_workload("sddmm").make({"shape": "12,12,8", "order": "ijk"}),
                            one_copy)
    kernel = program.kernels[0]
    firings, _mem, order = fire_kernel(kernel, program.images)
    whole, stats = solve_times(kernel, firings, order, onyx_chip, window=10**9)
    assert stats.windows == 1 and stats.sequential == 1
    windowed, stats = solve_times(kernel, firings, order, onyx_chip, window=64)
    assert stats.windows > 4 and stats.max_sweeps <= 12 and stats.sequential == 0
    assert all(np.array_equal(whole[u], windowed[u]) for u in whole)


@pytest.mark.slow
@pytest.mark.parametrize("name", TENSOR_KERNELS)
def test_burst_equals_cycle_at_default_size(onyx_chip, name):
    program = compile_layer(get_workload(name).make({}), onyx_chip)
    for images in each_call(program):
        assert_same(program.kernels[0], images, onyx_chip)


# ----------------------------------------------------------------------------- 4. errors
def _lower(expr: str, order: str, shapes: dict[str, tuple[int, ...]],
           formats: dict[str, str] | None = None):
    assign = parse_expr(expr)
    formats = formats or {}
    decls = {}
    for acc in assign.operands:
        shape = shapes[acc.tensor]
        fmts = formats.get(acc.tensor, ("compressed",) * len(shape))
        decls[acc.tensor] = TensorDecl(acc.tensor, shape, fmts, tuple(range(len(shape))))
    n = len(assign.out.indices)
    decls[assign.out.tensor] = TensorDecl(assign.out.tensor, (4,) * n, ("compressed",) * n,
                                          tuple(range(n)), True)
    return lower_assignment(assign, tuple(order), decls)


@pytest.mark.parametrize("expr,order,shapes,message", [
    ("X(i,j)=B(i,k,l)*C(j,k)*D(j,l)", "ikjl", {"B": (4, 4, 4), "C": (4, 4), "D": (4, 4)},
     r"^lower: .*several contracted indices \(k,l\) every contracted index must come after "
     "every output index"),
    ("X(i,j)=B(i,k)*C(k,j)", "kij", {"B": (4, 4), "C": (4, 4)},
     r"^lower: .*at most one output index"),
    ("X(i)=B(i)*c()", "i", {"B": (4,), "c": ()}, r"^lower: .*operand c is a scalar"),
    ("X(i,j,k)=B(i,j,l)*C(k,l)", "ijlk", {"B": (4, 4, 4), "C": (4, 4)},
     r"^lower: tensor C is stored in mode order 0,1 .* \(e.g. format ss:1,0\)"),
])
def test_unsupported_expressions_raise_one_compile_error(expr, order, shapes, message):
    with pytest.raises(CompileError, match=message):
        _lower(expr, order, shapes)


def test_workload_order_errors_name_the_parameter(small_chip):
    with pytest.raises(WorkloadError, match="parameter order: a permutation of ijkl"):
        get_workload("mttkrp").make({"order": "ijk"})
    layer = get_workload("mttkrp").make({"order": "ikjl", "shape": "2,2,2,2"})
    with pytest.raises(CompileError, match="^lower: .*several contracted indices"):
        lower_layer(layer, small_chip)


def test_reduction_errors_come_before_any_graph(small_chip):
    # the same message through the pipeline, from a catalog workload
    layer = get_workload("ttm").make({"shape": "2,2,2,2", "formats": "C:ss", "order": "ijlk"})
    with pytest.raises(CompileError, match="^lower: tensor C .* mode order"):
        compile_layer(layer, small_chip)


# ----------------------------------------------------------------------------- 5. CLI
@pytest.mark.parametrize("name", TENSOR_KERNELS)
def test_cli_runs_and_verifies(tmp_path, capsys, name):
    out = tmp_path / name
    rc = main(["run", SMALL, name, "-p", f"shape={TINY[name]}", "--out", str(out),
               "--check", "full"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "output verified" in text and "True" in text
    doc = json.loads((out / "stats.json").read_text())
    summary = doc["summary"]
    assert summary["verified"] is True and summary["checks"] == {"numpy": True,
                                                                 "interpreter": True}
    assert summary["workload"] == name and summary["cycles"] > summary["kernel_cycles"] > 0
    assert summary["effectual_ops"] <= summary["dense_equivalent_ops"]
    assert json.loads((out / "workload.json").read_text())["name"] == name
    assert (out / "program.s").read_text().startswith(".program")


@pytest.mark.slow
@pytest.mark.parametrize("name", TENSOR_KERNELS)
def test_cli_default_kernel_on_onyx(tmp_path, capsys, name):
    rc = main(["run", str(ROOT / "configs/chips/onyx.yaml"), name, "--out",
               str(tmp_path / name)])
    assert rc == 0 and "True" in capsys.readouterr().out


def test_both_engines_give_the_same_summary(small_chip):
    import sieve

    runs = [sieve.run(small_chip, "mttkrp", params={"shape": "3,4,3,4"}, fidelity=f)
            for f in ("cycle", "burst")]
    a, b = (dataclasses.replace(r).summary for r in runs)
    assert a.pop("fidelity") == "cycle" and b.pop("fidelity") == "burst"
    assert a == b and a["verified"] is True
