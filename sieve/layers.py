"""The model-layer path of :func:`sieve.run`: MoE, FFN and linear layers on the array's lanes.

compiler.layers.plan_layer places the tile kernel on column bands; simulator.layers runs the
layer's tiles (fidelity ``analytic``, ``burst`` or ``cycle``), checks the output against the
layer's numpy forward pass, and counts energy; baselines.layer_estimate gives the CPU.

Fidelity. ``--fidelity`` picks the tile engine. Left to the chip's default (``burst``), a
layer whose estimated effectual MACs exceed :data:`BURST_MAX_MACS` runs ``analytic`` (the
per-row tile model, tested against burst in tests/test_layers.py) and the summary says so.

Verification (docs/fidelity.md): the assembled output must equal the numpy forward pass of
the same weights, routing and activations within rtol 1e-4 of the output's largest magnitude
(the tiles hold float32 values; the reference is float64). Layers with at most
:data:`FULL_FORWARD_MAX_WEIGHTS` weights are also checked against ``layer.reference()``, an
independent forward pass that regenerates every weight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from baselines import CpuEstimate, CpuPreset, layer_estimate
from compiler.layers import plan_layer
from isa.arch import ChipConfig
from isa.errors import SimulationError
from isa.fibertree import FiberTree, Level
from simulator.chip import RunResult
from simulator.energy import EnergyReport, load_energy_table
from simulator.layers import (
    WORD_BYTES,
    ExpertStats,
    LayerEngine,
    LayerRun,
    LayerStats,
    cdiv,
    layer_energy,
)
from simulator.stats import ControllerStats, MemoryStats, flatten

BURST_MAX_MACS = 500_000
"""Above this many estimated effectual MACs a layer left at the default fidelity runs
``analytic`` (burst simulates every token of every tile: ~5 s per million MACs here)."""

FULL_FORWARD_MAX_WEIGHTS = 8_000_000
"""Largest layer (weights) also checked against the independent full forward pass."""

RTOL = 1e-4


def is_model_layer(layer: Any) -> bool:
    return getattr(layer, "kind", None) in ("moe", "ffn", "linear")


def _ffn_weights(w: Any) -> int:
    return sum(m.shape[0] * m.shape[1] for m in w.matrices())


def weight_count(layer: Any) -> int:
    if layer.kind == "moe":
        return (sum(_ffn_weights(w) for w in layer.experts + layer.shared)
                + layer.router.shape[0] * layer.router.shape[1])
    if layer.kind == "ffn":
        return _ffn_weights(layer.ffn)
    return layer.weight.shape[0] * layer.weight.shape[1]


def estimate_macs(layer: Any) -> float:
    """Effectual MACs expected from the shapes and the weight sparsity (before running)."""
    keep = 1.0 - float(layer.params.get("weight_sparsity", 0.0))
    if layer.kind == "moe":
        per_token = (sum(_ffn_weights(w) for w in layer.experts) / layer.num_experts * layer.k
                     + sum(_ffn_weights(w) for w in layer.shared))
        return layer.tokens * per_token * keep
    return layer.tokens * weight_count(layer) * keep


def choose_fidelity(layer: Any, chip: ChipConfig, fidelity: str | None) -> tuple[str, str]:
    """(fidelity, why)."""
    if fidelity is not None:
        return fidelity, "as requested"
    macs = estimate_macs(layer)
    if chip.sim.fidelity == "burst" and macs > BURST_MAX_MACS:
        return "analytic", (f"chip default burst, but ~{macs:,.0f} effectual MACs exceed "
                            f"sieve.layers.BURST_MAX_MACS={BURST_MAX_MACS:,}; pass "
                            "--fidelity burst to force it")
    return chip.sim.fidelity, "the chip's sim.fidelity"


def run_model_layer(layer: Any, chip: ChipConfig, fidelity: str | None,
                    preset: CpuPreset | None, progress: Any = None
                    ) -> tuple[RunResult, dict[str, Any], EnergyReport, CpuEstimate | None,
                               LayerRun]:
    fid, why = choose_fidelity(layer, chip, fidelity)
    plan = plan_layer(chip)
    run = run_layer(layer, plan, chip, fidelity=fid, progress=progress)
    checks = check_layer(run, layer)
    router_macs = (layer.tokens * layer.num_experts * layer.d) if layer.kind == "moe" else 0
    energy = layer_energy(run, plan, chip, load_energy_table(chip.energy_table), router_macs)
    result = _result(run, plan, chip, layer)
    cpu = None
    if preset is not None:
        pairs = run.layer_stats.routed_pair_count if layer.kind == "moe" else 0
        cpu = layer_estimate(run.products, preset, layer=layer.name, moe_pairs=pairs,
                             d_model=layer.x.shape[1],
                             elementwise_ops=run.layer_stats.elementwise_op_count)
    summary = layer_summary(run, layer, plan, chip, checks, energy, router_macs, fid, why)
    return result, summary, energy, cpu, run


def check_layer(run: LayerRun, layer: Any) -> dict[str, Any]:
    """The output against the chunk-wise numpy forward pass, and (small layers) against the
    independent full forward pass; a check not made is a string saying why."""
    def close(ref: np.ndarray) -> bool:
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        return bool(run.output.shape == ref.shape and np.all(np.isfinite(run.output))
                    and np.allclose(run.output, ref, rtol=RTOL, atol=RTOL * scale + 1e-12))
    checks: dict[str, Any] = {"numpy": close(run.reference)}
    n = weight_count(layer)
    if n <= FULL_FORWARD_MAX_WEIGHTS:
        checks["numpy_full_forward"] = close(layer.reference())
    else:
        checks["numpy_full_forward"] = (f"skipped: {n:,} weights > sieve.layers."
                                        f"FULL_FORWARD_MAX_WEIGHTS={FULL_FORWARD_MAX_WEIGHTS:,}")
    checks["interpreter"] = ("tiles checked token by token only at fidelity burst/cycle "
                             "(the engines' functional pass equals the interpreter)"
                             if run.fidelity == "analytic" else
                             "each tile's output is the engine's own functional pass")
    return checks


def _result(run: LayerRun, plan: Any, chip: ChipConfig, layer: Any) -> RunResult:
    from isa.bitstream import config_bits

    mem, ctl = MemoryStats(), ControllerStats()
    for key, value in run.memory.items():
        setattr(mem, key, int(value))
    ctl.config_bits = config_bits(plan.kernel) * plan.lanes
    ctl.launch_count = run.work.tiles
    ctl.kernel_cycles = run.work.kernel_cycles
    stats = dict(run.stats)
    flatten("chip.memory", mem, stats)
    flatten("chip.controller", ctl, stats)
    T, n = run.output.shape
    tree = FiberTree("Y", (T, n), (0, 1), (Level("dense", T), Level("dense", n)),
                     run.output.reshape(-1))
    return RunResult(chip.name, plan.kernel.name, run.fidelity, run.cycles,
                     run.cycles / (chip.clock.freq_mhz * 1e6), run.layer_stats.experts_cycles,
                     {"Y": tree}, dict(sorted(stats.items())))


def layer_summary(run: LayerRun, layer: Any, plan: Any, chip: ChipConfig,
                  checks: dict[str, Any], energy: EnergyReport, router_macs: int,
                  fidelity: str, why: str) -> dict[str, Any]:
    """The ``summary`` of stats.json for a model layer (a MAC is 2 ops)."""
    ls = run.layer_stats
    dense = run.mode == "dense"
    eff = 2 * (run.work.products + router_macs)
    dense_eq = 2 * (run.work.dense_products + router_macs)
    out: dict[str, Any] = {
        "chip": chip.name,
        "workload": layer.name,
        "kernel": plan.kernel.name,
        "fidelity": fidelity,
        "cycles": run.cycles,
        "kernel_cycles": ls.experts_cycles if dense else run.work.kernel_cycles,
        "seconds": run.cycles / (chip.clock.freq_mhz * 1e6),
        "verified": checks.get("numpy") is True
        and checks.get("numpy_full_forward") is not False,
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
        "tokens": layer.tokens,
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
        from workloads.routing import gini

        straggler = int(np.argmax([e.finish_cycle for e in run.experts]))
        out["experts"] = {
            "tokens": [int(t) for t in tokens],
            "compute_cycles": [int(c) for c in cyc],
            "token_gini": float(gini(tokens)),
            "tokens_max_over_mean": float(tokens.max() / tokens.mean()) if tokens.sum() else 0.0,
            "cycles_max_over_mean": float(cyc.max() / cyc.mean()) if cyc.sum() else 0.0,
            "straggler": straggler,
            "straggler_finish_cycle": int(run.experts[straggler].finish_cycle),
            "dropped_pairs": ls.dropped_token_count,
        }
    return out


def check_fidelity(fidelity: str | None) -> None:
    if fidelity not in (None, "analytic", "burst", "cycle"):
        raise SimulationError(f"unknown fidelity {fidelity!r} (use analytic, burst or cycle)")


# ------------------------------------------------------------------------------ the stages
def run_layer(layer: Any, plan: Any, chip: ChipConfig, *, fidelity: str = "analytic",
              progress: Callable[[str], None] | None = None) -> LayerRun:
    """Simulate ``layer`` (workloads.layers) under ``plan`` on ``chip``."""
    eng = LayerEngine(plan, chip, fidelity, progress)
    ls = LayerStats(lanes=plan.lanes)
    x = layer.x.astype(np.float64)
    T, d = x.shape
    if layer.kind == "moe":
        y, ref, experts = _run_moe(layer, eng, ls)
    elif layer.kind == "ffn":
        y, ref = _run_ffn_all_lanes(layer.ffn, x, layer.sparsity, eng, expert=-1)
        experts = []
    else:
        y, ref = _run_linear(layer, eng)
        experts = []
    eng.progress.stage("schedule")
    sparse = eng.schedule("sparse")
    dense = eng.schedule("dense")
    mode = chip.compiler.layer_mode
    if mode == "auto":
        mode = "dense" if dense[0] < sparse[0] else "sparse"
    end, finish, lane_end = dense if mode == "dense" else sparse
    jobs = eng.dense_jobs if mode == "dense" else eng.jobs
    ls.sparse_mode_cycles, ls.dense_mode_cycles = sparse[0], dense[0]
    ls.dense_mode = int(mode == "dense")
    ls.experts_cycles = end
    for e, st in enumerate(experts):
        st.finish_cycle = finish.get(e, 0)
        mine = [j for j in jobs if j.expert == e]
        st.compute_cycles = sum(j.cycles for j in mine)
        st.dram_bytes = sum(j.dram_bytes for j in mine)
        if mode == "dense":
            st.lane = 0
    total = ls.router_cycles + ls.topk_cycles + end + ls.combine_cycles
    ls.tile_count, ls.skipped_tile_count = eng.work.tiles, eng.work.skipped_tiles
    ls.job_count = len(jobs)
    ls.kernel_cycles = eng.work.kernel_cycles
    ls.effectual_mac_count = eng.work.products
    ls.dense_mac_count = eng.work.dense_products
    ls.elementwise_op_count = eng.elementwise
    memory = dict(eng.memory)
    if mode == "dense":
        memory.update(eng.dense_memory)
        memory["dram_read_bytes"] += eng.extra_dram_bytes
    io = T * d * WORD_BYTES
    memory["dram_read_bytes"] += io
    memory["dram_write_bytes"] += y.shape[0] * y.shape[1] * WORD_BYTES
    memory["glb_write_bytes"] += io
    stats: dict[str, dict[str, Any]] = {}
    flatten("chip.layer", ls, stats)
    for e, st in enumerate(experts):
        flatten(f"chip.layer.expert{e}", st, stats)
    for lane, c in enumerate(lane_end):
        stats[f"chip.layer.lane{lane}.finish_cycle"] = {
            "value": c, "unit": "cycle", "desc": "Layer cycle at which the lane's last job "
            "ended (experts stage)."}
    return LayerRun(total, fidelity, y, ref, dict(sorted(stats.items())), eng.work, ls,
                    experts, memory, mode, eng.products, eng.dense_counts,
                    _timeline(eng.spans[mode], ls.router_cycles + ls.topk_cycles))


def _timeline(spans: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
    """The chosen mode's job and DMA spans in layer cycles (the experts stage starts after
    the router and top-k)."""
    return [{**sp, "start": sp["start"] + offset, "end": sp["end"] + offset} for sp in spans]


def _ffn_chunks(w, x: np.ndarray, sparsity, eng: LayerEngine, lanes: list[int], expert: int,
                label: str) -> tuple[np.ndarray, np.ndarray]:
    """One FFN on ``x`` chunk by chunk along f; chunks go round-robin over ``lanes``.
    Returns (simulated output, numpy reference), both float64."""
    from workloads.layers import ffn_chunk, ffn_chunks, intermediate, neuron_thresholds, teal

    xs = teal(x, sparsity)
    y = np.zeros((x.shape[0], w.d))
    ref = np.zeros_like(y)
    if x.shape[0] == 0:
        return y, ref
    for c, (f0, f1) in enumerate(ffn_chunks(w.f, _chunk(w.f, eng, len(lanes)))):
        lane = lanes[c % len(lanes)]
        g_rows = None if w.gate is None else w.gate.rows(f0, f1)
        u_rows = w.up.rows(f0, f1)
        d_cols = w.down.cols(f0, f1)               # [fc x d] = W_down[:, f0:f1]^T
        theta = neuron_thresholds(w, sparsity, f0, f1, g_rows if g_rows is not None
                                  else u_rows)
        tag = f"{label}[{f0}:{f1}]"
        gate = None if g_rows is None else eng.product(xs, g_rows.T, lane=lane, expert=expert,
                                                       label=f"{tag}.gate")
        up = eng.product(xs, u_rows.T, lane=lane, expert=expert, label=f"{tag}.up")
        h = teal(intermediate(w.act, sparsity, gate, up, theta), sparsity)
        eng.elementwise_job(h.size * (2 if gate is not None else 1), lane=lane,
                            expert=expert, label=f"{tag}.act")
        y += eng.product(h, d_cols, lane=lane, expert=expert, label=f"{tag}.down")
        # the reference: the layer's float64 forward on the same weight chunk
        hr = teal(ffn_chunk(w, xs, f0, f1, sparsity, g_rows, u_rows, theta=theta), sparsity)
        ref += hr @ d_cols.astype(np.float64)
        eng.progress.advance(1, tag)
    return y, ref


def _chunk(f: int, eng: LayerEngine, lanes: int) -> int:
    """Width of the f-chunks of an FFN spread over ``lanes`` lanes."""
    return max(64, min(eng.plan.f_chunk, cdiv(f, lanes)))


def _run_ffn_all_lanes(w, x, sparsity, eng: LayerEngine, expert: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    eng.progress.stage("FFN", total=cdiv(w.f, _chunk(w.f, eng, eng.lanes)), unit="chunks")
    return _ffn_chunks(w, x, sparsity, eng, list(range(eng.lanes)), expert, "ffn")


def _run_linear(layer: Any, eng: LayerEngine) -> tuple[np.ndarray, np.ndarray]:
    from workloads.layers import teal

    x = teal(layer.x.astype(np.float64), layer.sparsity)
    w = layer.weight
    out_dim = w.shape[0]
    y = np.zeros((x.shape[0], out_dim))
    ref = np.zeros_like(y)
    chunk = max(64, min(eng.plan.f_chunk, cdiv(out_dim, eng.lanes)))
    eng.progress.stage("linear", total=cdiv(out_dim, chunk), unit="row blocks")
    for c, r0 in enumerate(range(0, out_dim, chunk)):
        r1 = min(out_dim, r0 + chunk)
        rows = w.rows(r0, r1)
        y[:, r0:r1] = eng.product(x, rows.T, lane=c % eng.lanes, expert=-1,
                                  label=f"linear[{r0}:{r1}]")
        ref[:, r0:r1] = x @ rows.astype(np.float64).T
        eng.progress.advance(1, f"rows {r0}:{r1}")
    return y, ref


def _run_moe(layer: Any, eng: LayerEngine, ls: LayerStats
             ) -> tuple[np.ndarray, np.ndarray, list[ExpertStats]]:
    from simulator.energy import dense_mapping
    from simulator.systolic import SystolicArray, gemm_cycles

    chip = eng.chip
    x = layer.x.astype(np.float64)
    T, d = x.shape
    E, k = layer.num_experts, layer.k
    # router GEMM on the dense MAC block, then top-k on the lanes
    block = dense_mapping(chip)
    ls.router_cycles = gemm_cycles(T, E, d, SystolicArray(block.rows, block.cols, "os")) + 1
    ls.topk_cycles = cdiv(T, eng.lanes) * k * E
    router_bytes = E * d * WORD_BYTES
    eng.memory["dram_read_bytes"] += router_bytes
    eng.extra_dram_bytes += router_bytes
    # the routing is the layer's own (workloads.routing); the reference shares it, so the
    # checks cover the experts, the gating weights and the combine
    idx, wts, kept = layer.route(layer.logits())
    ls.dropped_token_count = int((~kept).sum())
    G = layer.scatter(idx, wts, kept)
    ls.routed_pair_count = int(np.count_nonzero(G))
    y = np.zeros((T, d))
    ref = np.zeros((T, d))
    experts = [ExpertStats() for _ in range(E)]
    groups = _expert_lanes(E, eng.lanes)
    ffns = [(w, list(range(eng.lanes))) for w in layer.shared] + \
        [(w, groups[e]) for e, w in enumerate(layer.experts) if G[:, e].any()]
    eng.progress.stage("experts", total=sum(cdiv(w.f, _chunk(w.f, eng, len(ln)))
                                            for w, ln in ffns), unit="FFN chunks")
    for s, w in enumerate(layer.shared):
        ys, rs = _ffn_chunks(w, x, layer.sparsity, eng, list(range(eng.lanes)), -1,
                             f"shared{s}")
        y += ys
        ref += rs
    for e, w in enumerate(layer.experts):
        tok = np.flatnonzero(G[:, e])
        st = experts[e]
        st.tokens = len(tok)
        st.lane = groups[e][0]
        macs = eng.work.products
        if len(tok):
            ye, re = _ffn_chunks(w, x[tok], layer.sparsity, eng, groups[e], e, f"expert{e}")
        else:
            ye = re = np.zeros((0, d))
        st.effectual_mac_count = eng.work.products - macs
        y[tok] += G[tok, e][:, None] * ye
        ref[tok] += G[tok, e][:, None] * re
    ls.combine_cycles = cdiv(ls.routed_pair_count * d, eng.lanes)
    eng.elementwise += ls.routed_pair_count * d
    return y, ref, experts


def _expert_lanes(E: int, lanes: int) -> list[list[int]]:
    """Static expert -> lanes map: round-robin when E >= lanes, else lanes // E each."""
    if E >= lanes:
        return [[e % lanes] for e in range(E)]
    per = lanes // E
    return [list(range(e * per, (e + 1) * per)) for e in range(E)]
