"""The ``summary`` of stats.json: a run's headline figures, all computed from the run.

One function per workload road's end: :func:`kernel_summary` for a kernel program (a SAM
graph or a systolic GEMM) and :func:`layer_summary` for a model layer. Keys are the same
wherever they make sense; ``notes`` says why a key is 0 on a path that has no such hardware.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from isa.arch import ChipConfig
from isa.ops import Opcode
from isa.program import Program, SystolicKernel
from simulator.chip import RunResult
from simulator.energy import EnergyReport

if TYPE_CHECKING:   # the layer engine loads for model layers only
    from simulator.layers import LayerRun

NOT_INDEPENDENT = ("lowering", "lowering_full_forward")
"""Checks that compare numpy with numpy (a model layer's at analytic fidelity): they check
the lowering, not the simulator, and cannot verify a run on their own."""


def verified(checks: dict[str, Any]) -> bool:
    """No check failed and at least one independent check passed (a string is a check
    skipped, with its reason)."""
    made = {k: v for k, v in checks.items() if isinstance(v, bool)}
    return (all(made.values()) and any(v for k, v in made.items()
                                       if k not in NOT_INDEPENDENT))


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
    names = ("effectual_op_count", "gated_op_count", "ineffectual_op_count")
    tiles = ([t.images for t in program.tiling.tiles] if program.tiling is not None
             else [program.images])
    dense_ops = 0
    for images in tiles:
        firings, _mem, _order = fire_kernel(kernel.with_nodes(nodes), images)
        dense_ops += sum(f.acts.get(k, 0) for f in firings.values() for k in names)
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
        "firmware_cycles": _value(result, "chip.controller.firmware_cycles"),
        "kernel_calls": _value(result, "chip.controller.launch_count"),
        "tiles": _value(result, "chip.controller.tile_count"),
        "skipped_tiles": _value(result, "chip.controller.skipped_tile_count"),
        "dense_equivalent_ops": dense_equivalent_ops,
        "glb_bytes": _value(result, "chip.memory.glb_read_bytes")
        + _value(result, "chip.memory.glb_write_bytes"),
        "glb_link_bytes": _value(result, "chip.memory.link_bytes"),
        "energy_j": energy.total_pj * 1e-12,
        "firmware_energy_j": energy.by_component.get("firmware", 0.0) * 1e-12,
        "energy_table": chip.energy_table,
    }
    if isinstance(kernel, SystolicKernel):
        out.update(_systolic_figures(result, kernel))
        return out
    out.update({
        "tiling": (program.tiling.describe() if program.tiling is not None
                   else "untiled: every level fits one MEM tile"),
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
    from simulator.layers import layer_firmware_cycles
    ls = run.layer_stats
    router_macs = run.router_macs
    fidelity = run.fidelity
    # sparse mode skips every MAC with a zero operand; dense mode issues all of them but
    # those N:M compression removes, at full energy
    chosen = list(zip(run.costs, run.modes))
    dense_macs = sum(c.dense_macs - c.macs for c, m in chosen if m == "dense")
    sparse_skipped = sum(c.equivalent_macs - (c.macs if m == "sparse" else c.dense_macs)
                         for c, m in chosen)
    eff = 2 * (run.work.products + router_macs)
    dense_eq = 2 * (run.work.dense_products + router_macs)
    out: dict[str, Any] = {
        "chip": chip.name,
        "workload": workload,
        "kernel": plan.kernel.name,
        "fidelity": fidelity,
        "cycles": run.cycles,
        "kernel_cycles": ls.experts_cycles,
        "firmware_cycles": layer_firmware_cycles(run, chip),
        "config_bits": sum(ld.bits for ld in run.config),
        "config_cycles": sum(ld.cycles for ld in run.config),
        "tile_kernel_cycles_sum": ls.kernel_cycles,
        "seconds": run.cycles / (chip.clock.freq_mhz * 1e6),
        "verified": verified(checks),
        "checks": checks,
        "effectual_ops": eff,
        "skipped_ops": 2 * sparse_skipped,
        "gated_ops": 0,
        "ineffectual_ops": 2 * dense_macs,
        "ops": eff + ls.elementwise_op_count,
        "dense_equivalent_ops": dense_eq + ls.elementwise_op_count,
        "dram_bytes": run.memory["dram_read_bytes"] + run.memory["dram_write_bytes"],
        "glb_bytes": run.memory["glb_read_bytes"] + run.memory["glb_write_bytes"],
        "glb_link_bytes": run.memory["link_bytes"],
        "energy_j": energy.total_pj * 1e-12,
        "energy_table": chip.energy_table,
        "lanes": plan.lanes if ls.sparse_product_count else 1,
        "tiles": ls.tile_count,
        "skipped_tiles": ls.skipped_tile_count,
        "tokens": tokens,
        "mode": run.mode,
        "objective": chip.compiler.objective,
        "sparse_mode_cycles": ls.sparse_mode_cycles,
        "dense_mode_cycles": ls.dense_mode_cycles,
        "modes": run.candidates,
        "products": product_modes(run),
        "tile_sample": [{k: v for k, v in t.items() if k not in ("values", "analytic_values")}
                        for t in run.sample],
        "notes": {"fidelity": why,
                  "ops": "a MAC is 2 ops; ops adds the ALU passes (activations, combine)",
                  "kernel_cycles": "the experts/products stage: from its first job to its "
                  "last (lanes in parallel, then the MAC block; each phase's configuration "
                  "where its weight DMAs do not hide it), within total cycles",
                  "tile_kernel_cycles_sum": "a sum: tile kernel cycles over every "
                  "sparse-mode tile of every lane (lanes overlap, so it may exceed cycles)",
                  "lanes": "copies of the tile kernel unrolled over the layer's jobs "
                  "(compiler.unroll; its filters deal the jobs), sparse mode; 1: the MAC "
                  "block only",
                  "mode": "per product, compiler.layer_mode (auto: the cheaper of sparse and "
                  "dense by compiler.objective, then the scheduled layer against all-sparse "
                  "and all-dense); sparse, dense or mixed. Cycles, energy and traffic are "
                  "the chosen modes'",
                  "modes": "the whole layer scheduled and priced three ways: each product "
                  "as chosen, all sparse, all dense (cycles, energy, EDP; each with the "
                  "configuration loads its modes need, config_cycles)",
                  "config_cycles": "configuration streamed (the lanes' N-copy kernel before "
                  "sparse-mode jobs, the MAC block before the router and dense-mode jobs, "
                  "once per switch); in cycles where the weight DMAs do not hide it",
                  "products": "per product kind (expert and projection, chunks summed): "
                  "cycles alone and energy in each mode, and how many chunks ran each way",
                  "sparse_mode_cycles": "experts/products stage, every product sparse",
                  "tile_sample": "analytic fidelity: the slowest tile of the first product of "
                  "each kind and the layer's slowest tile, re-run on burst (values checked, "
                  "cycle_ratio = analytic / burst cycles)",
                  "dense_mode_cycles": "experts/products stage, every product dense",
                  "straggler": "the expert whose job ends last on the lanes (None: no "
                  "sparse-mode job, or the last is a shared expert's: see straggler_product)"},
    }
    if run.experts:
        tokens = np.array([e.tokens for e in run.experts], dtype=np.float64)
        cyc = np.array([e.compute_cycles for e in run.experts], dtype=np.float64)
        # the straggler: the expert of the job that ends last on the lanes (the critical
        # path of the sparse phase); the MAC block runs products one after another, so a
        # dense-mode product is on no critical path of its own
        lane_spans = [sp for sp in run.timeline if sp["track"] == "lane"]
        last = max(lane_spans, key=lambda sp: (sp["end"], sp["lane"]), default=None)
        straggler = last["expert"] if last is not None and last["expert"] >= 0 else None
        out["experts"] = {
            "tokens": [int(t) for t in tokens],
            "compute_cycles": [int(c) for c in cyc],
            "token_gini": token_gini,
            "tokens_max_over_mean": float(tokens.max() / tokens.mean()) if tokens.sum() else 0.0,
            "cycles_max_over_mean": float(cyc.max() / cyc.mean()) if cyc.sum() else 0.0,
            "straggler": straggler,
            "straggler_product": None if last is None else last["name"],
            "straggler_finish_cycle": 0 if last is None else int(last["end"]),
            "dropped_pairs": ls.dropped_token_count,
        }
    return out


def product_modes(run: LayerRun) -> list[dict[str, Any]]:
    """Per product kind (the label without its chunk range: ``expert3.gate``,
    ``linear``): both modes' cycles alone and energy summed over its chunks, and how many
    of them ran in each mode."""
    import re

    groups: dict[str, dict[str, Any]] = {}
    for cost, mode in zip(run.costs, run.modes):
        key = re.sub(r"\[\d+:\d+\]", "", cost.label)
        g = groups.setdefault(key, {"product": key, "sparse_cycles": 0, "dense_cycles": 0,
                                    "sparse_energy_j": 0.0, "dense_energy_j": 0.0,
                                    "sparse_chunks": 0, "dense_chunks": 0})
        g["sparse_cycles"] += cost.sparse_cycles
        g["dense_cycles"] += cost.dense_cycles
        g["sparse_energy_j"] += cost.priced.get("sparse", (0, 0.0))[1]
        g["dense_energy_j"] += cost.priced.get("dense", (0, 0.0))[1]
        g[f"{mode}_chunks"] += 1
    return list(groups.values())


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
