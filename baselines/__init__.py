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

The names below load their module on first use (PEP 562), so ``sieve list cpus`` reads the
presets without importing scipy.sparse and the kernel models.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "calibrate": ("blas_threads", "calibrate_host", "time_call"),
    "kernels": ("CPU_KERNELS", "LIBRARIES", "cpu_kernel", "estimate", "estimate_gemm",
                "estimate_spmm", "gemm_layer_work", "gemm_work", "spgemm_branch_misses",
                "spmm_shape_work", "spmm_work"),
    "layers": ("layer_estimate", "library_calls"),
    "presets": ("DEFAULT_CPU_ROOT", "CpuPreset", "DenseCost", "MergeCost", "SparseCost",
                "SpgemmCost", "SpmmCost", "SpmvCost", "cpu_preset_from_dict",
                "list_cpu_presets", "load_cpu_preset", "resolve_cpu_preset"),
    "roofline": ("Bound", "CpuEstimate", "KernelWork", "estimate_work"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'baselines' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"baselines.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
