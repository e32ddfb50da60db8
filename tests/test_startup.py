"""Start-up: what the command line loads before it has work to do (a behaviour test: which
modules are imported, not how long it takes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("matplotlib", "scipy.optimize", "scipy.stats", "dask", "pandas")


def _loaded(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys\n"
         f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_cli_loads_no_heavy_library():
    assert _loaded("import sieve.cli") == []


def test_the_simulator_facade_loads_no_plotting_or_fitting_library():
    # sieve.run compiles and simulates; scipy.optimize is for calibrate-cpu, matplotlib for
    # rendering pictures, and neither is needed to run a kernel
    assert _loaded("import sieve.api") == []


def test_rendering_markdown_alone_loads_no_plotting_library():
    assert _loaded("from reports import render_run") == []
