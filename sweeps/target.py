"""What a sweep runs: the point runner and the checks of a spec's inputs, given by the caller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Point = dict[str, Any]
"""One point of a sweep (JSON-able): ``key``, ``seq``, ``chip``, ``chip_label``,
``overrides``, ``workload``, ``workload_label``, ``params``, ``fidelity``, ``baseline``."""


@dataclass(frozen=True)
class Target:
    """The simulator side of a sweep.

    run_point: runs one point and returns its figures (name -> number or None); a figure dict
        with an ``error`` entry records the point as failed with those figures (e.g. an output
        check that did not pass). It is sent to worker processes, so it must be picklable (a
        module-level function). An exception it raises records the point as failed.
    check_chip(chip, overrides) / check_workload(name, params) / check_baseline(name):
        None when the input is valid, else the problem in one message. They run in the driver,
        before any point, through the simulator's own loaders.
    metrics: the figure names ``run_point`` returns (a spec's ``metrics`` must be among them).
    fidelities: the values a spec's ``fidelity`` may take.
    default_metrics: the figures shown when a spec names none.
    """

    run_point: Callable[[Point], dict[str, Any]]
    check_chip: Callable[[str, dict[str, Any]], str | None]
    check_workload: Callable[[str, dict[str, Any]], str | None]
    check_baseline: Callable[[str], str | None]
    metrics: tuple[str, ...]
    fidelities: tuple[str, ...]
    default_metrics: tuple[str, ...]
