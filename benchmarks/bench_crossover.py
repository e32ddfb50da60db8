"""Dense vs sparse mode on Onyx: where does sparse start to win? (Onyx, IEEE Micro 2025:
a 512x512 matmul wins in sparse mode above about 89% sparsity, 23.1x better at 99%.)

Dense mode: `sieve.run(onyx, "gemm")`, the output-stationary systolic schedule
(simulator/systolic.py, SCALE-Sim's conventions) on Onyx's dense MAC block (16 x 21 PEs, one
MEM-column group kept for I/O): a systolic kernel with the same firmware as sparse runs and
its energy from the same function (the MAC block's actions, traffic, leakage over the run);
it does the same work whatever the sparsity.

Sparse mode: SpM*SpM (Gustavson, ikj) with both operands at the given sparsity, compiled and
simulated on configs/chips/onyx.yaml with the burst engine, energy from the same table.
Sparsities below --min-sparsity are not simulated (their sparse runs need tens of millions of
token steps) and are printed as "not run".

    .venv/bin/python benchmarks/bench_crossover.py [--n 512] [--plot PATH]

The plot goes to --plot, by default crossover.png in a new temporary folder (never into the
source tree); its path is printed.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sieve  # noqa: E402
from simulator.config import load_chip  # noqa: E402

_ECHO = functools.partial(print, flush=True)
SPARSITIES = [0.0, 0.5, 0.8, 0.85, 0.89, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999]


def crossing(xs, ratios):
    """Sparsity where ratio (dense/sparse) crosses 1, by log-linear interpolation."""
    import math

    pts = [(x, r) for x, r in zip(xs, ratios) if r is not None]
    for (x0, r0), (x1, r1) in zip(pts, pts[1:]):
        if r0 < 1 <= r1:
            t = (0 - math.log(r0)) / (math.log(r1) - math.log(r0))
            return x0 + t * (x1 - x0)
    return None


def measure(chip, n: int, sparsities: list[float], min_sparsity: float, *,
            echo=_ECHO
            ) -> tuple[dict, list[tuple[float, dict | None]]]:
    """The dense-mode gemm summary of an n^3 matmul on ``chip`` and, per sparsity, the sparse
    SpM*SpM summary (None below ``min_sparsity``: not run); ``echo`` prints the table."""
    dense = sieve.run(chip, "gemm", params={"shape": f"{n},{n},{n}", "dataflow": "os"}).summary
    assert dense["verified"], dense["checks"]
    dense_s, dense_j = dense["seconds"], dense["energy_j"]
    echo(f"{n}x{n} matmul on {chip.name}: dense mode {dense['cycles']:,} cycles "
         f"(compute {dense['compute_cycles']:,}, {dense['kernel']}), {dense_s * 1e6:.1f} us, "
         f"{dense_j * 1e6:.2f} uJ")
    echo(f"{'sparsity':>9} {'sparse cycles':>14} {'sparse us':>10} {'sparse uJ':>10} "
         f"{'time x':>7} {'energy x':>9} {'EDP x':>8} {'wall s':>7}")
    sparse: list[tuple[float, dict | None]] = []
    for sp in sparsities:
        if sp < min_sparsity:
            echo(f"{sp:>9.1%} {'not run':>14}")
            sparse.append((sp, None))
            continue
        t0 = time.perf_counter()
        s = sieve.run(chip, "spmspm", params={"shape": f"{n},{n},{n}", "density": 1 - sp,
                                              "seed": 0}).summary
        wall = time.perf_counter() - t0
        assert s["verified"], s["checks"]
        sparse.append((sp, s))
        t_ratio = dense_s / s["seconds"]
        e_ratio = dense_j / s["energy_j"]
        echo(f"{sp:>9.1%} {s['cycles']:>14,} {s['seconds'] * 1e6:>10.1f} "
             f"{s['energy_j'] * 1e6:>10.2f} {t_ratio:>7.2f} {e_ratio:>9.2f} "
             f"{t_ratio * e_ratio:>8.2f} {wall:>7.1f}")
    return dense, sparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--min-sparsity", type=float, default=0.80)
    ap.add_argument("--plot", default=None,
                    help="PNG to write (default: crossover.png in a new temporary folder)")
    args = ap.parse_args()
    if args.plot is None:
        import tempfile

        args.plot = str(Path(tempfile.mkdtemp(prefix="sieve-crossover-")) / "crossover.png")
    n = args.n
    chip = load_chip(ROOT / "configs/chips/onyx.yaml")
    dense, sparse = measure(chip, n, SPARSITIES, args.min_sparsity)
    rows = [(sp, None, None, None) if s is None else
            (sp, dense["seconds"] / s["seconds"], dense["energy_j"] / s["energy_j"],
             dense["seconds"] * dense["energy_j"] / (s["seconds"] * s["energy_j"]))
            for sp, s in sparse]
    xs = [r[0] for r in rows]
    for label, i in (("time", 1), ("energy", 2), ("EDP", 3)):
        x = crossing(xs, [r[i] for r in rows])
        at99 = next((r[i] for r in rows if abs(r[0] - 0.99) < 1e-9), None)
        print(f"{label:>6}: sparse mode wins above "
              + (f"{x:.1%} sparsity" if x is not None else "(no crossing in the range run)")
              + (f"; sparse advantage at 99%: {at99:.1f}x" if at99 else "")
              + "   (Onyx, IEEE Micro 2025: 89%, 23.1x at 99%)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, i, style in (("time", 1, "o-"), ("energy", 2, "s-"), ("EDP", 3, "^-")):
        pts = [(100 * r[0], r[i]) for r in rows if r[i] is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{label}: dense / sparse")
    ax.axhline(1, color="grey", lw=1)
    ax.axvline(89, color="tab:red", ls="--", lw=1, label="Onyx-reported crossover (89%)")
    ax.set_yscale("log")
    ax.set_xlabel("sparsity of both operands (%)")
    ax.set_ylabel("sparse-mode advantage (x, log)")
    ax.set_title(f"{n}x{n} matmul on {chip.name}: sparse vs dense mode")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
