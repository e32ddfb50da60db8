"""Reports of Sieve runs: roofline, energy, chip-vs-CPU and utilization pictures, summary.md,
a self-contained report.html, a Perfetto trace, and comparisons across runs.

The package reads run folders (what ``sieve run --out DIR`` writes); it never runs a
simulation and imports neither ``compiler``, ``simulator`` nor ``sieve``.
"""

from __future__ import annotations

import importlib
from typing import Any

from reports.roofline import Roofline, roofline
from reports.rundata import ReportError, RunData, load_run

_WHERE = {"render_comparison": "reports.render", "render_run": "reports.render",
          "trace_events": "reports.trace"}

__all__ = ["ReportError", "Roofline", "RunData", "load_run", "render_comparison", "render_run",
           "roofline", "trace_events"]


def __getattr__(name: str) -> Any:
    """The package's names load their modules on first use: ``sieve run --report none``
    writes the run folder (reports.rundir) without the renderers."""
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
