"""The ``burst`` engine: the cycle engine's exact timing, computed with numpy.

A graph of SAM primitives is a Kahn process network: which tokens each unit consumes and
produces does not depend on timing. So the engine works in two phases, each in its own module:

1. *Functional pass* (``simulator.burst_fire``): per unit, in topological order, a numpy
   function computes the unit's output streams and its *firing table* (steps, peeks, pops,
   emits, action totals).
2. *Timing* (``simulator.burst_timing``): the cycle engine's rules as max-plus recurrences,
   solved to their least fixed point, which is exactly the schedule the cycle engine's
   as-soon-as-possible processes produce; an unrolled kernel's copies are solved as one
   problem (``simulator.burst_batch``: the same times, fewer numpy calls).

This module runs the two and turns the result into the cycle engine's ``KernelRun``.
"""

from __future__ import annotations

from isa.arch import ChipConfig
from isa.fibertree import FiberTree
from isa.program import Kernel
from simulator.burst_batch import solve_batched
from simulator.burst_fire import FIRE, Firing, Stream, fire_kernel
from simulator.burst_timing import SolveStats, solve_times
from simulator.engine_cycle import KernelRun
from simulator.stats import ChannelStats, UnitStats


def run_burst(kernel: Kernel, images: dict[str, FiberTree], chip: ChipConfig, *,
              window: int = 1 << 19) -> KernelRun:
    """Run one kernel with the burst engine from cycle 0; same result as the cycle engine.
    ``window``: about how many steps the timing solver starts its windows with
    (``solve_times``; any value gives the same result)."""
    firings, mem, order = fire_kernel(kernel, images)
    times, _ = solve_batched(kernel, firings, order, chip, window=window)
    units: dict[str, UnitStats] = {}
    end = -1
    for node in order:
        f = firings[node.id]
        t = times[node.id]
        st = UnitStats()
        if f.n:
            st.busy_cycles = f.n
            st.first_cycle = int(t[0])
            st.last_cycle = int(t[-1])
            end = max(end, st.last_cycle)
        st.tokens_in_count = int(sum(len(p) for p in f.pops.values()))
        st.tokens_out_count = int(sum(len(e) for e in f.emits.values()))
        for name, v in f.acts.items():
            setattr(st, name, getattr(st, name) + int(v))
        units[node.id] = st
    channels = {}
    for e in kernel.edges:
        n = len(firings[e.src].emits[e.src_port])
        channels[e.name] = ChannelStats(token_count=n, hop_count=n * max(e.hops, 1))
    return KernelRun(end + 1, mem, units, channels, (firings, order))


__all__ = ["FIRE", "Firing", "SolveStats", "Stream", "fire_kernel", "run_burst",
           "solve_times"]
