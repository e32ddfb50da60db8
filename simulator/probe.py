"""The compiler's fast estimate of a candidate program: a burst-engine run and its energy.

``compiler.order.choose_order`` takes this function as its estimator (the compiler may not
import the simulator); ``sieve`` wires the two. The last few probes' runs are kept so that the
run of the program the choice keeps is not simulated twice (:func:`probed_run`).
"""

from __future__ import annotations

from isa.arch import ChipConfig
from isa.program import Program
from simulator.chip import RunResult
from simulator.controller import simulate
from simulator.energy import energy_breakdown, load_energy_table

_KEEP = 4
"""Probe runs kept (the order choice's finalists: compiler.order.FINALISTS, plus one)."""

_kept: list[tuple[Program, ChipConfig, RunResult]] = []


def probe(program: Program, chip: ChipConfig) -> tuple[float, float, float]:
    """(cycles, energy in pJ, seconds) of ``program`` on ``chip`` with the burst engine and
    the chip's energy table: the whole schedule, as ``sieve run`` reports it."""
    result = simulate(program, chip, fidelity="burst")
    _kept.append((program, chip, result))
    del _kept[:-_KEEP]
    energy = energy_breakdown(result.stats, result.cycles, chip,
                              load_energy_table(chip.energy_table), program=program,
                              actions=result.actions, ops=result.ops)
    return float(result.cycles), float(energy.total_pj), float(result.seconds)


def probed_run(program: Program, chip: ChipConfig) -> RunResult | None:
    """The burst run a recent probe made of this very ``program`` object on an equal ``chip``
    (what ``simulate(program, chip, fidelity="burst")`` returns: the engine is deterministic),
    else None. The kept runs are dropped either way (each is handed out at most once)."""
    found = next((r for p, c, r in _kept if p is program and c == chip), None)
    _kept.clear()
    return found
