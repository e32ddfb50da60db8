"""Work models of the matrix kernels, and the registry that maps a layer to its model.

Each supported layer kind has one *work function*, registered by layer name with
``@cpu_kernel("name")``, that counts the kernel's work from the actual tensors (nonzeros, rows,
Gustavson products, output nonzeros computed with scipy) into a :class:`KernelWork`;
:func:`estimate` runs it and times the work with :func:`baselines.roofline.estimate_work`.
``issue_cycles`` is the sparse kernels' instruction-issue ceiling, in one-core cycles:

    CSR SpMV      cycles_per_nnz * nnz(B) + cycles_per_row * M
    CSR SpMM      cycles_per_mac * nnz(B) * N + cycles_per_output * M * N
    SpGEMM        cycles_per_product * P + cycles_per_left_nnz * nnz(B)
                  + cycles_per_output_nnz * nnz(X) + cycles_per_row * M
                  + cycles_per_branch_miss * 2 P q (1 - q),   q = nnz(X) / P
    CSR merge     cycles_per_input_nnz * (nnz(B) + nnz(C)) + cycles_per_output_nnz * nnz(X)
                  + cycles_per_row * M

where P = sum_k nnz(B(:,k)) nnz(C(k,:)) is Gustavson's multiply-add count. Dense GEMM has no
issue term; it runs at ``gemm_efficiency`` of peak. ``dram_bytes`` is the compulsory traffic
of the CSR arrays, dense operands and output (cold caches, no write-allocate), plus capacity
misses of the operand a kernel gathers from when that operand is larger than the last-level
cache. The tensor kernels (sddmm, ttv, ttm, innerprod, mttkrp) are in
``baselines.tensor_kernels``.

Each kernel names the libraries that offer it (:data:`LIBRARIES`): the rates above are read
from ``preset.sparse`` (MKL) or ``preset.taco`` (TACO-generated code), and so are the cores the
call runs on and its compute roof. MKL offers SpMV, SpGEMM, the sparse add and (BLAS) GEMM;
it has no sparse element-wise product, which therefore runs as TACO code.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from baselines.operands import (
    LayerLike,
    csr_bytes,
    matrix_operand,
    miss_fraction,
    pattern,
    sparse_work,
    vector_operand,
)
from baselines.presets import CpuPreset
from baselines.roofline import CpuEstimate, KernelWork, estimate_work
from workloads import WorkloadError

__all__ = [
    "CPU_KERNELS",
    "LIBRARIES",
    "CpuKernel",
    "RegisteredKernel",
    "cpu_kernel",
    "elemadd3_work",
    "elemadd_work",
    "elemmul_work",
    "estimate",
    "estimate_gemm",
    "estimate_spmm",
    "gemm_layer_work",
    "gemm_work",
    "spgemm_branch_misses",
    "spgemm_work",
    "spmm_shape_work",
    "spmm_work",
    "spmv_work",
]

CpuKernel = Callable[[Any, CpuPreset, str], KernelWork]
"""A work function: (layer, preset, library) -> the call's KernelWork."""

LIBRARIES = ("mkl", "taco")
"""The libraries of Onyx's CPU baselines: Intel MKL (vectorised, multi-threaded) and
TACO-generated C (Koul et al., "Onyx: A 12nm 756 GOPS/W CGRA for Accelerating Dense and Sparse
Applications", VLSI 2024, Fig. 7b legend: "Intel Xeon (MKL, 1 core)", "Intel Xeon (MKL+AVX,
12 cores)", "TACO (1 core)")."""


@dataclass(frozen=True)
class RegisteredKernel:
    """A layer kind's work function and the libraries that offer the kernel."""

    fn: CpuKernel
    libraries: tuple[str, ...]

    def library_for(self, preset: CpuPreset) -> str:
        """The preset's library if it offers this kernel, else the first that does."""
        return preset.library if preset.library in self.libraries else self.libraries[0]

    def __call__(self, layer: Any, preset: CpuPreset, library: str | None = None) -> KernelWork:
        return self.fn(layer, preset, library or self.library_for(preset))


CPU_KERNELS: dict[str, RegisteredKernel] = {}
"""Layer name -> work function; add a layer kind with ``@cpu_kernel("name")``."""


def cpu_kernel(name: str, libraries: tuple[str, ...] = LIBRARIES
               ) -> Callable[[CpuKernel], CpuKernel]:
    """Register the work function of the layers named ``name``, offered by ``libraries``
    (in order of preference when the preset's own library lacks the kernel)."""
    unknown = [lib for lib in libraries if lib not in LIBRARIES]
    if unknown or not libraries:
        raise ValueError(f"CPU kernel {name!r}: libraries must be among {LIBRARIES}, "
                         f"got {libraries}")

    def register(fn: CpuKernel) -> CpuKernel:
        if name in CPU_KERNELS:
            raise ValueError(f"CPU kernel {name!r} is already registered")
        CPU_KERNELS[name] = RegisteredKernel(fn, tuple(libraries))
        return fn
    return register


def estimate(layer: LayerLike, preset: CpuPreset) -> CpuEstimate:
    """Time and energy of ``layer`` on ``preset``; WorkloadError for a layer with no model.

    The kernel runs in the preset's library when that library offers it, else in one that
    does (MKL has no sparse element-wise product or tensor kernels: those run as TACO code).
    """
    kernel = CPU_KERNELS.get(layer.name)
    if kernel is None:
        close = difflib.get_close_matches(layer.name, CPU_KERNELS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise WorkloadError(f"CPU baseline: no model for layer {layer.name!r}{hint}; "
                            f"supported: {', '.join(sorted(CPU_KERNELS))}")
    return estimate_work(kernel(layer, preset), preset, layer=layer.name)


@cpu_kernel("spmv")
def spmv_work(layer: LayerLike, preset: CpuPreset, library: str) -> KernelWork:
    """x = B c as CSR SpMV with a dense c (MKL ``mkl_sparse_s_mv``): one MAC per nonzero of B.

    Useful flops count only nonzeros of B that meet a nonzero of c.
    """
    b = matrix_operand(layer, "B")
    m, n = b.shape
    c = vector_operand(layer, "c", n)
    nnz = b.nnz
    cost = preset.library_cost(library).spmv
    effectual = int(np.count_nonzero(c[b.indices]))
    gathers = max(0, nnz - n)
    dram = {
        "B": csr_bytes(preset, m, nnz),
        "c": n * preset.value_bytes,
        "output": m * preset.value_bytes,
        "c_capacity_misses": gathers * preset.cache_line_bytes
        * miss_fraction(preset, n * preset.value_bytes),
    }
    return sparse_work(preset, library, "csr_spmv", executed=2 * nnz, useful=2 * effectual,
                       dense=2 * m * n, issue=cost.cycles_per_nnz * nnz + cost.cycles_per_row * m,
                       dram=dram, overhead_us=cost.call_overhead_us,
                       counts={"rows": m, "nnz_B": nnz, "nnz_c": int(np.count_nonzero(c))})


def spgemm_branch_misses(products: float, out_nnz: float) -> float:
    """Expected mispredictions of Gustavson's insert-or-accumulate branch.

    Each product either inserts a new output entry (``out_nnz`` of them) or accumulates into
    an existing one; treated as a random branch taken with q = out_nnz / products, a dynamic
    predictor mispredicts about 2 q (1 - q) of the time: few misses when nearly every product
    is new (very sparse) or nearly every one collides (dense rows), most near q = 1/2.
    """
    if products <= 0:
        return 0.0
    q = min(1.0, out_nnz / products)
    return 2.0 * products * q * (1.0 - q)


@cpu_kernel("spmspm")
def spgemm_work(layer: LayerLike, preset: CpuPreset, library: str) -> KernelWork:
    """X = B C as Gustavson SpGEMM (MKL ``mkl_sparse_spmm``), whatever loop order the chip uses.

    Products = sum over k of nnz(B(:,k)) * nnz(C(k,:)); output nonzeros are structural
    (the pattern product), so no cancellation is assumed.
    """
    b, c = matrix_operand(layer, "B"), matrix_operand(layer, "C")
    m, k = b.shape
    if c.shape[0] != k:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: B is {m}x{k} but C is "
                            f"{c.shape[0]}x{c.shape[1]}")
    n = c.shape[1]
    products = float(np.bincount(b.indices, minlength=k).astype(np.float64)
                     @ np.diff(c.indptr).astype(np.float64))
    out_nnz = (pattern(b) @ pattern(c)).nnz
    cost = preset.library_cost(library).spgemm
    c_bytes = csr_bytes(preset, k, c.nnz)
    dram = {
        "B": csr_bytes(preset, m, b.nnz),
        "C": c_bytes,
        "output": csr_bytes(preset, m, out_nnz),
        "C_capacity_misses": max(0.0, products - c.nnz)
        * (preset.value_bytes + preset.index_bytes) * miss_fraction(preset, c_bytes),
    }
    misses = spgemm_branch_misses(products, out_nnz)
    issue = (cost.cycles_per_product * products + cost.cycles_per_left_nnz * b.nnz
             + cost.cycles_per_output_nnz * out_nnz + cost.cycles_per_row * m
             + cost.cycles_per_branch_miss * misses)
    return sparse_work(preset, library, "gustavson_spgemm", executed=2 * products,
                       useful=2 * products,
                       dense=2 * m * k * n, issue=issue, dram=dram,
                       overhead_us=cost.call_overhead_us,
                       counts={"rows": m, "nnz_B": b.nnz, "nnz_C": c.nnz,
                               "products": products, "nnz_out": out_nnz,
                               "branch_misses": misses},
                       phases=2)


@cpu_kernel("elemadd")
def elemadd_work(layer: LayerLike, preset: CpuPreset, library: str) -> KernelWork:
    """X = B + C as a CSR union merge (MKL ``mkl_sparse_s_add``; TACO's generated merge)."""
    return _merge_work(layer, preset, library, union=True)


@cpu_kernel("elemadd3")
def elemadd3_work(layer: LayerLike, preset: CpuPreset, library: str) -> KernelWork:
    """X = B + C + D. TACO generates one three-way CSR union merge (every input nonzero read
    once, every output nonzero written once); MKL's sparse add takes two operands, so it is
    two calls, T = B + C then X = T + D, with the temporary T written and read back."""
    b, c, d = (matrix_operand(layer, t) for t in "BCD")
    for name, other in (("C", c), ("D", d)):
        if other.shape != b.shape:
            raise WorkloadError(f"CPU baseline: layer {layer.name}: B is "
                                f"{b.shape[0]}x{b.shape[1]} but {name} is "
                                f"{other.shape[0]}x{other.shape[1]}")
    m, n = b.shape
    pb, pc, pd = pattern(b), pattern(c), pattern(d)
    t_nnz = (pb + pc).nnz
    out_nnz = (pb + pc + pd).nnz
    cost = preset.library_cost(library).merge
    # one add per input nonzero that lands on an already-present coordinate
    adds = b.nnz + c.nnz + d.nnz - out_nnz
    dram = {"B": csr_bytes(preset, m, b.nnz), "C": csr_bytes(preset, m, c.nnz),
            "D": csr_bytes(preset, m, d.nnz), "output": csr_bytes(preset, m, out_nnz)}
    if library == "mkl":
        issue = (cost.cycles_per_input_nnz * (b.nnz + c.nnz + t_nnz + d.nnz)
                 + cost.cycles_per_output_nnz * (t_nnz + out_nnz) + 2 * cost.cycles_per_row * m)
        dram["temporary"] = 2 * csr_bytes(preset, m, t_nnz)
        calls, kernel = 2, "csr_merge_union_x2"
    else:
        issue = (cost.cycles_per_input_nnz * (b.nnz + c.nnz + d.nnz)
                 + cost.cycles_per_output_nnz * out_nnz + cost.cycles_per_row * m)
        calls, kernel = 1, "csr_merge_union3"
    return sparse_work(preset, library, kernel, executed=adds, useful=adds, dense=2 * m * n,
                       issue=issue, dram=dram, overhead_us=calls * cost.call_overhead_us,
                       counts={"rows": m, "nnz_B": b.nnz, "nnz_C": c.nnz, "nnz_D": d.nnz,
                               "nnz_temporary": t_nnz if library == "mkl" else 0,
                               "nnz_out": out_nnz, "calls": calls},
                       phases=calls)


@cpu_kernel("elemmul", libraries=("taco",))
def elemmul_work(layer: LayerLike, preset: CpuPreset, library: str) -> KernelWork:
    """X = B * C as a CSR intersection merge (TACO-style; MKL has no sparse .* sparse)."""
    return _merge_work(layer, preset, library, union=False)


def gemm_work(m: int, n: int, k: int, preset: CpuPreset) -> KernelWork:
    """Dense GEMM X(M,N) = A(M,K) B(K,N) on all cores at ``dense.gemm_efficiency`` of peak.

    Traffic is compulsory: each operand and the output once (blocked GEMM keeps its re-reads
    in cache for the sizes that matter here).
    """
    for label, size in (("M", m), ("N", n), ("K", k)):
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise WorkloadError(f"CPU baseline: gemm: {label} must be a positive int, "
                                f"got {size!r}")
    flops = 2.0 * m * n * k
    vb = preset.value_bytes
    return KernelWork(kernel="gemm", executed_flops=flops, useful_flops=flops,
                      dense_equivalent_flops=flops, issue_cycles=0.0,
                      dram_bytes={"A": float(m * k * vb), "B": float(k * n * vb),
                                  "output": float(m * n * vb)},
                      cores_used=preset.cores, compute_efficiency=preset.dense.gemm_efficiency,
                      parallel_efficiency=1.0,
                      call_overhead_s=preset.dense.call_overhead_us * 1e-6,
                      counts={"M": m, "N": n, "K": k},
                      serial_call_overhead_s=max(0.0, preset.dense.call_overhead_us
                                                 - preset.fork_join_us) * 1e-6
                      if preset.cores > 1 else None)


@cpu_kernel("gemm", libraries=("mkl",))
def gemm_layer_work(layer: LayerLike, preset: CpuPreset, library: str) -> KernelWork:
    """X = A B as a dense BLAS GEMM (MKL ``sgemm``): :func:`gemm_work` of the operands' shapes.

    A dense library issues every MAC, so zeros of A and N:M-pruned weights of B save nothing.
    """
    a, b = layer.tensors.get("A"), layer.tensors.get("B")
    if a is None or b is None or len(a.shape) != 2 or len(b.shape) != 2:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: expected 2-D tensors A and B")
    (m, k), (k_b, n) = a.shape, b.shape
    if k != k_b:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: A is {m}x{k} but B is "
                            f"{k_b}x{n}")
    return gemm_work(int(m), int(n), int(k), preset)


def estimate_gemm(m: int, n: int, k: int, preset: CpuPreset) -> CpuEstimate:
    """Time and energy of a dense (M,K) x (K,N) GEMM on ``preset``."""
    return estimate_work(gemm_work(m, n, k, preset), preset, layer="gemm")


def spmm_work(b: Any, n_cols: int, preset: CpuPreset, library: str = "mkl") -> KernelWork:
    """CSR B (M,K) times a dense (K, n_cols) matrix (MKL ``mkl_sparse_s_mm``).

    The dense operand's rows are gathered once per nonzero; when it exceeds the LLC those
    gathers miss at the capacity rate.
    """
    if not isinstance(n_cols, (int, np.integer)) or n_cols < 1:
        raise WorkloadError(f"CPU baseline: spmm: n_cols must be a positive int, got {n_cols!r}")
    csr = sp.csr_matrix(b, copy=True)
    csr.sum_duplicates()
    m, k = csr.shape
    return spmm_shape_work(m, k, csr.nnz, n_cols, preset, library)


def spmm_shape_work(m: int, k: int, nnz: int, n_cols: int, preset: CpuPreset,
                    library: str = "mkl") -> KernelWork:
    """:func:`spmm_work` from the CSR operand's shape (M, K) and nonzero count alone."""
    macs = float(nnz) * n_cols
    cost = preset.library_cost(library).spmm
    vb, line = preset.value_bytes, preset.cache_line_bytes
    row_bytes = -(-n_cols * vb // line) * line
    dense_bytes = k * n_cols * vb
    dram = {"B": csr_bytes(preset, m, nnz), "dense": float(dense_bytes),
            "output": float(m * n_cols * vb),
            "dense_capacity_misses": max(0, nnz - k) * row_bytes
            * miss_fraction(preset, dense_bytes)}
    return sparse_work(preset, library, "csr_spmm", executed=2 * macs, useful=2 * macs,
                       dense=2.0 * m * k * n_cols,
                       issue=cost.cycles_per_mac * macs + cost.cycles_per_output * m * n_cols,
                       dram=dram, overhead_us=cost.call_overhead_us,
                       counts={"rows": m, "nnz_B": nnz, "n_cols": n_cols, "macs": macs})


def estimate_spmm(b: Any, n_cols: int, preset: CpuPreset) -> CpuEstimate:
    """Time and energy of CSR ``b`` times a dense matrix with ``n_cols`` columns."""
    return estimate_work(spmm_work(b, n_cols, preset), preset, layer="spmm")


def _merge_work(layer: LayerLike, preset: CpuPreset, library: str, union: bool
                ) -> KernelWork:
    b, c = matrix_operand(layer, "B"), matrix_operand(layer, "C")
    if b.shape != c.shape:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: B is {b.shape[0]}x{b.shape[1]} "
                            f"but C is {c.shape[0]}x{c.shape[1]}")
    m, n = b.shape
    pb, pc = pattern(b), pattern(c)
    n_union, n_inter = (pb + pc).nnz, pb.multiply(pc).nnz
    out_nnz = n_union if union else n_inter
    cost = preset.library_cost(library).merge
    dram = {"B": csr_bytes(preset, m, b.nnz), "C": csr_bytes(preset, m, c.nnz),
            "output": csr_bytes(preset, m, out_nnz)}
    issue = (cost.cycles_per_input_nnz * (b.nnz + c.nnz) + cost.cycles_per_output_nnz * out_nnz
             + cost.cycles_per_row * m)
    # One op per coordinate where both operands are stored; elsewhere a merge copies (add)
    # or skips (multiply) without arithmetic.
    return sparse_work(preset, library, "csr_merge_union" if union else "csr_merge_intersection",
                       executed=n_inter, useful=n_inter, dense=m * n, issue=issue, dram=dram,
                       overhead_us=cost.call_overhead_us,
                       counts={"rows": m, "nnz_B": b.nnz, "nnz_C": c.nnz, "nnz_union": n_union,
                               "nnz_intersection": n_inter, "nnz_out": out_nnz})


# the tensor-algebra kernels register themselves here; imported last, after ``cpu_kernel``,
# so importing this module (directly or through ``baselines``) always sees the whole registry
from baselines import tensor_kernels as _tensor_kernels  # noqa: E402,F401
