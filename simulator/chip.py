"""The chip's data paths and the one result type of a run.

The transfer formulas of DRAM and the GLB<->array links (setup + latency + ceil(bytes /
bandwidth)), used by the controller (simulator.controller) for every DMA, and
:class:`RunResult`, what any simulation of any Program produces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from isa.arch import ChipConfig
from isa.fibertree import FiberTree


@dataclass(frozen=True)
class Transfer:
    """The time of one transfer over DRAM or the GLB<->array links.

    ``cycles`` = setup + latency + ``busy_cycles``, where ``busy_cycles`` = ceil(bytes /
    bandwidth) (0 for an empty transfer) is the time the link itself is occupied.
    """

    cycles: int
    busy_cycles: int


def transfer_time(nbytes: int, bandwidth_bytes_per_cycle: float, latency_cycles: int,
                  setup_cycles: int = 0) -> Transfer:
    """Cycles of one transfer of ``nbytes``: setup + latency + ceil(nbytes / bandwidth)."""
    busy = math.ceil(nbytes / bandwidth_bytes_per_cycle) if nbytes else 0
    return Transfer(setup_cycles + latency_cycles + busy, busy)


def dram_transfer(chip: ChipConfig, nbytes: int) -> Transfer:
    """A DMA between DRAM and the GLB (one descriptor: the controller's setup is paid)."""
    return transfer_time(nbytes, chip.dram_bytes_per_cycle, chip.dram_latency_cycles,
                         chip.controller.dma_setup_cycles)


def link_transfer(chip: ChipConfig, nbytes: int) -> Transfer:
    """A transfer between the GLB and the array over all GLB<->array links."""
    return transfer_time(nbytes, chip.glb.array_bytes_per_cycle, chip.glb.latency_cycles)


def config_stream_cycles(chip: ChipConfig, bits: int) -> int:
    """Cycles the configuration network takes to load ``bits`` into the array:
    ceil(bits / ``controller.config_bits_per_cycle``) (after its DMA descriptor, which the
    firmware programs): a model layer's loads (simulator.layers.config_loads), the same rule
    as a kernel's configure (simulator.controller.Firmware.configure)."""
    return -(-bits // chip.controller.config_bits_per_cycle)


@dataclass
class RunResult:
    """Everything a simulation produced, whatever the Program: cycles, outputs, the counters
    (one flat dotted namespace, ``chip.*``), the per-kernel runs and the action counts the
    engines reported directly (systolic kernels, model-layer tiles; a SAM kernel's actions
    are its unit counters in ``stats``)."""

    chip: str
    program: str
    fidelity: str
    cycles: int
    seconds: float
    kernel_cycles: int
    outputs: dict[str, FiberTree]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    kernel_runs: dict[str, Any] = field(default_factory=dict)
    actions: dict[str, float] = field(default_factory=dict)
    ops: int | None = None          # useful ops for the energy report (None: from stats)

    def total(self, suffix: str) -> int:
        """Sum of every counter whose dotted name ends with ``.suffix``."""
        return sum(v["value"] for k, v in self.stats.items() if k.endswith("." + suffix))

    def __repr__(self) -> str:
        return (f"RunResult(chip={self.chip!r}, program={self.program!r}, "
                f"fidelity={self.fidelity!r}, cycles={self.cycles}, "
                f"seconds={self.seconds:.3e})")
