"""The ``summary`` of stats.json: a run's headline figures, all computed from the run.

One function per workload road's end: :func:`kernel_summary` for a kernel program (a SAM
graph or a systolic GEMM) and :func:`layer_summary` for a model layer. Keys are the same
wherever they make sense; ``notes`` says why a key is 0 on a path that has no such hardware.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from isa.arch import ChipConfig
from isa.ops import Opcode
from isa.program import Program, SystolicKernel
from simulator.chip import RunResult
from simulator.energy import EnergyReport
from simulator.layers import LayerRun


def verified(checks: dict[str, Any]) -> bool:
    """Every check made passed and the numpy check was made."""
    return (bool(checks) and checks.get("numpy") is True
            and all(v is True or isinstance(v, str) for v in checks.values()))


def skipped_ops(program: Program, result: RunResult) -> int:
    """ALU ops avoided by zero-skipping scanners: ops of the same kernel with skipping off
    (the burst engine's functional pass, equal to the interpreter's) minus the ops the run
    performed."""
    from simulator.engine_burst import fire_kernel

    kernel = program.kernels[0]
    if not any(n.op is Opcode.SCAN and n.attr("skip_zeros") for n in kernel.nodes):
        return 0
    nodes = tuple(dataclasses.replace(n, attrs=tuple((k, False if k == "skip_zeros" else v)
                                                     for k, v in n.attrs))
                  if n.op is Opcode.SCAN else n for n in kernel.nodes)
    firings, _mem, _order = fire_kernel(kernel.with_nodes(nodes), program.images)
    names = ("effectual_op_count", "gated_op_count", "ineffectual_op_count")
    dense_ops = sum(f.acts.get(k, 0) for f in firings.values() for k in names)
    return dense_ops - sum(result.total(k) for k in names)


def _value(result: RunResult, name: str) -> int:
    return int(result.stats[name]["value"])


def kernel_summary(result: RunResult, program: Program, chip: ChipConfig, workload: str,
                   checks: dict[str, Any], energy: EnergyReport,
                   dense_equivalent_ops: int) -> dict[str, Any]:
    """The summary of a kernel program's run."""
    kernel = program.kernels[0]
    out: dict[str, Any] = {
        "chip": result.chip,
        "workload": workload,
        "kernel": kernel.name,
        "fidelity": result.fidelity,
        "cycles": result.cycles,
        "kernel_cycles": result.kernel_cycles,
        "seconds": result.seconds,
        "verified": verified(checks),
        "checks": checks,
        "sram_read_words": result.total("sram_read_words"),
        "sram_write_words": result.total("sram_write_words"),
        "hop_count": result.total("hop_count"),
        "dram_bytes": _value(result, "chip.memory.dram_read_bytes")
        + _value(result, "chip.memory.dram_write_bytes"),
        "config_bits": _value(result, "chip.controller.config_bits"),
        "dense_equivalent_ops": dense_equivalent_ops,
        "glb_bytes": _value(result, "chip.memory.glb_read_bytes")
        + _value(result, "chip.memory.glb_write_bytes"),
        "glb_link_bytes": _value(result, "chip.memory.link_bytes"),
        "energy_j": energy.total_pj * 1e-12,
        "energy_table": chip.energy_table,
    }
    if isinstance(kernel, SystolicKernel):
        out.update(_systolic_figures(result, kernel))
        return out
    out.update({
        "effectual_ops": result.total("effectual_op_count"),
        "skipped_ops": skipped_ops(program, result),
        "gated_ops": result.total("gated_op_count"),
        "ineffectual_ops": result.total("ineffectual_op_count"),
        "skipped_zero_elements": result.total("skipped_zero_count"),
    })
    out["ops"] = out["effectual_ops"] + result.total("add_count")
    return out


def _systolic_figures(result: RunResult, kernel: SystolicKernel) -> dict[str, Any]:
    """Ops of a GEMM: a MAC is 2 ops. effectual = both operands nonzero; ineffectual =
    issued with a zero operand (the array neither gates nor skips); skipped = MACs removed
    by N:M compression; the three sum to ``dense_equivalent_ops`` = 2 M N K."""
    gemm = result.kernel_runs[kernel.name].gemm
    m, n, k = kernel.mnk
    effectual = 2 * (gemm.mac_count - gemm.zero_operand_mac_count)
    return {
        "array": f"{kernel.rows}x{kernel.cols}",
        "dataflow": kernel.dataflow,
        "pattern": "dense" if kernel.nm is None else f"{kernel.nm[0]}:{kernel.nm[1]}",
        "compute_cycles": gemm.compute_cycles,
        "effectual_ops": effectual,
        "skipped_ops": 2 * m * n * (k - gemm.schedule.k_compressed),
        "gated_ops": 0,
        "ineffectual_ops": 2 * gemm.zero_operand_mac_count,
        "skipped_zero_elements": (k - gemm.schedule.k_compressed) * n,
        "ops": effectual,
        "notes": {
            "cycles": "configure (concurrent), DMA in (A then B: DRAM->GLB, GLB->array), "
                      "launch, kernel_cycles (compute_cycles + 1), DMA out (C): the same "
                      "firmware as every kernel (simulator.controller)",
            "compute_cycles": "SCALE-Sim v3's compute cycles (simulator.systolic)",
            "ops": "useful ops: 2 per MAC with both operands nonzero (= effectual_ops)",
            "skipped_zero_elements": "zero weights of B dropped by N:M compression",
            "sram_read_words": "0: MEM-tile SRAM counters are SAM units'; the array's buffer "
                               "traffic is chip.systolic.ifmap_reads/filter_reads/ofmap_writes"
                               " (elements) and its energy is simulator.energy."
                               "systolic_actions'",
            "sram_write_words": "0: as sram_read_words",
            "hop_count": "0: as sram_read_words (the MAC block's operand hops are charged "
                         "as energy actions)",
        },
    }


def layer_summary(run: LayerRun, workload: str, tokens: int, plan: Any, chip: ChipConfig,
                  checks: dict[str, Any], energy: EnergyReport, why: str,
                  token_gini: float | None = None) -> dict[str, Any]:
    """The ``summary`` of stats.json for a model layer (a MAC is 2 ops)."""
    ls = run.layer_stats
    router_macs = run.router_macs
    fidelity = run.fidelity
    dense = run.mode == "dense"
    eff = 2 * (run.work.products + router_macs)
    dense_eq = 2 * (run.work.dense_products + router_macs)
    out: dict[str, Any] = {
        "chip": chip.name,
        "workload": workload,
        "kernel": plan.kernel.name,
        "fidelity": fidelity,
        "cycles": run.cycles,
        "kernel_cycles": ls.experts_cycles if dense else run.work.kernel_cycles,
        "seconds": run.cycles / (chip.clock.freq_mhz * 1e6),
        "verified": verified(checks),
        "checks": checks,
        "effectual_ops": eff,
        # sparse mode never issues a product with a zero operand; dense mode issues them all
        "skipped_ops": 0 if dense else 2 * (run.work.dense_products - run.work.products),
        "gated_ops": 0,
        "ineffectual_ops": 2 * (run.work.dense_products - run.work.products) if dense else 0,
        "ops": eff + ls.elementwise_op_count,
        "dense_equivalent_ops": dense_eq + ls.elementwise_op_count,
        "dram_bytes": run.memory["dram_read_bytes"] + run.memory["dram_write_bytes"],
        "glb_bytes": run.memory["glb_read_bytes"] + run.memory["glb_write_bytes"],
        "glb_link_bytes": run.memory["link_bytes"],
        "energy_j": energy.total_pj * 1e-12,
        "energy_table": chip.energy_table,
        "lanes": 1 if dense else plan.lanes,
        "tiles": 0 if dense else run.work.tiles,
        "skipped_tiles": 0 if dense else run.work.skipped_tiles,
        "tokens": tokens,
        "mode": run.mode,
        "sparse_mode_cycles": ls.sparse_mode_cycles,
        "dense_mode_cycles": ls.dense_mode_cycles,
        "notes": {"fidelity": why,
                  "ops": "a MAC is 2 ops; ops adds the ALU passes (activations, combine)",
                  "kernel_cycles": "sparse mode: tile kernel cycles summed over all tiles and "
                  "lanes; dense mode: the MAC block's experts/products stage",
                  "lanes": "copies of the tile kernel (sparse mode); 1: the MAC block",
                  "mode": "compiler.layer_mode (auto: the faster of sparse and dense mode, "
                  "both scheduled; cycles, energy and traffic are the chosen mode's)",
                  "sparse_mode_cycles": "experts/products stage on the SAM lanes",
                  "dense_mode_cycles": "experts/products stage on the dense MAC block"},
    }
    if run.experts:
        tokens = np.array([e.tokens for e in run.experts], dtype=np.float64)
        cyc = np.array([e.compute_cycles for e in run.experts], dtype=np.float64)
        straggler = int(np.argmax([e.finish_cycle for e in run.experts]))
        out["experts"] = {
            "tokens": [int(t) for t in tokens],
            "compute_cycles": [int(c) for c in cyc],
            "token_gini": token_gini,
            "tokens_max_over_mean": float(tokens.max() / tokens.mean()) if tokens.sum() else 0.0,
            "cycles_max_over_mean": float(cyc.max() / cyc.mean()) if cyc.sum() else 0.0,
            "straggler": straggler,
            "straggler_finish_cycle": int(run.experts[straggler].finish_cycle),
            "dropped_pairs": ls.dropped_token_count,
        }
    return out


def summarize(result: RunResult, program: Program, chip: ChipConfig, workload: str,
              checks: dict[str, Any], energy: EnergyReport, *, dense_equivalent_ops: int = 0,
              tokens: int = 0, why: str = "") -> dict[str, Any]:
    """The summary of any run: :func:`layer_summary` for a model layer's Program (its
    ``tokens`` and ``why`` its fidelity), :func:`kernel_summary` otherwise."""
    if program.jobs:
        run = result.kernel_runs["layer"]
        return layer_summary(run, workload, tokens, program.layout.plan, chip, checks, energy,
                             why, run.token_gini)
    return kernel_summary(result, program, chip, workload, checks, energy,
                          dense_equivalent_ops)
