"""Start-up time of the command line, as a user meets it: whole-process runs of ``sieve``.

Each command runs ``--repeats`` times (default 5) as a fresh process with BLAS pinned to one
thread; printed are the medians of its CPU user time, user + system time and wall time (this
machine is shared: CPU time is the figure to compare, wall time is noisy). Two bytecode
settings, since Python's compiled-module cache decides about 0.15 s of a run:

- ``cached``: every module's bytecode cached, as after installing Sieve or after its first run;
- ``uncached``: Sieve's own modules compiled from source at every run (third-party ones
  cached), as in an environment with ``PYTHONDONTWRITEBYTECODE=1`` and no ``__pycache__``.

Both use a private cache folder (``PYTHONPYCACHEPREFIX``), so the source tree is not touched.
``--root`` measures another checkout of Sieve (e.g. an older commit's ``git archive``) with
this interpreter.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 5] [--root DIR] [--cache both]
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
PACKAGES = ("baselines", "compiler", "isa", "reports", "sieve", "simulator", "sweeps",
            "workloads")
"""Sieve's own packages: the ones ``uncached`` compiles from source at every run."""


def measure(argv: list[str], root: Path, env: dict[str, str], repeats: int,
            fresh: Path | None = None) -> tuple[float, float, float]:
    """Medians over ``repeats`` runs of (user s, user + system s, wall s) of ``argv`` run in
    ``root``; ``fresh``: a folder removed before each run (the run folder ``--out`` writes)."""
    user, cpu, wall = [], [], []
    for _ in range(repeats):
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL,
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
    ap.add_argument("--root", type=Path, default=ROOT, help="the Sieve checkout to run")
    ap.add_argument("--cache", choices=("cached", "uncached", "both"), default="both")
    args = ap.parse_args()
    root = args.root.resolve()
    sieve = [sys.executable, "-m", "sieve.cli"]
    base = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cached, uncached = Path(tmp) / "pyc", Path(tmp) / "pyc-no-sieve"
        cases = [("sieve --version", sieve + ["--version"], None),
                 ("sieve list", sieve + ["list"], None)]
        for report in ("none", "md", "html"):
            cases.append((f"sieve run onyx {args.workload} --out DIR --report {report}",
                          sieve + ["run", "onyx", args.workload, "--out", str(out), "-q",
                                   "--report", report], out))
        # warm-up: every module any case imports, compiled into the private cache
        for _, argv, fresh in cases:
            if fresh is not None:
                shutil.rmtree(fresh, ignore_errors=True)
            subprocess.run(argv, cwd=root, env={**base, "PYTHONPYCACHEPREFIX": str(cached)},
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.copytree(cached, uncached)
        mirror = uncached / root.relative_to(root.anchor)
        for pkg in PACKAGES:
            shutil.rmtree(mirror / pkg, ignore_errors=True)
        modes = ("cached", "uncached") if args.cache == "both" else (args.cache,)
        print(f"whole-process runs of {root}, median of {args.repeats} "
              "(BLAS 1 thread; CPU seconds)")
        print(f"  {'command':<52} {'bytecode':<9} {'user':>6} {'user+sys':>9} {'wall':>6}")
        for label, argv, fresh in cases:
            for mode in modes:
                env = {**base, "PYTHONDONTWRITEBYTECODE": "1",
                       "PYTHONPYCACHEPREFIX": str(cached if mode == "cached" else uncached)}
                user, cpu, wall = measure(argv, root, env, args.repeats, fresh)
                print(f"  {label:<52} {mode:<9} {user:6.2f} {cpu:9.2f} {wall:6.2f}")


if __name__ == "__main__":
    main()
