"""Baselines that Sieve compares the chip against: a CPU model.

The CPU model runs the same layer object as the chip (``workloads``), as an MKL/TACO-class
CPU library would: dense GEMM near peak, sparse kernels bound by instruction issue or by
memory bandwidth, energy from the active cores, the uncore and DRAM traffic; each kernel runs
as MKL or as TACO-generated code, as Onyx's baselines did (docs/cpu-baseline.md). One module
per concern:

- ``baselines.presets``: :class:`CpuPreset` and its YAML files in ``configs/cpus``;
- ``baselines.roofline``: one call's :class:`KernelWork` to time and energy;
- ``baselines.kernels`` and ``baselines.tensor_kernels``: the per-kernel work models and the
  registry (:func:`estimate` of a catalog layer); ``baselines.operands`` counts their operands;
- ``baselines.layers``: a model layer's products as library calls;
- ``baselines.calibrate``: ``calibrate_host`` measures this machine and writes a preset.
"""

from __future__ import annotations

from baselines import tensor_kernels as _tensor_kernels  # registers the tensor kernels
from baselines.calibrate import blas_threads, calibrate_host, time_call
from baselines.kernels import (
    CPU_KERNELS,
    LIBRARIES,
    cpu_kernel,
    estimate,
    estimate_gemm,
    estimate_spmm,
    gemm_layer_work,
    gemm_work,
    spgemm_branch_misses,
    spmm_shape_work,
    spmm_work,
)
from baselines.layers import layer_estimate, library_calls
from baselines.presets import (
    DEFAULT_CPU_ROOT,
    CpuPreset,
    DenseCost,
    MergeCost,
    SparseCost,
    SpgemmCost,
    SpmmCost,
    SpmvCost,
    cpu_preset_from_dict,
    list_cpu_presets,
    load_cpu_preset,
    resolve_cpu_preset,
)
from baselines.roofline import Bound, CpuEstimate, KernelWork, estimate_work

del _tensor_kernels

__all__ = [
    "CPU_KERNELS",
    "DEFAULT_CPU_ROOT",
    "LIBRARIES",
    "Bound",
    "CpuEstimate",
    "CpuPreset",
    "DenseCost",
    "KernelWork",
    "MergeCost",
    "SparseCost",
    "SpgemmCost",
    "SpmmCost",
    "SpmvCost",
    "blas_threads",
    "calibrate_host",
    "cpu_kernel",
    "cpu_preset_from_dict",
    "estimate",
    "estimate_gemm",
    "estimate_spmm",
    "estimate_work",
    "gemm_layer_work",
    "gemm_work",
    "layer_estimate",
    "library_calls",
    "list_cpu_presets",
    "load_cpu_preset",
    "resolve_cpu_preset",
    "spgemm_branch_misses",
    "spmm_shape_work",
    "spmm_work",
    "time_call",
]
