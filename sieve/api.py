"""The Python facade: ``sieve.run(chip, workload, ...) -> Report``.

It wires the one road: load the chip config, build the workload, compile it to an
``isa.Program`` (compiler), run it on the controller (simulator), check its outputs
(simulator.checks), count its energy (simulator.energy), estimate the CPU (baselines) and
write the run folder. It holds no mapping, timing or energy rule. Nothing else imports
``sieve``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compiler.dense import program_peak_gops
from compiler.footprint import check_fits
from compiler.layers import choose_fidelity, compile_model_layer, full_forward, is_model_layer
from compiler.order import OrderChoice, choose_order
from compiler.pipeline import compile_kernel, dense_equivalent_ops
from compiler.tiling import mode_text
from isa.arch import ChipConfig
from isa.asm import print_program
from isa.program import Program
from reports.rundir import prepare_run_dir, strict_json
from reports.summary import baseline_summary, chip_roofs, cpu_roofs
from sieve.blas import with_blas_threads
from sieve.spec import is_spec, load_spec
from simulator.checks import check_outputs
from simulator.chip import RunResult
from simulator.config import dump_chip, load_chip
from simulator.controller import simulate
from simulator.energy import EnergyReport, energy_breakdown, load_energy_table
from simulator.probe import probe
from simulator.progress import progress_of
from simulator.summary import summarize
from workloads import KernelLayer, get_workload

if TYPE_CHECKING:   # the CPU model and the layer engine load when a run needs them
    from baselines import CpuEstimate, CpuPreset
    from simulator.layers import LayerRun


@dataclass
class Report:
    """A finished run: the program, its simulation result, checks and derived summary."""

    result: RunResult
    layer: KernelLayer
    program: Program
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


def run_layer(layer: Any, plan: Any, chip: ChipConfig, *, fidelity: str = "analytic",
              progress: Any = None, mapper: Any = map) -> LayerRun:
    """A model layer's run (its Program on the controller), for callers that want the
    layer engine's record rather than a Report."""
    program = compile_model_layer(layer, chip, plan)
    result = simulate(program, chip, fidelity=fidelity, progress=progress, mapper=mapper)
    return result.kernel_runs["layer"]


def _layer_cpu(layer: Any, lrun: LayerRun, preset: CpuPreset | None) -> CpuEstimate | None:
    if preset is None:
        return None
    from baselines import layer_estimate
    pairs = lrun.layer_stats.routed_pair_count if layer.kind == "moe" else 0
    return layer_estimate(lrun.products, preset, layer=layer.name, moe_pairs=pairs,
                          d_model=layer.x.shape[1],
                          elementwise_ops=lrun.layer_stats.elementwise_op_count)


def compile_workload(layer: Any, chip: ChipConfig) -> Program:
    """The Program of any workload: a kernel's, a gemm's or a model layer's."""
    if is_model_layer(layer):
        return compile_model_layer(layer, chip)
    return compile_kernel(layer, chip)


def choose_layer_order(layer: Any, cfg: ChipConfig, *, explain: bool = False
                       ) -> tuple[Any, OrderChoice | None]:
    """A SAM kernel's loop order: forced by ``-p order=`` or chosen by the compiler with
    burst probes (compiler.order); ``explain`` probes a forced order's candidates too (``sieve
    compile --explain``). Model layers and gemm have no order to choose (None)."""
    from compiler.dense import is_dense

    if is_model_layer(layer) or is_dense(layer):
        return layer, None
    choice = choose_order(layer, cfg, probe, probe_forced=explain)
    return choice.apply(layer), choice


@with_blas_threads
def run(chip: str | Path | ChipConfig, workload: str | KernelLayer, *,
        params: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = (),
        fidelity: str | None = None, out: str | Path | None = None,
        baseline: str | Path | None = None, progress: Any = None, mapper: Any = map,
        check: str = "sample") -> Report:
    """Compile and simulate ``workload`` on ``chip``, verify it, estimate its energy with the
    chip's energy table and, with ``baseline`` (a CPU preset), the CPU's time and energy;
    optionally write the run folder ``out``. A ``gemm`` lowers to a systolic kernel, which
    has one timing model, so ``fidelity`` does not apply to it. ``mapper`` runs a model
    layer's independent jobs (simulator.controller.simulate); ``check`` is the interpreter
    check of a kernel, ``sample`` or ``full`` (simulator.checks)."""
    t0 = time.perf_counter()
    cfg = resolve_chip(chip, overrides)
    layer = build_layer(workload, params, cfg)
    if baseline is not None:
        from baselines import estimate, load_cpu_preset
    preset = load_cpu_preset(baseline) if baseline is not None else None
    table = load_energy_table(cfg.energy_table)
    fid, why = choose_fidelity(layer, cfg, fidelity)
    (progress := progress_of(progress)).stage("compile")
    layer, choice = choose_layer_order(layer, cfg)
    program = (choice.program if choice else None) or compile_workload(layer, cfg)
    result = simulate(program, cfg, fidelity=fid, progress=progress, mapper=mapper)
    progress.stage("check outputs")
    checks = check_outputs(result, program, full_forward(layer), check)
    progress.stage("energy")
    energy = energy_breakdown(result.stats, result.cycles, cfg, table, program=program,
                              actions=result.actions, ops=result.ops)
    lrun = result.kernel_runs.get("layer")
    if lrun is not None:
        summary = summarize(result, program, cfg, layer.name, checks, energy,
                            tokens=layer.tokens, why=why)
        cpu = _layer_cpu(layer, lrun, preset)
    else:
        summary = summarize(result, program, cfg, layer.name, checks, energy,
                            dense_equivalent_ops=dense_equivalent_ops(layer.expr, layer.tensors))
        cpu = estimate(layer, preset) if preset is not None else None
    summary["roofs"] = chip_roofs(cfg, program_peak_gops(program, cfg))
    if choice is not None:
        summary["loop_order"] = choice.order
        summary["loop_order_by"] = "forced" if choice.forced else choice.objective
        summary["formats_chosen"] = " ".join(f"{k}:{v}" for k, v in layer.formats.items())
    if (mode := mode_text(program.tiling, cfg)) is not None:   # a tiled kernel's, and who chose
        summary["tile_pipelining"] = mode
    if program.unroll is not None:      # compiler.unroll: copies of the kernel's graph, why
        summary["unroll"] = program.unroll.as_dict()
    if cpu is not None and preset is not None:
        summary["baseline"] = baseline_summary(result.seconds, summary["energy_j"], cpu)
        summary["baseline"]["roofs"] = cpu_roofs(preset)
    report = Report(result, layer, program, summary, cfg, time.perf_counter() - t0,
                    summary["checks"], energy, cpu,
                    timeline=lrun.timeline if lrun is not None else None)
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
