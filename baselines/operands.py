"""Counting a layer's operands: the tensors as CSR matrices, vectors or dense arrays, their
storage in bytes (CSR, CSF), last-level-cache capacity misses, and the :class:`KernelWork` of a
sparse library call. Shared by the work models of ``baselines.kernels`` and
``baselines.tensor_kernels``; every WorkloadError names the layer and the tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from baselines.presets import CpuPreset
from baselines.roofline import KernelWork
from workloads import WorkloadError

__all__ = [
    "LayerLike",
    "array_operand",
    "csf_bytes",
    "csf_fibers",
    "csr_bytes",
    "matrix_operand",
    "miss_fraction",
    "pattern",
    "same_sizes",
    "sparse_work",
    "vector_operand",
]


class LayerLike(Protocol):
    """What the CPU model reads from a layer: its kind and its tensors."""

    @property
    def name(self) -> str: ...

    @property
    def tensors(self) -> Mapping[str, Any]: ...


def matrix_operand(layer: LayerLike, key: str) -> sp.csr_matrix:
    """Tensor ``key`` of ``layer`` as a canonical CSR matrix (stored entries are work)."""
    if key not in layer.tensors:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} missing "
                            f"(tensors: {', '.join(layer.tensors)})")
    value = layer.tensors[key]
    if sp.issparse(value) and value.ndim == 2:
        out = sp.csr_matrix(value, copy=True)
        out.sum_duplicates()
        return out
    if isinstance(value, np.ndarray) and value.ndim == 2:
        return sp.csr_matrix(value)
    raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} must be a 2-D "
                        f"matrix, got {type(value).__name__}")


def vector_operand(layer: LayerLike, key: str, length: int) -> np.ndarray:
    """Tensor ``key`` of ``layer`` as a dense vector of ``length`` values."""
    if key not in layer.tensors:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} missing "
                            f"(tensors: {', '.join(layer.tensors)})")
    value = layer.tensors[key]
    vec = np.asarray(value.toarray() if sp.issparse(value) else value).reshape(-1)
    if vec.shape[0] != length:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} has length "
                            f"{vec.shape[0]}, expected {length}")
    return vec


def pattern(m: sp.csr_matrix) -> sp.csr_matrix:
    """The sparsity pattern of ``m`` with value 1 at every stored entry."""
    return sp.csr_matrix((np.ones(m.nnz), m.indices, m.indptr), shape=m.shape)


def csr_bytes(preset: CpuPreset, rows: int, nnz: float) -> float:
    """Bytes of a CSR matrix: values and column indices per nonzero, rows + 1 pointers."""
    return nnz * (preset.value_bytes + preset.index_bytes) + (rows + 1) * preset.index_bytes


def miss_fraction(preset: CpuPreset, footprint_bytes: float) -> float:
    """Fraction of re-references to an operand that miss the LLC (0 when it fits)."""
    if footprint_bytes <= preset.llc_bytes:
        return 0.0
    return 1.0 - preset.llc_bytes / footprint_bytes


def sparse_work(preset: CpuPreset, library: str, kernel: str, *, executed: float,
                useful: float, dense: float, issue: float, dram: dict[str, float],
                overhead_us: float, counts: dict[str, float], phases: int = 1) -> KernelWork:
    """The KernelWork of one sparse call run by ``library`` (``mkl``: ``preset.sparse``,
    ``taco``: ``preset.taco``): its cores, parallel efficiency and compute roof. A
    multi-threaded library may run it on one thread, saving ``phases`` fork/joins."""
    lib = preset.library_cost(library)
    flops = lib.fp32_flops_per_cycle_per_core
    serial_us = max(0.0, overhead_us - phases * preset.fork_join_us)
    return KernelWork(kernel=kernel, executed_flops=float(executed), useful_flops=float(useful),
                      dense_equivalent_flops=float(dense), issue_cycles=float(issue),
                      dram_bytes=dram, cores_used=lib.cores_used,
                      compute_efficiency=1.0 if flops is None
                      else flops / preset.fp32_flops_per_cycle_per_core,
                      parallel_efficiency=lib.parallel_efficiency,
                      call_overhead_s=overhead_us * 1e-6, counts=counts, library=library,
                      serial_call_overhead_s=serial_us * 1e-6 if lib.cores_used > 1 else None)


def array_operand(layer: LayerLike, key: str, rank: int) -> np.ndarray:
    """Tensor ``key`` of ``layer`` as a dense array of ``rank`` modes (stored nonzeros are
    the sparse operands' work)."""
    if key not in layer.tensors:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} missing "
                            f"(tensors: {', '.join(layer.tensors)})")
    value = layer.tensors[key]
    arr = np.asarray(value.toarray() if sp.issparse(value) else value)
    if arr.ndim != rank or arr.dtype.kind not in "iuf":
        raise WorkloadError(f"CPU baseline: layer {layer.name}: tensor {key!r} must be a "
                            f"{rank}-D numeric array, got shape {arr.shape}")
    return arr


def csf_fibers(b: np.ndarray) -> list[int]:
    """Nonempty fibers per CSF level of ``b`` (compressed at every level, modes in order):
    [#i, #(i,j), ..., nnz]."""
    nz = b != 0
    return [int(np.count_nonzero(nz.any(axis=tuple(range(d + 1, b.ndim)))))
            for d in range(b.ndim)]


def csf_bytes(preset: CpuPreset, fibers: list[int]) -> float:
    """Bytes of a CSF tensor: a pointer array (parent fibers + 1) and a coordinate per fiber
    at every level, and a value per nonzero."""
    parents = [1] + fibers[:-1]
    return (sum(p + 1 for p in parents) + sum(fibers)) * preset.index_bytes \
        + fibers[-1] * preset.value_bytes


def same_sizes(layer: LayerLike, sizes: dict[str, list[int]]) -> dict[str, int]:
    """One size per index variable; WorkloadError naming the tensors that disagree."""
    out: dict[str, int] = {}
    for index, found in sizes.items():
        if len(set(found)) != 1:
            raise WorkloadError(f"CPU baseline: layer {layer.name}: index {index} has sizes "
                                f"{', '.join(map(str, found))} across the tensors")
        out[index] = found[0]
    return out
