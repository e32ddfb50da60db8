"""Engine speed: wall time, simulated cycles and simulated cycles per wall second.

Part 1, SpM*SpM (Gustavson, ikj) on configs/chips/onyx.yaml at 256^3/2%, 400^3/2%,
1024^3/1% and 4096^3/0.1%, for the burst engine and (up to --cycle-max 1024) the cycle engine.
Part 2, how burst wall time grows with nonzeros: element-wise add and SpMV at growing sizes
(the global buffer is enlarged with -c glb.tiles=256 so a million nonzeros fit on chip).

Wall time covers the kernel simulation only (compile and verification excluded); every figure
is the median of --repeat runs. Both engines' cycles are printed so agreement is visible.

    .venv/bin/python benchmarks/bench_engines.py [--repeat 3] [--cycle-max 1024] [--quick]
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
from simulator.engine_burst import run_burst  # noqa: E402
from simulator.engine_cycle import run_kernel_cycle  # noqa: E402
from workloads import get_workload  # noqa: E402

ENGINES = {"burst": run_burst, "cycle": run_kernel_cycle}


def timed(fn, kernel, images, chip, repeat: int) -> tuple[int, float]:
    walls, cycles = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        run = fn(kernel, images, chip)
        walls.append(time.perf_counter() - t0)
        cycles = run.cycles
    return cycles, statistics.median(walls)


def spmspm_table(chip, repeat: int, cycle_max: int, sizes: list[tuple[int, float]]) -> None:
    print("SpM*SpM ikj on onyx (burst vs cycle engine)")
    print(f"{'n':>6} {'density':>8} {'nnz(B)':>8} {'engine':>6} {'cycles':>12} "
          f"{'wall s':>9} {'cycles/s':>12} {'speedup':>8}")
    for n, d in sizes:
        layer = get_workload("spmspm").make({"shape": f"{n},{n},{n}", "density": d})
        program = compile_layer(layer, chip)
        kernel = program.kernels[0]
        burst = timed(run_burst, kernel, program.images, chip, repeat)
        rows = [("burst", *burst)]
        if n <= cycle_max:
            rows.append(("cycle", *timed(run_kernel_cycle, kernel, program.images, chip,
                                         1 if n >= 1024 else repeat)))
        for eng, cycles, wall in rows:
            speed = f"{rows[1][2] / burst[1]:>7.0f}x" if eng == "burst" and len(rows) > 1 \
                else ""
            print(f"{n:>6} {d:>8.1%} {layer.tensors['B'].nnz:>8} {eng:>6} {cycles:>12,} "
                  f"{wall:>9.3f} {cycles / wall:>12,.0f} {speed:>8}", flush=True)


def scaling(chip, repeat: int, sizes: list[int]) -> None:
    print("\nburst wall time vs nonzeros (density 3%)")
    print(f"{'kernel':>8} {'n':>6} {'nnz':>9} {'cycles':>11} {'wall s':>8} {'us/nnz':>7} "
          f"{'cycles/s':>12}")
    for name in ("elemadd", "spmv"):
        for n in sizes:
            layer = get_workload(name).make({"shape": f"{n},{n}", "density": 0.03})
            program = compile_layer(layer, chip)
            nnz = sum(getattr(t, "nnz", 0) or int((t != 0).sum())
                      for t in layer.tensors.values())
            cycles, wall = timed(run_burst, program.kernels[0], program.images, chip, repeat)
            print(f"{name:>8} {n:>6} {nnz:>9,} {cycles:>11,} {wall:>8.3f} "
                  f"{wall / nnz * 1e6:>7.2f} {cycles / wall:>12,.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cycle-max", type=int, default=1024,
                    help="largest n the cycle engine runs (it takes minutes beyond 1024)")
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    args = ap.parse_args()
    chip = load_chip(ROOT / "configs/chips/onyx.yaml")
    big = load_chip(ROOT / "configs/chips/onyx.yaml", ["glb.tiles=256"])
    if args.quick:
        spmspm_table(chip, 1, 256, [(64, 0.1), (256, 0.02)])
        scaling(big, 1, [256, 512])
        return
    spmspm_table(chip, args.repeat, args.cycle_max,
                 [(256, 0.02), (400, 0.02), (1024, 0.01), (4096, 0.001)])
    scaling(big, args.repeat, [512, 1024, 2048, 4096])


if __name__ == "__main__":
    main()
