"""The report entry points: every picture and page of one run folder, and the comparison of
several runs. They read run folders only; they never run a simulation."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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

    # the slowest pictures first, so that a pool of two ends them together
    pictures: list[tuple[Callable[..., Path], tuple[Any, ...]]] = [
        (plot_roofline, (run.summary, out / "roofline.png"))]
    # per-tile counters exist for single-kernel runs; a model layer shows its experts instead
    if run.tile_units():
        pictures.append((plot_utilization, (run, out / "pe_utilization.png")))
    if run.summary.get("experts"):
        pictures.append((plot_experts, (run, out / "experts.png")))
    pictures += [(plot_energy, (run, out / "energy.png")),
                 (plot_chip_vs_cpu, (run, out / "comparison.png"))]
    drawn = dict(zip([a[1].name for _, a in pictures], draw_pictures(pictures)))
    images = [drawn[name] for name in IMAGES if name in drawn]
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


_pictures: list[tuple[Callable[..., Path], tuple[Any, ...]]] = []
"""The pictures a pool is drawing (set before it forks: its workers inherit them)."""


def draw_pictures(pictures: list[tuple[Callable[..., Path], tuple[Any, ...]]],
                  workers: int | None = None) -> list[Path]:
    """Call each ``(function, args)`` drawing a picture and return their paths, in order.

    With more than one picture and more than one idle CPU (``workers``: at most that many
    processes; default: this process's CPUs not busy by the load average, counting this one
    as idle since it waits), they are drawn in parallel by processes forked from this one,
    which has matplotlib loaded already, so each picture costs only its drawing; the files are
    the same as drawn one after another. Without ``fork``, or on a busy machine (where a
    pool only adds its set-up), they are drawn here, one after another.
    """
    global _pictures
    if workers is None:
        cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count() or 1)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        workers = round(cpus - load + 1)
    workers = min(len(pictures), workers)
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [draw(*args) for draw, args in pictures]
    _pictures = pictures
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(_draw, range(len(pictures)), chunksize=1)
    finally:
        _pictures = []


def _draw(i: int) -> Path:
    draw, args = _pictures[i]
    return draw(*args)


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
