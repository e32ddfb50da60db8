"""Run the catalog's kernels at their defaults (and a few larger, tiled and unrolled cases)
and write each run folder, so that two versions of Sieve can be compared file by file.

A speed change must not change a simulated result: run this before and after it, then diff
the folders (``timing.json``, wall-clock time, is expected to differ and nothing else):

    .venv/bin/python benchmarks/same_results.py /tmp/before     # on the old commit
    .venv/bin/python benchmarks/same_results.py /tmp/after      # on the new one
    diff -r -x timing.json /tmp/before /tmp/after && echo identical
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sieve.api import run  # noqa: E402

CASES: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    ("spmv", {}, ()), ("spmspm", {}, ()), ("elemadd", {}, ()), ("elemadd3", {}, ()),
    ("elemmul", {}, ()), ("gemm", {}, ()), ("sddmm", {}, ()), ("ttv", {}, ()), ("ttm", {}, ()),
    ("innerprod", {}, ()), ("mttkrp", {}, ()),
    # tiled and unrolled: the order choice's finalists compiled as the run is
    ("spmspm", {"shape": "256,256,256", "density": "0.02"}, ()),
    ("spmspm", {"shape": "128,128,128", "density": "0.05"}, ("compiler.unroll=4",)),
    ("spmv", {"shape": "256,256", "density": "0.05"}, ()),
]
"""(workload, parameters, chip overrides) of each run, on configs/chips/onyx.yaml."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder to write one run folder per case into")
    args = ap.parse_args()
    for name, params, overrides in CASES:
        tag = "_".join([name] + [f"{k}-{v}" for k, v in params.items()]
                       + [o.replace("=", "-") for o in overrides]).replace(",", "x")
        t0 = time.process_time()
        rep = run(ROOT / "configs/chips/onyx.yaml", name, params=params, overrides=overrides,
                  out=args.out / tag)
        print(f"{tag:<48} {rep.summary['cycles']:>12,} cycles  "
              f"{time.process_time() - t0:6.2f} CPU s")


if __name__ == "__main__":
    main()
