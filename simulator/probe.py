"""The compiler's fast estimate of a candidate program: a burst-engine run and its energy.

``compiler.order.choose_order`` takes this function as its estimator (the compiler may not
import the simulator); ``sieve`` wires the two.
"""

from __future__ import annotations

from isa.arch import ChipConfig
from isa.program import Program
from simulator.controller import simulate
from simulator.energy import energy_breakdown, load_energy_table


def probe(program: Program, chip: ChipConfig) -> tuple[float, float, float]:
    """(cycles, energy in pJ, seconds) of ``program`` on ``chip`` with the burst engine and
    the chip's energy table: the whole schedule, as ``sieve run`` reports it."""
    result = simulate(program, chip, fidelity="burst")
    energy = energy_breakdown(result.stats, result.cycles, chip,
                              load_energy_table(chip.energy_table), program=program,
                              actions=result.actions, ops=result.ops)
    return float(result.cycles), float(energy.total_pj), float(result.seconds)
