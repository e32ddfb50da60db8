"""Start-up time of the command line, as a user meets it: whole-process runs of ``sieve``.

Each command runs ``--repeats`` times (default 5) as a fresh process with BLAS pinned to one
thread; printed are the medians of its CPU user time, user + system time and wall time
(this machine is shared: CPU time is the figure to compare, wall time is noisy).

    .venv/bin/python benchmarks/bench_startup.py [--repeats 5] [--shape 64,64,64]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(argv: list[str], repeats: int, fresh: Path | None = None
            ) -> tuple[float, float, float]:
    """Medians over ``repeats`` runs of (user s, user + system s, wall s) of ``argv``;
    ``fresh``: a folder removed before each run (a run folder ``--out`` writes)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    user, cpu, wall = [], [], []
    for _ in range(repeats):
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        wall.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        user.append(after.ru_utime - before.ru_utime)
        cpu.append(user[-1] + after.ru_stime - before.ru_stime)
    return statistics.median(user), statistics.median(cpu), statistics.median(wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workload", default="spmspm", help="the small kernel (catalog name)")
    args = ap.parse_args()
    sieve = [sys.executable, "-m", "sieve.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cases = [("sieve --version", sieve + ["--version"], None),
                 ("sieve list", sieve + ["list"], None)]
        for report in ("none", "md", "html"):
            cases.append((f"sieve run onyx {args.workload} --out DIR --report {report}",
                          sieve + ["run", "onyx", args.workload, "--out", str(out), "-q",
                                   "--report", report], out))
        print(f"whole-process runs, median of {args.repeats} (BLAS 1 thread; CPU seconds)")
        print(f"  {'command':<52} {'user':>7} {'user+sys':>9} {'wall':>7}")
        for label, argv, fresh in cases:
            user, cpu, wall = measure(argv, args.repeats, fresh)
            print(f"  {label:<52} {user:7.2f} {cpu:9.2f} {wall:7.2f}")


if __name__ == "__main__":
    main()
