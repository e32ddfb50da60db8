"""The CPU roofline: one kernel call's work (:class:`KernelWork`) to time and energy.

The work models (``baselines.kernels``, ``baselines.tensor_kernels``) count what a call asks of
the CPU; :func:`estimate_work` times it on a preset:

    t_compute = executed_flops / (cores_used * f * flops_per_cycle_per_core * compute_eff)
    t_memory  = dram_bytes / (mem_bandwidth * stream_efficiency)
    t_issue   = issue_cycles / (cores_used * f * parallel_efficiency)
    seconds   = max(t_compute, t_memory, t_issue) + call_overhead      bound = the argmax
    energy    = (cores_used * core_power + uncore_power) * seconds
                + dram_bytes * 8 * dram_pj_per_bit
                (energy_model "per_instruction": uncore_power * seconds
                 + instructions * energy_per_instruction + the same DRAM term, where
                 instructions = busy core-cycles * instructions_per_cycle)

A library with a thread team (MKL) runs a call on one thread when that is faster, as
MKL_DYNAMIC (on by default) lets MKL pick fewer threads than it may use: a small call then
skips the fork/join and leaves the other cores idle. Only the cores a call runs on draw active
power (idle cores sit in a deep C-state, ~0 W: the model's ASSUMPTION); the uncore runs for
the whole call. The call overhead (dispatch, thread fork/join) is charged at the same
power: the cores wait spinning.

Like any roofline, the max() assumes issue and memory time overlap perfectly, which is
optimistic for one scalar core streaming from DRAM (measured on the host: an out-of-LLC SpMV
takes ~2x the prediction; in-cache kernels within ~25%).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from baselines.presets import CpuPreset

__all__ = ["Bound", "CpuEstimate", "KernelWork", "estimate_work"]

Bound = Literal["compute", "memory", "issue"]


def estimate_work(work: KernelWork, preset: CpuPreset, *, layer: str = "") -> CpuEstimate:
    """Time and energy of ``work`` on ``preset`` from the roofline in the module docstring.

    A multi-threaded call that names a ``serial_call_overhead_s`` runs on one thread when that
    is faster (the library's dynamic thread choice, MKL_DYNAMIC); ``cores_used`` in the
    breakdown is the thread count chosen, and only those cores draw active power.
    """
    if work.cores_used > 1 and work.serial_call_overhead_s is not None:
        serial = dataclasses.replace(work, cores_used=1, parallel_efficiency=1.0,
                                     call_overhead_s=work.serial_call_overhead_s,
                                     serial_call_overhead_s=None)
        if _roofs(serial, preset)[0] < _roofs(work, preset)[0]:
            work = serial
    seconds, times, total_bytes = _roofs(work, preset)
    hz = preset.freq_ghz * 1e9
    bound: Bound = max(times, key=lambda k: times[k])
    busy_s = times[bound]
    dram_j = total_bytes * 8.0 * preset.dram_pj_per_bit * 1e-12
    breakdown: dict[str, float] = {
        "compute_s": times["compute"], "memory_s": times["memory"], "issue_s": times["issue"],
        "overhead_s": work.call_overhead_s, "executed_flops": work.executed_flops,
        "issue_cycles": work.issue_cycles, "cores_used": float(work.cores_used),
    }
    breakdown |= {f"dram_bytes_{k}": float(v) for k, v in work.dram_bytes.items()}
    uncore_j = preset.uncore_power_w * seconds
    if preset.energy_model == "active_power":
        cores_j = work.cores_used * preset.core_power_w * seconds
        breakdown["energy_cores_j"] = cores_j
    else:
        assert preset.instructions_per_cycle is not None
        assert preset.energy_per_instruction_pj is not None
        instructions = busy_s * hz * work.cores_used * preset.instructions_per_cycle
        cores_j = instructions * preset.energy_per_instruction_pj * 1e-12
        breakdown |= {"instructions": instructions, "energy_instructions_j": cores_j}
    breakdown["energy_uncore_j"] = uncore_j
    breakdown["energy_dram_j"] = dram_j
    breakdown |= {k: float(v) for k, v in work.counts.items()}
    return CpuEstimate(seconds=seconds, energy_j=cores_j + uncore_j + dram_j,
                       flops=work.useful_flops,
                       dense_equivalent_flops=work.dense_equivalent_flops, bytes=total_bytes,
                       bound=bound, breakdown=breakdown, layer=layer or work.kernel,
                       preset=preset.name, library=work.library)


def _roofs(work: KernelWork, preset: CpuPreset) -> tuple[float, dict[Bound, float], float]:
    """(seconds, the three roof times, DRAM bytes) of ``work`` on ``preset``."""
    hz = preset.freq_ghz * 1e9
    compute_rate = (work.cores_used * hz * preset.fp32_flops_per_cycle_per_core
                    * work.compute_efficiency)
    total_bytes = float(sum(work.dram_bytes.values()))
    times: dict[Bound, float] = {
        "compute": work.executed_flops / compute_rate,
        "memory": total_bytes / (preset.sustained_bandwidth_gb_per_s * 1e9),
        "issue": work.issue_cycles / (work.cores_used * hz * work.parallel_efficiency),
    }
    return max(times.values()) + work.call_overhead_s, times, total_bytes


@dataclass(frozen=True)
class KernelWork:
    """What one kernel call asks of a CPU preset, counted from the tensors; before timing."""

    kernel: str
    """The algorithm, e.g. ``csr_spmv``, ``gustavson_spgemm``, ``gemm``."""
    executed_flops: float
    """Floating-point ops the CPU issues (stored zeros of a dense operand included)."""
    useful_flops: float
    """Effectual ops: every operand nonzero."""
    dense_equivalent_flops: float
    """Ops of the same layer computed densely."""
    issue_cycles: float
    """One-core cycles of the instruction-issue ceiling (0: no issue bound, e.g. GEMM)."""
    dram_bytes: dict[str, float]
    """DRAM traffic by operand (compulsory, plus ``*_capacity_misses``), bytes."""
    cores_used: int
    compute_efficiency: float
    """Fraction of peak FLOP/s the compute roof uses for this kernel."""
    parallel_efficiency: float
    """Fraction of linear speed-up of the issue ceiling over cores_used."""
    call_overhead_s: float
    """Fixed cost of the call on cores_used threads (dispatch, thread fork/join), seconds."""
    counts: dict[str, float] = field(default_factory=dict)
    """Structural counts (nnz, rows, products ...) copied into the breakdown."""
    library: str = "mkl"
    """Who runs the call: ``mkl`` (the vendor library, BLAS included) or ``taco``."""
    serial_call_overhead_s: float | None = None
    """The call's fixed cost on one thread (no fork/join); None: the library always uses
    cores_used threads."""


@dataclass(frozen=True)
class CpuEstimate:
    """Time and energy of one layer on one CPU preset.

    ``flops`` are useful (effectual) ops; ``bytes`` DRAM traffic; ``bound`` the roof that set
    the time. ``breakdown`` holds every term: roof times (``*_s``), traffic by operand
    (``dram_bytes_*``), energy terms (``energy_*_j``) and structural counts.
    """

    seconds: float
    energy_j: float
    flops: float
    dense_equivalent_flops: float
    bytes: float
    bound: Bound
    breakdown: dict[str, float]
    layer: str = ""
    preset: str = ""
    library: str = ""
    """The library that ran it (``mkl``, ``taco``; ``mkl+taco`` for a mix of calls)."""

    @property
    def edp_j_s(self) -> float:
        """Energy-delay product, joule-seconds."""
        return self.energy_j * self.seconds

    @property
    def useful_gflops_per_s(self) -> float:
        """Useful (effectual) GFLOP/s."""
        return self.flops / self.seconds / 1e9

    def __str__(self) -> str:
        lib = f" ({self.library})" if self.library else ""
        return (f"{self.layer} on {self.preset}{lib}: {self.seconds * 1e6:,.2f} us, "
                f"{self.energy_j * 1e6:,.2f} uJ, {self.bound}-bound, "
                f"{self.useful_gflops_per_s:.3g} useful GFLOP/s")
