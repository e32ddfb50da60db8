"""Start-up: what the command line loads before it has work to do (a behaviour test: which
modules are imported, not how long it takes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("matplotlib", "scipy.optimize", "scipy.stats", "dask", "pandas")
LISTING = HEAVY + ("scipy", "baselines.kernels", "simpy", "networkx", "compiler")
"""What ``sieve list`` needs none of: it reads the catalog and lists config files."""


def _loaded(code: str, modules: tuple[str, ...] = HEAVY) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys\n"
         f"print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))"],
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


def test_listing_loads_neither_scipy_nor_the_simulator():
    # issue 11: `sieve list` under 0.3 s whole-process; the CPU presets are listed without
    # the kernel models (baselines loads its modules on first use)
    code = ("import contextlib, io\nfrom sieve.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    for what in ('all', 'chips', 'cpus', 'dram', 'workloads'):\n"
            "        main(['list', what])")
    assert _loaded(code, LISTING) == []


def test_baselines_names_load_on_first_use_with_the_whole_registry():
    code = ("import baselines, sys\nassert 'baselines.kernels' not in sys.modules\n"
            "from baselines.kernels import CPU_KERNELS\n"
            "assert 'spmspm' in CPU_KERNELS and 'mttkrp' in CPU_KERNELS, sorted(CPU_KERNELS)\n"
            "assert baselines.estimate is sys.modules['baselines.kernels'].estimate")
    assert _loaded(code) == []


# --- issue 11 item 3: what a kernel run loads ---------------------------------------------------

def test_a_kernel_run_loads_no_router_library_cpu_model_or_layer_engine(tmp_path):
    # the router's A* is Sieve's own (compiler/route.py), the CPU model loads with --baseline,
    # the layer engine with a model layer, the renderers with --report md|html
    code = ("import contextlib, io\nfrom sieve.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['run', 'onyx-small', 'spmv', '-q', '--out', {str(tmp_path)!r}, "
            "'--report', 'none']) == 0")
    unwanted = HEAVY + ("networkx", "baselines.kernels", "baselines.presets", "simulator.layers",
                        "simulator.analytic", "reports.render", "reports.html")
    assert _loaded(code, unwanted) == []
