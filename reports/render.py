"""The report entry points: every picture and page of one run folder, and the comparison of
several runs. They read run folders only; they never run a simulation."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from reports.html import report_html
from reports.rundata import ReportError, RunData, load_run
from reports.tables import comparison_csv, comparison_markdown, summary_markdown
from reports.trace import trace_events

IMAGES = ("roofline.png", "energy.png", "comparison.png", "pe_utilization.png", "experts.png")


def render_run(run_dir: str | Path, *, trace: bool = False, kind: str = "html") -> list[Path]:
    """Write the reports of one run folder into it and return the written paths.

    Files: roofline.png, energy.png, comparison.png (chip vs CPU), pe_utilization.png (runs
    with per-tile counters), experts.png (MoE layers),
    summary.md (regenerated), report.html (self-contained) and, with ``trace``, trace.json
    (Chrome/Perfetto trace events). ``kind="md"`` writes summary.md alone (no pictures, and
    matplotlib is not loaded). Raises ReportError when ``run_dir`` is not a run folder.
    """
    run = load_run(run_dir)
    try:
        return _render_run(run, trace, kind)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError,
            ZeroDivisionError) as exc:
        # load_run checks what the reports read; this names whatever it could not foresee
        raise ReportError(f"{run.path}: a file of this run folder is damaged (stats.json, "
                          f"config.yaml or timeline.json): {type(exc).__name__}: {exc}"
                          ) from None


def _render_run(run: RunData, trace: bool, kind: str) -> list[Path]:
    out = run.path
    if kind == "md":
        summary = out / "summary.md"
        summary.write_text(summary_markdown(run, []))
        return [summary]
    from reports.plots import plot_chip_vs_cpu, plot_energy, plot_experts, plot_utilization
    from reports.roofline import plot_roofline  # matplotlib loads only to draw

    images = [plot_roofline(run.summary, out / "roofline.png"),
              plot_energy(run, out / "energy.png"),
              plot_chip_vs_cpu(run, out / "comparison.png")]
    # per-tile counters exist for single-kernel runs; a model layer shows its experts instead
    if run.tile_units():
        images.append(plot_utilization(run, out / "pe_utilization.png"))
    if run.summary.get("experts"):
        images.append(plot_experts(run, out / "experts.png"))
    written = list(images)
    trace_path = None
    if trace:
        trace_path = out / "trace.json"
        trace_path.write_text(json.dumps(trace_events(run), indent=1) + "\n")
    summary = out / "summary.md"
    summary.write_text(summary_markdown(run, [p.name for p in images]))
    html = out / "report.html"
    html.write_text(report_html(run, images, trace_path))
    written += [summary, html]
    if trace_path is not None:
        written.append(trace_path)
    return written


def render_comparison(run_dirs: Iterable[str | Path], out_dir: str | Path) -> list[Path]:
    """Compare runs (``sieve compare``): comparison.md and comparison.csv (one row per run)
    and comparison.png in ``out_dir``; returns the written paths."""
    runs = [load_run(d) for d in run_dirs]
    if not runs:
        raise ReportError("nothing to compare: no run folders given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, csv_path = out / "comparison.md", out / "comparison.csv"
    md.write_text(comparison_markdown(runs))
    csv_path.write_text(comparison_csv(runs))
    from reports.plots import plot_comparison_runs

    png = plot_comparison_runs(runs, out / "comparison.png")
    return [md, csv_path, png]
