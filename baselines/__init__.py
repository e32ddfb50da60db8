"""Baselines that Sieve compares the chip against: a CPU model (``baselines.cpu``).

The CPU model runs the same layer object as the chip (``workloads``), as an MKL/TACO-class
CPU library would: dense GEMM near peak, sparse kernels bound by instruction issue or by
memory bandwidth, energy from package power x time plus DRAM traffic. Presets are YAML files
in ``configs/cpus``; ``calibrate_host`` measures the machine it runs on and writes one.
"""

from __future__ import annotations

from baselines.cpu import (
    CPU_KERNELS,
    CpuEstimate,
    CpuPreset,
    KernelWork,
    blas_threads,
    calibrate_host,
    cpu_kernel,
    cpu_preset_from_dict,
    estimate,
    estimate_gemm,
    estimate_spmm,
    estimate_work,
    gemm_work,
    list_cpu_presets,
    load_cpu_preset,
    resolve_cpu_preset,
    spgemm_branch_misses,
    spmm_work,
    time_call,
)

__all__ = [
    "CPU_KERNELS",
    "CpuEstimate",
    "CpuPreset",
    "KernelWork",
    "blas_threads",
    "calibrate_host",
    "cpu_kernel",
    "cpu_preset_from_dict",
    "estimate",
    "estimate_gemm",
    "estimate_spmm",
    "estimate_work",
    "gemm_work",
    "list_cpu_presets",
    "load_cpu_preset",
    "resolve_cpu_preset",
    "spgemm_branch_misses",
    "spmm_work",
    "time_call",
]
