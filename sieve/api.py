"""The Python facade: ``sieve.run(chip, workload, ...) -> Report``.

It wires the packages: load and validate the chip config, build the workload layer, compile
it, simulate it, check the output against numpy and the ISA interpreter, and write the run
folder. A dense GEMM (workload ``gemm``) skips the SAM compiler and runs on the systolic
array instead (:mod:`sieve.dense`). Nothing else imports ``sieve``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from baselines import CpuEstimate, CpuPreset, estimate, load_cpu_preset
from compiler.footprint import check_fits
from compiler.pipeline import compile_layer
from isa.arch import ChipConfig
from isa.asm import print_program
from isa.errors import SimulationError
from isa.fibertree import FiberTree
from isa.interp import assemble_output, run_kernel
from isa.ops import Opcode
from isa.program import Program
from reports.rundir import prepare_run_dir, strict_json
from sieve.dense import (
    check_dense_output,
    dense_compute_roof,
    dense_energy,
    dense_summary,
    is_dense,
    simulate_dense,
)
from sieve.layers import check_fidelity, is_model_layer, run_model_layer
from sieve.spec import is_spec, load_spec
from simulator.chip import RunResult, simulate
from simulator.config import dump_chip, load_chip
from simulator.energy import EnergyReport, energy_breakdown, load_energy_table
from simulator.engine_burst import fire_kernel
from simulator.progress import progress_of
from simulator.unit_check import sampled_check
from workloads import KernelLayer, get_workload


@dataclass
class Report:
    """A finished run: the simulation result, its checks and the derived summary."""

    result: RunResult
    layer: KernelLayer
    program: Program | None           # None for a dense GEMM (sieve.dense: no ISA program)
    summary: dict[str, Any]
    chip: ChipConfig
    wall_seconds: float
    checks: dict[str, bool] = field(default_factory=dict)
    energy: EnergyReport | None = None
    baseline: CpuEstimate | None = None
    out_dir: Path | None = None
    timeline: list[dict[str, Any]] | None = None   # model layers: job and DMA spans

    def __repr__(self) -> str:
        s = self.summary
        return (f"Report({s['workload']} on {s['chip']}: {s['cycles']} cycles, "
                f"verified={s['verified']}, fidelity={s['fidelity']})")

    def to_dict(self) -> dict[str, Any]:
        """The run as plain data: stats.json's document (summary, stats, energy, baseline)."""
        doc: dict[str, Any] = {"summary": self.summary, "stats": self.result.stats}
        if self.energy is not None:
            e = self.energy
            doc["energy"] = {"unit": "pJ", "total_pj": e.total_pj, "by_component":
                             e.by_component, "by_action": e.by_action, "counts": e.counts}
        if self.baseline is not None:
            doc["baseline"] = {"preset": self.summary["baseline"]["cpu"],
                               "breakdown": self.baseline.breakdown}
        return doc

    def to_frame(self, what: str = "stats") -> Any:
        """A pandas DataFrame (pandas must be installed): ``stats``, one row per counter
        (value, unit, desc); ``summary``, one row of the flattened summary."""
        import pandas as pd

        from reports.notebook import flat_summary
        if what == "summary":
            return pd.DataFrame([flat_summary(self.summary)])
        return pd.DataFrame.from_dict(self.result.stats, orient="index")

    def _repr_markdown_(self) -> str:   # notebooks: summary.md's tables
        from reports.notebook import summary_markdown as page
        return page(self._run_data())

    def _repr_html_(self) -> str:       # notebooks: report.html's tables
        from reports.notebook import summary_html
        return summary_html(self._run_data())

    def _run_data(self) -> Any:
        from reports.notebook import run_data
        return run_data(self.to_dict(), dump_chip(self.chip), {"name": self.layer.name})


def resolve_chip(chip: str | Path | ChipConfig, overrides: list[str] | tuple[str, ...] = ()
                 ) -> ChipConfig:
    """A ChipConfig from a path or name (with ``key.path=value`` overrides) or as given."""
    if isinstance(chip, ChipConfig):
        if overrides:
            from isa.schema import to_dict
            from simulator.config import chip_from_dict

            return chip_from_dict(to_dict(chip), where=chip.name, overrides=list(overrides))
        return chip
    return load_chip(chip, list(overrides))


def build_layer(workload: str | KernelLayer, params: dict[str, Any] | None = None,
                chip: ChipConfig | None = None) -> KernelLayer:
    """A layer from a catalog name and ``-p`` parameters, or as given (a KernelLayer or a
    model layer of workloads.layers). With ``chip``, a workload too large for it or for this
    machine is refused before anything is built (compiler.footprint.check_fits)."""
    if not isinstance(workload, (str, Path)):
        return workload
    name, given = load_spec(workload) if is_spec(workload) else (str(workload), {})
    entry = get_workload(name)
    resolved = entry.resolve({**given, **(params or {})})
    if chip is not None:
        check_fits(chip, name, resolved)
    layer = entry.build(resolved)
    if is_spec(workload):
        layer.params["spec"] = str(workload)
    return layer


INTERPRETER_MAX_TOKENS = 2_000_000
"""Largest kernel (tokens over all streams) also re-run on the pure-Python ISA interpreter for
the output check; beyond it the check is numpy's alone (the burst engine's functional pass is
itself tested equal to the interpreter, tests/test_burst.py)."""


def check_outputs(result: RunResult, program: Program, layer: KernelLayer,
                  check: str = "sample") -> dict[str, Any]:
    """Compare the simulated output with numpy and with the ISA interpreter: whole with
    ``check="full"`` (up to INTERPRETER_MAX_TOKENS), else sampled (simulator.unit_check). A
    skipped check is recorded as a string saying why, never as a pass."""
    kernel = program.kernels[0]
    tokens = result.total("token_count")
    full = check == "full" and tokens <= INTERPRETER_MAX_TOKENS
    interp = run_kernel(kernel, program.images) if full else None
    checks: dict[str, Any] = {} if full else sampled_check(kernel, program.images)
    ref = np.asarray(layer.reference())
    for decl in kernel.tensors:
        if not decl.is_output:
            continue
        sim = result.outputs[decl.name]
        got = sim.to_dense()
        if ref.dtype.kind in "iub" and got.dtype.kind in "iub":
            checks["numpy"] = bool(np.array_equal(got, ref))
        else:
            checks["numpy"] = bool(got.shape == ref.shape and
                                   np.allclose(got, ref, rtol=1e-9, atol=1e-12))
        if interp is not None:
            checks["interpreter"] = _same_tree(sim, assemble_output(decl, interp.memory))
        elif check == "full":
            checks["interpreter"] = (f"skipped: {tokens:,} tokens > {INTERPRETER_MAX_TOKENS:,}"
                                     " (sieve.api.INTERPRETER_MAX_TOKENS)")
    return checks


def _same_tree(a: FiberTree, b: FiberTree) -> bool:
    if a.formats != b.formats or len(a.levels) != len(b.levels):
        return False
    for la, lb in zip(a.levels, b.levels):
        if la.fmt == "compressed" and not (np.array_equal(la.seg, lb.seg)
                                            and np.array_equal(la.crd, lb.crd)):
            return False
    return bool(np.array_equal(a.vals, b.vals))


def skipped_ops(program: Program, result: RunResult) -> int:
    """ALU ops avoided by zero-skipping scanners: ops of the same kernel with skipping off
    (the burst engine's functional pass, equal to the interpreter's) minus the ops the run
    performed."""
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


def dense_equivalent_ops(expr: str, tensors: dict[str, Any]) -> int:
    """Ops of the dense computation per point of the iteration space: one op per operand
    after the first (multiplies for ``*``, adds for ``+``), plus one add when an index is
    contracted (e.g. SDDMM and MTTKRP: 2 multiplies + 1 add)."""
    from compiler.notation import parse_expr

    assign = parse_expr(expr)
    sizes: dict[str, int] = {}
    for acc in assign.operands:
        for v, n in zip(acc.indices, tensors[acc.tensor].shape):
            sizes[v] = int(n)
    points = int(np.prod([sizes[v] for v in assign.index_vars], dtype=np.float64))
    contracted = any(v not in assign.out.indices for v in assign.index_vars)
    return points * (len(assign.operands) - 1 + int(contracted and assign.op == "*"))


def roofs(chip: ChipConfig) -> dict[str, float]:
    """The chip's roofline: the compute roof is the energy model's dense peak (fused MACs on
    the dense MAC block, simulator.energy.dense_peak_gops: 571 GOPS on Onyx at 850 MHz) and a
    bandwidth roof per memory level (bytes/s)."""
    from simulator.energy import dense_peak_gops

    hz = chip.clock.freq_mhz * 1e6
    return {"compute_ops_per_s": dense_peak_gops(chip) * 1e9,
            "dram_bytes_per_s": chip.dram.bandwidth_gb_per_s * 1e9,
            "glb_bytes_per_s": chip.glb.array_bytes_per_cycle * hz}


def baseline_summary(chip_seconds: float, chip_joules: float, cpu: CpuEstimate
                     ) -> dict[str, Any]:
    """The CPU's time and energy and the chip's advantage as ratios (CPU / chip)."""
    return {
        "cpu": cpu.preset,
        "library": cpu.library,
        "seconds": cpu.seconds,
        "energy_j": cpu.energy_j,
        "bound": cpu.bound,
        "flops": cpu.flops,
        "dense_equivalent_flops": cpu.dense_equivalent_flops,
        "dram_bytes": cpu.bytes,
        "speedup": cpu.seconds / chip_seconds,
        "energy_ratio": cpu.energy_j / chip_joules,
        "edp_ratio": (cpu.seconds * cpu.energy_j) / (chip_seconds * chip_joules),
    }


def make_summary(result: RunResult, layer: KernelLayer, program: Program,
                 checks: dict[str, bool], energy: EnergyReport | None = None,
                 cpu: CpuEstimate | None = None) -> dict[str, Any]:
    """The ``summary`` object of stats.json: headline figures, all computed from the run."""
    out = _base_summary(result, layer, program, checks)
    out["ops"] = out["effectual_ops"] + result.total("add_count")
    out["dense_equivalent_ops"] = dense_equivalent_ops(layer.expr, layer.tensors)
    out["glb_bytes"] = (result.stats["chip.memory.glb_read_bytes"]["value"]
                        + result.stats["chip.memory.glb_write_bytes"]["value"])
    out["glb_link_bytes"] = result.stats["chip.memory.link_bytes"]["value"]
    if energy is not None:
        out["energy_j"] = energy.total_pj * 1e-12
    if cpu is not None and energy is not None:
        out["baseline"] = baseline_summary(result.seconds, energy.total_pj * 1e-12, cpu)
    return out


def _base_summary(result: RunResult, layer: KernelLayer, program: Program,
                  checks: dict[str, bool]) -> dict[str, Any]:
    return {
        "chip": result.chip,
        "workload": layer.name,
        "kernel": program.kernels[0].name,
        "fidelity": result.fidelity,
        "cycles": result.cycles,
        "kernel_cycles": result.kernel_cycles,
        "seconds": result.seconds,
        "verified": bool(checks) and all(v is True or isinstance(v, str)
                                         for v in checks.values())
        and checks.get("numpy") is True,
        "checks": checks,
        "effectual_ops": result.total("effectual_op_count"),
        "skipped_ops": skipped_ops(program, result),
        "gated_ops": result.total("gated_op_count"),
        "ineffectual_ops": result.total("ineffectual_op_count"),
        "skipped_zero_elements": result.total("skipped_zero_count"),
        "sram_read_words": result.total("sram_read_words"),
        "sram_write_words": result.total("sram_write_words"),
        "hop_count": result.total("hop_count"),
        "dram_bytes": result.stats["chip.memory.dram_read_bytes"]["value"]
        + result.stats["chip.memory.dram_write_bytes"]["value"],
        "config_bits": result.stats["chip.controller.config_bits"]["value"],
    }


def run(chip: str | Path | ChipConfig, workload: str | KernelLayer, *,
        params: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = (),
        fidelity: str | None = None, out: str | Path | None = None,
        baseline: str | Path | None = None, progress: Any = None, check: str = "sample"
        ) -> Report:
    """Compile and simulate ``workload`` on ``chip``, verify it, estimate its energy with the
    chip's energy table and, with ``baseline`` (a CPU preset), the CPU's time and energy;
    optionally write the run folder ``out``. A ``gemm`` takes the dense path (sieve.dense),
    which has one timing model, so ``fidelity`` does not apply to it."""
    t0 = time.perf_counter()
    cfg = resolve_chip(chip, overrides)
    layer = build_layer(workload, params, cfg)
    preset = load_cpu_preset(baseline) if baseline is not None else None
    cpu = estimate(layer, preset) if preset is not None and not is_model_layer(layer) else None
    if is_model_layer(layer):
        return _run_model_layer(cfg, layer, fidelity, preset, t0, out, progress)
    if fidelity == "analytic" or (fidelity is None and cfg.sim.fidelity == "analytic"):
        raise SimulationError(f"workload {layer.name}: fidelity analytic applies to model "
                              "layers (moe.*, ffn.*, linear.*); use burst or cycle")
    if is_dense(layer):
        return _run_dense(cfg, layer, cpu, preset, t0, out)
    (progress := progress_of(progress)).stage("compile")
    program = compile_layer(layer, cfg)
    result = simulate(program, cfg, fidelity=fidelity, progress=progress)
    progress.stage("check outputs")
    checks = check_outputs(result, program, layer, check)
    progress.stage("energy")
    energy = energy_breakdown(result.stats, result.cycles, cfg,
                              load_energy_table(cfg.energy_table), program=program)
    summary = make_summary(result, layer, program, checks, energy, cpu)
    summary["energy_table"] = cfg.energy_table
    summary["roofs"] = roofs(cfg)
    if preset is not None:
        summary["baseline"]["roofs"] = cpu_roofs(preset)
    report = Report(result, layer, program, summary, cfg, time.perf_counter() - t0, checks,
                    energy, cpu)
    if out is not None:
        write_run(report, Path(out))
    return report


def _run_model_layer(cfg: ChipConfig, layer: Any, fidelity: str | None,
                     preset: CpuPreset | None, t0: float, out: str | Path | None,
                     progress: Any) -> Report:
    """The model-layer path of :func:`run` (sieve.layers)."""
    check_fidelity(fidelity)
    result, summary, energy, cpu, lrun = run_model_layer(layer, cfg, fidelity, preset,
                                                         progress)
    summary["roofs"] = roofs(cfg)
    if cpu is not None and preset is not None:
        summary["baseline"] = baseline_summary(result.seconds, summary["energy_j"], cpu)
        summary["baseline"]["roofs"] = cpu_roofs(preset)
    report = Report(result, layer, None, summary, cfg, time.perf_counter() - t0,
                    summary["checks"], energy, cpu, timeline=lrun.timeline)
    if out is not None:
        write_run(report, Path(out))
    return report


def cpu_roofs(preset: CpuPreset) -> dict[str, float]:
    """The CPU preset's compute and DRAM roofs for the roofline."""
    return {"compute_ops_per_s": preset.peak_gflops * 1e9,
            "dram_bytes_per_s": preset.sustained_bandwidth_gb_per_s * 1e9}


def _run_dense(cfg: ChipConfig, layer: KernelLayer, cpu: CpuEstimate | None,
               preset: CpuPreset | None, t0: float, out: str | Path | None) -> Report:
    """The dense path of :func:`run` (sieve.dense): a GEMM on the systolic array, verified
    against numpy, with the dense GEMM energy model and the array's compute roof."""
    run_ = simulate_dense(layer, cfg)
    checks = check_dense_output(run_, layer)
    energy, model = dense_energy(layer, cfg)
    summary = dense_summary(run_, layer, checks, energy, model)
    summary["roofs"] = {**roofs(cfg), "compute_ops_per_s": dense_compute_roof(run_.array, cfg)}
    if cpu is not None and preset is not None:
        summary["baseline"] = baseline_summary(run_.result.seconds, summary["energy_j"], cpu)
        summary["baseline"]["roofs"] = cpu_roofs(preset)
    report = Report(run_.result, layer, None, summary, cfg, time.perf_counter() - t0, checks,
                    energy, cpu)
    if out is not None:
        write_run(report, Path(out))
    return report


def write_run(report: Report, out: Path) -> None:
    """The run folder: stats.json (deterministic), the resolved config and workload, the
    program's assembly, summary.md, and wall-clock timing kept apart in timing.json. The
    folder rules and strict JSON are reports.rundir's."""
    prepare_run_dir(out)
    where = f"{out / 'stats.json'}"
    (out / "stats.json").write_text(strict_json(report.to_dict(), where=where, indent=1,
                                                sort_keys=True) + "\n")
    (out / "config.yaml").write_text(dump_chip(report.chip))
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in report.layer.params.items()}
    lay = report.layer
    (out / "workload.json").write_text(json.dumps(
        {"name": lay.name, "expr": getattr(lay, "expr", None), "params": params,
         "formats": getattr(lay, "formats", None), "order": getattr(lay, "order", None),
         "kind": getattr(lay, "kind", "kernel"), "source": getattr(lay, "source", None)},
        indent=1, sort_keys=True) + "\n")
    if report.program is not None:
        (out / "program.s").write_text(print_program(report.program))
    if report.timeline:
        (out / "timeline.json").write_text(json.dumps(
            {"unit": "cycles", "spans": report.timeline}, separators=(",", ":")) + "\n")
    (out / "summary.md").write_text(report._repr_markdown_())
    (out / "timing.json").write_text(json.dumps({"wall_seconds": report.wall_seconds}) + "\n")
    report.out_dir = out


SUMMARY_ROWS = (
    ("cycles", "total cycles", "{:,}"),
    ("kernel_cycles", "kernel cycles", "{:,}"),
    ("compute_cycles", "compute cycles (SCALE-Sim v3)", "{:,}"),
    ("seconds", "simulated time (s)", "{:.3e}"),
    ("verified", "output verified", "{}"),
    ("effectual_ops", "effectual ops", "{:,}"),
    ("skipped_ops", "skipped ops", "{:,}"),
    ("gated_ops", "gated ops", "{:,}"),
    ("ineffectual_ops", "ineffectual ops", "{:,}"),
    ("sram_read_words", "MEM-tile SRAM reads (words)", "{:,}"),
    ("sram_write_words", "MEM-tile SRAM writes (words)", "{:,}"),
    ("hop_count", "interconnect word-hops", "{:,}"),
    ("dram_bytes", "DRAM traffic (bytes)", "{:,}"),
    ("energy_j", "energy (J)", "{:.3e}"),
    ("mode", "layer mode", "{}"),
    ("sparse_mode_cycles", "sparse mode: experts/products cycles", "{:,}"),
    ("dense_mode_cycles", "dense mode: experts/products cycles", "{:,}"),
    ("lanes", "lanes (tile-kernel copies)", "{:,}"),
    ("tiles", "tiles run", "{:,}"),
)

BASELINE_ROWS = (
    ("seconds", "CPU time (s)", "{:.3e}"),
    ("energy_j", "CPU energy (J)", "{:.3e}"),
    ("speedup", "speedup (CPU time / chip time)", "{:.2f}x"),
    ("energy_ratio", "energy ratio (CPU / chip)", "{:.1f}x"),
    ("edp_ratio", "EDP ratio (CPU / chip)", "{:.1f}x"),
)


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [(label, fmt.format(summary[key])) for key, label, fmt in SUMMARY_ROWS
            if key in summary]
    if "dram_bytes_per_s" in summary.get("roofs", {}):      # the chip's DRAM, in its own GB/s
        rows.append(("DRAM bandwidth (GB/s)", f"{summary['roofs']['dram_bytes_per_s'] / 1e9:,.1f}"))
    base = summary.get("baseline")
    if base:
        rows += [(f"{label} [{base['cpu']}, {base.get('library') or '?'}]" if key == "seconds"
                  else label,
                  fmt.format(base[key])) for key, label, fmt in BASELINE_ROWS]
    return rows
