"""Dense GEMMs through the front door (``sieve run CHIP gemm``): a systolic kernel
(compiler.dense, simulator.engine_systolic), its SCALE-Sim v3 equalities, the DMA around it,
its checks, errors and reports.

Golden compute cycles are scalesim 3.0.0's on a 128x128 array (our runs of SCALE-Sim v3, Raj et
al., ISPASS 2025, with CALC bandwidth and 1 MiB SRAMs; benchmarks/bench_systolic.py reruns them;
tests/test_systolic.py checks the same figures on simulator.systolic).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sieve
from compiler.dense import dense_mapping
from isa.arch import ELEMENT_BYTES
from isa.errors import ConfigError
from sieve.cli import main
from simulator.chip import dram_transfer, link_transfer, transfer_time
from simulator.config import dump_chip, load_chip
from simulator.systolic import SystolicArray, gemm_cycles
from workloads import WorkloadError, get_workload
from workloads.kernels import prune_nm

ROOT = Path(__file__).resolve().parent.parent
SYSTOLIC = str(ROOT / "configs/chips/systolic-128.yaml")
ONYX = str(ROOT / "configs/chips/onyx.yaml")


def gemm(chip: str, shape: str, **params: str) -> sieve.Report:
    return sieve.run(chip, "gemm", params={"shape": shape, **params})


# ---- SCALE-Sim v3 equalities through sieve.run ----------------------------------------------

@pytest.mark.parametrize("shape,dataflow,pattern,cycles", [
    ("512,512,512", "os", "dense", 12_255),   # scalesim 3.0.0: 16 x 766 - 1
    ("512,512,512", "ws", "dense", 14_303),   # scalesim 3.0.0: 16 x 894 - 1
    ("512,512,512", "ws", "2:4", 7_151),      # scalesim 3.0.0: K' = 256, 8 x 894 - 1
    ("256,256,256", "is", "dense", 2_551),    # 2 x 2 x (256 + 256 + 128 - 2) - 1
    ("1024,1024,1024", "os", "dense", 81_791),  # scalesim 3.0.0: 64 x 1278 - 1
])
def test_compute_cycles_equal_scalesim(shape, dataflow, pattern, cycles):
    report = gemm(SYSTOLIC, shape, dataflow=dataflow, pattern=pattern)
    s = report.summary
    assert s["compute_cycles"] == cycles
    assert s["kernel_cycles"] == cycles + 1
    assert s["verified"] is True and s["checks"]["numpy"] is True
    assert s["cycles"] > s["compute_cycles"]
    assert (s["array"], s["dataflow"], s["pattern"]) == ("128x128", dataflow, pattern)
    assert report.result.stats["chip.systolic.compute_cycles"]["value"] == cycles
    assert report.result.stats["chip.systolic.compute_cycles"]["unit"] == "cycles"


def test_dataflow_defaults_to_the_chips(tmp_path):
    assert gemm(SYSTOLIC, "256,256,256").summary["dataflow"] == "os"
    chip = load_chip(SYSTOLIC, ["systolic.dataflow=ws"])
    report = sieve.run(chip, "gemm", params={"shape": "256,256,256"})
    assert report.summary["dataflow"] == "ws"
    assert report.summary["compute_cycles"] == 2_551


def test_total_cycles_are_the_dma_around_the_kernel():
    m, n, k = 200, 96, 300
    report = gemm(SYSTOLIC, f"{m},{n},{k}")
    chip = report.chip
    a, b, c = (ELEMENT_BYTES * x for x in (m * k, k * n, m * n))
    # every transfer is one DMA descriptor the firmware programs (dma_setup_cycles: inside
    # dram_transfer, added to the GLB->array links' transfer time)
    setup = chip.controller.dma_setup_cycles
    dma_in = sum(t.cycles for t in (dram_transfer(chip, a), link_transfer(chip, a),
                                    dram_transfer(chip, b), link_transfer(chip, b))) + 2 * setup
    dma_out = link_transfer(chip, c).cycles + setup + dram_transfer(chip, c).cycles
    s, stats = report.summary, report.result.stats
    launch = chip.controller.launch_cycles        # the firmware's launch, as for every kernel
    assert s["cycles"] == dma_in + launch + s["compute_cycles"] + 1 + dma_out
    # the firmware was busy for the five descriptors and the kernel call (the configuration
    # stream's descriptor too, concurrent with the loads)
    assert s["firmware_cycles"] == 7 * setup + launch
    assert stats["chip.controller.dma_in_cycles"]["value"] == dma_in
    assert stats["chip.controller.dma_out_cycles"]["value"] == dma_out
    assert stats["chip.memory.dram_read_bytes"]["value"] == a + b
    assert stats["chip.memory.dram_write_bytes"]["value"] == c
    assert s["dram_bytes"] == a + b + c
    assert report.result.seconds == pytest.approx(s["cycles"] / 850e6)


def test_transfer_formula():
    # setup + latency + ceil(bytes / bandwidth); an empty transfer costs setup + latency
    assert transfer_time(100, 20.075, 85, 200).cycles == 200 + 85 + 5
    assert transfer_time(100, 20.075, 85, 200).busy_cycles == 5
    assert transfer_time(0, 32.0, 6).cycles == 6


def test_onyx_without_a_systolic_section_uses_the_dense_mac_block():
    chip = load_chip(ONYX)
    assert chip.systolic is None
    block = dense_mapping(chip)
    assert (block.rows, block.cols) == (16, 21)
    report = gemm(ONYX, "100,50,70")
    s = report.summary
    assert s["array"] == "16x21" and s["dataflow"] == "os"
    assert s["compute_cycles"] == gemm_cycles(100, 50, 70, SystolicArray(16, 21, "os"))
    assert s["verified"] is True
    assert s["roofs"]["compute_ops_per_s"] == pytest.approx(16 * 21 * 2 * 850e6)


# ---- ops, data, checks -----------------------------------------------------------------------

def test_ops_add_up_to_the_dense_equivalent():
    m, n, k = 64, 40, 36
    report = gemm(SYSTOLIC, f"{m},{n},{k}", density="0.5", pattern="2:4", dataflow="ws")
    s, layer = report.summary, report.layer
    a, b = layer.tensors["A"], layer.tensors["B"]
    both_nonzero = int((a != 0).astype(np.int64).sum(axis=0) @ (b != 0).sum(axis=1))
    assert s["effectual_ops"] == s["ops"] == 2 * both_nonzero
    assert s["dense_equivalent_ops"] == 2 * m * n * k
    assert s["skipped_ops"] == 2 * m * n * (k - k // 2)         # K' = 18 of 36
    assert s["effectual_ops"] + s["ineffectual_ops"] + s["skipped_ops"] == 2 * m * n * k
    assert s["gated_ops"] == s["sram_read_words"] == s["hop_count"] == 0
    assert s["energy_j"] > 0
    # the array's actions are the MACs it issued (K' = 18 of 36 under 2:4)
    gemm_run = report.result.kernel_runs[report.program.kernels[0].name].gemm
    assert report.energy.counts["mac"] + report.energy.counts["mac_ineffectual"] == \
        gemm_run.mac_count == m * n * (k // 2)


def test_float_values_are_verified():
    report = gemm(SYSTOLIC, "130,70,90", values="float", dataflow="is")
    assert report.summary["verified"] is True
    assert report.result.outputs["X"].to_dense().dtype == np.float64


def test_nm_pattern_keeps_the_largest_magnitudes():
    rng = np.random.default_rng(1)
    b = rng.normal(size=(10, 6))                # K = 10: two full groups of 4 and one of 2
    kept = prune_nm(b, (2, 4))
    for col in range(6):
        for lo in (0, 4, 8):
            group, out = b[lo:lo + 4, col], kept[lo:lo + 4, col]
            top = np.argsort(-np.abs(group), kind="stable")[:2]
            assert set(np.flatnonzero(out)) == set(top)
            assert np.array_equal(out[top], group[top])
    layer = get_workload("gemm").make({"shape": "8,8,16", "pattern": "1:4", "seed": "3"})
    groups = (layer.tensors["B"] != 0).reshape(4, 4, 8).sum(axis=1)
    assert groups.max() <= 1


def test_baseline_is_the_cpu_gemm():
    report = sieve.run(SYSTOLIC, "gemm", params={"shape": "256,128,64"}, baseline="xeon-12c")
    base = report.summary["baseline"]
    assert base["cpu"] == "xeon-12c"
    assert base["flops"] == base["dense_equivalent_flops"] == 2 * 256 * 128 * 64
    assert base["speedup"] > 0 and base["roofs"]["compute_ops_per_s"] > 0


# ---- config and errors ---------------------------------------------------------------------

def test_systolic_section_loads_and_round_trips(tmp_path):
    chip = load_chip(SYSTOLIC)
    assert chip.systolic is not None
    assert (chip.systolic.rows, chip.systolic.cols, chip.systolic.dataflow) == (128, 128, "os")
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_chip(chip))
    assert load_chip(path) == chip
    assert load_chip(ONYX).array == chip.array          # the CGRA sections are onyx.yaml's


def test_bad_systolic_section_is_one_config_error():
    with pytest.raises(ConfigError) as exc:
        load_chip(SYSTOLIC, ["systolic.rows=0", "systolic.dataflow=xs", "systolic.colss=4"])
    lines = [line.strip() for line in str(exc.value).splitlines()[1:]]
    assert "systolic.rows: must be >= 1" in lines
    assert "systolic.dataflow: must be one of os, ws, is (got 'xs')" in lines
    assert "systolic.colss: unknown key (did you mean cols?)" in lines


@pytest.mark.parametrize("params,message", [
    ({"dataflow": "xs"}, "parameter dataflow"),
    ({"pattern": "3:4"}, "parameter pattern"),
    ({"shape": "8,8"}, "expected 3 positive sizes"),
    ({"density": "1.5"}, "must be in [0, 1]"),
])
def test_bad_parameters_are_one_workload_error(params, message):
    with pytest.raises(WorkloadError, match=message.replace("[", r"\[")):
        sieve.run(SYSTOLIC, "gemm", params={"shape": "8,8,8", **params})


@pytest.mark.parametrize("args,message", [
    (["-p", "dataflow=xs"], "parameter dataflow: use one of os, ws, is"),
    (["-p", "pattern=2:8"], "parameter pattern: use one of dense, 2:4, 1:4, 4:8"),
    (["-c", "systolic.rows=0"], "systolic.rows: must be >= 1"),
])
def test_cli_errors_exit_2_without_a_traceback(args, message, capsys):
    assert main(["run", SYSTOLIC, "gemm", "-p", "shape=8,8,8"] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


# ---- CLI and reports -------------------------------------------------------------------------

def test_cli_run_writes_a_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", SYSTOLIC, "gemm", "-p", "shape=192,160,144", "-p", "pattern=2:4",
                 "--baseline", "xeon-12c", "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "gemm (gemm_os_128x128_2of4) on systolic-128" in text
    assert "compute cycles (dense GEMM, SCALE-Sim v3)" in text and "True" in text
    doc = json.loads((out / "stats.json").read_text())
    cycles = gemm_cycles(192, 160, 144, SystolicArray(128, 128, "os"), (2, 4))
    assert doc["summary"]["compute_cycles"] == cycles
    assert doc["stats"]["chip.systolic.compute_cycles"]["value"] == cycles
    assert doc["summary"]["baseline"]["cpu"] == "xeon-12c"
    for name in ("report.html", "summary.md", "roofline.png", "energy.png", "config.yaml",
                 "workload.json"):
        assert (out / name).is_file(), name
    from isa.asm import parse_program

    program = parse_program((out / "program.s").read_text())   # the gemm's Program
    assert [k.kind for k in program.kernels] == ["systolic"]
    assert program.kernels[0].nm == (2, 4)
    assert "gemm" in (out / "report.html").read_text()


def test_gemm_is_listed_with_its_parameters(capsys):
    assert main(["list", "workloads"]) == 0
    text = capsys.readouterr().out
    for word in ("gemm", "-p shape=128,128,128", "-p pattern=dense", "-p dataflow=",
                 "-p density=1.0"):
        assert word in text


def test_compile_prints_the_gemm_program(capsys):
    from isa.asm import parse_program, print_program
    from sieve.cli import main

    assert main(["compile", "configs/chips/onyx.yaml", "gemm", "-p", "shape=8,6,4"]) == 0
    text = capsys.readouterr().out
    program = parse_program(text)
    assert print_program(program) == text
    kernel = program.kernels[0]
    assert (kernel.rows, kernel.cols, kernel.dataflow, kernel.mnk) == (16, 21, "os", (8, 6, 4))
    assert [c.op for c in program.schedule] == ["configure", "dma_in", "load", "dma_in", "load",
                                                "launch", "wait", "unload", "dma_out"]
    assert main(["compile", "configs/chips/onyx.yaml", "gemm", "--emit", "dot"]) == 2
    assert "systolic kernel" in capsys.readouterr().err


def test_nm_weights_move_compressed_and_oversized_gemms_are_refused():
    """Issue 15: an N:M GEMM moves B's kept values plus their position bits, not dense B;
    a GEMM whose inputs exceed the GLB gets the sparse path's clear error."""
    from isa.errors import CompileError

    M, N, K = 64, 64, 128
    dense = sieve.run(ONYX, "gemm", params={"shape": f"{M},{N},{K}"}).summary
    nm = sieve.run(ONYX, "gemm", params={"shape": f"{M},{N},{K}", "pattern": "2:4"}).summary
    b_dense = K * N * ELEMENT_BYTES
    b_nm = K * N // 2 * ELEMENT_BYTES + K * N // 2 * 2 // 8     # values + 2-bit positions
    assert dense["dram_bytes"] - nm["dram_bytes"] == b_dense - b_nm
    assert nm["verified"] and nm["energy_j"] < dense["energy_j"]
    with pytest.raises(CompileError, match="global buffer"):
        sieve.run(ONYX, "gemm", params={"shape": "2048,2048,2048"})


def test_block_sparse_weights_move_as_bsr():
    """Issue 15: a block-pruned B moves as BSR (kept blocks' values, one block-column index
    per kept block, K/bk + 1 block-row pointers; 2 bytes each); the MAC block still issues
    every MAC, so cycles stay the dense ones and the zero blocks' MACs are ineffectual."""
    M, N, K = 64, 64, 128
    shape = f"{M},{N},{K}"
    dense = sieve.run(ONYX, "gemm", params={"shape": shape}).summary
    block = sieve.run(ONYX, "gemm", params={"shape": shape, "pattern": "block16x8",
                                            "weight_sparsity": "0.75"}).summary
    blocks = (K // 16) * (N // 8)
    kept = blocks // 4                                  # round((1 - 0.75) x 64) = 16
    b_bsr = (kept * 16 * 8 + kept + K // 16 + 1) * ELEMENT_BYTES
    assert dense["dram_bytes"] - block["dram_bytes"] == K * N * ELEMENT_BYTES - b_bsr
    assert block["compute_cycles"] == dense["compute_cycles"] and block["skipped_ops"] == 0
    assert block["ineffectual_ops"] == 3 * 2 * M * N * K // 4 and block["verified"]
    assert block["energy_j"] < dense["energy_j"]


def test_gemm_weight_sparsity_needs_a_block_pattern():
    """weight_sparsity applies to block patterns only; anything else is one clear error."""
    with pytest.raises(WorkloadError, match="weight_sparsity"):
        get_workload("gemm").make({"weight_sparsity": "0.5"})
    with pytest.raises(WorkloadError, match="weight_sparsity"):
        get_workload("gemm").make({"pattern": "block4x4", "weight_sparsity": "1.5"})
    with pytest.raises(WorkloadError, match="pattern"):
        get_workload("gemm").make({"pattern": "blockx"})
