"""Tiling a kernel whose levels exceed a MEM tile, and the firmware's cost (issue 14 item 4).

1. The cut: every level of every operand tile and output tile fits its MEM tile; tiles with
   an empty operand are skipped; a contracted index split gives partial outputs, merged.
2. The random cycle == burst suite over tiled kernels (one-at-a-time and pipelined tile
   calls): the whole schedule's cycles and every counter agree, the output equals numpy.
3. The firmware: its busy cycles are the descriptors, kernel calls and merges the schedule
   implies; pipelining hides them behind the tiles without changing the work.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

import sieve
from compiler.pipeline import compile_layer
from compiler.tiling import ELEMENT_BYTES, level_capacity
from isa.asm import parse_program, print_program
from isa.interp import assemble_output, run_kernel
from simulator.checks import check_outputs
from simulator.controller import simulate
from tests.test_burst import configure
from workloads import get_workload
from workloads.base import KernelLayer


def tiny_mem(chip, size_bytes: int = 64, pipelined: bool = False):
    """``chip`` with MEM tiles of ``size_bytes`` (64: 32 elements a level) so small kernels
    tile, and tile pipelining on or off."""
    return dataclasses.replace(
        chip, mem_tile=dataclasses.replace(chip.mem_tile, size_bytes=size_bytes),
        controller=dataclasses.replace(chip.controller, tile_pipelining=pipelined))


def levels_fit(program, cap: int) -> None:
    for tile in program.tiling.tiles:
        for tree in tile.images.values():
            for lv in tree.levels:
                assert lv.elements() <= cap, (tile.index, tree.name, lv.fmt)
            assert len(tree.vals) <= cap, (tile.index, tree.name)


def tile_outputs_fit(program, cap: int) -> None:
    """Each tile's output (run on the ISA interpreter) fits too."""
    kernel = program.kernels[0]
    decl = next(d for d in kernel.tensors if d.is_output)
    for tile in program.tiling.tiles:
        out = assemble_output(decl, run_kernel(kernel, tile.images).memory)
        for lv in out.levels:
            assert lv.elements() <= cap
        assert len(out.vals) <= cap


# ------------------------------------------------------------------ the cut
@pytest.mark.parametrize("pipelined", [False, True])
def test_spmspm_512_at_1_percent_is_tiled_on_onyx(onyx_chip, pipelined):
    """The issue's case: B and C hold 2,621 nonzeros (5.2 KB levels) in 4 KB MEM tiles, a
    level in all of one (one tile at a time) or in half of one (pipelined: the onyx
    default)."""
    onyx_chip = dataclasses.replace(onyx_chip, controller=dataclasses.replace(
        onyx_chip.controller, tile_pipelining=pipelined))
    layer = get_workload("spmspm").make({"shape": "512,512,512", "density": 0.01,
                                         "order": "ikj"})
    program = compile_layer(layer, onyx_chip)
    tiling = program.tiling
    assert tiling is not None and len(tiling.tiles) > 1
    cap = onyx_chip.mem_tile.size_bytes // ELEMENT_BYTES // (2 if pipelined else 1)
    assert level_capacity(onyx_chip) == cap == (1024 if pipelined else 2048)
    levels_fit(program, cap)
    # the contracted k is not split (the output variables sufficed): no partial tiles
    assert tiling.sizes[tiling.variables.index("k")] == 512
    assert not any(t.partial for t in tiling.tiles)
    # one configuration, a launch and a wait per tile, the inputs DMAed in once
    ops = [c.op for c in program.schedule]
    assert ops.count("configure") == 1 and ops.count("dma_in") == 2
    assert ops.count("launch") == ops.count("wait") == len(tiling.tiles)
    result = simulate(program, onyx_chip)
    checks = check_outputs(result, program, layer.reference())
    assert checks["numpy"] is True and checks["interpreter_sample"] is True
    assert result.stats["chip.controller.tile_count"]["value"] == len(tiling.tiles)


def test_small_kernels_are_not_tiled(small_chip):
    program = compile_layer(get_workload("spmspm").make({"shape": "16,16,16"}), small_chip)
    assert program.tiling is None
    assert all(c.tile == -1 for c in program.schedule)


@pytest.mark.parametrize("pipelined", [False, True])
def test_every_level_of_every_tile_fits(small_chip, pipelined):
    chip = tiny_mem(small_chip, pipelined=pipelined)
    cap = level_capacity(chip)
    assert cap == (16 if pipelined else 32)      # depth-2 FIFO: half a MEM tile per tile
    for name, params in [("spmspm", {"shape": "20,24,20", "density": 0.15}),
                         ("spmv", {"shape": "30,70", "density": 0.2}),
                         ("elemadd", {"shape": "24,30", "density": 0.2}),
                         ("ttv", {"shape": "6,7,8", "density": 0.3}),
                         ("mttkrp", {"shape": "5,4,6,6", "density": 0.3})]:
        layer = get_workload(name).make({**params, "seed": 3})
        program = compile_layer(layer, chip)
        assert program.tiling is not None, name
        levels_fit(program, cap)
        tile_outputs_fit(program, cap)
        result = simulate(program, chip)
        assert check_outputs(result, program, layer.reference(), "full") == {
            "numpy": True, "interpreter": True}, name


def test_contracted_split_merges_partial_outputs_in_the_glb(small_chip):
    """SpMV with a long j: c(j) alone exceeds a level, and j is contracted, so the tiles of
    one output block are partial sums the firmware merges: adds counted, GLB traffic, M3
    cycles per merged entry."""
    chip = tiny_mem(small_chip)
    layer = get_workload("spmv").make({"shape": "6,200", "density": 0.3, "seed": 1,
                                       "formats": "B:ds c:d", "order": "ij"})
    program = compile_layer(layer, chip)
    tiling = program.tiling
    assert tiling.sizes[tiling.variables.index("j")] < 200
    assert any(t.partial for t in tiling.tiles)
    result = simulate(program, chip)
    assert check_outputs(result, program, layer.reference())["numpy"] is True
    adds = result.stats["chip.controller.merge_add_count"]["value"]
    assert adds > 0
    # every partial of a row block after the first adds into it: the adds are the output
    # entries every later partial shares with the sum so far (rows of B with nonzeros in
    # more than one j tile); computed here from the data
    size = tiling.sizes[tiling.variables.index("j")]
    isz = tiling.sizes[tiling.variables.index("i")]
    b = layer.tensors["B"].toarray() if sp.issparse(layer.tensors["B"]) else layer.tensors["B"]
    c = np.asarray(layer.tensors["c"])
    expect = 0
    for i0 in range(0, 6, isz):
        seen = np.zeros(6, dtype=bool)
        for j0 in range(0, 200, size):
            part = (b[i0:i0 + isz, j0:j0 + size] != 0) & (c[j0:j0 + size] != 0)
            rows = np.zeros(6, dtype=bool)
            rows[i0:i0 + isz] = part.any(axis=1)
            if not part.any():
                continue
            expect += int((rows & seen).sum())
            seen |= rows
    assert adds == expect


def test_tiles_with_an_empty_operand_are_skipped(small_chip):
    """B's last 12 rows are empty: the tiles of those rows have an empty operand and are
    never called (their output block stays empty)."""
    chip = tiny_mem(small_chip)
    rng = np.random.default_rng(0)
    dense = (rng.random((24, 24)) < 0.3) * rng.integers(1, 5, (24, 24))
    b = sp.csr_matrix(np.vstack([dense[:12], np.zeros((12, 24), dtype=np.int64)]))
    c = sp.csr_matrix((rng.random((24, 24)) < 0.3) * rng.integers(1, 5, (24, 24)))
    layer = KernelLayer("spmspm", "X(i,j)=B(i,k)*C(k,j)", {"B": b, "C": c},
                        {"B": "ss", "C": "ss"}, "ikj", (24, 24),
                        reference_fn=lambda: (b @ c).toarray())
    program = compile_layer(layer, chip)
    assert program.tiling.skipped > 0
    result = simulate(program, chip)
    assert result.stats["chip.controller.skipped_tile_count"]["value"] == program.tiling.skipped
    assert check_outputs(result, program, layer.reference())["numpy"] is True


def test_tiled_schedule_round_trips_through_the_assembly(small_chip):
    program = compile_layer(get_workload("spmv").make({"shape": "30,70", "density": 0.2}),
                            tiny_mem(small_chip))
    assert program.tiling is not None
    text = print_program(program)
    assert " tile=1" in text
    assert parse_program(text).schedule == program.schedule


# ------------------------------------------------------------------ cycle == burst, tiled
KINDS = [("spmv", None), ("spmspm", "ikj"), ("spmspm", "ijk"), ("elemadd", None),
         ("elemmul", None), ("ttv", None), ("mttkrp", None), ("innerprod", None),
         ("ttm", None), ("sddmm", None), ("elemadd3", None)]
SEEDS = 33


BITMAP_FORMATS = {("spmspm", "ikj"): "B:sb C:bb X:sb", ("elemmul", None): "B:bb C:bb X:bb"}


def make_tiled_case(seed: int) -> dict:
    rng = np.random.default_rng(9000 + seed)
    name, order = KINDS[seed % len(KINDS)]
    rank = {"spmv": 2, "elemadd": 2, "elemmul": 2, "elemadd3": 2, "spmspm": 3, "ttv": 3,
            "sddmm": 3, "innerprod": 3, "ttm": 4, "mttkrp": 4}[name]
    hi = {2: 40, 3: 20, 4: 7}[rank]
    shape = ",".join(str(int(x)) for x in rng.integers(3, hi, size=rank))
    params = {"shape": shape, "density": float(rng.choice([0.05, 0.15, 0.3])), "seed": seed}
    if order:
        params["order"] = order
    bitmaps = BITMAP_FORMATS.get((name, order))
    if bitmaps and rng.random() < 0.5:             # bitmap operands and output (issue 14.1)
        params["formats"] = bitmaps
    return {"workload": name, "params": params, "pipelined": bool(seed % 2),
            "mem_bytes": int(rng.choice([48, 64, 96])),
            "depth": int(rng.integers(2, 5)), "hop": int(rng.integers(1, 3)),
            "policy": ("skip", "skip"), "balance": bool(rng.random() < 0.6),
            "locate": bool(rng.random() < 0.7)}


@pytest.mark.parametrize("seed", range(SEEDS))
def test_tiled_run_cycles_equal_on_both_engines(small_chip, seed):
    case = make_tiled_case(seed)
    chip = tiny_mem(configure(small_chip, case), case["mem_bytes"], case["pipelined"])
    layer = get_workload(case["workload"]).make(case["params"])
    program = compile_layer(layer, chip)
    cyc = simulate(program, chip, fidelity="cycle")
    burst = simulate(program, chip, fidelity="burst")
    assert burst.cycles == cyc.cycles
    assert burst.stats == cyc.stats
    assert check_outputs(burst, program, layer.reference())["numpy"] is True


def test_tiled_suite_covers_the_space(small_chip):
    cases = [make_tiled_case(s) for s in range(SEEDS)]
    assert {c["workload"] for c in cases} == {k for k, _ in KINDS}
    assert {c["pipelined"] for c in cases} == {True, False}
    tiled = partial = 0
    for case in cases:
        chip = tiny_mem(configure(small_chip, case), case["mem_bytes"], case["pipelined"])
        program = compile_layer(get_workload(case["workload"]).make(case["params"]), chip)
        tiled += program.tiling is not None
        partial += program.tiling is not None and any(t.partial for t in program.tiling.tiles)
    assert tiled >= 25 and partial >= 5      # 27 and 6 with these seeds
    assert any("b" in c["params"].get("formats", "") for c in cases)


# ------------------------------------------------------------------ the firmware
def test_firmware_cycles_are_the_schedule_s_descriptors_calls_and_merges(small_chip):
    chip = tiny_mem(small_chip)
    c = chip.controller
    layer = get_workload("spmv").make({"shape": "6,200", "density": 0.3, "seed": 1,
                                       "formats": "B:ds c:d", "order": "ij"})
    program = compile_layer(layer, chip)
    result = simulate(program, chip)
    moves = sum(cmd.op in ("configure", "dma_in", "load", "unload", "dma_out")
                for cmd in program.schedule)
    calls = sum(cmd.op == "launch" for cmd in program.schedule)
    merged = (result.stats["chip.memory.glb_read_bytes"]["value"]
              + result.stats["chip.memory.glb_write_bytes"]["value"])
    # the GLB bytes besides the merges: DMA in, loads, unloads, DMA out (each counted once)
    plain = sum(cmd.size_bytes for cmd in program.schedule if cmd.op in ("dma_in", "load"))
    plain += result.stats["chip.memory.dram_write_bytes"]["value"]    # dma_out reads it
    unloaded = result.stats["chip.memory.link_bytes"]["value"] - sum(
        cmd.size_bytes for cmd in program.schedule if cmd.op == "load")
    entries = (merged - plain - unloaded) // ((1 + 1) * ELEMENT_BYTES)   # rank-1 output
    assert entries > 0
    fw = result.stats["chip.controller.firmware_cycles"]["value"]
    assert fw == (moves * c.dma_setup_cycles + calls * c.launch_cycles
                  + entries * c.merge_cycles_per_element)


def _firmware_per_schedule(program, chip, pipelined: bool, merges: int) -> tuple[int, int]:
    """(firmware cycles, kernel calls) the schedule implies: one at a time, a descriptor per
    move and a kernel call per tile; pipelined, per run of ``pipelined_tiles_per_call`` tiles
    one kernel call, one chained load descriptor per input the run loads and one store
    descriptor per output; either way a descriptor for the configuration, each input's DMA
    into the GLB and the output's out, and ``merge_cycles_per_element`` per merged entry."""
    c = chip.controller
    sched = program.schedule
    whole = sum(cmd.op in ("configure", "dma_in", "dma_out") for cmd in sched)
    fw = whole * c.dma_setup_cycles + merges * c.merge_cycles_per_element
    tiles = len(program.tiling.tiles)
    if not pipelined:
        moves = sum(cmd.op in ("load", "unload") for cmd in sched)
        return fw + moves * c.dma_setup_cycles + tiles * c.launch_cycles, tiles
    per = c.pipelined_tiles_per_call
    runs = [range(r, min(r + per, tiles)) for r in range(0, tiles, per)]
    for run in runs:
        inputs = {cmd.arg for cmd in sched if cmd.op == "load" and cmd.tile in run}
        outputs = {cmd.arg for cmd in sched if cmd.op == "unload" and cmd.tile in run}
        fw += c.launch_cycles + (len(inputs) + len(outputs)) * c.dma_setup_cycles
    return fw, len(runs)


def one_at_a_time(program):
    """``program`` with its tile calls run one at a time: the controller runs a tiled
    Program in the mode its Tiling carries (the compiler's), never the chip's."""
    return dataclasses.replace(program, tiling=dataclasses.replace(program.tiling,
                                                                   pipelined=False))


@pytest.mark.parametrize("per_call", [32, 3])
def test_pipelining_streams_runs_of_tiles_through_one_call(small_chip, per_call):
    """The same tiled Program run one tile at a time and pipelined: the same kernel cycles
    and traffic; the firmware's work is the schedule's (derived above): a kernel call and
    descriptors per tile one at a time, per run of tiles pipelined; fewer total cycles."""
    layer = get_workload("spmspm").make({"shape": "20,24,20", "density": 0.15, "seed": 2})
    pipe_chip = tiny_mem(small_chip, pipelined=True)
    pipe_chip = dataclasses.replace(pipe_chip, controller=dataclasses.replace(
        pipe_chip.controller, pipelined_tiles_per_call=per_call))
    program = compile_layer(layer, pipe_chip)
    tiles = len(program.tiling.tiles)
    assert tiles > 3 and not any(t.partial for t in program.tiling.tiles)
    seq_chip = tiny_mem(small_chip, pipelined=False)
    assert program.tiling.pipelined
    seq = simulate(one_at_a_time(program), seq_chip)
    pipe = simulate(program, pipe_chip)
    assert pipe.stats["chip.controller.kernel_cycles"] == seq.stats["chip.controller.kernel_cycles"]
    assert pipe.stats["chip.memory.link_bytes"] == seq.stats["chip.memory.link_bytes"]
    for chip, run, pipelined in ((seq_chip, seq, False), (pipe_chip, pipe, True)):
        fw, calls = _firmware_per_schedule(program, chip, pipelined, 0)
        assert run.stats["chip.controller.firmware_cycles"]["value"] == fw
        assert run.stats["chip.controller.launch_count"]["value"] == calls
    assert pipe.stats["chip.controller.launch_count"]["value"] == -(-tiles // per_call)
    assert pipe.cycles < seq.cycles
    assert check_outputs(pipe, program, layer.reference())["numpy"] is True


def test_pipelined_firmware_keeps_the_merges(small_chip):
    """A contracted split's partial tiles are still merged by the firmware per entry when
    the tiles stream: only the calls and descriptors become per run."""
    chip = tiny_mem(small_chip, pipelined=True)
    layer = get_workload("spmv").make({"shape": "6,200", "density": 0.3, "seed": 1,
                                       "formats": "B:ds c:d", "order": "ij"})
    program = compile_layer(layer, chip)
    assert any(t.partial for t in program.tiling.tiles)
    seq = simulate(one_at_a_time(program), tiny_mem(small_chip, pipelined=False))
    pipe = simulate(program, chip)
    adds = "chip.controller.merge_add_count"
    assert pipe.stats[adds] == seq.stats[adds] and pipe.stats[adds]["value"] > 0
    c = chip.controller
    fw_seq = seq.stats["chip.controller.firmware_cycles"]["value"]
    merged = fw_seq - _firmware_per_schedule(program, chip, False, 0)[0]
    assert merged > 0 and merged % c.merge_cycles_per_element == 0
    fw, _ = _firmware_per_schedule(program, chip, True, merged // c.merge_cycles_per_element)
    assert pipe.stats["chip.controller.firmware_cycles"]["value"] == fw
    assert check_outputs(pipe, program, layer.reference())["numpy"] is True


def test_firmware_energy_is_its_cycles_at_the_chip_s_price(onyx_chip):
    report = sieve.run(onyx_chip, "spmspm", params={"shape": "512,512,512",
                                                    "density": 0.01, "order": "ikj"})
    s = report.summary
    assert s["tiles"] > 1 and s["firmware_cycles"] > 0
    assert report.energy.counts["firmware"] == s["firmware_cycles"]
    assert report.energy.by_component["firmware"] == pytest.approx(
        s["firmware_cycles"] * onyx_chip.controller.firmware_pj_per_cycle)
    assert s["firmware_energy_j"] == pytest.approx(report.energy.by_component["firmware"]
                                                   * 1e-12)


# ------------------------------------------------------------------ the cut's cost
def _cut_inputs(layer, chip):
    """What plan_tiling measures: the operands and the output as compiler.tiling tensors."""
    import compiler.tiling as tl
    from compiler.notation import parse_expr, parse_order
    from compiler.pipeline import build_images

    assign = parse_expr(layer.expr)
    order = parse_order(layer.order, assign)
    images, _ = build_images(layer)
    tensors = [tl._operand(a.tensor, images[a.tensor], a.indices) for a in assign.operands]
    pattern = tl.output_pattern(assign, images)
    tensors.append(tl._Tensor("X", assign.out.indices, pattern, None,
                              ("compressed",) * 2, (0, 1)))
    extents = {v: n for a in assign.operands for v, n in zip(a.indices, images[a.tensor].shape)}
    return tl, assign, order, images, tensors, extents


def test_cut_cost_sees_the_rewalk_of_co_iterated_levels(onyx_chip):
    """SpM*SpM ikj, C compressed: C's k level is co-iterated with every row of B, so a cut
    of j (each j tile holds its own copy of C's k level) walks that level again per row of B
    in every extra j tile; a cut of i does not (each i tile walks its own rows). The cost's
    difference is that re-walk: nonempty rows of B x C's stored k coordinates, within the
    (independence-assumed) averages of the work bound."""
    layer = get_workload("spmspm").make({"shape": "512,512,512", "density": 0.01,
                                         "order": "ikj"})
    tl, assign, order, images, tensors, extents = _cut_inputs(layer, onyx_chip)
    one = dict.fromkeys(order, 1)
    cost_i = tl._cost(assign, order, tensors, 1, *tl._split("i", dict(extents), one, extents),
                      onyx_chip)
    cost_j = tl._cost(assign, order, tensors, 1, *tl._split("j", dict(extents), one, extents),
                      onyx_chip)
    b = sp.csr_matrix(layer.tensors["B"])
    c = sp.csr_matrix(layer.tensors["C"])
    rows_b = int((np.diff(b.indptr) > 0).sum())
    rows_c = int((np.diff(c.indptr) > 0).sum())
    rewalk = rows_b * rows_c                    # ~509 x ~509
    assert 0.8 * rewalk < cost_j - cost_i < 1.2 * rewalk, (cost_j - cost_i, rewalk)


@pytest.mark.parametrize("pipelined,cut", [(False, {"i": 4, "k": 1, "j": 2}),
                                            (True, {"i": 4, "k": 1, "j": 8})])
def test_no_split_of_the_cut_is_needless(onyx_chip, pipelined, cut):
    """After the greedy, halving any variable's tile count either overflows a level or costs
    more (the coarsening pass): SpM*SpM 512^3 @1% ikj keeps 8 tiles (i in 4, j in 2) one at a
    time, where the greedy alone, splitting the output's rows before C forces a j cut, made
    16; pipelined (half a MEM tile a level) C's 1,024-element levels force j into 8."""
    onyx_chip = dataclasses.replace(onyx_chip, controller=dataclasses.replace(
        onyx_chip.controller, tile_pipelining=pipelined))
    layer = get_workload("spmspm").make({"shape": "512,512,512", "density": 0.01,
                                         "order": "ikj"})
    tl, assign, order, images, tensors, extents = _cut_inputs(layer, onyx_chip)
    tiling = tl.plan_tiling(assign, order, images, onyx_chip)
    sizes = dict(zip(tiling.variables, tiling.sizes))
    counts = {v: -(-extents[v] // sizes[v]) for v in order}
    assert counts == cut
    cap = tl.level_capacity(onyx_chip)
    best = tl._cost(assign, order, tensors, 1, sizes, counts, onyx_chip)
    for v in order:
        if counts[v] == 1:
            continue
        c = {**counts, v: -(-counts[v] // 2)}
        sz = {**sizes, v: -(-extents[v] // c[v])}
        fits = all(t.measure(sz, c)[0] <= cap for t in tensors)
        assert not fits or tl._cost(assign, order, tensors, 1, sz, c, onyx_chip) > best, v


@pytest.mark.parametrize("pipelined", [False, True])
def test_tiled_unrolled_runs_equal_on_both_engines(onyx_chip, pipelined):
    """A tiled kernel whose tile calls run an unrolled graph (3 copies), one tile at a time
    and streamed: the whole schedule's cycles and every counter agree on both engines."""
    chip = dataclasses.replace(
        onyx_chip, mem_tile=dataclasses.replace(onyx_chip.mem_tile, size_bytes=256),
        controller=dataclasses.replace(onyx_chip.controller, tile_pipelining=pipelined),
        compiler=dataclasses.replace(onyx_chip.compiler, unroll=3))
    layer = get_workload("spmspm").make({"shape": "32,24,32", "density": 0.12, "seed": 4,
                                         "order": "ikj"})
    program = compile_layer(layer, chip)
    assert program.tiling is not None and len(program.tiling.tiles) > 2
    assert program.unroll.copies == 3
    cyc = simulate(program, chip, fidelity="cycle")
    burst = simulate(program, chip, fidelity="burst")
    assert burst.cycles == cyc.cycles
    assert burst.stats == cyc.stats
    assert check_outputs(burst, program, layer.reference())["output_copies"] is True
