"""Sieve's side of a sweep (package ``sweeps``): one point's run and the spec's input checks."""

from __future__ import annotations

from typing import Any

from baselines import load_cpu_preset
from isa.errors import SieveError
from reports.notebook import flat_summary
from sieve.api import build_layer, resolve_chip, run
from sweeps.spec import override_args as _over
from sweeps.target import Point, Target
from workloads import WorkloadError

FIGURES = ("cycles", "kernel_cycles", "seconds", "energy_j", "edp_j_s", "verified",
           "effectual_ops", "skipped_ops", "ops", "dense_equivalent_ops", "dram_bytes",
           "glb_bytes", "tiles", "baseline.seconds", "baseline.energy_j", "baseline.speedup",
           "baseline.energy_ratio", "baseline.edp_ratio")
"""The figures a point records (edp_j_s = seconds x energy_j; baseline.*: with a baseline)."""


def run_point(point: Point) -> dict[str, Any]:
    """Run one point at its fidelity (never switched) and return its figures."""
    s = run(point["chip"], point["workload"], params=point["params"],
            overrides=_over(point["overrides"]), fidelity=point["fidelity"],
            baseline=point["baseline"]).summary
    flat = {**flat_summary(s),
            "edp_j_s": s["seconds"] * s["energy_j"] if "energy_j" in s else None}
    out = {k: flat.get(k) for k in FIGURES}
    if s["fidelity"] != point["fidelity"] or not s["verified"]:
        out["error"] = (f"ran at fidelity {s['fidelity']}" if s["verified"] else
                        f"output check failed: {s['checks']}")
    return out


def _check(fn: Any, *args: Any) -> str | None:
    try:
        fn(*args)
    except (SieveError, WorkloadError) as exc:
        return str(exc)
    return None


TARGET = Target(run_point, lambda chip, over: _check(resolve_chip, chip, _over(over)),
                lambda name, params: _check(build_layer, name, params),
                lambda name: _check(load_cpu_preset, name), FIGURES,
                ("analytic", "burst", "cycle"), ("cycles", "energy_j", "baseline.edp_ratio"))


def sweep(spec: Any, **options: Any) -> Any:
    """Run (or resume) a sweep spec (docs/sweeps.md; sweeps.driver.frame): a DataFrame."""
    from sweeps.driver import frame

    return frame(spec, TARGET, **options)
