"""Engine speed: wall time, simulated cycles and simulated cycles per wall second.

Part 1, SpM*SpM (Gustavson, ikj) on configs/chips/onyx.yaml at 256^3/2%, 400^3/2%,
1024^3/1% and 4096^3/0.1%, for the burst engine and (up to --cycle-max 1024) the cycle engine.
Part 2, how burst wall time grows with nonzeros: element-wise add and SpMV at growing sizes
(the global buffer is enlarged with -c glb.tiles=256 so a million nonzeros fit on chip).

Part 3 (--sweep), where the burst solver's windows matter: SpM*SpM 256^3 from 1% to 50%
density, balanced and unbalanced (compiler.balance_fifos=false), 200^3 at 5% (SAM's own
simulator's case), 512^3 at 8% and 2048^3 at 1%. Every case runs in its own process under a
memory cap (--mem-gb), so peak RSS is the case's own; the figures are CPU seconds of the
kernel simulation (resource.getrusage: this machine is shared, wall time is noisy), ns of CPU
per step, the process's peak RSS, and the burst/cycle ratio from the same run. The cycle
engine runs only where the burst engine's cycle count is at most --cycle-max-cycles and its
steps at most --cycle-max-steps (the defaults skip 50% and 2048^3, whose 17-30 million steps
take the cycle engine many minutes; the rest is about ten minutes of cycle engine on a
loaded VM). The 200^3 @5% row also prints burst against --sam-seconds, the CPU time of SAM's
Python simulator on that case (issue 11's figure unless measured anew).
BLAS threads are pinned to one (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS) unless set.

Every case is one whole kernel call: the chip's MEM tiles are enlarged (``WHOLE``) so the
compiler does not tile it. Tiling cuts a kernel into calls of the same engines (docs/
architecture.md, Tiling), so engine speed is measured on the whole kernel, as SAM's simulator
runs it; `sieve run` on the same case tiles it and pays the firmware per tile.

Wall time covers the kernel simulation only (compile and verification excluded); every figure
is the median of --repeat runs. Both engines' cycles are printed so agreement is visible.

    .venv/bin/python benchmarks/bench_engines.py [--repeat 3] [--cycle-max 1024] [--quick]
    .venv/bin/python benchmarks/bench_engines.py --sweep [--cycle-max-cycles 400000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")     # before numpy loads; the --sweep children inherit it

from compiler.pipeline import compile_layer  # noqa: E402
from simulator.config import load_chip  # noqa: E402
from simulator.engine_burst import run_burst  # noqa: E402
from simulator.engine_cycle import run_kernel_cycle  # noqa: E402
from workloads import get_workload  # noqa: E402

ENGINES = {"burst": run_burst, "cycle": run_kernel_cycle}
WHOLE = ["mem_tile.size_bytes=1073741824"]   # no kernel here exceeds a MEM tile: one call each


def whole_kernel(layer, chip):
    """The layer's kernel and images as one call (SystemExit if the compiler tiled it)."""
    program = compile_layer(layer, chip)
    if program.tiling is not None:
        raise SystemExit(f"{layer.name}: tiled into {len(program.tiling.tiles)} calls; "
                         "enlarge mem_tile.size_bytes in WHOLE")
    return program.kernels[0], program.images


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
        kernel, images = whole_kernel(layer, chip)
        burst = timed(run_burst, kernel, images, chip, repeat)
        rows = [("burst", *burst)]
        if n <= cycle_max:
            rows.append(("cycle", *timed(run_kernel_cycle, kernel, images, chip,
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
            kernel, images = whole_kernel(layer, chip)
            nnz = sum(getattr(t, "nnz", 0) or int((t != 0).sum())
                      for t in layer.tensors.values())
            cycles, wall = timed(run_burst, kernel, images, chip, repeat)
            print(f"{name:>8} {n:>6} {nnz:>9,} {cycles:>11,} {wall:>8.3f} "
                  f"{wall / nnz * 1e6:>7.2f} {cycles / wall:>12,.0f}", flush=True)


SWEEP = ([(256, d, True) for d in (0.01, 0.02, 0.05, 0.08, 0.1, 0.2, 0.3, 0.5)]
         + [(256, d, False) for d in (0.02, 0.05, 0.08, 0.2)]
         + [(200, 0.05, True), (512, 0.08, True), (2048, 0.01, True)])


def one_case(n: int, density: float, balance: bool, engine: str) -> dict:
    """Compile and run one SpM*SpM case in this process; the kernel simulation's CPU time."""
    chip = load_chip(ROOT / "configs/chips/onyx.yaml",
                     WHOLE + ([] if balance else ["compiler.balance_fifos=false"]))
    layer = get_workload("spmspm").make({"shape": f"{n},{n},{n}", "density": density})
    kernel, images = whole_kernel(layer, chip)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    run = ENGINES[engine](kernel, images, chip)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    steps = sum(u.busy_cycles for u in run.units.values())
    return {"cycles": run.cycles, "cpu": cpu, "steps": steps,
            "rss_mb": ru1.ru_maxrss / 1024}


def in_process(args: list[str], mem_gb: float) -> dict | str:
    """Run ``--one`` in a child process under an address-space cap."""
    cap = int(mem_gb * 2**30)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    res = subprocess.run([sys.executable, __file__, "--one", *args], capture_output=True,
                         text=True, preexec_fn=limit, check=False)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        return f"failed: {last[:60]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


SAM_CASE = (200, 0.05, True)


def sweep(cases: list[tuple[int, float, bool]], cycle_max_cycles: int, mem_gb: float,
          sam_seconds: float, cycle_max_steps: int = 12_000_000) -> None:
    print("SpM*SpM ikj on onyx: burst vs cycle, each case in its own process "
          f"(cap {mem_gb:g} GB); CPU seconds of the kernel simulation")
    print(f"{'n':>5} {'dens':>5} {'bal':>4} {'steps':>10} {'cycles':>10} {'burst s':>8} "
          f"{'ns/step':>8} {'RSS MB':>7} {'cycle s':>8} {'ratio':>7}")
    for n, d, bal in cases:
        b = in_process([str(n), str(d), str(int(bal)), "burst"], mem_gb)
        if isinstance(b, str):
            print(f"{n:>5} {d:>5.0%} {'y' if bal else 'n':>4} burst {b}", flush=True)
            continue
        c: dict | str | None = None
        if b["cycles"] <= cycle_max_cycles and b["steps"] <= cycle_max_steps:
            c = in_process([str(n), str(d), str(int(bal)), "cycle"], mem_gb)
            if isinstance(c, dict) and c["cycles"] != b["cycles"]:
                c = f"cycles differ: {c['cycles']}"
        cyc = f"{c['cpu']:>8.2f} {c['cpu'] / max(b['cpu'], 1e-9):>6.0f}x" \
            if isinstance(c, dict) else (c or "(skipped)")
        sam = f"   SAM {sam_seconds:g} s: {sam_seconds / max(b['cpu'], 1e-9):.0f}x" \
            if (n, d, bal) == SAM_CASE else ""
        print(f"{n:>5} {d:>5.0%} {'y' if bal else 'n':>4} {b['steps']:>10,} "
              f"{b['cycles']:>10,} {b['cpu']:>8.3f} {b['cpu'] / b['steps'] * 1e9:>8.0f} "
              f"{b['rss_mb']:>7.0f} {cyc}{sam}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cycle-max", type=int, default=1024,
                    help="largest n the cycle engine runs (it takes minutes beyond 1024)")
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    ap.add_argument("--sweep", action="store_true",
                    help="the density sweep, unbalanced graphs and the large cases")
    ap.add_argument("--cycle-max-cycles", type=int, default=400_000,
                    help="--sweep: run the cycle engine only up to this many cycles")
    ap.add_argument("--cycle-max-steps", type=int, default=12_000_000,
                    help="--sweep: ... and this many unit steps (its CPU grows with steps: an "
                         "unrolled kernel has few cycles and many steps)")
    ap.add_argument("--mem-gb", type=float, default=6.0, help="--sweep: per-case memory cap")
    ap.add_argument("--sam-seconds", type=float, default=1.6,
                    help="--sweep: CPU s of SAM's Python simulator on SpM*SpM 200^3 @5%%")
    ap.add_argument("--one", nargs=4, metavar=("N", "DENSITY", "BALANCE", "ENGINE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        n, d, bal, eng = args.one
        print(json.dumps(one_case(int(n), float(d), bool(int(bal)), eng)))
        return
    if args.sweep:
        sweep(SWEEP, args.cycle_max_cycles, args.mem_gb, args.sam_seconds,
              args.cycle_max_steps)
        return
    chip = load_chip(ROOT / "configs/chips/onyx.yaml", WHOLE)
    big = load_chip(ROOT / "configs/chips/onyx.yaml", WHOLE + ["glb.tiles=256"])
    if args.quick:
        spmspm_table(chip, 1, 256, [(64, 0.1), (256, 0.02)])
        scaling(big, 1, [256, 512])
        return
    spmspm_table(chip, args.repeat, args.cycle_max,
                 [(256, 0.02), (400, 0.02), (1024, 0.01), (4096, 0.001)])
    scaling(big, args.repeat, [512, 1024, 2048, 4096])


if __name__ == "__main__":
    main()
