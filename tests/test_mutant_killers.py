"""Exact checks that would have caught the mutants issue 12 found surviving the suite.

Each test names its mutant; each was confirmed to fail with the mutant applied:
- dropping the controller's DMA setup cycles from a DRAM transfer (simulator.chip);
- doubling the GLB read energy (simulator.energy);
- loosening the kernel output check from rtol 1e-9 to 1e-3 (simulator.checks);
- one word more or less in the analytic tile's input count (simulator.layers);
- ``round`` -> ``floor`` in the exact nonzero count of the generators (workloads).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sieve.api import run
from simulator.checks import check_outputs


def test_every_dram_dma_pays_the_controller_setup(onyx_chip):
    """Mutant: a DMA without ``controller.dma_setup_cycles``. The firmware (one M3) programs
    every descriptor one after another: the configuration stream's, then the schedule's
    moves (two inputs DRAM->GLB and GLB->array, the output back both ways), so raising the
    setup by D cycles lengthens the run by exactly D per descriptor."""
    from simulator.chip import dram_transfer

    base = run(onyx_chip, "spmspm", params={"shape": "8,8,8"})
    moves = [c for c in base.program.schedule
             if c.op in ("dma_in", "dma_out", "load", "unload", "configure")]
    assert len(moves) == 7
    slow = dataclasses.replace(onyx_chip, controller=dataclasses.replace(
        onyx_chip.controller, dma_setup_cycles=onyx_chip.controller.dma_setup_cycles + 1000))
    later = run(slow, "spmspm", params={"shape": "8,8,8"})
    assert later.result.cycles - base.result.cycles == 1000 * len(moves)
    fw = "chip.controller.firmware_cycles"
    assert (later.result.stats[fw]["value"] - base.result.stats[fw]["value"]
            == 1000 * len(moves))
    # one transfer: setup + latency + ceil(bytes / bandwidth)
    t = dram_transfer(slow, 100)
    c = slow.controller.dma_setup_cycles + slow.dram_latency_cycles
    assert t.cycles == c + int(np.ceil(100 / slow.dram_bytes_per_cycle))


def test_glb_read_energy_is_the_tables_per_word_figure(onyx_chip):
    """Mutant: GLB read energy doubled. Reads and writes of GLB words pass through the same
    voltage and overhead scaling, so their energies stand in the ratio of the table's read and
    write energies times the words moved."""
    from simulator.energy import load_energy_table

    r = run(onyx_chip, "spmspm", params={"shape": "16,16,16", "density": "0.3"})
    table = load_energy_table(onyx_chip.energy_table)
    stats = r.result.stats
    read = stats["chip.memory.glb_read_bytes"]["value"] / 8
    write = stats["chip.memory.glb_write_bytes"]["value"] / 8
    assert read > 0 and write > 0
    by = r.energy.by_action
    assert r.energy.counts["glb_read"] == pytest.approx(read)
    assert by["glb_read"] / by["glb_write"] == pytest.approx(
        (read * table.glb_read_pj) / (write * table.glb_write_pj), rel=1e-12)


def test_the_output_check_catches_a_one_in_a_million_error(onyx_chip):
    """Mutant: rtol 1e-9 -> 1e-3 in the kernel output check. A float kernel's output off by
    a relative 1e-6 (far beyond float64 rounding, well inside 1e-3) must fail the check."""
    r = run(onyx_chip, "spmspm", params={"shape": "8,8,8", "values": "float",
                                         "density": "0.5"})
    assert r.checks["numpy"] is True
    out = r.result.outputs["X"]
    bad = dataclasses.replace(out, vals=np.asarray(out.vals) * (1 + 1e-6))
    result = dataclasses.replace(r.result, outputs={**r.result.outputs, "X": bad})
    assert check_outputs(result, r.program, r.layer.reference())["numpy"] is False
    close = dataclasses.replace(out, vals=np.asarray(out.vals) * (1 + 1e-13))
    result = dataclasses.replace(r.result, outputs={**r.result.outputs, "X": close})
    assert check_outputs(result, r.program, r.layer.reference())["numpy"] is True


@pytest.mark.parametrize("name, params", [
    ("linear.bert-base.output", {"scale": "16", "tokens": "24", "weight_sparsity": "0.7"}),
    ("ffn.bert-base", {"scale": "24", "tokens": "8", "activation": "relu"}),
])
def test_analytic_tile_words_equal_the_exact_tiles(onyx_chip, name, params):
    """Mutant: one word off the analytic tile's input count. The analytic engine counts the
    words of each tile's compressed operands from densities it measures on the same tiles the
    exact (burst) engine builds, so the GLB traffic is the same to the byte. (Sparse mode:
    in dense mode the traffic is the MAC block's, which no tile count enters.)"""
    sparse = dataclasses.replace(onyx_chip, compiler=dataclasses.replace(
        onyx_chip.compiler, layer_mode="sparse"))
    ra = run(sparse, name, params=params, fidelity="analytic")
    assert ra.summary["mode"] == "sparse"
    a = ra.result.stats
    b = run(sparse, name, params=params, fidelity="burst").result.stats
    assert a["chip.layer.tile_count"]["value"] > 1
    for key in ("chip.memory.glb_read_bytes", "chip.memory.glb_write_bytes",
                "chip.memory.dram_read_bytes", "chip.layer.tile_count"):
        assert a[key]["value"] == b[key]["value"], key


@pytest.mark.parametrize("shape, density", [((7, 1), 0.5), ((5, 3), 0.7), ((9, 9), 0.95)])
def test_generators_make_exactly_round_density_times_size_nonzeros(shape, density):
    """Mutant: ``round`` -> ``floor`` in the nonzero count. 7 x 0.5 = 3.5 rounds to 4,
    15 x 0.7 = 10.5 (10.499999... in binary) to 10, 81 x 0.95 = 76.95 to 77."""
    from workloads.base import random_sparse
    from workloads.kernels import _dense_values, random_tensor

    want = int(round(density * shape[0] * shape[1]))
    rng = np.random.default_rng(0)
    assert random_sparse(rng, shape, density, "int").nnz == want
    assert np.count_nonzero(random_tensor(rng, shape, density, "int")) == want
    assert np.count_nonzero(_dense_values(rng, shape, density, "int")) == want


def test_round_and_floor_differ_on_the_cases_above():
    """The cases above distinguish the two (else the test could not kill the mutant)."""
    import math

    assert any(round(d * a * b) != math.floor(d * a * b)
               for (a, b), d in [((7, 1), 0.5), ((5, 3), 0.7), ((9, 9), 0.95)])
