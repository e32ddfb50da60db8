"""Work models of the tensor kernels (the SAM/Onyx evaluation kernels) as TACO generates them.

The sparse operand B is in CSR (a matrix) or CSF (a 3-tensor: compressed at every level),
factor matrices and vectors dense and laid out so the innermost loop reads them contiguously,
whatever format the chip stores them in. Flops, bytes and issue cycles are counted from the
data. Kernels whose inner loop runs over a dense factor (SDDMM over k, TTM over k, MTTKRP over
j) are costed with the SpMM issue rates, one ``cycles_per_mac`` per two flops of that loop; TTV
with the SpMV rates (one product per nonzero, a CSF fiber plays a CSR row); the inner product
with the merge rates. MKL offers none of these kernels (Onyx, VLSI 2024, Fig. 7b: ElemMult,
TTV, TTM, InnerProd and MTTKRP have only the TACO baseline), so they run on the preset's ``taco``
costs, cores and compute roof whatever the preset's library (SDDMM likewise: MKL's C API of
Onyx's era had none).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from baselines.kernels import cpu_kernel
from baselines.operands import (
    LayerLike,
    array_operand,
    csf_bytes,
    csf_fibers,
    csr_bytes,
    miss_fraction,
    same_sizes,
    sparse_work,
    vector_operand,
)
from baselines.presets import CpuPreset
from baselines.roofline import KernelWork
from workloads import WorkloadError

__all__ = ["innerprod_work", "mttkrp_work", "sddmm_work", "ttm_work", "ttv_work"]


@cpu_kernel("sddmm", libraries=("taco",))
def sddmm_work(layer: LayerLike, preset: CpuPreset, library: str) -> KernelWork:
    """X = B .* (C D^T) (TACO: for (i,j) in CSR B, for k: X(i,j) += B(i,j) C(i,k) D(j,k)).

    Two multiplies and one add per stored B(i,j) and k; useful ops where all three operands
    are nonzero. Rows of D are gathered once per nonzero of B.
    """
    b, c = array_operand(layer, "B", 2), array_operand(layer, "C", 2)
    d = array_operand(layer, "D", 2)
    n = same_sizes(layer, {"i": [b.shape[0], c.shape[0]], "j": [b.shape[1], d.shape[0]],
                           "k": [c.shape[1], d.shape[1]]})
    m, cols, k = n["i"], n["j"], n["k"]
    csr = sp.csr_matrix(b)
    rows, js = np.repeat(np.arange(m), np.diff(csr.indptr)), csr.indices
    meets = float(np.count_nonzero((c[rows] != 0) & (d[js] != 0))) if csr.nnz else 0.0
    macs = 1.5 * csr.nnz * k
    vb, line = preset.value_bytes, preset.cache_line_bytes
    d_bytes = cols * k * vb
    dram = {"B": csr_bytes(preset, m, csr.nnz), "C": float(m * k * vb), "D": float(d_bytes),
            "output": csr_bytes(preset, m, csr.nnz),
            "D_capacity_misses": max(0, csr.nnz - cols) * (-(-k * vb // line) * line)
            * miss_fraction(preset, d_bytes)}
    cost = preset.library_cost(library).spmm
    return sparse_work(preset, library, "taco_sddmm", executed=3.0 * csr.nnz * k,
                       useful=3.0 * meets,
                       dense=3.0 * m * cols * k,
                       issue=cost.cycles_per_mac * macs + cost.cycles_per_output * csr.nnz,
                       dram=dram, overhead_us=cost.call_overhead_us,
                       counts={"rows": m, "nnz_B": csr.nnz, "K": k, "products": meets})


@cpu_kernel("ttv", libraries=("taco",))
def ttv_work(layer: LayerLike, preset: CpuPreset, library: str) -> KernelWork:
    """X(i,j) = sum_k B(i,j,k) c(k) (TACO: CSF B, dense c; one multiply-add per nonzero).

    Each (i,j) fiber of B is a CSR row of SpMV; the output holds one value per nonempty
    fiber. Useful ops: nonzeros of B that meet a nonzero of c.
    """
    b = array_operand(layer, "B", 3)
    i, j, k = b.shape
    c = vector_operand(layer, "c", k)
    fibers = csf_fibers(b)
    nnz = fibers[-1]
    effectual = int(np.count_nonzero((b != 0) & (c != 0)[None, None, :]))
    cost = preset.library_cost(library).spmv
    dram = {"B": csf_bytes(preset, fibers), "c": float(k * preset.value_bytes),
            "output": csr_bytes(preset, i, fibers[1])}
    return sparse_work(preset, library, "taco_ttv", executed=2 * nnz, useful=2 * effectual,
                       dense=2 * i * j * k,
                       issue=cost.cycles_per_nnz * nnz + cost.cycles_per_row * fibers[1],
                       dram=dram, overhead_us=cost.call_overhead_us,
                       counts={"nnz_B": nnz, "fibers_B": fibers[1],
                               "nnz_c": int(np.count_nonzero(c))})


@cpu_kernel("ttm", libraries=("taco",))
def ttm_work(layer: LayerLike, preset: CpuPreset, library: str) -> KernelWork:
    """X(i,j,k) = sum_l B(i,j,l) C(k,l) (TACO: CSF B, dense C; for every nonzero B(i,j,l)
    a multiply-add into each of the K outputs of its fiber).

    The output is one dense K-vector per nonempty (i,j) fiber. Useful ops: pairs of a
    nonzero B(i,j,l) and a nonzero C(k,l).
    """
    b, c = array_operand(layer, "B", 3), array_operand(layer, "C", 2)
    n = same_sizes(layer, {"l": [b.shape[2], c.shape[1]]})
    i, j, k, el = b.shape[0], b.shape[1], c.shape[0], n["l"]
    fibers = csf_fibers(b)
    nnz = fibers[-1]
    per_l = np.count_nonzero(b != 0, axis=(0, 1)).astype(np.float64)
    useful = float(per_l @ np.count_nonzero(c != 0, axis=0).astype(np.float64))
    vb, line = preset.value_bytes, preset.cache_line_bytes
    c_bytes = k * el * vb
    cost = preset.library_cost(library).spmm
    dram = {"B": csf_bytes(preset, fibers), "C": float(c_bytes),
            "output": csr_bytes(preset, i, fibers[1]) + fibers[1] * k * vb,
            "C_capacity_misses": max(0, nnz - el) * (-(-k * vb // line) * line)
            * miss_fraction(preset, c_bytes)}
    return sparse_work(preset, library, "taco_ttm", executed=2.0 * nnz * k, useful=2.0 * useful,
                       dense=2.0 * i * j * k * el,
                       issue=cost.cycles_per_mac * nnz * k
                       + cost.cycles_per_output * fibers[1] * k,
                       dram=dram, overhead_us=cost.call_overhead_us,
                       counts={"nnz_B": nnz, "fibers_B": fibers[1], "K": k,
                               "products": useful})


@cpu_kernel("innerprod", libraries=("taco",))
def innerprod_work(layer: LayerLike, preset: CpuPreset, library: str) -> KernelWork:
    """x = sum_ijk B(i,j,k) C(i,j,k) (TACO: two CSF tensors co-iterated level by level).

    A multiply and an add per coordinate both store; the merge cost counts the stored
    elements of both and one row cost per (i,j) fiber of either.
    """
    b, c = array_operand(layer, "B", 3), array_operand(layer, "C", 3)
    if b.shape != c.shape:
        raise WorkloadError(f"CPU baseline: layer {layer.name}: B is {b.shape} but C is "
                            f"{c.shape}")
    i, j, k = b.shape
    fb, fc = csf_fibers(b), csf_fibers(c)
    both = int(np.count_nonzero((b != 0) & (c != 0)))
    rows = int(np.count_nonzero(((b != 0) | (c != 0)).any(axis=2)))
    cost = preset.library_cost(library).merge
    dram = {"B": csf_bytes(preset, fb), "C": csf_bytes(preset, fc),
            "output": float(preset.value_bytes)}
    return sparse_work(preset, library, "taco_innerprod", executed=2 * both, useful=2 * both,
                       dense=2 * i * j * k,
                       issue=cost.cycles_per_input_nnz * (fb[-1] + fc[-1])
                       + cost.cycles_per_output_nnz * both + cost.cycles_per_row * rows,
                       dram=dram, overhead_us=cost.call_overhead_us,
                       counts={"nnz_B": fb[-1], "nnz_C": fc[-1], "nnz_intersection": both,
                               "fibers_union": rows})


@cpu_kernel("mttkrp", libraries=("taco",))
def mttkrp_work(layer: LayerLike, preset: CpuPreset, library: str) -> KernelWork:
    """X(i,j) = sum_kl B(i,k,l) C(j,k) D(j,l) (TACO: CSF B, dense C and D; for every nonzero
    B(i,k,l) and every j, two multiplies and an add into X(i,j)).

    The output is dense in j for every nonempty i slice. Useful ops: the (i,k,l,j) where
    B(i,k,l), C(j,k) and D(j,l) are all nonzero.
    """
    b, c = array_operand(layer, "B", 3), array_operand(layer, "C", 2)
    d = array_operand(layer, "D", 2)
    n = same_sizes(layer, {"j": [c.shape[0], d.shape[0]], "k": [b.shape[1], c.shape[1]],
                           "l": [b.shape[2], d.shape[1]]})
    i, rank, k, el = b.shape[0], n["j"], n["k"], n["l"]
    fibers = csf_fibers(b)
    nnz = fibers[-1]
    pair = (c != 0).astype(np.float64).T @ (d != 0).astype(np.float64)   # K x L: j that meet
    useful = float(np.count_nonzero(b != 0, axis=0).astype(np.float64).ravel()
                   @ pair.ravel())
    vb, line = preset.value_bytes, preset.cache_line_bytes
    factors = (k + el) * rank * vb
    cost = preset.library_cost(library).spmm
    dram = {"B": csf_bytes(preset, fibers), "C": float(k * rank * vb),
            "D": float(el * rank * vb), "output": float(fibers[0] * rank * vb),
            "factor_capacity_misses": max(0, 2 * nnz - k - el) * (-(-rank * vb // line) * line)
            * miss_fraction(preset, factors)}
    return sparse_work(preset, library, "taco_mttkrp", executed=3.0 * nnz * rank,
                       useful=3.0 * useful,
                       dense=3.0 * i * rank * k * el,
                       issue=cost.cycles_per_mac * 1.5 * nnz * rank
                       + cost.cycles_per_output * fibers[0] * rank,
                       dram=dram, overhead_us=cost.call_overhead_us,
                       counts={"nnz_B": nnz, "slices_B": fibers[0], "J": rank,
                               "products": useful})
