"""Sparse tensor-algebra kernels: SpMV, SpM*SpM, element-wise add and multiply."""

from __future__ import annotations

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

_COMMON = (
    Param("density", "float", 0.1, "fraction of nonzeros in each operand, in [0, 1]"),
    Param("seed", "int", 0, "random seed of the operands"),
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


def _spmv(p: dict[str, Any]) -> KernelLayer:
    _check("spmv", p, 2, "M,N")
    m, n = p["shape"]
    rng = _rng(p)
    b = random_sparse(rng, (m, n), p["density"], p["values"], p["empty_rows"])
    c = random_sparse(rng, (1, n), p["density"], p["values"]).toarray().reshape(n)
    fmts = parse_format_spec("spmv", p["formats"], {"B": "ds", "c": "s"})
    return KernelLayer("spmv", "x(i)=B(i,j)*c(j)", {"B": b, "c": c}, fmts, p["order"] or None,
                       (m,), p, lambda: b @ c)


def _spmspm(p: dict[str, Any]) -> KernelLayer:
    _check("spmspm", p, 3, "M,K,N")
    m, k, n = p["shape"]
    rng = _rng(p)
    b = random_sparse(rng, (m, k), p["density"], p["values"], p["empty_rows"])
    c = random_sparse(rng, (k, n), p["density"], p["values"])
    order = p["order"]
    if order not in ("ikj", "ijk"):
        raise WorkloadError("workload spmspm: parameter order: use ikj (Gustavson) or ijk "
                            f"(inner product), got {order!r}")
    default_c = "ss" if order == "ikj" else "ss:1,0"
    fmts = parse_format_spec("spmspm", p["formats"], {"B": "ss", "C": default_c})
    return KernelLayer("spmspm", "X(i,j)=B(i,k)*C(k,j)", {"B": b, "C": c}, fmts, order,
                       (m, n), p, lambda: (b @ c).toarray())


def _elementwise(name: str, op: str):
    def build(p: dict[str, Any]) -> KernelLayer:
        _check(name, p, 2, "M,N")
        m, n = p["shape"]
        rng = _rng(p)
        b = random_sparse(rng, (m, n), p["density"], p["values"], p["empty_rows"])
        c = random_sparse(rng, (m, n), p["density"], p["values"])
        fmts = parse_format_spec(name, p["formats"], {"B": "ss", "C": "ss"})
        ref = (lambda: (b + c).toarray()) if op == "+" else (lambda: b.multiply(c).toarray())
        return KernelLayer(name, f"X(i,j)=B(i,j){op}C(i,j)", {"B": b, "C": c}, fmts,
                           p["order"] or None, (m, n), p, ref)
    return build


def _fmt_param(default: str) -> Param:
    return Param("formats", "str", "", f"storage formats, e.g. '{default}' (d dense, s "
                 "compressed, ':1,0' mode order); empty: the defaults")


KERNELS = (
    Workload("spmv", "sparse matrix times sparse vector, x = B c", "SAM (ASPLOS'23) SpMV; "
             "Onyx (VLSI'24) SpM*SpV", (Param("shape", "ints", (64, 64), "M,N"),) + _COMMON
             + (_fmt_param("B:ds c:s"), Param("order", "str", "", "loop order (default ij)")),
             _spmv),
    Workload("spmspm", "sparse matrix times sparse matrix, X = B C", "SAM (ASPLOS'23) "
             "SpM*SpM; Onyx (VLSI'24)", (Param("shape", "ints", (64, 64, 64), "M,K,N"),)
             + _COMMON + (_fmt_param("B:ss C:ss"),
                          Param("order", "str", "ikj", "ikj (Gustavson) or ijk (inner product)")),
             _spmspm),
    Workload("elemadd", "element-wise sum X = B + C", "SAM (ASPLOS'23) MatAdd; Onyx ElemAdd",
             (Param("shape", "ints", (64, 64), "M,N"),) + _COMMON
             + (_fmt_param("B:ss C:ss"), Param("order", "str", "", "loop order (default ij)")),
             _elementwise("elemadd", "+")),
    Workload("elemmul", "element-wise product X = B * C", "SAM (ASPLOS'23); Onyx ElemMult",
             (Param("shape", "ints", (64, 64), "M,N"),) + _COMMON
             + (_fmt_param("B:ss C:ss"), Param("order", "str", "", "loop order (default ij)")),
             _elementwise("elemmul", "*")),
)
