"""The systolic engine: a dense-mode kernel (isa.program.SystolicKernel) on its MAC block.

Timing and values are simulator.systolic's (SCALE-Sim v3's compute cycles, fold by fold);
the kernel occupies the array for ``compute_cycles + 1`` cycles (SCALE-Sim counts the last
busy cycle from 0), 0 for a GEMM with an empty dimension. Actions are
:func:`simulator.energy.systolic_actions` on the block the kernel names: every MAC issued,
those with a zero operand at full energy (the array neither skips nor gates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isa.arch import ChipConfig
from isa.errors import SimulationError
from isa.fibertree import FiberTree
from isa.program import SystolicKernel
from simulator.energy import systolic_actions
from simulator.systolic import GemmRun, SystolicArray, simulate_gemm


@dataclass
class SystolicRun:
    """One systolic kernel's run: its cycles, output, counters and actions."""

    cycles: int
    outputs: dict[str, FiberTree]
    gemm: GemmRun
    actions: dict[str, float] = field(default_factory=dict)


def operand(images: dict[str, Any], name: str) -> np.ndarray:
    """A dense operand of a systolic kernel from its memory image."""
    if name not in images:
        raise SimulationError(f"systolic kernel: no memory image for tensor {name}")
    return images[name].to_dense()


def run_systolic(kernel: SystolicKernel, images: dict[str, Any], chip: ChipConfig
                 ) -> SystolicRun:
    """Run ``kernel`` on the operands of ``images`` (tensors A, B by declaration order)."""
    if len(kernel.tensors) != 3:
        raise SimulationError(f"systolic kernel {kernel.name}: a template kernel (no tensors) "
                              "cannot run on its own")
    a_decl, b_decl, out_decl = kernel.tensors
    a, b = operand(images, a_decl.name), operand(images, b_decl.name)
    array = SystolicArray(kernel.rows, kernel.cols, kernel.dataflow)
    gemm = simulate_gemm(a, b, array, nm=kernel.nm)
    m, k = a.shape
    n = b.shape[1]
    cycles = gemm.compute_cycles + 1 if gemm.folds else 0
    actions = systolic_actions(m, n, k, kernel.rows, kernel.cols, chip,
                               effectual=gemm.mac_count - gemm.zero_operand_mac_count,
                               k_array=gemm.schedule.k_compressed)
    out = FiberTree.dense(out_decl.name, gemm.output)
    return SystolicRun(cycles, {out_decl.name: out}, gemm, actions)
