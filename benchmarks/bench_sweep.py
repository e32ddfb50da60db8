"""Sweep benchmark: the speedup of 2 local workers over 1 on the same spec.

    .venv/bin/python benchmarks/bench_sweep.py          # examples/sweep-sparsity.yaml, ~3 min
    .venv/bin/python benchmarks/bench_sweep.py --spec OTHER.yaml --repeats 2

Each configuration runs the sweep (sweeps.driver.execute, as ``sieve sweep SPEC --workers N``)
in a fresh process with a fresh store (so neither reuses the other's worker processes or
results), BLAS pinned to one thread. Wall time is measured around the sweep (pool start-up
included) and around the whole process (imports too); CPU time is the sum over points of each
point's CPU seconds in its worker (the store's cpu_seconds column), so CPU/wall is the
parallelism the pool achieved; "busy workers" (point wall summed over points / sweep wall)
is how many points were in progress on average, whatever CPU the machine gave them (on a
shared machine with autogroup scheduling, more processes in one session share that
session's CPU: the speedup then needs a quiet machine, and the load average is printed).
``--repeats`` alternates the configurations and keeps each one's best sweep wall.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


CHILD = """
import json, sys, time
from sieve.sweeper import TARGET
from sweeps.driver import execute
t0 = time.perf_counter()
_spec, run, _rows = execute(sys.argv[1], TARGET, workers=int(sys.argv[2]), store=sys.argv[3],
                            show_progress=False)
print(json.dumps({"sweep_wall": time.perf_counter() - t0, "ran": run.ran}))
"""


def run(spec: Path, workers: int, folder: Path) -> tuple[float, float, float, float, int]:
    """(process wall s, sweep wall s, summed point CPU s, summed point wall s, points) of
    one fresh sweep."""
    db = folder / f"w{workers}-{time.monotonic_ns()}.sqlite"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(spec), str(workers), str(db)],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    sweep_wall = json.loads(out.stdout.strip().splitlines()[-1])["sweep_wall"]
    with sqlite3.connect(db) as c:
        cpu, busy, n, ok = c.execute("SELECT sum(cpu_seconds), sum(wall_seconds), count(*), "
                                     "sum(status = 'ok') FROM points").fetchone()
    if ok != n:
        raise SystemExit(f"{n - ok} of {n} points failed: see {db}")
    return wall, sweep_wall, float(cpu), float(busy), int(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "examples/sweep-sparsity.yaml"))
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    best: dict[int, tuple[float, float, float, float, int]] = {}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for workers in (1, 2):
                res = run(Path(args.spec), workers, Path(tmp))
                if workers not in best or res[1] < best[workers][1]:
                    best[workers] = res
    print(f"spec {args.spec}: {best[1][4]} points; cores available: "
          f"{len(os.sched_getaffinity(0))}; load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"{'workers':>7}  {'process wall s':>14}  {'sweep wall s':>12}  {'point CPU s':>11}  "
          f"{'CPU/sweep wall':>14}  {'busy workers':>12}")
    for w, (wall, sweep, cpu, busy, _n) in sorted(best.items()):
        print(f"{w:>7}  {wall:>14.1f}  {sweep:>12.1f}  {cpu:>11.1f}  {cpu / sweep:>14.2f}  "
              f"{busy / sweep:>12.2f}")
    (p1, s1, c1, _, _), (p2, s2, c2, _, _) = best[1], best[2]
    print(f"speedup of 2 workers over 1: {s1 / s2:.2f}x sweep wall, {p1 / p2:.2f}x process "
          f"wall (point CPU {c2 / c1:.2f}x of the 1-worker run's)")


if __name__ == "__main__":
    main()
