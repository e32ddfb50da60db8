"""Engine speed: wall time, simulated cycles and simulated cycles per wall second.

Runs SpM*SpM (Gustavson, ikj) on configs/chips/onyx.yaml at the sizes given on the command
line (default: the foundation issue's 64^3/10%, 128^3/5%, 256^3/2%), for each engine asked.
Wall time covers the kernel simulation only (compile and verification excluded); each point
is the median of --repeat runs. Usage:

    .venv/bin/python benchmarks/bench_engines.py [--engines cycle,burst] [--repeat 3]
        [--sizes 64:0.1,128:0.05,256:0.02]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.pipeline import compile_layer  # noqa: E402
from simulator.config import load_chip  # noqa: E402
from simulator.engine_cycle import run_kernel_cycle  # noqa: E402
from workloads import get_workload  # noqa: E402


def engine_fn(name: str):
    if name == "cycle":
        return run_kernel_cycle
    from simulator.engine_burst import run_burst

    return run_burst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="cycle")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="64:0.1,128:0.05,256:0.02")
    ap.add_argument("--chip", default=str(ROOT / "configs/chips/onyx.yaml"))
    args = ap.parse_args()
    chip = load_chip(args.chip)
    print(f"{'size':>6} {'density':>8} {'nnz(B)':>8} {'engine':>6} {'cycles':>12} "
          f"{'wall s (median)':>16} {'cycles/s':>12}")
    for item in args.sizes.split(","):
        n, d = item.split(":")
        layer = get_workload("spmspm").make({"shape": f"{n},{n},{n}", "density": d})
        program = compile_layer(layer, chip)
        kernel = program.kernels[0]
        for eng in args.engines.split(","):
            fn = engine_fn(eng)
            walls, cycles = [], None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                run = fn(kernel, program.images, chip)
                walls.append(time.perf_counter() - t0)
                cycles = run.cycles
            wall = statistics.median(walls)
            print(f"{n:>6} {float(d):>8.3%} {layer.tensors['B'].nnz:>8} {eng:>6} {cycles:>12,} "
                  f"{wall:>16.3f} {cycles / wall:>12,.0f}", flush=True)


if __name__ == "__main__":
    main()
