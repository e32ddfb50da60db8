"""Sweep benchmark: the speedup of 2 local workers over 1 on the same spec.

    .venv/bin/python benchmarks/bench_sweep.py          # examples/sweep-sparsity.yaml, ~3 min
    .venv/bin/python benchmarks/bench_sweep.py --spec OTHER.yaml --repeats 2

Each configuration runs ``sieve sweep SPEC --workers N`` in a fresh process with a fresh store
(so neither reuses the other's worker processes or results), BLAS pinned to one thread. Wall
time is measured around the process; CPU time is the sum over points of each point's CPU
seconds in its worker (the store's cpu_seconds column), so CPU/wall is the parallelism the
pool achieved (on a machine others share, CPU/wall below the worker count shows how much of
the cores the sweep got). ``--repeats`` alternates the configurations and keeps each one's
best wall. The process start-up (imports, the forkserver) is inside the wall time.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(spec: Path, workers: int, folder: Path) -> tuple[float, float, int]:
    """(wall seconds, summed point CPU seconds, points) of one fresh sweep."""
    db = folder / f"w{workers}-{time.monotonic_ns()}.sqlite"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sieve.cli", "sweep", str(spec), "--db", str(db),
                    "--workers", str(workers), "-q"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    with sqlite3.connect(db) as c:
        cpu, n, ok = c.execute("SELECT sum(cpu_seconds), count(*), sum(status = 'ok') "
                               "FROM points").fetchone()
    if ok != n:
        raise SystemExit(f"{n - ok} of {n} points failed: see {db}")
    return wall, float(cpu), int(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "examples/sweep-sparsity.yaml"))
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    best: dict[int, tuple[float, float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for workers in (1, 2):
                res = run(Path(args.spec), workers, Path(tmp))
                if workers not in best or res[0] < best[workers][0]:
                    best[workers] = res
    print(f"spec {args.spec}: {best[1][2]} points; cores available: "
          f"{len(os.sched_getaffinity(0))}")
    print(f"{'workers':>7}  {'wall s':>8}  {'point CPU s':>11}  {'CPU/wall':>8}")
    for w, (wall, cpu, _n) in sorted(best.items()):
        print(f"{w:>7}  {wall:>8.1f}  {cpu:>11.1f}  {cpu / wall:>8.2f}")
    (w1, c1, _), (w2, c2, _) = best[1], best[2]
    print(f"speedup of 2 workers over 1: {w1 / w2:.2f}x wall "
          f"(point CPU {c2 / c1:.2f}x of the 1-worker run's)")


if __name__ == "__main__":
    main()
