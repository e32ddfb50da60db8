"""Record the summary figures of a fixed list of catalog workloads into a JSON file.

A refactoring of the road from workload to result must leave every figure unchanged apart
from deliberate fixes. Run this before the change and after it, then compare:

    python benchmarks/snapshot_figures.py --out before.json
    python benchmarks/snapshot_figures.py --out after.json --compare before.json

benchmarks/snapshots/ holds the snapshot of the code before issue 9's one road and after it
(the differences are the deliberate fixes listed in that branch's report: a gemm pays its
launch and configuration, gemm energy is charged like any kernel's, dense-mode products and
the MoE router charge the MAC block's actions). before-/after-i14-unroll.json: the kernels and
two layer cases (no gemm), before and after Onyx's config unrolls (compiler.unroll:
auto): every unrollable kernel's cycles fall and its energy rises (each copy's loads and
configuration); spmv, innerprod, elemadd and the layers are unchanged.

Figures kept per case: every numeric entry of the run's summary (cycles, kernel_cycles, op
and traffic counts, energy_j, the dense/sparse mode cycles) plus the energy per action.
Wall-clock times are left out (they are not figures of the model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

KERNELS = [
    ("spmspm", {"shape": "16,16,16", "density": "0.2"}),
    ("spmv", {"shape": "32,32", "density": "0.2"}),
    ("elemadd", {"shape": "24,24", "density": "0.2"}),
    ("elemmul", {"shape": "24,24", "density": "0.3"}),
    ("sddmm", {"shape": "12,12,8", "density": "0.3"}),
    ("ttv", {"shape": "8,8,8", "density": "0.2"}),
    ("ttm", {"shape": "6,6,6,6", "density": "0.3"}),
    ("innerprod", {"shape": "6,6,6", "density": "0.3"}),
    ("mttkrp", {"shape": "6,6,6,6", "density": "0.3"}),
]
GEMMS = [
    ("gemm", {"shape": "64,48,40"}),
    ("gemm", {"shape": "64,48,40", "pattern": "2:4"}),
]
LAYERS = [
    ("moe.mixtral8x7b", {"scale": "64", "tokens": "16"}),
    ("moe.mixtral8x7b", {"scale": "64", "tokens": "16", "weight_sparsity": "0.5"}),
    ("moe.deepseek-v2-lite", {"scale": "32", "tokens": "8"}),
    ("linear.llama2-7b.q", {"scale": "32", "tokens": "8"}),
    ("linear.bert-base.intermediate", {"scale": "8", "tokens": "16",
                                       "weight_sparsity": "0.9"}),
    ("ffn.llama2-7b", {"scale": "64", "tokens": "8"}),
    ("ffn.bert-base", {"scale": "8", "tokens": "4"}),
]


Case = tuple[str, str, dict[str, str], list[str], "str | None", str]


def cases() -> list[Case]:
    """(label, workload, params, overrides, fidelity, chip) of every case, in a fixed order."""
    out: list[Case] = []
    for name, params in KERNELS:
        out.append((f"onyx/{name}", name, params, [], None, "onyx"))
    for chip in ("onyx", "systolic-128"):
        for name, params in GEMMS:
            tag = params.get("pattern", "dense")
            out.append((f"{chip}/{name}/{tag}", name, params, [], None, chip))
    for name, params in LAYERS:
        for mode in ("sparse", "dense"):
            for fid in ("analytic", "burst"):
                out.append((f"onyx/{name}/{params}/{mode}/{fid}", name, params,
                            [f"compiler.layer_mode={mode}"], fid, "onyx"))
    return out


def figures(summary: dict[str, Any], energy: Any) -> dict[str, Any]:
    """The numeric figures of one run's summary and its energy per action."""
    out: dict[str, Any] = {}
    for key, value in sorted(summary.items()):
        if isinstance(value, bool) or key in ("seconds",):
            continue
        if isinstance(value, (int, float)):
            out[key] = value
    if "experts" in summary:
        out["experts"] = summary["experts"]
    if energy is not None:
        out["energy_by_action_pj"] = {k: v for k, v in sorted(energy.by_action.items()) if v}
    return out


def snapshot(only: str | None = None) -> dict[str, Any]:
    import sieve

    result: dict[str, Any] = {}
    for label, name, params, overrides, fid, chip in cases():
        if only and only not in label:
            continue
        report = sieve.run(chip, name, params=params, overrides=overrides, fidelity=fid)
        result[label] = figures(report.summary, report.energy)
        print(f"{label}: {report.summary['cycles']:,} cycles", file=sys.stderr)
    return result


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Lines naming every figure that differs (or is missing on one side)."""
    lines = []
    for label in sorted(set(before) | set(after)):
        b, a = before.get(label), after.get(label)
        if b is None or a is None:
            lines.append(f"{label}: only in {'after' if b is None else 'before'}")
            continue
        for key in sorted(set(b) | set(a)):
            if b.get(key) != a.get(key):
                lines.append(f"{label}: {key}: {b.get(key)!r} -> {a.get(key)!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--compare", default=None, help="an earlier snapshot to diff against")
    ap.add_argument("--only", default=None, help="run only the cases whose label contains it")
    args = ap.parse_args(argv)
    snap = snapshot(args.only)
    Path(args.out).write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
    if args.compare:
        diff = compare(json.loads(Path(args.compare).read_text()), snap)
        print("\n".join(diff) if diff else "identical figures")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
