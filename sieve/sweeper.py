"""Sieve's side of a sweep (package ``sweeps``): one point's run and the spec's input checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isa.errors import SieveError
from sweeps.target import Point, Target
from workloads import WorkloadError

FIGURES = ("cycles", "kernel_cycles", "seconds", "energy_j", "edp_j_s", "verified",
           "effectual_ops", "skipped_ops", "ops", "dense_equivalent_ops", "dram_bytes",
           "glb_bytes", "tiles", "baseline.seconds", "baseline.energy_j", "baseline.speedup",
           "baseline.energy_ratio", "baseline.edp_ratio")
"""The figures a point records (edp_j_s = seconds x energy_j; baseline.*: with a baseline)."""


def run_point(point: Point) -> dict[str, Any]:
    """Run one point at its fidelity (never switched) and return its figures."""
    from sieve.api import run

    over = [f"{k}={json.dumps(v)}" for k, v in point["overrides"].items()]
    s = run(point["chip"], point["workload"], params=point["params"], overrides=over,
            fidelity=point["fidelity"], baseline=point["baseline"]).summary
    flat = {**s, **{f"baseline.{k}": v for k, v in s.get("baseline", {}).items()}}
    flat["edp_j_s"] = s["seconds"] * s["energy_j"] if "energy_j" in s else None
    out = {k: flat.get(k) for k in FIGURES}
    if s["fidelity"] != point["fidelity"]:
        out["error"] = f"ran at fidelity {s['fidelity']}, not {point['fidelity']}"
    elif not s["verified"]:
        out["error"] = f"output check failed: {s['checks']}"
    return out


def _check(fn: Any, *args: Any) -> str | None:
    try:
        fn(*args)
    except (SieveError, WorkloadError) as exc:
        return str(exc)
    return None


def _check_chip(chip: str, overrides: dict[str, Any]) -> str | None:
    from sieve.api import resolve_chip

    return _check(resolve_chip, chip, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def _check_workload(name: str, params: dict[str, Any]) -> str | None:
    from sieve.api import build_layer

    return _check(build_layer, name, params)


def _check_baseline(name: str) -> str | None:
    from baselines.cpu import load_cpu_preset

    return _check(load_cpu_preset, name)


TARGET = Target(run_point, _check_chip, _check_workload, _check_baseline, FIGURES,
                ("analytic", "burst", "cycle"), ("cycles", "energy_j", "baseline.edp_ratio"))


def sweep(spec: str | Path | dict[str, Any], *, scheduler: str | None = None,
          workers: int | None = None, retry_failed: bool = False,
          store: str | Path | None = None, progress: bool = False) -> Any:
    """Run (or resume) a sweep spec (docs/sweeps.md); its rows as a pandas DataFrame."""
    from sweeps.driver import execute
    from sweeps.table import flat_rows, to_frame

    sp, _run, rows = execute(spec, TARGET, scheduler=scheduler, workers=workers,
                             retry_failed=retry_failed, store=store, show_progress=progress)
    return to_frame(flat_rows(sp, rows))
