"""Reports of Sieve runs: roofline, energy, chip-vs-CPU and utilization pictures, summary.md,
a self-contained report.html, a Perfetto trace, and comparisons across runs.

The package reads run folders (what ``sieve run --out DIR`` writes); it never runs a
simulation and imports neither ``compiler``, ``simulator`` nor ``sieve``.
"""

from __future__ import annotations

from reports.render import render_comparison, render_run
from reports.roofline import Roofline, roofline
from reports.rundata import ReportError, RunData, load_run
from reports.trace import trace_events

__all__ = ["ReportError", "Roofline", "RunData", "load_run", "render_comparison", "render_run",
           "roofline", "trace_events"]
