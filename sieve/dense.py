"""The dense path of ``sieve.run``: a GEMM on a systolic array, without the SAM compiler.

A ``gemm`` layer (workloads.kernels) runs on the chip's ``systolic`` section or, on a chip
without one, on the CGRA's dense MAC block (simulator.energy.dense_mapping: 16 x 21 on Onyx),
in the dataflow the layer asks for (``-p dataflow``), else the chip's, else output-stationary.
simulator.systolic times it with SCALE-Sim v3's conventions (``compute_cycles``) and computes
the product fold by fold.

Around the kernel the controller moves the operands as the sparse path's firmware does, one
command after the other (simulator.chip's transfer formulas, setup + latency + ceil(bytes /
bandwidth)):

    cycles = DRAM->GLB(A) + GLB->array(A) + DRAM->GLB(B) + GLB->array(B)
             + kernel (compute_cycles + 1: SCALE-Sim counts the last busy cycle from 0)
             + array->GLB(C) + GLB->DRAM(C)

Operands move as dense 16-bit elements (B uncompressed even under N:M), each as one transfer
(the GLB's capacity is not checked: a larger operand is taken to stream through it). No
kernel-launch or configuration overhead is charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isa.arch import ChipConfig
from isa.fibertree import FiberTree, Level
from simulator.chip import ELEMENT_BYTES, RunResult, dram_transfer, link_transfer
from simulator.energy import EnergyReport, dense_gemm_energy, dense_mapping, load_energy_table
from simulator.stats import ControllerStats, MemoryStats, flatten
from simulator.systolic import GemmRun, SystolicArray, simulate_gemm
from workloads import KernelLayer, WorkloadError
from workloads.kernels import GEMM_PATTERNS

DENSE_WORKLOADS = frozenset({"gemm"})
"""Layer names that take the dense path instead of the SAM compiler."""

FIDELITY = "systolic"
"""The ``fidelity`` of a dense run: one model (simulator.systolic), whatever ``--fidelity``."""


def is_dense(layer: KernelLayer) -> bool:
    """True when ``layer`` runs on the systolic array rather than through the SAM compiler."""
    return layer.name in DENSE_WORKLOADS


def gemm_array(chip: ChipConfig, dataflow: str = "") -> SystolicArray:
    """The array a dense GEMM runs on: the chip's ``systolic`` section, else the CGRA's dense
    MAC block; ``dataflow`` (empty: the section's, else ``os``) picks the dataflow."""
    if chip.systolic is not None:
        rows, cols, default = chip.systolic.rows, chip.systolic.cols, chip.systolic.dataflow
    else:
        block = dense_mapping(chip)
        rows, cols, default = block.rows, block.cols, "os"
    return SystolicArray(rows, cols, dataflow or default)


def _operand(layer: KernelLayer, name: str) -> np.ndarray:
    x = layer.tensors.get(name)
    if x is None:
        raise WorkloadError(f"workload {layer.name}: tensor {name} missing (have "
                            f"{', '.join(layer.tensors)})")
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


@dataclass(frozen=True)
class DenseRun:
    """A simulated dense GEMM: the chip-level result, the array's run and where it ran."""

    result: RunResult
    gemm: GemmRun
    array: SystolicArray
    nm: tuple[int, int] | None


def simulate_dense(layer: KernelLayer, chip: ChipConfig) -> DenseRun:
    """Run a ``gemm`` layer on ``chip``'s systolic array with the DMA around it (module
    docstring). Stats: ``chip.systolic.*`` (GemmRun counters), ``chip.memory.*`` and
    ``chip.controller.*``.

    Raises: WorkloadError for an unknown pattern or dataflow, SimulationError from the array.
    """
    pattern = layer.params.get("pattern", "dense")
    if pattern not in GEMM_PATTERNS:
        raise WorkloadError(f"workload {layer.name}: parameter pattern: use one of "
                            f"{', '.join(GEMM_PATTERNS)}, got {pattern!r}")
    nm = GEMM_PATTERNS[pattern]
    dataflow = layer.params.get("dataflow", "")
    if dataflow not in ("", "os", "ws", "is"):
        raise WorkloadError(f"workload {layer.name}: parameter dataflow: use os, ws or is, "
                            f"got {dataflow!r}")
    array = gemm_array(chip, dataflow)
    a, b = _operand(layer, "A"), _operand(layer, "B")
    gemm = simulate_gemm(a, b, array, nm=nm)
    m, k = a.shape
    n = b.shape[1]
    a_bytes, b_bytes, c_bytes = (ELEMENT_BYTES * m * k, ELEMENT_BYTES * k * n,
                                 ELEMENT_BYTES * m * n)
    mem, ctl = MemoryStats(), ControllerStats()
    dma_in = [dram_transfer(chip, a_bytes), link_transfer(chip, a_bytes),
              dram_transfer(chip, b_bytes), link_transfer(chip, b_bytes)]
    dma_out = [link_transfer(chip, c_bytes), dram_transfer(chip, c_bytes)]
    mem.dram_read_bytes = mem.glb_write_bytes = a_bytes + b_bytes
    mem.glb_read_bytes = a_bytes + b_bytes + c_bytes
    mem.glb_write_bytes += c_bytes
    mem.dram_write_bytes = c_bytes
    mem.link_bytes = a_bytes + b_bytes + c_bytes
    mem.dram_busy_cycles = dma_in[0].busy_cycles + dma_in[2].busy_cycles + dma_out[1].busy_cycles
    mem.link_busy_cycles = dma_in[1].busy_cycles + dma_in[3].busy_cycles + dma_out[0].busy_cycles
    ctl.launch_count = 1
    ctl.kernel_cycles = gemm.compute_cycles + 1 if gemm.folds else 0
    ctl.dma_in_cycles = sum(t.cycles for t in dma_in)
    ctl.dma_out_cycles = sum(t.cycles for t in dma_out)
    stats: dict[str, dict[str, Any]] = {}
    flatten("chip.memory", mem, stats)
    flatten("chip.controller", ctl, stats)
    flatten("chip.systolic", gemm, stats)
    cycles = ctl.dma_in_cycles + ctl.kernel_cycles + ctl.dma_out_cycles
    out = gemm.output
    tree = FiberTree("X", (m, n), (0, 1), (Level("dense", m), Level("dense", n)),
                     out.reshape(-1))
    result = RunResult(chip.name, kernel_name(array, nm), FIDELITY, cycles,
                       cycles / (chip.clock.freq_mhz * 1e6), ctl.kernel_cycles, {"X": tree},
                       dict(sorted(stats.items())))
    return DenseRun(result, gemm, array, nm)


def kernel_name(array: SystolicArray, nm: tuple[int, int] | None) -> str:
    """``gemm_os_128x128`` (``_2of4`` appended under N:M)."""
    name = f"gemm_{array.dataflow}_{array.rows}x{array.cols}"
    return name if nm is None else f"{name}_{nm[0]}of{nm[1]}"


def check_dense_output(run: DenseRun, layer: KernelLayer) -> dict[str, Any]:
    """The output against numpy (exact for integers, rtol 1e-9 for floats); there is no ISA
    kernel for the interpreter to re-run, which is recorded as a string, never as a pass."""
    got, ref = run.gemm.output, np.asarray(layer.reference())
    if ref.dtype.kind in "iub" and got.dtype.kind in "iub":
        same = bool(np.array_equal(got, ref))
    else:
        same = bool(got.shape == ref.shape and np.allclose(got, ref, rtol=1e-9, atol=1e-12))
    return {"numpy": same,
            "interpreter": "not applicable: the dense systolic path runs no ISA kernel"}


def dense_energy(layer: KernelLayer, chip: ChipConfig) -> tuple[EnergyReport, str]:
    """The energy of the GEMM and a sentence naming the model that gave it."""
    m, k = layer.tensors["A"].shape
    n = layer.tensors["B"].shape[1]
    block = dense_mapping(chip)
    report = dense_gemm_energy(m, n, k, chip, load_energy_table(chip.energy_table))
    model = (f"simulator.energy.dense_gemm_energy with table {chip.energy_table}: a dense "
             f"INT16 GEMM at steady state on the CGRA's {block.rows}x{block.cols} dense MAC "
             "block (all M*N*K MACs, leakage over that block's own cycles), not the systolic "
             "array's timing and without N:M or zero savings")
    return report, model


def dense_summary(run: DenseRun, layer: KernelLayer, checks: dict[str, Any],
                  energy: EnergyReport, energy_model: str) -> dict[str, Any]:
    """The ``summary`` of a dense run, with the sparse path's keys where they make sense.

    Ops: a MAC is 2 ops. effectual = both operands nonzero; ineffectual = issued with a zero
    operand (the array neither gates nor skips); skipped = MACs removed by N:M compression;
    the three sum to ``dense_equivalent_ops`` = 2 M N K. ``notes`` says which keys are 0
    because the dense path has no such hardware.
    """
    result, gemm = run.result, run.gemm
    m, n = gemm.output.shape
    k = layer.tensors["A"].shape[1]
    effectual = 2 * (gemm.mac_count - gemm.zero_operand_mac_count)
    dram = (result.stats["chip.memory.dram_read_bytes"]["value"]
            + result.stats["chip.memory.dram_write_bytes"]["value"])
    glb = (result.stats["chip.memory.glb_read_bytes"]["value"]
           + result.stats["chip.memory.glb_write_bytes"]["value"])
    out: dict[str, Any] = {
        "chip": result.chip,
        "workload": layer.name,
        "kernel": result.program,
        "fidelity": result.fidelity,
        "array": f"{run.array.rows}x{run.array.cols}",
        "dataflow": run.array.dataflow,
        "pattern": "dense" if run.nm is None else f"{run.nm[0]}:{run.nm[1]}",
        "cycles": result.cycles,
        "kernel_cycles": result.kernel_cycles,
        "compute_cycles": gemm.compute_cycles,
        "seconds": result.seconds,
        "verified": checks.get("numpy") is True,
        "checks": checks,
        "effectual_ops": effectual,
        "skipped_ops": 2 * m * n * (k - gemm.schedule.k_compressed),
        "gated_ops": 0,
        "ineffectual_ops": 2 * gemm.zero_operand_mac_count,
        "skipped_zero_elements": (k - gemm.schedule.k_compressed) * n,
        "sram_read_words": 0,
        "sram_write_words": 0,
        "hop_count": 0,
        "dram_bytes": dram,
        "config_bits": 0,
        "ops": effectual,
        "dense_equivalent_ops": 2 * m * n * k,
        "glb_bytes": glb,
        "glb_link_bytes": result.stats["chip.memory.link_bytes"]["value"],
        "energy_j": energy.total_pj * 1e-12,
        "energy_table": energy.table,
        "energy_model": energy_model,
        "notes": {
            "cycles": "DMA in (A then B: DRAM->GLB, GLB->array) + kernel_cycles (compute_cycles"
                      " + 1) + DMA out (C); no launch or configuration overhead is charged",
            "compute_cycles": "SCALE-Sim v3's compute cycles (simulator.systolic)",
            "ops": "useful ops: 2 per MAC with both operands nonzero (= effectual_ops)",
            "skipped_zero_elements": "zero weights of B dropped by N:M compression",
            "sram_read_words": "0: the dense path has no MEM-tile SRAM; the array's buffer "
                               "traffic is chip.systolic.ifmap_reads/filter_reads/ofmap_writes"
                               " (elements)",
            "sram_write_words": "0: as sram_read_words",
            "hop_count": "0: the systolic array uses no CGRA interconnect",
            "config_bits": "0: configuration of the array is not modelled",
        },
    }
    return out


def dense_compute_roof(array: SystolicArray, chip: ChipConfig) -> float:
    """Peak ops/s of the array: rows x cols MACs x 2 ops x clock."""
    return array.rows * array.cols * 2 * chip.clock.freq_mhz * 1e6
