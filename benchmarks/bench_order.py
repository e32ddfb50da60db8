"""Dataflow-order choice on the catalog kernels: the compiler's choice against every forced order.

For each kernel: the order the catalog used by default before the compiler chose (``before``),
the order (and operand formats) the compiler now chooses for ``compiler.objective`` (edp),
and every legal forced order with the given formats, each simulated in full with the burst
engine (total cycles of the schedule, as ``sieve run`` reports them); then each probed
candidate's estimate against that full run: the screen's (one copy of the graph, on the whole
data or a strided sample) or, for the finalists, the whole run's as compiled (tiled, unrolled:
exact when run whole, else on a sample of its tile calls). ``--probe-steps`` lowers both
sampling thresholds to show how far sampled estimates are from the full run.

    .venv/bin/python benchmarks/bench_order.py [--set small|issue] [--probe-steps N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import compiler.order as order_mod  # noqa: E402
from compiler.order import (  # noqa: E402
    choose_order,
    enumerate_orders,
    with_formats,
    with_order,
)
from compiler.pipeline import compile_layer  # noqa: E402
from simulator.config import load_chip  # noqa: E402
from simulator.probe import probe  # noqa: E402
from workloads import get_workload  # noqa: E402

BEFORE = {"spmv": "ij", "spmspm": "ikj", "elemadd": "ij", "elemadd3": "ij", "elemmul": "ij",
          "sddmm": "ijk", "ttv": "ijk", "ttm": "ijkl", "innerprod": "ijk", "mttkrp": "ijkl"}
"""The loop order each catalog kernel used by default before the compiler chose one (the
workloads' former ``order`` defaults; the compiler's default for spmv and the element-wise
kernels)."""

SETS = {
    "small": [("spmv", {}), ("spmspm", {"shape": "32,32,32"}), ("elemadd", {}),
              ("elemadd3", {}), ("elemmul", {}), ("sddmm", {"shape": "12,12,8"}),
              ("ttv", {"shape": "12,12,12"}), ("ttm", {"shape": "8,8,8,8"}),
              ("innerprod", {"shape": "12,12,12"}), ("mttkrp", {"shape": "8,8,8,8"})],
    "issue": [("spmv", {"shape": "256,256", "density": "0.05"}),
              ("spmspm", {"shape": "512,512,512", "density": "0.01"}),
              ("elemadd", {"shape": "256,256"}), ("elemadd3", {"shape": "256,256"}),
              ("elemmul", {"shape": "256,256"}), ("sddmm", {"shape": "48,48,32"}),
              ("ttv", {"shape": "64,64,64", "density": "0.1"}),
              ("ttm", {"shape": "32,32,32,32", "density": "0.1"}),
              ("innerprod", {"shape": "32,32,32"}), ("mttkrp", {"shape": "16,16,16,16"})],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=tuple(SETS), default="issue")
    ap.add_argument("--chip", default="onyx")
    ap.add_argument("--probe-steps", type=int, default=None,
                    help="override compiler.order.PROBE_STEPS and SCREEN_STEPS (the "
                    "sampling thresholds)")
    args = ap.parse_args()
    if args.probe_steps is not None:
        order_mod.PROBE_STEPS = order_mod.SCREEN_STEPS = args.probe_steps
    chip = load_chip(args.chip)
    print(f"objective: {chip.compiler.objective}; cycles are whole-schedule burst cycles\n")
    print(f"{'kernel':<10} {'params':<30} {'before':>14} {'after':>14} {'best forced':>18} "
          f"{'after/best':>10} {'probe CPU s':>11}")
    agreement = []
    for name, params in SETS[args.set]:
        try:
            layer = get_workload(name).make(dict(params))
        except KeyError:
            print(f"{name:<10} (not in this catalog)")
            continue
        full = {}
        for c in enumerate_orders(layer):
            if c.rejected is None:
                full[c.order] = probe(compile_layer(with_order(layer, c.order), chip), chip)[0]
        t0 = time.process_time()
        choice = choose_order(layer, chip, probe)
        spent = time.process_time() - t0
        best = min(full, key=lambda o: (full[o], list(full).index(o)))
        before = BEFORE.get(name)
        text = " ".join(f"{k}={v}" for k, v in params.items())
        b = f"{full[before]:,.0f} {before}" if before in full else "-"
        after = probe(compile_layer(choice.apply(layer), chip), chip)[0]   # order + formats
        print(f"{name:<10} {text:<30} {b:>14} {after:>10,.0f} {choice.order:<4}"
              f"{full[best]:>13,.0f} {best:<4} {after / full[best]:>10.3f} "
              f"{spent:>11.2f}")
        for c in choice.candidates:
            if c.estimate is not None:
                got = probe(compile_layer(with_formats(layer, c.order, c.formats), chip),
                            chip)[0]
                s = c.how or (f"screen, {choice.sample[0]} stride {choice.sample[1]}"
                              if choice.sample else "screen, whole data")
                fm = " ".join(f"{k}:{v}" for k, v in c.formats.items())
                agreement.append((name, c.order, fm, s, c.estimate.cycles, got))
    print("\nprobe estimate vs full run (cycles)")
    print(f"{'kernel':<10} {'order':<6} {'formats':<28} {'estimate':>12} {'full':>12} "
          f"{'ratio':>7}  estimated on")
    for name, o, fm, s, est, got in agreement:
        print(f"{name:<10} {o:<6} {fm:<28} {est:>12,.0f} {got:>12,.0f} {est / got:>7.3f}  {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
