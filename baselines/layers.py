"""The CPU estimate of a model layer (MoE, FFN, linear): its matrix products as library calls.

A layer's products come from the layer engine (``simulator.layers``: per product its shape and
weight nonzeros); each is a dense GEMM or a CSR SpMM (``baselines.kernels``), timed and costed
by ``baselines.roofline`` and summed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baselines.kernels import gemm_work, spmm_shape_work
from baselines.presets import CpuPreset
from baselines.roofline import Bound, CpuEstimate, KernelWork, estimate_work

__all__ = ["layer_estimate"]


def layer_estimate(products: list[Mapping[str, Any]], preset: CpuPreset, *, layer: str,
                   moe_pairs: int = 0, d_model: int = 0, elementwise_ops: int = 0
                   ) -> CpuEstimate:
    """A model layer (MoE, FFN, linear) as a CPU library runs it: one call per matrix
    product, in sequence (times and energies add).

    Each product ``Y (m x n) = A (m x k) W^T`` with ``w_nnz`` weight nonzeros is a dense
    GEMM (:func:`gemm_work`) when W is dense, else CSR W times the dense activations
    (:func:`spmm_shape_work`, MKL ``mkl_sparse_s_mm``): a CPU library does not skip zero
    activations, so their sparsity saves nothing here. An MoE layer adds the gather and
    scatter of its ``moe_pairs`` routed token rows (d_model values each, read and written
    once) as memory traffic, and its ``elementwise_ops`` (activations, gating, combine) at
    the compute roof.
    """
    ests: list[CpuEstimate] = []
    breakdown: dict[str, float] = {"calls": 0.0}
    for p in products:
        m, k, n, nnz = int(p["m"]), int(p["k"]), int(p["n"]), int(p["w_nnz"])
        if m == 0 or k == 0 or n == 0:
            continue
        work = gemm_work(m, n, k, preset) if nnz >= k * n else \
            spmm_shape_work(n, k, nnz, m, preset)
        ests.append(estimate_work(work, preset, layer=layer))
        breakdown["calls"] += 1
        key = f"{ests[-1].bound}_bound_calls"
        breakdown[key] = breakdown.get(key, 0) + 1
    extra_bytes = 2.0 * moe_pairs * d_model * preset.value_bytes
    if extra_bytes or elementwise_ops:
        work = KernelWork(kernel="moe_gather_scatter", executed_flops=float(elementwise_ops),
                          useful_flops=float(elementwise_ops),
                          dense_equivalent_flops=float(elementwise_ops), issue_cycles=0.0,
                          dram_bytes={"gather_scatter": extra_bytes}, cores_used=preset.cores,
                          compute_efficiency=preset.dense.gemm_efficiency,
                          parallel_efficiency=1.0, call_overhead_s=0.0,
                          counts={"pairs": moe_pairs})
        ests.append(estimate_work(work, preset, layer=layer))
    bound: Bound = max((b for b in ("compute", "memory", "issue")),
                       key=lambda b: breakdown.get(f"{b}_bound_calls", 0))
    return CpuEstimate(seconds=sum(e.seconds for e in ests),
                       energy_j=sum(e.energy_j for e in ests),
                       flops=sum(e.flops for e in ests),
                       dense_equivalent_flops=sum(e.dense_equivalent_flops for e in ests),
                       bytes=sum(e.bytes for e in ests), bound=bound, breakdown=breakdown,
                       layer=layer, preset=preset.name)
