"""Tensor-algebra kernels: SpMV, SpM*SpM, element-wise add (of two or three matrices) and
multiply, dense GEMM, and the SAM/Onyx evaluation kernels on 3-tensors and three operands:
SDDMM, TTV, TTM, the inner product of two 3-tensors and MTTKRP. Any operand of a sparse kernel
may come from a file (``-p B=path.mtx``, workloads.operands)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from workloads.base import (
    KernelLayer,
    Param,
    Workload,
    WorkloadError,
    check_density,
    check_shape,
    parse_format_spec,
    random_sparse,
)
from workloads.operands import as_csr, as_dense, file_operands, operand_params

_COMMON = (
    Param("density", "float", 0.1, "fraction of nonzeros in each operand, in [0, 1]"),
    Param("seed", "int", 0, "random seed of the operands", low=0),
    Param("values", "str", "int", "operand values: int (1..9, exact) or float"),
    Param("empty_rows", "float", 0.0, "fraction of rows of the first operand forced empty"),
)


def _rng(p: dict[str, Any]) -> np.random.Generator:
    return np.random.default_rng(p["seed"])


def _check(name: str, p: dict[str, Any], rank: int, what: str) -> None:
    check_shape(name, p["shape"], rank, what)
    check_density(name, p["density"])
    check_density(name, p["empty_rows"], "empty_rows")
    if p["values"] not in ("int", "float"):
        raise WorkloadError(f"workload {name}: parameter values: use int or float")


def _default_shape(name: str) -> tuple[int, ...]:
    """The catalog default of workload ``name``'s shape parameter."""
    return next(q.default for w in KERNELS if w.name == name for q in w.params
                if q.name == "shape")


def _spmv(p: dict[str, Any]) -> KernelLayer:
    _check("spmv", p, 2, "M,N")
    sizes, files = file_operands("spmv", p, "ij", {"B": "ij", "c": "j"}, _default_shape("spmv"))
    m, n = sizes["i"], sizes["j"]
    rng = _rng(p)
    b = as_csr(files["B"]) if "B" in files else \
        random_sparse(rng, (m, n), p["density"], p["values"], p["empty_rows"])
    c = as_dense(files["c"]) if "c" in files else \
        random_sparse(rng, (1, n), p["density"], p["values"]).toarray().reshape(n)
    fmts = parse_format_spec("spmv", p["formats"], {"B": "ds", "c": "s"}, "x")
    return KernelLayer("spmv", "x(i)=B(i,j)*c(j)", {"B": b, "c": c}, fmts, p["order"] or None,
                       (m,), p, lambda: b @ c)


def matmul_shape(name: str, p: dict[str, Any]) -> tuple[int, int, int]:
    """(M, N, K) of a matrix product X[MxN] = B[MxK] C[KxN], K the contracted index: the one
    shape convention of spmspm and gemm. ``shape_order=mkn`` reads the shape in spmspm's old
    M,K,N order, with a FutureWarning (it goes away in a later release)."""
    order = p.get("shape_order", "mnk")
    if order not in ("mnk", "mkn"):
        raise WorkloadError(f"workload {name}: parameter shape_order: use mnk (M,N,K, K "
                            f"contracted) or mkn (the old spmspm order), got {order!r}")
    _check(name, p, 3, "M,N,K")
    if order == "mkn":
        warnings.warn(f"workload {name}: shape_order=mkn (shape as M,K,N) is deprecated; "
                      "write shape as M,N,K (K contracted), the order of every matrix product",
                      FutureWarning, stacklevel=2)
        m, k, n = p["shape"]
    else:
        m, n, k = p["shape"]
    return int(m), int(n), int(k)


def _spmspm(p: dict[str, Any]) -> KernelLayer:
    matmul_shape("spmspm", p)
    sizes, files = file_operands("spmspm", p, "ikj" if p.get("shape_order") == "mkn" else "ijk",
                                 {"B": "ik", "C": "kj"}, _default_shape("spmspm"))
    m, k, n = sizes["i"], sizes["k"], sizes["j"]
    rng = _rng(p)
    b = as_csr(files["B"]) if "B" in files else \
        random_sparse(rng, (m, k), p["density"], p["values"], p["empty_rows"])
    c = as_csr(files["C"]) if "C" in files else \
        random_sparse(rng, (k, n), p["density"], p["values"])
    order = p["order"]
    if order not in ("", "ikj", "ijk"):
        raise WorkloadError("workload spmspm: parameter order: use ikj (Gustavson) or ijk "
                            f"(inner product), or leave it empty, got {order!r}")
    default_c = "ss:1,0" if order == "ijk" else "ss"
    fmts = parse_format_spec("spmspm", p["formats"], {"B": "ss", "C": default_c},
                             "X")
    return KernelLayer("spmspm", "X(i,j)=B(i,k)*C(k,j)", {"B": b, "C": c}, fmts, order or None,
                       (m, n), p, lambda: (b @ c).toarray())


def _elementwise(name: str, op: str, operands: str = "BC"):
    def build(p: dict[str, Any]) -> KernelLayer:
        _check(name, p, 2, "M,N")
        sizes, files = file_operands(name, p, "ij", {t: "ij" for t in operands},
                                     _default_shape(name))
        m, n = sizes["i"], sizes["j"]
        rng = _rng(p)
        mats = {t: as_csr(files[t]) if t in files else
                random_sparse(rng, (m, n), p["density"], p["values"],
                              p["empty_rows"] if k == 0 else 0.0)
                for k, t in enumerate(operands)}
        fmts = parse_format_spec(name, p["formats"], {t: "ss" for t in operands}, "X")

        def ref() -> np.ndarray:
            out = mats[operands[0]]
            for t in operands[1:]:
                out = out + mats[t] if op == "+" else out.multiply(mats[t])
            return np.asarray(out.toarray())
        expr = f"X(i,j)={op.join(f'{t}(i,j)' for t in operands)}"
        return KernelLayer(name, expr, mats, fmts, p["order"] or None, (m, n), p, ref)
    return build


GEMM_PATTERNS: dict[str, tuple[int, int] | None] = {
    "dense": None, "2:4": (2, 4), "1:4": (1, 4), "4:8": (4, 8)}
"""``pattern`` of the gemm workload -> the N:M weight sparsity of B along K (None: dense)."""

def gemm_block(pattern: str) -> tuple[int, int] | None:
    """``pattern`` of the gemm workload -> B's block shape (H along K, W along N) when it is
    blockHxW (blockN: N x N), else None."""
    from workloads.pruning import parse_pattern

    if not pattern.startswith("block"):
        return None
    pat = parse_pattern(pattern)
    return (pat.bh, pat.bw)


GEMM_DATAFLOWS = ("os", "ws", "is")
"""Dataflows of the dense systolic mode (isa.arch.SYSTOLIC_DATAFLOWS; workloads may not import
isa)."""

_EXACT_FLOAT32 = 2**24   # integers of smaller magnitude are exact in float32
_EXACT_FLOAT64 = 2**53   # ... and in float64


def _dense_values(rng: np.random.Generator, shape: tuple[int, int], density: float,
                  values: str) -> np.ndarray:
    """A seeded dense matrix with exactly round(density * size) nonzeros (ints 1..9 or floats
    U(0.5, 1.5), as ``random_sparse``)."""
    size = shape[0] * shape[1]
    if values == "int":
        out = rng.integers(1, 10, size=size, dtype=np.int64)
    else:
        out = rng.uniform(0.5, 1.5, size=size)
    if density < 1.0:
        keep = np.zeros(size, dtype=bool)
        keep[rng.choice(size, size=int(round(density * size)), replace=False)] = True
        out[~keep] = 0
    return out.reshape(shape)


def prune_nm(b: np.ndarray, nm: tuple[int, int]) -> np.ndarray:
    """B with only the n largest-magnitude entries of each group of m along K (axis 0) kept
    in every column (ties: the first in K order); a final partial group of r entries keeps
    min(n, r)."""
    n, m = nm
    k, cols = b.shape
    groups = -(-k // m)
    mag = np.full((groups * m, cols), -1.0)     # padding ranks below every real entry
    mag[:k] = np.abs(b)
    rank = np.argsort(-mag.reshape(groups, m, cols), axis=1, kind="stable")
    keep = np.zeros((groups, m, cols), dtype=bool)
    np.put_along_axis(keep, rank[:, :n, :], True, axis=1)
    return np.where(keep.reshape(groups * m, cols)[:k], b, 0)


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` with numpy's result dtype; integer products go through float32 (float64)
    BLAS when no partial sum can reach 2**24 (2**53), where every intermediate is an exact
    integer, since numpy's integer matmul has no BLAS."""
    out = np.result_type(a.dtype, b.dtype)
    if out.kind == "f" or a.size == 0 or b.size == 0:
        return a @ b
    peak = int(np.abs(a).max()) * int(np.abs(b).max()) * a.shape[1]
    if peak >= _EXACT_FLOAT64:
        return a @ b
    work = np.float32 if peak < _EXACT_FLOAT32 else np.float64
    return (a.astype(work) @ b.astype(work)).astype(out)


def _gemm(p: dict[str, Any]) -> KernelLayer:
    check_shape("gemm", p["shape"], 3, "M,N,K")
    check_density("gemm", p["density"])
    if p["values"] not in ("int", "float"):
        raise WorkloadError("workload gemm: parameter values: use int or float")
    block = gemm_block(p["pattern"])
    if p["pattern"] not in GEMM_PATTERNS and block is None:
        raise WorkloadError(f"workload gemm: parameter pattern: use one of "
                            f"{', '.join(GEMM_PATTERNS)} or blockHxW, got {p['pattern']!r}")
    if not 0.0 <= p["weight_sparsity"] < 1.0 or (block is None and p["weight_sparsity"]):
        raise WorkloadError("workload gemm: parameter weight_sparsity: a block pattern's "
                            f"fraction of B's blocks pruned, in [0, 1), got "
                            f"{p['weight_sparsity']!r} with pattern {p['pattern']!r}")
    if p["dataflow"] not in ("",) + GEMM_DATAFLOWS:
        raise WorkloadError(f"workload gemm: parameter dataflow: use one of "
                            f"{', '.join(GEMM_DATAFLOWS)} (or leave it empty for the chip's), "
                            f"got {p['dataflow']!r}")
    m, n, k = p["shape"]
    rng = _rng(p)
    a = _dense_values(rng, (m, k), p["density"], p["values"])
    b = _dense_values(rng, (k, n), 1.0, p["values"])
    nm = GEMM_PATTERNS.get(p["pattern"])
    if nm is not None:
        b = prune_nm(b, nm)
    if block is not None:
        from workloads.pruning import prune

        b = prune(b, p["pattern"], p["weight_sparsity"])
    return KernelLayer("gemm", "X(i,j)=A(i,k)*B(k,j)", {"A": a, "B": b}, {"A": "dd", "B": "dd"},
                       None, (m, n), p, lambda: exact_matmul(a, b))


def random_tensor(rng: np.random.Generator, shape: tuple[int, ...], density: float,
                  values: str, empty_slices: float = 0.0) -> np.ndarray:
    """A seeded dense array of any rank with exactly round(density * size) nonzeros (ints
    1..9 or floats U(0.5, 1.5), as ``random_sparse``); ``empty_slices`` forces that fraction
    of the first mode's slices (chosen at random) to zero."""
    size = int(np.prod(shape))
    nnz = int(round(density * size))
    flat = rng.choice(size, size=nnz, replace=False) if nnz else np.zeros(0, dtype=np.int64)
    if values == "int":
        data = rng.integers(1, 10, size=nnz).astype(np.int64)
        out = np.zeros(size, dtype=np.int64)
    else:
        data = rng.uniform(0.5, 1.5, size=nnz)
        out = np.zeros(size)
    out[flat] = data
    out = out.reshape(shape)
    if empty_slices > 0:
        out[rng.random(shape[0]) < empty_slices] = 0
    return out


def natural_formats(expr: str, order: str, levels: dict[str, str]) -> dict[str, str]:
    """Each tensor's format ``levels[name]`` (one letter per level) with the mode order that
    the loop ``order`` visits its indices in, e.g. ``ss:1,0`` for D(j,k) under ``ikj``."""
    out = {}
    for name, letters in levels.items():
        head = expr.split("=", 1)[1]
        idx = head[head.index(name + "(") + len(name) + 1:].split(")", 1)[0].split(",")
        mode = [idx.index(v) for v in order if v in idx]
        if len(mode) != len(idx):     # the order misses an index: let the compiler say so
            out[name] = letters
        else:
            out[name] = letters + ("" if mode == sorted(mode) else
                                   ":" + ",".join(map(str, mode)))
    return out


def _tensor_kernel(name: str, expr: str, index: str, shape_of: dict[str, str],
                   default_order: str, levels: dict[str, str], factors: tuple[str, ...],
                   reference: str):
    """Builder of a kernel over named index sizes: ``index`` names the variables the
    ``shape`` parameter sizes (in order), ``shape_of`` each tensor's indices, ``factors`` the
    operands drawn at ``factor_density`` (the rest at ``density``; the first operand gets the
    empty slices), ``reference`` the einsum of the numpy result."""
    def build(p: dict[str, Any]) -> KernelLayer:
        _check(name, p, len(index), ",".join(index.upper()))
        if "factor_density" in p:
            check_density(name, p["factor_density"], "factor_density")
        order = p["order"] or default_order
        if sorted(order) != sorted(index):
            raise WorkloadError(f"workload {name}: parameter order: a permutation of "
                                f"{index} (default {default_order}), got {order!r}")
        size, files = file_operands(name, p, index, shape_of, _default_shape(name))
        rng = _rng(p)
        tensors: dict[str, np.ndarray] = {}
        for k, (t, idx) in enumerate(shape_of.items()):
            dens = p["factor_density"] if t in factors else p["density"]
            tensors[t] = as_dense(files[t]) if t in files else \
                random_tensor(rng, tuple(size[v] for v in idx), dens, p["values"],
                              p["empty_rows"] if k == 0 else 0.0)
        fmts = parse_format_spec(name, p["formats"], natural_formats(expr, order, levels),
                                 expr.split("=", 1)[0].split("(", 1)[0].strip())
        out_idx = reference.split("->")[1]
        ops = [tensors[t] for t in shape_of]
        return KernelLayer(name, expr, dict(tensors), fmts, p["order"] or None,
                           tuple(size[v] for v in out_idx), p,
                           lambda: np.asarray(np.einsum(reference, *ops)))
    return build


_TENSOR_COMMON = (
    Param("seed", "int", 0, "random seed of the operands", low=0),
    Param("values", "str", "int", "operand values: int (1..9, exact) or float"),
    Param("empty_rows", "float", 0.0, "fraction of the first operand's first-mode slices "
          "forced empty"),
)


def _density(what: str = "the sparse operand B") -> Param:
    return Param("density", "float", 0.33, f"fraction of nonzeros of {what}, in [0, 1]")


def _factor_density(what: str) -> Param:
    return Param("factor_density", "float", 1.0, f"fraction of nonzeros of {what}, in [0, 1] "
                 "(1: dense factors)")


def _order_param(default: str, alternatives: str) -> Param:
    return Param("order", "str", "", f"loop order: {default} {alternatives}; empty (default): "
                 "the compiler picks the best for compiler.objective")


def _fmt_param(default: str) -> Param:
    return Param("formats", "str", "", f"storage formats, e.g. '{default}' (d dense, s "
                 "compressed, b bitmap, ':1,0' mode order; the output too, e.g. X:sb); "
                 "empty: the defaults")


_SHAPE_ORDER = Param("shape_order", "str", "mnk", "mnk; or mkn, the old spmspm order M,K,N "
                     "(deprecated)")

KERNELS = (
    Workload("spmv", "sparse matrix times sparse vector, x = B c", "SAM (ASPLOS'23) SpMV; "
             "Onyx (VLSI'24) SpM*SpV", (Param("shape", "ints", (64, 64), "M,N (N contracted): B is "
                                                "MxN"),) + _COMMON
             + (_fmt_param("B:ds c:s"), Param("order", "str", "", "loop order (default ij)"))
             + operand_params("Bc"), _spmv),
    Workload("spmspm", "sparse matrix times sparse matrix, X = B C", "SAM (ASPLOS'23) "
             "SpM*SpM; Onyx (VLSI'24)", (Param("shape", "ints", (64, 64, 64),
                                              "M,N,K (K contracted): B is MxK, C is KxN"),
                                        _SHAPE_ORDER) + _COMMON + (_fmt_param("B:ss C:ss"),
                          Param("order", "str", "", "ikj (Gustavson) or ijk (inner product); "
                                "empty: the compiler picks (compiler.objective)"))
             + operand_params("BC"), _spmspm),
    Workload("elemadd", "element-wise sum X = B + C", "SAM (ASPLOS'23) MatAdd; Onyx ElemAdd",
             (Param("shape", "ints", (64, 64), "M,N"),) + _COMMON
             + (_fmt_param("B:ss C:ss"), Param("order", "str", "", "loop order (default ij)"))
             + operand_params("BC"), _elementwise("elemadd", "+")),
    Workload("elemadd3", "element-wise sum of three matrices X = B + C + D",
             "SAM (ASPLOS'23) / Onyx (VLSI'24) evaluation kernel mat_elemadd3 (ElemAdd3)",
             (Param("shape", "ints", (64, 64), "M,N"),) + _COMMON
             + (_fmt_param("B:ss C:ss D:ss"),
                Param("order", "str", "", "loop order (default ij)"))
             + operand_params("BCD"), _elementwise("elemadd3", "+", "BCD")),
    Workload("elemmul", "element-wise product X = B * C", "SAM (ASPLOS'23); Onyx ElemMult",
             (Param("shape", "ints", (64, 64), "M,N"),) + _COMMON
             + (_fmt_param("B:ss C:ss"), Param("order", "str", "", "loop order (default ij)"))
             + operand_params("BC"), _elementwise("elemmul", "*")),
    Workload("gemm", "dense GEMM X = A B on the systolic array (SCALE-Sim v3 timing)",
             "SCALE-Sim v3 (scalesim 3.0.0) GEMM; Onyx (VLSI'24) dense mode",
             (Param("shape", "ints", (128, 128, 128),
                    "M,N,K (K contracted): A is MxK, B is KxN"),
              Param("seed", "int", 0, "random seed of the operands", low=0),
              Param("values", "str", "int", "operand values: int (1..9, exact) or float"),
              Param("density", "float", 1.0, "fraction of nonzeros in A, in [0, 1]"),
              Param("pattern", "str", "dense", "N:M sparsity of B along K: dense, 2:4, 1:4, "
                    "4:8 (largest-magnitude kept); or blockHxW (H along K, W along N)"),
              Param("weight_sparsity", "float", 0.0, "block patterns: fraction of B's blocks "
                    "pruned (smallest sum |B| first)"),
              Param("dataflow", "str", "", "os, ws or is; empty: the chip's (systolic."
                    "dataflow, else os)")),
             _gemm),
    Workload("sddmm", "sampled dense-dense matrix product X = B .* (C D^T)",
             "SAM (ASPLOS'23) mat_sddmm; Onyx (VLSI'24) evaluation kernel SDDMM",
             (Param("shape", "ints", (24, 24, 16), "M,N,K: B is MxN, C is MxK, D is NxK"),
              _density(), _factor_density("C and D")) + _TENSOR_COMMON
             + (_fmt_param("B:ss C:dd D:dd"),
                _order_param("ijk", "or ikj: a vector reducer over k"))
             + operand_params("BCD"),
             _tensor_kernel("sddmm", "X(i,j)=B(i,j)*C(i,k)*D(j,k)", "ijk",
                            {"B": "ij", "C": "ik", "D": "jk"}, "ijk",
                            {"B": "ss", "C": "dd", "D": "dd"}, ("C", "D"), "ij,ik,jk->ij")),
    Workload("ttv", "tensor-times-vector X(i,j) = sum_k B(i,j,k) c(k)",
             "SAM (ASPLOS'23) tensor3_ttv; Onyx (VLSI'24) evaluation kernel TTV",
             (Param("shape", "ints", (32, 32, 32), "I,J,K: B is IxJxK, c has K entries"),
              _density(), _factor_density("c")) + _TENSOR_COMMON
             + (_fmt_param("B:sss c:d"), _order_param("ijk", "or ikj: a vector reducer over k"))
             + operand_params("Bc"),
             _tensor_kernel("ttv", "X(i,j)=B(i,j,k)*c(k)", "ijk", {"B": "ijk", "c": "k"},
                            "ijk", {"B": "sss", "c": "d"}, ("c",), "ijk,k->ij")),
    Workload("ttm", "tensor-times-matrix X(i,j,k) = sum_l B(i,j,l) C(k,l)",
             "SAM (ASPLOS'23) tensor3_ttm; Onyx (VLSI'24) evaluation kernel TTM",
             (Param("shape", "ints", (16, 16, 16, 16), "I,J,K,L: B is IxJxL, C is KxL"),
              _density(), _factor_density("C")) + _TENSOR_COMMON
             + (_fmt_param("B:sss C:dd"),
                _order_param("ijkl", "or ijlk: a vector reducer over l"))
             + operand_params("BC"),
             _tensor_kernel("ttm", "X(i,j,k)=B(i,j,l)*C(k,l)", "ijkl",
                            {"B": "ijl", "C": "kl"}, "ijkl", {"B": "sss", "C": "dd"}, ("C",),
                            "ijl,kl->ijk")),
    Workload("innerprod", "inner product of two 3-tensors x = sum_ijk B(i,j,k) C(i,j,k)",
             "SAM (ASPLOS'23) tensor3_innerprod; Onyx (VLSI'24) evaluation kernel InnerProd",
             (Param("shape", "ints", (32, 32, 32), "I,J,K: B and C are IxJxK"),
              _density("each of B and C"))
             + _TENSOR_COMMON
             + (_fmt_param("B:sss C:sss"), _order_param("ijk", "or any other permutation"))
             + operand_params("BC"),
             _tensor_kernel("innerprod", "x=B(i,j,k)*C(i,j,k)", "ijk",
                            {"B": "ijk", "C": "ijk"}, "ijk", {"B": "sss", "C": "sss"}, (),
                            "ijk,ijk->")),
    Workload("mttkrp", "matricized tensor times Khatri-Rao product "
             "X(i,j) = sum_kl B(i,k,l) C(j,k) D(j,l)",
             "SAM (ASPLOS'23) tensor3_mttkrp; Onyx (VLSI'24) evaluation kernel MTTKRP",
             (Param("shape", "ints", (16, 16, 16, 16), "I,J,K,L: B is IxKxL, C is JxK, "
                    "D is JxL"), _density(), _factor_density("C and D")) + _TENSOR_COMMON
             + (_fmt_param("B:sss C:dd D:dd"),
                _order_param("ijkl", "or ijlk: contracted k and l after i and j"))
             + operand_params("BCD"),
             _tensor_kernel("mttkrp", "X(i,j)=B(i,k,l)*C(j,k)*D(j,l)", "ijkl",
                            {"B": "ikl", "C": "jk", "D": "jl"}, "ijkl",
                            {"B": "sss", "C": "dd", "D": "dd"}, ("C", "D"), "ikl,jk,jl->ij")),
)
