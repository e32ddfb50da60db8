"""Tensor index notation: ``X(i,j) = B(i,k) * C(k,j)`` with formats and a loop order.

Two or three operands joined by one operator, ``*`` (product: intersection) or ``+`` (sum:
union); the output may be a scalar (``x = B(i,j,k) * C(i,j,k)``, also written ``x()``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from isa.errors import CompileError


@dataclass(frozen=True)
class Access:
    """A tensor indexed by index variables, e.g. ``B(i,k)``."""

    tensor: str
    indices: tuple[str, ...]


@dataclass(frozen=True)
class Assignment:
    """``out = operands[0] op operands[1] [op operands[2]]`` (op is ``*`` or ``+``)."""

    out: Access
    op: str
    operands: tuple[Access, ...]

    @property
    def index_vars(self) -> tuple[str, ...]:
        """Index variables in order of first appearance (output first)."""
        seen: list[str] = []
        for acc in (self.out, *self.operands):
            for v in acc.indices:
                if v not in seen:
                    seen.append(v)
        return tuple(seen)

    def __str__(self) -> str:
        def fmt(a: Access) -> str:
            return f"{a.tensor}({','.join(a.indices)})"
        return f"{fmt(self.out)}={self.op.join(fmt(a) for a in self.operands)}"


_ACCESS = re.compile(r"\s*([A-Za-z_]\w*)\s*\(\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)?\s*\)\s*")
_SCALAR = re.compile(r"\s*([A-Za-z_]\w*)\s*")

MAX_OPERANDS = 3


def _access(text: str, expr: str, *, scalar_ok: bool = False) -> Access:
    m = _ACCESS.fullmatch(text)
    if not m:
        bare = _SCALAR.fullmatch(text) if scalar_ok else None
        if bare:
            return Access(bare.group(1), ())
        raise CompileError(f"parse: {text.strip()!r} in {expr!r} is not a tensor access "
                           "like B(i,k)")
    idx = tuple(v.strip() for v in m.group(2).split(",")) if m.group(2) else ()
    if len(set(idx)) != len(idx):
        raise CompileError(f"parse: {text.strip()!r} repeats an index variable")
    return Access(m.group(1), idx)


def parse_expr(expr: str) -> Assignment:
    """Parse ``X(i,j)=B(i,k)*C(k,j)``: two or three operands joined by one operator, ``*``
    or ``+``; the output may be a scalar (``x=...`` or ``x()=...``)."""
    lhs, eq, rhs = expr.partition("=")
    if not eq:
        raise CompileError(f"parse: {expr!r} has no '='")
    found = re.findall(r"[*+]", rhs)
    if len(set(found)) > 1:
        raise CompileError(f"parse: {expr!r}: mixing * and + in one expression is not "
                           "supported; use one operator")
    if not found or len(found) >= MAX_OPERANDS:
        raise CompileError(f"parse: {expr!r}: expected two or three operands joined by * or "
                           f"+ (got {len(found) + 1})")
    op = found[0]
    operands = tuple(_access(t, expr) for t in rhs.split(op))
    out = _access(lhs, expr, scalar_ok=True)
    names = [out.tensor] + [a.tensor for a in operands]
    if len(set(names)) != len(names):
        raise CompileError(f"parse: {expr!r}: each tensor may appear once")
    assign = Assignment(out, op, operands)
    rhs_vars = {v for a in operands for v in a.indices}
    missing = [v for v in out.indices if v not in rhs_vars]
    if missing:
        raise CompileError(f"parse: {expr!r}: output index {missing[0]} appears on no operand")
    if op == "+" and any(set(a.indices) != set(out.indices) for a in operands):
        raise CompileError(f"parse: {expr!r}: '+' needs every operand indexed like the output")
    return assign


def parse_order(order: str | tuple[str, ...] | None, assign: Assignment) -> tuple[str, ...]:
    """Loop order as a tuple of index variables: ``"ikj"``, ``"i,k,j"`` or None (default)."""
    allv = assign.index_vars
    if order is None or order == "":
        out_vars = list(assign.out.indices)
        return tuple(out_vars[:-1] + [v for v in allv if v not in out_vars] + out_vars[-1:]) \
            if len(out_vars) > 1 else tuple(out_vars + [v for v in allv if v not in out_vars])
    seq = tuple(order.split(",")) if isinstance(order, str) and "," in order else tuple(order)
    if sorted(seq) != sorted(allv):
        raise CompileError(f"parse: loop order {''.join(seq)!r} must list each of "
                           f"{','.join(allv)} once")
    return seq
