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
def test_spmspm_512_at_1_percent_is_tiled_on_onyx(onyx_chip):
    """The issue's case: B and C hold 2,621 nonzeros (5.2 KB levels) in 4 KB MEM tiles."""
    layer = get_workload("spmspm").make({"shape": "512,512,512", "density": 0.01,
                                         "order": "ikj"})
    program = compile_layer(layer, onyx_chip)
    tiling = program.tiling
    assert tiling is not None and len(tiling.tiles) > 1
    assert level_capacity(onyx_chip) == onyx_chip.mem_tile.size_bytes // ELEMENT_BYTES == 2048
    levels_fit(program, 2048)
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


def test_pipelining_hides_the_firmware_without_changing_the_work(small_chip):
    """The same tiled Program run one tile at a time and through the depth-2 tile FIFOs:
    the same kernel cycles, firmware cycles and traffic; fewer total cycles pipelined."""
    program = compile_layer(get_workload("spmspm").make({"shape": "20,24,20",
                                                         "density": 0.15, "seed": 2}),
                            tiny_mem(small_chip, pipelined=True))
    seq = simulate(program, tiny_mem(small_chip, pipelined=False))
    pipe = simulate(program, tiny_mem(small_chip, pipelined=True))
    for key in ("kernel_cycles", "firmware_cycles", "launch_count"):
        name = f"chip.controller.{key}"
        assert pipe.stats[name] == seq.stats[name]
    assert pipe.stats["chip.memory.link_bytes"] == seq.stats["chip.memory.link_bytes"]
    assert pipe.cycles < seq.cycles


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
