"""Layer objects and the parameter machinery shared by every workload.

A workload is a function of typed parameters that returns a ``KernelLayer``: concrete tensors
(numpy arrays or scipy sparse matrices), the index-notation expression that computes the
layer, each tensor's storage format, a loop order, and a numpy reference of the result.
This package imports only numpy and scipy.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:            # scipy.sparse loads on first use: `sieve list` starts without it
    import scipy.sparse as sp


class WorkloadError(ValueError):
    """A workload name, parameter or tensor is invalid; the message names the field."""


MAX_PARAM_INT = 2**53
"""Largest magnitude of an integer parameter (every size and seed fits; products of a few
such sizes are checked against memory before anything is allocated)."""

_INT_TEXT = re.compile(r"^[+-]?[0-9]{1,40}$")


@dataclass(frozen=True)
class Param:
    """One workload parameter: ``-p name=value`` on the CLI, or a field of a YAML spec.

    ``low`` and ``high`` bound the value (each item of an ``ints`` list), inclusive.
    """

    name: str
    kind: str            # "int", "float", "str", "ints" (comma-separated)
    default: Any
    help: str
    low: float | None = None
    high: float | None = None

    def parse(self, workload: str, value: Any) -> Any:
        """The checked value of ``value``: command-line text, or a YAML spec's scalar or list.

        No coercion is silent: an int is an integer (``8.7`` and ``true`` are refused, not
        truncated), a float is finite, text is text, and every number lies in its range.
        Raises: WorkloadError naming the workload and the parameter.
        """
        where = f"workload {workload}: parameter {self.name}"
        if self.kind == "ints":
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not items:
                raise WorkloadError(f"{where}: expected comma-separated integers, got "
                                    f"{_shown(value)}")
            return tuple(self._number(where, "int", v) for v in items)
        if self.kind in ("int", "float"):
            return self._number(where, self.kind, value)
        if not isinstance(value, str):
            raise WorkloadError(f"{where}: expected text, got {_shown(value)}")
        return value

    def _number(self, where: str, kind: str, value: Any) -> int | float:
        out: int | float
        if isinstance(value, str):
            text = value.strip()
            try:
                if kind == "int":
                    if not _INT_TEXT.match(text):
                        raise ValueError
                    out = int(text)
                else:
                    out = float(text)
            except ValueError:
                raise WorkloadError(f"{where}: expected {_KIND_NAMES[kind]}, got "
                                    f"{_shown(value)}") from None
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (kind == "int" and not isinstance(value, int)):
            raise WorkloadError(f"{where}: expected {_KIND_NAMES[kind]}, got {_shown(value)}")
        else:
            out = float(value) if kind == "float" else value
        if isinstance(out, int) and abs(out) > MAX_PARAM_INT:
            raise WorkloadError(f"{where}: {_shown(out)} is out of range (|value| <= 2**53)")
        if isinstance(out, float) and not math.isfinite(out):
            raise WorkloadError(f"{where}: expected a finite number, got {out}")
        if self.low is not None and out < self.low:
            raise WorkloadError(f"{where}: must be >= {self.low:g}, got {out}")
        if self.high is not None and out > self.high:
            raise WorkloadError(f"{where}: must be <= {self.high:g}, got {out}")
        return out


_KIND_NAMES = {"int": "an integer", "float": "a number"}


def _shown(value: Any) -> str:
    """A wrong value in a message: short reprs, containers by kind, huge ints by size."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**40:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class KernelLayer:
    """A sparse tensor-algebra kernel with its data."""

    name: str
    expr: str
    tensors: dict[str, Any]               # operand name -> np.ndarray | scipy.sparse matrix
    formats: dict[str, str]               # tensor name -> format string, e.g. "ss", "ss:1,0"
    order: str | None                     # loop order, e.g. "ikj"; None: compiler default
    out_shape: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)
    reference_fn: Callable[[], np.ndarray] | None = None

    def reference(self) -> np.ndarray:
        """The layer's result computed with numpy (dense)."""
        assert self.reference_fn is not None
        return self.reference_fn()


@dataclass(frozen=True)
class Workload:
    """A catalog entry."""

    name: str
    summary: str
    source: str
    params: tuple[Param, ...]
    build: Callable[[dict[str, Any]], KernelLayer]

    def resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given`` (strings parsed), unknown names rejected."""
        known = {p.name: p for p in self.params}
        out = {p.name: p.default for p in self.params}
        for key, text in given.items():
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                raise WorkloadError(
                    f"workload {self.name}: unknown parameter {key!r}"
                    + (f" (did you mean {hint[0]}?)" if hint else "")
                    + f"; parameters: {', '.join(known)}")
            out[key] = known[key].parse(self.name, text)
        return out

    def make(self, given: dict[str, Any] | None = None) -> KernelLayer:
        return self.build(self.resolve(given or {}))


# ------------------------------------------------------------------ data generators
def check_density(workload: str, density: float, name: str = "density") -> None:
    if not (0.0 <= density <= 1.0) or density != density:
        raise WorkloadError(f"workload {workload}: parameter {name}: must be in [0, 1], "
                            f"got {density}")


def check_shape(workload: str, shape: tuple[int, ...], rank: int, what: str) -> None:
    if len(shape) != rank or any(s < 1 for s in shape):
        raise WorkloadError(f"workload {workload}: parameter shape: expected {rank} positive "
                            f"sizes ({what}), got {','.join(map(str, shape))}")


def random_sparse(rng: np.random.Generator, shape: tuple[int, int], density: float,
                  values: str, empty_rows: float = 0.0) -> sp.csr_matrix:
    """A seeded random matrix with exactly round(density * size) nonzeros.

    Integer values are drawn from 1..9 (exact arithmetic); float values from U(0.5, 1.5).
    ``empty_rows`` forces that fraction of rows (chosen at random) to be empty.
    """
    m, n = shape
    size = m * n
    nnz = int(round(density * size))
    flat = rng.choice(size, size=nnz, replace=False) if nnz else np.zeros(0, dtype=np.int64)
    rows, cols = np.divmod(flat, n)
    if empty_rows > 0:
        dead = rng.random(m) < empty_rows
        keep = ~dead[rows]
        rows, cols = rows[keep], cols[keep]
    if values == "int":
        data = rng.integers(1, 10, size=len(rows)).astype(np.int64)
    else:
        data = rng.uniform(0.5, 1.5, size=len(rows))
    import scipy.sparse as sp

    return sp.csr_matrix((data, (rows, cols)), shape=shape)


def parse_format_spec(workload: str, spec: str, defaults: dict[str, str],
                      output: str | None = None) -> dict[str, str]:
    """``"B:ss C:ss:1,0"`` -> {"B": "ss", "C": "ss:1,0"} overlaid on ``defaults``; the
    ``output`` tensor may be given too (``X:sb``: its level formats, compressed by default)."""
    out = dict(defaults)
    names = list(defaults) + ([output] if output else [])
    for item in spec.split():
        name, sep, fmt = item.partition(":")
        if not sep or name not in names:
            raise WorkloadError(f"workload {workload}: parameter formats: {item!r} should be "
                                f"TENSOR:FORMAT with TENSOR in {', '.join(names)}")
        out[name] = fmt
    return out
