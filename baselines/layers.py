"""The CPU estimate of a model layer (MoE, FFN, linear): its matrix products as library calls.

A layer's products come from the layer engine (``simulator.layers``: per product its label,
shape and weight nonzeros). The engine splits a product into chunks for the chip's lanes; a
CPU library does not: the chunks of one product (same label once its ``[start:stop]`` ranges
are removed, or the same ``call`` key where the engine gives one) are merged back into ONE
call (:func:`library_calls`), a dense GEMM or a CSR SpMM (``baselines.kernels``), timed and
costed by ``baselines.roofline`` and summed over the calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from baselines.kernels import gemm_work, spmm_shape_work
from baselines.presets import CpuPreset
from baselines.roofline import Bound, CpuEstimate, KernelWork, estimate_work

__all__ = ["layer_estimate", "library_calls"]

_RANGE = re.compile(r"\[\d+:\d+\]")
_RANGE_BOUNDS = re.compile(r"\[(\d+):(\d+)\]")


def layer_estimate(products: list[Mapping[str, Any]], preset: CpuPreset, *, layer: str,
                   moe_pairs: int = 0, d_model: int = 0, elementwise_ops: int = 0
                   ) -> CpuEstimate:
    """A model layer (MoE, FFN, linear) as a CPU library runs it: one call per matrix
    product (:func:`library_calls` merges the engine's chunks), in sequence (times and
    energies add).

    Each product ``Y (m x n) = A (m x k) W^T`` with ``w_nnz`` weight nonzeros is a dense
    GEMM (:func:`gemm_work`) when W is dense, else CSR W times the dense activations
    (:func:`spmm_shape_work`, MKL ``mkl_sparse_s_mm`` or TACO's loop, as the preset's
    ``library`` says): a CPU library does not skip zero
    activations, so their sparsity saves nothing here. An MoE layer adds the gather and
    scatter of its ``moe_pairs`` routed token rows (d_model values each, read and written
    once) as memory traffic, and its ``elementwise_ops`` (activations, gating, combine) at
    the compute roof.
    """
    ests: list[CpuEstimate] = []
    breakdown: dict[str, float] = {"calls": 0.0}
    for p in library_calls(products):
        m, k, n, nnz = p["m"], p["k"], p["n"], p["w_nnz"]
        if m == 0 or k == 0 or n == 0:
            continue
        work = gemm_work(m, n, k, preset) if nnz >= k * n else \
            spmm_shape_work(n, k, nnz, m, preset, preset.library)
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
    for key in ("overhead_s", "energy_cores_j", "energy_instructions_j", "energy_uncore_j",
                "energy_dram_j"):
        if any(key in e.breakdown for e in ests):
            breakdown[key] = sum(e.breakdown.get(key, 0.0) for e in ests)
    return CpuEstimate(seconds=sum(e.seconds for e in ests),
                       energy_j=sum(e.energy_j for e in ests),
                       flops=sum(e.flops for e in ests),
                       dense_equivalent_flops=sum(e.dense_equivalent_flops for e in ests),
                       bytes=sum(e.bytes for e in ests), bound=bound, breakdown=breakdown,
                       layer=layer, preset=preset.name,
                       library="+".join(sorted({e.library for e in ests})))


def library_calls(products: list[Mapping[str, Any]]) -> list[dict[str, int]]:
    """The engine's products merged into one library call per product.

    Chunks belong together when their ``call`` keys match (or, without one, their labels
    with every ``[start:stop]`` range removed: ``ffn[0:512].up`` and ``ffn[512:1024].up`` are
    the call ``ffn.up``). A product split along its output columns (every chunk has the same
    m and k: the gate, up and linear products) becomes one call with the columns summed; one
    split along its reduction (same m and n: the down product) one with k summed; when both
    hold, the split is the dimension the label's range spans (k for ``ffn[0:64].down``).
    Chunks that fit neither stay separate calls. Returns ``m, k, n, w_nnz`` per call, in
    first-seen order.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for i, p in enumerate(products):
        label = p.get("call") or (_RANGE.sub("", str(p["label"])) if "label" in p else "")
        groups.setdefault(str(label) if label else f"#{i}", []).append(p)
    calls: list[dict[str, int]] = []
    for chunks in groups.values():
        dims = [(int(c["m"]), int(c["k"]), int(c["n"]), int(c["w_nnz"])) for c in chunks]
        ms, ks, ns = ({d[i] for d in dims} for i in range(3))
        nnz = sum(d[3] for d in dims)
        along_n = len(ms) == 1 and len(ks) == 1
        along_k = len(ms) == 1 and len(ns) == 1
        if along_n and along_k:       # equal chunks: the range's width names the split
            along_n = not all(_range_width(c) == d[1] != d[2] for c, d in zip(chunks, dims))
        if along_n:
            calls.append({"m": dims[0][0], "k": dims[0][1], "n": sum(d[2] for d in dims),
                          "w_nnz": nnz})
        elif along_k:
            calls.append({"m": dims[0][0], "k": sum(d[1] for d in dims), "n": dims[0][2],
                          "w_nnz": nnz})
        else:
            calls += [{"m": m, "k": k, "n": n, "w_nnz": w} for m, k, n, w in dims]
    return calls


def _range_width(product: Mapping[str, Any]) -> int | None:
    """stop - start of the ``[start:stop]`` range in a product's label, if it has one."""
    found = _RANGE_BOUNDS.search(str(product.get("label", "")))
    return int(found[2]) - int(found[1]) if found else None
